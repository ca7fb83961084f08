"""HighRes3DNet's architecture as data: layers, widths, dilations and tensor shapes.

Torch-free, so that checkpoint conversion can check every shape without
importing PyTorch; :mod:`.module` builds the module from the same
table. Mirrors ``self.layers`` in NiftyNet's ``niftynet/network/highres3dnet.py``.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """One stage of residual blocks: NiftyNet scope prefix, width, dilation, repeats."""

    name: str
    channels: int
    dilation: int
    repeat: int = 3


#: The residual stages (NiftyNet's ``res_1``, ``res_2``, ``res_3``).
STAGES: tuple[Stage, ...] = (
    Stage("res_1", 16, 1),
    Stage("res_2", 32, 2),
    Stage("res_3", 64, 4),
)
#: Width of ``conv_0``, the first 3x3x3 convolution.
FIRST_CHANNELS = 16
#: Width of ``conv_1``, the optional 1x1x1 layer before the classifier.
HIDDEN_1x1_CHANNELS = 80
#: Receptive-field radius in voxels: 1 (conv_0) + 2 convs x 3 blocks x (1 + 2 + 4).
RECEPTIVE_FIELD_RADIUS = 1 + 2 * sum(s.repeat * s.dilation for s in STAGES)


def _bn(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{name}": (channels,) for name in ("weight", "bias", "running_mean", "running_var")} | {
        f"{prefix}.num_batches_tracked": ()}


def state_dict_shapes(in_channels: int = 1, num_classes: int = 160, *,
                      hidden_1x1: bool = True, acti_func: str = "relu") -> dict[str, tuple[int, ...]]:
    """Keys and shapes of ``HighRes3DNet(in_channels, num_classes, hidden_1x1=..., acti_func=...).state_dict()``.

    In the module's order; ``prelu`` adds one ``alpha`` per activated channel.

    >>> shapes = state_dict_shapes()
    >>> shapes["res_2_0.conv_0.weight"], len([k for k in shapes if "num_batches" not in k])
    ((32, 16, 3, 3, 3), 105)
    """
    prelu = acti_func.lower() == "prelu"

    def alpha(key: str, n: int) -> dict[str, tuple[int, ...]]:
        return {key: (n,)} if prelu else {}

    shapes = {"conv_0.conv.weight": (FIRST_CHANNELS, in_channels, 3, 3, 3), **_bn("conv_0.bn", FIRST_CHANNELS),
              **alpha("conv_0.acti.alpha", FIRST_CHANNELS)}
    channels = FIRST_CHANNELS
    for stage in STAGES:
        for j in range(stage.repeat):
            block = f"{stage.name}_{j}"
            shapes |= _bn(f"{block}.bn_0", channels)
            shapes[f"{block}.conv_0.weight"] = (stage.channels, channels, 3, 3, 3)
            shapes |= _bn(f"{block}.bn_1", stage.channels)
            shapes[f"{block}.conv_1.weight"] = (stage.channels, stage.channels, 3, 3, 3)
            shapes |= alpha(f"{block}.acti_0.alpha", channels) | alpha(f"{block}.acti_1.alpha", stage.channels)
            channels = stage.channels
    if hidden_1x1:
        shapes["conv_1.conv.weight"] = (HIDDEN_1x1_CHANNELS, channels, 1, 1, 1)
        shapes |= _bn("conv_1.bn", HIDDEN_1x1_CHANNELS) | alpha("conv_1.acti.alpha", HIDDEN_1x1_CHANNELS)
        channels = HIDDEN_1x1_CHANNELS
    shapes["conv_2.conv.weight"] = (num_classes, channels, 1, 1, 1)
    shapes |= _bn("conv_2.bn", num_classes)
    return shapes
