"""NiftyNet references of the networks: weights, inputs and NiftyNet's outputs (test helper).

``tests/data/networks/<key>/`` holds what ``tests/oracle/make_network_refs.py``
kept of a run of NiftyNet 0.6.0's own network code on TensorFlow: the
oracle's variable listing, its meta data with a sha256 per variable, and
NiftyNet's raw outputs. The checkpoint's values and the inputs are
regenerated here with numpy by the oracle's own recipe (one seeded
``default_rng``, variables in sorted name order, a distribution per kind),
and every regenerated variable is checked against the digest of the bytes
TensorFlow saved — so the weights are NiftyNet's, not something niftyport made.

Layouts are NiftyNet's: inputs and outputs (N, X, Y, Z, C) or (N, X, Y, C)
for 2-D networks; kernels (k..., in, out).
"""
from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from conftest import DATA, need

REFS = Path(__file__).resolve().parent / "data" / "networks"


@dataclass(frozen=True)
class NetworkRef:
    """One reference case: ``variables`` {TF name: array}, ``inputs``/``outputs`` {"random"/"smooth": array}."""

    key: str
    meta: dict
    variables: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]

    @property
    def constructor_kwargs(self) -> dict:
        return dict(self.meta["constructor_kwargs"])

    @property
    def attributes(self) -> dict:
        """Hyper-parameters the oracle set on NiftyNet's instance after construction (e.g. ``n_features``)."""
        return dict(self.meta["attributes_overwritten_after_construction"])

    def input(self, which: str) -> np.ndarray:
        """``"random"``: N(0, 1) from the recorded seed; ``"smooth"``: whitened crops of real T1s (needs shared data)."""
        shape = tuple(self.meta["input_shape"])
        if which == "random":
            array = np.random.default_rng(self.meta["input_seed"]).standard_normal(shape).astype(np.float32)
        elif which == "smooth":
            array = smooth_input(shape)
        else:
            raise KeyError(which)
        if hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest() != self.meta["input_sha256"][which]:
            raise AssertionError(f"{self.key}: regenerated input_{which} differs from the oracle's")
        return array


def _value(rng: np.random.Generator, row: dict) -> np.ndarray:
    """One variable's value as the oracle's ``random_value`` draws it (float64, then the variable's dtype)."""
    shape = () if row["shape"] == "scalar" else tuple(int(n) for n in row["shape"].split("x"))
    kind = row["kind"]
    if kind == "kernel":
        fan_in = int(re.search(r"fan_in=(\d+)", row["init"]).group(1))
        value = rng.normal(0.0, np.sqrt(1.0 / fan_in), shape)
    elif kind in ("bias", "beta", "moving_mean", "bn_zero_debias_biased"):
        value = rng.normal(0.0, 0.1, shape)
    elif kind in ("gamma", "spatial_prior"):
        value = rng.uniform(0.5, 1.5, shape)
    elif kind == "moving_variance":
        value = rng.uniform(0.5, 2.0, shape)
    elif kind == "prelu_alpha":
        value = rng.uniform(0.0, 0.3, shape)
    elif kind == "bn_zero_debias_local_step":
        value = np.full(shape, 7.0)
    else:
        raise ValueError(f"no recipe for variable kind {kind!r} ({row['name']})")
    return np.asarray(value, dtype=np.dtype(row["dtype"]))


@lru_cache(maxsize=None)
def load_ref(key: str) -> NetworkRef:
    """The reference case ``key`` (e.g. ``"dense_vnet"``), weights checked against TensorFlow's bytes."""
    folder = REFS / key
    meta = json.loads((folder / "meta.json").read_text())
    with open(folder / "variables.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    rng = np.random.default_rng(meta["seed"])
    variables = {row["name"]: _value(rng, row) for row in rows}  # rows are in the oracle's (sorted) order
    for name, array in variables.items():
        digest = hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
        if digest != meta["variable_sha256"][name]:
            raise AssertionError(f"{key}: regenerated {name} differs from the oracle's checkpoint")
    with np.load(folder / "outputs.npz") as npz:
        outputs = {"random": npz["output_random"], "smooth": npz["output_smooth"]}
    return NetworkRef(key, meta, variables, outputs)


def ref_keys() -> list[str]:
    """Keys of the oracle's NiftyNet network references (folders with the variable listing)."""
    return sorted(p.name for p in REFS.iterdir() if (p / "variables.csv").is_file()) if REFS.is_dir() else []


def _whiten(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    return ((a - a.mean()) / max(a.std(), 1e-5)).astype(np.float32)


def smooth_input(shape: tuple[int, ...]) -> np.ndarray:
    """The oracle's real-image input: channel c from ``colin27`` (even c) or ``real_t1_chris`` (odd c).

    A centre crop (3-D: shifted up by a eighth of the height; 2-D: the axial
    slice ``z = Z//2 + 10``), or a linear ``scipy.ndimage.zoom`` of it when
    the shape does not fit; each channel whitened over the patch.
    """
    import nibabel as nib
    from scipy import ndimage

    sources = [need(DATA / "colin27_ch2_1mm_skull.nii.gz"), need(DATA / "real_t1_chris_1mm_skull.nii.gz")]
    spatial = tuple(shape[1:-1])
    channels = []
    for c in range(shape[-1]):
        vol = np.asanyarray(nib.load(sources[c % 2]).dataobj).astype(np.float32)
        vol = vol.reshape(vol.shape[:3])
        if len(spatial) == 2:
            vol = vol[:, :, vol.shape[2] // 2 + 10]
        centre = [s // 2 for s in vol.shape]
        if len(spatial) == 3:
            centre[2] += vol.shape[2] // 8
        if all(w <= s for w, s in zip(spatial, vol.shape)):
            patch = vol[tuple(slice(c0 - w // 2, c0 - w // 2 + w) for c0, w in zip(centre, spatial))]
        else:
            patch = ndimage.zoom(vol, [w / float(s) for w, s in zip(spatial, vol.shape)], order=1)
        channels.append(_whiten(patch))
    return np.stack(channels, axis=-1)[None].astype(np.float32)


def to_torch_layout(array: np.ndarray) -> np.ndarray:
    """NiftyNet ``(N, X, Y, Z, C)`` (or ``(N, X, Y, C)``) -> torch ``(N, C, X, Y, Z)``, C-contiguous."""
    return np.ascontiguousarray(np.moveaxis(array, -1, 1))


def run_niftynet_layout(model, array: np.ndarray) -> np.ndarray:
    """``model`` (torch layout) applied to a NiftyNet-layout input; the output in NiftyNet's layout."""
    import torch

    with torch.no_grad():
        out = model(torch.from_numpy(to_torch_layout(array)))
    return np.moveaxis(out.numpy(), 1, -1)


def assert_matches_niftynet(ours: np.ndarray, theirs: np.ndarray) -> float:
    """The acceptance rule: same shape, ``max|diff| <= 1e-4 * max(1, max|theirs|)``; returns max|diff|."""
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    diff = float(np.max(np.abs(ours.astype(np.float64) - theirs)))
    bound = 1e-4 * max(1.0, float(np.max(np.abs(theirs))))
    assert diff <= bound, f"max |diff| {diff:.3g} > {bound:.3g}"
    return diff
