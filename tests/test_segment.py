"""``niftyport segment``: any NiftyNet segmentation config, end to end.

Stitching is checked with networks whose output is known in closed form
(one-hot copies of the input, cropped copies as UNet3D's valid output);
NiftyNet's own application is the reference in ``test_segment_oracle*``.
"""
from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from conftest import one_line_error
from niftyport.cli import main
from niftyport.config import load_config
from niftyport.errors import ConfigError, ImageError, OptionError
from niftyport.inference.aggregation import GridAggregator, output_offset
from niftyport.inference.windows import post_process, run_windows
from niftyport.segmentation.application import run_segmentation


class OneHot(torch.nn.Module):
    """Logits that are the one-hot code of channel 0 (integers 0..K-1), cropped by ``crop`` per side."""

    def __init__(self, classes: int, crop: int = 0):
        super().__init__()
        self.classes, self.crop = classes, crop

    def forward(self, x):
        labels = x[:, 0].round().long().clamp(0, self.classes - 1)
        logits = torch.nn.functional.one_hot(labels, self.classes).movedim(-1, 1).float() * 5.0
        c = self.crop
        return logits[:, :, c:logits.shape[2] - c, c:logits.shape[3] - c, c:logits.shape[4] - c] if c else logits


def label_volume(shape, classes, seed=0):
    return np.random.default_rng(seed).integers(0, classes, size=shape).astype(np.float32)


def run(capsys, *args):
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


# --- the grid aggregator with outputs of any size -------------------------------------------------

def test_output_offset_centres_a_smaller_output_and_refuses_too_small_a_border():
    assert output_offset((16, 16, 16), (16, 16, 16), (3, 3, 3)) == (3, 3, 3)
    assert output_offset((8, 8, 8), (16, 16, 16), (4, 5, 4)) == (0, 1, 0)
    with pytest.raises(OptionError, match=r"border >= \(4, 4, 4\)"):
        output_offset((8, 8, 8), (16, 16, 16), (3, 3, 3))


@pytest.mark.parametrize("crop,border", [(0, 0), (0, 2), (4, 4), (4, 5)])
def test_window_loop_rebuilds_the_volume_with_same_or_smaller_outputs(crop, border):
    volume = label_volume((21, 18, 24), 4)[..., None]
    labels = run_windows(OneHot(4, crop), volume, window=(16, 16, 16), border=(border,) * 3, batch_size=3)
    assert labels.dtype == np.int32 and labels.shape == volume.shape[:3]
    inner = (slice(border, -border or None),) * 3
    assert np.array_equal(labels[inner], volume[..., 0][inner].astype(np.int32))
    if border:  # the frame no cropped window reaches stays 0, as NiftyNet's zero-initialised volume
        assert not labels[:border].any() and not labels[:, :, -border:].any()


def test_window_loop_probabilities_and_fill_constant():
    volume = label_volume((12, 12, 12), 3)[..., None]
    probabilities = run_windows(OneHot(3), volume, window=(8, 8, 8), border=(1, 1, 1), batch_size=2,
                                output="probabilities", num_classes=3, fill=-1.0)
    assert probabilities.dtype == np.float32 and probabilities.shape == (12, 12, 12, 3)
    logits = 5.0 * np.eye(3)[volume[..., 0].astype(int)]
    expected = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    assert np.allclose(probabilities[1:-1, 1:-1, 1:-1], expected[1:-1, 1:-1, 1:-1], atol=1e-6)
    assert np.all(probabilities[0] == -1.0)
    with pytest.raises(OptionError, match="gives 3 classes, the config says 4"):
        run_windows(OneHot(3), volume, window=(8, 8, 8), border=(1, 1, 1), batch_size=1,
                    output="probabilities", num_classes=4)


def test_last_written_window_wins_with_repeats_filling_the_last_batch():
    # axis of 20, window 12, border 1: starts 0, 8 and their mean 4; with batch 2 the list is
    # extended by window 0 again, written last: it wins over window 4 on x = 5..10
    class Index(torch.nn.Module):
        def forward(self, x):  # class = the window's first voxel value (its start), as one-hot
            return OneHot(21)(x[:, :, :1, :1, :1].expand_as(x).contiguous())
    volume = np.broadcast_to(np.arange(20, dtype=np.float32)[:, None, None, None], (20, 8, 8, 1)).copy()
    line = run_windows(Index(), volume, window=(12, 8, 8), border=(1, 0, 0), batch_size=2)[:, 4, 4]
    assert line.tolist() == [0] * 11 + [4] * 4 + [8] * 4 + [0]


def test_grid_aggregator_keeps_the_labels_doctest_behaviour():
    agg = GridAggregator((6, 4, 4), (1, 1, 1), channels=2, dtype=np.float32)
    agg.add(np.ones((4, 4, 4, 2), np.float32), (0, 0, 0, 4, 4, 4))
    assert agg.volume.shape == (6, 4, 4, 2) and agg.volume[1:3, 1:3, 1:3].min() == 1.0


def test_post_process_takes_the_first_of_tied_classes():
    tied = torch.zeros(1, 3, 1, 1, 1)
    assert post_process(tied, "labels").ravel().tolist() == [0]



