import json
import os
import subprocess
import textwrap

import nibabel as nib
import numpy as np
import pytest

from conftest import CONFIG, DATA, NIFTYNET_HOME, ORACLE, REFERENCE, need
from niftyport.config import PACKAGED_LANDMARKS, default_config, load_config
from niftyport.preprocessing.histogram import read_landmarks
from niftyport.image_io import save_labels
from niftyport.preprocessing.orientation import permute_like, reorient
from niftyport.preprocessing.padding import pad_widths, unpad
from niftyport.preprocessing import load_and_resample, preprocess, restore_to_input_space
from niftyport.preprocessing.resample import resample_to_pixdim

REFERENCE_OUTPUT = REFERENCE / "window_seg_mni152_t1_2mm_LPS_bbox__niftynet_out.nii.gz"
T1_SCANS = ["real_t1_nipy_tiny_2mm_crop", "real_t1_robex_ref_1p5mm_skull", "real_t1_chris_1mm_skull",
            "colin27_ch2_1mm_skull"]


def zoo_config():
    if CONFIG.exists():
        return load_config(CONFIG, niftynet_home=NIFTYNET_HOME)
    return default_config(niftynet_home=NIFTYNET_HOME)


def same_numpy_as(meta_path):
    """Bit-exactness of float sums is only promised with the NumPy that made the reference."""
    return json.loads(meta_path.read_text())["versions"]["numpy"] == np.__version__


def assert_stage(ours, expected, *, exact):
    expected = expected.reshape(expected.shape[:3])
    assert ours.shape == expected.shape and ours.dtype == expected.dtype
    if exact:
        assert np.array_equal(ours, expected)
    else:
        assert np.max(np.abs(ours.astype(np.float64) - expected)) <= 1e-5


# --- the shared NiftyNet reference run -------------------------------------------------------

@pytest.fixture(scope="module")
def reference_run():
    stages = np.load(need(REFERENCE / "stages.npz"))
    cfg = zoo_config()
    loaded = load_and_resample(need(REFERENCE / "input.nii.gz"), cfg)
    return stages, cfg, loaded, preprocess(loaded.data, cfg)


def test_reference_reader_padding_and_mask_are_exact(reference_run):
    stages, _, loaded, pre = reference_run
    assert loaded.data.shape == (154, 190, 160)
    assert_stage(loaded.data, stages["stage0_reader_ras1mm"], exact=True)
    assert_stage(pre.padded, stages["stage1_padded"], exact=True)
    assert_stage(pre.mask, stages["foreground_mask"], exact=True)


def test_reference_normalised_stages(reference_run):
    stages, _, _, pre = reference_run
    exact = same_numpy_as(REFERENCE / "meta.json")
    assert_stage(pre.standardised, stages["stage2_histnorm"], exact=exact)
    assert_stage(pre.whitened, stages["stage3_whitened"], exact=exact)


def test_reference_loaded_metadata(reference_run):
    _, _, loaded, _ = reference_run
    meta = json.loads((REFERENCE / "meta.json").read_text())
    assert loaded.original_shape == tuple(meta["original_shape"][:3])
    assert loaded.axcodes == tuple(meta["original_axcodes"]) == ("L", "P", "S")
    assert loaded.pixdim == tuple(meta["original_pixdim"])
    assert np.array_equal(loaded.affine, np.array(meta["original_affine"]))
    assert loaded.output_axcodes == ("R", "A", "S") and loaded.output_pixdim == (1.0, 1.0, 1.0)


def test_reference_labels_back_in_input_space_equal_niftynet_output(reference_run, tmp_path):
    stages, cfg, loaded, _ = reference_run
    expected = nib.load(need(REFERENCE_OUTPUT))
    labels = restore_to_input_space(stages["labels_padded_ras1mm"][..., 0], loaded, cfg)
    assert labels.dtype == np.int32
    assert np.array_equal(labels, np.asanyarray(expected.dataobj))
    saved = nib.load(save_labels(tmp_path / "seg.nii.gz", labels, loaded.affine, loaded.header,
                                 input_paths=[loaded.source]))
    assert saved.get_data_dtype() == expected.get_data_dtype() == np.int32
    assert np.array_equal(saved.affine, expected.affine)
    assert np.array_equal(np.asanyarray(saved.dataobj), np.asanyarray(expected.dataobj))


def test_reference_unpadding_equals_niftynet_ras_labels(reference_run):
    # NiftyNet's aggregator kept the labels after removing the volume padding (RAS, 1 mm)
    stages, cfg, loaded, _ = reference_run
    widths = pad_widths(loaded.data.shape, cfg.network.volume_padding_size)
    assert np.array_equal(unpad(stages["labels_padded_ras1mm"], widths), stages["labels_ras1mm"])


# --- options -----------------------------------------------------------------------------------

def synthetic_scan():
    rng = np.random.default_rng(0)
    data = rng.normal(10, 2, size=(12, 14, 10)).astype(np.float32)
    data[3:9, 4:10, 2:8] += 80
    return nib.Nifti1Image(data, np.diag([-2.0, 2.0, 2.0, 1.0]))


