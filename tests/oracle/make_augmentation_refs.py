"""Make references of NiftyNet 0.6.0's augmentation layers, window-centre functions and early-stopping rule.

NiftyNet's own classes and functions (oracle's Python), on small known arrays:

* ``RandomFlipLayer``, ``RandomSpatialScalingLayer``, ``RandomRotationLayer``
  (``niftynet/layer/rand_*.py``) called as the reader calls them (a dict of
  ``(X, Y, Z, 1, 1)`` fields and their interpolation orders), with the random
  state set on the layer (``_rand_flip``, ``_rand_zoom``) or drawn from a
  seeded ``np.random`` (rotation; the angles are recorded);
* ``rand_spatial_coordinates``, ``weighted_spatial_coordinates``,
  ``balanced_spatial_coordinates`` (``engine/sampler_*_v2.py``) with
  ``np.random``'s functions replaced by fixed, recorded rules (see ``RULES``)
  so that the same rules can be fed to niftyport's functions;
* ``check_should_stop`` (``engine/handler_early_stopping.py``) on random histories, every mode.

Written: ``tests/data/training/augmentation_refs.npz``.

Usage::

    $ORACLE_VENV/bin/python tests/oracle/make_augmentation_refs.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import make_training_refs as refs  # noqa: E402

OUT = refs.OUT / "augmentation_refs.npz"
MODES = ("mean", "robust_mean", "median", "generalisation_loss", "median_smoothing", "validation_up")
#: the fixed stand-ins for np.random in the sampler cases (niftyport's test builds the same)
RULES = ("random: U[k] for the k-th call, U = (k * 0.618034) % 1; randint(low, high, n): low + (3 i + 1) % (high - low);"
         " multinomial(n, p): n // len(p) each, the remainder to the first; choice(a, size): a[(7 i + 2) % len(a)]")


def volumes():
    rng = np.random.default_rng(42)
    image = rng.normal(size=(9, 8, 7)).astype(np.float32)
    label = np.zeros((9, 8, 7), np.float32)
    label[2:6, 1:5, 2:6] = 1
    label[5:8, 4:7, 1:4] = 2
    return image, label


def run_layer(layer, image, label, orders=(3, 0)):
    out = layer({"image": image[..., None, None].copy(), "label": label[..., None, None].copy()},
                {"image": [orders[0]], "label": [orders[1]]})
    return np.squeeze(out["image"]), np.squeeze(out["label"])


def augmentation_cases() -> dict[str, np.ndarray]:
    from niftynet.layer.rand_flip import RandomFlipLayer
    from niftynet.layer.rand_rotation import RandomRotationLayer
    from niftynet.layer.rand_spatial_scaling import RandomSpatialScalingLayer

    image, label = volumes()
    out = {"image": image, "label": label}
    flip = RandomFlipLayer(flip_axes=(0, 2))
    flip._rand_flip = np.array([True, True, True])
    out["flip_image"], out["flip_label"] = run_layer(flip, image, label)
    for name, zoom in (("shrink", [0.85, 0.9, 0.8]), ("grow", [1.1, 1.25, 1.05]), ("mixed", [0.9, 1.1, 0.95])):
        layer = RandomSpatialScalingLayer(min_percentage=-20, max_percentage=20, antialiasing=True)
        layer._rand_zoom = np.array(zoom)
        out[f"scale_{name}_zoom"] = np.array(zoom)
        out[f"scale_{name}_image"], out[f"scale_{name}_label"] = run_layer(layer, image, label)
    for name, seed, kind in (("uniform", 3, "uniform"), ("per_axis", 4, "per_axis")):
        layer = RandomRotationLayer()
        if kind == "uniform":
            layer.init_uniform_angle((-20.0, 20.0))
        else:
            layer.init_non_uniform_angle((), (-30.0, 30.0), (5.0, 15.0))
        np.random.seed(seed)
        layer.randomise()
        np.random.seed(seed)
        if kind == "uniform":
            angles = [np.random.uniform(-20.0, 20.0) * np.pi / 180.0 for _ in range(3)]
        else:
            angles = [0.0, np.random.uniform(-30.0, 30.0) * np.pi / 180.0, np.random.uniform(5.0, 15.0) * np.pi / 180.0]
        out[f"rotate_{name}_angles"] = np.array(angles)
        out[f"rotate_{name}_matrix"] = layer._transform
        for orders in ((3, 0), (1, 0)):
            key = f"rotate_{name}_order{orders[0]}"
            out[f"{key}_image"], out[f"{key}_label"] = run_layer(layer, image, label, orders)
    return out


class FixedRandom:
    """The stand-ins of ``RULES``, installed on ``np.random``."""

    def __init__(self):
        self.k = 0

    def random(self, *args, **kwargs):
        value = (self.k * 0.618034) % 1
        self.k += 1
        return value

    @staticmethod
    def randint(low, high, n):
        return low + (3 * np.arange(n) + 1) % (high - low)

    @staticmethod
    def multinomial(n, p):
        counts = np.full(len(p), n // len(p))
        counts[0] += n - counts.sum()
        return counts

    @staticmethod
    def choice(a, size, replace=True):
        a = np.asarray(a)
        return a[(7 * np.arange(size) + 2) % len(a)]


def sampler_cases() -> dict[str, np.ndarray]:
    from niftynet.engine import sampler_balanced_v2, sampler_uniform_v2, sampler_weighted_v2

    rng = np.random.default_rng(7)
    out = {}
    for name, shape, window, n in (("a", (9, 8, 7), (3, 4, 1), 5), ("b", (12, 6, 10), (4, 6, 5), 3),
                                   ("c", (7, 7, 7), (7, 2, 3), 4)):
        weights = rng.random(shape).astype(np.float32)
        labels = rng.integers(0, 4, shape).astype(np.float32)
        out[f"{name}_weights"], out[f"{name}_labels"] = weights, labels
        out[f"{name}_shape"], out[f"{name}_window"], out[f"{name}_n"] = np.array(shape), np.array(window), np.array(n)
        saved = {f: getattr(np.random, f) for f in ("random", "randint", "multinomial", "choice")}
        fixed = FixedRandom()
        try:
            for f in saved:
                setattr(np.random, f, getattr(fixed, f))
            out[f"{name}_uniform"] = sampler_uniform_v2.rand_spatial_coordinates(n, np.array(shape), np.array(window),
                                                                                 None)
            out[f"{name}_weighted"] = sampler_weighted_v2.weighted_spatial_coordinates(
                n, np.array(shape), np.array(window), weights[..., None, None])
            out[f"{name}_balanced"] = sampler_balanced_v2.balanced_spatial_coordinates(
                n, np.array(shape), np.array(window), labels[..., None, None])
        finally:
            for f, value in saved.items():
                setattr(np.random, f, value)
    return out


def early_stopping_cases() -> dict[str, np.ndarray]:
    from niftynet.engine.handler_early_stopping import check_should_stop

    rng = np.random.default_rng(11)
    histories = []
    for k in range(60):
        length = 10 if k % 3 else 12
        trend = np.linspace(1.0, 0.5 + rng.random(), length)
        histories.append(trend + rng.normal(0, 0.05 * (k % 5), length))
    out = {"histories": np.array([np.pad(h, (0, 12 - len(h)), constant_values=np.nan) for h in histories])}
    for mode in MODES:
        out[f"stop_{mode}"] = np.array([bool(check_should_stop(list(h), mode=mode)) for h in histories])
    return out


def main() -> int:
    sys.path.insert(0, str(refs.ORACLE))
    import nn_compat  # noqa: F401  (before anything from niftynet)

    arrays = {}
    arrays.update(augmentation_cases())
    arrays.update(sampler_cases())
    arrays.update(early_stopping_cases())
    arrays["rules"] = np.array(RULES)
    np.savez_compressed(OUT, **arrays)
    print(OUT, OUT.stat().st_size, "bytes;", {m: int(arrays[f"stop_{m}"].sum()) for m in MODES})
    return 0


if __name__ == "__main__":
    sys.exit(main())
