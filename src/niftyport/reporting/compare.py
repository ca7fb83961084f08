"""Compare two label maps on the same grid: differing voxels, per-label Dice and volumes.

Pure functions over integer arrays ``(X, Y, Z)`` in voxel-index space; volumes
in mm^3 use the voxel volume passed in. :func:`check_same_grid` refuses maps
whose shapes or affines differ, since a voxel-by-voxel comparison of those
would be meaningless.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from .colortable import ColorTable, fallback_table
from ..errors import GridError, OptionError
from .volumes import label_counts

#: Largest affine difference (mm) still taken as the same grid: float32 header rounding.
AFFINE_ATOL_MM = 1e-4


@dataclass(frozen=True)
class LabelComparison:
    """One label in both maps.

    ``voxels_a``/``voxels_b``: voxels with this label in map a / b; ``mm3_*`` the
    same in mm^3; ``overlap``: voxels with this label in both; ``dice`` =
    ``2 * overlap / (voxels_a + voxels_b)``; ``differing`` = voxels that carry
    this label in exactly one of the maps.
    """

    label: int
    name: str
    voxels_a: int
    voxels_b: int
    mm3_a: float
    mm3_b: float
    overlap: int
    dice: float

    @property
    def differing(self) -> int:
        return self.voxels_a + self.voxels_b - 2 * self.overlap


@dataclass(frozen=True)
class CompareResult:
    """The outcome of :func:`compare_labels`.

    ``labels`` holds every label present in either map, worst first: lowest Dice,
    then most differing voxels, then lowest id.
    """

    shape: tuple[int, ...]
    voxel_mm3: float
    n_voxels: int
    n_different: int
    labels: tuple[LabelComparison, ...]
    name_a: str = "a"
    name_b: str = "b"

    @property
    def percent_different(self) -> float:
        return 100.0 * self.n_different / self.n_voxels if self.n_voxels else 0.0

    @property
    def identical(self) -> bool:
        return self.n_different == 0

    @property
    def mean_dice(self) -> float:
        """Mean Dice over the labels other than 0 (NaN when there are none)."""
        dice = [c.dice for c in self.labels if c.label != 0]
        return float(np.mean(dice)) if dice else float("nan")

    def within(self, tolerance_voxels: int) -> bool:
        """True when at most ``tolerance_voxels`` voxels differ."""
        return self.n_different <= tolerance_voxels

    def to_dict(self, *, tolerance_voxels: int | None = None) -> dict:
        """A JSON-ready dict (NaN written as None)."""
        out = {
            "a": self.name_a,
            "b": self.name_b,
            "shape": list(self.shape),
            "voxel_mm3": self.voxel_mm3,
            "n_voxels": self.n_voxels,
            "n_different": self.n_different,
            "percent_different": self.percent_different,
            "identical": self.identical,
            "mean_dice_foreground": _finite_or_none(self.mean_dice),
        }
        if tolerance_voxels is not None:
            out["tolerance_voxels"] = int(tolerance_voxels)
            out["within_tolerance"] = self.within(tolerance_voxels)
        out["labels"] = [{**asdict(c), "differing": c.differing} for c in self.labels]
        return out

    def to_json(self, *, tolerance_voxels: int | None = None) -> str:
        return json.dumps(self.to_dict(tolerance_voxels=tolerance_voxels), indent=1) + "\n"

    def summary(self, *, top: int = 10) -> str:
        """Human-readable lines: differing voxels, then the ``top`` worst labels."""
        lines = [
            f"a: {self.name_a}",
            f"b: {self.name_b}",
            f"grid: {'x'.join(map(str, self.shape))} voxels of {self.voxel_mm3:g} mm^3",
            f"number of different voxels: {self.n_different} of {self.n_voxels} "
            f"({self.percent_different:.4f} %)",
            f"labels: {sum(c.voxels_a > 0 for c in self.labels)} in a, "
            f"{sum(c.voxels_b > 0 for c in self.labels)} in b; "
            f"mean Dice (labels > 0): {self.mean_dice:.6f}",
        ]
        worst = [c for c in self.labels if c.differing][:top]
        if worst:
            lines.append(f"worst labels (of {sum(1 for c in self.labels if c.differing)} that differ):")
            lines.append(f"  {'id':>4} {'Dice':>8} {'voxels a':>9} {'voxels b':>9} {'mm3 a':>10} {'mm3 b':>10}  name")
            for c in worst:
                lines.append(f"  {c.label:>4} {c.dice:8.5f} {c.voxels_a:>9} {c.voxels_b:>9} "
                             f"{c.mm3_a:>10.1f} {c.mm3_b:>10.1f}  {c.name}")
        return "\n".join(lines)


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def count_different(a: np.ndarray, b: np.ndarray) -> int:
    """Number of voxels where two same-shape label maps differ."""
    return int(np.count_nonzero(np.asarray(a) != np.asarray(b)))


def dice_per_label(a: np.ndarray, b: np.ndarray) -> dict[int, float]:
    """Dice ``2|A∩B| / (|A|+|B|)`` for every label present in ``a`` or ``b``.

    >>> dice_per_label(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]))
    {0: 1.0, 1: 0.6666666666666666, 2: 0.6666666666666666}
    """
    return {c.label: c.dice for c in _label_comparisons(a, b, 1.0, None)}


def compare_labels(a: np.ndarray, b: np.ndarray, *, voxel_mm3: float = 1.0,
                   table: ColorTable | None = None, name_a: str = "a",
                   name_b: str = "b") -> CompareResult:
    """Compare two label maps voxel by voxel.

    ``a``, ``b``: non-negative integer arrays of the same shape ``(X, Y, Z)`` on the
    same grid (check with :func:`check_same_grid` first); ``voxel_mm3``: volume of
    one voxel in mm^3; ``table`` names the labels.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise GridError(f"label maps {name_a} and {name_b} differ in shape: {a.shape} vs {b.shape}")
    labels = _label_comparisons(a, b, voxel_mm3, table)
    worst_first = tuple(sorted(labels, key=lambda c: (c.dice, -c.differing, c.label)))
    return CompareResult(tuple(int(s) for s in a.shape), float(voxel_mm3), int(a.size),
                         count_different(a, b), worst_first, name_a, name_b)


