"""DeepMedic's architecture as data: widths, NiftyNet layer names and the size rules (torch-free).

Mirrors ``niftynet/network/deepmedic.py`` (NiftyNet 0.6.0): a normal pathway
on the centre of the input and a pathway on the input sub-sampled by 3, each
of eight VALID 3x3x3 ``ConvolutionalLayer``s, then three 1x1x1 layers on
their concatenation.
"""
from __future__ import annotations

from collections.abc import Sequence
from ..naming import numbered, unique_names

#: NiftyNet's ``d_factor``: the sub-sampling factor of the second pathway (odd).
D_FACTOR = 3
#: Voxels the eight VALID 3x3x3 convolutions of a pathway remove from each side.
PATH_BORDER = 8
#: ``crop_diff``: border cropped from the input for the normal pathway, ``(d_factor - 1) * 16 // 2``.
CROP_BORDER = (D_FACTOR - 1) * 2 * PATH_BORDER // 2
#: Widths of the eight 3x3x3 convolutions of each pathway (``conv_features``).
CONV_FEATURES: tuple[int, ...] = (30, 30, 40, 40, 40, 40, 50, 50)
#: Widths of the 1x1x1 layers before the classifier (``fc_features`` less ``num_classes``).
HIDDEN_FC_FEATURES: tuple[int, ...] = (150, 150)
#: Smallest side NiftyNet accepts is the first odd multiple of 3 above ``d_factor * 16``.
MIN_SIDE_EXCLUSIVE = D_FACTOR * 2 * PATH_BORDER


def fc_layer_names(num_classes: int) -> list[str]:
    """NiftyNet's scope names of the 1x1x1 layers, ``_bn_<acti>`` left out.

    >>> fc_layer_names(5), fc_layer_names(150)[-1]
    (['conv_1x1x1_150', 'conv_1x1x1_150_1', 'conv_1x1x1_5'], 'conv_1x1x1_150_2')
    """
    return unique_names(f"conv_1x1x1_{width}" for width in (*HIDDEN_FC_FEATURES, num_classes))


def path_layer_names(pathway: str) -> list[str]:
    """``normal_conv``, ``normal_conv_1`` ... (``pathway`` is ``normal`` or ``downsample``)."""
    return [numbered(f"{pathway}_conv", i) for i in range(len(CONV_FEATURES))]


def output_side(side: int) -> int:
    """Output side for an input side: ``side - 48`` (8 VALID convs at full and at 1/3 resolution)."""
    return side - D_FACTOR * 2 * PATH_BORDER


def check_input(spatial_shape: Sequence[int]) -> None:
    """NiftyNet's asserts: every side odd, divisible by 3 and > 48 (57 for training, 105 for inference)."""
    from ...errors import InputShapeError

    bad = [n for n in spatial_shape if n % 2 == 0 or n % D_FACTOR or n <= MIN_SIDE_EXCLUSIVE]
    if bad:
        raise InputShapeError(
            f"DeepMedic needs every spatial side odd, a multiple of {D_FACTOR} and greater than "
            f"{MIN_SIDE_EXCLUSIVE} (e.g. 57, 63, ... 105), got {tuple(spatial_shape)}")


def output_shape(spatial_shape: Sequence[int]) -> tuple[int, ...]:
    """DeepMedic's output spatial shape: each side less 48 (57 -> 9, 105 -> 57)."""
    return tuple(output_side(int(n)) for n in spatial_shape)


def _convbn(prefix: str, n_in: int, n_out: int, kernel: int, prelu: bool) -> dict[str, tuple[int, ...]]:
    shapes = {f"{prefix}.conv.weight": (n_out, n_in, *(kernel,) * 3)}
    shapes |= {f"{prefix}.bn.{p}": (n_out,) for p in ("weight", "bias", "running_mean", "running_var")}
    return shapes | ({f"{prefix}.acti.alpha": (n_out,)} if prelu else {})


def state_dict_shapes(num_classes: int = 2, in_channels: int = 1,
                      acti_func: str = "relu") -> dict[str, tuple[int, ...]]:
    """Keys and shapes of ``DeepMedic(num_classes=..., in_channels=..., acti_func=...).state_dict()``."""
    prelu = acti_func.lower() == "prelu"
    shapes: dict[str, tuple[int, ...]] = {}
    for pathway in ("normal", "downsample"):
        n_in = in_channels
        for name, width in zip(path_layer_names(pathway), CONV_FEATURES):
            shapes |= _convbn(name, n_in, width, 3, prelu)
            n_in = width
    n_in = 2 * CONV_FEATURES[-1]
    for name, width in zip(fc_layer_names(num_classes), (*HIDDEN_FC_FEATURES, num_classes)):
        shapes |= _convbn(name, n_in, width, 1, prelu)
        n_in = width
    return shapes
