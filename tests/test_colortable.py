import nibabel as nib
import numpy as np
import pytest
from conftest import CTBL, DATA, REFERENCE, need

from niftyport.reporting.colortable import (GIF_RAW_LABELS, ColorTable, Label, fallback_table, format_ctbl,
                                  gif_raw_to_niftynet, palette_rgba, read_ctbl, side_of, write_ctbl)
from niftyport.errors import ColorTableError

NIFTYNET_OUT = "window_seg_mni152_t1_2mm_LPS_bbox__niftynet_out.nii.gz"


def test_read_ctbl_comments_crlf_gaps_and_names_with_spaces(tmp_path):
    path = tmp_path / "t.ctbl"
    path.write_bytes(b"# a comment\r\n0 Background 0 0 0 0\r\n\r\n7 Right-Thing 1 2 3 255\r\n"
                     b"9 Left Thing 4 5 6 128\r\n")
    table = read_ctbl(path)
    assert table.ids == (0, 7, 9)
    assert table.labels[7] == Label(7, "Right-Thing", (1, 2, 3, 255))
    assert table.labels[9] == Label(9, "Left Thing", (4, 5, 6, 128))
    assert table.name(8) == "label 8"
    assert table.source == str(path)


@pytest.mark.parametrize("line, message", [
    ("5 Name 1 2 3", "expected 'id name R G B A'"),
    ("x Name 1 2 3 4", "must be integers"),
    ("5 Name 1 2 300 4", "outside 0..255"),
    ("-1 Name 1 2 3 4", "negative label id -1"),
])
def test_read_ctbl_rejects_bad_lines_naming_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.ctbl"
    path.write_text("0 Background 0 0 0 0\n" + line + "\n")
    with pytest.raises(ColorTableError, match=message) as info:
        read_ctbl(path)
    assert "bad.ctbl, line 2" in str(info.value)


def test_read_ctbl_rejects_duplicates_missing_and_empty(tmp_path):
    dup = tmp_path / "dup.ctbl"
    dup.write_text("1 A 1 1 1 1\n1 B 2 2 2 2\n")
    with pytest.raises(ColorTableError, match="label id 1 defined twice"):
        read_ctbl(dup)
    with pytest.raises(ColorTableError, match="file not found"):
        read_ctbl(tmp_path / "none.ctbl")
    empty = tmp_path / "empty.ctbl"
    empty.write_text("# nothing\n")
    with pytest.raises(ColorTableError, match="no labels found"):
        read_ctbl(empty)


def test_write_then_read_round_trip(tmp_path):
    table = ColorTable({3: Label(3, "Left Thing", (1, 2, 3, 4)), 0: Label(0, "Background", (0, 0, 0, 0))})
    path = write_ctbl(table, tmp_path / "out.ctbl")
    assert path.read_text() == "0 Background 0 0 0 0\n3 Left_Thing 1 2 3 4\n"
    again = read_ctbl(path)
    assert again.labels[3].rgba == (1, 2, 3, 4) and again.name(3) == "Left_Thing"
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_gif_table_from_the_model_zoo():
    table = read_ctbl(need(CTBL))
    assert len(table.labels) == 155
    assert min(table.ids) == 0 and max(table.ids) == 159
    assert set(range(160)) - set(table.ids) == {1, 2, 3, 20, 21}
    assert table.name(8) == "Right-Accumbens-Area" and table.rgba(8) == (48, 176, 96, 255)
    pairs = table.pairs()
    assert len(pairs) == 71
    # pairing is by name, not by id parity: the basal forebrain lists Left before Right
    forebrain = [p for p in pairs if p.structure == "Basal-Forebrain"]
    assert [(p.right, p.left) for p in forebrain] == [(46, 45)]
    assert table.contralateral(23) == 24 and table.contralateral(24) == 23
    assert table.contralateral(12) is None  # Pons
    assert format_ctbl(table) == CTBL.read_text().replace("\r\n", "\n")


@pytest.mark.parametrize("name, expected", [
    ("Right-Hippocampus", ("right", "Hippocampus")),
    ("Left-Lateral-Ventricle", ("left", "Lateral-Ventricle")),
    ("left_caudate", ("left", "caudate")),
    ("Precentral_L", ("left", "Precentral")),
    ("Frontal_Sup_R", ("right", "Frontal_Sup")),
    ("ctx-lh", ("left", "ctx")),
    ("Brain-Stem", ("", "Brain-Stem")),
    ("Cerebellar-Vermal-Lobules-I-V", ("", "Cerebellar-Vermal-Lobules-I-V")),
    ("Corpus-Callosum", ("", "Corpus-Callosum")),
])
def test_side_of(name, expected):
    assert side_of(name) == expected


