"""NiftyNet's VNet (``[NETWORK] name = vnet``) in PyTorch.

Milletari F., Navab N., Ahmadi S.-A. "V-Net: fully convolutional neural
networks for volumetric medical image segmentation." 3DV 2016.

Mirrors ``niftynet/network/vnet.py`` (NiftyNet 0.6.0, class ``VNet``, name
scope ``VNet``); the blocks come from :mod:`.architecture`. A NiftyNet
variable ``VNet/R3/conv_1/w`` is ``R3.conv_1.weight`` here,
``VNet/L2/prelu_activation_1/alpha`` is ``L2.acti_1.alpha``.

Layout: ``(N, C, X, Y, Z)`` float32 in, ``(N, num_classes, X, Y, Z)`` out,
every side a multiple of 16. No normalisation anywhere. The output is the
*activated* last 1x1x1 conv (NiftyNet ends every block, the last one too,
with the activation): with ``relu`` it is >= 0.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..layers import Activation, Conv, ConvTranspose
from .architecture import DEFAULT_N_FEATURES, TAILS, BlockSpec, blocks


class VNetBlock(nn.Module):
    """NiftyNet's ``VNetBlock``: 5x5x5 convs, ``+ bypass``, then the tail and its activation.

    ``forward(main, bypass)`` returns ``(res, out)``: ``res`` is the convs'
    output plus the bypass (the skip connection of the down blocks), ``out``
    the activated tail. A bypass wider than the convs (L1's tiled input when
    ``in_channels > 1``) is projected by ``proj`` (1x1x1, no bias), as
    ``ElementwiseLayer('SUM')`` does; VNet never has a narrower one.
    """

    def __init__(self, spec: BlockSpec, acti_func: str):
        super().__init__()
        self.spec = spec
        channels = spec.in_channels
        for i in range(spec.n_conv):
            self.add_module(f"conv_{i}", Conv(channels, spec.features, 5))
            channels = spec.features
        if spec.projects:
            self.proj = Conv(spec.bypass_channels, spec.features, 1)
        if spec.tail == "up":
            tail: nn.Module = ConvTranspose(spec.features, spec.out_channels, 2, stride=2, bias=True)
        elif spec.tail == "down":
            tail = Conv(spec.features, spec.out_channels, 2, stride=2, bias=True)
        else:
            tail = Conv(spec.features, spec.out_channels, 1, bias=True)
        self.add_module(TAILS[spec.tail], tail)
        for i, key in enumerate(spec.acti_keys):
            self.add_module(key, Activation(acti_func, spec.out_channels if i == spec.n_conv - 1 else spec.features))

    def forward(self, main: torch.Tensor, bypass: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keys = self.spec.acti_keys
        for i in range(self.spec.n_conv):
            main = getattr(self, f"conv_{i}")(main)
            if i < self.spec.n_conv - 1:
                main = getattr(self, keys[i])(main)
        res = main + (self.proj(bypass) if self.spec.projects else bypass)
        out = getattr(self, TAILS[self.spec.tail])(res)
        return res, getattr(self, keys[-1])(out)


class VNet(nn.Module):
    """NiftyNet's VNet.

    Args:
        num_classes: width of the last 1x1x1 conv.
        in_channels: input modalities (the first block's bypass is the input tiled
            ``n_features[0]`` times, projected by a 1x1x1 conv when ``in_channels > 1``).
        acti_func: NiftyNet's activation name (``[NETWORK] activation_function``, default
            ``relu``), also applied to the output.
        n_features: NiftyNet's ``VNet.n_features``, the five widths.

    >>> net = VNet(num_classes=3, n_features=(2, 2, 2, 2, 2)).eval()
    >>> net(torch.zeros(1, 1, 16, 32, 16)).shape
    torch.Size([1, 3, 16, 32, 16])
    """

    def __init__(self, *, num_classes: int, in_channels: int = 1, acti_func: str = "relu",
                 n_features: Sequence[int] = DEFAULT_N_FEATURES):
        super().__init__()
        self.num_classes, self.in_channels = num_classes, in_channels
        self.acti_func = acti_func.lower()
        specs = blocks(in_channels, num_classes, n_features)
        self.n_features = tuple(int(n) for n in n_features)
        for spec in specs:
            self.add_module(spec.name, VNetBlock(spec, self.acti_func))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res_1, down = self.L1(x, x.repeat(1, self.n_features[0], 1, 1, 1))  # tf.tile on the channel axis
        res_2, down = self.L2(down, down)
        res_3, down = self.L3(down, down)
        res_4, down = self.L4(down, down)
        _, up = self.V_(down, down)
        for name, skip in (("R4", res_4), ("R3", res_3), ("R2", res_2), ("R1", res_1)):
            _, up = getattr(self, name)(torch.cat([up, skip], dim=1), up)  # CONCAT(up, res): up first
        return up
