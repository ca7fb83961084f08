import json

import nibabel as nib
import numpy as np
import pytest
from conftest import CTBL, DATA, REFERENCE, need

from niftyport.cli import main
from niftyport.reporting.colortable import ColorTable, Label, read_ctbl
from niftyport.reporting.compare import check_same_grid, compare_labels, count_different, dice_per_label, tolerance_voxels
from niftyport.errors import GridError, OptionError

NIFTYNET_OUT = "window_seg_mni152_t1_2mm_LPS_bbox__niftynet_out.nii.gz"

# Hand-made case: 8 voxels, two of them differ (voxel 3: 1 -> 2, voxel 6: 0 -> 3).
A = np.array([0, 1, 1, 1, 2, 2, 0, 0]).reshape(2, 2, 2)
B = np.array([0, 1, 1, 2, 2, 2, 3, 0]).reshape(2, 2, 2)


def test_identical_maps_have_no_difference_and_dice_one():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 7, size=(5, 6, 7))
    result = compare_labels(a, a.copy(), voxel_mm3=2.0)
    assert result.n_different == 0 and result.identical and result.percent_different == 0.0
    assert [c.dice for c in result.labels] == [1.0] * 7
    assert result.mean_dice == 1.0
    assert all(c.voxels_a == c.voxels_b == c.overlap and c.mm3_a == 2.0 * c.voxels_a for c in result.labels)
    assert result.within(0)


def test_hand_made_case():
    # |A|, |B|, overlap per label: 0: 3, 2, 2 -> Dice 0.8; 1: 3, 2, 2 -> 0.8; 2: 2, 3, 2 -> 0.8; 3: 0, 1, 0 -> 0
    result = compare_labels(A, B, voxel_mm3=3.0)
    assert result.n_voxels == 8 and result.n_different == 2
    assert result.percent_different == 25.0
    assert [c.label for c in result.labels] == [3, 0, 1, 2]  # worst first; ties: more differing voxels, then id
    by_label = {c.label: c for c in result.labels}
    assert (by_label[1].voxels_a, by_label[1].voxels_b, by_label[1].overlap) == (3, 2, 2)
    assert by_label[1].dice == pytest.approx(0.8) and by_label[2].dice == pytest.approx(0.8)
    assert by_label[3].dice == 0.0 and by_label[3].voxels_a == 0 and by_label[3].mm3_b == 3.0
    assert by_label[2].mm3_a == 6.0 and by_label[2].mm3_b == 9.0
    assert [by_label[k].differing for k in (0, 1, 2, 3)] == [1, 1, 1, 1]
    assert result.mean_dice == pytest.approx((0.8 + 0.8 + 0.0) / 3)
    assert not result.within(1) and result.within(2)
    assert count_different(A, B) == 2


def test_dice_matches_a_direct_per_label_computation():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 5, size=(9, 8, 7))
    b = np.where(rng.random(a.shape) < 0.3, rng.integers(0, 6, size=a.shape), a)
    dice = dice_per_label(a, b)
    for label in range(6):
        in_a, in_b = a == label, b == label
        if in_a.any() or in_b.any():
            expected = 2 * np.logical_and(in_a, in_b).sum() / (in_a.sum() + in_b.sum())
            assert dice[label] == pytest.approx(expected, abs=1e-12)
    assert count_different(a, b) == int((a != b).sum())


def test_names_from_table_and_summary():
    table = ColorTable({1: Label(1, "Right-X", (1, 1, 1, 255)), 2: Label(2, "Left-X", (2, 2, 2, 255))})
    result = compare_labels(A, B, table=table, name_a="mine", name_b="theirs")
    assert {c.label: c.name for c in result.labels} == {0: "label 0", 1: "Right-X", 2: "Left-X", 3: "label 3"}
    text = result.summary()
    assert "number of different voxels: 2 of 8 (25.0000 %)" in text
    assert "a: mine" in text and "b: theirs" in text
    assert text.index("label 3") < text.index("Right-X")


