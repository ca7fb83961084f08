import gzip
import os

import nibabel as nib
import numpy as np
import pytest

from conftest import DATA, REFERENCE, need
from niftyport.errors import ImageError, NiftyportError
from niftyport.image_io import label_image, load_image, repair_affine, save_labels


def _save(tmp_path, data, affine=np.eye(4), name="img.nii.gz", header=None):
    path = tmp_path / name
    nib.save(nib.Nifti1Image(data, affine, header=header), path)
    return path


def _volume(shape=(4, 5, 6), dtype=np.float32):
    return np.arange(np.prod(shape)).reshape(shape).astype(dtype)


def test_big_endian_int16_is_read_with_its_values():
    path = need(DATA / "real_t1_nipy_tiny_2mm_crop.nii.gz")
    raw = nib.load(path)
    assert raw.get_data_dtype().byteorder == ">"
    img = load_image(path)
    data = np.asanyarray(img.dataobj)
    assert data.dtype.isnative and data.dtype.kind == "i"
    assert np.array_equal(data, raw.get_fdata())
    assert np.array_equal(img.affine, raw.affine)


def test_4d_singleton_is_squeezed_and_its_affine_kept():
    path = need(DATA / "real_t1_robex_ref_1p5mm_skull.nii.gz")
    raw = nib.load(path)
    assert raw.shape == (116, 150, 155, 1)
    img = load_image(path)
    assert img.shape == (116, 150, 155)
    assert img.header.get_zooms() == (1.5, 1.5, 1.5)
    # NiftyNet always rebuilds a 4-D file's affine from its columns; here that changes nothing
    assert np.array_equal(img.affine, raw.affine)


def test_scale_factors_are_applied(tmp_path):
    data = _volume(dtype=np.int16)
    img = nib.Nifti1Image(data, np.eye(4))
    img.header.set_slope_inter(0.5, 10.0)
    path = tmp_path / "scaled.nii"
    nib.save(img, path)
    loaded = np.asanyarray(load_image(path).dataobj)
    assert np.array_equal(loaded, data * 0.5 + 10.0)


def test_in_memory_image_is_accepted():
    img = nib.Nifti1Image(_volume(), np.diag([2.0, 2.0, 2.0, 1.0]))
    assert load_image(img).shape == (4, 5, 6)


@pytest.mark.parametrize("data,message", [
    (np.arange(20, dtype=np.float32).reshape(4, 5), "2-D image"),
    (np.arange(240, dtype=np.float32).reshape(4, 5, 6, 2), "holds 2 volumes"),
    (np.zeros((4, 5, 0), np.float32), "empty image"),
    (np.full((4, 5, 6), 7.0, np.float32), "same value 7.0"),
    (np.arange(20, dtype=np.float32).reshape(4, 5, 1), "single slice"),
])
def test_bad_shapes_and_values(tmp_path, data, message):
    path = _save(tmp_path, data)
    with pytest.raises(ImageError, match=message) as err:
        load_image(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("bad,message", [(np.nan, "1 NaN and 0 infinite"), (np.inf, "0 NaN and 1 infinite")])
def test_non_finite_values(tmp_path, bad, message):
    data = _volume()
    data[1, 2, 3] = bad
    with pytest.raises(ImageError, match=message):
        load_image(_save(tmp_path, data))


def test_missing_not_nifti_and_corrupt_files(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.nii.gz")
    with pytest.raises(ImageError, match="is a folder"):
        load_image(tmp_path)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ImageError, match="notes.txt: not an image nibabel can read"):
        load_image(text)
    noise = np.random.default_rng(0).random((20, 20, 20)).astype(np.float32)
    good = _save(tmp_path, noise, name="good.nii.gz")
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])  # header fine, data cut
    with pytest.raises(ImageError, match="corrupt.nii.gz: damaged or truncated gzip stream after"):
        load_image(corrupt)


def test_complex_voxels_are_rejected(tmp_path):
    with pytest.raises(ImageError, match="complex64 is not a real number type"):
        load_image(_save(tmp_path, _volume().astype(np.complex64)))


