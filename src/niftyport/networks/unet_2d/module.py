"""UNet2D in PyTorch, laid out like NiftyNet's ``niftynet/network/unet_2d.py`` (NiftyNet 0.6.0).

Ronneberger O., Fischer P., Brox T. "U-Net: Convolutional Networks for
Biomedical Image Segmentation." MICCAI 2015.

NiftyNet's graph, widths ``n_fea = (f0, ..., f4)`` (default 64 ... 1024):

* ``blocks.0`` ... ``blocks.4`` (NiftyNet's ``TwoConv`` ... ``TwoConv_4``): two VALID
  3x3 convolutions with bias, each followed by batch norm and the activation;
  after each of the first four a 2x2 stride-2 max-pool ('SAME').
* ``ups.0`` ... ``ups.3`` (``deconv_bn_<acti>`` ...): 2x2 stride-2 transposed
  convolution (VALID, bias), batch norm, activation; then the skip of the same
  level is cropped by ``(skip_x - up_x) // 2`` on every axis (the border is
  computed from the first spatial axis only), resized to the up-sampled map
  with TF1's legacy bilinear resize (the identity on valid sizes) and put
  *before* it on the channel axis; ``blocks.5`` ... ``blocks.8`` follow.
* ``classifier`` (``conv``): 1x1 convolution with bias, no norm, no activation.

Tensors are ``(N, C, X, Y)`` (NiftyNet's ``(N, X, Y, C)``); the output is
smaller than the input: ``n - 184`` per side for the valid sides ``16 k + 124``
(see :mod:`.shapes`). Other sides run NiftyNet's graph too (odd max-pools, resized skips).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ...errors import NetworkError
from ..layers import Activation, BatchNorm, Conv, ConvTranspose, crop_border, max_pool_same, resize_linear_tf1
from .shapes import LEVELS

#: NiftyNet's ``self.n_fea``.
DEFAULT_N_FEA = (64, 128, 256, 512, 1024)


class ConvBNActi(nn.Module):
    """NiftyNet's ``ConvolutionalLayer``/``DeconvolutionalLayer`` with batch norm: ``conv`` -> BN -> activation."""

    def __init__(self, conv: nn.Module, channels: int, acti_func: str):
        super().__init__()
        self.conv = conv
        self.bn = BatchNorm(channels)
        self.acti = Activation(acti_func, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.acti(self.bn(self.conv(x)))


class TwoConv(nn.Module):
    """NiftyNet's ``TwoLayerConv``: two VALID 3x3 ``ConvBNActi`` to ``channels``."""

    def __init__(self, in_channels: int, channels: int, acti_func: str):
        super().__init__()
        self.conv_0 = ConvBNActi(Conv(in_channels, channels, 3, dims=2, bias=True, padding="VALID"),
                                 channels, acti_func)
        self.conv_1 = ConvBNActi(Conv(channels, channels, 3, dims=2, bias=True, padding="VALID"),
                                 channels, acti_func)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_1(self.conv_0(x))


def crop_concat(skip: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """NiftyNet's ``CropConcat``: ``skip`` cropped (first axis's border on all axes), resized, then ``up``."""
    border = (skip.shape[2] - up.shape[2]) // 2
    skip = resize_linear_tf1(crop_border(skip, border), up.shape[2:])
    return torch.cat([skip, up], dim=1)


class UNet2D(nn.Module):
    """NiftyNet's UNet2D: ``(N, in_channels, X, Y)`` -> logits ``(N, num_classes, X - 184, Y - 184)``.

    Args:
        num_classes: output channels of the classifier.
        in_channels: input channels (modalities).
        acti_func: NiftyNet's activation name (``relu``, ``prelu``, ...).
        n_fea: the five widths, NiftyNet's ``n_fea`` attribute.

    >>> UNet2D(num_classes=2, n_fea=(2, 2, 2, 2, 2)).eval()(torch.zeros(1, 1, 188, 204)).shape
    torch.Size([1, 2, 4, 20])
    """

    def __init__(self, *, num_classes: int, in_channels: int = 1, acti_func: str = "relu",
                 n_fea: Sequence[int] = DEFAULT_N_FEA):
        super().__init__()
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.acti_func = acti_func = acti_func.lower()
        self.n_fea = n_fea = tuple(int(n) for n in n_fea)
        if len(n_fea) != LEVELS + 1:
            raise NetworkError(f"UNet2D's n_fea needs {LEVELS + 1} widths, got {list(n_fea)}")
        encoder = [TwoConv(c_in, c, acti_func) for c_in, c in zip((in_channels, *n_fea[:-1]), n_fea)]
        decoder = [TwoConv(2 * c, c, acti_func) for c in reversed(n_fea[:-1])]
        self.blocks = nn.ModuleList(encoder + decoder)
        self.ups = nn.ModuleList(
            ConvBNActi(ConvTranspose(c_in, c, 2, dims=2, stride=2, bias=True, padding="VALID"), c, acti_func)
            for c_in, c in zip(reversed(n_fea[1:]), reversed(n_fea[:-1])))
        self.classifier = Conv(n_fea[0], num_classes, 1, dims=2, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.blocks[:LEVELS]:
            x = block(x)
            skips.append(x)
            x = max_pool_same(x, 2, 2)
        x = self.blocks[LEVELS](x)
        for up, block, skip in zip(self.ups, self.blocks[LEVELS + 1:], reversed(skips)):
            x = block(crop_concat(skip, up(x)))
        return self.classifier(x)