def test_json_round_trip():
    result = compare_labels(A, B, voxel_mm3=0.5)
    data = json.loads(result.to_json(tolerance_voxels=1))
    assert data["n_different"] == 2 and data["n_voxels"] == 8 and data["percent_different"] == 25.0
    assert data["tolerance_voxels"] == 1 and data["within_tolerance"] is False
    assert data["shape"] == [2, 2, 2] and data["voxel_mm3"] == 0.5
    assert [row["label"] for row in data["labels"]] == [3, 0, 1, 2]
    assert data["labels"][0] == {"label": 3, "name": "label 3", "voxels_a": 0, "voxels_b": 1, "mm3_a": 0.0,
                                 "mm3_b": 0.5, "overlap": 0, "dice": 0.0, "differing": 1}


def test_grid_checks():
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    check_same_grid((4, 5, 6), affine, (4, 5, 6), affine + 1e-6)  # float32 rounding is the same grid
    with pytest.raises(GridError, match=r"shape \(4, 5, 6\) vs \(4, 5, 7\)"):
        check_same_grid((4, 5, 6), affine, (4, 5, 7), affine, name_a="x.nii", name_b="y.nii")
    shifted = affine.copy()
    shifted[0, 3] = 1.0
    with pytest.raises(GridError, match=r"affines differ by up to 1 mm \(row 0, column 3\)"):
        check_same_grid((4, 5, 6), affine, (4, 5, 6), shifted)
    flipped = affine.copy()
    flipped[0, 0] = -2.0  # same shape, mirrored storage (LAS vs RAS): not the same grid
    with pytest.raises(GridError, match="x.nii and y.nii are on different grids"):
        check_same_grid((4, 5, 6), affine, (4, 5, 6), flipped, name_a="x.nii", name_b="y.nii")
    with pytest.raises(GridError, match="differ in shape"):
        compare_labels(np.zeros((2, 2, 2), int), np.zeros((2, 2, 3), int))


@pytest.mark.parametrize("spec, n, expected", [("0", 100, 0), ("12", 100, 12), (" 3 ", 5, 3), ("1%", 250, 2),
                                               ("0.5%", 1000, 5), ("100%", 7, 7), (4, 9, 4)])
def test_tolerance(spec, n, expected):
    assert tolerance_voxels(spec, n) == expected


@pytest.mark.parametrize("spec", ["-1", "x", "1.5", "-2%", "nan%", ""])
def test_bad_tolerance(spec):
    with pytest.raises(OptionError, match="--tolerance"):
        tolerance_voxels(spec, 10)


# --- command line ------------------------------------------------------------------------------

def _save(path, data, zooms=(1.0, 1.0, 1.0), affine=None):
    if affine is None:
        affine = np.diag([*zooms, 1.0])
    img = nib.Nifti1Image(np.asarray(data), affine)
    img.header.set_zooms(zooms)
    img.header.set_xyzt_units("mm")
    nib.save(img, path)
    return str(path)


def test_cli_exit_codes(tmp_path, capsys):
    a = _save(tmp_path / "a.nii.gz", A.astype(np.int16), zooms=(1.0, 1.0, 3.0))
    b = _save(tmp_path / "b.nii.gz", B.astype(np.int16), zooms=(1.0, 1.0, 3.0))
    assert main(["compare", a, a]) == 0
    assert "number of different voxels: 0 of 8" in capsys.readouterr().out
    assert main(["compare", a, b]) == 1
    out = capsys.readouterr().out
    assert "number of different voxels: 2 of 8 (25.0000 %)" in out and "NOT within tolerance of 0" in out
    assert main(["compare", a, b, "--tolerance", "2"]) == 0
    assert main(["compare", a, b, "--tolerance", "20%"]) == 1   # 20 % of 8 voxels = 1 voxel
    assert main(["compare", a, b, "--tolerance", "25%"]) == 0
    capsys.readouterr()
    json_path = tmp_path / "out.json"
    assert main(["compare", a, b, "--json", str(json_path)]) == 1
    data = json.loads(json_path.read_text())
    assert data["voxel_mm3"] == 3.0 and data["n_different"] == 2
    assert {row["label"]: row["mm3_b"] for row in data["labels"]} == {0: 6.0, 1: 6.0, 2: 9.0, 3: 3.0}