def test_switched_off_stages_pass_data_through(tmp_path):
    cfg = default_config(niftynet_home=tmp_path).replace(normalisation=False, whitening=False)
    loaded = load_and_resample(synthetic_scan(), cfg)
    pre = preprocess(loaded.data, cfg)
    assert pre.mask.all()
    assert np.array_equal(pre.standardised, pre.padded) and np.array_equal(pre.whitened, pre.padded)


def test_whitening_over_all_voxels_without_foreground_mask(tmp_path):
    cfg = default_config(niftynet_home=tmp_path).replace(normalisation=False, normalise_foreground_only=False)
    pre = preprocess(load_and_resample(synthetic_scan(), cfg).data, cfg)
    assert pre.mask.all()
    assert abs(pre.whitened.mean(dtype=np.float64)) < 1e-5
    assert pre.whitened.std(dtype=np.float64) == pytest.approx(1.0, abs=1e-5)


def test_empty_axcodes_and_pixdim_keep_the_file_grid(tmp_path):
    cfg = default_config(niftynet_home=tmp_path).replace(image={"axcodes": "", "pixdim": ""})
    scan = synthetic_scan()
    loaded = load_and_resample(scan, cfg)
    assert np.array_equal(loaded.data, scan.get_fdata(dtype=np.float32))
    labels = np.arange(np.prod(loaded.data.shape)).reshape(loaded.data.shape).astype(np.int32)
    padded = np.pad(labels, 10)
    assert np.array_equal(restore_to_input_space(padded, loaded, cfg), labels)


def test_restore_checks_the_padded_shape(tmp_path):
    cfg = default_config(niftynet_home=tmp_path)
    loaded = load_and_resample(synthetic_scan(), cfg)
    with pytest.raises(ValueError, match="not the padded shape"):
        restore_to_input_space(np.zeros(loaded.data.shape, np.int32), loaded, cfg)


def test_landmarks_missing_modality_is_reported(tmp_path):
    hist = tmp_path / "hist.txt"
    hist.write_text("T2 " + " ".join(map(str, range(13))) + "\n")
    cfg = default_config(niftynet_home=tmp_path).replace(histogram_ref_file=str(hist))
    with pytest.raises(Exception, match="no line for modality 'Modality0'"):
        preprocess(load_and_resample(synthetic_scan(), cfg).data, cfg)


# --- real scans: invariants that need no NiftyNet ---------------------------------------------------

@pytest.fixture(scope="module", params=T1_SCANS)
def real_scan(request):
    path = need(DATA / f"{request.param}.nii.gz")
    cfg = zoo_config()
    loaded = load_and_resample(path, cfg)
    return path, cfg, loaded, preprocess(loaded.data, cfg)


def test_real_scan_orientation_matches_nibabel_canonical(real_scan, tmp_path):
    path, cfg, loaded, _ = real_scan
    keep_grid = cfg.replace(image={"pixdim": ""})
    ras = load_and_resample(path, keep_grid).data
    canonical = nib.as_closest_canonical(nib.squeeze_image(nib.load(path)))
    assert np.array_equal(ras, np.asanyarray(canonical.dataobj).astype(np.float32))
    # and the 1 mm grid has NiftyNet's shape rule: round(n * pixdim / 1 mm)
    zooms = permute_like(loaded.pixdim, loaded.axcodes, "RAS")
    assert loaded.data.shape == tuple(int(round(n * z)) for n, z in zip(ras.shape, zooms))


