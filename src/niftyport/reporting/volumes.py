"""Label volumes of a parcellation: voxel counts, mm^3 from the header, left/right pairs.

Label maps are integer arrays in voxel-index space; a voxel's volume in mm^3 is
the product of the header's voxel sizes (``pixdim``), converted to millimetres
from the header's spatial unit, so anisotropic voxels count correctly.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .colortable import ColorTable, fallback_table
from ..outputs import write_text_atomic
from ..errors import ImageError

#: NIfTI spatial units (``xyzt_units``) in millimetres; "unknown" is taken as mm.
_UNIT_MM = {"mm": 1.0, "meter": 1000.0, "micron": 0.001, "unknown": 1.0}

#: Above this label value, counts use np.unique instead of np.bincount (memory).
_BINCOUNT_MAX = 1 << 20


@dataclass(frozen=True)
class LabelImage:
    """A label map read from disk.

    ``data``: int64 ``(X, Y, Z)`` label per voxel, voxel-index space.
    ``affine``: float64 ``(4, 4)`` voxel index -> RAS+ mm world.
    ``voxel_mm3``: volume of one voxel in mm^3.
    """

    path: Path
    data: np.ndarray
    affine: np.ndarray
    voxel_mm3: float


def voxel_volume_mm3(header) -> float:
    """Volume of one voxel in mm^3 from a NIfTI header: ``prod(pixdim[1:4])`` in mm.

    >>> import nibabel as nib
    >>> h = nib.Nifti1Header(); h.set_data_shape((2, 2, 2)); h.set_zooms((1.0, 2.0, 3.0))
    >>> voxel_volume_mm3(h)
    6.0
    """
    zooms = [abs(float(z)) for z in header.get_zooms()[:3]]
    zooms += [1.0] * (3 - len(zooms))
    try:
        unit = header.get_xyzt_units()[0]
    except AttributeError:  # not a NIfTI header (e.g. Analyze): mm by convention
        unit = "mm"
    return float(np.prod(zooms)) * _UNIT_MM.get(unit, 1.0) ** 3


def as_label_array(data: np.ndarray, *, name: str = "label map") -> np.ndarray:
    """Check and convert a label map to int64 ``(X, Y, Z)``.

    Trailing singleton axes (``(X, Y, Z, 1)``) are dropped. Raises
    :class:`~niftyport.errors.ImageError` unless the values are finite,
    non-negative whole numbers.
    """
    data = np.asarray(data)
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ImageError(f"{name}: expected a 3-D label map, got shape {data.shape}"
                         + ("; several volumes are not one label map" if data.ndim == 4 else ""))
    if data.dtype.kind == "b":
        return data.astype(np.int64)
    if data.dtype.kind == "f":
        if not np.all(np.isfinite(data)):
            raise ImageError(f"{name}: label map holds NaN or infinite values")
        rounded = np.rint(data)
        if not np.array_equal(rounded, data):
            bad = float(data[rounded != data].flat[0])
            raise ImageError(f"{name}: label map holds non-integer value {bad:g}; is it an intensity image?")
        data = rounded
    elif data.dtype.kind not in "iu":
        raise ImageError(f"{name}: label map has non-numeric dtype {data.dtype}")
    data = data.astype(np.int64)
    if data.size and data.min() < 0:
        raise ImageError(f"{name}: label map holds negative label {int(data.min())}")
    return data


def load_label_image(path: str | os.PathLike, *, max_bytes: int | None = None) -> LabelImage:
    """Read a label map in any volume format nibabel reads (NIfTI, MGH/MGZ, Analyze).

    The header's size is checked against the file and ``max_bytes`` before
    any voxel is read (:func:`~niftyport.image_io.open_image`); every problem
    raises :class:`~niftyport.errors.ImageError` starting with the file.
    """
    from ..image_io import open_image, read_voxels

    path = Path(path)
    image = open_image(path, max_bytes=max_bytes)
    data = read_voxels(image, str(path))
    return LabelImage(path, as_label_array(data, name=str(path)),
                      np.asarray(image.affine, dtype=np.float64),
                      voxel_volume_mm3(image.header))


def label_counts(labels: np.ndarray) -> dict[int, int]:
    """Voxels per label value present in ``labels`` (any shape, non-negative ints).

    >>> label_counts(np.array([0, 3, 3, 1]))
    {0: 1, 1: 1, 3: 2}
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        return {}
    if int(labels.max()) < _BINCOUNT_MAX:
        counts = np.bincount(labels.ravel())
        present = np.flatnonzero(counts)
        return {int(v): int(counts[v]) for v in present}
    values, counts = np.unique(labels, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts)}


