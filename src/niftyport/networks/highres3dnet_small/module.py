"""HighRes3DNetSmall in PyTorch, laid out like NiftyNet's ``niftynet/network/highres3dnet_small.py`` (0.6.0).

HighRes3DNet with a stride-2 first convolution, so that the nine residual
blocks run at half resolution, and a transposed convolution back to the
input's size before the classifier:

    conv_0   3x3x3, stride 2, 'SAME' (TF pads 0 before, 1 after an even side), 16 ch, BN, acti
    res_1_*  3 HighResBlocks, 16 ch, dilation 1
    res_2_*  3 HighResBlocks, 32 ch, dilation 2
    res_3_*  3 HighResBlocks, 64 ch, dilation 4
    conv_1   3x3x3, 80 ch, BN, acti
    deconv   3x3x3 transposed, stride 2, 'SAME' (output 2n), 80 ch, BN, acti
    conv_2   1x1x1, num_classes, BN, no activation

The blocks are highres3dnet's own :class:`~..highres3dnet.module.ConvBN` and
:class:`~..highres3dnet.module.HighResBlock`; NiftyNet's variable scopes are
the module names (``HighRes3DNetSmall/res_2_1/conv_0/w`` -> ``res_2_1.conv_0.weight``).
Tensors are ``(N, C, X, Y, Z)``; the output has the input's spatial size
(sides divisible by 8, NiftyNet's rule).
"""
from __future__ import annotations

import torch
from torch import nn

from ..highres3dnet.architecture import FIRST_CHANNELS, STAGES
from ..highres3dnet.module import ConvBN, HighResBlock
from ..layers import Conv, ConvTranspose

#: Width of ``conv_1`` and ``deconv``.
HIDDEN_CHANNELS = 80


def with_kernel(layer: ConvBN, conv: nn.Module) -> ConvBN:
    """``layer`` with its convolution replaced by ``conv`` (same key, ``conv.weight``)."""
    layer.conv = conv
    return layer


class HighRes3DNetSmall(nn.Module):
    """NiftyNet's HighRes3DNetSmall: ``(N, in_channels, X, Y, Z)`` -> logits ``(N, num_classes, X, Y, Z)``.

    ``acti_func`` is NiftyNet's activation name (``relu``, ``prelu``, ...).

    >>> HighRes3DNetSmall(num_classes=3).eval()(torch.zeros(1, 1, 8, 8, 16)).shape
    torch.Size([1, 3, 8, 8, 16])
    """

    def __init__(self, *, num_classes: int, in_channels: int = 1, acti_func: str = "relu"):
        super().__init__()
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.acti_func = acti_func = acti_func.lower()
        self.conv_0 = with_kernel(ConvBN(in_channels, FIRST_CHANNELS, 3, relu=True, acti_func=acti_func),
                                  Conv(in_channels, FIRST_CHANNELS, 3, stride=2))
        channels = FIRST_CHANNELS
        self.block_names: list[str] = []
        for stage in STAGES:
            for j in range(stage.repeat):
                name = f"{stage.name}_{j}"
                self.add_module(name, HighResBlock(channels, stage.channels, stage.dilation, acti_func=acti_func))
                self.block_names.append(name)
                channels = stage.channels
        self.conv_1 = ConvBN(channels, HIDDEN_CHANNELS, 3, relu=True, acti_func=acti_func)
        self.deconv = with_kernel(ConvBN(HIDDEN_CHANNELS, HIDDEN_CHANNELS, 3, relu=True, acti_func=acti_func),
                                  ConvTranspose(HIDDEN_CHANNELS, HIDDEN_CHANNELS, 3, stride=2))
        self.conv_2 = ConvBN(HIDDEN_CHANNELS, num_classes, 1, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_0(x)
        for name in self.block_names:
            x = getattr(self, name)(x)
        return self.conv_2(self.deconv(self.conv_1(x)))