def test_real_scan_preprocessing_invariants(real_scan):
    _, cfg, loaded, pre = real_scan
    assert pre.padded.shape == tuple(n + 20 for n in loaded.data.shape)
    for stage in (pre.padded, pre.standardised, pre.whitened):
        assert stage.dtype == np.float32 and np.isfinite(stage).all()
    mask = pre.mask
    assert mask.dtype == bool and 0.05 < mask.mean() < 0.95
    assert mask[tuple(n // 2 for n in mask.shape)]  # the head centre is foreground
    assert not mask[0, 0, 0]  # a corner is background
    white = pre.whitened[mask].astype(np.float64)
    assert abs(white.mean()) < 1e-5 and white.std() == pytest.approx(1.0, abs=1e-5)
    # the foreground median lands on the reference median landmark
    landmarks = read_landmarks(PACKAGED_LANDMARKS)
    assert np.median(pre.standardised[mask]) == pytest.approx(float(landmarks[6]), abs=1e-3)


def test_real_scan_label_round_trip(real_scan):
    # labels drawn in the scan's own grid, carried through the same geometry, come back unchanged
    _, cfg, loaded, _ = real_scan
    labels = (np.arange(np.prod(loaded.original_shape)) % 157).reshape(loaded.original_shape).astype(np.int32)
    ras = reorient(labels, loaded.axcodes, "RAS")
    up = resample_to_pixdim(ras, permute_like(loaded.pixdim, loaded.axcodes, "RAS"), (1.0, 1.0, 1.0), order=0)
    back = restore_to_input_space(np.pad(up, 10), loaded, cfg)
    assert back.shape == loaded.original_shape and np.array_equal(back, labels)


# --- NiftyNet itself, when its environment is available -------------------------------------------

RESTORE_SNIPPET = """
import sys
sys.path.insert(0, sys.argv[1])
import reference as R  # NiftyNet with its compatibility shims
import numpy as np
from niftynet.engine.windows_aggregator_grid import GridSamplesAggregator
inp, work, order = sys.argv[2], sys.argv[3], int(sys.argv[4])
reader, _ = R.build_reader(inp, work, 64, order, R.DEFAULT_HIST)
_, data, _ = reader(idx=0)
shape = data['image'].shape[:3]
labels = np.load(work + '/labels_padded.npy')
agg = GridSamplesAggregator(image_reader=reader, output_path=work, window_border=(),
                            interp_order=0, postfix=R.OUTPUT_POSTFIX)
loc = np.array([[0, 0, 0, 0, shape[0], shape[1], shape[2]]])
agg.decode_batch({'window_seg': labels[None, ..., None]}, loc)
agg.decode_batch({'window_seg': labels[None, ..., None]}, -np.ones_like(loc))
"""


def anisotropic_pir(tmp_path):
    """A reoriented, anisotropic, rescaled variant of a real scan."""
    img = nib.load(need(DATA / "real_t1_nipy_tiny_2mm_crop.nii.gz"))
    data = np.asanyarray(img.dataobj)
    affine = np.diag([-1.5, 2.5, 3.1, 1.0])
    affine[:3, 3] = [30.0, -50.0, -40.0]
    transform = nib.orientations.ornt_transform(nib.orientations.io_orientation(affine),
                                                nib.orientations.axcodes2ornt("PIR"))
    pir = nib.Nifti1Image(np.ascontiguousarray(nib.orientations.apply_orientation(data, transform)),
                          affine @ nib.orientations.inv_ornt_aff(transform, data.shape))
    pir.set_data_dtype(np.int16)
    pir.header.set_slope_inter(0.5, 3.0)
    path = tmp_path / "nipy_aniso_PIR.nii.gz"
    nib.save(pir, path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("case,interp_order", [("tiny", 0), ("aniso_pir", 3)])
def test_all_stages_match_niftynet_oracle(tmp_path, case, interp_order):
    python = os.environ.get("NIFTYPORT_ORACLE_PYTHON")
    if not python:
        pytest.skip("set NIFTYPORT_ORACLE_PYTHON to the Python of a NiftyNet 0.6.0 environment")
    script = need(ORACLE / "reference.py")
    scan = need(DATA / "real_t1_nipy_tiny_2mm_crop.nii.gz") if case == "tiny" else anisotropic_pir(tmp_path)
    out = tmp_path / "oracle"
    run = subprocess.run([python, str(script), str(scan), str(out), "--preprocess-only", "--window", "16",
                          "--interp-order", str(interp_order)], capture_output=True, text=True, timeout=600)
    dump = out / "dump"
    assert (dump / "preprocessed.npy").exists(), run.stderr[-2000:]
    cfg = zoo_config().replace(image={"interp_order": interp_order})
    loaded = load_and_resample(scan, cfg)
    pre = preprocess(loaded.data, cfg)
    exact = (out / "meta.json").exists() and same_numpy_as(out / "meta.json")
    assert_stage(loaded.data, np.load(dump / "stage0_reader_ras1mm.npy"), exact=True)
    assert_stage(pre.padded, np.load(dump / "stage1_padded.npy"), exact=True)
    assert_stage(pre.mask, np.load(dump / "foreground_mask.npy"), exact=True)
    assert_stage(pre.standardised, np.load(dump / "stage2_histnorm.npy"), exact=exact)
    assert_stage(pre.whitened, np.load(dump / "preprocessed.npy"), exact=exact)  # NiftyNet's reader output
    # labels back to the input grid through NiftyNet's aggregator
    work = tmp_path / "restore"
    work.mkdir()
    shape = pre.padded.shape
    grid = np.indices(shape).astype(np.int64)
    labels = ((grid[0] * 7 + grid[1] * 3 + grid[2] * 11) // 5 % 160).astype(np.int32)
    np.save(work / "labels_padded.npy", labels)
    (work / "restore.py").write_text(textwrap.dedent(RESTORE_SNIPPET))
    run = subprocess.run([python, str(work / "restore.py"), str(ORACLE), str(scan), str(work), str(interp_order)],
                         capture_output=True, text=True, timeout=600)
    written = sorted(work.glob("window_seg_*.nii.gz"))
    assert written, run.stderr[-2000:]
    expected = nib.load(written[0])
    ours = restore_to_input_space(labels, loaded, cfg)
    assert np.array_equal(ours, np.asanyarray(expected.dataobj))
    saved = nib.load(save_labels(tmp_path / "ours.nii.gz", ours, loaded.affine, loaded.header))
    assert np.array_equal(saved.affine, expected.affine)