def test_highres3dnet_labels_take_the_fast_engine_with_the_window_loops_labels():
    # segment() sends HighRes3DNet's labels to parcellate's engine: same labels as the plain loop
    from niftyport import networks
    from niftyport.inference.engines import run_mode

    torch.manual_seed(1)
    model = networks.build("highres3dnet", num_classes=5, in_channels=2)
    volume = np.random.default_rng(8).standard_normal((28, 24, 20, 2)).astype(np.float32)
    window = dict(window=(16, 16, 16), border=(2, 2, 2), batch_size=2)
    fast = run_mode("niftynet", model, volume, device="cpu", **window)
    assert np.array_equal(fast, run_windows(model, volume, **window))


def test_regression_prelu_highres3dnet_is_not_run_with_the_relu_engine():
    # the region engine applies ReLU after every batch norm: a PReLU HighRes3DNet must take the plain
    # loop (it gave 3987 other labels of 13440 before)
    from niftyport import networks
    from niftyport.inference.engines import run_mode

    torch.manual_seed(1)
    model = networks.build("highres3dnet", num_classes=5, acti_func="prelu")
    for name, p in model.named_parameters():
        if "alpha" in name:
            torch.nn.init.uniform_(p, 0.5, 0.9)
    volume = np.random.default_rng(8).standard_normal((28, 24, 20, 1)).astype(np.float32)
    window = dict(window=(16, 16, 16), border=(2, 2, 2), batch_size=2)
    assert np.array_equal(run_mode("niftynet", model, volume, device="cpu", **window),
                          run_windows(model, volume, **window))


# --- configs and pipelines ------------------------------------------------------------------------

def write_scan(path, data, affine=None):
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), np.diag([-1.0, 1.0, 1.0, 1.0])
                             if affine is None else affine), path)
    return path


def write_config(folder: Path, *, network="toynet", classes=3, sections=None, extra_network="",
                 extra_inference="", extra_segmentation="", image="T1", padding="2"):
    sections = sections or {"T1": "spatial_window_size = (8, 8, 8)\n"}
    text = "".join(f"[{name}]\n{body}\n" for name, body in sections.items())
    text += (f"[SYSTEM]\nmodel_dir = {folder}\n[NETWORK]\nname = {network}\nbatch_size = 2\n"
             f"volume_padding_size = {padding}\n{extra_network}\n"
             f"[INFERENCE]\nborder = (1, 1, 1)\nsave_seg_dir = {folder / 'out'}\n{extra_inference}\n"
             f"[SEGMENTATION]\nimage = {image}\nnum_classes = {classes}\n{extra_segmentation}\n")
    path = folder / "model.ini"
    path.write_text(text)
    return path


@pytest.fixture
def toynet_weights(tmp_path):
    from niftyport import networks
    from niftyport.weights import save_safetensors

    torch.manual_seed(0)
    model = networks.build("toynet", num_classes=3, in_channels=1)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.5)
    return save_safetensors(model.state_dict(), tmp_path / "toynet.safetensors")


def test_segment_writes_labels_next_to_the_input_and_refuses_to_overwrite(capsys, tmp_path, toynet_weights):
    scan = write_scan(tmp_path / "ct.nii.gz", np.random.default_rng(1).gamma(2.0, 50.0, (11, 9, 10)))
    before = scan.read_bytes()
    config = write_config(tmp_path)
    status, out, err = run(capsys, "segment", scan, "--config", config, "--weights", toynet_weights, "-q",
                           "--device", "cpu")
    assert status == 0, err
    written = tmp_path / "ct_segmentation.nii.gz"
    img = nib.load(written)
    assert img.shape == (11, 9, 10) and img.get_data_dtype() == np.int32
    assert np.array_equal(img.affine, nib.load(scan).affine) and scan.read_bytes() == before
    assert img.header["descrip"].tobytes().rstrip(b"\0") == b"niftyport toynet labels"
    status, _, err = run(capsys, "segment", scan, "--config", config, "--weights", toynet_weights, "-q")
    one_line_error(status, err, str(written), "use --force")
    status, _, err = run(capsys, "segment", scan, "--config", config, "-o", scan, "--weights", toynet_weights)
    one_line_error(status, err, "is the input file")
    status, _, err = run(capsys, "segment", scan, "--config", config, "-o", tmp_path / "s.txt", "--weights",
                         toynet_weights)
    one_line_error(status, err, "s.txt: cannot tell the image format")
    assert scan.read_bytes() == before and not (tmp_path / "s.txt").exists()


def test_segment_probabilities_in_niftynet_layout(tmp_path, toynet_weights):
    scan = write_scan(tmp_path / "ct.nii.gz", np.random.default_rng(1).gamma(2.0, 50.0, (11, 9, 10)))
    labels = run_segmentation(scan, config=write_config(tmp_path), weights=toynet_weights, device="cpu")
    probs = run_segmentation(scan, config=write_config(tmp_path, extra_segmentation="output_prob = True"),
                             weights=toynet_weights, device="cpu")
    assert probs.output.shape == (11, 9, 10, 1, 3) and probs.output.dtype == np.float32
    assert np.allclose(probs.output.sum(-1), 1.0, atol=1e-5)
    assert np.array_equal(probs.output[..., 0, :].argmax(-1), labels.output)
    img = probs.to_image()
    assert img.shape == (11, 9, 10, 1, 3) and img.get_data_dtype() == np.float32


