"""Running the network over a preprocessed volume.

``niftynet`` mode reproduces NiftyNet's window-by-window inference: the grid
of :mod:`niftyport.sampling`, the argmax of each window's logits, and the
overwriting stitching of :mod:`niftyport.aggregation`, in NiftyNet's order.
Windows are independent, so they can be computed in any grouping
(``compute_batch``) and still be *written* in NiftyNet's order.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from .aggregation import GridAggregator
from .sampling import batch_emission_order, check_window, grid_locations

log = logging.getLogger(__name__)


def window_labels(model: torch.nn.Module, windows: torch.Tensor) -> torch.Tensor:
    """Labels of a batch of windows: argmax over the class channel.

    Args:
        model: maps ``(N, C, wx, wy, wz)`` float32 to logits ``(N, K, wx, wy, wz)``.
        windows: ``(N, C, wx, wy, wz)`` float32 network input.

    Returns:
        ``(N, wx, wy, wz)`` int32 labels, on the model's device. Ties go to the
        lowest class index, as with ``tf.argmax``.
    """
    with torch.inference_mode():
        return model(windows).argmax(dim=1).to(torch.int32)


def _batches(indices: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(indices), size):
        yield indices[start:start + size]


def _progress(iterable: Iterable, total: int, enabled: bool, desc: str):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, total=total, desc=desc, unit="window", leave=False)


def segment_grid(model: torch.nn.Module, volume: np.ndarray, *,
                 window: tuple[int, int, int], border: tuple[int, int, int],
                 batch_size: int = 1, compute_batch: int = 1,
                 device: str | torch.device = "cpu", progress: bool = False) -> np.ndarray:
    """Label a padded, normalised volume window by window, exactly as NiftyNet.

    Args:
        model: the network, in eval mode, already on ``device``.
        volume: ``(X, Y, Z)`` or ``(X, Y, Z, C)`` float32 network input (the
            whitened, padded volume in RAS voxel order).
        window: spatial window size, multiples of 8.
        border: voxels cropped from each side of each output window.
        batch_size: NiftyNet's ``batch_size``; it changes *which window is
            written last* (NiftyNet repeats windows to fill the last batch),
            so it is part of the exact semantics.
        compute_batch: how many windows go through the network at once; any
            value gives the same labels, larger ones use more memory.
        device: where the network runs.
        progress: show a progress bar over windows.

    Returns:
        ``(X, Y, Z)`` int32 labels of the padded volume; voxels within
        ``border`` of the volume's edge that no cropped window covers are 0.
    """
    if volume.ndim == 3:
        volume = volume[..., None]
    check_window(window, border)
    spatial = volume.shape[:3]
    locations = grid_locations(spatial, window, border)
    order = batch_emission_order(len(locations), batch_size)
    unique = np.unique(order)  # repeats give the same output: compute each window once
    log.info("%d windows of %s over a padded volume of %s", len(locations), window, spatial)

    # (C, X, Y, Z) so that a window slice is a (C, wx, wy, wz) network input
    source = torch.from_numpy(np.ascontiguousarray(np.moveaxis(volume, -1, 0), dtype=np.float32))
    outputs: dict[int, np.ndarray] = {}
    for chunk in _progress(_batches(unique, max(1, compute_batch)),
                           total=-(-len(unique) // max(1, compute_batch)),
                           enabled=progress, desc="windows"):
        batch = torch.stack([
            source[:, x0:x1, y0:y1, z0:z1]
            for x0, y0, z0, x1, y1, z1 in locations[chunk]
        ]).to(device)
        labels = window_labels(model, batch).cpu().numpy()
        for index, lab in zip(chunk, labels):
            outputs[int(index)] = lab

    aggregator = GridAggregator(spatial, border)
    for index in order:
        aggregator.add(outputs[int(index)], locations[index])
    return aggregator.volume
