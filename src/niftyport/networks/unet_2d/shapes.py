"""UNet2D's size rules, torch-free: which sides NiftyNet's graph is built for, and the output's side.

Per side ``n``: four times two VALID 3x3 convolutions (``-4``) and a 2x2
max-pool ('SAME', so ``ceil(n / 2)``), two more convolutions at the bottom,
then four times a 2x2 stride-2 transposed convolution (``x2``) and two
convolutions (``-4``). The skips line up without resampling exactly when
``n = 16 k + 124``; the output then has ``n - 184`` voxels, at least 4
(``k >= 4``).
"""
from __future__ import annotations

from collections.abc import Sequence

from ...errors import InputShapeError

#: Downsampling levels.
LEVELS = 4
#: Smallest valid side: the coarsest feature map is then 4 voxels wide.
MIN_SIDE = 188


def encoder_sides(n: int) -> list[int]:
    """Sides of the four skip outputs and of the bottom block (after its two convolutions)."""
    sides = []
    for _ in range(LEVELS):
        n -= 4
        sides.append(n)
        n = -(-n // 2)
    sides.append(n - 4)
    return sides


def output_side(n: int) -> int:
    """The output's side for an input side ``n`` (any side NiftyNet's graph accepts)."""
    m = encoder_sides(n)[-1]
    for _ in range(LEVELS):
        m = 2 * m - 4
    return m


def is_valid_side(n: int) -> bool:
    """``n = 16 k + 124``, ``k >= 4``: every max-pool sees an even side and every skip crops evenly."""
    return n >= MIN_SIDE and (n - 124) % 16 == 0


def check_input(spatial_shape: Sequence[int]) -> None:
    """Raise :class:`~niftyport.errors.InputShapeError` unless every side is ``16 k + 124`` with ``k >= 4``."""
    bad = [n for n in spatial_shape if not is_valid_side(int(n))]
    if bad:
        raise InputShapeError(
            f"UNet2D needs every spatial side to be 16k + 124 with k >= 4 (188, 204, 220, ...), got "
            f"{tuple(spatial_shape)}: other sides make NiftyNet max-pool odd sizes and resample its skip "
            "connections")


def output_shape(spatial_shape: Sequence[int]) -> tuple[int, ...]:
    """Output spatial shape for an input of ``spatial_shape`` (``n - 184`` per valid side)."""
    return tuple(output_side(int(n)) for n in spatial_shape)
