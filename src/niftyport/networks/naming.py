"""Small torch-free helpers the networks' tables share: TensorFlow's scope names, width lists."""
from __future__ import annotations

from collections.abc import Iterable, Sequence


def numbered(base: str, index: int) -> str:
    """TF's unique scope name of the ``index``-th layer called ``base``: ``base``, ``base_1``, ``base_2`` ..."""
    return base if index == 0 else f"{base}_{index}"


def unique_names(bases: Iterable[str]) -> list[str]:
    """The names TensorFlow gives layers created in one scope with these names, in order.

    >>> unique_names(["16_bn", "16_bn", "32_bn", "16_bn"])
    ['16_bn', '16_bn_1', '32_bn', '16_bn_2']
    """
    seen: dict[str, int] = {}
    names = []
    for base in bases:
        names.append(numbered(base, seen.get(base, 0)))
        seen[base] = seen.get(base, 0) + 1
    return names


def positive_widths(values: Sequence[int], count: int, what: str) -> tuple[int, ...]:
    """``values`` as a tuple of ``count`` positive ints, or :class:`~niftyport.errors.NetworkError` naming ``what``."""
    from ..errors import NetworkError

    widths = tuple(int(n) for n in values)
    if len(widths) != count or min(widths) < 1:
        raise NetworkError(f"{what} needs {count} positive widths, got {list(values)}")
    return widths
