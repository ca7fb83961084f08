"""``niftyport finetune``: pairing, the new head, freezing, the written model and config, the demo's pieces.

Independent sources: the shipped weights read with ``safetensors.numpy``
(not niftyport's reader), NiftyNet's ``re.search`` rule applied by hand to
the variable names, Dice counted by hand, and the network rebuilt from the
written files and run directly.
"""
from __future__ import annotations

import configparser
import csv
import json
import re

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import CHECKPOINT, need, one_line_error
from safetensors.numpy import load_file

from niftyport import networks
from niftyport.cli import main
from niftyport.config import load_config
from niftyport.training.demo import DemoSettings, dice_per_class, run_finetune_demo, tissue_classes
from niftyport.training.finetune import FinetuneOptions, pair_files, start_model, subject_key
from niftyport.training.loop import train_step


def _mni_crop(size: int):
    """A ``size``^3 crop of the MNI152 T1 around the centre of the brain, and its tissue classes."""
    from nilearn.datasets import load_mni152_gm_template, load_mni152_wm_template

    from niftyport.segmentation.demo import mni152_t1

    t1 = mni152_t1()
    box = tuple(slice(c - size // 2, c - size // 2 + size) for c in (98, 116, 80))
    gm = load_mni152_gm_template(resolution=1).get_fdata()[box]
    wm = load_mni152_wm_template(resolution=1).get_fdata()[box]
    image = t1.slicer[box]
    return image, nib.Nifti1Image(tissue_classes(gm, wm), image.affine)


# --------------------------------------------------------------------------- pairing

def _touch(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")


def test_pairs_by_name_without_extension(tmp_path):
    _touch(tmp_path / "img", "sub-02.nii.gz", "sub-01.nii.gz", "README.txt")
    _touch(tmp_path / "lab", "sub-01.nii", "sub-02.mgz")
    pairs = pair_files(tmp_path / "img", tmp_path / "lab")
    assert [(p.subject_id, p.image.name, p.label.name) for p in pairs] == [
        ("sub01", "sub-01.nii.gz", "sub-01.nii"), ("sub02", "sub-02.nii.gz", "sub-02.mgz")]
    assert subject_key("a/x.img") == "x" and subject_key("b.c.nii.gz") == "bc"


def test_two_files_pair_whatever_their_names(tmp_path):
    _touch(tmp_path, "t1.nii.gz", "seg.nii.gz")
    [pair] = pair_files(tmp_path / "t1.nii.gz", tmp_path / "seg.nii.gz")
    assert (pair.image.name, pair.label.name) == ("t1.nii.gz", "seg.nii.gz")


@pytest.mark.parametrize("images, labels, fragment", [
    (("a.nii.gz", "b.nii.gz"), ("a.nii.gz",), "b.nii.gz: no label file with the same name"),
    (("a.nii.gz",), ("a.nii.gz", "c.nii"), "c.nii: no image file with the same name"),
    (("a.nii.gz",), ("README.txt",), "no image file"),
])
def test_unpaired_files_are_one_line_errors(tmp_path, capsys, images, labels, fragment):
    _touch(tmp_path / "img", *images)
    _touch(tmp_path / "lab", *labels)
    status = main(["finetune", str(tmp_path / "img"), str(tmp_path / "lab"), "--num-classes", "3",
                   "-o", str(tmp_path / "out")])
    one_line_error(status, capsys.readouterr().err, fragment)
    assert not (tmp_path / "out").exists()


def test_bad_options_are_one_line_errors(tmp_path, capsys):
    _touch(tmp_path / "img", "a.nii.gz")
    _touch(tmp_path / "lab", "a.nii.gz")
    base = ["finetune", str(tmp_path / "img"), str(tmp_path / "lab"), "-o", str(tmp_path / "out")]
    one_line_error(main(base + ["--num-classes", "3", "--from", "nonet"]), capsys.readouterr().err, "nonet")
    one_line_error(main(base + ["--num-classes", "3", "--freeze", "("]), capsys.readouterr().err, "regular expression")
    one_line_error(main(base), capsys.readouterr().err, "--num-classes")
    one_line_error(main(["finetune", "--demo", str(tmp_path / "img")]), capsys.readouterr().err, "--demo")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- head and freezing

def test_new_head_restore_and_freeze():
    spec = networks.get("highres3dnet")
    shipped = load_file(str(spec.pretrained.weights))
    freeze = "conv_0"   # NiftyNet's re.search: also every block's first convolution, res_*/conv_0/w
    start = start_model(FinetuneOptions(num_classes=3, freeze=freeze, lr=0.01))
    state = start.model.state_dict()
    assert tuple(state["conv_2.conv.weight"].shape) == (3, 80, 1, 1, 1)
    assert tuple(shipped["conv_2.conv.weight"].shape) == (160, 80, 1, 1, 1)
    # every variable but the head's is the shipped one, bit for bit
    for key, value in state.items():
        if key.startswith("conv_2.") or key.endswith("num_batches_tracked"):
            continue
        np.testing.assert_array_equal(value.numpy(), shipped[key], err_msg=key)
    assert start.new == sorted(f"HighRes3DNet/conv_2_bn/{n}" for n in
                               ("bn_/beta", "bn_/gamma", "bn_/moving_mean", "bn_/moving_variance", "conv_/w"))
    # by hand: conv_0_bn_relu's w, gamma, beta and the 9 blocks' conv_0/w
    expected = {f"HighRes3DNet/conv_0_bn_relu/{n}" for n in ("conv_/w", "bn_/gamma", "bn_/beta")} | {
        f"HighRes3DNet/res_{s}_{b}/conv_0/w" for s in (1, 2, 3) for b in (0, 1, 2)}
    assert set(start.frozen) == expected
    frozen_keys = {"conv_0.conv.weight", "conv_0.bn.weight", "conv_0.bn.bias",
                   *(f"res_{s}_{b}.conv_0.weight" for s in (1, 2, 3) for b in (0, 1, 2))}
    before = {k: p.detach().clone() for k, p in start.model.named_parameters()}
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.standard_normal((1, 1, 8, 8, 8)).astype(np.float32))
    label = torch.from_numpy(rng.integers(0, 3, (1, 1, 8, 8, 8)))
    for _ in range(2):
        train_step(start.model, start.optimiser, start.batch_norm, image, label)
    for key, p in start.model.named_parameters():
        if key in frozen_keys:
            assert torch.equal(p.detach(), before[key]), key
        else:
            assert not torch.equal(p.detach(), before[key]), key


def test_from_a_niftynet_checkpoint():
    """The model zoo's TF checkpoint as --from (network found from its names): the shipped weights' values."""
    need(CHECKPOINT.with_name(CHECKPOINT.name + ".index"))
    shipped = load_file(str(networks.get("highres3dnet").pretrained.weights))
    start = start_model(FinetuneOptions(num_classes=4, source=str(CHECKPOINT), freeze="res_1"))
    assert (start.spec.name, start.scope) == ("highres3dnet", "HighRes3DNet")
    for key, value in start.model.state_dict().items():
        if not key.startswith("conv_2.") and not key.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(value.numpy(), shipped[key], err_msg=key)
    assert tuple(start.model.conv_2.conv.weight.shape) == (4, 80, 1, 1, 1)
    assert len(start.frozen) == 3 * 6   # res_1_{0,1,2}: two convolutions, two gammas, two betas each


TOY_CONFIG = """[T1]
path_to_search = ./nowhere
spatial_window_size = (8, 8, 8)
interp_order = 1

[seg]
path_to_search = ./nowhere
interp_order = 0

[NETWORK]
name = toynet
batch_size = 1
whitening = True

[SEGMENTATION]
image = T1
label = seg
num_classes = 2

[TRAINING]
lr = 0.5
"""


def test_another_network_from_a_weights_file_and_config(tmp_path):
    """ToyNet (2 classes) from a .safetensors, its preprocessing from an .ini: a 3-class model."""
    from niftyport.training import finetune
    from niftyport.weights import save_safetensors

    source = networks.build("toynet", num_classes=2)
    save_safetensors(source.state_dict(), tmp_path / "toy.safetensors")
    (tmp_path / "toy.ini").write_text(TOY_CONFIG)
    rng = np.random.default_rng(1)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    nib.save(nib.Nifti1Image(rng.normal(size=(12, 12, 12)).astype(np.float32), affine), tmp_path / "a.nii.gz")
    nib.save(nib.Nifti1Image(rng.integers(0, 3, (12, 12, 12)).astype(np.uint8), affine), tmp_path / "a_seg.nii.gz")
    options = FinetuneOptions(num_classes=3, source=str(tmp_path / "toy.safetensors"), network="toynet",
                              base_config=str(tmp_path / "toy.ini"), max_iter=2, lr=0.01)
    result = finetune(tmp_path / "a.nii.gz", tmp_path / "a_seg.nii.gz", tmp_path / "out", options,
                      echo=lambda line: None)
    assert [it for it, _ in result.losses] == [1, 2]
    assert result.new == sorted(f"ToyNet/conv_output_bn/{n}" for n in
                                ("bn_/beta", "bn_/gamma", "bn_/moving_mean", "bn_/moving_variance", "conv_/w"))
    config = load_config(tmp_path / "out" / "config.ini")
    assert (config.network.name, config.segmentation.num_classes, config.network.whitening) == ("toynet", 3, True)
    assert config.image.spatial_window_size[:3] == (8, 8, 8) and config.image.interp_order == 1
    assert set(config.inputs) == {"Modality0", "Label"} and dict(config.training)["lr"] == "0.01"
    written = load_file(str(tmp_path / "out" / "models" / "model.ckpt-2.safetensors"))
    assert written["conv_output.conv.weight"].shape == (3, 10, 1, 1, 1)
    assert not np.array_equal(written["conv_input.conv.weight"], source.state_dict()["conv_input.conv.weight"].numpy())


# --------------------------------------------------------------------------- the written model

def test_written_model_runs_with_segment(tmp_path, capsys):
    image, label = _mni_crop(28)
    for folder, img in (("images", image), ("labels", label)):
        (tmp_path / folder).mkdir()
        nib.save(img, tmp_path / folder / "mni-crop.nii.gz")
    out = tmp_path / "model"
    two = ["finetune", str(tmp_path / "images"), str(tmp_path / "labels"), "--num-classes", "2", "-o", str(out)]
    one_line_error(main(two + ["--window", "16"]), capsys.readouterr().err, "mni-crop.nii.gz", "label values 0..2")
    assert not out.exists()
    args = ["finetune", str(tmp_path / "images"), str(tmp_path / "labels"), "--num-classes", "3",
            "--freeze", "res_1|res_2", "--max-iter", "2", "--window", "8", "--batch-size", "1",
            "--lr", "0.001", "-o", str(out), "--threads", "2"]
    assert main(args) == 0
    assert re.findall(r"iter (\d) loss", capsys.readouterr().out) == ["1", "2"]
    one_line_error(main(args), capsys.readouterr().err, "exists", "--force")
    config = load_config(out / "config.ini")
    assert (config.segmentation.num_classes, config.network.name) == (3, "highres3dnet")
    assert config.inference.inference_iter == 2
    assert config.system.model_dir == str(out.resolve())
    assert config.network.normalisation and config.network.whitening
    with open(out / "training_log.csv", newline="") as f:
        assert [row["iteration"] for row in csv.DictReader(f)] == ["1", "2"]
    summary = json.loads((out / "finetune.json").read_text())
    assert summary["options"]["freeze"] == "res_1|res_2" and len(summary["new"]) == 5
    # the TF checkpoint and the safetensors hold the same network
    from_ckpt = networks.load("highres3dnet", out / "models" / "model.ckpt-2", num_classes=3)
    from_st = networks.build("highres3dnet", num_classes=3)
    from_st.load_state_dict({k: torch.from_numpy(v) for k, v in
                             load_file(str(out / "models" / "model.ckpt-2.safetensors")).items()})
    # one window covering the padded 48^3 volume, no border: segment = argmax of one forward pass
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(out / "config.ini")
    parser["INFERENCE"]["spatial_window_size"] = "(48, 48, 48)"
    parser["INFERENCE"]["border"] = "(0, 0, 0)"
    with open(out / "one_window.ini", "w") as f:
        parser.write(f)
    seg_path = tmp_path / "seg.nii.gz"
    assert main(["segment", str(tmp_path / "images" / "mni-crop.nii.gz"), "--config", str(out / "one_window.ini"),
                 "-o", str(seg_path), "--device", "cpu", "--threads", "2", "-q"]) == 0
    segmented = np.asarray(nib.load(seg_path).dataobj)
    from niftyport.preprocessing import load_and_resample, preprocess

    one = load_config(out / "one_window.ini")
    x = preprocess(load_and_resample(tmp_path / "images" / "mni-crop.nii.gz", one).data, one).whitened
    with torch.no_grad():
        tensor = torch.from_numpy(np.ascontiguousarray(x[None, None]))
        logits_st = from_st.eval()(tensor)
        corner = tensor[:, :, :16, :16, :16]
        assert torch.equal(from_st(corner), from_ckpt.eval()(corner))
    expected = logits_st.argmax(dim=1)[0].numpy()[10:-10, 10:-10, 10:-10]
    assert segmented.shape == (28, 28, 28)
    np.testing.assert_array_equal(segmented, expected)


# --------------------------------------------------------------------------- the demo's pieces

def test_dice_by_hand():
    prediction = np.array([[0, 1, 1, 2], [2, 2, 0, 1]])
    target = np.array([[0, 1, 2, 2], [2, 1, 0, 0]])
    # flat indices: class 0 P {0, 6}, T {0, 6, 7}: 2*2/5; class 1 P {1, 2, 7}, T {1, 5}: 2*1/5;
    # class 2 P {3, 4, 5}, T {2, 3, 4}: 2*2/6; class 3 in neither
    assert dice_per_class(prediction, target, 4)[:3] == pytest.approx([4 / 5, 2 / 5, 4 / 6])
    assert np.isnan(dice_per_class(prediction, target, 4)[3])


def test_tissue_classes():
    gm = np.array([0.0, 0.5, 0.45, 0.2, 1.0])
    wm = np.array([0.0, 0.1, 0.45, 0.79, 0.0])
    # other = 1 - gm - wm: [1, 0.4, 0.1, 0.01, 0]; ties go to the first class
    assert tissue_classes(gm, wm).tolist() == [0, 1, 1, 2, 1]


def test_demo_smoke(tmp_path):
    settings = DemoSettings(window=(16, 16, 16), max_iter=2, held_out=(24, 32), context=8, fov=(36, 36, 36))
    text = run_finetune_demo(tmp_path / "demo", settings=settings, echo=lambda line: None)
    assert "held-out Dice" in text
    with open(tmp_path / "demo" / "held_out_dice.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == ["other", "grey matter", "white matter"]
    assert sum(int(r["voxels"]) for r in rows) == 36 * 36 * 8
    assert all(0.0 <= float(r["dice"]) <= 1.0 for r in rows)
    for name in ("report.html", "held_out.png", "config.ini", "tissue.ctbl", "models/model.ckpt-2.index"):
        assert (tmp_path / "demo" / name).is_file(), name
    with pytest.raises(Exception, match="exists"):
        run_finetune_demo(tmp_path / "demo", settings=settings, echo=lambda line: None)
