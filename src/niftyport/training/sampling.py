"""Where training windows go: NiftyNet 0.6.0's window-centre choices, as pure functions over arrays.

Each function returns ``(n, 3)`` int window *centres* in voxel indices of the
volume ``(X, Y, Z)``; :func:`centres_to_corners` turns them into the corners
``max(centre - floor(window / 2), 0)`` NiftyNet's ``UniformSampler``
crops at (``_spatial_coordinates_generator`` in
``niftynet/engine/sampler_uniform_v2.py``).

* :func:`uniform_centres` -- ``rand_spatial_coordinates``
  (``sampler_uniform_v2.py``): each axis' corner uniform in
  ``[0, max(shape - window, 0)]``;
* :func:`weighted_centres` -- ``weighted_spatial_coordinates``
  (``sampler_weighted_v2.py``): the cumulative histogram of the sampler
  map (cropped to where a centre keeps the window inside; shifted to start
  at 0 only when it has negative values), ``n`` stratified draws: draw ``s``
  takes the threshold ``1 - (u + s) / n``, ``s = 0 .. n-1``, so each draw
  covers its own ``1 / n`` of the cumulative mass and, over the ``n`` draws,
  a centre is drawn with probability proportional to the map;
* :func:`balanced_centres` -- ``balanced_spatial_coordinates``
  (``sampler_balanced_v2.py``): a multinomial count per distinct value of
  the cropped map (each equally likely), then centres drawn with
  replacement among that value's voxels, grouped by value in ascending order.

:func:`weighted_probabilities` gives the exact probabilities of each
draw. For an even window size the cropped map (:func:`sampling_box`) leaves
out the last corner position ``shape - window``, as NiftyNet's
``crop_sampling_map`` does. (Later NiftyNet versions changed the weighted
draws to ``1 - (u + s) / (n + 1)`` and always subtract the minimum; 0.6.0's
are the ones here.)

Departure: NiftyNet draws from NumPy's global ``np.random``; here from the
:class:`numpy.random.Generator` passed in (``random``, ``integers``,
``multinomial``, ``choice`` in place of ``random``, ``randint``,
``multinomial``, ``choice``).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import TrainingError

__all__ = ["SAMPLERS", "balanced_centres", "centres_to_corners", "sampling_box", "uniform_centres",
           "weighted_centres", "weighted_probabilities", "window_centres"]

#: ``[NETWORK] window_sampling`` values niftyport trains with.
SAMPLERS = ("uniform", "weighted", "balanced")


def _check_fits(shape: np.ndarray, window: np.ndarray) -> None:
    if np.any(window > shape):
        raise TrainingError(f"spatial_window_size {tuple(int(w) for w in window)} is larger than the volume "
                            f"{tuple(int(s) for s in shape)} (after padding)")


def uniform_centres(n: int, shape: Sequence[int], window: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """``(n, 3)`` centres: corner uniform in ``[0, shape - window]`` per axis, plus ``floor(window / 2)``.

    >>> uniform_centres(2, (10, 8, 8), (10, 4, 8), np.random.default_rng(0))[:, [0, 2]].tolist()
    [[5, 4], [5, 4]]
    """
    shape, window = np.asarray(shape[:3], dtype=np.int64), np.asarray(window[:3], dtype=np.int64)
    _check_fits(shape, window)
    corners = np.stack([rng.integers(0, max(s - w + 1, 1), size=n) for s, w in zip(shape, window)], axis=1)
    return corners + window // 2


def sampling_box(shape: Sequence[int], window: Sequence[int]) -> tuple[slice, slice, slice]:
    """The part of a sampler map where a window centre may fall (``crop_sampling_map``, ``sampler_weighted_v2.py``).

    Per axis ``[floor(w / 2), shape - w + int(w / 2 + 0.6))``, one voxel
    when that is empty: for odd ``w`` every corner ``0 .. shape - w``; for
    even ``w`` all but the last.

    >>> sampling_box((10, 10, 10), (4, 5, 10))
    (slice(2, 8, None), slice(2, 8, None), slice(5, 6, None))
    """
    box = []
    for w, s in zip(window[:3], shape[:3]):
        start, end = int(w / 2.0), int(s) - int(w) + int(w / 2.0 + 0.6)
        box.append(slice(start, end + 1 if start == end else end))
    return tuple(box)


def _cropped(sampler_map: np.ndarray, shape: Sequence[int], window: Sequence[int]) -> np.ndarray:
    shape_a, window_a = np.asarray(shape[:3], dtype=np.int64), np.asarray(window[:3], dtype=np.int64)
    _check_fits(shape_a, window_a)
    if tuple(sampler_map.shape[:3]) != tuple(int(s) for s in shape[:3]):
        raise TrainingError(f"the sampler map's grid {tuple(sampler_map.shape[:3])} differs from the image's "
                            f"{tuple(int(s) for s in shape[:3])}")
    return np.asarray(sampler_map)[sampling_box(shape, window)]


def _sorted_cumulative(cropped: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """``(sorting indices, cumulative normalised sorted map, normaliser)``; a map with negative values
    is shifted to start at 0 first."""
    flat = cropped.reshape(-1)
    minimum = np.min(flat)
    if minimum < 0:
        flat = flat - minimum
    normaliser = flat.sum()
    order = np.argsort(flat)
    with np.errstate(invalid="ignore", divide="ignore"):   # a constant map: unused, NiftyNet draws uniformly
        return order, np.cumsum(np.true_divide(flat[order], normaliser)), normaliser


def weighted_centres(n: int, shape: Sequence[int], window: Sequence[int], sampler_map: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """``(n, 3)`` centres drawn from ``sampler_map`` ``(X, Y, Z)`` by NiftyNet's cumulative histogram.

    Draw ``s`` takes the first sorted voxel whose cumulative share reaches
    ``1 - (u + s) / n``, ``u`` uniform in ``[0, 1)``; a map that sums to 0
    falls back to a uniform voxel of the cropped map.
    """
    cropped = _cropped(sampler_map, shape, window)
    order, cumulative, normaliser = _sorted_cumulative(cropped)
    centres = np.zeros((n, 3), dtype=np.int64)
    for s in range(n):
        ratio = 1 - (rng.random() + s) / n
        index = rng.integers(len(cumulative)) if normaliser == 0 else int(np.argmax(cumulative >= ratio))
        centres[s] = np.unravel_index(order[index], cropped.shape)
    return centres + np.asarray(window[:3], dtype=np.int64) // 2


def weighted_probabilities(sampler_map: np.ndarray, window: Sequence[int], n: int, s: int) -> np.ndarray:
    """The probability of each centre for draw ``s`` of ``n`` in :func:`weighted_centres`, ``sampler_map``'s shape.

    Draw ``s``'s threshold is uniform on ``(1 - (s + 1) / n, 1 - s / n]``;
    voxel ``k`` (in sorted order) is chosen when the threshold lies in
    ``(c[k-1], c[k]]`` of the cumulative shares ``c``. Zero outside :func:`sampling_box`;
    the mean over ``s`` is the map divided by its sum.
    """
    shape = sampler_map.shape[:3]
    cropped = _cropped(sampler_map, shape, window)
    order, cumulative, normaliser = _sorted_cumulative(cropped)
    if normaliser == 0:
        inside = np.full(cropped.size, 1.0 / cropped.size)
    else:
        low, high = 1 - (s + 1) / n, 1 - s / n
        edges = np.concatenate([[-np.inf], cumulative])
        overlap = np.clip(np.minimum(edges[1:], high) - np.maximum(edges[:-1], low), 0, None)
        inside = np.zeros(cropped.size)
        inside[order] = overlap / (high - low)
    out = np.zeros(shape)
    out[sampling_box(shape, window)] = inside.reshape(cropped.shape)
    return out


def balanced_centres(n: int, shape: Sequence[int], window: Sequence[int], sampler_map: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """``(n, 3)`` centres: each distinct value of the cropped ``sampler_map`` equally likely, then a voxel of it."""
    cropped = _cropped(sampler_map, shape, window)
    flat = cropped.reshape(-1)
    values = np.unique(flat)
    counts = rng.multinomial(n, [1.0 / len(values)] * len(values))
    chosen = [rng.choice(np.flatnonzero(flat == value), size=count, replace=True)
              for value, count in zip(values, counts)]
    flat_index = np.concatenate(chosen).astype(np.int64)
    centres = np.stack(np.unravel_index(flat_index, cropped.shape), axis=1).reshape(n, 3)
    return centres + np.asarray(window[:3], dtype=np.int64) // 2


def window_centres(method: str, n: int, shape: Sequence[int], window: Sequence[int],
                   sampler_map: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """``(n, 3)`` centres by ``method`` (one of :data:`SAMPLERS`); ``sampler_map`` ``(X, Y, Z)`` for the last two."""
    if method == "uniform":
        return uniform_centres(n, shape, window, rng)
    if sampler_map is None:
        raise TrainingError(f"window_sampling = {method} needs a sampler map: name its input section "
                            "in [SEGMENTATION] sampler")
    if method == "weighted":
        return weighted_centres(n, shape, window, sampler_map, rng)
    if method == "balanced":
        return balanced_centres(n, shape, window, sampler_map, rng)
    raise TrainingError(f"window_sampling = {method}: not one of {', '.join(SAMPLERS)}")


def centres_to_corners(centres: np.ndarray, window: Sequence[int]) -> np.ndarray:
    """``max(centre - floor(window / 2), 0)``, ``(n, 3)``: the corner each window is cropped at.

    >>> centres_to_corners(np.array([[5, 2, 1]]), (4, 5, 3)).tolist()
    [[3, 0, 0]]
    """
    return np.maximum(centres - np.asarray(window[:3], dtype=np.int64) // 2, 0)
