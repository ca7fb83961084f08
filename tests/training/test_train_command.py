"""``niftyport train --config``: NiftyNet's own training run reproduced from a config, and its conventions."""
from __future__ import annotations

import csv
import os
import re

import nibabel as nib
import numpy as np
import pytest
from conftest import CHECKPOINT, need, one_line_error
from training_refs import batch, load, meta, reference_values

from niftyport.checkpoint import read_checkpoint
from niftyport.cli import main
from niftyport.config import load_config
from niftyport.errors import ConfigError, TrainingError
from niftyport.training.settings import training_settings

CONFIG = """[image]
path_to_search = {data}
filename_contains = image
spatial_window_size = (16, 16, 16)

[label]
path_to_search = {data}
filename_contains = label
spatial_window_size = (16, 16, 16)
interp_order = 0

[SYSTEM]
model_dir = {model_dir}

[NETWORK]
name = highres3dnet
batch_size = 1
volume_padding_size = 0

[TRAINING]
optimiser = adam
lr = 0.001
loss_type = Dice
starting_iter = 33000
max_iter = 33003
save_every_n = 1
max_checkpoints = 2
{extra}
[SEGMENTATION]
image = image
label = label
num_classes = 160
"""


def model_folder(tmp_path, extra=""):
    """A NiftyNet model folder: the zoo checkpoint as model.ckpt-33000, the reference batch as NIfTI files."""
    need(CHECKPOINT.with_name(CHECKPOINT.name + ".index"))
    models, data = tmp_path / "model" / "models", tmp_path / "data"
    models.mkdir(parents=True)
    data.mkdir()
    for f in CHECKPOINT.parent.glob(CHECKPOINT.name + ".*"):
        if not f.name.endswith(".meta"):
            os.symlink(f, models / f.name)
    image, label = batch()
    nib.save(nib.Nifti1Image(image, np.eye(4)), str(data / "crop_image.nii.gz"))
    nib.save(nib.Nifti1Image(label.astype(np.int32), np.eye(4)), str(data / "crop_label.nii.gz"))
    ini = tmp_path / "train.ini"
    ini.write_text(CONFIG.format(data=data, model_dir=tmp_path / "model", extra=extra))
    return ini


def test_reproduces_niftynet_training_run(tmp_path, capsys):
    # NiftyNet's run of tests/oracle/make_validation_refs.py: the crop trains, the crop mirrored along x
    # validates after each iteration (the split file names them by NiftyNet's subject ids)
    ini = model_folder(tmp_path, extra="validation_every_n = 1\nvalidation_max_iter = 1\n")
    image, label = batch()
    data = tmp_path / "data"
    nib.save(nib.Nifti1Image(np.ascontiguousarray(image[::-1]), np.eye(4)), str(data / "mirror_image.nii.gz"))
    nib.save(nib.Nifti1Image(np.ascontiguousarray(label[::-1]).astype(np.int32), np.eye(4)),
             str(data / "mirror_label.nii.gz"))
    (tmp_path / "model" / "dataset_split.csv").write_text("crop_,training\nmirror_,validation\n")
    assert main(["train", "--config", str(ini), "--threads", "2"]) == 0
    out = capsys.readouterr().out
    printed = [(int(i), float(v)) for i, v in re.findall(r"^iter (\d+) loss (\d+\.\d{7})", out, re.MULTILINE)]
    assert [i for i, _ in printed] == [33001, 33002, 33003]
    np.testing.assert_allclose([v for _, v in printed], load("adam_dice")["losses"], rtol=1e-5)
    np.testing.assert_allclose([v for _, v in printed], load("adam_dice_validation")["losses"], rtol=1e-5)
    validated = [(int(i), float(v)) for i, v in re.findall(r"^    validation iter (\d+) loss (\d+\.\d{7})", out,
                                                           re.MULTILINE)]
    assert [i for i, _ in validated] == [33001, 33002, 33003]
    np.testing.assert_allclose([v for _, v in validated], load("adam_dice_validation")["validation_losses"],
                               rtol=1e-5)
    with open(tmp_path / "model" / "training_log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["iteration"] for r in rows] == ["33001", "33002", "33003"]
    models = tmp_path / "model" / "models"
    kept = sorted(p.name for p in models.glob("model.ckpt-3300[123]*"))
    assert kept == ["model.ckpt-33002.data-00000-of-00001", "model.ckpt-33002.index", "model.ckpt-33002.resume.json",
                    "model.ckpt-33002.safetensors", "model.ckpt-33003.data-00000-of-00001", "model.ckpt-33003.index",
                    "model.ckpt-33003.resume.json", "model.ckpt-33003.safetensors"]
    # the checkpoint index names the kept ones, the latest last (TensorFlow's format)
    assert (models / "checkpoint").read_text() == ('model_checkpoint_path: "model.ckpt-33003"\n'
                                                   'all_model_checkpoint_paths: "model.ckpt-33002"\n'
                                                   'all_model_checkpoint_paths: "model.ckpt-33003"\n')
    written = read_checkpoint(models / "model.ckpt-33003")
    refs = load("adam_dice")
    for name in ("HighRes3DNet/conv_2_bn/bn_/gamma", "HighRes3DNet/res_3_2/conv_1/w/Adam_1",
                 "HighRes3DNet/res_1_0/bn_0/HighRes3DNet/res_1_0/bn_0/moving_variance/biased"):
        ours, theirs = reference_values(refs, name, written.read(name))
        assert np.abs(ours - theirs).max() <= 5e-5 * np.abs(theirs).max(), name
    # a second run would replace the first one's files
    status = main(["train", "--config", str(ini)])
    one_line_error(status, capsys.readouterr().err, "exists", "--force")


def test_unsupported_options_are_refused(tmp_path, capsys):
    ini = model_folder(tmp_path, extra="do_elastic_deformation = True\n")
    one_line_error(main(["train", "--config", str(ini)]), capsys.readouterr().err,
                   "[TRAINING] do_elastic_deformation", "not supported")


def config_with(tmp_path, training: str):
    ini = tmp_path / "t.ini"
    ini.write_text(f"[image]\npath_to_search = {tmp_path}\n[lab]\npath_to_search = {tmp_path}\n"
                   f"[TRAINING]\n{training}\n[SEGMENTATION]\nimage = image\nlabel = lab\nnum_classes = 3\n")
    return load_config(ini)


def test_niftynet_defaults(tmp_path):
    s = training_settings(config_with(tmp_path, ""))
    assert (s.optimiser, s.lr, s.loss_type, s.starting_iter, s.save_every_n, s.max_iter, s.max_checkpoints) == \
        ("adam", 0.01, "Dice", 0, 500, 10000, 100)
    assert s.random_flipping_axes == (-1,) and s.vars_to_restore == "" and s.sample_per_volume == 1


def test_settings_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"\[TRAINING\] loss_type = 'dice'.*did you mean 'Dice'"):
        training_settings(config_with(tmp_path, "loss_type = dice"))
    with pytest.raises(ConfigError, match=r"\[TRAINING\] optimizer: unknown key"):
        training_settings(config_with(tmp_path, "optimizer = adam"))
    with pytest.raises(TrainingError, match=r"\[TRAINING\] do_elastic_deformation = True.*not supported"):
        training_settings(config_with(tmp_path, "do_elastic_deformation = True"))
    assert meta()["cases"]["adam_dice"]["lr"] == 0.001  # the config above mirrors the reference run
