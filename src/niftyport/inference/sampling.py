"""Where the windows go: NiftyNet's grid sampler, reimplemented.

Follows ``niftynet/engine/sampler_grid_v2.py`` (``grid_spatial_coordinates``
and ``_enumerate_step_points``). A window location is a row
``(x0, y0, z0, x1, y1, z1)`` of voxel indices into the padded volume, end
exclusive, so ``volume[x0:x1, y0:y1, z0:z1]`` is the window.

Worked example for one axis of length 100, window 64, border 2
(step = 64 - 2 * 2 = 60)::

    starts while the window fits: 0          (60 + 64 > 100)
    plus the last possible start: 100 - 64 = 36
    two starts remain, so their rounded mean is appended last: 18
    -> (0, 36, 18)
"""
from __future__ import annotations

import numpy as np

from ..errors import NiftyportError

#: NiftyNet's HighRes3DNet dilates with space-to-batch and needs sides divisible by 8.
WINDOW_MULTIPLE = 8


def axis_starts(length: int, window: int, step: int) -> np.ndarray:
    """Window start indices along one axis, in NiftyNet's order.

    Args:
        length: size of the (padded) volume along the axis, in voxels.
        window: window side along the axis, in voxels.
        step: distance between consecutive starts (``window - 2 * border``);
            NiftyNet raises anything below 1 to 1.

    Returns:
        int64 array of unique starts: ``0, step, 2 * step, ...`` while the window
        fits, then ``max(length - window, 0)``; if exactly two starts remain,
        ``round(mean)`` of them is appended last.

    >>> axis_starts(100, 64, 60).tolist()
    [0, 36, 18]
    >>> axis_starts(174, 64, 60).tolist()
    [0, 60, 110]
    >>> axis_starts(64, 64, 60).tolist()
    [0]
    """
    step = max(int(step), 1)
    window = max(int(window), 1)
    starts = list(range(0, length - window + 1, step))
    starts.append(max(length - window, 0))
    unique = sorted(set(starts))
    if len(unique) == 2:
        # np.round rounds halves to even, as NiftyNet does
        unique.append(int(np.round(np.mean(unique))))
    ordered = list(dict.fromkeys(unique))  # de-duplicate, keep first occurrence
    return np.asarray(ordered, dtype=np.int64)


def grid_locations(shape: tuple[int, int, int], window: tuple[int, int, int],
                   border: tuple[int, int, int]) -> np.ndarray:
    """All window locations over a volume, in the order NiftyNet emits them.

    Args:
        shape: spatial shape ``(X, Y, Z)`` of the padded volume.
        window: window shape ``(wx, wy, wz)``; each side must fit in ``shape``.
        border: voxels cropped from each side of each output window.

    Returns:
        int64 array ``(n, 6)`` of rows ``(x0, y0, z0, x1, y1, z1)``. NiftyNet
        combines the axes with ``np.meshgrid`` in its default ``'xy'``
        indexing, so y varies slowest, then x, then z fastest.

    >>> grid_locations((100, 64, 64), (64, 64, 64), (2, 2, 2))[:, 0].tolist()
    [0, 36, 18]
    """
    shape = tuple(int(s) for s in shape)
    window = tuple(int(w) for w in window)
    border = tuple(int(b) for b in border)
    for axis, (s, w) in enumerate(zip(shape, window)):
        if w > s:
            raise NiftyportError(
                f"spatial_window_size {window} does not fit in the padded volume {shape} "
                f"along axis {axis}: use a window of at most {s // WINDOW_MULTIPLE * WINDOW_MULTIPLE}")
    starts = [axis_starts(s, w, w - 2 * b) for s, w, b in zip(shape, window, border)]
    sx, sy, sz = np.meshgrid(*starts)  # indexing='xy': arrays of shape (ny, nx, nz)
    first = np.stack([sx.ravel(), sy.ravel(), sz.ravel()], axis=1)
    return np.concatenate([first, first + np.asarray(window)], axis=1)


def batch_emission_order(n_locations: int, batch_size: int) -> np.ndarray:
    """Indices of the windows in the order NiftyNet runs and writes them.

    NiftyNet fills the last batch by repeating windows from the start, and the
    aggregator writes the repeats too, so with overlapping outputs they win.

    >>> batch_emission_order(5, 2).tolist()
    [0, 1, 2, 3, 4, 0]
    """
    if batch_size < 1:
        raise NiftyportError(f"batch_size must be at least 1, got {batch_size}")
    total = -(-n_locations // batch_size) * batch_size
    return np.arange(total) % n_locations


def check_window(window: tuple[int, int, int], border: tuple[int, int, int]) -> None:
    """Reject windows HighRes3DNet cannot take in NiftyNet, or borders that crop everything."""
    for w, b in zip(window, border):
        if w < 1 or w % WINDOW_MULTIPLE:
            raise NiftyportError(
                f"spatial_window_size {tuple(window)}: every side must be a positive multiple "
                f"of {WINDOW_MULTIPLE} (HighRes3DNet's constraint in NiftyNet)")
        if b < 0 or 2 * b >= w:
            raise NiftyportError(
                f"border {tuple(border)} must be >= 0 and less than half the window {tuple(window)}")
