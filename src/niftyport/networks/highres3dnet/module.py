"""HighRes3DNet in PyTorch, laid out like NiftyNet's implementation.

Li W., Wang G., Fidon L., Ourselin S., Cardoso M. J., Vercauteren T.
"On the compactness, efficiency, and representation of 3D convolutional
networks: brain parcellation as a pretext task." IPMI 2017.

Mirrors ``niftynet/network/highres3dnet.py`` (NiftyNet 0.6.0, commit 935bf43):
module names follow NiftyNet's variable scopes (``conv_0``, ``res_1_0`` ...
``res_3_2``, ``conv_1``, ``conv_2``), so a NiftyNet variable such as
``HighRes3DNet/res_2_1/conv_0/w`` becomes ``res_2_1.conv_0.weight`` here.

Layout: tensors are ``(batch, channel, x, y, z)`` float32; the output holds one
logit per class and voxel, same spatial size as the input (every convolution
is 'SAME'). NiftyNet requires spatial sizes divisible by 8 because it dilates
with space-to-batch; this module uses ``Conv3d(dilation=d, padding=d)``,
which gives the same result for such sizes and also accepts any other size.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..layers import BN_EPS, BN_MOMENTUM, Activation
from .architecture import FIRST_CHANNELS, HIDDEN_1x1_CHANNELS, RECEPTIVE_FIELD_RADIUS, STAGES  # noqa: F401


class ConvBN(nn.Module):
    """NiftyNet's ``ConvolutionalLayer``: conv (no bias) -> batch norm -> optional activation.

    ``relu=False`` leaves the activation out; ``acti_func`` is NiftyNet's name
    (``relu``, ``prelu``, ...); ``prelu`` keeps its per-channel ``alpha`` in ``acti``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, relu: bool,
                 acti_func: str = "relu"):
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size,
                              padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm3d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.relu = relu
        if relu and acti_func != "relu":
            self.acti = Activation(acti_func, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        if not self.relu:
            return x
        return self.acti(x) if hasattr(self, "acti") else F.relu(x)


class HighResBlock(nn.Module):
    """NiftyNet's ``HighResBlock``: (BN -> ReLU -> 3x3x3 conv) twice, plus the input.

    When the block widens the channels, the shortcut is zero-padded on the
    channel axis, ``(diff // 2)`` channels before and the rest after
    (``niftynet/layer/elementwise.py``).
    """

    def __init__(self, in_channels: int, out_channels: int, dilation: int, *, acti_func: str = "relu"):
        super().__init__()
        self.bn_0 = nn.BatchNorm3d(in_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.conv_0 = nn.Conv3d(in_channels, out_channels, 3, padding=dilation,
                                dilation=dilation, bias=False)
        self.bn_1 = nn.BatchNorm3d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.conv_1 = nn.Conv3d(out_channels, out_channels, 3, padding=dilation,
                                dilation=dilation, bias=False)
        diff = out_channels - in_channels
        self.channel_pad = (diff // 2, diff - diff // 2)
        if acti_func != "relu":  # NiftyNet's ``<func>_acti_0`` / ``_1`` scopes
            self.acti_0 = Activation(acti_func, in_channels)
            self.acti_1 = Activation(acti_func, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "acti_0"):
            y = self.conv_0(self.acti_0(self.bn_0(x)))
            y = self.conv_1(self.acti_1(self.bn_1(y)))
        else:
            y = self.conv_0(F.relu(self.bn_0(x)))
            y = self.conv_1(F.relu(self.bn_1(y)))
        if self.channel_pad != (0, 0):
            # F.pad pads the last dims first: (z, y, x, channel) pairs.
            x = F.pad(x, (0, 0, 0, 0, 0, 0, *self.channel_pad))
        return y + x


class HighRes3DNet(nn.Module):
    """HighRes3DNet as in NiftyNet's model zoo.

    Args:
        in_channels: input modalities (1 for a T1 image).
        num_classes: output channels of the last 1x1x1 layer (160 GIF labels).
        hidden_1x1: whether the 80-channel 1x1x1 layer ``conv_1`` is present
            (NiftyNet's network has it; set False for variants without it).
        acti_func: NiftyNet's activation (its ``[NETWORK] activation_function``);
            ``relu`` (default) or any of :data:`~niftyport.networks.layers.ACTIVATIONS`.

    ``forward`` maps ``(N, in_channels, X, Y, Z)`` to logits
    ``(N, num_classes, X, Y, Z)``; the label is the argmax over channels.

    >>> net = HighRes3DNet().eval()
    >>> net(torch.zeros(1, 1, 8, 8, 8)).shape
    torch.Size([1, 160, 8, 8, 8])
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 160, *, hidden_1x1: bool = True,
                 acti_func: str = "relu"):
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.acti_func = acti_func = acti_func.lower()
        self.conv_0 = ConvBN(in_channels, FIRST_CHANNELS, 3, relu=True, acti_func=acti_func)
        channels = FIRST_CHANNELS
        self.block_names: list[str] = []
        for stage in STAGES:
            for j in range(stage.repeat):
                # registered under NiftyNet's scope name, e.g. "res_2_0"
                name = f"{stage.name}_{j}"
                self.add_module(name, HighResBlock(channels, stage.channels, stage.dilation, acti_func=acti_func))
                self.block_names.append(name)
                channels = stage.channels
        if hidden_1x1:
            self.conv_1 = ConvBN(channels, HIDDEN_1x1_CHANNELS, 1, relu=True, acti_func=acti_func)
            channels = HIDDEN_1x1_CHANNELS
        else:
            self.conv_1 = None
        self.conv_2 = ConvBN(channels, num_classes, 1, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_0(x)
        for name in self.block_names:
            x = getattr(self, name)(x)
        if self.conv_1 is not None:
            x = self.conv_1(x)
        return self.conv_2(x)
