"""NiftyNet's No New-Net (``[NETWORK] name = nonewnet``) in PyTorch.

Isensee F., Kickingereder P., Wick W., Bendszus M., Maier-Hein K. H. "No
New-Net." MICCAI BrainLesion Workshop 2018.

Mirrors ``niftynet/network/no_new_net.py`` (NiftyNet 0.6.0, class ``UNet3D``,
name scope ``NoNewNet``); the layers and their keys come from
:mod:`.architecture`. A NiftyNet variable
``NoNewNet/R1_FC/10_in_leakyrelu_1/in_/InstanceNorm/gamma`` is
``R1_FC.10_in_1.norm.weight`` here.

Layout: ``(N, C, X, Y, Z)`` float32 in, ``(N, num_classes, X, Y, Z)`` logits
out (the last 1x1x1 conv has no norm, no activation, no bias). Every side
must be a multiple of 16. Up-sampling is NiftyNet's ``LinearResizeLayer``
(TF1 ``resize_bilinear``, legacy sampling: at ``dst / 2``, the last voxel
repeated), not a learned layer.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..layers import Activation, Conv, InstanceNorm, max_pool_same, resize_linear_tf1
from .architecture import DEFAULT_N_FEATURES, BlockSpec, ConvSpec, blocks


class ConvINActi(nn.Module):
    """NiftyNet's ``ConvolutionalLayer``: SAME conv without bias, then (if ``normed``) instance norm + activation."""

    def __init__(self, spec: ConvSpec, acti_func: str):
        super().__init__()
        self.conv = Conv(spec.in_channels, spec.out_channels, spec.kernel)
        if spec.normed:
            self.norm = InstanceNorm(spec.out_channels)  # eps 1e-5, as ConvolutionalLayer passes it
            self.acti = Activation(acti_func, spec.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if hasattr(self, "norm"):
            x = self.acti(self.norm(x))
        return x


class UNetBlock(nn.Module):
    """No New-Net's ``UNetBlock``: its convs, then max-pool / x2 linear resize / nothing.

    ``forward`` returns ``(main, branch)``: ``branch`` is the convs' output
    (the skip connection), ``main`` what follows the tail.
    """

    def __init__(self, spec: BlockSpec, acti_func: str):
        super().__init__()
        self.tail = spec.tail
        self.keys = [conv.key for conv in spec.convs]
        for conv in spec.convs:  # registered under NiftyNet's layer name, e.g. "10_in_1"
            self.add_module(conv.key, ConvINActi(conv, acti_func))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for key in self.keys:
            x = getattr(self, key)(x)
        if self.tail == "down":
            return max_pool_same(x, 2, 2), x
        if self.tail == "up":
            return resize_linear_tf1(x, [2 * n for n in x.shape[2:]]), x
        return x, x


class NoNewNet(nn.Module):
    """NiftyNet's No New-Net.

    Args:
        num_classes: width of the last 1x1x1 conv (the logits).
        in_channels: input modalities.
        acti_func: NiftyNet's activation name (``[NETWORK] activation_function``; the class
            default is ``leakyrelu``, NiftyNet's ``0.51 x + 0.49 |x|``), used after every
            instance norm.
        n_features: NiftyNet's ``UNet3D.n_features``, the five widths.

    >>> net = NoNewNet(num_classes=3, n_features=(2, 2, 2, 2, 2)).eval()
    >>> net(torch.zeros(1, 1, 16, 32, 16)).shape
    torch.Size([1, 3, 16, 32, 16])
    """

    def __init__(self, *, num_classes: int, in_channels: int = 1, acti_func: str = "leakyrelu",
                 n_features: Sequence[int] = DEFAULT_N_FEATURES):
        super().__init__()
        self.num_classes, self.in_channels = num_classes, in_channels
        self.acti_func = acti_func.lower()
        specs = blocks(in_channels, num_classes, n_features)
        self.n_features = tuple(int(n) for n in n_features)
        for spec in specs:
            self.add_module(spec.name, UNetBlock(spec, self.acti_func))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for name in ("L1", "L2", "L3", "L4"):
            x, skip = getattr(self, name)(x)
            skips.append(skip)
        x, _ = self.bottom(x)
        for name, skip in zip(("R4", "R3", "R2", "R1_FC"), reversed(skips)):
            x, _ = getattr(self, name)(torch.cat([skip, x], dim=1))  # NiftyNet's CONCAT(conv_i, up): skip first
        return x
