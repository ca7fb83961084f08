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

from ..reporting.colortable import ColorTable, read_ctbl
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
    from ..inference.modes import MODES
    from ..weights import load_weights
    from .pipeline import resolve_device

    if mode not in MODES:
        raise OptionError(f"--mode {mode!r} is not one of {', '.join(MODES)}")
    return load_weights(weights, device=resolve_device(device))


def demo_paths(output_dir: str | Path, *, full_head: bool = False) -> dict[str, Path]:
    """The files the demo writes into ``output_dir``: input, labels, table, volumes, report folder."""
    from .extras import extras_paths

    out_dir = Path(output_dir)
    name = "mni152_t1_head" if full_head else "mni152_t1_fov"
    labels = out_dir / f"{name}_parcellation.nii.gz"
    table, volumes = extras_paths(labels)
    return {"input": out_dir / f"{name}.nii.gz", "labels": labels, "table": table, "volumes": volumes,
            "report": out_dir / "report"}


def run_demo(output_dir: str | Path, *, full_head: bool = False, weights=None, device="auto",
             threads=None, mode="niftynet", max_memory=None, progress=True, force: bool = False,
             report: bool = True) -> str:
    """Parcellate the template into ``output_dir`` (input, labels, table, volumes, report); returns a summary.

    Refuses to replace the files of an earlier run unless ``force``. The
    options and the weights are checked (the weights loaded) before anything
    is written, so that a bad one leaves no file behind.
    """
    from ..outputs import check_outputs
    from ..reporting.report import FILES, report_files
    from .extras import save_label_map

    paths = demo_paths(output_dir, full_head=full_head)
    check_outputs([paths[k] for k in ("input", "labels", "table", "volumes")]
                  + ([paths["report"] / f for f in FILES] if report else []), [], force=force)
    model = _checked_model(weights, device=device, mode=mode)
    paths["input"].parent.mkdir(parents=True, exist_ok=True)
    template = mni152_t1()
    if full_head:
        image, config = template.slicer[head_box(np.asarray(template.dataobj))], resolve_config(None)
    else:
        image = centred_crop(template, DEMO_FOV)
        config = resolve_config(None, window=tuple(n + 20 for n in image.shape))
    nib.save(image, paths["input"])
    start = time.perf_counter()
    result = run_parcellation(paths["input"], config=config, model=model, device=device, threads=threads,
                              mode=mode, max_memory=max_memory, progress=progress)
    seconds = time.perf_counter() - start
    save_label_map(paths["labels"], result.labels, result.affine, result.loaded.header,
                   network=config.network.name, input_paths=[paths["input"]])
    if report:
        report_files(paths["input"], paths["labels"], paths["report"], table=read_ctbl(paths["table"]),
                     weights=weights, force=True)
    return summarise(result.labels, result.affine, paths, seconds, table=read_ctbl(paths["table"]),
                     report=report)


def summarise(labels: np.ndarray, affine: np.ndarray, paths: dict[str, Path], seconds: float, *,
              table: ColorTable | None = None, report: bool = True) -> str:
    """A few lines a researcher reads first: sizes, the largest regions by name, time, files."""
    voxel_mm3 = abs(float(np.linalg.det(affine[:3, :3])))
    ids, counts = np.unique(labels, return_counts=True)
    foreground = counts[ids != 0].sum()
    named = {int(i) for i in ids if i != 0 and (table is None or int(i) in table.ids)}
    biggest = sorted(((c, i) for c, i in zip(counts, ids) if int(i) in named), reverse=True)[:5]
    unnamed_cm3 = sum(c for c, i in zip(counts, ids) if i != 0 and int(i) not in named) * voxel_mm3 / 1000

    def name(label: int) -> str:
        return table.name(int(label)) if table is not None else f"label {label}"

    lines = [
        f"input:   {paths['input']} {tuple(labels.shape)} voxels of {voxel_mm3:.3g} mm^3",
        f"labels:  {len(ids) - (0 in ids)} of 159 non-background labels, "
        f"{foreground * voxel_mm3 / 1000:.1f} cm^3 labelled"
        + (f" ({unnamed_cm3:.1f} cm^3 in labels the table leaves unnamed: GIF's non-brain classes)"
           if unnamed_cm3 else ""),
        "largest regions (cm^3): " + ", ".join(f"{name(i)} {c * voxel_mm3 / 1000:.1f}" for c, i in biggest),
        f"time:    {seconds:.1f} s",
        f"output:  {paths['labels']} (label names: {paths['table'].name}, volumes: {paths['volumes'].name})",
    ]
    if report:
        lines.append(f"report:  {paths['report'] / 'index.html'}")
    return "\n".join(lines)
