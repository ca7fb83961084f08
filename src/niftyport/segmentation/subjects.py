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
