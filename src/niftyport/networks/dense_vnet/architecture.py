"""DenseVNet's hyper-parameters and tensor shapes as data (torch-free).

Mirrors ``DenseVNet.__hyper_params__`` and ``create_network`` of NiftyNet
0.6.0's ``niftynet/network/dense_vnet.py``: :func:`resolve` merges a user's
``hyperparams`` over NiftyNet's defaults, refuses what NiftyNet refuses (or
cannot build), and returns the :class:`Architecture` that both
:mod:`.module` and :func:`state_dict_shapes` are made from, so that
checkpoint conversion can check every shape without importing PyTorch.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import NetworkError

#: ``DenseVNet.__hyper_params__`` of NiftyNet 0.6.0 (lists as tuples).
DEFAULT_HYPERPARAMS: dict[str, Any] = {
    "prior_size": 24,
    "n_dense_channels": (4, 8, 16),
    "n_seg_channels": (12, 24, 24),
    "n_initial_conv_channels": 24,
    "n_down_channels": (24, 24, None),
    "dilation_rates": ((1,) * 5, (1,) * 10, (1,) * 10),
    "seg_kernel_size": 3,
    "augmentation_scale": 0.1,
    "use_bdo": False,
    "use_prior": False,
    "use_dense_connections": True,
    "use_coords": False,
}
#: Kernel sizes NiftyNet hard-codes: the initial strided conv and every block conv.
INITIAL_KERNEL = 5
BLOCK_KERNEL = 3


@dataclass(frozen=True)
class Block:
    """One dense block (``DenseFeatureStackBlockWithSkipAndDownsample``).

    ``n_convs`` 3x3x3 convs of ``dense_channels`` each (one per dilation
    rate), fed the block input and every earlier output; a skip conv of
    ``seg_channels``; a stride-2 down conv of ``down_channels`` (None: none).
    """

    in_channels: int
    dense_channels: int
    n_convs: int
    seg_channels: int
    down_channels: int | None
    use_bdo: bool

    def conv_in_channels(self, j: int) -> int:
        """Input width of the block's ``j``-th dense conv."""
        return self.in_channels + j * self.dense_channels

    @property
    def merged_channels(self) -> int:
        """Width of the stack the skip and down convs read.

        With ``use_bdo`` NiftyNet's ``DenseFeatureStackBlock`` returns only the
        convs' outputs (the block input is dropped from the stack).
        """
        convs = self.n_convs * self.dense_channels
        return convs if self.use_bdo else self.in_channels + convs


@dataclass(frozen=True)
class Architecture:
    """Everything the weights' shapes and the forward pass depend on."""

    in_channels: int
    num_classes: int
    spatial_dims: int
    initial_channels: int
    blocks: tuple[Block, ...]
    seg_kernel_size: int
    use_prior: bool
    prior_size: int
    size_multiple: int

    @property
    def seg_in_channels(self) -> int:
        """Width of ``concat[downsampled input, skip_1, ..., skip_n]``, the final conv's input."""
        return self.in_channels + sum(b.seg_channels for b in self.blocks)


def merged_hyperparams(hyperparams: Mapping[str, Any] | None) -> dict[str, Any]:
    """NiftyNet's defaults updated with ``hyperparams``; an unknown key is a :class:`NetworkError`."""
    given = dict(hyperparams or {})
    unknown = sorted(set(given) - set(DEFAULT_HYPERPARAMS))
    if unknown:
        raise NetworkError(f"DenseVNet has no hyperparameter {unknown[0]!r} "
                           f"(known: {', '.join(sorted(DEFAULT_HYPERPARAMS))})")
    return {**DEFAULT_HYPERPARAMS, **given}


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise NetworkError(f"DenseVNet hyperparameter {what} must be a positive integer, got {value!r}")
    return value


def _int_list(value: Any, what: str, *, allow_none: bool = False) -> list[int | None]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise NetworkError(f"DenseVNet hyperparameter {what} must be a list, got {value!r}")
    return [None if (allow_none and v is None) else _positive_int(v, f"{what}[{i}]") for i, v in enumerate(value)]


def _check_unsupported(hp: Mapping[str, Any]) -> None:
    """What NiftyNet 0.6.0's constructor itself refuses (``NotImplementedError`` there)."""
    rates = hp["dilation_rates"]
    if isinstance(rates, (str, bytes)) or not isinstance(rates, Sequence) or not all(
            isinstance(r, Sequence) and not isinstance(r, (str, bytes)) for r in rates):
        raise NetworkError(f"DenseVNet hyperparameter dilation_rates must be a list of lists, got {rates!r}")
    if any(d != 1 for ds in rates for d in ds):
        raise NetworkError("DenseVNet: dilated convolutions are not implemented in NiftyNet 0.6.0 "
                           "(every dilation rate must be 1)")
    if hp["use_dense_connections"] is False:
        raise NetworkError("DenseVNet: use_dense_connections=False is not implemented in NiftyNet 0.6.0")
    if hp["use_coords"] is True:
        raise NetworkError("DenseVNet: use_coords=True (coordinate augmentation) is not implemented "
                           "in NiftyNet 0.6.0")