def test_cli_bad_input_exits_2(tmp_path, capsys):
    a = _save(tmp_path / "a.nii.gz", A.astype(np.int16))
    bigger = _save(tmp_path / "big.nii.gz", np.zeros((2, 2, 3), np.int16))
    moved = _save(tmp_path / "moved.nii.gz", B.astype(np.int16),
                  affine=np.array([[1.0, 0, 0, 5], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]))
    intensities = _save(tmp_path / "t1.nii.gz", np.full((2, 2, 2), 0.5, np.float32))
    cases = [
        ([a, bigger], "are on different grids: shape (2, 2, 2) vs (2, 2, 3)"),
        ([a, moved], "affines differ by up to 5 mm"),
        ([a, str(tmp_path / "missing.nii.gz")], "missing.nii.gz: no such file"),
        ([a, intensities], "non-integer value 0.5"),
        ([a, a, "--tolerance", "-3"], "--tolerance: expected a voxel count"),
        ([a, a, "--labels", str(tmp_path / "none.ctbl")], "none.ctbl: file not found"),
        ([a, a, "--json", a], "is the input file"),
    ]
    for args, message in cases:
        assert main(["compare", *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("niftyport: error: ") and message in err, (args, err)


def test_cli_real_niftynet_output_against_itself(capsys):
    path = str(need(REFERENCE / NIFTYNET_OUT))
    assert main(["compare", path, path, "--labels", str(need(CTBL))]) == 0
    out = capsys.readouterr().out
    assert "number of different voxels: 0 of 585200 (0.0000 %)" in out
    assert "labels: 146 in a, 146 in b; mean Dice (labels > 0): 1.000000" in out


def test_real_maps_one_structure_swapped():
    """NiftyNet's output with its left and right hippocampus swapped: the count and Dice are
    known from the voxels changed."""
    table = read_ctbl(need(CTBL))
    a = np.asanyarray(nib.load(need(REFERENCE / NIFTYNET_OUT)).dataobj).astype(np.int64)
    b = a.copy()
    b[a == 23], b[a == 24] = 24, 23  # Right-/Left-Hippocampus
    n23, n24 = int((a == 23).sum()), int((a == 24).sum())
    result = compare_labels(a, b, voxel_mm3=8.0, table=table)
    assert result.n_different == n23 + n24
    assert [c.name for c in result.labels[:2]] == ["Right-Hippocampus", "Left-Hippocampus"]
    assert [c.dice for c in result.labels[:2]] == [0.0, 0.0]
    assert result.labels[0].mm3_a == 8.0 * n23 and result.labels[0].mm3_b == 8.0 * n24
    assert all(c.dice == 1.0 for c in result.labels[2:])


def test_real_parcellation_in_pir_orientation(tmp_path, capsys):
    """The real GIF parcellation (PIR file) against a copy with 100 voxels of one label changed."""
    src = need(DATA / "real_gif_parcellation_fpg_noT1.nii.gz")
    img = nib.load(src)
    data = np.asanyarray(img.dataobj).copy()
    where = np.argwhere(data == 48)[:100]  # raw GIF 48: right hippocampus
    data[tuple(where.T)] = 0
    changed = tmp_path / "changed.nii.gz"
    nib.save(nib.Nifti1Image(data, img.affine, img.header), changed)
    assert main(["compare", str(src), str(changed), "--tolerance", "99"]) == 1
    assert main(["compare", str(src), str(changed), "--tolerance", "100", "--json", str(tmp_path / "c.json")]) == 0
    row = {r["label"]: r for r in json.loads((tmp_path / "c.json").read_text())["labels"]}[48]
    n48 = int((np.asanyarray(img.dataobj) == 48).sum())
    assert (row["voxels_a"], row["voxels_b"], row["overlap"]) == (n48, n48 - 100, n48 - 100)
    assert row["dice"] == pytest.approx(2 * (n48 - 100) / (2 * n48 - 100))
