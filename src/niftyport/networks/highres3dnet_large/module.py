"""HighRes3DNetLarge in PyTorch, laid out like NiftyNet's ``niftynet/network/highres3dnet_large.py`` (0.6.0).

HighRes3DNet with one more convolution before the classifier:

    conv_0   3x3x3, 16 ch, BN, acti
    res_1_*  3 HighResBlocks, 16 ch, dilation 1
    res_2_*  3 HighResBlocks, 32 ch, dilation 2
    res_3_*  3 HighResBlocks, 64 ch, dilation 4
    conv_1   3x3x3, 64 ch, BN, acti
    conv_2   1x1x1, 64 ch, BN, acti (NiftyNet applies dropout here when keep_prob < 1; never here)
    conv_3   1x1x1, num_classes, BN, no activation

Blocks are highres3dnet's :class:`~..highres3dnet.module.ConvBN` and
:class:`~..highres3dnet.module.HighResBlock`; module names are NiftyNet's
scopes (``HighRes3DNet/conv_2_bn_relu/conv_/w`` -> ``conv_2.conv.weight``).
Tensors are ``(N, C, X, Y, Z)``; every convolution is 'SAME', stride 1, so
the output has the input's spatial size.
"""
from __future__ import annotations

import torch
from torch import nn

from ..highres3dnet.architecture import FIRST_CHANNELS, STAGES
from ..highres3dnet.module import ConvBN, HighResBlock

#: Width of ``conv_1`` and ``conv_2``.
HIDDEN_CHANNELS = 64


class HighRes3DNetLarge(nn.Module):
    """NiftyNet's HighRes3DNetLarge: ``(N, in_channels, X, Y, Z)`` -> logits ``(N, num_classes, X, Y, Z)``.

    ``acti_func`` is NiftyNet's activation name (``relu``, ``prelu``, ...).

    >>> HighRes3DNetLarge(num_classes=3).eval()(torch.zeros(1, 1, 8, 8, 16)).shape
    torch.Size([1, 3, 8, 8, 16])
    """

    def __init__(self, *, num_classes: int, in_channels: int = 1, acti_func: str = "relu"):
        super().__init__()
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.acti_func = acti_func = acti_func.lower()
        self.conv_0 = ConvBN(in_channels, FIRST_CHANNELS, 3, relu=True, acti_func=acti_func)
        channels = FIRST_CHANNELS
        self.block_names: list[str] = []
        for stage in STAGES:
            for j in range(stage.repeat):
                name = f"{stage.name}_{j}"
                self.add_module(name, HighResBlock(channels, stage.channels, stage.dilation, acti_func=acti_func))
                self.block_names.append(name)
                channels = stage.channels
        self.conv_1 = ConvBN(channels, HIDDEN_CHANNELS, 3, relu=True, acti_func=acti_func)
        self.conv_2 = ConvBN(HIDDEN_CHANNELS, HIDDEN_CHANNELS, 1, relu=True, acti_func=acti_func)
        self.conv_3 = ConvBN(HIDDEN_CHANNELS, num_classes, 1, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_0(x)
        for name in self.block_names:
            x = getattr(self, name)(x)
        return self.conv_3(self.conv_2(self.conv_1(x)))
