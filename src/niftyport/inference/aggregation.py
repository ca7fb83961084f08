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


class GridAggregator:
    """Collects window outputs into a label volume of the padded shape.

    Args:
        shape: spatial shape ``(X, Y, Z)`` of the padded volume.
        border: voxels cropped from each side of each window.
        dtype: output dtype (NiftyNet writes int32 labels).

    Call :meth:`add` once per window in NiftyNet's emission order; voxels no
    window covers stay 0 (NiftyNet's zero-initialised image).

    >>> agg = GridAggregator((6, 4, 4), (1, 1, 1))
    >>> agg.add(np.full((4, 4, 4), 7), (0, 0, 0, 4, 4, 4))
    >>> agg.add(np.full((4, 4, 4), 9), (2, 0, 0, 6, 4, 4))
    >>> agg.volume[:, 1, 1].tolist()  # the later window overwrote x = 3
    [0, 7, 7, 9, 9, 0]
    """

    def __init__(self, shape: tuple[int, int, int], border: tuple[int, int, int], *,
                 dtype=np.int32):
        self.border = tuple(int(b) for b in border)
        self.volume = np.zeros(tuple(int(s) for s in shape), dtype=dtype)

    def add(self, window: np.ndarray, location) -> None:
        """Write one output window ``(wx, wy, wz)`` whose input came from ``location``."""
        x0, y0, z0, x1, y1, z1 = cropped_location(np.asarray(location), self.border)
        self.volume[x0:x1, y0:y1, z0:z1] = crop_window(window, self.border)
