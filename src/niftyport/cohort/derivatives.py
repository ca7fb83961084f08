"""The derivatives folder: file names, dataset files, per-scan outputs, which scans are done.

Layout (BIDS 1.10 "Derivatives", "Segmentations")::

    OUTPUT_DIR/
      dataset_description.json   DatasetType derivative, GeneratedBy niftyport (version, weights sha256)
      dseg.tsv                   the label table: index, name, color (applies to every *_dseg.nii.gz)
      .bidsignore                *_volumes.tsv, errors.tsv, group/ (not BIDS file types)
      errors.tsv                 the scans that failed in the last run, with their one-line error
      sub-01/[ses-1/]anat/
        sub-01[_ses-1]_desc-gif_dseg.nii.gz   int32 labels on the T1's grid
        sub-01[_ses-1]_desc-gif_dseg.json     Sources, and what made it (settings, weights, input)
        sub-01[_ses-1]_desc-gif_volumes.tsv   one row per label: voxels, mm^3, the other side

Every file is written through :func:`~niftyport.outputs.atomic_output`; the
sidecar is written last, so a scan is done only when its sidecar is there and
records the run's label settings (:func:`is_done`).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import CohortError
from ..outputs import same_file, stale_temporaries, write_text_atomic
from ..reporting.colortable import ColorTable
from ..reporting.volumes import LabelVolume
from .scans import Scan

#: The BIDS version the layout follows.
BIDS_VERSION = "1.10.0"
#: Files and folders that are not BIDS file types, for ``.bidsignore``.
BIDSIGNORE = ("*_volumes.tsv", "errors.tsv", "group/")
VOLUME_COLUMNS = ("index", "name", "side", "voxels", "volume_mm3", "contralateral_index",
                  "contralateral_mm3", "asymmetry")
ERROR_COLUMNS = ("scan", "participant_id", "session_id", "path", "error")


@dataclass(frozen=True)
class ScanOutputs:
    """The files of one scan: ``labels`` (``_dseg.nii.gz``), ``volumes`` (``_volumes.tsv``), ``sidecar``."""

    labels: Path
    volumes: Path
    sidecar: Path

    @classmethod
    def of(cls, out_dir: str | os.PathLike, scan: Scan) -> "ScanOutputs":
        """The outputs of ``scan`` under ``out_dir``."""
        return cls.from_stem(out_dir, scan.out_stem)

    @classmethod
    def from_stem(cls, out_dir: str | os.PathLike, out_stem: str) -> "ScanOutputs":
        """The outputs named ``out_stem`` + suffix under ``out_dir``."""
        stem = Path(out_dir) / out_stem
        return cls(labels=stem.with_name(stem.name + "_dseg.nii.gz"),
                   volumes=stem.with_name(stem.name + "_volumes.tsv"),
                   sidecar=stem.with_name(stem.name + "_dseg.json"))

    @property
    def all(self) -> tuple[Path, Path, Path]:
        """The three files, the sidecar last (the order they are written in)."""
        return self.labels, self.volumes, self.sidecar


# --------------------------------------------------------------------------- the dataset's files

def _read_json(path: Path) -> dict | None:
    """A JSON object from ``path``; None when it is missing, unreadable or not an object."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def check_output_dir(out_dir: Path, *, inputs: tuple[Path, ...] = (), force: bool = False) -> None:
    """Refuse an output folder that is an input, or a dataset another program made (unless ``force``)."""
    for source in inputs:
        if same_file(out_dir, source):
            raise CohortError(f"output folder {out_dir} is the input {source}; choose another folder")
    description = out_dir / "dataset_description.json"
    if description.exists() and not force:
        found = _read_json(description)
        names = [g.get("Name") for g in (found or {}).get("GeneratedBy", []) if isinstance(g, dict)]
        if "niftyport" not in names:
            raise CohortError(f"{description} exists and was not made by niftyport; "
                              f"use another folder, or --force to write into it")


def dataset_description(generated_by: dict, *, raw: str | None) -> dict:
    """``dataset_description.json`` of the derivatives; ``raw``: the raw dataset's path or URI, if any."""
    description = {"Name": "niftyport HighRes3DNet parcellation", "BIDSVersion": BIDS_VERSION,
                   "DatasetType": "derivative", "GeneratedBy": [generated_by]}
    if raw is not None:
        description["DatasetLinks"] = {"raw": raw}
    return description


def raw_link(out_dir: Path, bids_dir: Path | None) -> str | None:
    """How the derivatives point at the raw dataset: a relative path when there is one, else a file URI."""
    if bids_dir is None:
        return None
    try:
        return Path(os.path.relpath(bids_dir.absolute(), out_dir.absolute())).as_posix()
    except ValueError:  # another drive (Windows)
        return bids_dir.absolute().as_uri()


