"""NiftyNet's UNet3D (``[NETWORK] name = unet``) in PyTorch.

Çiçek Ö., Abdulkadir A., Lienkamp S. S., Brox T., Ronneberger O. "3D U-Net:
learning dense volumetric segmentation from sparse annotation." MICCAI 2016.

Mirrors ``niftynet/network/unet.py`` (NiftyNet 0.6.0, class ``UNet3D``, name
scope ``UNet``); the layers and their keys come from :mod:`.architecture`.
A NiftyNet variable ``UNet/R3/64_bn_relu_1/conv_/w`` is ``R3.64_bn_1.conv.weight``
here, ``UNet/L4/up_2x2_bn/deconv_/w`` is ``L4.up_2x2_bn.deconv.weight``.

Layout: ``(N, C, X, Y, Z)`` float32 in, ``(N, num_classes, X - 88, Y - 88, Z - 88)``
out. Every side must be a multiple of 8 and at least 89 (NiftyNet's
assertions; :func:`.architecture.check_input`). What the output is: the
last 1x1x1 layer keeps batch norm *and* the activation, so with ``relu`` the
"logits" are >= 0, and NiftyNet's ``CropLayer`` drops 44 voxels per side.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..layers import Activation, BatchNorm, Conv, ConvTranspose, crop_border, max_pool_same
from .architecture import BORDER, DEFAULT_N_FEATURES, UP_KEY, BlockSpec, blocks


class ConvBNActi(nn.Module):
    """NiftyNet's ``ConvolutionalLayer`` here: SAME conv without bias -> batch norm -> activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, acti_func: str):
        super().__init__()
        self.conv = Conv(in_channels, out_channels, kernel)
        self.bn = BatchNorm(out_channels)
        self.acti = Activation(acti_func, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.acti(self.bn(self.conv(x)))


class DeconvBN(nn.Module):
    """``DeconvolutionalLayer('up_2x2')``: 2x2x2 stride-2 transposed conv without bias -> batch norm (no activation)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.deconv = ConvTranspose(in_channels, out_channels, 2, stride=2)
        self.bn = BatchNorm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.deconv(x))


class UNetBlock(nn.Module):
    """NiftyNet's ``UNetBlock``: its convs, then max-pool / up-sampling / nothing.

    ``forward`` returns ``(main, branch)``: ``branch`` is the convs' output
    (the skip connection), ``main`` what follows the tail.
    """

    def __init__(self, spec: BlockSpec, acti_func: str):
        super().__init__()
        self.tail = spec.tail
        self.keys = [conv.key for conv in spec.convs]
        for conv in spec.convs:  # registered under NiftyNet's layer name, e.g. "16_bn_1"
            self.add_module(conv.key, ConvBNActi(conv.in_channels, conv.out_channels, conv.kernel, acti_func))
        if spec.tail == "up":
            self.add_module(UP_KEY, DeconvBN(spec.convs[-1].out_channels, spec.up_channels))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for key in self.keys:
            x = getattr(self, key)(x)
        if self.tail == "down":
            return max_pool_same(x, 2, 2), x
        if self.tail == "up":
            return getattr(self, UP_KEY)(x), x
        return x, x


class UNet3D(nn.Module):
    """NiftyNet's UNet3D.

    Args:
        num_classes: width of the last 1x1x1 layer.
        in_channels: input modalities.
        acti_func: NiftyNet's activation name (its ``[NETWORK] activation_function``,
            default ``relu``; the class's own default is ``prelu``), used by every layer
            but the up-sampling ones.
        n_features: NiftyNet's ``UNet3D.n_features``, the five widths.

    >>> net = UNet3D(num_classes=3, n_features=(2, 2, 2, 2, 2)).eval()
    >>> net(torch.zeros(1, 1, 96, 96, 104)).shape
    torch.Size([1, 3, 8, 8, 16])
    """

    def __init__(self, *, num_classes: int, in_channels: int = 1, acti_func: str = "relu",
                 n_features: Sequence[int] = DEFAULT_N_FEATURES):
        super().__init__()
        self.num_classes, self.in_channels = num_classes, in_channels
        self.acti_func = acti_func.lower()
        specs = blocks(in_channels, num_classes, n_features)
        self.n_features = tuple(int(n) for n in n_features)
        for spec in specs:
            self.add_module(spec.name, UNetBlock(spec, self.acti_func))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, skip_1 = self.L1(x)
        x, skip_2 = self.L2(x)
        x, skip_3 = self.L3(x)
        x, _ = self.L4(x)
        x, _ = self.R3(torch.cat([skip_3, x], dim=1))  # NiftyNet's CONCAT(conv_i, up_i): skip first
        x, _ = self.R2(torch.cat([skip_2, x], dim=1))
        _, x = self.R1_FC(torch.cat([skip_1, x], dim=1))
        return crop_border(x, BORDER)