def native(array: np.ndarray) -> np.ndarray:
    return array.astype(array.dtype.newbyteorder("="))


def test_mgz_outputs_hold_the_nifti_outputs_voxels_bit_for_bit(capsys, tmp_path, toynet_weights):
    # an .mgz input's output is .mgz by default (as parcellate); -o x.nii.gz writes NiftyNet's NIfTI
    rng = np.random.default_rng(1)
    affine = np.array([[-1.2, 0, 0, 40.0], [0, 0, 1.1, -20.0], [0, -0.9, 0, 12.0], [0, 0, 0, 1]])
    scan = tmp_path / "orig.mgz"
    nib.save(nib.MGHImage(rng.gamma(2.0, 50.0, (11, 9, 10)).astype(np.float32), affine), scan)
    common = ["--config", write_config(tmp_path), "--weights", toynet_weights, "-q", "--device", "cpu"]
    assert run(capsys, "segment", scan, *common)[0] == 0
    assert run(capsys, "segment", scan, *common, "-o", tmp_path / "seg.nii.gz")[0] == 0
    mgz, nii = nib.load(tmp_path / "orig_segmentation.mgz"), nib.load(tmp_path / "seg.nii.gz")
    assert isinstance(mgz, nib.MGHImage) and isinstance(nii, nib.Nifti1Image)
    a, b = (native(np.asanyarray(img.dataobj)) for img in (mgz, nii))   # MGH stores big-endian
    assert a.dtype == b.dtype == np.int32 and a.tobytes() == b.tobytes() and len(np.unique(a)) > 1
    assert np.allclose(mgz.affine, nii.affine, atol=1e-5) and np.allclose(nii.affine, affine, atol=1e-5)
    prob = write_config(tmp_path, extra_segmentation="output_prob = True")
    common[1] = prob
    assert run(capsys, "segment", scan, *common, "-o", tmp_path / "p.mgz")[0] == 0
    assert run(capsys, "segment", scan, *common, "-o", tmp_path / "p.nii.gz")[0] == 0
    pm, pn = (native(np.asanyarray(nib.load(tmp_path / name).dataobj)) for name in ("p.mgz", "p.nii.gz"))
    assert pn.shape == (11, 9, 10, 1, 3) and pm.shape == (11, 9, 10, 3)   # MGH: frames, no time axis
    assert pm.dtype == pn.dtype == np.float32 and pm.tobytes() == np.ascontiguousarray(pn[:, :, :, 0]).tobytes()


