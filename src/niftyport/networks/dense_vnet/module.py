"""DenseVNet in PyTorch, laid out like NiftyNet's implementation.

Gibson E., Giganti F., Hu Y., Bonmati E., Bandula S., Gurusamy K., Davidson
B., Pereira S. P., Clarkson M. J., Barratt D. C. "Automatic multi-organ
segmentation on abdominal CT with dense V-networks." IEEE TMI 2018.

Mirrors ``niftynet/network/dense_vnet.py`` of NiftyNet 0.6.0 (``DenseVNet``,
``DenseFeatureStackBlock``, ``DenseFeatureStackBlockWithSkipAndDownsample``,
``SpatialPriorBlock``) with the TF-exact ops of :mod:`..layers`. For an input
``(N, C, X, Y, Z)`` (2-D: ``(N, C, X, Y)``), every side a multiple of 8 by
default, the graph is::

    d = BN(avg_pool(x, 3, stride 2, SAME, padding excluded))      (N, C, X/2, ...)
    h = concat[d, BN(conv5x5x5 stride 2 (x))]                     no activation
    for each dense block i (at 1/2, 1/4, 1/8 resolution):
        stack = [h]; repeat: stack += [relu(BN(conv3(concat(stack))))]
        skip_i = relu(BN(conv3(concat(stack))))        (use_bdo: stack without h)
        h      = relu(BN(conv3 stride 2(concat(stack))))           (not after the last)
    logits = conv3(concat[d, resize(skip_1), resize(skip_2), ...]) + bias
             (+ log(resize(prior)) when use_prior)
    output = resize(logits, input size)         TF1 legacy bilinear (resize_linear_tf1)

Output: ``(N, num_classes, X, Y, Z)`` raw logits at the input's size.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ...errors import InputShapeError
from ..layers import BatchNorm, Conv, avg_pool_same, resize_linear_tf1
from .architecture import (
    BLOCK_KERNEL,
    INITIAL_KERNEL,
    Architecture,
    Block,
    merged_hyperparams,
    resolve,
)



class ConvBN(nn.Module):
    """NiftyNet's ``ConvolutionalLayer`` with batch norm: conv (no bias, SAME) -> BN -> optional ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, *, dims: int, stride: int = 1,
                 relu: bool = True):
        super().__init__()
        self.conv = Conv(in_channels, out_channels, kernel, dims=dims, stride=stride)
        self.bn = BatchNorm(out_channels)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class DenseBlock(nn.Module):
    """``DenseFeatureStackBlockWithSkipAndDownsample``: dense stack, skip conv, optional stride-2 down conv.

    Each of ``dfs`` sees the block input and all earlier outputs; the skip
    and down convs see the whole stack (with ``use_bdo``, NiftyNet leaves
    the block input out of it: at inference every channel is kept).
    """

    def __init__(self, block: Block, dims: int):
        super().__init__()
        self.dfs = nn.ModuleList(ConvBN(block.conv_in_channels(j), block.dense_channels, BLOCK_KERNEL, dims=dims)
                                 for j in range(block.n_convs))
        self.skip_conv = ConvBN(block.merged_channels, block.seg_channels, BLOCK_KERNEL, dims=dims)
        self.down_conv = (None if block.down_channels is None else
                          ConvBN(block.merged_channels, block.down_channels, BLOCK_KERNEL, dims=dims, stride=2))
        self.use_bdo = block.use_bdo

    def _stack(self, x: torch.Tensor) -> torch.Tensor:
        stack = [x]
        for conv in self.dfs:
            stack.append(conv(torch.cat(stack, 1)))
        return torch.cat(stack[1:] if self.use_bdo else stack, 1)

    def _stack_in_place(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`_stack` without re-concatenating: each output is written once into one buffer (inference only)."""
        width = x.shape[1]
        total = width + sum(conv.conv.weight.shape[0] for conv in self.dfs)
        buffer = x.new_empty((x.shape[0], total, *x.shape[2:]))
        buffer[:, :width] = x
        for conv in self.dfs:
            out = conv(buffer[:, :width])
            buffer[:, width:width + out.shape[1]] = out
            width += out.shape[1]
        return buffer[:, x.shape[1]:] if self.use_bdo else buffer

    def forward(self, x: torch.Tensor, *, downsample: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(skip, downsampled)``; ``downsampled`` is None without a down conv or when not asked for."""
        merged = self._stack(x) if torch.is_grad_enabled() else self._stack_in_place(x)
        skip = self.skip_conv(merged)
        if not downsample or self.down_conv is None:
            return skip, None
        return skip, self.down_conv(merged)


class DenseVNet(nn.Module):
    """DenseVNet as NiftyNet 0.6.0 builds it (the model zoo's ``dense_vnet_abdominal_ct``: 9 classes).

    Args:
        num_classes: output channels (logits).
        in_channels: input modalities.
        acti_func: kept for the loader; NiftyNet's DenseVNet ignores it (ReLU in the
            dense blocks, none after the initial and final convs).
        hyperparams: NiftyNet's ``hyperparams`` dict, merged over its
            ``__hyper_params__`` defaults (unknown keys refused); see
            :data:`.architecture.DEFAULT_HYPERPARAMS`. ``augmentation_scale``
            only acts in training.
        spatial_dims: 3, or 2 for 2-D inputs ``(N, C, X, Y)`` (NiftyNet takes the
            rank from its input tensor).

    >>> net = DenseVNet(num_classes=9).eval()
    >>> net(torch.zeros(1, 1, 16, 16, 8)).shape
    torch.Size([1, 9, 16, 16, 8])
    """

    def __init__(self, *, num_classes: int = 9, in_channels: int = 1, acti_func: str = "relu",
                 hyperparams: Mapping[str, Any] | None = None, spatial_dims: int = 3):
        super().__init__()
        arch = resolve(hyperparams, num_classes=num_classes, in_channels=in_channels, spatial_dims=spatial_dims)
        self.arch: Architecture = arch
        self.num_classes, self.in_channels, self.spatial_dims = num_classes, in_channels, spatial_dims
        self.acti_func = acti_func.lower()
        self.hyperparams = merged_hyperparams(hyperparams)  # as NiftyNet's attribute: defaults + given
        d = spatial_dims
        self.downsample_bn = BatchNorm(in_channels)
        self.initial_conv = ConvBN(in_channels, arch.initial_channels, INITIAL_KERNEL, dims=d, stride=2,
                                   relu=False)
        self.blocks = nn.ModuleList(DenseBlock(block, d) for block in arch.blocks)
        self.final_conv = Conv(arch.seg_in_channels, num_classes, arch.seg_kernel_size, dims=d, bias=True)
        if arch.use_prior:
            # NiftyNet's variable (1, P, P[, P], 1), initialised to 1 as there; read as (1, 1, P, ...)
            self.spatial_prior = nn.Module()
            self.spatial_prior.prior = nn.Parameter(torch.ones(1, *(arch.prior_size,) * d, 1))

    def check_input(self, x: torch.Tensor) -> None:
        """NiftyNet's size rule for this network: every side a multiple of ``2 ** len(dilation_rates)``."""
        spatial = tuple(x.shape[2:])
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise InputShapeError(f"DenseVNet expects (N, {self.in_channels}, {self.spatial_dims} spatial axes), "
                                  f"got {tuple(x.shape)}")
        m = self.arch.size_multiple
        if any(n % m for n in spatial):
            raise InputShapeError(f"DenseVNet needs every spatial side to be a multiple of {m}, got {spatial}")

    def log_prior(self, grid: tuple[int, ...]) -> torch.Tensor:
        """``log(resize(prior))`` on the half-resolution grid, ``(1, 1, *grid)``."""
        prior = self.spatial_prior.prior.reshape(1, 1, *self.spatial_prior.prior.shape[1:-1])
        return torch.log(resize_linear_tf1(prior, grid))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        downsampled = self.downsample_bn(avg_pool_same(x, 3, 2))
        grid = tuple(downsampled.shape[2:])
        h = torch.cat([downsampled, self.initial_conv(x)], 1)
        features = [downsampled]
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            skip, h = block(h, downsample=i < last)
            features.append(resize_linear_tf1(skip, grid))
        logits = self.final_conv(torch.cat(features, 1))
        if self.arch.use_prior:
            logits = logits + self.log_prior(grid)
        return resize_linear_tf1(logits, tuple(x.shape[2:]))
