"""``niftyport brats``: the BraTS 2017 cascade of github.com/taigw/brats17 against its own ``test.py``.

Reference: ``tests/data/brats/small.{npz,json}``, made by ``tests/oracle/make_brats_refs.py``, which
runs the repository's unmodified ``test.py`` (its data loader, ``util/MSNet.py`` on NiftyNet 0.6.0 in
TensorFlow with the nine real checkpoints, its sliding batches and post-processing) on the input of
``tests/brats_inputs.py`` with ``tests/data/brats/test_small.txt`` after ``np.random.seed(seed)``.
The unit tests check the batch composition and the post-processing on hand-computed cases.
"""
from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bad_input import assert_refused
from brats_inputs import MASK_FILE, T1_FILE, brats_channels, write_channels
from conftest import DATA, MODELS, need

from niftyport.cli import main
from niftyport.errors import ConfigError, WeightsError
from niftyport.segmentation import brats

REFS = Path(__file__).parent / "data" / "brats"
BRATS17 = MODELS / "brats17"
SMALL = REFS / "test_small.txt"


def weights() -> Path:
    need(BRATS17 / "msnet_wt32_20000.ckpt.index")
    return BRATS17


# --------------------------------------------------------------------------- configuration


def test_config17_is_the_published_config():
    """The built-in constants are what the repository's config17/test_all_class.txt says."""
    assert brats.read_config(need(BRATS17 / "test_all_class.txt")) == brats.CONFIG17
    net = brats.CONFIG17.nets["whole"][1]
    assert (net.scope, net.data_shape, net.label_shape, net.checkpoint) == \
        ("MSNet_WT32sg", (19, 160, 180), (11, 160, 180), "msnet_wt32sg_20000.ckpt")
    assert [n.downsample_twice for n in brats.CONFIG17.nets["enhancing"]] == [False] * 3
    assert (brats.CONFIG17.batch_size, brats.CONFIG17.roi_margin) == (5, 5)


def test_small_config():
    cfg = brats.read_config(SMALL)
    assert cfg.batch_size == 3 and cfg.nets["enhancing"][2].data_shape == (19, 32, 32)


def test_config_refusals(tmp_path):
    text = SMALL.read_text()
    bad = tmp_path / "bad.txt"
    bad.write_text(text.replace("[testing]", "[testing]\nwhole_tumor_only = True"))
    with pytest.raises(ConfigError, match="whole_tumor_only"):
        brats.read_config(bad)
    bad.write_text(text.replace("label_shape         = [11, 32, 32, 1]", "label_shape = [9, 32, 32, 1]", 1))
    with pytest.raises(ConfigError, match=r"network3ax.*predicts \[D - 8"):
        brats.read_config(bad)
    bad.write_text(text.replace("[network2sg]", "[other]"))
    with pytest.raises(ConfigError, match=r"no \[network2sg\]"):
        brats.read_config(bad)


# --------------------------------------------------------------------------- sub-images and batches


def test_slab_centres_and_slots():
    # range(5, D + 5, 11), the last moved to D - 5
    assert brats.slab_centres(40, 11) == [5, 16, 27, 35]
    assert brats.slab_centres(26, 11) == [5, 16, 21]
    assert brats.slab_centres(11, 11) == [5]
    assert brats.batch_slots(4, 3) == [[0, 1, 2], [3, -1, -1]]
    assert brats.batch_slots(6, 3) == [[0, 1, 2], [3, 4, 5]]
    assert brats.batch_slots(1, 5) == [[0, -1, -1, -1, -1]]


def test_adapted_shapes():
    wnet, tnet = brats.CONFIG17.nets["whole"][0], brats.CONFIG17.nets["core"][0]
    # shape mode 2: in-plane sides max(ceil(side / 4) * 4, config side)
    assert brats.adapted_shapes(wnet, (190, 150), 2) == ((19, 192, 160), (11, 192, 160))
    assert brats.adapted_shapes(wnet, (100, 100), 2) == ((19, 180, 160), (11, 180, 160))
    # shape mode 1: the config's shape when the plane fits, else adapted
    assert brats.adapted_shapes(tnet, (96, 40), 1) == ((19, 96, 96), (11, 96, 96))
    assert brats.adapted_shapes(tnet, (97, 40), 1) == ((19, 100, 96), (11, 100, 96))


