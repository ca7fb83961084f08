"""Running the network over a preprocessed volume, in one of :data:`MODES`.

``niftynet`` (the default) reproduces NiftyNet's window-by-window inference:
the grid of :mod:`niftyport.sampling`, the argmax of each window's logits,
and the overwriting stitching of :mod:`niftyport.aggregation`
(``niftynet/engine/windows_aggregator_grid.py``). It is fast because most of
a window's output is overwritten by later windows: for each window only the
voxels it keeps are computed, from the part of the window they depend on,
with the window's own faces as the zero-padding boundary (see
:mod:`niftyport.tiling`). The floating-point operations for every kept voxel
are the ones eager PyTorch performs on the whole window, bit for bit, so the
labels are those of the plain window loop.

``full`` is the network's output as if the whole padded volume had gone
through it at once (no window seams), computed in tiles with halos sized
by the receptive field, the tiles chosen for the least total work under the
memory budget. It departs from NiftyNet on purpose (NiftyNet always stitches
windows: ``windows_aggregator_grid.py``), so labels differ from NiftyNet's
near window borders.

Two *engines* run the convolutions (CPU):

``eager``
    each convolution on the backend eager PyTorch picks for the reference pass
    (oneDNN's im2col+GEMM on channels-first tensors, or ATen's own), so every
    logit equals the eager ``model(x)`` bit for bit. Default of ``niftynet``.
``fast``
    oneDNN's direct convolutions on channels-last tensors, about twice the
    throughput. Rounding differs from eager PyTorch (logits agree to ~1e-5), so
    a label can flip where the top two logits are that close. Default of ``full``.

On CUDA both engines run ``torch.nn.functional.conv3d`` (channels-first or
channels-last) with TF32 off; that path is not bit-for-bit checked.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch.nn import functional as F

from .aggregation import GridAggregator
from .errors import OptionError
from .network import HighRes3DNet
from .sampling import batch_emission_order, check_window, grid_locations
from .tiling import (Box, ConvStep, grid_owner_map, input_box, owned_regions, parse_memory,
                     plan_tiles, region_work, tiles_of_size)

log = logging.getLogger(__name__)

__all__ = ["MODES", "ENGINES", "run_mode", "segment_grid", "segment_full", "parse_memory",
           "conv_steps", "region_logits", "window_labels"]

#: Convolution engines: name -> what it trades.
ENGINES = {
    "eager": "eager PyTorch's convolution backends: logits bit for bit as model(x)",
    "fast": "oneDNN direct convolutions, channels-last: ~2x faster, logits within ~1e-5",
}

#: Working-memory budget when none is given (capped at 3/4 of the machine's memory).
DEFAULT_MAX_MEMORY = 6 * 2**30

#: Peak working bytes per voxel of a region's input box (64-channel activations:
#: block input, its activated copy, the convolution output, its crop and
#: oneDNN's scratch), measured on CPU with some margin.
BYTES_PER_INPUT_VOXEL = {"eager": 1400, "fast": 1300}

#: Voxels per slab of the 1x1x1 head (80 + 160 channels of logits per voxel).
HEAD_VOXELS = 2**17

#: Below this many input voxels per region the halo work would dwarf the region.
_MIN_INPUT_VOXELS = 24**3


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


# --- how each convolution runs ----------------------------------------------------------------

def eager_uses_onednn(conv: torch.nn.Conv3d, input_shape: tuple[int, ...], threads: int) -> bool:
    """Whether eager PyTorch runs ``conv`` on oneDNN for a CPU float32 input of ``input_shape``.

    Mirrors ``ConvParams::use_mkldnn`` in PyTorch's
    ``aten/src/ATen/native/Convolution.cpp`` (torch 2.x): oneDNN unless it is
    switched off, or the kernel is 1x1 with one thread, or the batch is one, the
    kernel at most 3 wide and ``N * C * X * Y <= 20480``. The two backends round
    differently, so the ``eager`` engine must choose as eager PyTorch would on the
    reference input; ``tests/test_inference.py`` checks the outcome bit for bit.

    >>> conv = torch.nn.Conv3d(16, 16, 3, padding=2, dilation=2, bias=False)
    >>> eager_uses_onednn(conv, (1, 16, 32, 32, 32), 2), eager_uses_onednn(conv, (1, 16, 64, 64, 64), 2)
    (False, True)
    """
    if not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return False
    k = conv.weight.shape
    n, c, x, y = (int(v) for v in input_shape[:4])
    strided = any(s != 1 for s in conv.stride)
    dilated = any(d != 1 for d in conv.dilation)
    worth = strided or dilated or n >= 16 or k[-1] != 1 or k[-2] != 1 or threads > 1
    large = conv.groups > 1 or (k[-1] > 3 and k[-2] > 3) or n > 1 or n * c * x * y > 20480
    return bool(worth and large)


class _Convolutions:
    """Runs the model's convolutions for one engine, device and reference domain shape."""

    def __init__(self, engine: str, device: torch.device, reference_shape: tuple[int, int, int]):
        self.engine = engine
        self.device = device
        self.reference_shape = tuple(int(s) for s in reference_shape)
        self.threads = torch.get_num_threads()
        self.memory_format = (torch.channels_last_3d if engine == "fast"
                              else torch.contiguous_format)
        self._weights: dict[int, torch.Tensor] = {}

    def _weight(self, conv: torch.nn.Conv3d) -> torch.Tensor:
        key = id(conv)
        if key not in self._weights:
            self._weights[key] = conv.weight.detach().contiguous(memory_format=self.memory_format)
        return self._weights[key]

    def __call__(self, conv: torch.nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
        """``conv`` with its own zero padding ('SAME'), output in the engine's memory format."""
        w = self._weight(conv)
        args = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        if self.device.type != "cpu" or not torch.backends.mkldnn.is_available():
            out = F.conv3d(x, w, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
        elif self.engine == "fast":
            out = torch.mkldnn_convolution(x, w, conv.bias, *args)
        elif eager_uses_onednn(conv, (1, conv.in_channels) + self.reference_shape, self.threads):
            out = torch.mkldnn_convolution(x, w, conv.bias, *args)
        elif any(d != 1 for d in conv.dilation):
            out = torch._C._nn.slow_conv_dilated3d(x, w, list(conv.kernel_size), conv.bias,
                                                   list(conv.stride), list(conv.padding),
                                                   list(conv.dilation))
        else:
            out = torch._C._nn.slow_conv3d(x, w, list(conv.kernel_size), conv.bias,
                                           list(conv.stride), list(conv.padding))
        return out.contiguous(memory_format=self.memory_format)


# --- the network on one region ----------------------------------------------------------------

def _is_highres(model: torch.nn.Module) -> bool:
    return isinstance(model, HighRes3DNet)


def _convs_in_order(model: HighRes3DNet) -> list[torch.nn.Conv3d]:
    convs = [model.conv_0.conv]
    for name in model.block_names:
        block = getattr(model, name)
        convs += [block.conv_0, block.conv_1]
    if model.conv_1 is not None:
        convs.append(model.conv_1.conv)
    return convs + [model.conv_2.conv]


def conv_steps(model: HighRes3DNet) -> tuple[ConvStep, ...]:
    """The convolutions of ``model`` in forward order: radius and FLOPs per output voxel.

    FLOPs count each multiply-add as two; batch norm, ReLU and additions are
    left out (they are under 1 % of the total).

    >>> steps = conv_steps(HighRes3DNet())
    >>> sum(s.radius for s in steps), sum(s.flops for s in steps)
    (43, 1640288)
    """
    return tuple(ConvStep(radius=c.dilation[0] * (c.kernel_size[0] // 2),
                          flops=2 * c.in_channels * c.out_channels * math.prod(c.kernel_size))
                 for c in _convs_in_order(model))


class _Region:
    """Book-keeping for one region: which box the current activation covers."""

    def __init__(self, region: Box, domain: Box, total_radius: int, memory_format):
        self.region, self.domain = region, domain
        self.remaining = total_radius
        self.box = region.grow(total_radius, domain)
        self.memory_format = memory_format

    def conv(self, run: _Convolutions, conv: torch.nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
        """``conv`` over the current box, cropped to where later layers still read."""
        out = run(conv, x)
        self.remaining -= conv.dilation[0] * (conv.kernel_size[0] // 2)
        return self._crop(out, self.region.grow(self.remaining, self.domain))

    def _crop(self, x: torch.Tensor, box: Box) -> torch.Tensor:
        old, self.box = self.box, box
        if box == old:
            return x
        return x[(slice(None), slice(None)) + box.slices(old.lo)].contiguous(
            memory_format=self.memory_format)


def _trunk(model: HighRes3DNet, x: torch.Tensor, region: Box, domain: Box,
           run: _Convolutions) -> torch.Tensor:
    """Features entering the 1x1x1 head, on ``region``, as a pass over all of ``domain`` gives them.

    Args:
        x: ``(N, C, *input_box.shape)`` network input on the run's device, where
            ``input_box`` is :func:`~niftyport.tiling.input_box` of the region.
        region, domain: boxes in the same voxel coordinates (domain: where the
            reference pass zero-pads).

    Returns:
        ``(N, 64, *region.shape)`` float32 on the device.
    """
    total = sum(s.radius for s in conv_steps(model))
    at = _Region(region, domain, total, run.memory_format)
    x = x.contiguous(memory_format=run.memory_format)
    x = model.conv_0.bn(at.conv(run, model.conv_0.conv, x)).relu_()
    for name in model.block_names:
        block = getattr(model, name)
        before = at.box
        t = block.bn_0(x).relu_()
        t = at.conv(run, block.conv_0, t)
        t = block.bn_1(t).relu_()
        t = at.conv(run, block.conv_1, t)
        shortcut = x[(slice(None), slice(None)) + at.box.slices(before.lo)]
        if block.channel_pad != (0, 0):
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, 0, *block.channel_pad))
        t += shortcut  # the same float additions as ``y + x`` in HighResBlock.forward
        x = t
        del t, shortcut
    return x


def _head(model: HighRes3DNet, h: torch.Tensor, run: _Convolutions) -> torch.Tensor:
    """The 1x1x1 layers: features ``(N, 64, ...)`` to logits ``(N, K, ...)``."""
    h = h.contiguous(memory_format=run.memory_format)
    if model.conv_1 is not None:
        h = model.conv_1.bn(run(model.conv_1.conv, h)).relu_()
    return model.conv_2.bn(run(model.conv_2.conv, h))


def region_logits(model: HighRes3DNet, x: torch.Tensor, region: Box, domain: Box, *,
                  engine: str = "eager") -> torch.Tensor:
    """Logits ``(N, K, *region.shape)`` of ``region`` as ``model`` gives them on all of ``domain``.

    ``x``: ``(N, C, *input_box.shape)`` CPU input of the region's
    :func:`~niftyport.tiling.input_box`. For checks on small regions; the
    modes use the label path, which never holds all logits at once.
    """
    run = _Convolutions(_check_engine(engine), x.device, domain.shape)
    with torch.inference_mode():
        return _head(model, _trunk(model, x, region, domain, run), run).contiguous()


def _region_labels(model: HighRes3DNet, x: torch.Tensor, region: Box, domain: Box,
                   run: _Convolutions) -> torch.Tensor:
    """Labels ``(N, *region.shape)`` int32 of ``region`` (see :func:`_trunk`), the head run
    in slabs of :data:`HEAD_VOXELS` voxels."""
    x = _trunk(model, x, region, domain, run)
    labels = torch.empty((x.shape[0],) + region.shape, dtype=torch.int32, device=x.device)
    step = max(1, HEAD_VOXELS // max(1, x.shape[0] * region.shape[1] * region.shape[2]))
    for start in range(0, region.shape[0], step):
        labels[:, start:start + step] = _head(model, x[:, :, start:start + step], run).argmax(dim=1)
    return labels


# --- settings for a run -----------------------------------------------------------------------

@contextlib.contextmanager
def _run_settings(device: torch.device, threads: int | None):
    """Thread count and full-fp32 math for the duration of a run, restored afterwards."""
    old_threads = torch.get_num_threads()
    old_precision = torch.get_float32_matmul_precision()
    cuda = device.type == "cuda"
    if cuda:
        old_tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        if threads is not None:
            if int(threads) < 1:
                raise OptionError(f"threads must be at least 1, got {threads}")
            torch.set_num_threads(int(threads))
        torch.set_float32_matmul_precision("highest")
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        with torch.inference_mode():
            yield
    finally:
        torch.set_num_threads(old_threads)
        torch.set_float32_matmul_precision(old_precision)
        if cuda:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old_tf32


def _check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise OptionError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
    return engine


def _rss_bytes() -> int:
    """Resident memory of this process now (Linux), else 0."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def default_max_memory() -> int:
    """:data:`DEFAULT_MAX_MEMORY`, or 3/4 of the machine's memory if that is less."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return DEFAULT_MAX_MEMORY
    return min(DEFAULT_MAX_MEMORY, physical * 3 // 4)


def input_voxel_budget(max_memory: int | str | None, *, engine: str, batch: int = 1,
                       fixed: int = 0) -> int:
    """How many input-box voxels one network call may take under ``max_memory`` bytes.

    ``fixed``: bytes the run holds besides the network's working memory (the
    volume copies, the output); the process's current resident memory is
    counted too.
    """
    budget = default_max_memory() if max_memory is None else parse_memory(max_memory)
    head = HEAD_VOXELS * 4 * (80 + 160 + 64)
    free = budget - _rss_bytes() - fixed - head
    voxels = free // (BYTES_PER_INPUT_VOXEL[engine] * max(1, batch))
    if voxels < _MIN_INPUT_VOXELS:
        need = _rss_bytes() + fixed + head + _MIN_INPUT_VOXELS * BYTES_PER_INPUT_VOXEL[engine] * batch
        raise OptionError(f"max_memory {budget} bytes is too small for this volume: "
                          f"give at least {need / 2**20:.0f}M")
    return int(voxels)


def _progress(iterable: Iterable, total: int, enabled: bool, desc: str, unit: str):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False)


def _source(volume: np.ndarray, device: torch.device) -> torch.Tensor:
    """``(X, Y, Z[, C])`` float volume as a ``(C, X, Y, Z)`` float32 CPU tensor (pinned for CUDA)."""
    if volume.ndim == 3:
        volume = volume[..., None]
    if volume.ndim != 4:
        raise OptionError(f"volume of shape {volume.shape}: expected (X, Y, Z) or (X, Y, Z, C)")
    source = torch.from_numpy(np.ascontiguousarray(np.moveaxis(volume, -1, 0), dtype=np.float32))
    return source.pin_memory() if device.type == "cuda" else source


def _inputs(source: torch.Tensor, boxes: list[Box], device: torch.device) -> torch.Tensor:
    batch = torch.stack([source[(slice(None),) + b.slices()] for b in boxes])
    return batch.to(device, non_blocking=device.type == "cuda")


# --- niftynet mode ----------------------------------------------------------------------------

def _signature(region: Box, domain: Box, reach: int) -> tuple:
    """Regions with equal signatures go through the same layer shapes: they can share a batch."""
    return (region.shape,
            tuple(min(a - d, reach) for a, d in zip(region.lo, domain.lo)),
            tuple(min(d - b, reach) for b, d in zip(region.hi, domain.hi)))


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def grid_jobs(shape, window, border, batch_size: int, steps, *,
              max_input_voxels: int | None = None) -> tuple[np.ndarray, list[tuple[int, Box, Box]]]:
    """What ``niftynet`` mode computes: the owner map and ``(window, region, window box)`` jobs.

    Each window that keeps voxels contributes the bounding box of those voxels
    (split into tiles when its input box exceeds ``max_input_voxels``).
    ``sum(region_work(region, domain, steps))`` over the jobs is the work.
    """
    locations = grid_locations(shape, window, border)
    order = batch_emission_order(len(locations), batch_size)
    owner = grid_owner_map(shape, locations, order, border)
    jobs = []
    for index, region in owned_regions(owner, locations, border):
        domain = Box(locations[index, :3], locations[index, 3:])
        tiles = [region]
        if max_input_voxels is not None and input_box(region, domain, steps).size > max_input_voxels:
            tiles = plan_tiles(region, domain, steps, max_input_voxels=max_input_voxels).tiles
        jobs += [(index, t, domain) for t in tiles]
    return owner, jobs


def segment_grid(model: torch.nn.Module, volume: np.ndarray, *,
                 window: tuple[int, int, int], border: tuple[int, int, int],
                 batch_size: int = 1, compute_batch: int = 1,
                 device: str | torch.device = "cpu", progress: bool = False,
                 engine: str = "eager", max_memory: int | str | None = None,
                 threads: int | None = None) -> np.ndarray:
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
        compute_batch: how many same-shaped regions go through the network at
            once (helps on GPU); any value gives the same labels.
        device: where the network runs.
        progress: show a progress bar.
        engine: ``'eager'`` (default: logits bit for bit as eager PyTorch on each
            window) or ``'fast'`` (see :data:`ENGINES`; may flip near-tie labels).
        max_memory: byte budget (int or ``'8G'``); regions are split to fit.
        threads: CPU threads for the run (default: torch's current setting).

    Returns:
        ``(X, Y, Z)`` int32 labels of the padded volume; voxels within
        ``border`` of the volume's edge that no cropped window covers are 0.

    For a :class:`~niftyport.network.HighRes3DNet`, only the voxels each window
    keeps are computed (see the module docstring); any other module runs on
    whole windows.
    """
    engine = _check_engine(engine)
    device = torch.device(device)
    check_window(window, border)
    spatial = tuple(volume.shape[:3])
    source = _source(volume, device)
    with _run_settings(device, threads):
        if not _is_highres(model):
            return _segment_windows(model, source, spatial, window, border, batch_size,
                                    compute_batch, device, progress)
        steps = conv_steps(model)
        budget = input_voxel_budget(max_memory, engine=engine, batch=compute_batch,
                                    fixed=math.prod(spatial) * 8)
        owner, jobs = grid_jobs(spatial, window, border, batch_size, steps, max_input_voxels=budget)
        reach = sum(s.radius for s in steps)
        plain = len(grid_locations(spatial, window, border)) * math.prod(window) * sum(s.flops for s in steps)
        log.info("niftynet mode: %d regions from %s windows, %.1f TFLOP (whole windows: %.1f)",
                 len(jobs), window, sum(region_work(r, d, steps) for _, r, d in jobs) / 1e12,
                 plain / 1e12)
        groups: dict[tuple, list] = {}
        for job in jobs:
            groups.setdefault(_signature(job[1], job[2], reach), []).append(job)
        run = _Convolutions(engine, device, window)
        labels = np.zeros(spatial, dtype=np.int32)
        chunks = [c for g in groups.values() for c in _batches(g, max(1, compute_batch))]
        for chunk in _progress(chunks, len(chunks), progress, "regions", "region"):
            x = _inputs(source, [input_box(r, d, steps) for _, r, d in chunk], device)
            out = _region_labels(model, x, chunk[0][1], chunk[0][2], run).cpu().numpy()
            for (index, region, _), lab in zip(chunk, out):
                sl = region.slices()
                mine = owner[sl] == index
                labels[sl][mine] = lab[mine]
        return labels


def _segment_windows(model, source, spatial, window, border, batch_size, compute_batch,
                     device, progress) -> np.ndarray:
    """Any module: whole windows through the network, written in NiftyNet's order."""
    locations = grid_locations(spatial, window, border)
    order = batch_emission_order(len(locations), batch_size)
    unique = np.unique(order)  # repeats give the same output: compute each window once
    log.info("%d windows of %s over a padded volume of %s", len(locations), window, spatial)
    outputs: dict[int, np.ndarray] = {}
    chunks = list(_batches(list(unique), max(1, compute_batch)))
    for chunk in _progress(chunks, len(chunks), progress, "windows", "batch"):
        boxes = [Box(locations[i, :3], locations[i, 3:]) for i in chunk]
        labels = window_labels(model, _inputs(source, boxes, device)).cpu().numpy()
        for index, lab in zip(chunk, labels):
            outputs[int(index)] = lab
    aggregator = GridAggregator(spatial, border)
    for index in order:
        aggregator.add(outputs[int(index)], locations[index])
    return aggregator.volume


# --- full mode --------------------------------------------------------------------------------

def full_tiles(shape, steps, *, max_input_voxels: int, tile=None) -> list[Box]:
    """The tiles ``full`` mode computes: ``tile``-sized from the low corner if given, else
    the least-work plan of :func:`~niftyport.tiling.plan_tiles` within the budget."""
    volume = Box.of_shape(shape)
    if tile is not None:
        return tiles_of_size(volume, tile)
    return list(plan_tiles(volume, volume, steps, max_input_voxels=max_input_voxels).tiles)


def segment_full(model: torch.nn.Module, volume: np.ndarray, *,
                 max_memory: int | str | None = None, tile=None,
                 device: str | torch.device = "cpu", progress: bool = False,
                 engine: str = "fast", threads: int | None = None) -> np.ndarray:
    """Label the whole padded volume as one network pass would, computed in halo tiles.

    Departs from NiftyNet on purpose (NiftyNet stitches cropped windows,
    ``niftynet/engine/windows_aggregator_grid.py``): no window seams, and about
    a fifth of the work of 128^3 windows.

    Args:
        model: a :class:`~niftyport.network.HighRes3DNet` in eval mode on ``device``.
        volume: ``(X, Y, Z)`` or ``(X, Y, Z, C)`` float32 network input (padded, RAS).
        max_memory: byte budget (int or ``'8G'``) that decides the tiles;
            default :func:`default_max_memory`.
        tile: output tile size (int or 3 ints) instead of the planned tiles.
            Each tile is computed from its own box grown by 43 voxels and cut at
            the volume's faces, so its convolutions zero-pad where the
            whole-volume pass does.
        engine: ``'fast'`` (default) or ``'eager'`` (bit for bit as eager
            ``model(volume)``); see :data:`ENGINES`.
        threads: CPU threads for the run.

    Returns:
        ``(X, Y, Z)`` int32 labels: argmax of the logits of ``model(volume)``.
    """
    engine = _check_engine(engine)
    device = torch.device(device)
    if not _is_highres(model):
        raise OptionError(f"mode 'full' needs a HighRes3DNet (known receptive field), "
                          f"got {type(model).__name__}")
    spatial = tuple(volume.shape[:3])
    source = _source(volume, device)
    with _run_settings(device, threads):
        steps = conv_steps(model)
        budget = input_voxel_budget(max_memory, engine=engine, fixed=math.prod(spatial) * 4)
        tiles = full_tiles(spatial, steps, max_input_voxels=budget, tile=tile)
        domain = Box.of_shape(spatial)
        log.info("full mode: %d tiles, %.1f TFLOP (one pass: %.1f)", len(tiles),
                 sum(region_work(t, domain, steps) for t in tiles) / 1e12,
                 region_work(domain, domain, steps) / 1e12)
        run = _Convolutions(engine, device, spatial)
        labels = np.zeros(spatial, dtype=np.int32)
        for t in _progress(tiles, len(tiles), progress, "tiles", "tile"):
            x = _inputs(source, [input_box(t, domain, steps)], device)
            labels[t.slices()] = _region_labels(model, x, t, domain, run)[0].cpu().numpy()
        return labels


# --- the pipeline's entry point ---------------------------------------------------------------

#: Inference modes: name -> one-line description (``niftynet`` is the default).
MODES = {
    "niftynet": "NiftyNet's windows, border cropping and overwrite order: identical labels",
    "niftynet-fast": "NiftyNet's windows on the fast engine: ~2x faster, a near-tie voxel may differ",
    "full": "whole-volume output (no window seams) in halo tiles: fastest, departs from NiftyNet",
    "full-eager": "as 'full', with eager PyTorch's arithmetic (bit for bit as one model(volume))",
}


def run_mode(mode: str, model: torch.nn.Module, volume: np.ndarray, *,
             window: tuple[int, int, int], border: tuple[int, int, int], batch_size: int = 1,
             device: str | torch.device = "cpu", max_memory: int | str | None = None,
             progress: bool = False, threads: int | None = None, compute_batch: int = 1,
             tile=None) -> np.ndarray:
    """Label a padded, normalised ``(X, Y, Z)`` float32 volume in the given mode.

    ``window``, ``border`` and ``batch_size`` matter to the ``niftynet*`` modes;
    ``tile`` only to the ``full*`` modes. Returns int32 ``(X, Y, Z)`` labels of
    the padded volume.
    """
    if mode in ("niftynet", "niftynet-fast"):
        return segment_grid(model, volume, window=window, border=border, batch_size=batch_size,
                            compute_batch=compute_batch, device=device, progress=progress,
                            engine="eager" if mode == "niftynet" else "fast",
                            max_memory=max_memory, threads=threads)
    if mode in ("full", "full-eager"):
        return segment_full(model, volume, max_memory=max_memory, tile=tile, device=device,
                            progress=progress, engine="fast" if mode == "full" else "eager",
                            threads=threads)
    raise OptionError(f"--mode {mode!r} is not one of {', '.join(MODES)}")