def _label_comparisons(a: np.ndarray, b: np.ndarray, voxel_mm3: float,
                       table: ColorTable | None) -> list[LabelComparison]:
    a = np.asarray(a)
    b = np.asarray(b)
    counts_a = label_counts(a)
    counts_b = label_counts(b)
    overlap = label_counts(a[a == b])
    present = sorted(set(counts_a) | set(counts_b))
    if table is None:
        table = fallback_table(present)
    out = []
    for label in present:
        na, nb, both = counts_a.get(label, 0), counts_b.get(label, 0), overlap.get(label, 0)
        out.append(LabelComparison(label, table.name(label), na, nb, na * voxel_mm3,
                                   nb * voxel_mm3, both, 2.0 * both / (na + nb)))
    return out


def check_same_grid(shape_a: Sequence[int], affine_a: np.ndarray, shape_b: Sequence[int],
                    affine_b: np.ndarray, *, name_a: str = "a", name_b: str = "b",
                    atol_mm: float = AFFINE_ATOL_MM) -> None:
    """Raise :class:`~niftyport.errors.GridError` unless both maps share one voxel grid.

    ``affine_*``: float ``(4, 4)`` voxel index -> RAS+ mm. Same grid means equal
    shapes and affines equal within ``atol_mm`` (float32 rounding of headers).
    """
    shape_a, shape_b = tuple(int(s) for s in shape_a), tuple(int(s) for s in shape_b)
    if shape_a != shape_b:
        raise GridError(f"{name_a} and {name_b} are on different grids: shape {shape_a} vs "
                        f"{shape_b}; resample one onto the other's grid first")
    diff = np.abs(np.asarray(affine_a, float) - np.asarray(affine_b, float))
    if diff.max() > atol_mm:
        i, j = np.unravel_index(int(np.argmax(diff)), diff.shape)
        raise GridError(
            f"{name_a} and {name_b} are on different grids: their affines differ by up to "
            f"{diff.max():g} mm (row {i}, column {j}): {_one_line(affine_a)} vs {_one_line(affine_b)}")


def _one_line(affine: np.ndarray) -> str:
    rows = np.asarray(affine, float)[:3]
    return "[" + "; ".join(" ".join(f"{v:g}" for v in row) for row in rows) + "]"


def tolerance_voxels(spec: str | int, n_voxels: int) -> int:
    """Parse a tolerance: a voxel count (``"12"``) or a percentage of all voxels (``"0.5%"``).

    >>> tolerance_voxels("0", 1000), tolerance_voxels("1.5%", 1000), tolerance_voxels(7, 10)
    (0, 15, 7)
    """
    text = str(spec).strip()
    try:
        if text.endswith("%"):
            percent = float(text[:-1])
            if not (math.isfinite(percent) and percent >= 0):
                raise ValueError
            return int(math.floor(percent / 100.0 * n_voxels + 1e-9))
        value = int(text)
        if value < 0:
            raise ValueError
        return value
    except ValueError:
        raise OptionError(f"--tolerance: expected a voxel count >= 0 or a percentage like "
                          f"'0.1%', got {str(spec)!r}") from None
