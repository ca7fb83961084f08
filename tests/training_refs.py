"""The training references made by ``tests/oracle/make_training_refs.py`` (NiftyNet 0.6.0 on TensorFlow).

``tests/data/training/<case>.npz`` holds the losses NiftyNet printed and a
digest of every variable of its checkpoint after the last iteration;
``meta.json`` the settings. The batch is rebuilt here from the shared
reference run (``stages.npz``), as the oracle script built it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from conftest import REFERENCE, need

REFS = Path(__file__).resolve().parent / "data" / "training"


def meta() -> dict:
    return json.loads((REFS / "meta.json").read_text())


def load(case: str) -> dict[str, np.ndarray]:
    with np.load(REFS / f"{case}.npz") as z:
        return {key: z[key] for key in z.files}


def reference_names(case: str) -> list[str]:
    """Every variable NiftyNet saved, sorted."""
    return sorted({key.split("|")[0] for key in load(case) if "|" in key})


def sample_indices(size: int, n_samples: int) -> np.ndarray:
    """The flat indices the oracle script sampled (its ``sample_indices``)."""
    return np.unique(np.linspace(0, size - 1, min(size, n_samples)).round().astype(np.int64))


def batch() -> tuple[np.ndarray, np.ndarray]:
    """The image (float32) and label (int64) crops, NiftyNet's (X, Y, Z) layout."""
    m = meta()
    with np.load(need(REFERENCE / "stages.npz")) as stages:
        box = tuple(slice(s, s + m["crop_size"]) for s in m["crop_start"])
        image = stages["stage3_whitened"][box + (0, 0)].astype(np.float32)
        label = stages["labels_padded_ras1mm"][box + (0,)].astype(np.int64)
    return image, label


def reference_values(refs: dict[str, np.ndarray], name: str, array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(ours, NiftyNet's)`` at the values the reference kept of variable ``name`` (all, or the samples)."""
    flat = np.asarray(array).reshape(-1)
    if f"{name}|full" in refs:
        return flat, refs[f"{name}|full"].reshape(-1)
    idx = sample_indices(flat.size, meta()["n_samples"])
    return flat[idx], refs[f"{name}|sample"]
