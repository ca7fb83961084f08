"""NiftyNet's No New-Net as data: blocks, layer names, widths and ``state_dict`` shapes (torch-free).

Mirrors ``niftynet/network/no_new_net.py`` (NiftyNet 0.6.0, class
``UNet3D``, name scope ``NoNewNet``): nine ``UNetBlock`` scopes, ``L1``-``L4``
(two 3x3x3 convs, then 2x2x2 max-pooling), ``bottom``, ``R4``, ``R3``,
``R2`` (two 3x3x3 convs, then a x2 linear resize) and ``R1_FC`` (3x3x3,
3x3x3, 1x1x1). The 3x3x3 layers are ``ConvolutionalLayer``\\ s with instance
norm and the activation, named ``<width>_in_<acti>``; the last 1x1x1 one has
neither and is named ``<width>``. TensorFlow appends ``_1``, ``_2`` ... to
repeated names inside a block. A layer's key here is NiftyNet's name without
``_<acti>`` (``10_in``, ``10_in_1``, ``5``).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ..naming import positive_widths, unique_names

#: NiftyNet's ``UNet3D.n_features`` (no_new_net.py).
DEFAULT_N_FEATURES: tuple[int, ...] = (30, 60, 120, 240, 480)
#: NiftyNet's assertion on every spatial side (four 2x2x2 max-poolings).
MULTIPLE = 16


@dataclass(frozen=True)
class ConvSpec:
    """One conv layer: module key, widths, kernel; ``normed`` = instance norm + activation follow."""

    key: str
    in_channels: int
    out_channels: int
    kernel: int
    normed: bool


@dataclass(frozen=True)
class BlockSpec:
    """One ``UNetBlock``: NiftyNet scope, its convs, and what follows them.

    ``tail`` is ``"down"`` (2x2x2 max-pool), ``"up"`` (x2 linear resize) or ``"none"``.
    """

    name: str
    convs: tuple[ConvSpec, ...]
    tail: str


def _convs(in_channels: int, widths: Sequence[int], kernels: Sequence[int]) -> tuple[ConvSpec, ...]:
    """Convs of one block in order, keyed as TensorFlow uniquifies the names in a scope.

    As NiftyNet's ``UNetBlock`` decides it, a layer with kernel 1 has no norm and no activation.
    """
    bases = [f"{w}_in" if k > 1 else f"{w}" for w, k in zip(widths, kernels)]
    convs = []
    for name, width, kernel in zip(unique_names(bases), widths, kernels):
        convs.append(ConvSpec(name, in_channels, width, kernel, kernel > 1))
        in_channels = width
    return tuple(convs)


def check_n_features(n_features: Sequence[int]) -> tuple[int, ...]:
    """``n_features`` as a tuple of 5 positive ints, or :class:`~niftyport.errors.NetworkError`."""
    return positive_widths(n_features, 5, "No New-Net's n_features")


def blocks(in_channels: int, num_classes: int,
           n_features: Sequence[int] = DEFAULT_N_FEATURES) -> tuple[BlockSpec, ...]:
    """The nine blocks in NiftyNet's order; the inputs of R4 ... R1_FC are ``concat[skip, up]``."""
    n = check_n_features(n_features)
    return (
        BlockSpec("L1", _convs(in_channels, (n[0], n[0]), (3, 3)), "down"),
        BlockSpec("L2", _convs(n[0], (n[1], n[1]), (3, 3)), "down"),
        BlockSpec("L3", _convs(n[1], (n[2], n[2]), (3, 3)), "down"),
        BlockSpec("L4", _convs(n[2], (n[3], n[3]), (3, 3)), "down"),
        BlockSpec("bottom", _convs(n[3], (n[4], n[3]), (3, 3)), "up"),
        BlockSpec("R4", _convs(2 * n[3], (n[3], n[2]), (3, 3)), "up"),
        BlockSpec("R3", _convs(2 * n[2], (n[2], n[1]), (3, 3)), "up"),
        BlockSpec("R2", _convs(2 * n[1], (n[1], n[0]), (3, 3)), "up"),
        BlockSpec("R1_FC", _convs(2 * n[0], (n[0], n[0], num_classes), (3, 3, 1)), "none"),
    )


def state_dict_shapes(num_classes: int, in_channels: int = 1, acti_func: str = "leakyrelu",
                      n_features: Sequence[int] = DEFAULT_N_FEATURES) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of ``NoNewNet(...).state_dict()``, in the module's order.

    >>> shapes = state_dict_shapes(5, n_features=(10, 20, 40, 80, 160))
    >>> shapes["R4.80_in.conv.weight"], shapes["R1_FC.10_in_1.norm.weight"], shapes["R1_FC.5.conv.weight"]
    ((80, 160, 3, 3, 3), (10,), (5, 10, 1, 1, 1))
    """
    prelu = acti_func.lower() == "prelu"
    shapes: dict[str, tuple[int, ...]] = {}
    for block in blocks(in_channels, num_classes, n_features):
        for conv in block.convs:
            prefix = f"{block.name}.{conv.key}"
            shapes[f"{prefix}.conv.weight"] = (conv.out_channels, conv.in_channels, *(conv.kernel,) * 3)
            if conv.normed:
                shapes[f"{prefix}.norm.weight"] = shapes[f"{prefix}.norm.bias"] = (conv.out_channels,)
                if prelu:
                    shapes[f"{prefix}.acti.alpha"] = (conv.out_channels,)
    return shapes