def test_segment_keeps_parcellates_conventions(capsys, tmp_path, toynet_weights, monkeypatch):
    from niftyport.outputs import stale_temporaries

    scan = write_scan(tmp_path / "ct.nii.gz", np.random.default_rng(1).gamma(2.0, 50.0, (11, 9, 10)))
    common = ["--config", write_config(tmp_path), "--weights", toynet_weights, "--device", "cpu"]
    status, out, err = run(capsys, "segment", scan, *common)           # a progress bar over the batches
    assert status == 0 and "windows" in err and "wrote" in out
    status, out, err = run(capsys, "segment", scan, *common, "-q", "--force")
    assert status == 0 and err == "" and out.strip() == f"wrote {tmp_path / 'ct_segmentation.nii.gz'}"
    status, _, err = run(capsys, "segment", scan, *common, "-q", "--force", "--max-memory", "4K")
    one_line_error(status, err, str(scan), "memory budget")             # checked on the header, before reading
    status, _, err = run(capsys, "segment", scan, *common, "-q", "--force", "--max-memory", "20K")
    one_line_error(status, err, "max_memory 0M is too small", "(15, 13, 14, 1)")
    status, _, err = run(capsys, "segment", scan, *common, "-q", "--force", "--device", "cuda:99")
    assert status == 2 and "cuda:99" in err and len(err.strip().splitlines()) == 1
    written = tmp_path / "ct_segmentation.nii.gz"
    before = written.read_bytes()

    def broken_write(self, *args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(nib.Nifti1Image, "to_file_map", broken_write)
    status, _, err = run(capsys, "segment", scan, *common, "-q", "--force")
    one_line_error(status, err, "No space left on device")
    assert written.read_bytes() == before and not stale_temporaries(written)   # whole or untouched


@pytest.mark.parametrize("make,fragment", [
    (lambda p: p, "no such file"),
    (lambda p: (p.write_text("not an image"), p)[1], "not an image nibabel can read"),
    (lambda p: write_scan(p, np.ones((6, 6, 6, 2))), "holds 2 volumes"),
    (lambda p: write_scan(p, np.random.default_rng(0).random((9, 9))), "a 3-D volume is needed"),
    (lambda p: write_scan(p, np.full((9, 9, 9), 3.0)), "every voxel has the same value"),
])
def test_bad_inputs_are_one_line_errors_naming_the_file(capsys, tmp_path, toynet_weights, make, fragment):
    scan = make(tmp_path / "bad.nii.gz")
    status, _, err = run(capsys, "segment", scan, "--config", write_config(tmp_path), "--weights", toynet_weights,
                         "-q")
    one_line_error(status, err, "bad.nii.gz", fragment)
    assert not (tmp_path / "bad_segmentation.nii.gz").exists()


def test_batch_run_names_outputs_as_niftynet_and_lists_them(capsys, tmp_path, toynet_weights):
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(2)
    for name in ("p2_ct.nii.gz", "p1_ct.nii.gz"):
        write_scan(data / name, rng.gamma(2.0, 50.0, (10, 9, 8)))
    config = write_config(tmp_path, sections={"ct": f"path_to_search = {data}\nfilename_contains = _ct\n"
                                                    "spatial_window_size = (8, 8, 8)\n"}, image="ct")
    status, out, err = run(capsys, "segment", "--config", config, "--weights", toynet_weights, "-q")
    assert status == 0, err
    out_dir = tmp_path / "out"
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == ["inferred.csv", "window_seg_p1__niftynet_out.nii.gz", "window_seg_p2__niftynet_out.nii.gz"]
    with open(out_dir / "inferred.csv", newline="") as f:
        assert list(csv.reader(f)) == [["p1", str(out_dir / names[1])], ["p2", str(out_dir / names[2])]]
    status, _, err = run(capsys, "segment", "--config", config, "--weights", toynet_weights, "-q")
    one_line_error(status, err, "exists", "--force")
    (tmp_path / "dataset_split.csv").write_text("p1,training\np2,inference\n")
    status, _, err = run(capsys, "segment", "--config", config, "--weights", toynet_weights, "-q", "--force")
    assert status == 0, err
    with open(out_dir / "inferred.csv", newline="") as f:
        assert [row[0] for row in csv.reader(f)] == ["p2"]


@pytest.mark.parametrize("change,fragment", [
    (dict(network="nosuchnet"), "[NETWORK] name = 'nosuchnet': unknown network"),
    (dict(network="unet_2d"), "unet_2d is a 2-D network; it takes windows (x, y, 1)"),
    (dict(network="unet_2d", sections={"T1": "spatial_window_size = (1, 188, 1)\n"}), "would get a 1-D input"),
    (dict(network="unet_2d", sections={"T1": "spatial_window_size = (64, 64)\n"}), "UNet2D"),
    (dict(sections={"T1": "spatial_window_size = (8, 8)\n"}), "toynet takes 3-D inputs"),
    (dict(extra_network="window_sampling = patch"), "no inference sampler"),
    (dict(network="unet"), "spatial_window_size (8, 8, 8)"),
    (dict(sections={"T1": ""}), "no spatial_window_size"),
    (dict(sections={"T1": "spatial_window_size = (8, 8, 8)\ncsv_data_file = x.csv\n"}), "[T1] csv_data_file"),
])
def test_configs_niftynet_cannot_run_are_refused_with_one_line(capsys, tmp_path, change, fragment):
    scan = write_scan(tmp_path / "ct.nii.gz", np.ones((9, 9, 9)))
    status, _, err = run(capsys, "segment", scan, "--config", write_config(tmp_path, **change), "-q")
    one_line_error(status, err, fragment)


def test_missing_weights_name_the_checkpoint_niftynet_would_restore(capsys, tmp_path):
    scan = write_scan(tmp_path / "ct.nii.gz", np.random.default_rng(0).gamma(2.0, 50.0, (9, 9, 9)))
    status, _, err = run(capsys, "segment", scan, "--config", write_config(tmp_path), "-q")
    one_line_error(status, err, f"no checkpoint {tmp_path / 'models'} ", "inference_iter = -1")



# --- 2-D networks ---------------------------------------------------------------------------------

class OneHot2D(torch.nn.Module):
    """2-D logits ``(N, K, x, y)``: the one-hot code of channel 0, cropped by ``crop`` per side."""

    def __init__(self, classes: int, crop: int = 0):
        super().__init__()
        self.classes, self.crop, self.calls = classes, crop, []

    def forward(self, x):
        self.calls.append(tuple(x.shape))
        labels = x[:, 0].round().long().clamp(0, self.classes - 1)
        logits = torch.nn.functional.one_hot(labels, self.classes).movedim(-1, 1).float() * 5.0
        c = self.crop
        return logits[:, :, c:logits.shape[2] - c, c:logits.shape[3] - c] if c else logits


@pytest.mark.parametrize("border", [(2, 2, 0), (2, 2, 2), (3, 2, 5)])
def test_2d_windows_rebuild_a_volume_slice_by_slice_whatever_the_z_border(border):
    # NiftyNet's crop_batch crops a 2-D output in x and y only: the z border changes nothing
    from niftyport.inference.windows import PlanarNetwork

    volume = label_volume((21, 18, 4), 4)[..., None]
    net = OneHot2D(4, crop=2)
    labels = run_windows(PlanarNetwork(net), volume, window=(12, 10, 1), border=border[:2] + (0,), batch_size=3)
    assert set(net.calls) == {(3, 1, 12, 10)}                  # 2-D batches of 3 windows, one slice each
    inner = (slice(border[0], -border[0] or None), slice(border[1], -border[1] or None))
    assert np.array_equal(labels[inner], volume[..., 0][inner].astype(np.int32))
    assert len(net.calls) * 3 >= 4 * 3                          # every slice of the 4 went through the network


def test_2d_network_runs_on_a_2d_nifti_and_writes_it_2d(tmp_path):
    scan = tmp_path / "slice.nii.gz"
    data = label_volume((13, 11), 3, seed=4) * 40.0 + 7.0
    nib.save(nib.Nifti1Image(data, np.diag([-0.8, 0.8, 3.0, 1.0])), scan)
    sections = {"T1": "spatial_window_size = (188, 188)\naxcodes = (A, R, S)\npixdim = (2.0, 2.0, 2.0)\n"}
    config = write_config(tmp_path, network="unet_2d", sections=sections, padding="(90, 90, 2)")
    class Identity2D(OneHot2D):  # classes from the raw intensities: (v - 7) / 40
        def forward(self, x):
            return super().forward((x - 7.0) / 40.0)
    result = run_segmentation(scan, config=config, model=Identity2D(3), device="cpu")
    # NiftyNet neither reorients nor resamples a 2-D image: the config's axcodes and pixdim change nothing
    assert result.output.shape == (13, 11, 1) and result.output_padded.shape == (193, 191, 5)
    assert np.array_equal(result.output[..., 0], ((data - 7.0) / 40.0).round().astype(np.int32))
    img = result.to_image()
    assert img.shape == (13, 11)                               # labels (X, Y, 1, 1, 1) squeezed, as NiftyNet
    # NiftyNet's header repair: two zooms never match three column norms, the third column gets length 1
    assert np.allclose(img.affine, np.diag([-0.8, 0.8, 1.0, 1.0]))


def test_a_one_slice_volume_whose_output_niftynet_would_reorient_is_refused(tmp_path):
    scan = write_scan(tmp_path / "slice.nii.gz", label_volume((13, 11, 1), 3))   # a 3-D file, LAS
    sections = {"T1": "spatial_window_size = (188, 188, 1)\naxcodes = (R, A, S)\n"}
    with pytest.raises(ConfigError, match=r"axcodes = \('R', 'A', 'S'\): the 2-D input .* is LAS"):
        run_segmentation(scan, config=write_config(tmp_path, network="unet_2d", sections=sections,
                                                   padding="(90, 90, 0)"), model=OneHot2D(3), device="cpu")
    same = {"T1": "spatial_window_size = (188, 188, 1)\naxcodes = (L, A, S)\n"}
    result = run_segmentation(scan, config=write_config(tmp_path, network="unet_2d", sections=same,
                                                        padding="(90, 90, 0)"), model=OneHot2D(3), device="cpu")
    assert result.to_image().shape == (13, 11)


# --- several modalities ---------------------------------------------------------------------------

TWO_SECTIONS = {"T1": "spatial_window_size = (8, 8, 8)\ninterp_order = 1\n",
                "T2": "spatial_window_size = (8, 8, 8)\ninterp_order = 0\n"}


def two_scans(folder, shape=(10, 9, 8), second_shape=None):
    rng = np.random.default_rng(3)
    return (write_scan(folder / "t1.nii.gz", rng.gamma(2.0, 50.0, shape)),
            write_scan(folder / "t2.nii.gz", 3.0 * rng.gamma(2.0, 50.0, second_shape or shape)))


def test_modalities_are_the_channels_in_the_config_order(tmp_path):
    t1, t2 = two_scans(tmp_path)
    extra = "whitening = True\nnormalise_foreground_only = False"

    def whitened(images, **kw):
        class Channels(torch.nn.Module):  # two classes from the first channel's sign; records its input
            def forward(self, x):
                self.channels = x.shape[1]
                return torch.cat([torch.zeros_like(x[:, :1]), x[:, :1]], dim=1)
        model = Channels()
        result = run_segmentation(images, config=write_config(tmp_path, extra_network=extra, classes=2, **kw),
                                  model=model, device="cpu")
        return result.preprocessed.whitened, model.channels

    both, channels = whitened([t1, t2], sections=TWO_SECTIONS, image="T1, T2")
    alone1, _ = whitened(t1)
    alone2, _ = whitened(t2, sections={"T2": TWO_SECTIONS["T2"]}, image="T2")
    assert channels == 2 and both.shape == alone1.shape[:3] + (2,)
    assert np.allclose(both[..., 0], alone1[..., 0], atol=1e-6) and np.allclose(both[..., 1], alone2[..., 0], atol=1e-6)
    swapped, _ = whitened([t2, t1], sections=TWO_SECTIONS, image="T2, T1")
    assert np.allclose(swapped[..., 0], both[..., 1], atol=1e-6)


def test_modality_masks_fuse_and_or_and_skip_an_empty_modality():
    from niftyport.config import default_config
    from niftyport.preprocessing.modalities import modality_masks

    padded = np.zeros((12, 12, 12, 3), np.float32)
    padded[2:6, 2:10, 2:10, 0] = 1.0
    padded[2:10, 2:6, 2:10, 1] = 1.0   # channel 2 stays all zero: NiftyNet leaves it unmasked
    base = default_config(niftynet_home="/nonexistent")

    def masks(fusion):
        return modality_masks(padded, base.replace(foreground_type="threshold_plus",
                                                   multimod_foreground_type=fusion))
    one = [np.asarray(m) for m in (masks("and")[..., 0], masks("or")[..., 0])]
    assert np.array_equal(masks("and")[..., 0], masks("and")[..., 1]) and not masks("and")[..., 2].any()
    assert one[0].sum() < one[1].sum() and np.all(one[1] >= one[0])
    assert not masks("or")[..., 2].any()


def test_each_modality_uses_its_own_landmarks_line(tmp_path):
    t1, t2 = two_scans(tmp_path)
    (tmp_path / "landmarks.txt").write_text("T1 " + " ".join(str(v) for v in range(0, 130, 10)) + "\n")
    extra = f"normalisation = True\nhistogram_ref_file = {tmp_path / 'landmarks.txt'}"
    config = write_config(tmp_path, sections=TWO_SECTIONS, image="T1, T2", extra_network=extra, classes=2)
    with pytest.raises(ConfigError, match="no line for modality 'T2'"):
        run_segmentation([t1, t2], config=config, model=OneHot(2), device="cpu")


def test_wrong_count_and_different_grids_are_one_line_errors(capsys, tmp_path):
    from niftyport import networks
    from niftyport.weights import save_safetensors

    weights = save_safetensors(networks.build("toynet", num_classes=3, in_channels=2).state_dict(),
                               tmp_path / "toynet2.safetensors")
    t1, t2 = two_scans(tmp_path, second_shape=(10, 9, 9))
    config = write_config(tmp_path, sections=TWO_SECTIONS, image="T1, T2")
    status, _, err = run(capsys, "segment", t1, "--config", config, "--weights", weights, "-q")
    one_line_error(status, err, "image = T1, T2 needs 2 image(s)", "got 1")
    status, _, err = run(capsys, "segment", t1, t2, "--config", config, "--weights", weights, "-q")
    one_line_error(status, err, "modalities T1, T2 differ in file shape: (10, 9, 8) vs (10, 9, 9)")
    t2 = write_scan(tmp_path / "t2.nii.gz", np.random.default_rng(4).gamma(2.0, 50.0, (10, 9, 8)))
    coarse = dict(TWO_SECTIONS, T2=TWO_SECTIONS["T2"] + "pixdim = (2.0, 2.0, 2.0)\n")
    config = write_config(tmp_path, sections=coarse, image="T1, T2")
    with pytest.raises(ImageError, match="differ in resampled shape"):
        run_segmentation([t1, t2], config=config, model=OneHot(3), device="cpu")


def test_parcellation_keeps_to_one_modality(tmp_path):
    from niftyport.segmentation.pipeline import resolve_config

    config = write_config(tmp_path, network="highres3dnet", sections=TWO_SECTIONS, image="T1, T2")
    with pytest.raises(ConfigError, match="parcellation takes one image modality"):
        resolve_config(config)




@pytest.mark.parametrize("lines,fragment", [
    ("", "has no line 'label_label-from'"),
    ("label_label-from 0 5\nlabel_label-to 0 1 2\n", "label_label-from has 2 values, label_label-to 3"),
    ("label_label-from 0 5\nlabel_label-to 0 1\n", "2 labels in the mapping but num_classes = 3"),
])
def test_label_normalisation_needs_the_mapping_niftynet_trained(tmp_path, lines, fragment):
    from niftyport.segmentation.label_mapping import grid_label_mapping

    (tmp_path / "landmarks.txt").write_text("T1 " + " ".join(str(v) for v in range(13)) + "\n" + lines)
    config = load_config(write_config(tmp_path, extra_network=f"histogram_ref_file = {tmp_path / 'landmarks.txt'}",
                                      extra_segmentation="label_normalisation = True"))
    with pytest.raises(ConfigError, match=fragment):
        grid_label_mapping(config)
    assert grid_label_mapping(config.replace(output_prob=True)) is None  # NiftyNet maps labels only


# --- the resize sampler and aggregator ------------------------------------------------------------

def corner_aligned(n: int, m: int, order: int) -> np.ndarray:
    """(m, n) weights of scipy's zoom along one axis: output i samples input i * (n - 1) / (m - 1)."""
    weights = np.zeros((m, n))
    for i in range(m):
        x = i * (n - 1) / (m - 1) if m > 1 else 0.0
        if order == 0:
            weights[i, int(np.floor(x + 0.5))] = 1.0
        else:
            j = min(int(np.floor(x)), n - 2)
            weights[i, j], weights[i, j + 1] = 1.0 - (x - j), x - j
    return weights


@pytest.mark.parametrize("order", [0, 1])
def test_scipy_zoom_is_corner_aligned_as_the_resize_exactness_assumes(order):
    # pinned: scipy.ndimage.zoom's defaults (mode='constant', grid_mode=False) sample output voxel i at
    # i * (n - 1) / (m - 1); sizes chosen so that no nearest-neighbour coordinate is a tie
    from scipy import ndimage

    from niftyport.inference.resize import zoom_factors

    a = np.random.default_rng(5).random((7, 5, 4)).astype(np.float32)
    target = (11, 3, 4)
    out = ndimage.zoom(a, zoom_factors(target, a.shape), order=order)
    wx, wy, wz = (corner_aligned(n, m, order) for n, m in zip(a.shape, target))
    assert out.shape == target
    assert np.allclose(out, np.einsum("ai,bj,ck,ijk->abc", wx, wy, wz, a), atol=1e-6)


def test_zoom_to_a_target_shape_gives_that_shape():
    # scipy's output shape is round(n * zoom): with NiftyNet's zoom = float(t) / float(n) it is t
    from niftyport.inference.resize import zoom_channels

    for n in range(2, 40):
        for t in (1, 2, 7, 48, 144, n + 1):
            assert zoom_channels(np.zeros((n, 2, 2, 1), np.float32), (t, 2, 2), 0).shape == (t, 2, 2, 1)


def test_resize_aggregator_pads_the_edges_by_the_border_then_zooms_back():
    from niftyport.inference.resize import resize_input, resize_output

    window = np.arange(4 * 4 * 4, dtype=np.int32).reshape(4, 4, 4)
    back = resize_output(window, (16, 16, 16), border=(2, 2, 2), output_interp_order=0)
    padded = np.pad(window, 2, mode="edge")   # 8^3, then nearest-neighbour to 16^3: each voxel twice or so
    assert back.dtype == np.int32 and back.shape == (16, 16, 16)
    assert back[0, 0, 0] == padded[0, 0, 0] == window[0, 0, 0] and back[-1, -1, -1] == window[-1, -1, -1]
    assert set(np.unique(back)) == set(np.unique(window))
    volume = np.random.default_rng(6).random((48, 48, 48, 2)).astype(np.float32)
    assert resize_input(volume, (48, 48, 48), 3) is volume   # already the window's size: untouched


def test_resize_sampler_ignores_the_inference_window_and_uses_the_first_sections_interp_order(tmp_path):
    from niftyport.segmentation.application import inference_window

    config = load_config(write_config(tmp_path, extra_network="window_sampling = resize",
                                      extra_inference="spatial_window_size = (16, 16, 16)"))
    assert inference_window(config) == (8, 8, 8) and config.spatial_window_size == (16, 16, 16)
    scan = write_scan(tmp_path / "ct.nii.gz", np.random.default_rng(7).gamma(2.0, 50.0, (11, 9, 10)))
    result = run_segmentation(scan, config=config, model=OneHot(3), device="cpu")
    assert result.output.shape == (11, 9, 10) and result.output_padded.shape == (15, 13, 14)


# --- against NiftyNet's own net_segment inference -------------------------------------------------
# tests/oracle/make_segment_refs.py ran NiftyNet 0.6.0's application on these configs, with
# checkpoints of NiftyNet's own graph (seeded random weights, regenerated here by network_refs)
# and crops of real T1s from ../shared/data.

SEGMENT_REFS = Path(__file__).resolve().parent / "data" / "segment"


def oracle_case(name: str, folder: Path):
    """The case's meta and reference arrays; its inputs, landmarks and config written into ``folder``."""
    import hashlib
    import json

    from conftest import DATA, need

    meta = json.loads((SEGMENT_REFS / name / "meta.json").read_text())
    with np.load(SEGMENT_REFS / name / "reference.npz") as npz:
        reference = {key: npz[key] for key in npz}
    data = folder / "data"
    data.mkdir(parents=True)
    inputs = dict(meta["inputs"])
    affine = np.asarray(inputs.pop("affine"))
    for stem, spec in inputs.items():
        img = nib.load(need(DATA / spec["file"]))
        array = np.asanyarray(img.dataobj)
        array = array.reshape(array.shape[:3])[tuple(slice(s, s + n) for s, n in zip(spec["start"], spec["size"]))]
        array = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("=")))
        if spec.get("planar"):  # written as a 2-D NIfTI
            array = np.ascontiguousarray(array[:, :, 0])
        assert hashlib.sha256(array.tobytes()).hexdigest() == spec["sha256"], f"{stem}: crop differs"
        nib.save(nib.Nifti1Image(array, affine), data / f"{stem}.nii.gz")
    (folder / "landmarks.txt").write_text("".join(f"{k} {' '.join(map(str, v))}\n"
                                                  for k, v in meta["landmarks"].items()))
    config = folder / "config.ini"
    config.write_text(meta["config_template"].format(data=data, model_dir=folder, **meta["config_values"]))
    return meta, reference, config


