"""TF-exact building blocks: where PyTorch's defaults differ from what NiftyNet's TensorFlow graph computes.

Layout: torch's ``(N, C, *spatial)`` throughout (``spatial`` = X, Y[, Z]);
kernels ``(out, in, *k)``, transposed kernels ``(in, out, *k)`` — the
NiftyNet checkpoint's ``(*k, in, out)`` / ``(*k, out, in)`` permuted by the
rules' ``conv3d_dhwio_to_oidhw`` (the same permutation serves both).

What differs from plain PyTorch, and why it matters:

* ``SAME`` padding (``tf.nn.convolution``) is asymmetric when ``k - s`` is
  odd: the extra zero goes at the *end* of each axis (:func:`same_padding`).
* TF's transposed convolution with ``SAME`` padding and ``output = n * s``
  crops ``(k - s) // 2`` from the start (:func:`conv_transpose_same`).
* Average pooling with ``SAME`` padding divides by the voxels inside the
  image, not the window size (:func:`avg_pool_same`).
* ``tf.image.resize_bilinear`` (TF1 defaults: ``align_corners=False``,
  ``half_pixel_centers=False``) samples at ``dst * in / out``, a mapping no
  ``align_corners`` setting of ``torch.nn.functional.interpolate`` gives
  (:func:`resize_linear_tf1`).
* NiftyNet's activations (``niftynet/layer/activation.py``): ``prelu`` is
  ``relu(x) + alpha * (x - |x|) * 0.5`` with one ``alpha`` per channel,
  ``leakyrelu`` is ``0.51 x + 0.49 |x|`` (slope 0.02), ``selu`` uses its own
  constants (:class:`Activation`).
* Batch norm: eps 1e-5 (``niftynet/layer/bn.py``), moving statistics at
  inference unless the graph asks for the batch's (:class:`BatchNorm`).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import ACTI_FUNCS

#: ``BNLayer``'s epsilon and ``InstanceNormLayer``'s (``niftynet/layer/bn.py``).
BN_EPS = 1e-5
#: NiftyNet's ``moving_decay`` 0.9, as PyTorch's momentum.
BN_MOMENTUM = 0.1

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _tuple(value: int | Sequence[int], n: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, Sequence) else (int(value),) * n


def same_padding(size: int, kernel: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """``(before, after)`` zeros TensorFlow's ``SAME`` padding adds to an axis of ``size`` voxels.

    ``total = max((ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)``,
    ``before = total // 2`` (the odd voxel goes at the end).

    >>> same_padding(9, 3, 2), same_padding(8, 3, 2), same_padding(8, 2, 2), same_padding(8, 5, 1)
    ((1, 1), (0, 1), (0, 0), (2, 2))
    """
    extent = (kernel - 1) * dilation + 1
    total = max((-(-size // stride) - 1) * stride + extent - size, 0)  # integer ceil: symbolic sizes too
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
             value: float = 0.0) -> torch.Tensor:
    """``x`` ``(N, C, *spatial)`` padded as TensorFlow's ``SAME`` would before a window op."""
    pads: list[int] = []
    for size, k, s, d in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride), reversed(dilation)):
        pads += same_padding(size, k, s, d)  # F.pad takes the last axis first
    if not any(pads):
        return x
    return F.pad(x, pads, value=value)


def conv_same(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
              stride: int | Sequence[int] = 1, dilation: int | Sequence[int] = 1,
              padding: str = "SAME") -> torch.Tensor:
    """``tf.nn.convolution(x, w, padding)`` in torch layout; ``padding`` is ``"SAME"`` or ``"VALID"``.

    Symmetric ``SAME`` padding is left to the convolution itself (the
    backend then sees the same call as a plain ``nn.Conv3d``); asymmetric
    padding is added explicitly first.
    """
    n = weight.dim() - 2
    kernel, stride_, dilation_ = tuple(weight.shape[2:]), _tuple(stride, n), _tuple(dilation, n)
    conv = _CONV[n]
    if padding.upper() == "VALID":
        return conv(x, weight, bias, stride_, 0, dilation_)
    pads = [same_padding(size, k, s, d) for size, k, s, d in zip(x.shape[2:], kernel, stride_, dilation_)]
    if all(a == b for a, b in pads):
        return conv(x, weight, bias, stride_, tuple(a for a, _ in pads), dilation_)
    return conv(pad_same(x, kernel, stride_, dilation_), weight, bias, stride_, 0, dilation_)


