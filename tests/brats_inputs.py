"""Input of the BraTS cascade references, regenerated alike by the reference script and the tests (numpy + nibabel).

There is no BraTS scan in the test data, so the four "modalities" are one
real skull-stripped T1 (``real_t1_robex_ref_1p5mm_skull`` times its
``real_t1_robex_ref_1p5mm_brainmask``, 1.5 mm) cropped to a block at the top
of the brain (the background above it exercises the loader's crop), with a
synthetic spherical "lesion" painted in so that every stage of the cascade
has something to find: inside the sphere FLAIR x2.5, T1 x0.5, T2 x2.2, and
T1ce x3 in an outer shell, x0.6 inside it. Each channel is float32, zero
outside the brain (as BraTS scans are), on the crop's grid (affine: the
source's, shifted to the crop).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

T1_FILE = "real_t1_robex_ref_1p5mm_skull.nii.gz"
MASK_FILE = "real_t1_robex_ref_1p5mm_brainmask.nii.gz"
#: The crop, (x, y, z) voxel slices of the 116 x 150 x 155 source: ``small`` for the tests, ``brain`` the
#: whole skull-stripped brain (for a run at the published shapes).
CROPS = {"small": (slice(40, 70), slice(55, 89), slice(98, 140)),
         "brain": (slice(9, 105), slice(8, 124), slice(41, 136))}
CROP = CROPS["small"]
#: Lesion centre (in the source's voxels, x y z); radii of the oedema and of the core; the core's rim (voxels).
LESION = ((55, 72, 112), 9.0, 6.0, 2.5)
MODALITIES = ("flair", "t1", "t1ce", "t2")
#: Intensity gains painted in: FLAIR and T2 over the oedema sphere, T1 and T1ce over the core sphere.
GAINS = {"flair": 3.0, "t2": 3.0, "t1": 0.5, "t1ce_rim": 2.5, "t1ce_core": 0.5}
TEXTURE = 0.2
#: Below this fraction of the median T1, tissue counts as CSF (dark in the FLAIR).
CSF = 0.6


def brats_channels(data_dir: Path, crop: str = "small") -> tuple[list[np.ndarray], np.ndarray]:
    """(FLAIR, T1, T1ce, T2) as float32 ``(X, Y, Z)`` arrays of the ``crop`` (a :data:`CROPS` key), their affine."""
    import nibabel as nib

    t1 = nib.load(data_dir / T1_FILE)
    mask = nib.load(data_dir / MASK_FILE)
    brain = np.asarray(t1.dataobj, np.float32)[..., 0] * (np.asarray(mask.dataobj)[..., 0] > 0)
    box = CROPS[crop]
    brain = brain[box]
    grid = np.stack(np.meshgrid(*[np.arange(s.start, s.stop) for s in box], indexing="ij"), axis=-1)
    centre, oedema, core, rim = LESION
    dist = np.sqrt(((grid - np.asarray(centre)) ** 2).sum(-1))
    whole, inner = dist <= oedema, dist <= core
    ring = inner & (dist > core - rim)
    gains = {"flair": [(whole, GAINS["flair"])], "t1": [(inner, GAINS["t1"])],
             "t1ce": [(ring, GAINS["t1ce_rim"]), (inner & ~ring, GAINS["t1ce_core"])],
             "t2": [(whole, GAINS["t2"])]}
    tissue = brain > 0
    level = np.float32(np.median(brain[tissue]))
    top = np.float32(np.percentile(brain[tissue], 99))
    inverted = np.where(tissue, np.maximum(top - brain, 0) + np.float32(0.05) * top, 0).astype(np.float32)
    bases = {"flair": np.where(brain < np.float32(CSF) * level, np.float32(0.2), np.float32(1)) * inverted,
             "t1": brain, "t1ce": brain, "t2": inverted}
    channels = []
    for name in MODALITIES:
        channel = bases[name].astype(np.float32)
        for where, gain in gains[name]:
            channel[where] = np.float32(gain) * level + np.float32(TEXTURE) * brain[where]
        channels.append(channel)
    affine = t1.affine.copy()
    affine[:3, 3] = t1.affine[:3, :3] @ np.array([s.start for s in box]) + t1.affine[:3, 3]
    return channels, affine


def write_channels(data_dir: Path, folder: Path, prefix: str = "BraTS_test", crop: str = "small") -> list[Path]:
    """The four channels as ``folder/<prefix>_<modality>.nii.gz`` (BraTS 2017 names); their paths."""
    import nibabel as nib

    channels, affine = brats_channels(data_dir, crop)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, channel in zip(MODALITIES, channels):
        path = folder / f"{prefix}_{name}.nii.gz"
        nib.save(nib.Nifti1Image(channel, affine), path)
        paths.append(path)
    return paths