def test_extract_roi_by_hand():
    volume = np.arange(4 * 5 * 6, dtype=np.float64).reshape(4, 5, 6)
    out = brats.extract_roi(volume, (1, 2, 3), (5, 3, 4), np.random.RandomState(3))
    noise = np.random.RandomState(3).normal(0, 1, size=(5, 3, 4))
    # rows: centre 1, 5 // 2 = 2 before (only 1 exists), 3 after -> volume rows 0..3 at out rows 1..4
    # cols: centre 2 -> volume 1..3; depth: centre 3 -> volume 1..4
    expected = noise.copy()
    expected[1:5, 0:3, 0:4] = volume[0:4, 1:4, 1:5]
    np.testing.assert_array_equal(out, expected)


def test_fill_batch_by_hand():
    images = [np.full((4, 2, 3, 3), float(i), np.float32) for i in range(5)]
    batch = brats.fill_batch(images, [3, 4, -1, -1, -1], "repeat", np.random.RandomState(0))
    assert batch.shape == (5, 2, 3, 3, 4) and batch.dtype == np.float32
    assert [float(b[0, 0, 0, 0]) for b in batch] == [3, 4, 3, 4, 3]
    rng = np.random.RandomState(0)
    batch = brats.fill_batch(images, [3, 4, -1, -1, -1], "random", rng)
    expected = np.random.RandomState(0).normal(0, 1, size=(3, 4, 2, 3, 3))
    np.testing.assert_array_equal(batch[2:], np.transpose(expected.astype(np.float32), (0, 2, 3, 4, 1)))
    # both modes take the same draws, so the rest of a run's noise is the same
    rng_repeat = np.random.RandomState(0)
    brats.fill_batch(images, [3, 4, -1, -1, -1], "repeat", rng_repeat)
    assert rng_repeat.normal() == rng.normal()


@pytest.mark.parametrize("fill, last", [("random", 11.0), ("repeat", 10.0)])
def test_view_probability_write_back(fill, last):
    """D = 26, labels 11 deep, batch 2: slabs at 5, 16, 21; batches [0, 1], [2, filler].

    The fake network outputs 10 * (batch number) + (place in batch). Slab 0 writes slices 0..10,
    slab 1 slices 11..21, slab 2 (centre 21) slices 16..25; test.py then writes the filler (11)
    at the last centre too (``random``), ``repeat`` discards it.
    """
    net = brats.ViewNet("whole", "axial", "x", "x", True, (19, 4, 4), (11, 4, 4))
    calls = []

    def predict(_net, batch):
        calls.append(batch.shape)
        k = len(calls) - 1
        out = np.zeros((batch.shape[0], 11, 4, 4, 2), np.float32)
        for place in range(batch.shape[0]):
            out[place, ..., 1] = 10 * k + place
        return out

    volumes = [np.ones((26, 4, 4))] * 4
    prob = brats.view_probability(volumes, net, (19, 4, 4), (11, 4, 4), predict, fill=fill,
                                  rng=np.random.RandomState(0), batch_size=2)
    assert calls == [(2, 19, 4, 4, 4)] * 2
    np.testing.assert_array_equal(prob[:, 0, 0, 1], [0.0] * 11 + [1.0] * 5 + [last] * 10)


def test_normalise_by_hand():
    volume = np.array([[[0, 2, 4], [6, 0, 8]]], np.int16)
    out = brats.normalise(volume, np.random.RandomState(5))
    values = np.array([2, 4, 6, 8], np.float64)
    noise = np.random.RandomState(5).normal(0, 1, size=volume.shape)
    expected = (volume - values.mean()) / values.std()
    expected[volume == 0] = noise[volume == 0]
    np.testing.assert_array_equal(out, expected)


