"""Resample volumes to a voxel size and back, with NiftyNet's arithmetic.

NiftyNet (``niftynet/io/misc_io.py``: ``do_resampling``) resamples with
``scipy.ndimage.zoom(volume, zoom=pixdim / target_pixdim, order=interp_order)``
(default ``mode='constant'``, ``prefilter=True``), one 3-D volume at a
time, and skips the call entirely when the two voxel sizes are exactly
equal. ``scipy.ndimage.zoom`` makes the output shape
``round(shape * zoom)`` and then maps output voxel ``i`` to input coordinate
``i * (n_in - 1) / (n_out - 1)``: voxel centres of the first and last
voxels stay aligned, so the result depends on the shapes only (and on the
zoom being exactly 1, where scipy copies).

Going back (``save_data_array``, used by the aggregator), NiftyNet derives
the voxel size of the network output from the shapes,
``image_pixdim = original_pixdim * original_shape / output_shape``, and
resamples with ``zoom = image_pixdim / original_pixdim``;
:func:`resample_to_shape` reproduces this, including the float arithmetic
that decides whether the call is skipped.

All functions work in voxel-index space on ``(X, Y, Z)`` arrays; voxel sizes
are in mm, in the array's own axis order.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.ndimage

from ..errors import OptionError

#: Interpolation orders NiftyNet accepts (``interp_order`` choices).
INTERP_ORDERS = (0, 1, 2, 3)


def _check_order(order: int, name: str) -> int:
    if isinstance(order, bool) or int(order) != order or int(order) not in INTERP_ORDERS:
        raise OptionError(f"{name} = {order!r} must be one of {INTERP_ORDERS}")
    return int(order)


def zoom_factors(pixdim: Sequence[float], target_pixdim: Sequence[float]) -> np.ndarray:
    """``pixdim / target_pixdim`` per axis, float64, as NiftyNet computes it.

    ``pixdim`` is usually the header's float32 voxel sizes, promoted to
    float64 before the division (``np.divide`` on the two tuples).

    >>> zoom_factors(np.float32([1.5, 1.5, 2.0]), (1.0, 1.0, 1.0)).tolist()
    [1.5, 1.5, 2.0]
    """
    return np.divide(np.asarray(pixdim)[:3], np.asarray(target_pixdim, dtype=np.float64)[:3])


def resampled_shape(shape: Sequence[int], pixdim: Sequence[float],
                    target_pixdim: Sequence[float]) -> tuple[int, int, int]:
    """Spatial shape after :func:`resample_to_pixdim`: ``round(shape * pixdim / target)``.

    Python's ``round`` (half to even), as both NiftyNet and scipy use.

    >>> resampled_shape((77, 95, 80), (2.0, 2.0, 2.0), (1.0, 1.0, 1.0))
    (154, 190, 160)
    """
    if np.array_equal(np.asarray(target_pixdim)[:3], np.asarray(pixdim)[:3]):
        return tuple(int(n) for n in shape[:3])  # type: ignore[return-value]
    factors = zoom_factors(pixdim, target_pixdim)
    return tuple(int(round(n * f)) for n, f in zip(shape[:3], factors))  # type: ignore[return-value]


def resample_to_pixdim(data: np.ndarray, pixdim: Sequence[float], target_pixdim: Sequence[float],
                       *, order: int) -> np.ndarray:
    """Resample a volume from voxel size ``pixdim`` to ``target_pixdim`` (mm).

    ``data``: ``(X, Y, Z)`` array (float32 in the pipeline), voxel-index
    space; returns ``(round(X*fx), round(Y*fy), round(Z*fz))`` of the same
    dtype, or ``data`` itself when ``pixdim`` equals ``target_pixdim``
    exactly (NiftyNet skips resampling then). ``order``: spline order
    0-3 (the model zoo uses 0: nearest neighbour).
    """
    order = _check_order(order, "interp_order")
    if data.ndim != 3:
        raise ValueError(f"resample_to_pixdim expects a 3-D volume, got shape {data.shape}")
    if np.array_equal(np.asarray(target_pixdim)[:3], np.asarray(pixdim)[:3]):
        return data
    return scipy.ndimage.zoom(data, zoom_factors(pixdim, target_pixdim), order=order)


def resample_to_shape(data: np.ndarray, shape: Sequence[int], pixdim: Sequence[float],
                      *, order: int) -> np.ndarray:
    """Resample a volume back onto a grid of ``shape`` voxels of size ``pixdim``.

    The aggregator's inverse of :func:`resample_to_pixdim`: ``data`` is
    ``(x, y, z)`` (labels: int32, ``order=0``); ``shape`` is the wanted
    ``(X, Y, Z)`` in the same axis order; ``pixdim`` the voxel sizes of the
    destination grid. Returns ``data`` itself when the shapes already agree.

    NiftyNet quirk kept: ``pixdim`` may be given in any axis order (NiftyNet
    passes the header's, before reorientation); it cancels out except in
    the float rounding of ``(pixdim * ratio) / pixdim``, reproduced here.

    >>> labels = np.arange(8, dtype=np.int32).reshape(2, 2, 2)
    >>> resample_to_shape(labels, (4, 2, 2), (2.0, 1.0, 1.0), order=0)[:, 0, 0].tolist()
    [0, 0, 4, 4]
    """
    order = _check_order(order, "output_interp_order")
    if data.ndim != 3:
        raise ValueError(f"resample_to_shape expects a 3-D volume, got shape {data.shape}")
    dst_pixdim = np.asarray(pixdim)[:3]
    ratio = np.divide(np.asarray(shape[:3], dtype=np.float64),
                      np.asarray(data.shape, dtype=np.float64))
    image_pixdim = dst_pixdim * ratio
    if np.array_equal(dst_pixdim, image_pixdim):
        return data
    out = scipy.ndimage.zoom(data, np.divide(image_pixdim, dst_pixdim), order=order)
    if out.shape != tuple(shape[:3]):  # cannot happen for shapes < 2**50; guard anyway
        raise ValueError(f"resampling {data.shape} gave {out.shape}, not {tuple(shape[:3])}")
    return out
