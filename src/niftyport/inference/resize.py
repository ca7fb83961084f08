"""``window_sampling = resize``: the whole volume as one window, zoomed there and back.

NiftyNet's resize sampler (``niftynet/engine/sampler_resize_v2.py``) zooms
the padded, normalised volume of each subject to the window of the image
sections (``spatial_window_size``; the ``[INFERENCE]`` one is not passed to
it), each modality with ``scipy.ndimage.zoom`` and the *first* image
section's ``interp_order``, and leaves a volume already of the window's
size alone. Its aggregator (``windows_aggregator_resize.py``) pads the
network's output by ``[INFERENCE] border`` voxels per side (``np.pad``,
``mode='edge'``; nothing when the border is 0) and zooms it back to the
padded volume's shape with ``output_interp_order``; un-padding and the way
back to the input's grid follow (:func:`~niftyport.preprocessing.restore_output`).

Exactness rests on doing the same ``scipy.ndimage.zoom`` calls with the same
float zoom factors, ``target / size`` per axis computed in Python floats as
NiftyNet does. What scipy does with them (``mode='constant'``,
``grid_mode=False``, ``prefilter=True``, the defaults, scipy >= 1.6 here and
1.17 in the tests): the output shape is ``round(size * zoom)`` (so exactly
the target), and output voxel ``i`` samples the input at
``i * (size - 1) / (target - 1)`` -- the first and last voxel centres
stay aligned (corner alignment), whatever the zoom's rounding;
``order=0`` takes the nearest voxel, ``order=1`` interpolates linearly
between the two neighbours; orders 2 and 3 go through scipy's spline
prefilter (``mirror`` boundary), whose arithmetic then has to be scipy's own.
``tests/test_segment.py`` pins the shape rule and the corner-aligned
linear and nearest sampling against closed forms.

Arrays: ``(X, Y, Z, C)`` channels last (NiftyNet's layout), voxel-index space
of the padded network volume.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.ndimage
import torch

from ..errors import OptionError
from .windows import post_process


def zoom_factors(target: Sequence[int], shape: Sequence[int]) -> list[float]:
    """NiftyNet's zoom ratio: ``float(target) / float(size)`` per spatial axis.

    >>> zoom_factors((144, 144, 144), (288, 96, 144))
    [0.5, 1.5, 1.0]
    """
    return [float(p) / float(d) for p, d in zip(target[:3], shape[:3])]


def zoom_channels(volume: np.ndarray, target: Sequence[int], order: int) -> np.ndarray:
    """Each channel of ``(X, Y, Z, C)`` zoomed to ``target`` ``(x, y, z)``; same dtype, ``(x, y, z, C)``.

    NiftyNet's ``zoom_3d`` (one ``scipy.ndimage.zoom`` per 3-D channel).

    >>> zoom_channels(np.arange(8, dtype=np.float32).reshape(2, 2, 2, 1), (3, 2, 2), 1)[:, 0, 0, 0].tolist()
    [0.0, 2.0, 4.0]
    """
    target = tuple(int(t) for t in target[:3])
    factors = zoom_factors(target, volume.shape)
    out = np.stack([scipy.ndimage.zoom(volume[..., c], factors, order=int(order))
                    for c in range(volume.shape[-1])], axis=-1)
    if out.shape[:3] != target:  # round(n * (t / n)) == t for any size here; guard anyway
        raise OptionError(f"zooming {volume.shape[:3]} to {target} gave {out.shape[:3]}")
    return out


def resize_input(volume: np.ndarray, window: Sequence[int], interp_order: int) -> np.ndarray:
    """The resize sampler's window: ``volume`` ``(X, Y, Z, C)`` zoomed to ``window`` (or itself if that size)."""
    if tuple(volume.shape[:3]) == tuple(int(w) for w in window[:3]):
        return volume
    return zoom_channels(volume, window, interp_order)


def resize_output(window_output: np.ndarray, padded_shape: Sequence[int], *, border: Sequence[int],
                  output_interp_order: int) -> np.ndarray:
    """The resize aggregator: an output window back to the padded volume's spatial shape.

    ``window_output``: ``(x, y, z)`` labels or ``(x, y, z, K)`` maps. With a
    positive ``border``, first padded by ``border`` voxels on each side of
    each spatial axis with the edge values; then zoomed with
    ``output_interp_order``. Returns ``padded_shape[:3]`` (``+ (K,)``), same dtype.
    """
    out = window_output if window_output.ndim == 4 else window_output[..., None]
    border = tuple(int(b) for b in border)
    if any(b > 0 for b in border):
        out = np.pad(out, [(b, b) for b in border] + [(0, 0)], mode="edge")
    out = zoom_channels(out, padded_shape, output_interp_order)
    return out if window_output.ndim == 4 else out[..., 0]


def run_resized(model: torch.nn.Module, volume: np.ndarray, *, window: Sequence[int], interp_order: int,
                output_interp_order: int, border: Sequence[int], output: str = "labels",
                device: str | torch.device = "cpu") -> np.ndarray:
    """One subject through the resize sampler, the network and the resize aggregator.

    ``volume``: float32 ``(X, Y, Z, C)``, the padded, normalised network
    input. Returns int32 labels ``(X, Y, Z)`` or float32 probabilities
    ``(X, Y, Z, K)`` in the padded space.
    """
    if volume.ndim != 4:
        raise OptionError(f"volume of shape {volume.shape}: expected (X, Y, Z, C)")
    resized = resize_input(volume, window, interp_order)
    x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(resized, -1, 0)[None], dtype=np.float32))
    with torch.inference_mode():
        out = post_process(model(x.to(torch.device(device))), output)[0]
    return resize_output(out, volume.shape[:3], border=border, output_interp_order=output_interp_order)