# --------------------------------------------------------------------------- post-processing


def cube(shape, lo, side):
    out = np.zeros(shape, bool)
    out[tuple(slice(a, a + side) for a in lo)] = True
    return out


def test_largest_components_by_hand():
    shape = (20, 20, 20)
    big, small, tiny = cube(shape, (1, 1, 1), 3), cube(shape, (10, 10, 10), 2), cube(shape, (16, 16, 16), 1)
    # 27 and 8 voxels: 8 * 10 > 27, both kept; 27 and 1: only the largest
    np.testing.assert_array_equal(brats.largest_components(big | small), big | small)
    np.testing.assert_array_equal(brats.largest_components(big | tiny), big)
    np.testing.assert_array_equal(brats.largest_components(big | small | tiny, threshold=5), big | small)
    np.testing.assert_array_equal(brats.largest_components(big | small, threshold=30), np.zeros(shape, bool))
    # one component: returned as it is, whatever the threshold
    assert brats.largest_components(small, threshold=2000) is small
    # diagonal neighbours across an edge join (18-connectivity: one component of 2), across a corner they do not
    far = cube(shape, (10, 10, 10), 1)
    edge = cube(shape, (1, 1, 1), 1) | cube(shape, (2, 2, 1), 1)
    corner = cube(shape, (1, 1, 1), 1) | cube(shape, (2, 2, 2), 1)
    np.testing.assert_array_equal(brats.largest_components(edge | far, threshold=1.5), edge)
    assert not brats.largest_components(corner | far, threshold=1.5).any()


def test_remove_external_core_by_hand():
    shape = (20, 20, 20)
    main_region = cube(shape, (0, 0, 0), 4).astype(np.float32)
    inside, half, outside = cube(shape, (1, 1, 1), 2), cube(shape, (3, 10, 10), 2), cube(shape, (12, 12, 12), 2)
    straddle = cube(shape, (2, 2, 3), 2)  # 8 voxels, 4 of them in the main region: kept (>= 0.5)
    out = brats.remove_external_core(main_region, inside | half | outside | straddle)
    np.testing.assert_array_equal(out, inside | straddle)


@pytest.mark.parametrize("enhancing_side, expect_enhancing", [(4, True), (3, False)])
def test_fuse_labels_by_hand(enhancing_side, expect_enhancing):
    """A 14^3 whole tumour (> 2000 voxels) with a 6^3 core holding a 4^3 (64 voxels) or 3^3 (27 < 30) enhancing
    core; a stray 2^3 "core" outside the tumour and a stray whole-tumour blob are dropped."""
    shape = (30, 30, 30)
    whole = cube(shape, (3, 3, 3), 14)
    stray_whole = cube(shape, (24, 24, 24), 3)
    core, stray_core = cube(shape, (7, 7, 7), 6), cube(shape, (24, 3, 3), 2)
    enhancing = cube(shape, (8, 8, 8), enhancing_side)
    pred1 = (whole | stray_whole).astype(np.float32)
    out = brats.fuse_labels(pred1, (core | stray_core).astype(np.float32), enhancing.astype(np.float32))
    expected = np.zeros(shape, np.int16)
    expected[whole] = 2
    expected[core] = 1
    if expect_enhancing:
        expected[enhancing] = 4
    assert out.dtype == np.int16
    np.testing.assert_array_equal(out, expected)


# --------------------------------------------------------------------------- the cascade against test.py


@cache
def reference() -> tuple[dict, dict[str, np.ndarray]]:
    meta = json.loads((REFS / "small.json").read_text())
    with np.load(REFS / "small.npz") as npz:
        return meta, {k: npz[k] for k in npz.files}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    need(DATA / T1_FILE)
    need(DATA / MASK_FILE)
    return write_channels(DATA, tmp_path_factory.mktemp("brats_in"))


