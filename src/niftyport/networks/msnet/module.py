"""MSNet (W-Net / T-Net / E-Net) in PyTorch, laid out like the TensorFlow graph of ``util/MSNet.py``.

Wang G., Li W., Ourselin S., Vercauteren T. "Automatic brain tumor
segmentation using cascaded anisotropic convolutional neural networks."
BrainLes 2017 (MICCAI workshop), LNCS 10670. Source: ``util/MSNet.py`` of
github.com/taigw/brats17 (classes ``MSNet``, ``ResBlock``,
``TensorSliceLayer``), built from NiftyNet's ``ConvLayer``,
``ConvolutionalLayer``, ``DeconvolutionalLayer``, ``BNLayer``, ``ActiLayer``
and ``ElementwiseLayer`` (``niftynet/layer/*.py``).

Layout: ``(N, C, D, H, W)`` float32 in, logits ``(N, num_classes, D - 8, H, W)``
out, where ``D`` (torch's ``X``) is the first spatial axis of the TF tensor
``(N, D, H, W, C)``, the slice axis: every convolution is 1x3x3 (in-plane)
except the four 3x1x1 'VALID' ``fuse`` layers, which eat two slices each.

Module names follow the graph's scopes, so ``MSNet_WT32/block3_2/conv_0/w``
is ``block3_2.conv_0.weight`` and ``MSNet_WT32/fuse1_bn_prelu/bn_/gamma`` is
``fuse1.bn.weight``.

Batch normalisation always uses the statistics of the batch it is given:
the repository's ``test.py`` builds every network with ``is_training=True``
(its checkpoints' moving averages were never trained: 0 and 1). The output
for one sample therefore depends on the others in its batch.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..layers import Activation, BatchNorm, Conv, ConvTranspose
from .architecture import BASE_CHNS, BLOCKS, check_shape


class BatchStatsNorm(BatchNorm):
    """:class:`~niftyport.networks.layers.BatchNorm` with ``batch_stats=True``, also for one value per channel.

    Torch refuses batch statistics of a single value; TF's moments are then
    that value and 0, so the output is ``beta`` (MSNet reaches this for a
    batch of one 9 x 4 x 4 input, whose deepest features are 1 x 1 x 1).
    """

    def __init__(self, channels: int):
        super().__init__(channels, batch_stats=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() == x.shape[1]:
            return self.bias.reshape(1, -1, *([1] * (x.dim() - 2))).expand_as(x).to(x.dtype)
        return super().forward(x)


_IN_PLANE = (1, 3, 3)
_THROUGH_SLICES = (3, 1, 1)
_UP = (1, 2, 2)


class ConvBNActi(nn.Module):
    """NiftyNet's ``ConvolutionalLayer``: conv (no bias) -> batch norm (batch statistics) -> activation.

    Keys ``conv.weight``, ``bn.*`` and, for ``prelu``, ``acti.alpha``
    (NiftyNet's ``conv_/w``, ``bn_/...``, ``prelu_acti_/alpha``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: Sequence[int], *, acti_func: str,
                 stride: Sequence[int] = (1, 1, 1), padding: str = "SAME"):
        super().__init__()
        self.conv = Conv(in_channels, out_channels, kernel, stride=stride, padding=padding)
        self.bn = BatchStatsNorm(out_channels)
        self.acti = Activation(acti_func, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.acti(self.bn(self.conv(x)))


class DeconvBNActi(nn.Module):
    """NiftyNet's ``DeconvolutionalLayer``: 1x3x3 transposed conv, stride 1x2x2 'SAME' -> BN -> activation.

    Doubles ``H`` and ``W`` exactly (TF's output shape ``n * stride``). Keys
    ``deconv.weight`` ``(in, out, 1, 3, 3)``, ``bn.*``, ``acti.alpha``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, acti_func: str):
        super().__init__()
        self.deconv = ConvTranspose(in_channels, out_channels, _IN_PLANE, stride=_UP, padding="SAME")
        self.bn = BatchStatsNorm(out_channels)
        self.acti = Activation(acti_func, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.acti(self.bn(self.deconv(x)))


class ResBlock(nn.Module):
    """``ResBlock`` of ``util/MSNet.py``: (BN -> activation -> 1x3x3 conv) twice, plus the input.

    Both convolutions are dilated in-plane by ``dilation`` (TF dilates with
    space-to-batch, which equals a dilated 'SAME' convolution at any size).
    The shortcut follows NiftyNet's ``ElementwiseLayer('SUM')``: fewer
    channels are zero-padded, ``diff // 2`` before and the rest after (the
    4 input modalities become channels 14..17 of 32); more channels are
    projected by a 1x1x1 conv ``proj`` (``residual_sum/proj/w``).
    """

    def __init__(self, in_channels: int, out_channels: int, dilation: int, *, acti_func: str):
        super().__init__()
        self.bn_0 = BatchStatsNorm(in_channels)
        self.acti_0 = Activation(acti_func, in_channels)
        self.conv_0 = Conv(in_channels, out_channels, _IN_PLANE, dilation=(1, dilation, dilation))
        self.bn_1 = BatchStatsNorm(out_channels)
        self.acti_1 = Activation(acti_func, out_channels)
        self.conv_1 = Conv(out_channels, out_channels, _IN_PLANE, dilation=(1, dilation, dilation))
        diff = out_channels - in_channels
        self.channel_pad = (diff // 2, diff - diff // 2) if diff > 0 else (0, 0)
        self.proj = Conv(in_channels, out_channels, 1) if diff < 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_0(self.acti_0(self.bn_0(x)))
        y = self.conv_1(self.acti_1(self.bn_1(y)))
        if self.proj is not None:
            return y + self.proj(x)
        if self.channel_pad != (0, 0):
            x = F.pad(x, (0, 0, 0, 0, 0, 0, *self.channel_pad))  # last axes first: W, H, D, then C
        return y + x


def central_slices(x: torch.Tensor, margin: int) -> torch.Tensor:
    """``TensorSliceLayer``: drop ``margin`` slices from both ends of the first spatial axis."""
    return x[:, :, margin:x.shape[2] - margin]


class MSNet(nn.Module):
    """W-Net / T-Net (``downsample_twice=True``) or E-Net (``False``) of Wang et al. 2017.

    Args:
        num_classes: output channels (2 in every published checkpoint).
        in_channels: input modalities (4: FLAIR, T1, T1ce, T2).
        acti_func: NiftyNet's activation name; MSNet's default and the
            checkpoints' is ``prelu``.
        downsample_twice: W-Net and T-Net down-sample in-plane twice (to 1/4),
            E-Net once (to 1/2).
        base_chns: widths of the four stages (``base_feature_number``);
            a 1x1x1 ``feature_expand`` layer joins two stages of different width.

    ``forward`` maps ``(N, in_channels, D, H, W)`` to logits
    ``(N, num_classes, D - 8, H, W)`` (see :func:`.architecture.check_shape`
    for the sizes taken). Three branches predict from 1/1 or 1/2 (``p1``),
    1/2 or 1/4 (``p2``) and the dilated 1/2 or 1/4 features (``p3``); each is
    brought back to full in-plane size and the same central ``D - 8`` slices,
    and ``final_pred`` (a 1x3x3 conv, no bias) fuses their ``7 * num_classes``
    channels (``p1``, ``p2``, ``p3`` in that order).

    >>> net = MSNet(num_classes=2).eval()
    >>> net(torch.zeros(2, 4, 9, 8, 12)).shape
    torch.Size([2, 2, 1, 8, 12])
    """

    def __init__(self, *, num_classes: int, in_channels: int = 4, acti_func: str = "prelu",
                 downsample_twice: bool = True, base_chns: Sequence[int] = BASE_CHNS):
        super().__init__()
        chns = tuple(int(c) for c in base_chns)
        if len(chns) != 4:
            from ...errors import NetworkError

            raise NetworkError(f"MSNet's base_chns needs 4 widths, got {tuple(base_chns)}")
        self.num_classes, self.in_channels = int(num_classes), int(in_channels)
        self.acti_func = acti_func = acti_func.lower()
        self.downsample_twice = bool(downsample_twice)
        self.base_chns = list(chns)
        self._build_encoder(chns, acti_func)
        self._build_heads(chns, acti_func)

    def _block(self, name: str, in_channels: int, out_channels: int, dilation: int, acti: str) -> int:
        self.add_module(name, ResBlock(in_channels, out_channels, dilation, acti_func=acti))
        return out_channels

    def _build_encoder(self, chns: tuple[int, ...], acti: str) -> None:
        channels = self.in_channels
        for block in BLOCKS:
            stage = block.stage
            if block.name.endswith("_1") and stage > 0:
                self._stage_entry(stage, channels, chns, acti)
                channels = chns[stage]
            channels = self._block(block.name, channels, chns[stage], block.dilation, acti)
            if block.name in ("block1_2", "block2_2", "block3_3", "block4_3"):
                self.add_module(f"fuse{stage + 1}", ConvBNActi(chns[stage], chns[stage], _THROUGH_SLICES,
                                                             acti_func=acti, padding="VALID"))

    def _stage_entry(self, stage: int, channels: int, chns: tuple[int, ...], acti: str) -> None:
        """What sits between stage ``stage - 1``'s fuse layer and stage ``stage``'s first block."""
        width = chns[stage - 1]
        if stage == 1 and self.downsample_twice:
            self.downsample1 = ConvBNActi(width, width, _IN_PLANE, stride=_UP, acti_func=acti)
        if stage == 2:
            self.downsample2 = ConvBNActi(width, width, _IN_PLANE, stride=_UP, acti_func=acti)
        if chns[stage] != width:
            self.add_module(f"feature_expand{stage}",
                            ConvBNActi(width, chns[stage], (1, 1, 1), acti_func=acti))

    def _build_heads(self, chns: tuple[int, ...], acti: str) -> None:
        n = self.num_classes
        if self.downsample_twice:
            self.pred_up1 = DeconvBNActi(chns[1], n, acti_func=acti)
            self.pred_up2_2 = DeconvBNActi(2 * n, 2 * n, acti_func=acti)
            self.pred_up3_2 = DeconvBNActi(4 * n, 4 * n, acti_func=acti)
        else:
            self.pred1 = Conv(chns[1], n, _IN_PLANE)
        self.pred_up2_1 = DeconvBNActi(chns[2], 2 * n, acti_func=acti)
        self.pred_up3_1 = DeconvBNActi(chns[3], 4 * n, acti_func=acti)
        self.final_pred = Conv(7 * n, n, _IN_PLANE)

    def _expand(self, stage: int, x: torch.Tensor) -> torch.Tensor:
        layer = getattr(self, f"feature_expand{stage}", None)
        return x if layer is None else layer(x)

    def _run_blocks(self, names: Sequence[str], x: torch.Tensor) -> torch.Tensor:
        for name in names:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_shape(x.shape[2:], self.downsample_twice)
        f1 = self.fuse1(self._run_blocks(("block1_1", "block1_2"), x))
        if self.downsample_twice:
            f1 = self.downsample1(f1)
        f1 = self.fuse2(self._run_blocks(("block2_1", "block2_2"), self._expand(1, f1)))
        f2 = self._expand(2, self.downsample2(f1))
        f2 = self.fuse3(self._run_blocks(("block3_1", "block3_2", "block3_3"), f2))
        f3 = self.fuse4(self._run_blocks(("block4_1", "block4_2", "block4_3"), self._expand(3, f2)))

        p1 = central_slices(f1, 2)
        p1 = self.pred_up1(p1) if self.downsample_twice else self.pred1(p1)
        p2 = self.pred_up2_1(central_slices(f2, 1))
        p3 = self.pred_up3_1(f3)
        if self.downsample_twice:
            p2, p3 = self.pred_up2_2(p2), self.pred_up3_2(p3)
        return self.final_pred(torch.cat([p1, p2, p3], dim=1))
