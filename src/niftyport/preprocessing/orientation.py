"""Reorient 3-D volumes between axis codes, as NiftyNet's reader does.

NiftyNet (``niftynet/io/misc_io.py``: ``compute_orientation``,
``do_reorientation``; ``niftynet/io/image_type.py``: ``SpatialImage3D``)
reads an image's axis codes from its affine with ``nib.aff2axcodes``, turns
both the image's and the configured codes (``axcodes = (R, A, S)`` in the
model zoo) into nibabel orientation arrays, and applies
``nib.orientations.apply_orientation`` with ``ornt_transform(start, end)``.
The inverse (aggregator, back to the input grid) swaps start and end.

Only axis permutations and flips are involved: values are never
interpolated, so reorientation is exact and invertible. Everything works in
voxel-index space; :func:`reoriented_affine` gives the voxel-to-world (RAS+
mm) affine of the reoriented array.

Axis codes are tuples such as ``('L', 'P', 'S')``: the world direction each
voxel axis points to (positive end).
"""
from __future__ import annotations

from collections.abc import Sequence

import nibabel as nib
import numpy as np
from nibabel import orientations as ornt

from ..errors import ImageError, OptionError

Axcodes = tuple[str, str, str]

#: NiftyNet's model-zoo target orientation.
RAS: Axcodes = ("R", "A", "S")

_PAIRS = {"L": "R", "R": "L", "P": "A", "A": "P", "I": "S", "S": "I"}


def check_axcodes(axcodes: Sequence[str], *, name: str = "axcodes") -> Axcodes:
    """Validate three axis codes naming the three world axes once each.

    >>> check_axcodes("las")
    ('L', 'A', 'S')
    >>> check_axcodes(("R", "L", "S"))
    Traceback (most recent call last):
    ...
    niftyport.errors.OptionError: axcodes ('R', 'L', 'S') must name each world axis once (L/R, P/A, I/S)
    """
    codes = tuple(str(c).strip().upper() for c in axcodes)
    if len(codes) != 3 or any(c not in _PAIRS for c in codes):
        raise OptionError(f"{name} {tuple(axcodes)!r} must be three of L, R, P, A, I, S")
    axes = {frozenset((c, _PAIRS[c])) for c in codes}
    if len(axes) != 3:
        raise OptionError(f"{name} {codes!r} must name each world axis once (L/R, P/A, I/S)")
    return codes  # type: ignore[return-value]


def affine_axcodes(affine: np.ndarray, *, name: str = "image") -> Axcodes:
    """Axis codes of a voxel-to-world affine (``nib.aff2axcodes``, as NiftyNet).

    ``affine``: ``(4, 4)`` float64, voxel index -> RAS+ mm. Raises
    :class:`ImageError` when an axis has no direction (a degenerate affine).

    >>> affine_axcodes(np.diag([-2.0, -2.0, 2.0, 1.0]))
    ('L', 'P', 'S')
    """
    codes = nib.aff2axcodes(np.asarray(affine, dtype=np.float64))
    if len(codes) != 3 or any(c is None for c in codes):
        raise ImageError(f"{name}: affine has no orientation for every voxel axis "
                         f"(axcodes {codes}); affine rows {np.asarray(affine)[:3].tolist()}")
    return tuple(codes)  # type: ignore[return-value]


def orientation_transform(from_axcodes: Sequence[str], to_axcodes: Sequence[str]) -> np.ndarray:
    """nibabel orientation ``(3, 2)`` taking an array in ``from_axcodes`` to ``to_axcodes``.

    Row ``i`` is ``[j, flip]``: input axis ``i`` becomes output axis ``j``,
    reversed when ``flip == -1`` (``nib.orientations.ornt_transform``).
    """
    start = ornt.axcodes2ornt(check_axcodes(from_axcodes, name="from_axcodes"))
    end = ornt.axcodes2ornt(check_axcodes(to_axcodes, name="to_axcodes"))
    return ornt.ornt_transform(start, end)


def reorient(data: np.ndarray, from_axcodes: Sequence[str], to_axcodes: Sequence[str]) -> np.ndarray:
    """Permute and flip the first three axes of ``data`` from one orientation to another.

    ``data``: ``(X, Y, Z, ...)`` any dtype, voxel-index space in
    ``from_axcodes``; returns the same values laid out in ``to_axcodes``
    (a view when possible, as ``nib.orientations.apply_orientation``).
    Identical codes return ``data`` itself, as NiftyNet does.

    >>> a = np.arange(6).reshape(1, 2, 3)
    >>> reorient(a, "LPS", "RAS")[0, :, 0].tolist()   # y reversed
    [3, 0]
    >>> reorient(a, "LPS", "PSL").shape
    (2, 3, 1)
    """
    if tuple(check_axcodes(from_axcodes)) == tuple(check_axcodes(to_axcodes)):
        return data
    return ornt.apply_orientation(data, orientation_transform(from_axcodes, to_axcodes))


def permute_like(values: Sequence, from_axcodes: Sequence[str], to_axcodes: Sequence[str]) -> tuple:
    """Reorder per-axis values (voxel sizes, shape) as :func:`reorient` moves the axes.

    NiftyNet does this for ``pixdim`` before resampling (``image_type.py``:
    ``pixdim[k] for k in ornt_transform(to, from)[:, 0]``).

    >>> permute_like((1.0, 2.0, 3.0), "RAS", "SRA")
    (3.0, 1.0, 2.0)
    """
    back = orientation_transform(to_axcodes, from_axcodes)
    return tuple(values[int(k)] for k in back[:, 0])


def reoriented_affine(affine: np.ndarray, shape: Sequence[int], from_axcodes: Sequence[str],
                      to_axcodes: Sequence[str]) -> np.ndarray:
    """Voxel-to-world affine of ``reorient(data, from_axcodes, to_axcodes)``.

    ``affine``: ``(4, 4)`` float64 of the input array, whose spatial
    ``shape`` is ``(X, Y, Z)`` in ``from_axcodes``. The world position of
    every voxel is unchanged (``affine @ nib.orientations.inv_ornt_aff``).
    """
    transform = orientation_transform(from_axcodes, to_axcodes)
    return np.asarray(affine, dtype=np.float64) @ ornt.inv_ornt_aff(transform, tuple(shape[:3]))
