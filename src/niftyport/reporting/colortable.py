"""Label names and colours: 3D Slicer colour tables (``.ctbl``) and a fallback palette.

A Slicer colour table is a text file with one label per line, ``id name R G B A``
(integers, colours 0-255); ``#`` starts a comment line, and ids may be missing.
The model zoo's ``GIFNiftyNet.ctbl`` names HighRes3DNet's outputs.

How HighRes3DNet's output indices relate to the GIF colour table
----------------------------------------------------------------
The network's 160 output channels are the label values NiftyNet writes
(``label_normalisation = False``: the argmax index is the label), and the ids in
``GIFNiftyNet.ctbl`` *are* those indices: the table runs from 0 to 159. It names
155 of them; 1, 2, 3, 20 and 21 have no entry. Evidence for what they are, from
NiftyNet's own output on the shared MNI152 reference run: 1, 2 and 3 lie outside
the brain on dark, middle and bright tissue (GIF's non-brain low/mid/high
classes); 20 and 21 are the right/left places of GIF's whole-hemisphere cerebral
white matter, which GIF splits into lobes (ids 47-59), so they are almost never
predicted. :func:`read_ctbl` leaves them unnamed (``"label 1"`` ...).

A parcellation written by GIF itself uses GIF's raw numbers (0-208, mostly
Neuromorphometrics number + 1), not these indices. The network's index ``k`` is
the ``k``-th smallest raw GIF number in :data:`GIF_RAW_LABELS`;
:func:`gif_raw_to_niftynet` converts a raw GIF map. That list was inferred, not
published: it is the set of values found in a real GIF parcellation plus raw 44,
and with it every ``Right-``/``Left-`` name of the table falls on the right/left
hemisphere of that parcellation (checked in the tests).
"""
from __future__ import annotations

import colorsys
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from ..outputs import write_text_atomic
from ..errors import ColorTableError

#: Raw GIF label numbers in the order of HighRes3DNet's output indices 0..159
#: (index ``k`` <-> ``GIF_RAW_LABELS[k]``). Inferred; see the module docstring.
GIF_RAW_LABELS: tuple[int, ...] = (
    0, 1, 2, 3, 4, 5, 12, 16, 24, 31, 32, 33, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
    47, 48, 49, 50, 51, 52, 53, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 70, 72,
    73, 74, 76, 77, 81, 82, 83, 84, 85, 86, 87, 89, 90, 91, 92, 93, 94, 96, 97,
    *range(101, 111), *range(113, 127), 129, 130, *range(133, 159),
    *range(161, 189), *range(191, 209),
)

_SIDE_PATTERNS = (
    # (regex, side): prefixes "Right-", "Left_", "Right " and suffixes "_R", "-Left" ...
    (re.compile(r"^(right)[-_ ](?P<base>.+)$", re.I), "right"),
    (re.compile(r"^(left)[-_ ](?P<base>.+)$", re.I), "left"),
    (re.compile(r"^(?P<base>.+)[-_ ](r|right|rh)$", re.I), "right"),
    (re.compile(r"^(?P<base>.+)[-_ ](l|left|lh)$", re.I), "left"),
)


@dataclass(frozen=True)
class Label:
    """One colour-table entry: integer id, name, colour as 0-255 ``(R, G, B, A)``."""

    id: int
    name: str
    rgba: tuple[int, int, int, int]


@dataclass(frozen=True)
class Pair:
    """Two labels of one structure on both sides, matched by name (``Right-X``/``Left-X``)."""

    structure: str
    right: int
    left: int


@dataclass(frozen=True)
class ColorTable:
    """Label ids mapped to names and colours.

    ``labels`` is keyed by id; ids absent from the table get the name
    ``"label <id>"`` and a colour from :func:`palette_rgba`.

    >>> t = ColorTable({0: Label(0, "Background", (0, 0, 0, 0)), 8: Label(8, "Right-X", (1, 2, 3, 255))})
    >>> t.name(8), t.name(5), t.rgba(8)
    ('Right-X', 'label 5', (1, 2, 3, 255))
    """

    labels: Mapping[int, Label] = field(default_factory=dict)
    source: str = "built-in palette"

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(sorted(self.labels))

    def name(self, label: int) -> str:
        entry = self.labels.get(int(label))
        return entry.name if entry is not None else f"label {int(label)}"

    def rgba(self, label: int) -> tuple[int, int, int, int]:
        entry = self.labels.get(int(label))
        return entry.rgba if entry is not None else palette_rgba(int(label))

    def side(self, label: int) -> str:
        """``"right"``, ``"left"`` or ``""`` from the label's name (see :func:`side_of`)."""
        return side_of(self.name(label))[0] if int(label) in self.labels else ""

    def lut(self, max_label: int) -> np.ndarray:
        """Colour lookup for ``label_map`` values ``0..max_label``.

        Returns float32 ``(max_label + 1, 4)`` RGBA in 0..1; ``lut[labels]`` colours a
        label map. Label 0 (background) is fully transparent whatever the table says.
        """
        out = np.empty((int(max_label) + 1, 4), dtype=np.float32)
        for i in range(out.shape[0]):
            out[i] = np.asarray(self.rgba(i), dtype=np.float32) / 255.0
        out[0] = 0.0
        return out

    def pairs(self) -> tuple[Pair, ...]:
        """Right/left pairs matched by name, sorted by the right label's id."""
        sides: dict[str, dict[str, int]] = {}
        for label in self.labels.values():
            side, base = side_of(label.name)
            if side:
                sides.setdefault(base.lower(), {}).setdefault(side, label.id)
        found = [Pair(_display_base(self, d["right"]), d["right"], d["left"])
                 for d in sides.values() if "right" in d and "left" in d]
        return tuple(sorted(found, key=lambda p: p.right))

    def contralateral(self, label: int) -> int | None:
        """The id of the same structure on the other side, or None."""
        for pair in self.pairs():
            if pair.right == label:
                return pair.left
            if pair.left == label:
                return pair.right
        return None


