"""Augmentation, window centres and early stopping against NiftyNet 0.6.0's own layers and functions.

``tests/data/training/augmentation_refs.npz`` (``tests/oracle/make_augmentation_refs.py``): NiftyNet's
``RandomFlipLayer``, ``RandomSpatialScalingLayer`` and ``RandomRotationLayer`` on a known volume and
label map; its three window-centre functions with ``np.random`` replaced by fixed rules (the same rules
are given to niftyport's functions here, as a stand-in generator); ``check_should_stop`` on 60 histories.
"""
from __future__ import annotations

import numpy as np
import pytest
from training_refs import REFS

from niftyport.training.augmentation import Transform, apply_transform, rotation_matrix
from niftyport.training.sampling import balanced_centres, uniform_centres, weighted_centres
from niftyport.training.validation import should_stop

with np.load(REFS / "augmentation_refs.npz") as _z:
    REF = {k: _z[k] for k in _z.files}
IMAGE, LABEL = REF["image"], REF["label"].astype(np.int64)
ORDERS = {"image": 3, "label": 0}


def ours(transform: Transform, orders=ORDERS):
    out = apply_transform({"image": IMAGE, "label": LABEL}, orders, transform)
    return out["image"], out["label"]


def check(key: str, image: np.ndarray, label: np.ndarray, atol: float = 0.0):
    np.testing.assert_allclose(image, REF[f"{key}_image"], rtol=0, atol=atol)
    # NiftyNet keeps the label as float32; its loss truncates it to integers (tf.cast), as niftyport does here
    np.testing.assert_array_equal(label, np.trunc(REF[f"{key}_label"]).astype(np.int64))


def test_flip_matches_niftynet():
    check("flip", *ours(Transform(flipped=(0, 2))))


@pytest.mark.parametrize("case", ["shrink", "grow", "mixed"])
def test_scaling_matches_niftynet(case):
    image, label = ours(Transform(zoom=REF[f"scale_{case}_zoom"]))
    assert image.shape == REF[f"scale_{case}_image"].shape
    check(f"scale_{case}", image, label, atol=1e-6)


@pytest.mark.parametrize("case", ["uniform", "per_axis"])
@pytest.mark.parametrize("order", [3, 1])
def test_rotation_matches_niftynet(case, order):
    matrix = rotation_matrix(*REF[f"rotate_{case}_angles"])
    np.testing.assert_allclose(matrix, REF[f"rotate_{case}_matrix"], rtol=0, atol=1e-15)
    check(f"rotate_{case}_order{order}", *ours(Transform(matrix=matrix), {"image": order, "label": 0}), atol=1e-6)


class FixedRules:
    """The oracle's stand-ins for np.random (its RULES), with numpy Generator's method names."""

    def __init__(self):
        self.k = 0

    def random(self):
        value = (self.k * 0.618034) % 1
        self.k += 1
        return value

    @staticmethod
    def integers(low, high=None, size=None):
        return low + (3 * np.arange(size) + 1) % (high - low)

    @staticmethod
    def multinomial(n, p):
        counts = np.full(len(p), n // len(p))
        counts[0] += n - counts.sum()
        return counts

    @staticmethod
    def choice(a, size, replace=True):
        a = np.asarray(a)
        return a[(7 * np.arange(size) + 2) % len(a)]


@pytest.mark.parametrize("case", ["a", "b", "c"])
def test_window_centres_match_niftynet(case):
    shape, window, n = tuple(REF[f"{case}_shape"]), tuple(REF[f"{case}_window"]), int(REF[f"{case}_n"])
    np.testing.assert_array_equal(uniform_centres(n, shape, window, FixedRules()), REF[f"{case}_uniform"])
    np.testing.assert_array_equal(weighted_centres(n, shape, window, REF[f"{case}_weights"], FixedRules()),
                                  REF[f"{case}_weighted"])
    np.testing.assert_array_equal(balanced_centres(n, shape, window, REF[f"{case}_labels"], FixedRules()),
                                  REF[f"{case}_balanced"])


@pytest.mark.parametrize("mode", ["mean", "robust_mean", "median", "generalisation_loss", "median_smoothing",
                                  "validation_up"])
def test_early_stopping_rule_matches_niftynet(mode):
    expected = REF[f"stop_{mode}"]
    got = [should_stop(h[~np.isnan(h)], mode) for h in REF["histories"]]
    assert got == expected.tolist()
    assert 0 < expected.sum() < len(expected)          # both outcomes occur