def oracle_weights(meta):
    """The case's NiftyNet weights, regenerated from the oracle's seeds and checked against its digests.

    A network that tests/data/networks has no reference of (the 2-D DenseVNet)
    keeps its variable listing in ``tests/data/segment/_networks/<network_ref>/``.
    """
    import csv
    import hashlib
    import json

    from network_refs import _value, load_ref

    folder = SEGMENT_REFS / "_networks" / meta["network_ref"]
    if not folder.is_dir():
        return load_ref(meta["network_ref"]).variables
    recipe = json.loads((folder / "meta.json").read_text())
    with open(folder / "variables.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    rng = np.random.default_rng(recipe["seed"])
    variables = {row["name"]: _value(rng, row) for row in rows}
    for name, array in variables.items():
        assert hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest() == recipe["variable_sha256"][name]
    return variables


def preprocessed_digest(result) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(result.preprocessed.whitened).tobytes()).hexdigest()


@pytest.mark.parametrize("name", ["unet3d_t1t2_labels", "dense_vnet_resize_labels", "dense_vnet_zoo144_labels",
                                  "dense_vnet_grid_label_map", "dense_vnet_resize_label_map",
                                  "unet2d_slices_labels", "unet2d_planar_resize_labels", "dense_vnet_2d_labels"])
