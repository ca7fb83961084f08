"""ToyNet in PyTorch, laid out like NiftyNet's ``niftynet/network/toynet.py`` (NiftyNet 0.6.0).

Two ``ConvolutionalLayer``\\ s: ``conv_input`` (3x3x3 to 10 channels, batch
norm, ReLU) and ``conv_output`` (1x1x1 to ``num_classes``, batch norm, no
activation); no biases, 'SAME' padding. Tensors are ``(N, C, X, Y, Z)``;
the output has the input's spatial size.
"""
from __future__ import annotations

import torch
from torch import nn

from ..highres3dnet.module import ConvBN

#: NiftyNet's ``self.hidden_features``.
HIDDEN_FEATURES = 10


class ToyNet(nn.Module):
    """NiftyNet's ToyNet: ``(N, in_channels, X, Y, Z)`` -> logits ``(N, num_classes, X, Y, Z)``.

    ``acti_func`` is kept (as ``self.acti_func``) but, as in NiftyNet, not used.

    >>> ToyNet(num_classes=3).eval()(torch.zeros(1, 1, 5, 6, 7)).shape
    torch.Size([1, 3, 5, 6, 7])
    """

    def __init__(self, *, num_classes: int, in_channels: int = 1, acti_func: str = "relu"):
        super().__init__()
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.acti_func = acti_func.lower()
        self.conv_input = ConvBN(in_channels, HIDDEN_FEATURES, 3, relu=True)
        self.conv_output = ConvBN(HIDDEN_FEATURES, num_classes, 1, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_output(self.conv_input(x))