def conv_transpose_same(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                        stride: int | Sequence[int] = 2, padding: str = "SAME") -> torch.Tensor:
    """TF's ``conv{2,3}d_transpose`` as NiftyNet's ``DeconvLayer`` calls it, in torch layout.

    ``weight`` is ``(in, out, *k)``. ``SAME``: output side ``n * s``, the
    full ``(n - 1) * s + k`` transposed output cropped by ``(k - s) // 2``
    at the start (zeros appended when ``k < s``). ``VALID``: output side
    ``(n - 1) * s + k`` (when ``k >= s``; ``n * s`` otherwise, zero-stuffed).
    """
    n = weight.dim() - 2
    kernel, stride_ = tuple(weight.shape[2:]), _tuple(stride, n)
    extra = tuple(max(s - k, 0) for k, s in zip(kernel, stride_))  # k < s: zeros TF keeps at the end
    full = _CONV_T[n](x, weight, bias, stride_, 0, extra)
    if padding.upper() == "VALID":
        return full
    crops = []
    for size, k, s in zip(x.shape[2:], kernel, stride_):
        before = max(k - s, 0) // 2
        crops.append(slice(before, before + size * s))
    return full[(slice(None), slice(None), *crops)]


def avg_pool_same(x: torch.Tensor, kernel: int | Sequence[int], stride: int | Sequence[int]) -> torch.Tensor:
    """``tf.nn.avg_pool`` with ``SAME`` padding: padded voxels are left out of each average."""
    n = x.dim() - 2
    kernel_, stride_ = _tuple(kernel, n), _tuple(stride, n)
    pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[n]
    padded = pad_same(x, kernel_, stride_, (1,) * n)
    if padded is x:
        return pool(x, kernel_, stride_)
    ones = pad_same(torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device), kernel_, stride_, (1,) * n)
    return pool(padded, kernel_, stride_) / pool(ones, kernel_, stride_)


def max_pool_same(x: torch.Tensor, kernel: int | Sequence[int], stride: int | Sequence[int]) -> torch.Tensor:
    """``tf.nn.max_pool`` with ``SAME`` padding (padded voxels never win)."""
    n = x.dim() - 2
    kernel_, stride_ = _tuple(kernel, n), _tuple(stride, n)
    pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[n]
    return pool(pad_same(x, kernel_, stride_, (1,) * n, value=-math.inf), kernel_, stride_)


def _linear_axis(x: torch.Tensor, axis: int, new_size: int) -> torch.Tensor:
    """TF1 ``resize_bilinear`` along one axis: sample at ``dst * (in / out)`` (float32), clamp at the end.

    The neighbours are gathered by advanced indexing: PyTorch's CPU
    ``index_select`` is an order of magnitude slower on the outer axes of a
    5-D tensor (DenseVNet's 72^3 -> 144^3 resize of 9 channels: 12 s -> 1 s).
    """
    old = int(x.shape[axis])  # an int also while tracing (where sizes are tensors)
    if old == new_size:
        return x
    scale = np.float32(old) / np.float32(new_size)
    src = np.arange(new_size, dtype=np.float32) * scale
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, old - 1)
    frac = (src - lo.astype(np.float32)).astype(np.float32)
    shape = [1] * x.dim()
    shape[axis] = new_size
    frac_t = torch.from_numpy(frac).to(device=x.device, dtype=x.dtype).reshape(shape)
    lead = (slice(None),) * axis
    low = x[lead + (torch.from_numpy(lo).to(x.device),)]
    high = x[lead + (torch.from_numpy(hi).to(x.device),)]
    return low + (high - low) * frac_t


