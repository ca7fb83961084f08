from pathlib import Path

import pytest

from niftyport.errors import ConfigError
from niftyport.segmentation.subjects import candidate_ids, find_subjects, split_name


def touch(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).write_bytes(b"")


def test_split_name_treats_nii_gz_as_one_extension():
    assert split_name("x/OAS1_0001.nii.gz") == "OAS1_0001"
    assert split_name("scan.NII.GZ") == "scan"
    assert split_name("scan.nii") == "scan"
    assert split_name("archive.tar.gz") == "archive"


def test_candidate_ids_split_at_keywords_and_drop_non_word_characters():
    assert candidate_ids("sub-01_T1w.nii.gz", ("T1w",)) == ["sub01_"]
    assert candidate_ids("a-b.c.nii", ()) == ["abc"]
    assert candidate_ids("T1w.nii.gz", ("T1w",)) == []


def test_shared_candidate_names_are_dropped_and_subjects_sorted(tmp_path):
    touch(tmp_path, "sub-02_T1w_brain.nii.gz", "sub-01_T1w_brain.nii.gz", "notes.txt")
    subjects = find_subjects((str(tmp_path),), filename_contains=("T1w",))
    # '_brain' is a candidate of both files, so each keeps its own first name
    assert [s.subject_id for s in subjects] == ["sub01_", "sub02_"]
    assert subjects[0].path == tmp_path / "sub-01_T1w_brain.nii.gz"


def test_not_contains_and_removefromid(tmp_path):
    touch(tmp_path, "p1_t1.nii.gz", "p1_t2.nii.gz", "p2_t1.nii.gz")
    subjects = find_subjects((str(tmp_path),), filename_contains=("nii",),
                             filename_not_contains=("t2",), filename_removefromid=("_t1",))
    assert [(s.subject_id, s.path.name) for s in subjects] == [("p1", "p1_t1.nii.gz"),
                                                              ("p2", "p2_t1.nii.gz")]


def test_missing_folder_and_no_match_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        find_subjects((str(tmp_path / "nope"),))
    touch(tmp_path, "a.txt")
    with pytest.raises(ConfigError, match=r"containing \['nii'\]"):
        find_subjects((str(tmp_path),), filename_contains=("nii",))