def _blocks(hp: Mapping[str, Any], first_in: int) -> tuple[Block, ...]:
    dense = _int_list(hp["n_dense_channels"], "n_dense_channels")
    seg = _int_list(hp["n_seg_channels"], "n_seg_channels")
    down = _int_list(hp["n_down_channels"], "n_down_channels", allow_none=True)
    rates = hp["dilation_rates"]
    n = len(dense)
    if n == 0:
        raise NetworkError("DenseVNet needs at least one dense block (n_dense_channels is empty)")
    for what, values in (("n_seg_channels", seg), ("n_down_channels", down), ("dilation_rates", rates)):
        if len(values) < n:
            raise NetworkError(f"DenseVNet hyperparameter {what} has {len(values)} entries, "
                               f"fewer than the {n} dense blocks of n_dense_channels")
    if any(d is None for d in down[:n - 1]):
        raise NetworkError("DenseVNet: only the last block may have n_down_channels None "
                           "(the next block needs its downsampled input)")
    blocks, channels = [], first_in
    for i in range(n):
        if len(rates[i]) == 0:
            raise NetworkError(f"DenseVNet: dilation_rates[{i}] is empty (a dense block needs a conv)")
        block = Block(channels, dense[i], len(rates[i]), seg[i], down[i], bool(hp["use_bdo"]))
        blocks.append(block)
        channels = block.down_channels or 0
    return tuple(blocks)


def resolve(hyperparams: Mapping[str, Any] | None = None, *, num_classes: int = 9, in_channels: int = 1,
            spatial_dims: int = 3) -> Architecture:
    """The :class:`Architecture` NiftyNet builds from ``hyperparams`` (merged over its defaults).

    >>> arch = resolve()
    >>> [b.merged_channels for b in arch.blocks], arch.seg_in_channels, arch.size_multiple
    ([45, 104, 184], 61, 8)
    """
    if spatial_dims not in (2, 3):
        raise NetworkError(f"DenseVNet is 2-D or 3-D, got spatial_dims={spatial_dims!r}")
    hp = merged_hyperparams(hyperparams)
    _check_unsupported(hp)
    in_channels = _positive_int(in_channels, "in_channels")
    initial = _positive_int(hp["n_initial_conv_channels"], "n_initial_conv_channels")
    return Architecture(
        in_channels=in_channels,
        num_classes=_positive_int(num_classes, "num_classes"),
        spatial_dims=spatial_dims,
        initial_channels=initial,
        blocks=_blocks(hp, in_channels + initial),
        seg_kernel_size=_positive_int(hp["seg_kernel_size"], "seg_kernel_size"),
        use_prior=bool(hp["use_prior"]),
        prior_size=_positive_int(hp["prior_size"], "prior_size"),
        # layer_op's own check: every spatial side divisible by 2 ** len(dilation_rates)
        size_multiple=2 ** len(hp["dilation_rates"]),
    )


def _bn(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{name}": (channels,) for name in ("weight", "bias", "running_mean", "running_var")}


def _conv_bn(prefix: str, cin: int, cout: int, kernel: int, dims: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.conv.weight": (cout, cin, *(kernel,) * dims), **_bn(f"{prefix}.bn", cout)}


def architecture_shapes(arch: Architecture) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the module's ``state_dict`` for ``arch``, in the module's order."""
    d = arch.spatial_dims
    shapes = _bn("downsample_bn", arch.in_channels)
    shapes |= _conv_bn("initial_conv", arch.in_channels, arch.initial_channels, INITIAL_KERNEL, d)
    for i, block in enumerate(arch.blocks):
        for j in range(block.n_convs):
            shapes |= _conv_bn(f"blocks.{i}.dfs.{j}", block.conv_in_channels(j), block.dense_channels,
                               BLOCK_KERNEL, d)
        shapes |= _conv_bn(f"blocks.{i}.skip_conv", block.merged_channels, block.seg_channels, BLOCK_KERNEL, d)
        if block.down_channels is not None:
            shapes |= _conv_bn(f"blocks.{i}.down_conv", block.merged_channels, block.down_channels,
                               BLOCK_KERNEL, d)
    k = arch.seg_kernel_size
    shapes["final_conv.weight"] = (arch.num_classes, arch.seg_in_channels, *(k,) * d)
    shapes["final_conv.bias"] = (arch.num_classes,)
    if arch.use_prior:
        # NiftyNet's layout (1, P, P[, P], 1): the same bytes as torch's (1, 1, P, P[, P])
        shapes["spatial_prior.prior"] = (1, *(arch.prior_size,) * d, 1)
    return shapes


def state_dict_shapes(num_classes: int = 9, in_channels: int = 1, acti_func: str = "relu", *,
                      hyperparams: Mapping[str, Any] | None = None,
                      spatial_dims: int = 3) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of ``DenseVNet(num_classes=..., hyperparams=...).state_dict()`` (``acti_func`` is unused).

    >>> shapes = state_dict_shapes()
    >>> shapes["blocks.1.dfs.9.conv.weight"], shapes["final_conv.weight"], len(shapes)
    ((8, 96, 3, 3, 3), (9, 61, 3, 3, 3), 161)
    """
    del acti_func  # NiftyNet's DenseVNet hard-codes its activations
    return architecture_shapes(resolve(hyperparams, num_classes=num_classes, in_channels=in_channels,
                                       spatial_dims=spatial_dims))
