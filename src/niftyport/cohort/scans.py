"""One scan of a cohort, and the cohorts given without BIDS: a CSV list, a folder, a glob.

A :class:`Scan` says where the T1 is and where its outputs go: every output
of a scan is ``OUTPUT_DIR / (scan.out_stem + suffix)``, e.g.
``sub-01/ses-1/anat/sub-01_ses-1_desc-gif`` + ``_dseg.nii.gz`` for BIDS, or
``t1_a_desc-gif`` + ``_dseg.nii.gz`` for a folder of scans.

Scan ids of non-BIDS inputs are the file names without extension, with
characters other than letters, digits, ``-``, ``_`` and ``.`` replaced by
``_``; a CSV may give its own (column ``id``). Two scans with one id are an
error, never silently merged.
"""
from __future__ import annotations

import csv
import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import CohortError
from ..segmentation.subjects import split_name

#: The ``desc-`` label of niftyport's parcellation outputs.
DESC = "gif"
#: File names that count as images in a folder or a glob.
IMAGE_SUFFIXES = (".nii.gz", ".nii")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Scan:
    """One input scan.

    ``key``: unique within the cohort (``sub-01_ses-1`` ...; names the Dask
    task and the rows of the tables); ``path``: the absolute image path;
    ``out_stem``: the outputs' path relative to the output folder, without
    the suffix (POSIX separators); ``subject``/``session``: BIDS labels
    (without ``sub-``/``ses-``), empty when not BIDS; ``source``: how the
    sidecar names the input (a BIDS URI ``bids:raw:sub-01/anat/...`` or the
    path).
    """

    key: str
    path: Path
    out_stem: str
    subject: str = ""
    session: str = ""
    source: str = ""


def is_image(name: str) -> bool:
    """Whether a file name is a NIfTI image by its extension, and not a label map niftyport wrote.

    >>> is_image("a.nii.gz"), is_image("a.NII"), is_image("a.json"), is_image("a_desc-gif_dseg.nii.gz")
    (True, True, False, False)
    """
    lower = name.lower()
    return lower.endswith(IMAGE_SUFFIXES) and not lower.endswith(tuple(f"_desc-{DESC}_dseg" + s
                                                                        for s in IMAGE_SUFFIXES))


def scan_id(path: str | os.PathLike) -> str:
    """A file-name-safe id from an image path.

    >>> scan_id("/data/t1 (copy).nii.gz")
    't1_copy_'
    """
    return _UNSAFE.sub("_", split_name(str(path))) or "scan"


def plain_scan(key: str, path: Path) -> Scan:
    """A scan outside BIDS: outputs ``<key>_desc-gif_*`` at the top of the output folder."""
    if _UNSAFE.search(key) or key in ("", ".", ".."):
        raise CohortError(f"scan id {key!r}: use letters, digits, '-', '_' and '.' only")
    return Scan(key=key, path=path.absolute(), out_stem=f"{key}_desc-{DESC}", source=str(path.absolute()))


def _unique(scans: list[Scan], where: str) -> list[Scan]:
    seen: dict[str, Path] = {}
    for scan in scans:
        if scan.key in seen:
            raise CohortError(f"{where}: scans {seen[scan.key]} and {scan.path} have the same id {scan.key!r}")
        seen[scan.key] = scan.path
    if not scans:
        raise CohortError(f"{where}: no scan found (NIfTI files: {', '.join(IMAGE_SUFFIXES)})")
    return sorted(scans, key=lambda s: s.key)


def scans_from_csv(path: Path) -> list[Scan]:
    """Scans listed in a CSV file: a ``path`` column (relative to the CSV's folder) and an optional ``id``."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = [name.strip().lower() for name in reader.fieldnames or ()]
        if "path" not in fields:
            raise CohortError(f"{path}: no 'path' column (found: {', '.join(fields) or 'no header'})")
        rows = [{k.strip().lower(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    scans = []
    for line, row in enumerate(rows, start=2):
        if not row.get("path"):
            raise CohortError(f"{path}: line {line}: empty path")
        image = Path(row["path"]).expanduser()
        image = image if image.is_absolute() else path.parent / image
        scans.append(plain_scan(row.get("id") or scan_id(image), image))
    return _unique(scans, str(path))


def scans_from_folder(folder: Path) -> list[Scan]:
    """Every NIfTI file directly in ``folder`` (not in its sub-folders)."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_image(p.name))
    return _unique([plain_scan(scan_id(p), p) for p in files], str(folder))


def scans_from_glob(pattern: str) -> list[Scan]:
    """Every NIfTI file a glob pattern (``**`` included) matches."""
    files = sorted(Path(p) for p in glob.glob(os.path.expanduser(pattern), recursive=True)
                   if is_image(p) and Path(p).is_file())
    return _unique([plain_scan(scan_id(p), p) for p in files], pattern)


def scans_from(source: str) -> list[Scan]:
    """The scans of ``niftyport cohort SOURCE``: a ``.csv`` list, a folder, one image or a glob pattern."""
    path = Path(source).expanduser()
    if path.is_dir():
        return scans_from_folder(path)
    if path.is_file() and path.suffix.lower() == ".csv":
        return scans_from_csv(path)
    if path.is_file() and is_image(path.name):
        return [plain_scan(scan_id(path), path)]
    if glob.has_magic(source):
        return scans_from_glob(source)
    if path.exists():
        raise CohortError(f"{source}: neither a .csv list, a folder, a NIfTI image nor a glob pattern")
    raise CohortError(f"{source}: no such file or folder")