def _display_base(table: ColorTable, label: int) -> str:
    return side_of(table.name(label))[1]


def side_of(name: str) -> tuple[str, str]:
    """Split a label name into ``(side, structure)``.

    >>> side_of("Right-Hippocampus"), side_of("Precentral_L"), side_of("Pons")
    (('right', 'Hippocampus'), ('left', 'Precentral'), ('', 'Pons'))
    """
    for pattern, side in _SIDE_PATTERNS:
        m = pattern.match(name.strip())
        if m:
            return side, m.group("base")
    return "", name


def read_ctbl(path: str | os.PathLike) -> ColorTable:
    """Read a 3D Slicer colour table: lines ``id name R G B A``.

    Blank lines and lines starting with ``#`` are skipped; Windows line ends are
    accepted; a name may contain spaces (everything between the id and the four
    colour numbers). Raises :class:`~niftyport.errors.ColorTableError` naming the
    file and line for anything else.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ColorTableError(f"colour table {path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise ColorTableError(f"colour table {path}: not a text file ({exc.reason})") from None
    labels: dict[int, Label] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        where = f"colour table {path}, line {number}"
        if len(fields) < 6:
            raise ColorTableError(f"{where}: expected 'id name R G B A', got {line!r}")
        try:
            values = [int(v) for v in (fields[0], *fields[-4:])]
        except ValueError:
            raise ColorTableError(f"{where}: id and R G B A must be integers, got {line!r}") from None
        label, rgba = values[0], tuple(values[1:])
        if label < 0:
            raise ColorTableError(f"{where}: negative label id {label}")
        if not all(0 <= c <= 255 for c in rgba):
            raise ColorTableError(f"{where}: colour {rgba} outside 0..255")
        if label in labels:
            raise ColorTableError(f"{where}: label id {label} defined twice")
        labels[label] = Label(label, " ".join(fields[1:-4]), rgba)  # type: ignore[arg-type]
    if not labels:
        raise ColorTableError(f"colour table {path}: no labels found")
    return ColorTable(labels, source=str(path))


def format_ctbl(table: ColorTable) -> str:
    """The table as Slicer ``.ctbl`` text (``\\n`` line ends, sorted by id).

    Spaces in names become ``_`` so that every line has exactly six fields.
    """
    lines = []
    for label in table.ids:
        entry = table.labels[label]
        name = "_".join(entry.name.split()) or f"label_{label}"
        lines.append(f"{label} {name} {' '.join(str(c) for c in entry.rgba)}")
    return "\n".join(lines) + "\n"


def write_ctbl(table: ColorTable, path: str | os.PathLike) -> Path:
    """Write ``table`` to ``path`` atomically (temporary file, then rename)."""
    return write_text_atomic(path, format_ctbl(table))


def palette_rgba(label: int) -> tuple[int, int, int, int]:
    """A built-in colour for ``label``: 0 is transparent black, others opaque.

    Ids 1-60 take matplotlib's qualitative ``tab20``, ``tab20b`` and ``tab20c``
    colours in turn; higher ids step the hue by the golden ratio with alternating
    saturation and value, so that neighbouring ids stay distinguishable.

    >>> palette_rgba(0), palette_rgba(1)
    ((0, 0, 0, 0), (31, 119, 180, 255))
    """
    label = int(label)
    if label == 0:
        return (0, 0, 0, 0)
    qualitative = _qualitative()
    if label <= len(qualitative):
        r, g, b = qualitative[label - 1]
    else:
        k = label - len(qualitative)
        hue = (k * 0.6180339887498949) % 1.0
        sat = (0.9, 0.6, 0.75)[k % 3]
        val = (0.95, 0.75, 0.6)[(k // 3) % 3]
        r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
    return (round(r * 255), round(g * 255), round(b * 255), 255)


_QUALITATIVE: list[tuple[float, float, float]] = []


def _qualitative() -> list[tuple[float, float, float]]:
    if not _QUALITATIVE:
        from matplotlib import colormaps

        for name in ("tab20", "tab20b", "tab20c"):
            _QUALITATIVE.extend(tuple(c[:3]) for c in colormaps[name].colors)
    return _QUALITATIVE


def fallback_table(labels: Iterable[int]) -> ColorTable:
    """A table for the given label ids from the built-in palette; 0 is ``Background``."""
    entries = {}
    for label in sorted({int(v) for v in labels}):
        name = "Background" if label == 0 else f"label {label}"
        entries[label] = Label(label, name, palette_rgba(label))
    return ColorTable(entries, source="built-in palette")


def gif_raw_to_niftynet(raw: np.ndarray) -> np.ndarray:
    """Map a parcellation in raw GIF numbers to HighRes3DNet indices 0..159.

    ``raw``: integer array of any shape holding values of :data:`GIF_RAW_LABELS`.
    Returns int32 of the same shape. Raises :class:`~niftyport.errors.ColorTableError`
    for values that are not GIF labels.
    """
    raw = np.asarray(raw)
    lut = np.full(max(GIF_RAW_LABELS) + 1, -1, dtype=np.int32)
    lut[list(GIF_RAW_LABELS)] = np.arange(len(GIF_RAW_LABELS), dtype=np.int32)
    values = np.unique(raw)
    bad = [int(v) for v in values if v < 0 or v >= lut.size or lut[int(v)] < 0]
    if bad:
        raise ColorTableError(f"raw GIF parcellation: values {bad[:10]} are not GIF label numbers")
    return lut[raw.astype(np.int64)]
