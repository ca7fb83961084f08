"""NiftyNet's VNet as data: blocks, widths and ``state_dict`` shapes (torch-free).

Mirrors ``niftynet/network/vnet.py`` (NiftyNet 0.6.0): nine ``VNetBlock``
scopes. Each runs ``n_conv`` 5x5x5 convs without bias (``conv_0`` ...), an
activation after all but the last, adds a bypass (``ElementwiseLayer SUM``,
scope ``residual_sum``), then its tail: ``downsample`` (2x2x2 stride-2 conv
with bias), ``upsample`` (2x2x2 stride-2 transposed conv with bias) or
``conv_1x1x1`` (with bias), and a final activation. The activations are
``ActiLayer``\\ s named ``<acti>_activation``, ``_1``, ``_2`` in creation order
(keys ``acti``, ``acti_1``, ``acti_2`` here; only ``prelu`` has variables).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ..naming import positive_widths

#: NiftyNet's ``VNet.n_features``.
DEFAULT_N_FEATURES: tuple[int, ...] = (16, 32, 64, 128, 256)
#: Four stride-2 halvings: every side must be a multiple of 16 (NiftyNet asserts only 8, then
#: fails to concatenate mismatched sizes).
MULTIPLE = 16
#: Module attribute of each block's tail, NiftyNet's scope name of it.
TAILS = {"down": "downsample", "up": "upsample", "same": "conv_1x1x1"}


@dataclass(frozen=True)
class BlockSpec:
    """One ``VNetBlock``.

    ``in_channels``: of the main flow (a concatenation for R4-R1);
    ``features``: width of its 5x5x5 convs; ``bypass_channels``: of the tensor
    added to their output; ``out_channels``: of the tail; ``tail``: ``"down"``,
    ``"up"`` or ``"same"``.
    """

    name: str
    tail: str
    n_conv: int
    in_channels: int
    features: int
    out_channels: int
    bypass_channels: int

    @property
    def acti_keys(self) -> tuple[str, ...]:
        """Keys of the activations in creation order: after each conv but the last, then the tail's."""
        return tuple("acti" if i == 0 else f"acti_{i}" for i in range(self.n_conv))

    @property
    def projects(self) -> bool:
        """Whether ``ElementwiseLayer`` projects a wider bypass with a 1x1x1 conv (``residual_sum/proj``)."""
        return self.bypass_channels > self.features


def check_n_features(n_features: Sequence[int]) -> tuple[int, ...]:
    """``n_features`` as a tuple of 5 positive ints, or :class:`~niftyport.errors.NetworkError`."""
    return positive_widths(n_features, 5, "VNet's n_features")


def blocks(in_channels: int, num_classes: int,
           n_features: Sequence[int] = DEFAULT_N_FEATURES) -> tuple[BlockSpec, ...]:
    """The nine blocks in NiftyNet's order.

    L1's bypass is the input tiled ``n_features[0]`` times on the channel axis; an up
    block's main flow is ``concat[up, skip]`` and its bypass ``up`` alone.
    """
    n = check_n_features(n_features)
    return (
        BlockSpec("L1", "down", 1, in_channels, n[0], n[1], in_channels * n[0]),
        BlockSpec("L2", "down", 2, n[1], n[1], n[2], n[1]),
        BlockSpec("L3", "down", 3, n[2], n[2], n[3], n[2]),
        BlockSpec("L4", "down", 3, n[3], n[3], n[4], n[3]),
        BlockSpec("V_", "up", 3, n[4], n[4], n[4], n[4]),
        BlockSpec("R4", "up", 3, n[4] + n[3], n[4], n[3], n[4]),
        BlockSpec("R3", "up", 3, n[3] + n[2], n[3], n[2], n[3]),
        BlockSpec("R2", "up", 2, n[2] + n[1], n[2], n[1], n[2]),
        BlockSpec("R1", "same", 1, n[1] + n[0], n[1], num_classes, n[1]),
    )


def state_dict_shapes(num_classes: int, in_channels: int = 1, acti_func: str = "relu",
                      n_features: Sequence[int] = DEFAULT_N_FEATURES) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of ``VNet(...).state_dict()``, in the module's order.

    >>> shapes = state_dict_shapes(5, n_features=(2, 4, 8, 16, 32))
    >>> shapes["R4.conv_0.weight"], shapes["V_.upsample.weight"], shapes["R1.conv_1x1x1.bias"]
    ((32, 48, 5, 5, 5), (32, 32, 2, 2, 2), (5,))
    """
    prelu = acti_func.lower() == "prelu"
    shapes: dict[str, tuple[int, ...]] = {}
    for b in blocks(in_channels, num_classes, n_features):
        channels = b.in_channels
        for i in range(b.n_conv):
            shapes[f"{b.name}.conv_{i}.weight"] = (b.features, channels, 5, 5, 5)
            channels = b.features
        if b.projects:
            shapes[f"{b.name}.proj.weight"] = (b.features, b.bypass_channels, 1, 1, 1)
        tail, k = TAILS[b.tail], (1 if b.tail == "same" else 2)
        # a transposed kernel is (in, out, k...), a kernel (out, in, k...)
        shapes[f"{b.name}.{tail}.weight"] = ((b.features, b.out_channels) if b.tail == "up"
                                             else (b.out_channels, b.features)) + (k, k, k)
        shapes[f"{b.name}.{tail}.bias"] = (b.out_channels,)
        if prelu:
            for i, key in enumerate(b.acti_keys):
                shapes[f"{b.name}.{key}.alpha"] = (b.out_channels if i == b.n_conv - 1 else b.features,)
    return shapes
