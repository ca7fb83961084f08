"""Finding a config's input scans and naming their subjects, as NiftyNet does.

Follows ``niftynet/utilities/filename_matching.py`` (``KeywordsMatching``)
and ``niftynet/utilities/util_csv.py`` for one input modality: files in the
``path_to_search`` folders whose names contain every ``filename_contains``
string and none of ``filename_not_contains``; the subject id is the file
name without its extension, split at the ``filename_contains`` strings (or
``filename_removefromid`` when given), with non-word characters removed.
Candidate names shared by several files are dropped; subjects are sorted by
id, as NiftyNet's partitioner sorts them.

Worked example: ``filename_contains = T1`` and the files ``sub-01_T1.nii.gz``,
``sub-02_T1.nii.gz`` give the candidate names ``['sub01_']`` and
``['sub02_']``, so the subjects are ``sub01_`` and ``sub02_``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

#: NiftyNet's double extensions, tried before ``os.path.splitext``.
DOUBLE_EXTENSIONS = (".nii.gz", ".tar.gz")


@dataclass(frozen=True)
class Subject:
    """One input scan: NiftyNet's subject id and the file."""

    subject_id: str
    path: Path


def split_name(filename: str) -> str:
    """The file name without folder and extension (``.nii.gz`` counts as one).

    >>> split_name("data/OASIS/sub_01.nii.gz"), split_name("a.b.nii")
    ('sub_01', 'a.b')
    """
    name = os.path.basename(filename)
    for ext in DOUBLE_EXTENSIONS:
        if name.lower().endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return os.path.splitext(name)[0]


def candidate_ids(filename: str, delimiters: tuple[str, ...]) -> list[str]:
    """NiftyNet's possible subject ids of one file.

    >>> candidate_ids("OAS1_0001_MR1_mpr_n4_anon_111_t88_masked_gfc.nii.gz", ("nii",))
    ['OAS1_0001_MR1_mpr_n4_anon_111_t88_masked_gfc']
    >>> candidate_ids("sub-01_T1w_brain.nii.gz", ("T1w",))
    ['sub01_', '_brain', 'sub01__brain']
    """
    name = split_name(filename)
    parts = re.split("|".join(f"(?:{re.escape(d)})" for d in delimiters), name) if delimiters else [name]
    parts = [p for p in (re.sub(r"\W+", "", p) for p in parts) if p]
    if len(parts) > 1:
        parts.append("".join(parts))
    return parts


def find_subjects(path_to_search: tuple[str, ...], *, filename_contains: tuple[str, ...] = (),
                  filename_not_contains: tuple[str, ...] = (),
                  filename_removefromid: tuple[str, ...] = ()) -> list[Subject]:
    """The input scans of one modality, sorted by subject id.

    ``path_to_search`` folders must already be resolved (see
    :mod:`niftyport.config`). Raises :class:`ConfigError` when a folder is
    missing or nothing matches.
    """
    files: list[Path] = []
    for folder in path_to_search:
        folder_path = Path(folder)
        if not folder_path.is_dir():
            raise ConfigError(f"path_to_search: folder {folder} not found")
        files += [folder_path / f for f in sorted(os.listdir(folder_path))
                  if all(c in f for c in filename_contains)
                  and not any(c in f for c in filename_not_contains)
                  and (folder_path / f).is_file()]
    if not files:
        raise ConfigError(f"no file in {', '.join(map(str, path_to_search)) or '(no folder)'} has a name "
                          f"containing {list(filename_contains)}")
    delimiters = tuple(filename_removefromid) or tuple(filename_contains)
    names = [candidate_ids(f.name, delimiters) for f in files]
    flat = [n for ns in names for n in ns]
    shared = {n for n in flat if flat.count(n) > 1}
    subjects = []
    for f, ns in zip(files, names):
        unique = [n for n in ns if n not in shared]
        if unique:  # NiftyNet drops files left without a name
            subjects.append(Subject(unique[0], f))
    return sorted(subjects, key=lambda s: s.subject_id)


