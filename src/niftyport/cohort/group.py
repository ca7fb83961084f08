"""The group level: one table of label volumes for the cohort and a QC page with one slice per scan.

Reads what the participant level left in the output folder (every scan whose
label map, volumes and sidecar are there) and writes, atomically::

    OUTPUT_DIR/group/
      label_volumes_mm3.csv   one row per scan (participant_id, session_id, scan), one column per label, mm^3
      qc.html                 one axial slice per scan, labels over the T1; the failed scans listed
      qc/<scan>.png           the slices the page shows

Runs on the client, one scan after the other (it reads small tables and
draws one slice per scan); no Dask needed.
"""
from __future__ import annotations

import csv
import html
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CohortError, ImageError
from ..outputs import write_bytes_atomic, write_text_atomic
from ..reporting.colortable import ColorTable
from .bids import strip_prefix
from .derivatives import ScanOutputs, read_sidecar, read_volumes_tsv
from .scans import DESC

GROUP_DIR = "group"
VOLUMES_NAME = "label_volumes_mm3.csv"
PAGE_NAME = "qc.html"
_SIDECAR_SUFFIX = f"_desc-{DESC}_dseg.json"
_ENTITY = re.compile(r"(?:^|_)(sub|ses)-([A-Za-z0-9]+)")


@dataclass(frozen=True)
class DoneScan:
    """One parcellated scan found in the output folder: its key, BIDS labels, outputs and source T1."""

    key: str
    participant: str
    session: str
    outputs: ScanOutputs
    source: Path | None


def _source(record: dict, sidecar: dict, bids_dir: Path | None) -> Path | None:
    """The T1 a scan was made from: the recorded path if it is still there, else its BIDS URI under ``bids_dir``."""
    recorded = Path(str(record.get("input", {}).get("path", "")))
    if recorded.is_file():
        return recorded
    for uri in sidecar.get("Sources", []):
        if bids_dir is not None and str(uri).startswith("bids:raw:") and (bids_dir / uri[9:]).is_file():
            return bids_dir / uri[9:]
    return None


def find_done(out_dir: Path, *, bids_dir: Path | None = None, participant_labels: tuple[str, ...] = (),
              session_labels: tuple[str, ...] = ()) -> list[DoneScan]:
    """The scans with all three outputs in ``out_dir``, sorted by key, optionally only some participants/sessions."""
    subjects = {strip_prefix(s, "sub") for s in participant_labels}
    sessions = {strip_prefix(s, "ses") for s in session_labels}
    found = []
    for path in sorted(out_dir.glob(f"**/*{_SIDECAR_SUFFIX}")):
        if GROUP_DIR in path.relative_to(out_dir).parts[:1]:
            continue
        stem = path.name[: -len(_SIDECAR_SUFFIX)]
        relative = path.relative_to(out_dir).with_name(f"{stem}_desc-{DESC}").as_posix()
        outputs = ScanOutputs.from_stem(out_dir, relative)
        found_sidecar = read_sidecar(outputs)
        if found_sidecar is None or not all(p.is_file() for p in outputs.all):
            continue
        entities = dict(_ENTITY.findall(stem))
        if (subjects and entities.get("sub") not in subjects) or (sessions and entities.get("ses") not in sessions):
            continue
        sidecar, record = found_sidecar
        found.append(DoneScan(stem, entities.get("sub", ""), entities.get("ses", ""), outputs,
                              _source(record, sidecar, bids_dir)))
    if not found:
        raise CohortError(f"{out_dir}: no parcellated scan (*{_SIDECAR_SUFFIX}) to summarise; "
                          f"run the participant level first")
    return sorted(found, key=lambda s: s.key)


def volumes_table(scans: list[DoneScan], table: ColorTable) -> str:
    """CSV: ``participant_id, session_id, scan``, then one column per label found (mm^3; 0 where absent)."""
    volumes = {s.key: read_volumes_tsv(s.outputs.volumes) for s in scans}
    labels = sorted({label for v in volumes.values() for label in v if label != 0})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["participant_id", "session_id", "scan"] + [table.name(label) for label in labels])
    for s in scans:
        row = volumes[s.key]
        writer.writerow([f"sub-{s.participant}" if s.participant else "n/a",
                         f"ses-{s.session}" if s.session else "n/a", s.key]
                        + [f"{row.get(label, 0.0):.10g}" for label in labels])
    return buffer.getvalue()