@pytest.fixture(scope="module")
def cascade(inputs):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        meta, _ = reference()
        return brats.segment_brats(*inputs, weights_dir=weights(), fill="random", seed=meta["seed"],
                                   config=SMALL, device="cpu", result=True, record=True)
    finally:
        torch.set_num_threads(threads)


def test_cascade_batches_are_test_py_batches(cascade):
    """Every batch fed to every network is bit for bit the one test.py fed TensorFlow (sha256)."""
    meta, _ = reference()
    _, result = cascade
    ours = [(net.scope, list(batch.shape), brats_sha(batch)) for net, batch, _ in result.batches]
    theirs = [(re.sub(r"_\d+$", "", b["scope"]), b["shape"], b["input_sha256"]) for b in meta["batches"]]
    assert ours == theirs


def brats_sha(array: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def test_cascade_probabilities_match_tensorflow(cascade):
    """Each batch's softmax at 512 fixed points: within 1e-4 of TensorFlow's (float32 batch-norm sums)."""
    meta, arrays = reference()
    _, result = cascade
    worst = 0.0
    for i, (_, _, prob) in enumerate(result.batches):
        ours = prob[..., 1].reshape(-1)[arrays[f"batch{i}_where"]]
        worst = max(worst, float(np.abs(ours - arrays[f"batch{i}_p1"]).max()))
        assert int((prob[..., 1] > prob[..., 0]).sum()) == meta["batches"][i]["argmax_1"], i
    assert worst < 1e-4, worst


def test_cascade_labels_match_test_py(cascade, inputs):
    """test.py's label map, voxel for voxel; on FLAIR's grid and affine."""
    img, _ = cascade
    meta, arrays = reference()
    labels = np.asarray(img.dataobj)
    assert labels.shape == arrays["labels"].shape
    assert int((labels != arrays["labels"]).sum()) == 0
    assert {str(int(v)): int((labels == v).sum()) for v in np.unique(labels)} == meta["label_counts"]
    np.testing.assert_array_equal(img.affine, nib.load(inputs[0]).affine)


# --------------------------------------------------------------------------- the command line


def fake_predict(net, batch):
    """A stand-in network (no weights): class 1 where the FLAIR channel of the central slices exceeds 1."""
    centre = batch[:, 4:batch.shape[1] - 4, ..., 0]
    p1 = 1 / (1 + np.exp(-4 * (centre - 1.0)))
    return np.stack([1 - p1, p1], axis=-1).astype(np.float32)


def test_cli_writes_labels(inputs, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(brats, "torch_predictor", lambda folder, **kwargs: fake_predict)
    folder = tmp_path / "weights"
    folder.mkdir()
    for stage in brats.CONFIG17.nets.values():
        for net in stage:
            for suffix in (".index", ".data-00000-of-00001"):
                (folder / f"{net.checkpoint}{suffix}").write_bytes(b"")
    out = tmp_path / "seg.nii.gz"
    args = ["brats", *map(str, inputs), "-o", str(out), "--weights-dir", str(folder), "--config", str(SMALL), "-q"]
    assert main(args) == 0
    img = nib.load(out)
    labels = np.asarray(img.dataobj)
    assert labels.shape == nib.load(inputs[0]).shape and set(np.unique(labels)) <= {0, 1, 2, 4}
    assert (labels > 0).any()
    np.testing.assert_array_equal(img.affine, nib.load(inputs[0]).affine)
    expected = np.asarray(brats.segment_brats(*inputs, config=SMALL, predict=fake_predict).dataobj)
    np.testing.assert_array_equal(labels, expected)
    capsys.readouterr()
    assert main(args) == 2 and "exists; use --force" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0
    monkeypatch.setenv(brats.ENV_WEIGHTS, str(folder))
    assert main([a for a in args if a not in ("--weights-dir", str(folder))] + ["--force"]) == 0


def test_bad_inputs(inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(brats.ENV_WEIGHTS, raising=False)
    folder = tmp_path / "inputs"
    folder.mkdir()
    scans = []
    for p in inputs:
        (folder / p.name).write_bytes(p.read_bytes())
        scans.append(folder / p.name)
    out_dir = tmp_path / "out"
    out = out_dir / "seg.nii.gz"
    w = tmp_path / "weights"
    w.mkdir()
    base = ["brats", *scans]
    # no weights anywhere; an empty folder names the first missing checkpoint
    assert_refused(capsys, base + ["-o", out], names=None, inputs=folder, outputs=out_dir,
                   problem=brats.ENV_WEIGHTS)
    assert_refused(capsys, base + ["-o", out, "--weights-dir", w], names=w / "msnet_wt32_20000.ckpt.index",
                   inputs=folder, outputs=out_dir, problem="missing")
    # a missing scan, scans of two grids, an output over an input, an unknown fill mode
    with pytest.raises(WeightsError):
        brats.weights_folder(tmp_path / "nowhere")
    for stage in brats.CONFIG17.nets.values():
        for net in stage:
            for suffix in (".index", ".data-00000-of-00001"):
                (w / f"{net.checkpoint}{suffix}").write_bytes(b"")
    ok = ["-o", out, "--weights-dir", w]
    missing = folder / "none_t2.nii.gz"
    assert_refused(capsys, ["brats", *scans[:3], missing, *ok], names=missing, inputs=folder, outputs=out_dir,
                   problem="no such file")
    other = folder / "other_t1.nii.gz"
    img = nib.load(scans[1])
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:-1], img.affine), other)
    assert_refused(capsys, ["brats", scans[0], other, *scans[2:], *ok], names=other, inputs=folder,
                   outputs=out_dir, problem="share one grid")
    assert "is the input file" in assert_refused(capsys, base + ["-o", scans[2], "--weights-dir", w, "--force"],
                                                 names=None, inputs=folder, outputs=out_dir)
    assert_refused(capsys, base + [*ok, "--fill", "noise"], names=None, inputs=folder, outputs=out_dir,
                   problem="--fill")
    # corrupt checkpoints: the loader names the file
    message = assert_refused(capsys, base + [*ok, "--config", SMALL, "--device", "cpu"], names=None, inputs=folder,
                             outputs=out_dir)
    assert "msnet_wt32_20000" in message