def _linear_axis_traced(x: torch.Tensor, axis: int, new_size) -> torch.Tensor:
    """:func:`_linear_axis` for ``torch.jit.trace``: the index lists made by torch from the (traced) sizes.

    While tracing, sizes are tensors; computing ``src``, ``lo``, ``hi`` and
    ``frac`` with torch keeps them so, and the traced graph resizes any size.
    The same float32 operations as :func:`_linear_axis`: the same bits.
    """
    old = torch.as_tensor(x.shape[axis])
    new = torch.as_tensor(new_size)
    if bool(old == new):
        return x
    scale = old.to(torch.float32) / new.to(torch.float32)
    src = torch.arange(new, dtype=torch.float32, device=x.device) * scale
    lo = torch.floor(src).to(torch.int64)
    hi = torch.minimum(lo + 1, old.to(x.device) - 1)
    frac = (src - lo.to(torch.float32)).to(x.dtype).reshape([1] * axis + [-1] + [1] * (x.dim() - axis - 1))
    lead = (slice(None),) * axis
    low, high = x[lead + (lo,)], x[lead + (hi,)]
    return low + (high - low) * frac


def resize_linear_tf1(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """NiftyNet's ``LinearResizeLayer``: TF1 ``resize_bilinear`` (legacy sampling) on 2-D or 3-D maps.

    ``x`` is ``(N, C, *spatial)``; ``size`` the new spatial shape. Each axis
    is interpolated separately (the 3-D layer is two 2-D resizes, ``(Y, Z)``
    then ``X``; linear interpolation is separable), with TF's sampling
    ``src = dst * in / out`` and ``top + (bottom - top) * frac`` per axis.
    Unchanged when the size already matches.

    >>> x = torch.arange(4.0).reshape(1, 1, 4)[..., None]   # (N, C, X=4, Y=1)
    >>> resize_linear_tf1(x, (8, 1)).flatten().tolist()
    [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.0]
    """
    if torch.compiler.is_exporting():  # torch.export (ONNX): sizes may be symbolic; one op (_resize_tf1_op)
        return x if list(x.shape[2:]) == list(size) else _resize_tf1_op(x, list(size))
    if torch.jit.is_tracing():  # TorchScript: sizes are traced tensors; keep them so
        for axis in reversed(range(2, x.dim())):
            x = _linear_axis_traced(x, axis, size[axis - 2])
        return x
    size = tuple(int(n) for n in size)
    if tuple(x.shape[2:]) == size:
        return x
    axes = list(range(2, x.dim()))
    order = reversed(axes)  # TF interpolates the last axis first: Z, Y, then X (a separate 2-D pass)
    for axis in order:
        x = _linear_axis(x, axis, size[axis - 2])
    return x



@torch.library.custom_op("niftyport::resize_linear_tf1", mutates_args=(),
                         schema="(Tensor x, SymInt[] size) -> Tensor")
def _resize_tf1_op(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """:func:`resize_linear_tf1` as one opaque op, what ONNX export sees (eager: the same gathers).

    ``niftyport.export.onnx`` translates it into ONNX's
    ``Resize(mode="linear", coordinate_transformation_mode="asymmetric")``,
    TF1's legacy sampling ``src = dst * in / out``, clamped at the end;
    the sizes stay symbolic, so exports with dynamic spatial axes resize right.
    """
    out = x
    for axis in reversed(range(2, x.dim())):
        out = _linear_axis(out, axis, int(size[axis - 2]))
    return out.clone() if out is x else out


@_resize_tf1_op.register_fake
def _(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return x.new_empty((*x.shape[:2], *size))

# --------------------------------------------------------------------------- modules

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946

#: NiftyNet's ``acti_func`` names, ``dropout`` excepted (the identity at inference).
ACTIVATIONS = ACTI_FUNCS


class Activation(nn.Module):
    """NiftyNet's ``ActiLayer``; ``prelu`` holds ``alpha`` (one per channel, NiftyNet's ``.../alpha``)."""

    def __init__(self, func: str, channels: int | None = None):
        super().__init__()
        func = func.lower()
        if func not in ACTIVATIONS:
            from ..errors import NetworkError

            raise NetworkError(f"unknown acti_func {func!r} (NiftyNet's: {', '.join(ACTIVATIONS)})")
        self.func = func
        if func == "prelu":
            if channels is None:
                raise ValueError("prelu needs the number of channels")
            self.alpha = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.func
        if f == "relu":
            return F.relu(x)
        if f == "prelu":
            alpha = self.alpha.reshape(1, -1, *([1] * (x.dim() - 2)))
            return F.relu(x) + alpha * (x - x.abs()) * 0.5
        if f == "leakyrelu":
            return 0.51 * x + 0.49 * x.abs()
        if f == "selu":
            return _SELU_SCALE * torch.where(x >= 0.0, x, _SELU_ALPHA * F.elu(x))
        return {"relu6": F.relu6, "elu": F.elu, "softplus": F.softplus, "softsign": F.softsign,
                "sigmoid": torch.sigmoid, "tanh": torch.tanh}[f](x)

    def extra_repr(self) -> str:
        return self.func


class BatchNorm(nn.Module):
    """NiftyNet's ``BNLayer`` (eps 1e-5): moving statistics, or the batch's when ``batch_stats``.

    ``batch_stats=True`` reproduces graphs that normalise with the fed
    batch's mean and (biased) variance even at inference, as
    ``tf.nn.moments`` over every axis but the channels computes them; the
    stored statistics are then never read, nor updated.
    Keys: ``weight`` (gamma), ``bias`` (beta), ``running_mean``, ``running_var``.
    """

    def __init__(self, channels: int, *, batch_stats: bool = False, eps: float = BN_EPS):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.batch_stats = batch_stats
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.batch_stats or self.training:
            return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


class InstanceNorm(nn.Module):
    """TF1 ``contrib.layers.instance_norm`` (NiftyNet's ``InstanceNormLayer``, eps 1e-5), also on one voxel.

    Per sample and channel: ``mean`` and biased ``variance`` over the spatial
    axes (``tf.nn.moments``), then ``tf.nn.batch_normalization``'s
    ``x * inv + (beta - mean * inv)`` with ``inv = gamma / sqrt(variance + eps)``.
    Unlike ``torch.nn.functional.instance_norm`` it accepts maps of one voxel
    (No-New-Net's bottom level for 16-voxel sides), where it gives ``beta``.
    Keys ``weight`` (gamma) and ``bias`` (beta).
    """

    def __init__(self, channels: int, eps: float = BN_EPS):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axes = tuple(range(2, x.dim()))
        mean = x.mean(dim=axes, keepdim=True)
        variance = (x - mean).square().mean(dim=axes, keepdim=True)
        shape = (1, -1) + (1,) * len(axes)
        inv = torch.rsqrt(variance + self.eps) * self.weight.reshape(shape)
        return x * inv + (self.bias.reshape(shape) - mean * inv)


class Conv(nn.Module):
    """NiftyNet's ``ConvLayer``: one convolution with TF padding; keys ``weight`` (and ``bias``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int | Sequence[int], *, dims: int = 3,
                 stride: int | Sequence[int] = 1, dilation: int | Sequence[int] = 1, bias: bool = False,
                 padding: str = "SAME"):
        super().__init__()
        kernel_ = _tuple(kernel, dims)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *kernel_))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.stride, self.dilation, self.padding = _tuple(stride, dims), _tuple(dilation, dims), padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv_same(x, self.weight, self.bias, stride=self.stride, dilation=self.dilation,
                         padding=self.padding)


class ConvTranspose(nn.Module):
    """NiftyNet's ``DeconvLayer``: TF's transposed convolution; keys ``weight`` ``(in, out, *k)`` (and ``bias``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int | Sequence[int], *, dims: int = 3,
                 stride: int | Sequence[int] = 2, bias: bool = False, padding: str = "SAME"):
        super().__init__()
        kernel_ = _tuple(kernel, dims)
        self.weight = nn.Parameter(torch.empty(in_channels, out_channels, *kernel_))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.stride, self.padding = _tuple(stride, dims), padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv_transpose_same(x, self.weight, self.bias, stride=self.stride, padding=self.padding)


def crop_border(x: torch.Tensor, border: int | Sequence[int]) -> torch.Tensor:
    """NiftyNet's ``CropLayer``: drop ``border`` voxels from both ends of every spatial axis."""
    border_ = _tuple(border, x.dim() - 2)
    return x[(slice(None), slice(None), *(slice(b, n - b) for b, n in zip(border_, x.shape[2:])))]