def read_file_list(csv_file: str | os.PathLike) -> list[Subject]:
    """A section's ``csv_file``: lines ``subject_id,path`` (no header), as NiftyNet reads them.

    Leading spaces of each field are dropped (pandas ``skipinitialspace``);
    blank lines are skipped. Raises :class:`ConfigError` for a missing file
    or a line without two fields.
    """
    import csv

    path = Path(csv_file)
    if not path.is_file():
        raise ConfigError(f"csv_file {path}: no such file")
    subjects = []
    with open(path, newline="", encoding="utf-8") as f:
        for lineno, row in enumerate(csv.reader(f, skipinitialspace=True), start=1):
            if not row or not any(cell.strip() for cell in row):
                continue
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                raise ConfigError(f"csv_file {path} line {lineno}: expected 'subject_id,path', got {row!r}")
            subjects.append(Subject(row[0].strip(), Path(os.path.expanduser(row[1].strip()))))
    return subjects


def section_subjects(section) -> list[Subject]:
    """The scans of one input section (:class:`~niftyport.config.InputSection`).

    With ``path_to_search``: the folders searched as :func:`find_subjects`
    does (NiftyNet then also rewrites ``csv_file``; niftyport writes
    nothing). Without: the section's ``csv_file``.
    """
    if section.path_to_search:
        return find_subjects(section.path_to_search, filename_contains=section.filename_contains,
                             filename_not_contains=section.filename_not_contains,
                             filename_removefromid=tuple(filter(None, [section.filename_removefromid])))
    if section.csv_file:
        return read_file_list(section.csv_file)
    raise ConfigError(f"[{section.name}]: neither path_to_search nor an existing csv_file says where the scans are")


def read_split(path: str | os.PathLike) -> dict[str, str]:
    """NiftyNet's ``dataset_split_file``: ``{subject_id: phase}`` (phases lower-cased), ``{}`` if absent.

    Lines ``subject_id,phase`` with phase ``training``, ``validation`` or ``inference``.
    """
    import csv

    path = Path(path)
    if not path.is_file():
        return {}
    split: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for lineno, row in enumerate(csv.reader(f, skipinitialspace=True), start=1):
            if not row:
                continue
            if len(row) < 2 or row[1].strip().lower() not in ("training", "validation", "inference"):
                raise ConfigError(f"dataset_split_file {path} line {lineno}: expected 'subject_id,phase' with "
                                  f"phase training, validation or inference, got {row!r}")
            split[row[0].strip()] = row[1].strip().lower()
    return split


def select_phase(subject_ids: list[str], split: dict[str, str], phase: str = "") -> list[str]:
    """The subjects an inference run takes (``niftynet/io/image_sets_partitioner.py``).

    ``phase`` (``[INFERENCE] dataset_to_infer``) set and a split file: that
    phase's subjects. Otherwise the ``inference`` subjects of the split file
    if it names any, else every subject.

    >>> select_phase(["a", "b", "c"], {"a": "training", "b": "inference"})
    ['b']
    >>> select_phase(["a", "b"], {}), select_phase(["a", "b"], {"a": "training"}, "training")
    (['a', 'b'], ['a'])
    """
    if split and phase:
        chosen = [s for s in subject_ids if split.get(s) == phase]
        if not chosen:
            raise ConfigError(f"dataset_to_infer = {phase!r}: no subject of that phase in the dataset split file")
        return chosen
    inference = [s for s in subject_ids if split.get(s) == "inference"]
    return inference or list(subject_ids)


def config_subjects(config) -> list[tuple[str, tuple[Path, ...]]]:
    """``(subject_id, (scan per image modality, ...))`` of an inference run, sorted by subject id.

    Each image section lists its scans (:func:`section_subjects`); subjects
    are joined on their ids, and a subject without a scan of every
    modality is left out, as NiftyNet's reader leaves it out (with a
    warning here). Then the ``dataset_split_file`` selects the phase
    (:func:`select_phase`).
    """
    import logging

    per_modality = [{s.subject_id: s.path for s in section_subjects(section)} for section in config.images]
    every = sorted(set().union(*per_modality))
    complete = [s for s in every if all(s in scans for scans in per_modality)]
    for subject in every:
        if subject not in complete:
            missing = [name for name, scans in zip(config.modalities, per_modality) if subject not in scans]
            logging.getLogger(__name__).warning("subject %s has no %s scan: left out, as NiftyNet does",
                                                subject, ", ".join(missing))
    if not complete:
        raise ConfigError("no subject has a scan of every image modality "
                          f"({', '.join(config.modalities)})")
    chosen = select_phase(complete, read_split(config.system.dataset_split_file),
                          config.inference.dataset_to_infer)
    return [(s, tuple(scans[s] for scans in per_modality)) for s in chosen]
