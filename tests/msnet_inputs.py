"""Inputs of the MSNet references, regenerated alike by the oracle script and the tests (numpy + nibabel only).

Layout is TensorFlow's ``(N, D, H, W, C)``, ``D`` the slice axis. Two kinds:

* ``random``: ``np.random.default_rng(seed).standard_normal(shape)``, float32;
* ``brain``: real T1 scans as BraTS-like slabs. Channel ``c`` is
  ``colin27_ch2_1mm_skull`` (even ``c``) or ``real_t1_chris_1mm_skull``
  (odd ``c``), each volume transposed to ``(z, y, x)`` so that ``D`` runs over
  axial slices, the ``N`` batch items being ``N`` consecutive slabs of ``D``
  slices centred on slice ``Z // 2 + Z // 16`` (in-plane: the central
  ``H x W``); each channel whitened over the whole block (mean 0, std 1,
  float64 statistics).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

T1_FILES = ("colin27_ch2_1mm_skull.nii.gz", "real_t1_chris_1mm_skull.nii.gz")


def random_input(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _slabs(volume: np.ndarray, n: int, depth: int, height: int, width: int) -> np.ndarray:
    vol = np.transpose(volume, (2, 1, 0))  # (x, y, z) -> (z, y, x): slices first
    z_mid = vol.shape[0] // 2 + vol.shape[0] // 16
    z0, y0, x0 = z_mid - n * depth // 2, (vol.shape[1] - height) // 2, (vol.shape[2] - width) // 2
    if z0 < 0 or z0 + n * depth > vol.shape[0] or y0 < 0 or x0 < 0:
        raise ValueError(f"a block of {n} x {depth} slices of {height} x {width} does not fit {vol.shape}")
    block = vol[z0:z0 + n * depth, y0:y0 + height, x0:x0 + width].astype(np.float64)
    block = (block - block.mean()) / max(block.std(), 1e-5)
    return block.reshape(n, depth, height, width).astype(np.float32)


def brain_input(shape: tuple[int, ...], data_dir: Path) -> np.ndarray:
    """The ``brain`` input of shape ``(N, D, H, W, C)`` from the T1 scans in ``data_dir``."""
    import nibabel as nib

    n, depth, height, width, channels = shape
    volumes = [np.asanyarray(nib.load(data_dir / name).dataobj) for name in T1_FILES]
    volumes = [v.reshape(v.shape[:3]) for v in volumes]
    return np.stack([_slabs(volumes[c % 2], n, depth, height, width) for c in range(channels)], axis=-1)


def sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