def test_fallback_palette_is_transparent_background_and_distinguishable():
    assert palette_rgba(0) == (0, 0, 0, 0)
    colours = np.array([palette_rgba(k)[:3] for k in range(1, 161)], dtype=float)
    assert len({tuple(c) for c in colours}) == 160
    # neighbouring ids (the usual left/right or adjacent structures) must not look alike
    steps = np.abs(np.diff(colours, axis=0)).sum(axis=1)
    assert steps.min() > 40
    assert all(palette_rgba(k)[3] == 255 for k in range(1, 300))
    table = fallback_table([0, 5, 5, 2])
    assert table.ids == (0, 2, 5) and table.name(0) == "Background" and table.name(5) == "label 5"


def test_lut_colours_and_transparent_background():
    table = ColorTable({0: Label(0, "Background", (9, 9, 9, 255)), 2: Label(2, "X", (255, 0, 51, 255))})
    lut = table.lut(3)
    assert lut.shape == (4, 4) and lut.dtype == np.float32
    np.testing.assert_array_equal(lut[0], 0.0)
    np.testing.assert_allclose(lut[2], [1.0, 0.0, 0.2, 1.0])
    np.testing.assert_allclose(lut[3], np.array(palette_rgba(3)) / 255.0)


def _centroid_x(labels: np.ndarray, affine: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, float]:
    ijk = np.argwhere(labels > 0)
    values = labels[labels > 0]
    x = nib.affines.apply_affine(affine, ijk)[:, 0]
    count = np.bincount(values, minlength=n)
    return np.bincount(values, weights=x, minlength=n) / np.maximum(count, 1), count, float(np.median(x))


def test_niftynet_output_indices_are_the_table_ids():
    """Right-named deep structures of NiftyNet's own output (MNI152, LPS file) lie mostly
    right of the midline (RAS x > 0), left-named ones left of it. (Its cortical labels
    on this smooth 2 mm template are too noisy for such a check.)"""
    table = read_ctbl(need(CTBL))
    image = nib.load(need(REFERENCE / NIFTYNET_OUT))
    labels = np.asanyarray(image.dataobj).astype(np.int64)
    x = nib.affines.apply_affine(image.affine, np.argwhere(labels > 0))[:, 0]
    values = labels[labels > 0]
    count = np.bincount(values, minlength=160)
    on_right = np.bincount(values, weights=(x > 0).astype(float), minlength=160) / np.maximum(count, 1)
    deep = [p for p in table.pairs() if p.right < 62]  # subcortical structures and white matter
    assert len(deep) == 22
    for pair in deep:
        assert count[pair.right] > 10 and count[pair.left] > 10
        assert on_right[pair.right] > 0.6 and on_right[pair.left] < 0.4, (pair, on_right[[pair.right, pair.left]])


def test_gif_raw_labels_map_to_table_sides():
    """A real GIF parcellation (raw numbers, PIR orientation) mapped to network indices:
    every right/left-named label lies on its side, midline structures near the midline."""
    assert len(GIF_RAW_LABELS) == 160 and list(GIF_RAW_LABELS) == sorted(set(GIF_RAW_LABELS))
    table = read_ctbl(need(CTBL))
    image = nib.load(need(DATA / "real_gif_parcellation_fpg_noT1.nii.gz"))
    raw = np.asanyarray(image.dataobj)
    mapped = gif_raw_to_niftynet(raw)
    assert mapped[raw == 24].min() == mapped[raw == 24].max() == 8  # raw 24 = Right-Accumbens-Area
    cx, count, midline = _centroid_x(mapped, image.affine, 160)
    lateral = [k for k in table.ids if table.side(k)]
    assert len(lateral) == 142
    for k in lateral:
        if count[k]:
            assert (cx[k] > midline) == (table.side(k) == "right"), (k, table.name(k), cx[k] - midline)
    for k in (5, 6, 12, 13, 41, 42, 43, 44, 53):  # ventricles, pons, brain stem, chiasm, vermis, CC
        assert abs(cx[k] - midline) < 6, (k, table.name(k))


def test_gif_raw_to_niftynet_rejects_unknown_values():
    assert gif_raw_to_niftynet(np.array([0, 208, 47])).tolist() == [0, 159, 22]
    with pytest.raises(ColorTableError, match=r"values \[6, 300\]"):
        gif_raw_to_niftynet(np.array([[6, 300, 5]]))


def test_pairs_of_an_aal_style_table():
    table = ColorTable({k: Label(k, f"Region{(k + 1) // 2}_{'L' if k % 2 else 'R'}", (1, 1, 1, 255))
                        for k in range(1, 7)})
    assert [(p.structure, p.right, p.left) for p in table.pairs()] == [
        ("Region1", 2, 1), ("Region2", 4, 3), ("Region3", 6, 5)]
    assert [table.side(k) for k in (1, 2)] == ["left", "right"]
