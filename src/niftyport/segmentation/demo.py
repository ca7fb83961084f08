"""``niftyport demo``: parcellate a real T1 that ships with nilearn, offline.

The input is the MNI152 2009 template at 1 mm (``nilearn.datasets.load_mni152_template``,
inside nilearn's wheel, so no download). On a CPU the network's cost
(about 1.8 MFLOP per voxel) makes a whole head take many minutes, so by
default the demo keeps a field of view of ``DEMO_FOV`` voxels around the
centre of the head: after NiftyNet's 10-voxel padding it is exactly one
window, so the result is what NiftyNet gives for that input and window
(``--full-head`` runs the whole template with the model zoo's 128^3 windows).
"""
from __future__ import annotations

import time
from pathlib import Path

import nibabel as nib
import numpy as np

from ..image_io import save_labels
from .pipeline import resolve_config, run_parcellation

#: Field of view (voxels of 1 mm) kept on a CPU: covers the deep grey matter, the
#: ventricles and most of the cerebrum; with 10 voxels of padding per side each side
#: is a multiple of 8, so it is one window.
DEMO_FOV = (116, 140, 108)


def mni152_t1() -> nib.Nifti1Image:
    """The MNI152 2009 T1 template at 1 mm, as a float32 image (RAS, 197 x 233 x 189)."""
    from nilearn.datasets import load_mni152_template

    img = load_mni152_template(resolution=1)
    data = np.asarray(img.get_fdata(dtype=np.float32))
    return nib.Nifti1Image(data, img.affine)


def head_box(data: np.ndarray) -> tuple[slice, slice, slice]:
    """Bounding box of the non-zero voxels of a 3-D array."""
    nonzero = np.argwhere(data > 0)
    low, high = nonzero.min(axis=0), nonzero.max(axis=0) + 1
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high))


def centred_crop(img: nib.Nifti1Image, size: tuple[int, int, int]) -> nib.Nifti1Image:
    """A ``size`` box centred on the head's bounding box, with the matching affine.

    Sides larger than the image are kept whole.
    """
    data = np.asarray(img.dataobj)
    box = head_box(data)
    starts = []
    for sl, n, full in zip(box, size, data.shape):
        n = min(n, full)
        centre = (sl.start + sl.stop) // 2
        starts.append(int(np.clip(centre - n // 2, 0, full - n)))
    index = tuple(slice(s, s + min(n, full)) for s, n, full in zip(starts, size, data.shape))
    return img.slicer[index]


def _checked_model(weights, *, device, mode):
    """The network with its weights on ``device``, after checking ``mode`` and ``device``."""
    from ..errors import OptionError
    from ..inference.engines import MODES
    from ..weights import load_weights
    from .pipeline import resolve_device

    if mode not in MODES:
        raise OptionError(f"--mode {mode!r} is not one of {', '.join(MODES)}")
    return load_weights(weights, device=resolve_device(device))


def run_demo(output_dir: str | Path, *, full_head: bool = False, weights=None, device="auto",
             threads=None, mode="niftynet", max_memory=None, progress=True) -> str:
    """Write the demo's input and label map into ``output_dir``; returns a short summary.

    The options and the weights are checked (the weights loaded) before
    anything is written, so that a bad one leaves no file behind.
    """
    model = _checked_model(weights, device=device, mode=mode)
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    template = mni152_t1()
    if full_head:
        image = template.slicer[head_box(np.asarray(template.dataobj))]
        name, config = "mni152_t1_head", resolve_config(None)
    else:
        image = centred_crop(template, DEMO_FOV)
        window = tuple(n + 20 for n in image.shape)
        name, config = "mni152_t1_fov", resolve_config(None, window=window)
    input_path = out_dir / f"{name}.nii.gz"
    nib.save(image, input_path)
    start = time.perf_counter()
    result = run_parcellation(input_path, config=config, model=model, device=device, threads=threads,
                              mode=mode, max_memory=max_memory, progress=progress)
    seconds = time.perf_counter() - start
    output_path = save_labels(out_dir / f"{name}_parcellation.nii.gz", result.labels, result.affine,
                              result.loaded.header, input_paths=[input_path])
    return summarise(result.labels, result.affine, input_path, output_path, seconds)


def summarise(labels: np.ndarray, affine: np.ndarray, input_path: Path, output_path: Path,
              seconds: float) -> str:
    """A few lines a researcher reads first: sizes, labels found, time, files."""
    voxel_mm3 = abs(float(np.linalg.det(affine[:3, :3])))
    ids, counts = np.unique(labels, return_counts=True)
    foreground = counts[ids != 0].sum()
    biggest = sorted(zip(counts[ids != 0], ids[ids != 0]), reverse=True)[:5]
    lines = [
        f"input:  {input_path} {tuple(labels.shape)} voxels of {voxel_mm3:.3g} mm^3",
        f"labels: {len(ids) - (0 in ids)} of 159 non-background labels, "
        f"{foreground * voxel_mm3 / 1000:.1f} cm^3 labelled",
        "largest labels (id: cm^3): " + ", ".join(f"{i}: {c * voxel_mm3 / 1000:.1f}" for c, i in biggest),
        f"time:   {seconds:.1f} s",
        f"output: {output_path}",
    ]
    return "\n".join(lines)