def test_labels_equal_niftynets_own_application(tmp_path, name):
    meta, reference, config = oracle_case(name, tmp_path)
    images = sorted((tmp_path / "data").iterdir())  # T1 before T2: the config's order
    result = run_segmentation(images, config=config, weights=oracle_weights(meta), device="cpu",
                              network_options=meta["network_attrs"])
    assert preprocessed_digest(result) == meta["preprocessed"][0]["sha256"]  # the network input, bit for bit
    img = result.to_image()  # NiftyNet's file: a 2-D image's labels (X, Y, 1) are written (X, Y)
    assert result.output.dtype == np.int32 and list(img.shape) == meta["output_shape"]
    assert np.array_equal(result.affine, np.asarray(meta["output_affine"]))
    differing = int(np.count_nonzero(np.asarray(img.dataobj) != reference["labels"]))
    assert differing == 0, f"{differing} voxels differ from NiftyNet's"
    assert len(np.unique(reference["labels"])) > 1  # a reference that can tell labels apart


@pytest.mark.parametrize("name", ["unet3d_t1t2_prob", "dense_vnet_resize_prob", "dense_vnet_zoo144_prob",
                                  "unet2d_planar_prob", "dense_vnet_2d_prob"])
def test_probabilities_within_1e5_of_niftynets_own_application(tmp_path, name):
    meta, reference, config = oracle_case(name, tmp_path)
    images = sorted((tmp_path / "data").iterdir())
    result = run_segmentation(images, config=config, weights=oracle_weights(meta), device="cpu",
                              network_options=meta["network_attrs"])
    assert preprocessed_digest(result) == meta["preprocessed"][0]["sha256"]
    assert result.output.dtype == np.float32 and list(result.to_image().shape) == meta["output_shape"]
    lo, hi = meta["slab"] or (0, result.output.shape[2])
    diff = float(np.max(np.abs(result.output[:, :, lo:hi] - reference["probabilities"])))
    assert diff <= 1e-5, f"max |p - NiftyNet's p| = {diff:.3g}"


