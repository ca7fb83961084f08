"""TorchScript export: the network traced, behind a scripted guard that enforces NiftyNet's size rule.

The file loads with ``torch.jit.load`` alone (no niftyport), takes torch's
layout ``(N, C, X, Y, Z)`` float32 and returns the network's output in the
same layout, bit for bit what eager PyTorch computes on the same machine
and threads (no freezing, no fusion: the traced graph runs the eager ops).

Tracing keeps the operations of one input size. The networks' graphs do
not depend on the size (their pads are the same for every valid size; TF1's
resizes compute their index lists from the traced sizes), and the export
checks it on a second valid size; a graph that does depend on it is kept
for the traced size only, and the guard refuses any other.
Metadata: the extra file ``niftyport.json`` (:mod:`.metadata`)::

    extra = {"niftyport.json": ""}
    model = torch.jit.load("model.ts", _extra_files=extra)
    json.loads(extra["niftyport.json"])["input"]
"""
from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import List

import torch

from ..errors import NetworkError
from ..outputs import atomic_output
from .metadata import describe
from .shapes import AxisRule, size_rule, smallest_shape
from .source import ExportSource

#: The extra file holding the metadata.
METADATA_FILE = "niftyport.json"


class SizeGuard(torch.nn.Module):
    """Refuses inputs NiftyNet cannot take, then runs ``inner`` (scripted; the traced network inside).

    Valid inputs: ``(N, channels, *spatial)``, each side ``minimum + step * k``
    (``step`` 0: exactly ``minimum``, the traced size).
    """

    def __init__(self, inner: torch.nn.Module, channels: int, minimum: List[int], step: List[int], rule: str):
        super().__init__()
        self.inner = inner
        self.channels = channels
        self.minimum = minimum
        self.step = step
        self.rule = rule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != len(self.minimum) + 2 or x.shape[1] != self.channels:
            raise RuntimeError("niftyport: expected (N, " + str(self.channels) + ", " + str(len(self.minimum))
                               + " spatial axes) float32, got " + str(x.shape))
        for i in range(len(self.minimum)):
            n = x.shape[i + 2]
            lo, step = self.minimum[i], self.step[i]
            if (step == 0 and n != lo) or (step > 0 and (n < lo or (n - lo) % step != 0)):
                raise RuntimeError("niftyport: input spatial shape " + str(x.shape[2:]) + " not accepted: "
                                   + self.rule)
        return self.inner(x)


@dataclass(frozen=True)
class TraceCheck:
    """What the export verified: bit for bit at ``shape``; ``any_size``: also at ``second_shape``."""

    shape: tuple[int, ...]
    second_shape: tuple[int, ...]
    any_size: bool

    def as_dict(self) -> dict:
        return {"bit_for_bit_at": list(self.shape), "size_independent": self.any_size,
                "second_size_checked": list(self.second_shape)}


def _example(source: ExportSource, shape: Sequence[int], seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((1, source.build.in_channels, *shape), generator=generator)


def _trace(model: torch.nn.Module, x: torch.Tensor) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        with torch.no_grad():
            return torch.jit.trace(model, (x,), check_trace=False)


def _eager(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def _same(traced: torch.jit.ScriptModule, expected: torch.Tensor, x: torch.Tensor) -> bool:
    """Whether ``traced(x)`` is ``expected`` bit for bit (a traced graph of one size may fail on another)."""
    with torch.no_grad():
        try:
            got = traced(x)
        except RuntimeError:
            return False
    return got.shape == expected.shape and torch.equal(got, expected)


def second_shape(rules: Sequence[AxisRule], shape: Sequence[int]) -> tuple[int, ...]:
    """The next valid shape: every side one step of the size rule longer (so every axis is checked)."""
    return tuple(n + r.step for n, r in zip(shape, rules))


def to_torchscript(source: ExportSource, shape: Sequence[int] | None = None) -> tuple[torch.jit.ScriptModule,
                                                                                      TraceCheck]:
    """The guarded TorchScript module of ``source`` traced at spatial ``shape`` and what was verified.

    ``shape`` defaults to the smallest valid one with sides >= 32. Raises
    :class:`~niftyport.errors.NetworkError` if the traced module differs from
    eager PyTorch at ``shape`` by a single bit.
    """
    spec, model = source.spec, source.model
    rules = size_rule(spec)
    shape = tuple(shape) if shape is not None else smallest_shape(rules, 32)
    spec.validate_input(shape)
    x = _example(source, shape, 0)
    expected = _eager(model, x)
    traced = _trace(model, x)
    if not _same(traced, expected, x):
        raise NetworkError(f"{spec.name}: the traced module differs from eager PyTorch at {shape}")
    other = second_shape(rules, shape)
    x_other = _example(source, other, 1)
    any_size = _same(traced, _eager(model, x_other), x_other)
    minimum = [r.minimum for r in rules] if any_size else list(shape)
    step = [r.step for r in rules] if any_size else [0] * len(shape)
    rule = (f"{spec.name} takes sides " + ", ".join(r.text() for r in rules) if any_size else
            f"this export was traced for spatial shape {shape} only (its graph depends on the size); "
            f"export again with another --input-shape")
    guarded = torch.jit.script(SizeGuard(traced, source.build.in_channels, minimum, step, rule))
    if not _same(guarded, expected, x):
        raise NetworkError(f"{spec.name}: the guarded module differs from eager PyTorch at {shape}")
    return guarded, TraceCheck(shape, other, any_size)


def export_torchscript(source: ExportSource, path: str | os.PathLike, *,
                       shape: Sequence[int] | None = None) -> dict:
    """Write ``source`` as a TorchScript file at ``path`` (atomically); returns its metadata document."""
    module, check = to_torchscript(source, shape)
    meta = describe(source, {"format": "torchscript", "torch": torch.__version__, "traced_shape": list(check.shape),
                             "check": check.as_dict(),
                             "accepts": "any valid size" if check.any_size else "the traced size only"})
    path = Path(path)
    with atomic_output(path) as tmp:
        torch.jit.save(module, str(tmp), _extra_files={METADATA_FILE: json.dumps(meta, indent=1, sort_keys=True)})
    return meta


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata document of a TorchScript file written by :func:`export_torchscript`."""
    extra = {METADATA_FILE: ""}
    torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra[METADATA_FILE])