@dataclass(frozen=True)
class LabelVolume:
    """Volume of one label; ``side`` is ``"right"``, ``"left"`` or ``""`` (from the name).

    ``contralateral`` is the id of the same structure on the other side (by name),
    with its volume in ``contralateral_mm3`` (0 when absent from the map), and
    ``asymmetry`` = (right - left) / mean(right, left), the same number on both rows
    of a pair (NaN when both are empty; None when the label has no pair).
    """

    id: int
    name: str
    voxels: int
    mm3: float
    side: str = ""
    contralateral: int | None = None
    contralateral_mm3: float | None = None
    asymmetry: float | None = None


def label_volumes(labels: np.ndarray, voxel_mm3: float, table: ColorTable | None = None,
                  *, include_background: bool = False) -> list[LabelVolume]:
    """Per-label voxel counts and volumes, sorted by id.

    ``labels``: non-negative integer array ``(X, Y, Z)``; ``voxel_mm3``: volume of
    one voxel in mm^3. Label 0 (background) is left out unless ``include_background``,
    so the volumes add up to the labelled volume. Names and pairs come from ``table``
    (the built-in palette's ``"label <id>"`` names when None).
    """
    counts = label_counts(labels)
    if table is None:
        table = fallback_table(counts)
    pairs = {}
    for pair in table.pairs():
        pairs[pair.right] = pair.left
        pairs[pair.left] = pair.right
    out = []
    for label, voxels in sorted(counts.items()):
        if label == 0 and not include_background:
            continue
        mm3 = voxels * voxel_mm3
        other = pairs.get(label)
        other_mm3 = asym = None
        side = table.side(label)
        if other is not None:
            other_mm3 = counts.get(other, 0) * voxel_mm3
            right, left = (mm3, other_mm3) if side == "right" else (other_mm3, mm3)
            asym = (right - left) / ((right + left) / 2) if right + left > 0 else float("nan")
        out.append(LabelVolume(label, table.name(label), voxels, mm3, side, other, other_mm3, asym))
    return out


VOLUME_COLUMNS = ("id", "name", "side", "voxels", "mm3",
                  "contralateral_id", "contralateral_mm3", "asymmetry")


def format_volumes_csv(volumes: list[LabelVolume]) -> str:
    """CSV text with one row per label (columns :data:`VOLUME_COLUMNS`).

    Numbers are written with 10 significant digits; empty cells where a label
    has no left/right partner.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(VOLUME_COLUMNS)
    for v in volumes:
        writer.writerow([
            v.id, v.name, v.side, v.voxels, _num(v.mm3),
            "" if v.contralateral is None else v.contralateral,
            "" if v.contralateral_mm3 is None else _num(v.contralateral_mm3),
            "" if v.asymmetry is None else _num(v.asymmetry),
        ])
    return buffer.getvalue()


def _num(x: float) -> str:
    return f"{x:.10g}"


def write_volumes_csv(volumes: list[LabelVolume], path: str | os.PathLike) -> Path:
    """Write :func:`format_volumes_csv` to ``path`` atomically."""
    path = Path(path)
    write_text_atomic(path, format_volumes_csv(volumes))
    return path
