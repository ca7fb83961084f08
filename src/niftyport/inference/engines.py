"""Running the network over a preprocessed volume, in one of :data:`MODES`.

``niftynet`` (the default) reproduces NiftyNet's window-by-window inference:
the grid of :mod:`niftyport.sampling`, the argmax of each window's logits,
and the overwriting stitching of :mod:`niftyport.aggregation`
(``niftynet/engine/windows_aggregator_grid.py``). It is fast because most of
a window's output is overwritten by later windows: for each window only the
box of voxels it keeps is computed, from the part of the window those voxels
depend on, with the window's own faces as the zero-padding boundary, and every
layer only where later layers still read it (see :mod:`niftyport.tiling`).
With NiftyNet's 128^3 windows over a 1 mm head that is a third of the work.
Each kept logit is the one eager PyTorch computes on the whole window, bit
for bit, so the labels are the plain window loop's.

``full`` is the network's output as if the whole padded volume had gone
through it at once (no window seams), computed in tiles with halos sized
by the receptive field, the tiles chosen for the least total work under the
memory budget. It departs from NiftyNet on purpose (NiftyNet always stitches
windows: ``windows_aggregator_grid.py``), so labels differ from NiftyNet's
near window borders.

Two *engines* run the convolutions (CPU):

``eager``
    each convolution on the backend eager PyTorch picks for the reference pass
    (:func:`eager_uses_onednn`: oneDNN's im2col + GEMM on channels-first
    tensors, or ATen's own), on boxes whose y and z sides keep oneDNN's GEMM
    rows aligned as in the window (:func:`_row_alignment`), so every logit
    equals eager ``model(window)`` bit for bit (checked by the tests on the
    machine they run on; established on x86-64 AVX2). Default of ``niftynet``.
``fast``
    oneDNN's direct convolutions on channels-last tensors, about twice the
    throughput. Rounding differs from eager PyTorch (logits agree to ~1e-5),
    so a label can flip where the top two logits are that close (none did on
    NiftyNet's reference run). Default of ``full``; ``niftynet-fast`` pairs it
    with NiftyNet's stitching.

``winograd``
    the 3x3x3 layers of 16 or more channels by Winograd F(4,3) in a C kernel
    (:mod:`niftyport.inference.winograd`), each residual block as two calls
    with its batch norms, ReLUs and addition fused in and its buffers recycled
    (:class:`_Spares`); the other layers as ``fast``. 8x fewer multiplications
    in those layers, logits within ~1e-5 (tested: 1e-4) of the largest
    logit of a float64 pass. The engine of ``full-winograd``.

On CUDA both engines run ``torch.nn.functional.conv3d`` (channels-first or
channels-last) with TF32 off and inputs staged in pinned memory; that path is
not bit-for-bit checked (no GPU in the tests).
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

from . import winograd
from .aggregation import GridAggregator
from ..errors import OptionError
from ..network import HighRes3DNet
from .defaults import MAX_DEFAULT_MEMORY, default_max_memory, default_threads  # noqa: F401
from .modes import MODES
from .sampling import batch_emission_order, check_window, grid_locations
from .tiling import (Box, ConvStep, grid_owner_map, input_box, owned_regions, parse_memory,
                     plan_tiles, region_values, region_work, split_box, tiles_of_size)

log = logging.getLogger(__name__)

__all__ = ["MODES", "ENGINES", "run_mode", "segment_grid", "segment_full", "parse_memory",
           "conv_steps", "region_logits", "window_labels"]

#: Convolution engines: name -> what it trades.
ENGINES = {
    "eager": "eager PyTorch's convolution backends: logits bit for bit as model(x)",
    "fast": "oneDNN direct convolutions, channels-last: ~2x faster, logits within ~1e-5",
    "winograd": "as 'fast', the 3x3x3 layers by Winograd F(4,3) (a C kernel): logits within ~1e-4",
}

#: The largest working-memory budget used when none is given; the default follows the
#: machine's available memory (:func:`~niftyport.inference.defaults.default_max_memory`).
DEFAULT_MAX_MEMORY = MAX_DEFAULT_MEMORY

#: Peak working bytes per value of a region's largest activation
#: (:func:`~niftyport.tiling.region_values`): three float32 activations alive at
#: once (block input, convolution input, its output or crop) plus oneDNN's
#: scratch. Measured on CPU over a 128^3 window (eager, 15.0) and a whole
#: 196 x 276 x 196 head (fast, 12.1), workspace included; with some margin. Winograd: three
#: recycled buffers of the largest activation plus the first layer's output and the head; at 13
#: a 256 x 256 x 180 head peaked at 7.95 GiB under an 8G budget, hence 16.
BYTES_PER_VALUE = {"eager": 16, "fast": 13, "winograd": 16}

#: The same while freed activations are kept for reuse (:func:`reuse_freed_memory`, used by
#: the ``niftynet`` mode): the heap also holds freed blocks that the next, differently
#: sized ones do not fit. Measured on CPU over a 128^3 window (eager): 3.67 GiB peak
#: resident against 2.29 GiB without reuse, i.e. ~24 bytes per value; with some margin.
BYTES_PER_VALUE_REUSED = {"eager": 26}

#: Voxels per slab of the 1x1x1 head (up to 400 float32 channels alive per voxel).
HEAD_VOXELS = 2**16

#: Working memory that does not grow with the region: head slabs, oneDNN's
#: buffers, allocator slack (measured ~200 MB).
WORKSPACE_BYTES = 256 * 2**20


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
        self.memory_format = (torch.channels_last_3d if engine in ("fast", "winograd")
                              else torch.contiguous_format)
        self._weights: dict[int, torch.Tensor] = {}
        self.flops = 0  # convolution FLOPs run so far
        self.spares: _Spares | None = None  # buffers the fused blocks recycle across regions

    def _weight(self, conv: torch.nn.Conv3d) -> torch.Tensor:
        key = id(conv)
        if key not in self._weights:
            self._weights[key] = conv.weight.detach().contiguous(memory_format=self.memory_format)
        return self._weights[key]

    def _by_winograd(self, conv: torch.nn.Conv3d) -> bool:
        return self.engine == "winograd" and self.device.type == "cpu" and winograd.supports(conv)

    def winograd(self, conv: torch.nn.Conv3d) -> torch.Tensor:
        """The Winograd-domain weights of ``conv`` (:func:`winograd.transform_weight`), once."""
        key = ("winograd", id(conv))
        if key not in self._weights:
            self._weights[key] = winograd.transform_weight(conv.weight)
        return self._weights[key]

    def affine(self, bn: torch.nn.BatchNorm3d) -> tuple[torch.Tensor, torch.Tensor]:
        """``bn`` (eval mode) as per-channel ``(scale, shift)`` (:func:`winograd.affine`), once."""
        key = ("affine", id(bn))
        if key not in self._weights:
            self._weights[key] = winograd.affine(bn)
        return self._weights[key]

    def fuses(self, block) -> bool:
        """Whether a residual block runs as two fused Winograd calls (:func:`_fused_block`)."""
        return (self._by_winograd(block.conv_0) and self._by_winograd(block.conv_1)
                and not block.bn_0.training and not block.bn_1.training
                and block.bn_0.running_mean is not None and block.bn_1.running_mean is not None)

    def __call__(self, conv: torch.nn.Conv3d, x: torch.Tensor, crop: Box | None = None) -> torch.Tensor:
        """``conv`` with its own zero padding ('SAME'), output in the engine's memory format.

        ``crop``: only this box of the output is wanted (coordinates of ``x``'s
        voxels); the Winograd kernel computes just that, the others crop after.
        """
        if self._by_winograd(conv):
            box = crop or Box.of_shape(x.shape[2:])
            self.flops += winograd.flops(box.shape, conv.in_channels, conv.out_channels,
                                         conv.dilation[0]) * x.shape[0]
            return winograd.conv3d(x, self.winograd(conv), dilation=conv.dilation[0],
                                   lo=box.lo, shape=box.shape, bias=conv.bias)
        out = self._direct(conv, x)
        if crop is None or crop == Box.of_shape(out.shape[2:]):
            return out
        return out[(slice(None), slice(None)) + crop.slices()].contiguous(
            memory_format=self.memory_format)

    def _direct(self, conv: torch.nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
        w = self._weight(conv)
        args = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        if self.device.type != "cpu" or not torch.backends.mkldnn.is_available():
            out = F.conv3d(x, w, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
        elif self.engine in ("fast", "winograd"):
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
        self.flops += 2 * x.shape[1] * out[:, :1].numel() * out.shape[1] * math.prod(conv.kernel_size)
        return out.contiguous(memory_format=self.memory_format)


def _bn_(bn: torch.nn.BatchNorm3d, x: torch.Tensor) -> torch.Tensor:
    """``bn(x)`` (eval mode) written over ``x``, which must be a fresh tensor nobody else reads.

    Runs ATen's own batch-norm kernel (``native_batch_norm``, the one ``bn(x)``
    runs in eval mode) with ``x`` as its output: the same elementwise
    ``x * scale + shift`` in the same rounding, without allocating (and
    page-faulting) a new activation. Falls back to ``bn(x)`` where that
    kernel is not the one eager PyTorch uses (training mode, CUDA, no
    running statistics).
    """
    if (bn.training or x.device.type != "cpu" or bn.running_mean is None
            or bn.weight is None or not _INPLACE_BN):
        return bn(x)
    empty = x.new_empty(0)
    torch.ops.aten.native_batch_norm.out(x, bn.weight, bn.bias, bn.running_mean, bn.running_var,
                                         False, 0.0, bn.eps, out=x, save_mean=empty,
                                         save_invstd=empty)
    return x


#: Whether this torch has ``aten::native_batch_norm.out`` (torch 2.x does).
_INPLACE_BN = hasattr(torch.ops.aten.native_batch_norm, "out")


# --- the network on one region ----------------------------------------------------------------

def _is_highres(model: torch.nn.Module) -> bool:
    """HighRes3DNet with ReLU: what the region engine computes (its trunk and head apply ReLU)."""
    return isinstance(model, HighRes3DNet) and getattr(model, "acti_func", "relu") == "relu"


def _convs_in_order(model: HighRes3DNet) -> list[torch.nn.Conv3d]:
    convs = [model.conv_0.conv]
    for name in model.block_names:
        block = getattr(model, name)
        convs += [block.conv_0, block.conv_1]
    if model.conv_1 is not None:
        convs.append(model.conv_1.conv)
    return convs + [model.conv_2.conv]


def conv_steps(model: HighRes3DNet) -> tuple[ConvStep, ...]:
    """The convolutions of ``model`` in forward order: radius, FLOPs per output voxel, and
    the channels held over the whole region while it runs.

    FLOPs count each multiply-add as two; batch norm, ReLU and additions are
    left out (they are under 1 % of the total). The 1x1x1 head runs in slabs
    (:data:`HEAD_VOXELS`), so over the region it only holds the features it
    reads.

    >>> steps = conv_steps(HighRes3DNet())
    >>> sum(s.radius for s in steps), sum(s.flops for s in steps), max(s.channels for s in steps)
    (43, 1640288, 64)
    """
    convs = _convs_in_order(model)
    features = next(c.in_channels for c in convs if math.prod(c.kernel_size) == 1)
    return tuple(ConvStep(radius=c.dilation[0] * (c.kernel_size[0] // 2),
                          flops=2 * c.in_channels * c.out_channels * math.prod(c.kernel_size),
                          channels=(max(c.in_channels, c.out_channels)
                                    if math.prod(c.kernel_size) > 1 else features))
                 for c in convs)


#: Row alignment of the ``eager`` engine (see :func:`_row_alignment`).
ROW_MULTIPLE = 8


def _row_alignment(engine: str, device: torch.device, domain: Box):
    """How boxes are widened so that cropping keeps eager PyTorch's rounding.

    oneDNN's channels-first convolution (``gemm:jit``) runs one GEMM per
    x-slice whose rows are the slice's ``Y * Z`` voxels; rows past the last
    full block of 16 are rounded differently. NiftyNet's windows (sides that
    are multiples of 8) have no such rows, so boxes whose y and z sides are
    multiples of 8 round every voxel as the window does. Where the domain's own
    ``Y * Z`` has leftover rows, y and z are not cropped at all. The ``fast``
    engine rounds each voxel alike whatever the box: no widening.

    Returns ``align(box, within) -> Box``: ``box`` widened in y and z to an
    allowed side, inside ``within``.
    """
    if engine != "eager" or device.type != "cpu":
        return lambda box, within: box
    _, ny, nz = domain.shape
    crop = ny % 2 == 0 and nz % 2 == 0 and (ny * nz) % 16 == 0

    def align(box: Box, within: Box) -> Box:
        lo, hi = list(box.lo), list(box.hi)
        for a in (1, 2):
            room = within.hi[a] - within.lo[a]
            side = min(-(-(hi[a] - lo[a]) // ROW_MULTIPLE) * ROW_MULTIPLE, room) if crop else room
            hi[a] = min(within.hi[a], lo[a] + side)
            lo[a] = hi[a] - side
        return Box(lo, hi)

    return align


def _layer_boxes(region: Box, domain: Box, steps, align) -> list[Box]:
    """The boxes a region's activations cover: its input box, then after each of ``steps``
    the region grown by the radii still to come (cut at ``domain``, widened by ``align``
    inside the box before)."""
    remaining = sum(s.radius for s in steps)
    boxes = [align(region.grow(remaining, domain), domain)]
    for s in steps:
        remaining -= s.radius
        boxes.append(align(region.grow(remaining, domain), boxes[-1]))
    return boxes


class _Region:
    """Book-keeping for one region: which box the current activation covers.

    Each convolution's output covers the next of the region's :func:`_layer_boxes`.
    """

    def __init__(self, boxes: list[Box]):
        self._next = iter(boxes)
        self.box = next(self._next)

    def step(self) -> Box:
        """Moves on to the next box; returns it relative to the one before (the crop of the
        convolution that produces it)."""
        old, self.box = self.box, next(self._next)
        return Box(np.subtract(self.box.lo, old.lo), np.subtract(self.box.hi, old.lo))

    def conv(self, run: _Convolutions, conv: torch.nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
        """``conv`` of the activation over the current box, on the next box only (where later
        layers still read it)."""
        return run(conv, x, self.step())


def engine_input_box(region: Box, domain: Box, steps, *, engine: str,
                     device: str | torch.device = "cpu") -> Box:
    """The input voxels a region is computed from by ``engine``: its
    :func:`~niftyport.tiling.input_box`, widened as the engine needs."""
    align = _row_alignment(engine, torch.device(device), domain)
    return align(input_box(region, domain, steps), domain)


def _trunk(model: HighRes3DNet, x: torch.Tensor, region: Box, domain: Box,
           run: _Convolutions) -> tuple[torch.Tensor, Box]:
    """Features entering the 1x1x1 head, as a pass over all of ``domain`` gives them.

    Args:
        x: ``(N, C, *box.shape)`` network input on the run's device, where ``box``
            is :func:`engine_input_box` of the region.
        region, domain: boxes in the same voxel coordinates (domain: where the
            reference pass zero-pads).

    Returns:
        ``(N, 64, *box.shape)`` float32 on the device, and ``box``: the region,
        widened as the engine needs.
    """
    at = _Region(_layer_boxes(region, domain, conv_steps(model),
                              _row_alignment(run.engine, run.device, domain)))
    x = x.contiguous(memory_format=run.memory_format)
    x = _bn_(model.conv_0.bn, at.conv(run, model.conv_0.conv, x)).relu_()
    spares = run.spares if run.spares is not None else _Spares()
    for name in model.block_names:
        block = getattr(model, name)
        if run.fuses(block):
            x = _fused_block(block, x, at, run, spares)
            continue
        before = at.box
        t = block.bn_0(x).relu_()  # x is the shortcut: a new tensor
        t = at.conv(run, block.conv_0, t)  # rebinding frees the input before the crop copies
        t = _bn_(block.bn_1, t).relu_()
        t = at.conv(run, block.conv_1, t)
        shortcut = x[(slice(None), slice(None)) + at.box.slices(before.lo)]
        if block.channel_pad != (0, 0):
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, 0, *block.channel_pad))
        t += shortcut  # the same float additions as ``y + x`` in HighResBlock.forward
        x = t
        del t, shortcut
    return x, at.box


class _Spares:
    """Activations a region no longer reads, whose memory the next convolution outputs reuse.

    Each fresh activation costs the kernel a page fault and a zeroed page per 4 KiB
    (a fifth of ``full`` mode's CPU time went there). Here new buffers are made
    ``capacity`` values large (the largest activation of the run's regions:
    :func:`~niftyport.tiling.region_values`), and a dead block's two activations
    become the next block's two outputs, from region to region: three such buffers
    serve a whole run, which is no more than the widest block holds anyway. Only the
    fused Winograd blocks use it: there the engine knows exactly when an activation
    is dead.
    """

    def __init__(self, capacity: int = 0):
        self.capacity = int(capacity)
        self._free: list[torch.Tensor] = []  # flat float32 buffers of dead activations
        self._owned: dict[int, torch.Tensor] = {}  # address -> every buffer made here

    def take(self, shape) -> torch.Tensor:
        """A channels-last ``(N, C, X, Y, Z)`` float32 tensor over the smallest spare that
        holds ``shape``, else over a new buffer (spares too small for it are let go:
        later activations of a region are no larger)."""
        need = math.prod(shape)
        fits = [t for t in self._free if t.numel() >= need]
        if fits:
            best = min(fits, key=torch.Tensor.numel)
            self._free = [t for t in self._free if t is not best]
        else:
            for r in self._free:  # too small for what comes next: let them go
                del self._owned[r.data_ptr()]
            self._free.clear()
            best = torch.empty(max(need, self.capacity), dtype=torch.float32)
            self._owned[best.data_ptr()] = best
        n, c, *spatial = shape
        return best[:need].view(n, *spatial, c).permute(0, 4, 1, 2, 3)

    def give(self, t: torch.Tensor) -> None:
        """``t`` is dead: nobody reads it any more. Kept if it is one of this pool's
        buffers, so that the same few buffers serve every block; others are let go."""
        root = self._owned.get(t.data_ptr())
        if root is not None and all(r is not root for r in self._free):
            self._free.append(root)


def _fused_block(block, x: torch.Tensor, at: _Region, run: _Convolutions,
                 spares: _Spares) -> torch.Tensor:
    """A residual block as two Winograd calls: ``relu(bn_0(x))`` fused into the first
    convolution's input, ``relu(bn_1(.))`` into its output, the (channel-padded)
    shortcut added in the second's output (``HighResBlock.forward``, up to rounding).

    ``x`` (channels-last, the activation over ``at.box``) is handed to ``spares``: the
    caller must not read it afterwards."""
    before = at.box
    crop0 = at.step()
    d = block.conv_0.dilation[0]
    n = x.shape[0]
    t = winograd.conv3d(x, run.winograd(block.conv_0), dilation=d, lo=crop0.lo,
                        shape=crop0.shape, bias=block.conv_0.bias, pre=run.affine(block.bn_0),
                        post=run.affine(block.bn_1), relu=True,
                        out=spares.take((n, block.conv_0.out_channels) + crop0.shape))
    crop1 = at.step()
    y = winograd.conv3d(t, run.winograd(block.conv_1), dilation=d, lo=crop1.lo,
                        shape=crop1.shape, bias=block.conv_1.bias, residual=x,
                        residual_lo=np.subtract(at.box.lo, before.lo),
                        channel_lo=block.channel_pad[0],
                        out=spares.take((n, block.conv_1.out_channels) + crop1.shape))
    run.flops += sum(winograd.flops(c.shape, conv.in_channels, conv.out_channels, d) * n
                     for c, conv in ((crop0, block.conv_0), (crop1, block.conv_1)))
    spares.give(x)
    spares.give(t)
    return y


def _head(model: HighRes3DNet, h: torch.Tensor, run: _Convolutions) -> torch.Tensor:
    """The 1x1x1 layers: features ``(N, 64, ...)`` to logits ``(N, K, ...)``."""
    h = h.contiguous(memory_format=run.memory_format)
    if model.conv_1 is not None:
        h = _bn_(model.conv_1.bn, run(model.conv_1.conv, h)).relu_()
    return _bn_(model.conv_2.bn, run(model.conv_2.conv, h))


def region_logits(model: HighRes3DNet, x: torch.Tensor, region: Box, domain: Box, *,
                  engine: str = "eager") -> torch.Tensor:
    """Logits ``(N, K, *region.shape)`` of ``region`` as ``model`` gives them on all of ``domain``.

    ``x``: ``(N, C, *box.shape)`` input of the region's :func:`engine_input_box`.
    For checks on small regions; the modes use the label path, which never
    holds all logits at once.
    """
    run = _Convolutions(_check_engine(engine), x.device, domain.shape)
    with torch.inference_mode():
        h, box = _trunk(model, x, region, domain, run)
        logits = _head(model, h, run)
        return logits[(slice(None), slice(None)) + region.slices(box.lo)].contiguous()


def _region_labels(model: HighRes3DNet, x: torch.Tensor, region: Box, domain: Box,
                   run: _Convolutions, *, head_reuse: bool = False) -> torch.Tensor:
    """Labels ``(N, *region.shape)`` int32 of ``region`` (see :func:`_trunk`), the head run
    in slabs of :data:`HEAD_VOXELS` voxels.

    ``head_reuse``: the slabs (equal sizes, tens of MB each) reuse each other's freed
    memory (:func:`reuse_freed_memory`; not inside a run that already does)."""
    x, box = _trunk(model, x, region, domain, run)
    labels = torch.empty((x.shape[0],) + box.shape, dtype=torch.int32, device=x.device)
    step = max(1, HEAD_VOXELS // max(1, x.shape[0] * box.shape[1] * box.shape[2]))
    with reuse_freed_memory(head_reuse and x.device.type == "cpu"):
        for start in range(0, box.shape[0], step):
            labels[:, start:start + step] = _head(model, x[:, :, start:start + step],
                                                  run).argmax(dim=1)
    if run.spares is not None:
        run.spares.give(x)
    del x
    return labels[(slice(None),) + region.slices(box.lo)]


# --- settings for a run -----------------------------------------------------------------------

#: glibc's ``mallopt`` parameters (``malloc.h``) and their defaults, restored after a run.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
#: Environment by which a user has tuned (or replaced) malloc: then it is left alone.
_MALLOC_ENV = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_",
               "MALLOC_TOP_PAD_", "GLIBC_TUNABLES", "LD_PRELOAD")


def _glibc():
    """The C library (``ctypes``) when it is glibc and malloc is not tuned by the user, else None."""
    import ctypes
    import platform

    if (platform.system() != "Linux" or platform.libc_ver()[0] != "glibc"
            or any(k in os.environ for k in _MALLOC_ENV)):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):
        return None


def can_reuse_freed_memory() -> bool:
    """Whether :func:`reuse_freed_memory` has an effect here (glibc, malloc not tuned)."""
    return _glibc() is not None


@contextlib.contextmanager
def reuse_freed_memory(enabled: bool = True):
    """Keep freed activations in the process's heap for the next ones, for the block.

    A region's activations are hundreds of MB each. glibc serves blocks that
    large with ``mmap`` and returns them with ``munmap`` when freed, so every
    new activation is page-faulted and zeroed by the kernel again: over one
    128^3 window 5.9 million page faults, a quarter of the CPU time spent as
    system time (eager PyTorch's own ``model(window)``: 9.6 million, a third).
    Here ``mallopt(M_MMAP_MAX, 0)`` serves them from the heap and
    ``M_TRIM_THRESHOLD`` keeps freed ones there to be reused as they are (same
    window: 0.9 million faults, system time 13.2 s -> 2.1 s); afterwards
    glibc's defaults are set back and ``malloc_trim(0)`` returns the memory.
    The price is resident memory (freed blocks the next ones do not fit stay
    resident): :data:`BYTES_PER_VALUE_REUSED`. Numbers computed do not change,
    only where buffers live. A no-op unless :func:`can_reuse_freed_memory`.
    """
    libc = _glibc() if enabled else None
    if libc is None:
        yield
        return
    libc.mallopt(_M_MMAP_MAX, 0)
    libc.mallopt(_M_TRIM_THRESHOLD, -1)  # as size_t: never trim inside the block
    try:
        yield
    finally:
        libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
        libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
        libc.malloc_trim(0)


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


class _Budget:
    """What one network call may use under ``max_memory`` bytes, as activation values.

    ``fixed``: bytes the run will hold besides the network's working memory (the
    output, the owner map); the process's resident memory now is counted too.
    """

    def __init__(self, max_memory: int | str | None, *, engine: str, batch: int = 1,
                 fixed: int = 0, reuse: bool = False):
        self.total = default_max_memory() if max_memory is None else parse_memory(max_memory)
        self.held = _rss_bytes() + fixed + WORKSPACE_BYTES
        table = BYTES_PER_VALUE_REUSED if reuse else BYTES_PER_VALUE
        self.per_value = table[engine] * max(1, batch)
        self.values = max(0, self.total - self.held) // self.per_value

    def plan(self, region: Box, domain: Box, steps) -> list[Box]:
        """``region`` as is when it fits, else the least-work tiling that does."""
        if region_values(region, domain, steps) <= self.values:
            return [region]
        try:
            return list(plan_tiles(region, domain, steps, max_values=self.values).tiles)
        except OptionError:
            finest = split_box(region, tuple(min(32, n) for n in region.shape))
            need = self.held + self.per_value * max(region_values(t, domain, steps) for t in finest)
            raise OptionError(f"max_memory {self.total / 2**20:.0f}M is too small for this volume: "
                              f"give at least {need / 2**20:.0f}M") from None


def _progress(iterable: Iterable, total: int, enabled: bool, desc: str, unit: str):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False)


def _source(volume: np.ndarray) -> torch.Tensor:
    """``(X, Y, Z[, C])`` float volume as a ``(C, X, Y, Z)`` float32 CPU tensor."""
    if volume.ndim == 3:
        volume = volume[..., None]
    if volume.ndim != 4:
        raise OptionError(f"volume of shape {volume.shape}: expected (X, Y, Z) or (X, Y, Z, C)")
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(volume, -1, 0), dtype=np.float32))


def _inputs(source: torch.Tensor, boxes: list[Box], device: torch.device) -> torch.Tensor:
    """The boxes of ``source`` stacked into ``(N, C, *box.shape)`` on ``device`` (all boxes
    one shape); staged in pinned memory for an asynchronous copy to a GPU."""
    views = [source[(slice(None),) + b.slices()] for b in boxes]
    if device.type != "cuda":
        return torch.stack(views)
    staging = torch.empty((len(views),) + tuple(views[0].shape), dtype=source.dtype, pin_memory=True)
    torch.stack(views, out=staging)
    return staging.to(device, non_blocking=True)


# --- niftynet mode ----------------------------------------------------------------------------

def _signature(region: Box, domain: Box, steps, align) -> tuple:
    """The boxes a region goes through, layer by layer, relative to the region: regions with
    equal signatures run the same shapes and crops, so they can share a batch."""
    return tuple((tuple(np.subtract(b.lo, region.lo)), b.shape)
                 for b in _layer_boxes(region, domain, steps, align)) + (region.shape,)


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def grid_jobs(shape, window, border, batch_size: int, steps, *,
              budget: _Budget | None = None,
              keep: Box | None = None) -> tuple[np.ndarray, list[tuple[int, Box, Box]]]:
    """What ``niftynet`` mode computes: the owner map and ``(window, region, window box)`` jobs.

    Each window that keeps voxels contributes the bounding box of those voxels
    (split into tiles when it does not fit the ``budget``). With ``keep``, only
    voxels inside that box count (the owner map is -1 elsewhere).
    ``sum(region_work(region, domain, steps))`` over the jobs is the work.
    """
    locations = grid_locations(shape, window, border)
    order = batch_emission_order(len(locations), batch_size)
    owner = grid_owner_map(shape, locations, order, border)
    if keep is not None:
        inside = np.full_like(owner, -1)
        inside[keep.slices()] = owner[keep.slices()]
        owner = inside
    jobs = []
    for index, region in owned_regions(owner, locations, border):
        domain = Box(locations[index, :3], locations[index, 3:])
        tiles = [region] if budget is None else budget.plan(region, domain, steps)
        jobs += [(index, t, domain) for t in tiles]
    return owner, jobs


def segment_grid(model: torch.nn.Module, volume: np.ndarray, *,
                 window: tuple[int, int, int], border: tuple[int, int, int],
                 batch_size: int = 1, compute_batch: int = 1,
                 device: str | torch.device = "cpu", progress: bool = False,
                 engine: str = "eager", max_memory: int | str | None = None,
                 threads: int | None = None, stats: dict | None = None,
                 keep=None) -> np.ndarray:
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
        stats: if a dict, receives ``flops`` (convolution FLOPs run) and
            ``regions`` (network calls).
        keep: only the voxels of this :class:`~niftyport.tiling.Box` (or
            ``(lo, hi)`` pair) are wanted, e.g. the scan without its volume
            padding: the rest is not computed and left 0. Wanted voxels are
            the same as without ``keep``.

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
    source = _source(volume)
    with _run_settings(device, threads):
        keep = _keep_box(keep, spatial)
        if not _is_highres(model):
            labels = _segment_windows(model, source, spatial, window, border, batch_size,
                                      compute_batch, device, progress)
            if keep is not None:
                labels[~_inside(keep, spatial)] = 0
            return labels
        steps = conv_steps(model)
        reuse = (device.type == "cpu" and engine in BYTES_PER_VALUE_REUSED
                 and can_reuse_freed_memory())
        budget = _Budget(max_memory, engine=engine, batch=compute_batch, fixed=math.prod(spatial) * 8,
                         reuse=reuse)
        owner, jobs = grid_jobs(spatial, window, border, batch_size, steps, budget=budget,
                                keep=keep)
        plain = len(grid_locations(spatial, window, border)) * math.prod(window) * sum(s.flops for s in steps)
        log.info("niftynet mode: %d regions from %s windows, %.1f TFLOP (whole windows: %.1f)",
                 len(jobs), window, sum(region_work(r, d, steps) for _, r, d in jobs) / 1e12,
                 plain / 1e12)
        groups: dict[tuple, list] = {}
        for job in jobs:
            align = _row_alignment(engine, device, job[2])
            groups.setdefault(_signature(job[1], job[2], steps, align), []).append(job)
        run = _Convolutions(engine, device, window)
        labels = np.zeros(spatial, dtype=np.int32)
        chunks = [c for g in groups.values() for c in _batches(g, max(1, compute_batch))]
        # largest regions first: the freed blocks of a region then fit every later one's
        # (regions write disjoint voxels, so the order does not change the labels)
        chunks.sort(key=lambda c: -region_values(c[0][1], c[0][2], steps) * len(c))
        with reuse_freed_memory(reuse):
            for chunk in _progress(chunks, len(chunks), progress, "regions", "region"):
                x = _inputs(source, [engine_input_box(r, d, steps, engine=engine, device=device)
                                     for _, r, d in chunk], device)
                out = _region_labels(model, x, chunk[0][1], chunk[0][2], run).cpu().numpy()
                for (index, region, _), lab in zip(chunk, out):
                    sl = region.slices()
                    mine = owner[sl] == index
                    labels[sl][mine] = lab[mine]
        if stats is not None:
            stats.update(flops=run.flops, regions=len(chunks))
        return labels


def _keep_box(keep, shape) -> Box | None:
    """``keep`` as a Box inside the volume (None: everything)."""
    if keep is None:
        return None
    box = keep if isinstance(keep, Box) else Box(*keep)
    volume = Box.of_shape(shape)
    if any(a < lo or b > hi or a >= b for a, b, lo, hi in zip(box.lo, box.hi, volume.lo, volume.hi)):
        raise OptionError(f"keep {box} is empty or not inside the volume {shape}")
    return box


def _inside(box: Box, shape) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[box.slices()] = True
    return mask


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

def full_tiles(shape, steps, *, budget: _Budget, tile=None, keep: Box | None = None) -> list[Box]:
    """The tiles ``full`` mode computes over ``keep`` (default: the whole volume):
    ``tile``-sized from its low corner if given, else the least-work plan of
    :func:`~niftyport.tiling.plan_tiles` within the budget."""
    volume = Box.of_shape(shape)
    region = volume if keep is None else keep
    if tile is not None:
        return tiles_of_size(region, tile)
    return budget.plan(region, volume, steps)


def segment_full(model: torch.nn.Module, volume: np.ndarray, *,
                 max_memory: int | str | None = None, tile=None,
                 device: str | torch.device = "cpu", progress: bool = False,
                 engine: str = "fast", threads: int | None = None,
                 stats: dict | None = None, keep=None) -> np.ndarray:
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
        stats: if a dict, receives ``flops`` and ``regions`` (tiles).
        keep: only this box's voxels are wanted (see :func:`segment_grid`);
            their tiles still read the volume around them.

    Returns:
        ``(X, Y, Z)`` int32 labels: argmax of the logits of ``model(volume)``
        (0 outside ``keep``).
    """
    engine = _check_engine(engine)
    device = torch.device(device)
    if not _is_highres(model):
        raise OptionError(f"mode 'full' needs a HighRes3DNet (known receptive field), "
                          f"got {type(model).__name__}")
    spatial = tuple(volume.shape[:3])
    source = _source(volume)
    with _run_settings(device, threads):
        steps = conv_steps(model)
        budget = _Budget(max_memory, engine=engine, fixed=math.prod(spatial) * 4)
        tiles = full_tiles(spatial, steps, budget=budget, tile=tile, keep=_keep_box(keep, spatial))
        domain = Box.of_shape(spatial)
        log.info("full mode: %d tiles, %.1f TFLOP (one pass: %.1f)", len(tiles),
                 sum(region_work(t, domain, steps) for t in tiles) / 1e12,
                 region_work(domain, domain, steps) / 1e12)
        run = _Convolutions(engine, device, spatial)
        if engine == "winograd":
            run.spares = _Spares(max(region_values(t, domain, steps) for t in tiles))
        labels = np.zeros(spatial, dtype=np.int32)
        for t in _progress(tiles, len(tiles), progress, "tiles", "tile"):
            x = _inputs(source, [engine_input_box(t, domain, steps, engine=engine, device=device)],
                        device)
            labels[t.slices()] = _region_labels(model, x, t, domain, run,
                                                head_reuse=True)[0].cpu().numpy()
        run.spares = None
        if stats is not None:
            stats.update(flops=run.flops, regions=len(tiles))
        return labels


# --- the pipeline's entry point ---------------------------------------------------------------

#: The ``full`` modes and the engine each runs.
FULL_ENGINES = {"full": "fast", "full-eager": "eager", "full-winograd": "winograd"}


def run_mode(mode: str, model: torch.nn.Module, volume: np.ndarray, *,
             window: tuple[int, int, int], border: tuple[int, int, int], batch_size: int = 1,
             device: str | torch.device = "cpu", max_memory: int | str | None = None,
             progress: bool = False, threads: int | None = None, compute_batch: int = 1,
             tile=None, stats: dict | None = None, keep=None) -> np.ndarray:
    """Label a padded, normalised ``(X, Y, Z)`` float32 volume in the given mode.

    ``window``, ``border`` and ``batch_size`` matter to the ``niftynet*`` modes;
    ``tile`` only to the ``full*`` modes. Returns int32 ``(X, Y, Z)`` labels of
    the padded volume; with ``keep`` (a box, e.g. the scan inside its volume
    padding) only those voxels are computed, the others are 0.
    """
    if mode in ("niftynet", "niftynet-fast"):
        return segment_grid(model, volume, window=window, border=border, batch_size=batch_size,
                            compute_batch=compute_batch, device=device, progress=progress,
                            engine="eager" if mode == "niftynet" else "fast",
                            max_memory=max_memory, threads=threads, stats=stats, keep=keep)
    if mode in FULL_ENGINES:
        return segment_full(model, volume, max_memory=max_memory, tile=tile, device=device,
                            progress=progress, engine=FULL_ENGINES[mode],
                            threads=threads, stats=stats, keep=keep)
    raise OptionError(f"--mode {mode!r} is not one of {', '.join(MODES)}")
