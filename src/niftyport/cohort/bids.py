"""The T1-weighted scans of a BIDS dataset, without pybids.

Reads what the BIDS specification (1.10, "Magnetic Resonance Imaging /
Anatomy imaging data") puts where: ``sub-<label>/[ses-<label>/]anat/``
holding ``sub-<label>[_ses-<label>][_<key>-<value>...]_T1w.nii[.gz]``.
Only those files are scans; JSON sidecars, other suffixes (``T2w``,
``FLAIR``...), files outside ``anat/`` and the ``derivatives/``,
``sourcedata/`` and ``code/`` folders are not looked at. A file whose
``sub-``/``ses-`` entities disagree with its folders is an error (the BIDS
validator's ``SUBJECT``/``SESSION`` mismatch), not skipped.

Why not pybids: it brings SQLAlchemy, formulaic, num2words and others, and
indexes the whole dataset into a database before answering; finding T1w
files needs two folder levels and one regular expression.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import CohortError
from .scans import DESC, Scan

#: ``sub-01_ses-1_acq-mprage_run-2_T1w.nii.gz`` -> its entities (key-value pairs) and extension.
T1W_NAME = re.compile(r"^(?P<entities>sub-[A-Za-z0-9]+(?:_[a-z]+-[A-Za-z0-9]+)*)_T1w(?P<ext>\.nii(?:\.gz)?)$")
_LABEL = re.compile(r"^[A-Za-z0-9]+$")


def entities(name: str) -> dict[str, str] | None:
    """The entities of a T1w file name, in file order; ``None`` when it is not a T1w image.

    >>> entities("sub-01_ses-pre_run-2_T1w.nii.gz")
    {'sub': '01', 'ses': 'pre', 'run': '2'}
    >>> entities("sub-01_T2w.nii.gz") is None, entities("sub-01_T1w.json") is None
    (True, True)
    """
    match = T1W_NAME.match(name)
    if match is None:
        return None
    pairs = [part.split("-", 1) for part in match.group("entities").split("_")]
    found = dict(pairs)
    return found if len(found) == len(pairs) else None  # an entity given twice is not BIDS


def strip_prefix(label: str, prefix: str) -> str:
    """``'sub-01'`` or ``'01'`` -> ``'01'`` (for ``prefix='sub'``), checked.

    >>> strip_prefix("sub-01", "sub"), strip_prefix("01", "sub")
    ('01', '01')
    """
    text = label[len(prefix) + 1:] if label.startswith(prefix + "-") else label
    if not _LABEL.match(text):
        raise CohortError(f"{prefix} label {label!r}: BIDS labels are letters and digits only")
    return text


def check_dataset(bids_dir: Path) -> None:
    """Refuse a folder that is not a BIDS dataset (no readable ``dataset_description.json``)."""
    if not bids_dir.is_dir():
        raise CohortError(f"{bids_dir}: no such folder")
    description = bids_dir / "dataset_description.json"
    if not description.is_file():
        raise CohortError(f"{bids_dir}: no dataset_description.json; not a BIDS dataset")
    try:
        json.loads(description.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CohortError(f"{description}: not valid JSON ({exc})") from None


def _anat_folders(bids_dir: Path, subject: str) -> list[tuple[str, Path]]:
    """``(session, anat folder)`` of one subject; session ``''`` when the dataset has none."""
    root = bids_dir / f"sub-{subject}"
    folders = [("", root / "anat")] + [(p.name[4:], p / "anat") for p in sorted(root.glob("ses-*"))]
    return [(session, folder) for session, folder in folders if folder.is_dir()]


def _scan(bids_dir: Path, path: Path, found: dict[str, str], subject: str, session: str) -> Scan:
    """The :class:`Scan` of one T1w file with entities ``found``, checked against its folders."""
    if found["sub"] != subject or found.get("ses", "") != session:
        raise CohortError(f"{path}: its name says sub-{found['sub']}"
                          f"{'_ses-' + found['ses'] if 'ses' in found else ''} but it lies in "
                          f"{path.parent.relative_to(bids_dir)}")
    relative = path.relative_to(bids_dir).as_posix()
    stem = "_".join(f"{k}-{v}" for k, v in found.items())
    folder = Path(relative).parent.as_posix()
    return Scan(key=stem, path=path.absolute(), out_stem=f"{folder}/{stem}_desc-{DESC}",
                subject=subject, session=session, source=f"bids:raw:{relative}")


def subjects_of(bids_dir: Path) -> list[str]:
    """The subject labels of a dataset (``sub-*`` folders), sorted."""
    return sorted(p.name[4:] for p in bids_dir.glob("sub-*") if p.is_dir() and _LABEL.match(p.name[4:]))


def _chosen(wanted: list[str], available: list[str], what: str, where: Path) -> list[str]:
    missing = [w for w in wanted if w not in available]
    if missing:
        shown = ", ".join(available[:10]) + (" ..." if len(available) > 10 else "")
        raise CohortError(f"{where}: no {what} {', '.join(missing)} (found: {shown or 'none'})")
    return [a for a in available if a in wanted] if wanted else available


def find_t1w(bids_dir: str | Path, *, participant_labels: tuple[str, ...] = (),
             session_labels: tuple[str, ...] = ()) -> list[Scan]:
    """The T1w scans of a BIDS dataset, sorted by subject, session and name.

    ``participant_labels``/``session_labels``: keep these only (with or
    without the ``sub-``/``ses-`` prefix); a label that is not in the dataset
    is an error. Raises :class:`CohortError` when nothing is left.
    """
    bids_dir = Path(bids_dir).expanduser().absolute()
    check_dataset(bids_dir)
    subjects = _chosen([strip_prefix(s, "sub") for s in participant_labels], subjects_of(bids_dir),
                       "participant", bids_dir)
    sessions = [strip_prefix(s, "ses") for s in session_labels]
    scans, seen_sessions = [], set()
    for subject in subjects:
        for session, folder in _anat_folders(bids_dir, subject):
            seen_sessions.add(session)
            if sessions and session not in sessions:
                continue
            named = [(p, entities(p.name)) for p in sorted(folder.iterdir()) if p.is_file()]
            scans += [_scan(bids_dir, p, found, subject, session) for p, found in named if found is not None]
    _chosen(sessions, sorted(seen_sessions - {""}), "session", bids_dir)
    if not scans:
        raise CohortError(f"{bids_dir}: no T1w image (sub-*/[ses-*/]anat/*_T1w.nii[.gz]) for the "
                          f"participants and sessions asked for")
    return scans
