"""NiftyNet's UNet3D as data: blocks, layer names, widths and ``state_dict`` shapes (torch-free).

Mirrors ``niftynet/network/unet.py`` (NiftyNet 0.6.0): seven ``UNetBlock``
scopes, ``L1``-``L3`` (two 3x3x3 convs, then 2x2x2 max-pooling), ``L4``,
``R3``, ``R2`` (two 3x3x3 convs, then a 2x2x2 stride-2 transposed conv) and
``R1_FC`` (3x3x3, 3x3x3, 1x1x1). Every conv is a ``ConvolutionalLayer``
(no bias, batch norm, activation) named ``<width>_bn_<acti>``; TensorFlow
makes names unique inside a block by appending ``_1``, ``_2`` ... to repeats.
Here a layer's key is that name without ``_<acti>`` (``16_bn``, ``16_bn_1``),
so the keys follow the widths, as NiftyNet's names do.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ..naming import positive_widths, unique_names

#: NiftyNet's ``UNet3D.n_features``.
DEFAULT_N_FEATURES: tuple[int, ...] = (32, 64, 128, 256, 512)
#: ``CropLayer(border=44)``: voxels dropped from both ends of every axis of the output.
BORDER = 44
#: NiftyNet's assertions on every spatial side: a multiple of 8, at least 89.
MULTIPLE, MINIMUM = 8, 89


@dataclass(frozen=True)
class ConvSpec:
    """One ``ConvolutionalLayer``: module key (NiftyNet's name less the activation), widths, kernel."""

    key: str
    in_channels: int
    out_channels: int
    kernel: int


@dataclass(frozen=True)
class BlockSpec:
    """One ``UNetBlock``: NiftyNet scope, its convs, and what follows them.

    ``tail`` is ``"down"`` (2x2x2 max-pool), ``"up"`` (``DeconvolutionalLayer``
    ``up_2x2``: 2x2x2 stride-2 transposed conv, batch norm, no activation,
    ``up_channels`` wide) or ``"none"``.
    """

    name: str
    convs: tuple[ConvSpec, ...]
    tail: str
    up_channels: int = 0


#: Module key of the up-sampling layer (NiftyNet's ``up_2x2_bn``: no activation in the name).
UP_KEY = "up_2x2_bn"


def _convs(in_channels: int, widths: Sequence[int], kernels: Sequence[int]) -> tuple[ConvSpec, ...]:
    """Convs of one block in order, keyed as TensorFlow uniquifies the names in a scope."""
    convs = []
    for name, width, kernel in zip(unique_names(f"{w}_bn" for w in widths), widths, kernels):
        convs.append(ConvSpec(name, in_channels, width, kernel))
        in_channels = width
    return tuple(convs)


def check_n_features(n_features: Sequence[int]) -> tuple[int, ...]:
    """``n_features`` as a tuple of 5 positive ints, or :class:`~niftyport.errors.NetworkError`."""
    return positive_widths(n_features, 5, "UNet3D's n_features")


def blocks(in_channels: int, num_classes: int,
           n_features: Sequence[int] = DEFAULT_N_FEATURES) -> tuple[BlockSpec, ...]:
    """The seven blocks in NiftyNet's order; the inputs of R3, R2, R1_FC are ``concat[skip, up]``."""
    n = check_n_features(n_features)
    return (
        BlockSpec("L1", _convs(in_channels, (n[0], n[1]), (3, 3)), "down"),
        BlockSpec("L2", _convs(n[1], (n[1], n[2]), (3, 3)), "down"),
        BlockSpec("L3", _convs(n[2], (n[2], n[3]), (3, 3)), "down"),
        BlockSpec("L4", _convs(n[3], (n[3], n[4]), (3, 3)), "up", n[4]),
        BlockSpec("R3", _convs(n[3] + n[4], (n[3], n[3]), (3, 3)), "up", n[3]),
        BlockSpec("R2", _convs(n[2] + n[3], (n[2], n[2]), (3, 3)), "up", n[2]),
        BlockSpec("R1_FC", _convs(n[1] + n[2], (n[1], n[1], num_classes), (3, 3, 1)), "none"),
    )


def _bn(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{name}": (channels,) for name in ("weight", "bias", "running_mean", "running_var")}


def state_dict_shapes(num_classes: int, in_channels: int = 1, acti_func: str = "relu",
                      n_features: Sequence[int] = DEFAULT_N_FEATURES) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of ``UNet3D(...).state_dict()``, in the module's order.

    >>> shapes = state_dict_shapes(5, acti_func="relu", n_features=(8, 16, 32, 64, 128))
    >>> shapes["L1.8_bn.conv.weight"], shapes["R3.64_bn_1.conv.weight"], shapes["L4.up_2x2_bn.deconv.weight"]
    ((8, 1, 3, 3, 3), (64, 64, 3, 3, 3), (128, 128, 2, 2, 2))
    """
    prelu = acti_func.lower() == "prelu"
    shapes: dict[str, tuple[int, ...]] = {}
    for block in blocks(in_channels, num_classes, n_features):
        for conv in block.convs:
            prefix = f"{block.name}.{conv.key}"
            shapes[f"{prefix}.conv.weight"] = (conv.out_channels, conv.in_channels, *(conv.kernel,) * 3)
            shapes |= _bn(f"{prefix}.bn", conv.out_channels)
            if prelu:
                shapes[f"{prefix}.acti.alpha"] = (conv.out_channels,)
        if block.tail == "up":
            width = block.convs[-1].out_channels
            shapes[f"{block.name}.{UP_KEY}.deconv.weight"] = (width, block.up_channels, 2, 2, 2)
            shapes |= _bn(f"{block.name}.{UP_KEY}.bn", block.up_channels)
    return shapes


def output_shape(spatial_shape: Sequence[int]) -> tuple[int, ...]:
    """NiftyNet's output size: the input less ``2 * 44`` on every axis."""
    return tuple(int(n) - 2 * BORDER for n in spatial_shape)


def check_input(spatial_shape: Sequence[int]) -> None:
    """Raise :class:`~niftyport.errors.InputShapeError` unless every side is a multiple of 8 and >= 89."""
    from ...errors import InputShapeError

    bad = [int(n) for n in spatial_shape if int(n) % MULTIPLE or int(n) < MINIMUM]
    if bad:
        raise InputShapeError(f"UNet3D (unet) needs every spatial side to be a multiple of {MULTIPLE} and at least "
                              f"{MINIMUM} (the output is the input less {2 * BORDER}), got {tuple(spatial_shape)}")
