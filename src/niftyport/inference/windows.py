"""Any network over NiftyNet's windows: the generic window loop of ``net_segment inference``.

What NiftyNet's segmentation application does at inference
(``niftynet/application/segmentation_application.py``), for any module:

* windows from the grid sampler (``niftynet/engine/sampler_grid_v2.py``:
  :func:`~niftyport.inference.sampling.grid_locations`), each image's list
  extended to a multiple of ``batch_size`` by repeating its first windows
  (:func:`~niftyport.inference.sampling.batch_emission_order`);
* batches of ``batch_size`` consecutive windows through the network, as
  NiftyNet composes them (a network whose normalisation uses batch
  statistics sees the same batches);
* the network output turned into labels (``tf.argmax`` over the classes,
  int32) or probabilities (``tf.nn.softmax``, float32) by NiftyNet's
  ``PostProcessingLayer`` (``niftynet/layer/post_processing.py``);
* every output window written, in that order, by the grid aggregator
  (:class:`~niftyport.inference.aggregation.GridAggregator`), outputs
  smaller than their input windows included.

Layouts: volumes ``(X, Y, Z, C)`` float32 (NiftyNet's channels last, one
channel per modality), in the padded network space; windows go through the
module as torch's ``(N, C, x, y, z)``. Outputs: labels int32 ``(X, Y, Z)``,
probabilities float32 ``(X, Y, Z, K)``.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from ..errors import OptionError
from .aggregation import GridAggregator
from .sampling import batch_emission_order, grid_locations

log = logging.getLogger(__name__)

#: What the post-processing layer gives (NiftyNet: ``output_prob`` False / True).
OUTPUTS = ("labels", "probabilities")


def post_process(logits: torch.Tensor, output: str) -> np.ndarray:
    """NiftyNet's ``PostProcessingLayer`` on a batch of network outputs.

    ``logits``: ``(N, K, x, y, z)`` (torch layout). Returns numpy in
    NiftyNet's layout: ``'labels'`` -> int32 ``(N, x, y, z)``, the first
    class of the largest logit (``tf.argmax``); ``'probabilities'`` ->
    float32 ``(N, x, y, z, K)``, the softmax over the classes.

    >>> logits = torch.tensor([[[[[0.0]]], [[[2.0]]]]])      # N=1, K=2, one voxel
    >>> post_process(logits, "labels").tolist()
    [[[[1]]]]
    >>> [round(p, 4) for p in post_process(logits, "probabilities").ravel().tolist()]
    [0.1192, 0.8808]
    """
    if output == "labels":
        return logits.argmax(dim=1).to(torch.int32).cpu().numpy()
    if output == "probabilities":
        probabilities = torch.softmax(logits.to(torch.float32), dim=1)
        return np.ascontiguousarray(probabilities.movedim(1, -1).cpu().numpy(), dtype=np.float32)
    raise OptionError(f"output {output!r} is not one of {', '.join(OUTPUTS)}")


class PlanarNetwork(torch.nn.Module):
    """A 2-D network run on windows one slice thick, as NiftyNet feeds it.

    NiftyNet squeezes the length-1 z axis of ``(N, x, y, 1, M)`` windows
    before the network (``misc_io.squeeze_spatial_temporal_dim``) and its
    grid aggregator puts the axis back (``crop_batch``, ``np.newaxis``).
    Here: ``(N, C, x, y, 1)`` in, the wrapped network on ``(N, C, x, y)``,
    its ``(N, K, x', y')`` out as ``(N, K, x', y', 1)``, so the 3-D window
    machinery (grid, resize) runs 2-D networks unchanged.

    >>> net = PlanarNetwork(torch.nn.Conv2d(1, 2, 3))
    >>> tuple(net(torch.zeros(4, 1, 8, 6, 1)).shape)
    (4, 2, 6, 4, 1)
    """

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[-1] != 1:
            raise OptionError(f"a 2-D network takes windows (N, C, x, y, 1), got {tuple(x.shape)}")
        return self.network(x[..., 0]).unsqueeze(-1)


def network_batches(order: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """The window indices of each batch NiftyNet runs, in order.

    >>> [b.tolist() for b in network_batches(np.array([0, 1, 2, 0]), 2)]
    [[0, 1], [2, 0]]
    """
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def window_stack(volume: np.ndarray, locations: np.ndarray, indices: Sequence[int]) -> torch.Tensor:
    """The windows ``indices`` of a ``(X, Y, Z, C)`` volume as a float32 ``(N, C, x, y, z)`` tensor."""
    windows = [volume[x0:x1, y0:y1, z0:z1] for x0, y0, z0, x1, y1, z1 in locations[list(indices)]]
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.stack(windows), -1, 1), dtype=np.float32))


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc="windows", unit="batch", leave=False)


def run_windows(model: torch.nn.Module, volume: np.ndarray, *, window: Sequence[int], border: Sequence[int],
                batch_size: int, output: str = "labels", num_classes: int | None = None,
                fill: float = 0.0, device: str | torch.device = "cpu",
                progress: bool = False) -> np.ndarray:
    """Run ``model`` over NiftyNet's grid of windows and stitch the outputs as NiftyNet does.

    Args:
        model: eval-mode module on ``device``, ``(N, C, x, y, z)`` in, ``(N, K, x', y', z')`` out
            (``x' <= x``: a smaller output is centred, see
            :func:`~niftyport.inference.aggregation.output_offset`).
        volume: ``(X, Y, Z, C)`` float32, the padded, normalised network input.
        window: the spatial window ``(x, y, z)``; every side at most the volume's.
        border: voxels dropped from each side of each window's location.
        batch_size: NiftyNet's ``batch_size`` (decides which repeated windows are written last).
        output: ``'labels'`` or ``'probabilities'``.
        num_classes: channels of the probabilities (checked against the network's output).
        fill: ``[INFERENCE] fill_constant``: the value of voxels no window writes.
        device: where the windows go through the network.
        progress: show a progress bar over batches.

    Returns:
        int32 ``(X, Y, Z)`` labels or float32 ``(X, Y, Z, K)`` probabilities.
    """
    if volume.ndim != 4:
        raise OptionError(f"volume of shape {volume.shape}: expected (X, Y, Z, C)")
    if output not in OUTPUTS:
        raise OptionError(f"output {output!r} is not one of {', '.join(OUTPUTS)}")
    spatial = tuple(int(s) for s in volume.shape[:3])
    locations = grid_locations(spatial, tuple(window), tuple(border))
    order = batch_emission_order(len(locations), batch_size)
    log.info("%d windows of %s (%d batches of %d) over a padded volume of %s", len(locations),
             tuple(window), len(order) // batch_size, batch_size, spatial)
    device = torch.device(device)
    aggregator = None
    bar = _progress(len(order) // batch_size, progress)
    with torch.inference_mode():
        for batch in network_batches(order, batch_size):
            outputs = post_process(model(window_stack(volume, locations, batch).to(device)), output)
            if aggregator is None:
                channels = None if output == "labels" else outputs.shape[-1]
                if channels is not None and num_classes is not None and channels != num_classes:
                    raise OptionError(f"the network gives {channels} classes, the config says {num_classes}")
                aggregator = GridAggregator(spatial, tuple(border), dtype=outputs.dtype, channels=channels,
                                            fill=fill)
            for index, out in zip(batch, outputs):
                aggregator.add(out, locations[index])
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()
    return aggregator.volume
