"""DeepMedic in PyTorch, laid out like NiftyNet's implementation (``niftynet/network/deepmedic.py``).

Kamnitsas K. et al. "Efficient multi-scale 3D CNN with fully connected CRF
for accurate brain lesion segmentation." Medical Image Analysis 36, 2017.

Layout: ``(N, C, X, Y, Z)`` float32 in; ``(N, num_classes, X - 48, Y - 48, Z - 48)``
out. Every side must be odd, a multiple of 3 and greater than 48
(:func:`~.architecture.check_input`); 57 gives 9, 105 gives 57.

What the NiftyNet graph computes, step by step:

* normal pathway: the input's centre (16 voxels cropped from each side,
  ``CropLayer``), then eight VALID 3x3x3 ``ConvolutionalLayer``s;
* sub-sampled pathway: ``DownSampleLayer('CONSTANT')``, a VALID 3x3x3
  stride-3 convolution with a kernel that is 1 at its centre only, i.e. the
  voxels ``3 i + 1`` of every axis; eight VALID 3x3x3 convolutions; then
  ``UpSampleLayer('REPLICATE')`` x3 (each voxel copied into a 3x3x3 block,
  nearest-neighbour);
* the two concatenated (normal first), then three 1x1x1 layers (150, 150,
  ``num_classes``).

Every layer, the last included, is conv (no bias) -> batch norm (moving
statistics) -> activation, so the output is ``acti(BN(conv(.)))``, not logits.
Module names follow NiftyNet's scopes less ``_bn_<acti>``: NiftyNet's
``DeepMedic/normal_conv_bn_relu_3/conv_/w`` is ``normal_conv_3.conv.weight``.
"""
from __future__ import annotations

import torch
from torch import nn

from ..layers import Activation, BatchNorm, Conv, crop_border
from .architecture import (CONV_FEATURES, CROP_BORDER, D_FACTOR, HIDDEN_FC_FEATURES, fc_layer_names,
                           path_layer_names)


class ConvBNActi(nn.Module):
    """NiftyNet's ``ConvolutionalLayer`` as DeepMedic uses it: VALID conv (no bias) -> BN -> activation.

    Keys ``conv.weight`` ``(out, in, k, k, k)``, ``bn.*``, and with ``prelu`` ``acti.alpha``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, acti_func: str):
        super().__init__()
        self.conv = Conv(in_channels, out_channels, kernel, padding="VALID")
        self.bn = BatchNorm(out_channels)
        self.acti = Activation(acti_func, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.acti(self.bn(self.conv(x)))


def subsample(x: torch.Tensor, factor: int = D_FACTOR) -> torch.Tensor:
    """``DownSampleLayer('CONSTANT', k=s=factor, 'VALID')``: voxels ``factor * i + factor // 2`` of each axis.

    The stride-``factor`` VALID convolution with a kernel that is one at its
    centre and zero elsewhere picks exactly these voxels.
    """
    start = factor // 2
    picks = tuple(slice(start, (n // factor) * factor, factor) for n in x.shape[2:])
    return x[(slice(None), slice(None), *picks)]


def replicate(x: torch.Tensor, factor: int = D_FACTOR) -> torch.Tensor:
    """``UpSampleLayer('REPLICATE', k=s=factor)``: each voxel repeated ``factor`` times along every axis."""
    for axis in range(2, x.dim()):
        x = x.repeat_interleave(factor, dim=axis)
    return x


class DeepMedic(nn.Module):
    """DeepMedic (two pathways, normal and 1/3 resolution) as NiftyNet 0.6.0 builds it.

    Args:
        num_classes: width of the last 1x1x1 layer.
        in_channels: input modalities.
        acti_func: NiftyNet's ``[NETWORK] activation_function`` for every layer (config default
            ``relu``; the class's own default, ``prelu``, only applies when a caller omits it).

    >>> net = DeepMedic(num_classes=3).eval()
    >>> net(torch.zeros(1, 1, 57, 57, 57)).shape
    torch.Size([1, 3, 9, 9, 9])
    """

    def __init__(self, *, num_classes: int, in_channels: int = 1, acti_func: str = "relu"):
        super().__init__()
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.acti_func = acti_func = acti_func.lower()
        self.normal_names = self._add_path("normal", in_channels, acti_func)
        self.downsample_names = self._add_path("downsample", in_channels, acti_func)
        self.fc_names = fc_layer_names(num_classes)
        n_in = 2 * CONV_FEATURES[-1]
        for name, width in zip(self.fc_names, (*HIDDEN_FC_FEATURES, num_classes)):
            self.add_module(name, ConvBNActi(n_in, width, 1, acti_func))
            n_in = width

    def _add_path(self, pathway: str, in_channels: int, acti_func: str) -> list[str]:
        names = path_layer_names(pathway)
        n_in = in_channels
        for name, width in zip(names, CONV_FEATURES):
            self.add_module(name, ConvBNActi(n_in, width, 3, acti_func))
            n_in = width
        return names

    def _run(self, names: list[str], x: torch.Tensor) -> torch.Tensor:
        for name in names:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normal = self._run(self.normal_names, crop_border(x, CROP_BORDER))
        low = replicate(self._run(self.downsample_names, subsample(x)))
        return self._run(self.fc_names, torch.cat([normal, low], dim=1))
