"""Volume padding before windowing, and its inverse (NiftyNet's ``PadLayer``).

NiftyNet (``niftynet/layer/pad.py``) pads the three spatial axes with
``np.pad(volume, border, mode=volume_padding_mode)``. With the model zoo's
``mode='minimum'`` every line along an axis is padded with *that line's*
minimum, axis after axis (so corners take the minimum of already padded
lines) -- exactly what ``np.pad`` does, which is therefore used as is.

Two ways to say how much to pad:

* ``border`` (``volume_padding_size``): ``p`` voxels before and after on
  each axis;
* ``pad_to`` (``volume_padding_to_size``, when it is not ``(0,)``): pad up to
  that size, ``(d // 2, d - d // 2)`` with ``d = max(pad_to - size, 0)``;
  ``border`` is then ignored.

Un-padding crops with NiftyNet's rule: a side is cropped only when its
width is positive and smaller than half the padded size.

Arrays are ``(X, Y, Z)`` (or ``(X, Y, Z, ...)``: trailing axes are never
padded), voxel-index space.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import OptionError

#: Modes of ``np.pad`` that need no extra argument (``"empty"`` left out: undefined values).
PAD_MODES = ("constant", "edge", "linear_ramp", "maximum", "mean", "median", "minimum",
             "reflect", "symmetric", "wrap")

Border = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


def pad_widths(shape: Sequence[int], border: Sequence[int],
               pad_to: Sequence[int] = (0,)) -> Border:
    """``((before, after),) * 3`` spatial pad widths, NiftyNet's ``_set_full_border``.

    >>> pad_widths((77, 95, 80), (10, 10, 10))
    ((10, 10), (10, 10), (10, 10))
    >>> pad_widths((5, 8, 9), (10, 10, 10), pad_to=(8, 8, 8))
    ((1, 2), (0, 0), (0, 0))
    """
    if tuple(pad_to) != (0,):
        if len(pad_to) < 3:
            raise OptionError(f"volume_padding_to_size {tuple(pad_to)} needs 3 values (or (0,))")
        need = [max(int(t) - int(n), 0) for t, n in zip(pad_to[:3], shape[:3])]
        return tuple((d // 2, (d + 1) // 2) for d in need)  # type: ignore[return-value]
    if len(border) != 3 or any(int(b) < 0 for b in border):
        raise OptionError(f"volume_padding_size {tuple(border)} must be 3 non-negative integers")
    return tuple((int(b), int(b)) for b in border)  # type: ignore[return-value]


def pad(data: np.ndarray, border: Sequence[int], *, mode: str = "minimum",
        pad_to: Sequence[int] = (0,)) -> np.ndarray:
    """Pad the three spatial axes of ``data`` (``np.pad``), returning a new array.

    ``data``: ``(X, Y, Z)`` any dtype; returns ``(X + 2p, Y + 2p, Z + 2p)``
    for ``border = (p, p, p)``, same dtype.

    >>> pad(np.array([[[3.0, 1.0]], [[5.0, 7.0]]]), (0, 0, 1))[:, 0].tolist()
    [[1.0, 3.0, 1.0, 1.0], [5.0, 5.0, 7.0, 5.0]]
    """
    if mode not in PAD_MODES:
        raise OptionError(f"volume_padding_mode {mode!r} must be one of {PAD_MODES}")
    widths = pad_widths(data.shape, border, pad_to)
    widths = widths + ((0, 0),) * (data.ndim - 3)
    return np.pad(data, widths, mode=mode)


def unpad(data: np.ndarray, widths: Border) -> np.ndarray:
    """Remove padding of ``widths`` (from :func:`pad_widths`), NiftyNet's crop rule.

    ``data``: ``(X', Y', Z', ...)`` padded array; returns a view. A side of
    width ``w`` is removed only if ``0 < w < size / 2`` (``PadLayer._crop_numpy_array``).

    >>> unpad(np.zeros((30, 30, 30)), ((10, 10),) * 3).shape
    (10, 10, 10)
    """
    return data[unpad_slices(data.shape, widths)]


def unpad_slices(padded_shape: Sequence[int], widths: Border) -> tuple[slice, slice, slice]:
    """The spatial slices :func:`unpad` keeps of a volume of ``padded_shape``.

    >>> unpad_slices((30, 30, 12), ((10, 10), (10, 10), (6, 6)))
    (slice(10, 20, None), slice(10, 20, None), slice(0, 12, None))
    """
    slices = []
    for size, (before, after) in zip(padded_shape[:3], widths):
        start = before if size / 2 > before > 0 else 0
        stop = size - after if size / 2 > after > 0 else size
        slices.append(slice(start, stop))
    return tuple(slices)