def test_bad_sform_is_replaced_by_good_qform():
    header = nib.Nifti1Header()
    header.set_data_shape((4, 5, 6))
    header.set_zooms((2.0, 2.0, 2.0))
    qform = np.diag([2.0, 2.0, 2.0, 1.0])
    qform[:3, 3] = [1, 2, 3]
    sform = np.diag([3.0, 2.0, 2.0, 1.0])  # x column length 3, zooms say 2
    header.set_qform(qform, code=1)
    header.set_sform(sform, code=2)
    header.set_zooms((2.0, 2.0, 2.0))
    fixed_header, affine = repair_affine(header, sform)
    assert np.array_equal(affine, qform)
    assert np.array_equal(fixed_header.get_sform(), qform) and int(fixed_header["sform_code"]) == 2


def test_4d_header_rescales_affine_columns_to_zooms(tmp_path):
    affine = np.diag([-3.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [1, 2, 3]
    img = nib.Nifti1Image(_volume((4, 5, 6, 1)), affine)
    img.header.set_zooms((2.0, 2.0, 2.0, 1.0))
    path = tmp_path / "four.nii.gz"
    nib.save(img, path)
    expected = np.diag([-2.0, 2.0, 2.0, 1.0])
    expected[:3, 3] = [1, 2, 3]
    assert np.array_equal(load_image(path).affine, expected)


def test_5d_header_is_left_alone(tmp_path):
    affine = np.diag([-3.0, 2.0, 2.0, 1.0])
    img = nib.Nifti1Image(_volume((4, 5, 6, 1, 1)), affine)
    img.header.set_zooms((2.0, 2.0, 2.0, 1.0, 1.0))
    path = tmp_path / "five.nii.gz"
    nib.save(img, path)
    loaded = load_image(path)
    assert loaded.shape == (4, 5, 6) and np.array_equal(loaded.affine, affine)


def test_consistent_affine_is_untouched(tmp_path):
    affine = np.array([[0.0, 0.0, 1.5, -10.0], [-1.5, 0.0, 0.0, 20.0], [0.0, 2.5, 0.0, 5.0], [0, 0, 0, 1]])
    assert np.array_equal(load_image(_save(tmp_path, _volume(), affine)).affine, affine)


def test_save_labels_writes_int32_with_affine_atomically(tmp_path):
    labels = np.arange(60).reshape(3, 4, 5)
    affine = np.diag([-2.0, -2.0, 2.0, 1.0])
    header = nib.Nifti1Header()
    header.set_xyzt_units("mm", "sec")
    out = save_labels(tmp_path / "seg.nii.gz", labels, affine, header)
    img = nib.load(out)
    assert img.get_data_dtype() == np.int32
    assert np.array_equal(np.asanyarray(img.dataobj), labels)
    assert np.array_equal(img.affine, affine)
    assert (int(img.header["sform_code"]), int(img.header["qform_code"])) == (2, 0)
    assert img.header.get_xyzt_units() == ("mm", "sec")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg.nii.gz"]  # no temporary left
    assert os.stat(out).st_mode & 0o044  # readable by others, as a normal file


def test_save_labels_same_header_as_niftynet_output(tmp_path):
    ref = nib.load(need(REFERENCE / "window_seg_mni152_t1_2mm_LPS_bbox__niftynet_out.nii.gz"))
    ours = nib.load(save_labels(tmp_path / "seg.nii.gz", np.asarray(ref.dataobj), ref.affine))
    for key in ("sform_code", "qform_code", "datatype", "bitpix", "dim", "pixdim", "srow_x", "srow_y", "srow_z"):
        assert np.array_equal(ours.header[key], ref.header[key]), key


def test_save_labels_refuses_to_overwrite_an_input(tmp_path):
    path = _save(tmp_path, _volume(), name="t1.nii.gz")
    before = path.read_bytes()
    with pytest.raises(NiftyportError, match="is the input file"):
        save_labels(tmp_path / "." / "t1.nii.gz", np.zeros((4, 5, 6), np.int32), np.eye(4),
                    input_paths=[path])
    assert path.read_bytes() == before


def test_save_labels_needs_an_existing_folder_and_integer_labels(tmp_path):
    with pytest.raises(NiftyportError, match="does not exist"):
        save_labels(tmp_path / "missing" / "seg.nii.gz", np.zeros((2, 2, 2), np.int32), np.eye(4))
    with pytest.raises(ImageError, match="3-D integer array"):
        save_labels(tmp_path / "seg.nii.gz", np.zeros((2, 2, 2), np.float32), np.eye(4))


def test_gzip_of_uncompressed_name_still_reads(tmp_path):
    # a .nii.gz that is really gzip-compressed NIfTI bytes written by hand
    raw = _save(tmp_path, _volume(), name="plain.nii")
    packed = tmp_path / "packed.nii.gz"
    packed.write_bytes(gzip.compress(raw.read_bytes()))
    assert load_image(packed).shape == (4, 5, 6)


def test_label_image_in_memory_matches_what_is_saved(tmp_path):
    labels = np.arange(24).reshape(2, 3, 4).astype(np.int64)
    affine = np.diag([1.5, -1.5, 2.0, 1.0])
    img = label_image(labels, affine)
    assert img.get_data_dtype() == np.int32 and np.asanyarray(img.dataobj).dtype == np.int32
    saved = nib.load(save_labels(tmp_path / "s.nii", labels, affine))
    assert np.array_equal(np.asanyarray(saved.dataobj), np.asanyarray(img.dataobj))
    assert np.array_equal(saved.affine, img.affine)


# --------------------------------------------------------------------------- FreeSurfer, Analyze and NIfTI pairs

def _t1_crop(size=48):
    """A crop of a real 1 mm T1 around its centre (uint8, RAS; its affine needs NiftyNet's repair)."""
    img = nib.load(need(DATA / "real_t1_chris_1mm_skull.nii.gz"))
    start = [(n - size) // 2 for n in img.shape]
    return img.slicer[tuple(slice(s, s + size) for s in start)]


@pytest.mark.parametrize("name", ["t1.mgz", "t1.mgh", "t1.img", "t1.nii"])
def test_other_formats_give_the_network_input_nifti_gives(tmp_path, name):
    from niftyport.config import default_config
    from niftyport.preprocessing import load_and_resample, preprocess

    crop = _t1_crop()
    nib.save(crop, tmp_path / "t1.nii.gz")
    nib.save(crop, tmp_path / name)  # nibabel converts to the format the name asks for
    assert type(nib.load(tmp_path / name)).__name__ == {"t1.mgz": "MGHImage", "t1.mgh": "MGHImage",
                                                        "t1.img": "Nifti1Pair", "t1.nii": "Nifti1Image"}[name]
    config = default_config()
    ref, other = (load_and_resample(tmp_path / n, config) for n in ("t1.nii.gz", name))
    assert other.axcodes == ref.axcodes and other.pixdim == ref.pixdim
    assert other.data.dtype == ref.data.dtype and other.data.flags["F_CONTIGUOUS"] == ref.data.flags["F_CONTIGUOUS"]
    assert other.data.tobytes("A") == ref.data.tobytes("A")
    assert np.allclose(other.affine, ref.affine, rtol=0, atol=1e-5)
    a, b = preprocess(ref.data, config), preprocess(other.data, config)
    assert a.whitened.tobytes("A") == b.whitened.tobytes("A") and np.array_equal(a.mask, b.mask)


def test_mgz_labels_round_trip(tmp_path):
    from niftyport.reporting.volumes import load_label_image

    crop = _t1_crop(16)
    nib.save(crop, tmp_path / "orig.mgz")
    loaded = load_image(tmp_path / "orig.mgz")
    labels = (np.asarray(loaded.dataobj) // 40).astype(np.int32)
    out = save_labels(tmp_path / "orig_parcellation.mgz", labels, loaded.affine, loaded.header,
                      input_paths=[tmp_path / "orig.mgz"])
    back = nib.load(out)
    assert isinstance(back, nib.MGHImage) and back.get_data_dtype().newbyteorder("=") == np.int32
    assert np.array_equal(np.asanyarray(back.dataobj), labels)
    assert np.allclose(back.affine, loaded.affine, rtol=0, atol=1e-5)
    assert np.allclose(back.affine, nib.load(tmp_path / "orig.mgz").affine, rtol=0, atol=1e-5)
    as_labels = load_label_image(out)
    assert np.array_equal(as_labels.data, labels) and as_labels.voxel_mm3 == pytest.approx(1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orig.mgz", "orig_parcellation.mgz"]


def test_output_format_follows_the_output_name(tmp_path):
    labels = np.arange(60, dtype=np.int32).reshape(3, 4, 5)
    affine = np.diag([-2.0, 2.0, 2.0, 1.0])
    nifti2 = tmp_path / "in2.nii"
    nib.save(nib.Nifti2Image(labels.astype(np.float32), affine), nifti2)
    kinds = {"a.nii.gz": nib.Nifti1Image, "b.mgz": nib.MGHImage, "c.mgh": nib.MGHImage, "d.img": nib.Nifti1Pair}
    for name, klass in kinds.items():
        out = save_labels(tmp_path / name, labels, affine, input_paths=[tmp_path / "t1.mgz"])
        img = nib.load(out)
        assert type(img) is klass, name
        assert np.array_equal(np.asanyarray(img.dataobj), labels) and np.allclose(img.affine, affine)
    assert (tmp_path / "d.hdr").is_file()  # the pair's two files
    # a NIfTI name keeps a NIfTI-2 input's format; format= chooses
    assert type(nib.load(save_labels(tmp_path / "e.nii.gz", labels, affine, input_paths=[nifti2]))) is nib.Nifti2Image
    assert type(nib.load(save_labels(tmp_path / "f.nii", labels, affine, input_paths=[nifti2],
                                     format="nifti1"))) is nib.Nifti1Image
    with pytest.raises(ImageError, match=r"x\.dcm: cannot tell the image format"):
        save_labels(tmp_path / "x.dcm", labels, affine)
    assert not (tmp_path / "x.dcm").exists()


def test_a_pair_output_never_replaces_an_input_pair(tmp_path):
    nib.save(nib.Nifti1Pair(_volume(), np.eye(4)), tmp_path / "t1.img")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(NiftyportError, match="is the input file"):
        save_labels(tmp_path / "t1.hdr", np.zeros((4, 5, 6), np.int32), np.eye(4), input_paths=[tmp_path / "t1.img"])
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_analyze_input_keeps_nibabels_affine_and_header_zooms(tmp_path):
    affine = np.diag([-2.0, 2.0, 3.0, 1.0])
    affine[:3, 3] = [10, -20, 30]
    nib.save(nib.Spm2AnalyzeImage(_volume(dtype=np.int16) + 1, affine), tmp_path / "scan.img")
    raw = nib.load(tmp_path / "scan.img")
    assert type(raw) is nib.Spm2AnalyzeImage
    img = load_image(tmp_path / "scan.img")
    assert np.array_equal(img.affine, raw.affine) and img.header.get_zooms() == (2.0, 2.0, 3.0)
    assert np.array_equal(np.asanyarray(img.dataobj), _volume(dtype=np.int16) + 1)


@pytest.mark.parametrize("name,expected", [
    ("/d/t1.nii.gz", "/d/t1_parcellation.nii.gz"), ("t1.nii", "t1_parcellation.nii"),
    ("orig.mgz", "orig_parcellation.mgz"), ("T1.MGH", "T1_parcellation.MGH"), ("s.img", "s_parcellation.img"),
    ("s.hdr", "s_parcellation.hdr"), ("s.img.gz", "s_parcellation.img.gz"),
    ("sub.01.nii.gz", "sub.01_parcellation.nii.gz"),
    ("scan", "scan_parcellation.nii.gz"), ("scan.dcm", "scan.dcm_parcellation.nii.gz"),
])
def test_default_label_path_keeps_the_input_format(name, expected):
    from niftyport.image_io import default_label_path

    assert str(default_label_path(name)) == expected