def test_batch_run_names_and_lists_outputs_as_niftynet(capsys, tmp_path):
    from niftyport.weights import save_safetensors
    from niftyport import networks

    meta, reference, config = oracle_case("dense_vnet_resize_labels", tmp_path)
    model = networks.load("dense_vnet", oracle_weights(meta), num_classes=9)
    weights = save_safetensors(model.state_dict(), tmp_path / "dense_vnet.safetensors")
    status, _, err = run(capsys, "segment", "--config", config, "--weights", weights, "-q", "--device", "cpu")
    assert status == 0, err
    out = tmp_path / "output" / meta["output_file"]
    with open(tmp_path / "output" / "inferred.csv", newline="") as f:
        assert list(csv.reader(f)) == [[meta["subject"], str(out)]]
    img = nib.load(out)
    assert img.get_data_dtype() == np.int32 and np.array_equal(np.asarray(img.dataobj), reference["labels"])


def test_control_the_2d_reference_tells_the_slicing_plane_apart(tmp_path):
    # the same run without the section's axcodes (windows over the file's own x-y planes, transposed
    # against ARS) must not match NiftyNet's labels
    meta, reference, config = oracle_case("unet2d_slices_labels", tmp_path)
    changed = load_config(config).replace(image={"axcodes": ()})
    result = run_segmentation(sorted((tmp_path / "data").iterdir()), config=changed, weights=oracle_weights(meta),
                              device="cpu", network_options=meta["network_attrs"])
    assert result.output.shape == reference["labels"].shape
    assert np.count_nonzero(result.output != reference["labels"]) > 1000   # 1641 of 4320


def test_control_the_resize_reference_tells_interpolation_orders_apart(tmp_path):
    # the same run with the ct section's interp_order 0 instead of 1 must not match NiftyNet's labels
    meta, reference, config = oracle_case("dense_vnet_resize_labels", tmp_path)
    changed = load_config(config).replace(image={"interp_order": 0})
    result = run_segmentation(sorted((tmp_path / "data").iterdir()), config=changed, weights=oracle_weights(meta),
                              device="cpu")
    assert np.count_nonzero(result.output != reference["labels"]) > 1000
