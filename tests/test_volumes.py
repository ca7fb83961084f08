import csv
import io

import nibabel as nib
import numpy as np
import pytest
from conftest import CTBL, DATA, REFERENCE, need

from niftyport.cli import main
from niftyport.reporting.colortable import ColorTable, Label, read_ctbl
from niftyport.errors import ImageError
from niftyport.reporting.volumes import (VOLUME_COLUMNS, as_label_array, format_volumes_csv, label_counts, label_volumes,
                               load_label_image, voxel_volume_mm3)

NIFTYNET_OUT = "window_seg_mni152_t1_2mm_LPS_bbox__niftynet_out.nii.gz"
TABLE = ColorTable({5: Label(5, "Right-Thing", (1, 1, 1, 255)), 6: Label(6, "Left-Thing", (2, 2, 2, 255)),
                    7: Label(7, "Middle", (3, 3, 3, 255))})


def _map() -> np.ndarray:
    labels = np.zeros((4, 5, 6), dtype=np.int16)
    labels.flat[:30] = 5     # 30 voxels right
    labels.flat[30:40] = 6   # 10 voxels left
    labels.flat[40:41] = 7   # 1 voxel
    labels.flat[41:43] = 9   # 2 voxels, no name
    return labels


def test_hand_made_volumes_with_anisotropic_voxels():
    volumes = label_volumes(_map(), 0.5 * 1.0 * 3.0, TABLE)
    assert [(v.id, v.name, v.side, v.voxels, v.mm3) for v in volumes] == [
        (5, "Right-Thing", "right", 30, 45.0), (6, "Left-Thing", "left", 10, 15.0),
        (7, "Middle", "", 1, 1.5), (9, "label 9", "", 2, 3.0)]
    right, left = volumes[0], volumes[1]
    assert (right.contralateral, right.contralateral_mm3) == (6, 15.0)
    assert (left.contralateral, left.contralateral_mm3) == (5, 45.0)
    assert right.asymmetry == left.asymmetry == pytest.approx((45 - 15) / 30)
    assert volumes[2].asymmetry is None
    assert sum(v.mm3 for v in volumes) == 43 * 1.5   # the labelled volume


def test_background_row_and_missing_partner():
    labels = _map()
    labels[labels == 6] = 0
    volumes = label_volumes(labels, 1.0, TABLE, include_background=True)
    assert volumes[0].id == 0 and volumes[0].voxels == 120 - 33
    right = volumes[1]
    assert right.contralateral == 6 and right.contralateral_mm3 == 0.0 and right.asymmetry == 2.0


def test_csv_format():
    text = format_volumes_csv(label_volumes(_map(), 1.5, TABLE))
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == VOLUME_COLUMNS
    assert rows[1] == ["5", "Right-Thing", "right", "30", "45", "6", "15", "1"]
    assert rows[3] == ["7", "Middle", "", "1", "1.5", "", "", ""]
    assert text.endswith("\n") and "\r" not in text


@pytest.mark.parametrize("zooms, unit, expected", [
    ((1.0, 1.0, 1.0), "mm", 1.0),
    ((0.5, 0.8, 3.0), "mm", 1.2),
    ((2.0, 2.0, 2.0), "unknown", 8.0),
    ((0.001, 0.001, 0.002), "meter", 2.0),
    ((500.0, 1000.0, 2000.0), "micron", 1.0),
])
def test_voxel_volume_from_header(zooms, unit, expected):
    header = nib.Nifti1Header()
    header.set_data_shape((2, 2, 2))
    header.set_zooms(zooms)
    header.set_xyzt_units(unit)
    assert voxel_volume_mm3(header) == pytest.approx(expected, rel=1e-6)


def test_label_array_checks():
    assert as_label_array(np.zeros((2, 3, 4, 1), np.float32)).shape == (2, 3, 4)
    assert as_label_array(np.array([[[2.0, 3.0]]])).dtype == np.int64
    with pytest.raises(ImageError, match="negative label -1"):
        as_label_array(np.array([[[0, -1]]]))
    with pytest.raises(ImageError, match="non-integer value 0.25"):
        as_label_array(np.array([[[0.25]]]))
    with pytest.raises(ImageError, match="NaN or infinite"):
        as_label_array(np.array([[[np.nan]]]))
    with pytest.raises(ImageError, match="expected a 3-D label map"):
        as_label_array(np.zeros((2, 3, 4, 2)))


def test_counts_for_large_label_values():
    labels = np.array([[[0, 2_000_000, 2_000_000, 3]]])
    assert label_counts(labels) == {0: 1, 3: 1, 2_000_000: 2}


def test_load_label_image_reads_voxel_size(tmp_path):
    img = nib.Nifti1Image(_map(), np.diag([0.5, 1.0, 3.0, 1.0]))
    img.header.set_xyzt_units("mm")
    nib.save(img, tmp_path / "l.nii.gz")
    loaded = load_label_image(tmp_path / "l.nii.gz")
    assert loaded.voxel_mm3 == 1.5 and loaded.data.shape == (4, 5, 6)
    (tmp_path / "x.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(ImageError, match="x.nii.gz: not an image nibabel can read"):
        load_label_image(tmp_path / "x.nii.gz")


def test_real_niftynet_output_volumes_sum_to_the_labelled_volume():
    image = nib.load(need(REFERENCE / NIFTYNET_OUT))
    data = np.asanyarray(image.dataobj)
    volumes = label_volumes(data.astype(np.int64), 8.0, read_ctbl(need(CTBL)))
    assert len(volumes) == 145
    assert sum(v.voxels for v in volumes) == np.count_nonzero(data)
    assert sum(v.mm3 for v in volumes) == 8.0 * np.count_nonzero(data)
    hippocampus = {v.name: v for v in volumes}["Left-Hippocampus"]
    assert hippocampus.id == 24 and hippocampus.voxels == int((data == 24).sum())
    assert hippocampus.contralateral == 23


def test_cli_volumes(tmp_path, capsys):
    src = need(DATA / "colin27_aal.nii.gz")
    out = tmp_path / "volumes.csv"
    assert main(["volumes", str(src), "-o", str(out)]) == 0
    assert "116 labels" in capsys.readouterr().out
    rows = list(csv.DictReader(out.open()))
    data = np.asanyarray(nib.load(src).dataobj)
    assert len(rows) == 116
    assert sum(int(r["voxels"]) for r in rows) == np.count_nonzero(data)
    assert rows[0]["id"] == "1" and int(rows[0]["voxels"]) == int((data == 1).sum())
    # to standard output when -o is not given
    assert main(["volumes", str(src), "--with-background"]) == 0
    printed = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert printed[0]["id"] == "0" and len(printed) == 117
    assert main(["volumes", str(src), "-o", str(src)]) == 2
    assert "is the input file" in capsys.readouterr().err


def test_cli_volumes_anisotropic_file(tmp_path):
    path = tmp_path / "aniso.nii.gz"
    img = nib.Nifti1Image(_map(), np.diag([0.5, 1.0, 3.0, 1.0]))
    img.header.set_xyzt_units("mm")
    nib.save(img, path)
    ctbl = tmp_path / "t.ctbl"
    ctbl.write_text("5 Right-Thing 1 1 1 255\n6 Left-Thing 2 2 2 255\n")
    out = tmp_path / "v.csv"
    assert main(["volumes", str(path), "--labels", str(ctbl), "-o", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [(r["id"], r["name"], r["mm3"]) for r in rows] == [
        ("5", "Right-Thing", "45"), ("6", "Left-Thing", "15"), ("7", "label 7", "1.5"), ("9", "label 9", "3")]
