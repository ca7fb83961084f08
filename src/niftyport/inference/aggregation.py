"""Stitching window outputs into a volume, as NiftyNet's grid aggregator does.

Follows ``niftynet/engine/windows_aggregator_grid.py`` and ``crop_batch`` in
``niftynet/engine/windows_aggregator_base.py``: each output window loses
``border`` voxels on every side and is written into a zero volume of the
padded shape. Writes *overwrite*: where cropped windows overlap, the window
written last wins, so the emission order of :mod:`niftyport.sampling`
decides those voxels.
"""
from __future__ import annotations

import numpy as np

from ..errors import OptionError


def cropped_location(location: np.ndarray, border: tuple[int, int, int]) -> np.ndarray:
    """Location rows ``(x0, y0, z0, x1, y1, z1)`` shrunk by ``border`` on every side.

    >>> cropped_location(np.array([[0, 60, 0, 64, 124, 64]]), (2, 2, 2)).tolist()
    [[2, 62, 2, 62, 122, 62]]
    """
    border = np.asarray(border, dtype=np.int64)
    location = np.asarray(location, dtype=np.int64)
    return np.concatenate([location[..., :3] + border, location[..., 3:] - border], axis=-1)


def crop_window(window: np.ndarray, border: tuple[int, int, int]) -> np.ndarray:
    """The centre of one output window ``(..., wx, wy, wz)`` without its border (a view)."""
    bx, by, bz = border
    wx, wy, wz = window.shape[-3:]
    return window[..., bx:wx - bx, by:wy - by, bz:wz - bz]


def output_offset(output_shape, window_shape, border) -> tuple[int, int, int]:
    """Where NiftyNet's aggregator starts reading a network output window, per spatial axis.

    ``crop_batch`` (``niftynet/engine/windows_aggregator_base.py``) keeps
    ``window - 2 * border`` voxels of every output window (its location
    shrunk by ``border``), taken from the centre of the output:
    ``offset = floor((output - (window - 2 * border)) / 2)``. When the
    output has the window's size the offset is ``border``; a network whose
    output is smaller than its input (UNet3D: ``window - 88``) needs a
    border of at least half the difference, else NiftyNet stops with a
    ValueError -- here :class:`~niftyport.errors.OptionError`.

    Shapes are spatial ``(x, y, z)`` in voxels.

    >>> output_offset((64, 64, 64), (64, 64, 64), (2, 2, 2))
    (2, 2, 2)
    >>> output_offset((8, 8, 8), (96, 96, 96), (44, 44, 44))    # UNet3D, the smallest border
    (0, 0, 0)
    >>> output_offset((8, 8, 8), (96, 96, 96), (46, 45, 44))    # a centre crop of the output
    (2, 1, 0)
    """
    offsets = []
    for out, win, b in zip(output_shape[:3], window_shape[:3], border):
        kept = int(win) - 2 * int(b)
        if kept < 1:
            raise OptionError(f"border {tuple(border)} leaves nothing of the window {tuple(window_shape[:3])}")
        left = (int(out) - kept) // 2
        if left < 0:
            raise OptionError(
                f"the network's output window {tuple(output_shape[:3])} is smaller than the input window "
                f"{tuple(window_shape[:3])} minus twice the border {tuple(border)}: NiftyNet refuses this too; "
                f"use [INFERENCE] border >= {tuple(max(0, -(-(w - o) // 2)) for w, o in zip(window_shape, output_shape))}")
        offsets.append(left)
    return tuple(offsets)  # type: ignore[return-value]


class GridAggregator:
    """Collects window outputs into a volume of the padded shape, as NiftyNet's grid aggregator.

    Args:
        shape: spatial shape ``(X, Y, Z)`` of the padded volume.
        border: voxels cropped from each side of each window's location.
        dtype: output dtype (NiftyNet writes int32 labels, float32 probabilities).
        channels: ``None`` for a ``(X, Y, Z)`` volume (labels), else the
            number of channels of a ``(X, Y, Z, channels)`` volume
            (probabilities, NiftyNet's channels-last layout).
        fill: the value of voxels no window writes (``[INFERENCE]
            fill_constant``, cast to ``dtype``; NiftyNet's volume starts at 0).

    Call :meth:`add` once per window in NiftyNet's emission order; where
    cropped windows overlap the last one written wins.

    >>> agg = GridAggregator((6, 4, 4), (1, 1, 1))
    >>> agg.add(np.full((4, 4, 4), 7), (0, 0, 0, 4, 4, 4))
    >>> agg.add(np.full((4, 4, 4), 9), (2, 0, 0, 6, 4, 4))
    >>> agg.volume[:, 1, 1].tolist()  # the later window overwrote x = 3
    [0, 7, 7, 9, 9, 0]
    """

    def __init__(self, shape: tuple[int, int, int], border: tuple[int, int, int], *,
                 dtype=np.int32, channels: int | None = None, fill: float = 0.0):
        self.border = tuple(int(b) for b in border)
        full = tuple(int(s) for s in shape) + (() if channels is None else (int(channels),))
        self.volume = np.zeros(full, dtype=dtype)
        if fill != 0.0:
            self.volume[...] = fill

    def add(self, window: np.ndarray, location) -> None:
        """Write one output window whose input came from ``location`` ``(x0, y0, z0, x1, y1, z1)``.

        ``window``: ``(ox, oy, oz)`` or, with channels, ``(ox, oy, oz, K)``;
        its spatial size may be smaller than the input window's (see
        :func:`output_offset`).
        """
        location = np.asarray(location, dtype=np.int64)
        x0, y0, z0, x1, y1, z1 = cropped_location(location, self.border)
        size = tuple(int(n) for n in location[3:] - location[:3])
        ox, oy, oz = output_offset(window.shape[:3], size, self.border)
        self.volume[x0:x1, y0:y1, z0:z1] = window[ox:ox + x1 - x0, oy:oy + y1 - y0, oz:oz + z1 - z0]