def qc_png(scan: DoneScan, table: ColorTable) -> bytes:
    """The QC slice of one scan (labels over its T1; over black when the T1 is gone)."""
    import nibabel as nib

    from ..reporting.plots import plot_label_slice, png_bytes

    label_img = nib.load(str(scan.outputs.labels))
    labels = np.asarray(label_img.dataobj).astype(np.int32)
    volume = np.zeros(labels.shape, dtype=np.float32)
    if scan.source is not None:
        t1 = np.asarray(nib.load(str(scan.source)).dataobj, dtype=np.float32)
        if t1.shape[:3] != labels.shape or t1.ndim > 4:
            raise ImageError(f"{scan.source}: shape {t1.shape} is not the label map's {labels.shape}")
        volume = t1.reshape(labels.shape)
    return png_bytes(plot_label_slice(volume, labels, label_img.affine, table=table, title=scan.key))


def qc_page(scans: list[DoneScan], failed: list[tuple[str, str]]) -> str:
    """The QC page: one figure per scan (``qc/<key>.png``), then the failed scans; no script, nothing fetched."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>niftyport cohort QC</title>",
             "<style>body{font-family:sans-serif;margin:1em}figure{display:inline-block;margin:4px;"
             "text-align:center}img{width:200px;background:#000}figcaption{font-size:12px}</style>",
             "</head><body>", f"<h1>niftyport cohort QC: {len(scans)} scans</h1>",
             "<p>One axial slice per scan through the centre of its labels (radiological convention: the "
             "patient's right on the left), GIF labels over the T1.</p>", '<div class="scans">']
    for s in scans:
        key = html.escape(s.key)
        parts.append(f'<figure><img src="qc/{key}.png" alt="{key}"><figcaption>{key}'
                     f'{"" if s.source else " (T1 not found)"}</figcaption></figure>')
    parts.append("</div>")
    if failed:
        parts.append(f"<h2>{len(failed)} failed (errors.tsv)</h2><ul>")
        parts += [f"<li><b>{html.escape(k)}</b>: {html.escape(e)}</li>" for k, e in failed]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def read_errors(out_dir: Path) -> list[tuple[str, str]]:
    """``(scan, error)`` rows of ``errors.tsv`` (none when it is missing)."""
    path = out_dir / "errors.tsv"
    if not path.is_file():
        return []
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()[1:] if line]
    return [(cells[0], cells[-1]) for cells in rows]


@dataclass(frozen=True)
class GroupResult:
    """What the group level wrote: the volumes table, the QC page, how many scans they hold."""

    volumes: Path
    page: Path
    n_scans: int


def run_group(out_dir: str | Path, *, bids_dir: str | Path | None = None, participant_labels: tuple[str, ...] = (),
              session_labels: tuple[str, ...] = ()) -> GroupResult:
    """Write ``group/`` (see the module docstring) from the scans done in ``out_dir``."""
    from ..reporting.labels import network_table
    from .settings import NETWORK

    out_dir = Path(out_dir).absolute()
    scans = find_done(out_dir, bids_dir=Path(bids_dir).absolute() if bids_dir else None,
                      participant_labels=participant_labels, session_labels=session_labels)
    table = network_table(NETWORK)
    group = out_dir / GROUP_DIR
    (group / "qc").mkdir(parents=True, exist_ok=True)
    volumes = write_text_atomic(group / VOLUMES_NAME, volumes_table(scans, table))
    written = {f"{s.key}.png" for s in scans}
    for s in scans:
        write_bytes_atomic(group / "qc" / f"{s.key}.png", qc_png(s, table))
    for old in (group / "qc").glob("*.png"):
        if old.name not in written:
            old.unlink()
    page = write_text_atomic(group / PAGE_NAME, qc_page(scans, read_errors(out_dir)))
    return GroupResult(volumes=volumes, page=page, n_scans=len(scans))
