"""HolisticNet in PyTorch, laid out like NiftyNet's implementation (``niftynet/network/holistic_net.py``).

Fidon L. et al. "Generalised Wasserstein Dice Score for imbalanced
multi-class segmentation using holistic convolutional networks." BrainLes
(MICCAI) 2017.

Layout: ``(N, C, X, Y, Z)`` float32 in (sides multiples of 4);
``(N, num_classes, X, Y, Z)`` out: NiftyNet's inference output, the *fused
score* — per class a learnt weighted sum of the four scales' softmax
probabilities (not logits, and not normalised to sum to one).

The NiftyNet graph, step by step (``acti_func`` reaches ``conv_1_1`` and the
residual blocks only):

* ``conv_1_1``: 3x3x3 -> 70 channels, BN, ``acti_func``;
* scale 1: three HighResBlocks ``res_1_*``; scale 2: three ``res_2_*`` with
  dilation 2 (NiftyNet's space-to-batch, here ``Conv3d(dilation=2)``);
* scale 3: 2x2x2 average pooling (stride 2), three ``res_3_*``; scale 4:
  three ``res_4_*`` with dilation 2 at that half resolution;
* after each scale a ``ScoreLayer`` (3x3x3 -> 140, BN, always ``elu``; then
  1x1x1 -> ``num_classes`` with BN, no activation);
* scores 3 and 4 back to full resolution by channel-wise transposed
  convolutions, one (k, k, k) kernel per class, stride 2, 'SAME': kernel 2
  for scale 3, kernel 1 for scale 4 (zero-stuffing: only even voxels are
  non-zero);
* softmax of each score over the classes; ``MergeLayer('WEIGHTED_AVERAGE')``:
  for class c a bias-free 1x1x1 convolution over its four probabilities.

NiftyNet bug reproduced: scale 4's ScoreLayer is called as
``score_layer_scale4(flow, [70, 140], is_training)``, so its ``is_training``
is a non-empty list; both its batch norms therefore normalise with the
statistics of the batch being processed, also at inference
(:class:`~niftyport.networks.layers.BatchNorm` with ``batch_stats=True``).
The output for one sample thus depends on the others in its batch, as in NiftyNet.
"""
from __future__ import annotations

import torch
from torch import nn

from ..highres3dnet.module import HighResBlock
from ..layers import Activation, BatchNorm, Conv, ConvTranspose, avg_pool_same
from .architecture import N_FEATURES, N_RES_BLOCKS, SCALES, SCORE_ACTI, SCORE_FEATURES, UPSAMPLE_KERNELS


class ConvBNActi(nn.Module):
    """NiftyNet's ``ConvolutionalLayer``: SAME conv (no bias) -> BN -> optional activation.

    Keys ``conv.weight``, ``bn.*`` and, with ``prelu``, ``acti.alpha``.
    ``batch_stats`` makes the BN use the batch's statistics (scale 4).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, acti_func: str | None, *,
                 batch_stats: bool = False):
        super().__init__()
        self.conv = Conv(in_channels, out_channels, kernel)
        self.bn = BatchNorm(out_channels, batch_stats=batch_stats)
        self.acti = Activation(acti_func, out_channels) if acti_func else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return x if self.acti is None else self.acti(x)


class ScoreLayer(nn.Module):
    """NiftyNet's ``ScoreLayer([70, 140])``: ``conv_fc_0`` (3x3x3, BN, elu) then ``conv_bn`` (1x1x1, BN)."""

    def __init__(self, num_classes: int, *, batch_stats: bool = False):
        super().__init__()
        self.conv_fc_0 = ConvBNActi(SCORE_FEATURES[0], SCORE_FEATURES[1], 3, SCORE_ACTI, batch_stats=batch_stats)
        self.conv_bn = ConvBNActi(SCORE_FEATURES[1], num_classes, 1, None, batch_stats=batch_stats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_bn(self.conv_fc_0(x))


class ChannelwiseUpsample(nn.Module):
    """``UpSampleLayer('CHANNELWISE_DECONV', kernel, stride=2)``: one 1->1 'SAME' transposed conv per channel.

    Keys ``deconv_<c>.weight`` ``(1, 1, k, k, k)``; kernel 1 with stride 2
    puts each voxel at an even position and zeros in between.
    """

    def __init__(self, channels: int, kernel: int, stride: int = 2):
        super().__init__()
        self.channels = channels
        for c in range(channels):
            self.add_module(f"deconv_{c}", ConvTranspose(1, 1, kernel, stride=stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([getattr(self, f"deconv_{c}")(x[:, c:c + 1]) for c in range(self.channels)], dim=1)


class WeightedAverageMerge(nn.Module):
    """``MergeLayer('WEIGHTED_AVERAGE')``: per class c, a bias-free 1x1x1 conv ``conv_<c>`` over the scales' maps."""

    def __init__(self, channels: int, n_inputs: int):
        super().__init__()
        self.channels = channels
        for c in range(channels):
            self.add_module(f"conv_{c}", Conv(n_inputs, 1, 1))

    def forward(self, roots: list[torch.Tensor]) -> torch.Tensor:
        stacked = torch.stack(roots, dim=2)  # (N, C, scales, X, Y, Z)
        return torch.cat([getattr(self, f"conv_{c}")(stacked[:, c]) for c in range(self.channels)], dim=1)


class HolisticNet(nn.Module):
    """HolisticNet as NiftyNet 0.6.0 builds it (inference graph: the fused score).

    Args:
        num_classes: output channels.
        in_channels: input modalities.
        acti_func: NiftyNet's ``[NETWORK] activation_function`` for ``conv_1_1`` and the
            residual blocks (the ScoreLayers always use elu).

    >>> net = HolisticNet(num_classes=3).eval()
    >>> net(torch.zeros(1, 1, 8, 8, 4)).shape
    torch.Size([1, 3, 8, 8, 4])
    """

    def __init__(self, *, num_classes: int, in_channels: int = 1, acti_func: str = "relu"):
        super().__init__()
        self.num_classes, self.in_channels = num_classes, in_channels
        self.acti_func = acti_func = acti_func.lower()
        self.conv_1_1 = ConvBNActi(in_channels, N_FEATURES, 3, acti_func)
        for s, (dilation, _) in enumerate(SCALES, start=1):
            for b in range(N_RES_BLOCKS):
                self.add_module(f"res_{s}_{b}", HighResBlock(N_FEATURES, N_FEATURES, dilation, acti_func=acti_func))
            self.add_module(f"score_{s}", ScoreLayer(num_classes, batch_stats=s == 4))
        for s, kernel in UPSAMPLE_KERNELS.items():
            self.add_module(f"up_{s}", ChannelwiseUpsample(num_classes, kernel))
        self.merge = WeightedAverageMerge(num_classes, len(SCALES))

    def _scale(self, s: int, x: torch.Tensor) -> torch.Tensor:
        for b in range(N_RES_BLOCKS):
            x = getattr(self, f"res_{s}_{b}")(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flow = self.conv_1_1(x)
        scores, pooled = [], False
        for s, (_, half) in enumerate(SCALES, start=1):
            if half and not pooled:  # entering the half-resolution scales
                flow, pooled = avg_pool_same(flow, 2, 2), True
            flow = self._scale(s, flow)
            score = getattr(self, f"score_{s}")(flow)
            scores.append(getattr(self, f"up_{s}")(score) if half else score)
        return self.merge([torch.softmax(score, dim=1) for score in scores])