def format_dseg_tsv(table: ColorTable) -> str:
    """The BIDS label table: ``index``, ``name``, ``color`` (``#rrggbb``), one row per label of ``table``."""
    rows = ["index\tname\tcolor"]
    for label in table.ids:
        r, g, b, _ = table.rgba(label)
        rows.append(f"{label}\t{table.name(label)}\t#{r:02x}{g:02x}{b:02x}")
    return "\n".join(rows) + "\n"


def write_dataset_files(out_dir: Path, *, generated_by: dict, table: ColorTable, raw: str | None) -> None:
    """``dataset_description.json``, ``dseg.tsv`` and ``.bidsignore`` (atomically)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(dataset_description(generated_by, raw=raw), indent=2) + "\n"
    write_text_atomic(out_dir / "dataset_description.json", text)
    write_text_atomic(out_dir / "dseg.tsv", format_dseg_tsv(table))
    write_text_atomic(out_dir / ".bidsignore", "\n".join(BIDSIGNORE) + "\n")


# --------------------------------------------------------------------------- one scan's files

def _cell(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.10g}"
    return str(value)


def format_volumes_tsv(volumes: list[LabelVolume]) -> str:
    """One row per label (columns :data:`VOLUME_COLUMNS`); ``n/a`` where a label has no other side."""
    rows = ["\t".join(VOLUME_COLUMNS)]
    for v in volumes:
        rows.append("\t".join(_cell(x) for x in (v.id, v.name, v.side or "n/a", v.voxels, float(v.mm3),
                                                 v.contralateral, v.contralateral_mm3, v.asymmetry)))
    return "\n".join(rows) + "\n"


def read_volumes_tsv(path: Path) -> dict[int, float]:
    """``{label index: mm^3}`` from a ``_volumes.tsv``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t") if lines else []
    if header[:1] != ["index"] or "volume_mm3" not in header:
        raise CohortError(f"{path}: not a niftyport volumes table (header {header})")
    column = header.index("volume_mm3")
    return {int(cells[0]): float(cells[column]) for cells in (line.split("\t") for line in lines[1:]) if cells[0]}


def input_identity(path: Path, *, sha256: str | None = None) -> dict:
    """What the sidecar records of the input: path, size, modification time, SHA-256."""
    from ..weights import sha256_of

    stat = path.stat()
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "sha256": sha256 or sha256_of(path)}


def same_input(recorded: dict, path: Path) -> bool:
    """Whether ``path`` is the input ``recorded`` (size, then time; the SHA-256 when the time differs)."""
    from ..weights import sha256_of

    try:
        stat = path.stat()
    except OSError:
        return False
    if stat.st_size != recorded.get("size"):
        return False
    return stat.st_mtime_ns == recorded.get("mtime_ns") or sha256_of(path) == recorded.get("sha256")


def sidecar(scan: Scan, *, labels: dict, run: dict, input_record: dict) -> dict:
    """The ``_dseg.json`` of a scan: BIDS fields, then what made it under ``niftyport``."""
    return {"Description": "HighRes3DNet brain parcellation: 160 GIF labels (see dseg.tsv), "
                           "on the grid of the source T1w image",
            "Sources": [scan.source],
            "niftyport": {"settings": labels, "input": input_record, "run": run}}


def read_sidecar(outputs: ScanOutputs) -> tuple[dict, dict] | None:
    """A scan's sidecar and its ``niftyport`` record; None when either is missing or unreadable."""
    found = _read_json(outputs.sidecar)
    record = (found or {}).get("niftyport")
    return (found, record) if isinstance(record, dict) else None


def is_done(outputs: ScanOutputs, scan: Scan, labels: dict) -> bool:
    """Whether a scan's outputs are all there, made with these label settings from this very input."""
    if not all(p.is_file() for p in outputs.all):
        return False
    found = read_sidecar(outputs)
    record = found[1] if found is not None else {}
    return (record.get("settings") == labels and isinstance(record.get("input"), dict)
            and same_input(record["input"], scan.path))


def remove_stale_temporaries(outputs: ScanOutputs) -> list[Path]:
    """Remove what a killed writer left beside a scan's outputs; returns the files removed."""
    removed = [t for p in outputs.all for t in stale_temporaries(p)]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def format_errors_tsv(rows: list[tuple[Scan, str]]) -> str:
    """``errors.tsv``: one line per failed scan (columns :data:`ERROR_COLUMNS`), the error on one line."""
    lines = ["\t".join(ERROR_COLUMNS)]
    for scan, error in rows:
        message = " ".join(error.split())
        lines.append("\t".join((scan.key, f"sub-{scan.subject}" if scan.subject else "n/a",
                                f"ses-{scan.session}" if scan.session else "n/a", str(scan.path), message)))
    return "\n".join(lines) + "\n"
