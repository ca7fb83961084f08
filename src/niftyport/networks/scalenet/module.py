"""ScaleNet in PyTorch, laid out like NiftyNet's implementation (``niftynet/network/scalenet.py``).

Fidon L. et al. "Scalable multimodal convolutional networks for brain
tumour segmentation." MICCAI 2017.

Layout: ``(N, M, X, Y, Z)`` float32 in, with ``M >= 2`` modalities;
``(N, num_classes, X, Y, Z)`` logits out (every convolution is 'SAME').

The NiftyNet graph, step by step:

* each modality alone through its own ``ConvolutionalLayer`` (3x3x3 -> 16
  channels, BN, ``acti_func``): scopes ``conv_0``, ``conv_1`` ...;
* ``ScaleBlock('AVERAGE', n_layers=1)`` on the stack of the M feature maps
  ``(16 features x M modalities)``: for every feature f, a ``HighResBlock``
  ``M_F_0_f`` across the modalities (M channels in and out), then for every
  modality m a ``HighResBlock`` ``F_M_0_m`` across the features (16 in and
  out); the blocks have kernels (3, 1), a residual sum, and the activation is
  ScaleBlock's default ``relu`` whatever ``acti_func`` says; then the mean
  over the modalities;
* a ``HighRes3DNet(num_classes)`` front end built with ITS default
  ``acti_func='prelu'`` (ScaleNet does not pass its own), under the scope
  ``ScaleNet/HighRes3DNet``: :class:`~niftyport.networks.highres3dnet.module.HighRes3DNet`
  with 16 input channels, kept here as ``highres3dnet``.
"""
from __future__ import annotations

import torch
from torch import nn

from ...errors import NetworkError
from ..highres3dnet.module import HighRes3DNet
from ..layers import Activation, BatchNorm, Conv
from .architecture import FRONT_END_ACTI, N_FEATURES, SCALE_BLOCK_ACTI, SCALE_BLOCK_KERNELS


class ConvBNActi(nn.Module):
    """NiftyNet's ``ConvolutionalLayer``: SAME conv (no bias) -> BN -> activation; keys ``conv``, ``bn``, ``acti``."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, acti_func: str):
        super().__init__()
        self.conv = Conv(in_channels, out_channels, kernel)
        self.bn = BatchNorm(out_channels)
        self.acti = Activation(acti_func, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.acti(self.bn(self.conv(x)))


class ScaleHighResBlock(nn.Module):
    """NiftyNet's ``HighResBlock(kernels=(3, 1), with_res=True)``: (BN -> acti -> conv) per kernel, plus the input.

    Channels are kept (``n_output_chns`` equals the input's in ScaleBlock).
    Keys ``bn_i.*``, ``conv_i.weight`` and, with ``prelu``, ``acti_i.alpha``.
    """

    def __init__(self, channels: int, kernels: tuple[int, ...] = SCALE_BLOCK_KERNELS,
                 acti_func: str = SCALE_BLOCK_ACTI):
        super().__init__()
        self.n_layers = len(kernels)
        for i, k in enumerate(kernels):
            self.add_module(f"bn_{i}", BatchNorm(channels))
            self.add_module(f"acti_{i}", Activation(acti_func, channels))
            self.add_module(f"conv_{i}", Conv(channels, channels, k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for i in range(self.n_layers):
            y = getattr(self, f"conv_{i}")(getattr(self, f"acti_{i}")(getattr(self, f"bn_{i}")(y)))
        return y + x


class ScaleBlock(nn.Module):
    """NiftyNet's ``ScaleBlock('AVERAGE', n_layers=1)`` on ``(N, F, M, X, Y, Z)``, returning ``(N, F, X, Y, Z)``.

    ``M_F_0_f`` (f < F) mix the modalities of feature f; ``F_M_0_m`` (m < M)
    mix the features of modality m; the result is averaged over modalities.
    """

    def __init__(self, n_features: int, n_modalities: int):
        super().__init__()
        self.n_features, self.n_modalities = n_features, n_modalities
        for f in range(n_features):
            self.add_module(f"M_F_0_{f}", ScaleHighResBlock(n_modalities))
        for m in range(n_modalities):
            self.add_module(f"F_M_0_{m}", ScaleHighResBlock(n_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.stack([getattr(self, f"M_F_0_{f}")(x[:, f]) for f in range(self.n_features)], dim=1)
        x = torch.stack([getattr(self, f"F_M_0_{m}")(x[:, :, m]) for m in range(self.n_modalities)], dim=2)
        return x.mean(dim=2)


class ScaleNet(nn.Module):
    """ScaleNet as NiftyNet 0.6.0 builds it.

    Args:
        num_classes: output channels (the front end's last layer).
        in_channels: modalities, at least 2 (NiftyNet asserts it).
        acti_func: NiftyNet's ``[NETWORK] activation_function``; it only reaches the
            per-modality first convolutions (``conv_<m>_bn_<acti>``).

    >>> net = ScaleNet(num_classes=3, in_channels=2).eval()
    >>> net(torch.zeros(1, 2, 8, 8, 8)).shape
    torch.Size([1, 3, 8, 8, 8])
    """

    def __init__(self, *, num_classes: int, in_channels: int = 2, acti_func: str = "relu"):
        super().__init__()
        if in_channels < 2:
            raise NetworkError(f"ScaleNet needs at least 2 input modalities (channels), got {in_channels}")
        self.num_classes, self.in_channels = num_classes, in_channels
        self.acti_func = acti_func = acti_func.lower()
        for m in range(in_channels):
            self.add_module(f"conv_{m}", ConvBNActi(1, N_FEATURES, 3, acti_func))
        self.scaleblock = ScaleBlock(N_FEATURES, in_channels)
        self.highres3dnet = HighRes3DNet(in_channels=N_FEATURES, num_classes=num_classes, acti_func=FRONT_END_ACTI)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.in_channels:
            raise NetworkError(f"ScaleNet was built for {self.in_channels} modalities, got {x.shape[1]} channels")
        roots = torch.stack([getattr(self, f"conv_{m}")(x[:, m:m + 1]) for m in range(self.in_channels)], dim=2)
        return self.highres3dnet(self.scaleblock(roots))
