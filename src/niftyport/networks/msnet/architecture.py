"""MSNet's architecture as data (torch-free): residual blocks, layer widths, and its size rules.

Mirrors ``MSNet.layer_op`` and ``ResBlock`` of ``util/MSNet.py`` in
github.com/taigw/brats17 (Wang et al., BrainLes 2017), which builds W-Net,
T-Net and E-Net from NiftyNet's layers. The spatial axes are those of the
TensorFlow tensor ``(N, D, H, W, C)``: the first one (``D``, torch's ``X``)
is the slice axis, the one the networks treat anisotropically.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ...errors import InputShapeError


@dataclass(frozen=True)
class Block:
    """One ``ResBlock``: NiftyNet scope, which of ``base_chns`` it has, in-plane dilation of both convs."""

    name: str
    stage: int
    dilation: int


#: The ten residual blocks, in the order MSNet applies them; every conv is 1x3x3 (in-plane).
BLOCKS: tuple[Block, ...] = (
    Block("block1_1", 0, 1), Block("block1_2", 0, 1),
    Block("block2_1", 1, 1), Block("block2_2", 1, 1),
    Block("block3_1", 2, 1), Block("block3_2", 2, 2), Block("block3_3", 2, 3),
    Block("block4_1", 3, 3), Block("block4_2", 3, 2), Block("block4_3", 3, 1),
)
#: MSNet's default widths (its ``base_chns``, the config's ``base_feature_number``).
BASE_CHNS: tuple[int, int, int, int] = (32, 32, 32, 32)
#: Slices the four ``fuse`` layers (3x1x1 'VALID' convs along D) take off the slice axis, in all.
DEPTH_LOSS = 8
#: Thinnest input: one output slice.
MIN_DEPTH = DEPTH_LOSS + 1


def in_plane_multiple(downsample_twice: bool) -> int:
    """What the in-plane sides must be a multiple of: 4 for W-Net/T-Net (two stride-2 steps), 2 for E-Net."""
    return 4 if downsample_twice else 2


def check_shape(spatial_shape: Sequence[int], downsample_twice: bool = True) -> None:
    """Raise :class:`~niftyport.errors.InputShapeError` unless this MSNet variant takes ``(D, H, W)``.

    ``D`` (the slice axis) must be at least 9. The branches are up-sampled
    by transposed convolutions that double a side exactly and then
    concatenated, so the in-plane sides must come back to the same size in
    every branch: multiples of 4 with ``downsample_twice``, of 2 without.
    (TensorFlow also takes sides of ``4k + 3`` for W-Net/T-Net, with an
    output one voxel larger; the repository's test code always feeds
    multiples of 4, and so does this port.)
    """
    shape = tuple(int(n) for n in spatial_shape)
    if len(shape) != 3:
        raise InputShapeError(f"MSNet takes 3-D inputs (D, H, W), got spatial shape {shape}")
    depth, *plane = shape
    if depth < MIN_DEPTH:
        raise InputShapeError(f"MSNet needs at least {MIN_DEPTH} slices along the first spatial axis "
                              f"(its fuse layers remove {DEPTH_LOSS}), got {shape}")
    multiple = in_plane_multiple(downsample_twice)
    if any(n % multiple for n in plane):
        variant = "W-Net/T-Net (downsample_twice)" if downsample_twice else "E-Net"
        raise InputShapeError(f"MSNet {variant} needs the 2nd and 3rd spatial sides to be multiples of "
                              f"{multiple}, got {shape}")


def check_input(spatial_shape: Sequence[int]) -> None:
    """The size rule every MSNet variant accepts (the strictest: W-Net's); see :func:`check_shape`."""
    check_shape(spatial_shape, downsample_twice=True)


def output_shape(spatial_shape: Sequence[int]) -> tuple[int, ...]:
    """``(D - 8, H, W)``: the central slices are predicted, in-plane size kept.

    >>> output_shape((19, 144, 144))
    (11, 144, 144)
    """
    depth, height, width = (int(n) for n in spatial_shape)
    return depth - DEPTH_LOSS, height, width
