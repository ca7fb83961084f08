"""The sizes a network takes, as a per-axis rule ``side = minimum + step * k`` (``k >= 0``), torch-free.

A :class:`~niftyport.networks.NetworkSpec` states its size rule as a
``check_input`` callable; an exported model must state it as data (metadata,
dynamic ONNX axes, the TorchScript guard). The rule is read off
``check_input`` by probing every side up to :data:`PROBE_LIMIT`, one axis at
a time, the other axes at the smallest side valid on all axes. Worked example,
DeepMedic (every side odd, a multiple of 3 and > 48): valid sides 51, 57, 63,
... -> ``AxisRule(minimum=51, step=6)``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InputShapeError, NetworkError
from ..networks import NetworkSpec

#: Largest side probed.
PROBE_LIMIT = 1024


@dataclass(frozen=True)
class AxisRule:
    """Valid sides of one spatial axis: ``minimum + step * k``, ``k = 0, 1, ...`` (``step >= 1``)."""

    minimum: int
    step: int

    def valid(self, side: int) -> bool:
        return side >= self.minimum and (side - self.minimum) % self.step == 0

    def at_least(self, side: int) -> int:
        """The smallest valid side ``>= side``."""
        if side <= self.minimum:
            return self.minimum
        return self.minimum + -(-(side - self.minimum) // self.step) * self.step

    def text(self) -> str:
        """``"8k"``, ``"96 + 8k"``, ``"any"``."""
        if self.step == 1:
            return "any" if self.minimum <= 1 else f">= {self.minimum}"
        if self.minimum % self.step == 0:
            start = f" (>= {self.minimum})" if self.minimum > self.step else ""
            return f"multiple of {self.step}{start}"
        return f"{self.minimum} + {self.step}k"


def _accepts(spec: NetworkSpec, shape: Sequence[int]) -> bool:
    try:
        spec.validate_input(shape)
    except InputShapeError:
        return False
    return True


def size_rule(spec: NetworkSpec) -> tuple[AxisRule, ...]:
    """One :class:`AxisRule` per spatial axis of ``spec``; :class:`NetworkError` if no rule of that form fits."""
    dims = spec.spatial_dims
    base = next((n for n in range(1, PROBE_LIMIT + 1) if _accepts(spec, (n,) * dims)), None)
    if base is None:
        raise NetworkError(f"{spec.name}: no cubic input up to {PROBE_LIMIT} voxels a side is valid")
    rules = []
    for axis in range(dims):
        shape = [base] * dims
        sides = []
        for n in range(1, PROBE_LIMIT + 1):
            shape[axis] = n
            if _accepts(spec, shape):
                sides.append(n)
        step = sides[1] - sides[0] if len(sides) > 1 else 1
        if sides != list(range(sides[0], PROBE_LIMIT + 1, step)):
            raise NetworkError(f"{spec.name}: the valid sides of axis {axis} ({sides[:6]} ...) are not of the "
                               "form minimum + step * k")
        rules.append(AxisRule(sides[0], step))
    return tuple(rules)


def smallest_shape(rules: Sequence[AxisRule], at_least: int = 1) -> tuple[int, ...]:
    """The smallest valid shape whose every side is ``>= at_least``."""
    return tuple(r.at_least(at_least) for r in rules)


def parse_shape(text: str | Sequence[int], rules: Sequence[AxisRule], spec: NetworkSpec) -> tuple[int, ...]:
    """``"96,96,96"`` (or a sequence) -> a valid spatial shape, else :class:`InputShapeError` naming the rule."""
    if isinstance(text, str):
        try:
            shape = tuple(int(n) for n in text.replace("x", ",").split(","))
        except ValueError:
            raise InputShapeError(f"input shape {text!r} is not {len(rules)} integers such as "
                                  f"{','.join(str(r.minimum) for r in rules)}") from None
    else:
        shape = tuple(int(n) for n in text)
    spec.validate_input(shape)
    return shape


def output_rule(spec: NetworkSpec, rules: Sequence[AxisRule]) -> list[dict[str, int]]:
    """Per axis ``{"scale": a, "offset": b}``: output side ``= a * input side + b`` (``a`` 1 unless strided).

    Read off ``spec.output_shape`` at two valid sides (the identity without one).
    """
    first = smallest_shape(rules)
    second = tuple(r.minimum + r.step for r in rules)
    out1, out2 = (tuple(spec.output_shape(s)) if spec.output_shape else s for s in (first, second))
    result = []
    for r, i1, i2, o1, o2 in zip(rules, first, second, out1, out2):
        scale_num = o2 - o1
        scale = scale_num // r.step if scale_num % r.step == 0 else 0
        result.append({"scale": scale, "offset": o1 - scale * i1})
    return result