def test_published_shapes_wnet_batches_are_test_py_batches():
    """At the published config17 shapes (whole brain, W-Net adapted to 180 x 160 and more, batches of 5) the
    W-Net's seven batches are test.py's bit for bit: they depend on the noise stream, not on predictions.

    Reference ``brain17`` (``make_brats_refs.py --config test_all_class.txt --crop brain``); the whole
    cascade at these shapes is compared by ``tests/oracle/compare_brats_refs.py brain17`` (minutes).
    """
    need(DATA / T1_FILE)
    need(DATA / MASK_FILE)
    meta = json.loads((REFS / "brain17.json").read_text())
    channels, _ = brats_channels(DATA, meta["crop"])
    rng = np.random.RandomState(meta["seed"])
    images, _, _ = brats.prepare_inputs([np.transpose(c, (2, 1, 0)) for c in channels], rng)
    record = []

    def predict(net, batch):
        return np.zeros((batch.shape[0], batch.shape[1] - 8, *batch.shape[2:4], 2), np.float32)

    brats.three_view_probability(images, brats.CONFIG17.nets["whole"], predict, fill="random", rng=rng,
                                 batch_size=brats.CONFIG17.batch_size, record=record)
    theirs = [(re.sub(r"_\d+$", "", b["scope"]), b["shape"], b["input_sha256"]) for b in meta["batches"]]
    assert [(n.scope, list(b.shape), brats_sha(b)) for n, b, _ in record] == theirs[:len(record)]
    assert len(record) == 7 and theirs[len(record)][0] == "MSNet_TC32"
