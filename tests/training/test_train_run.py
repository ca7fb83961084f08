"""A whole training run on small synthetic volumes (ToyNet): split, validation, samplers, augmentation,
early stopping, checkpoints, curves and ``--resume`` to the same bits as an uninterrupted run."""
from __future__ import annotations

import csv
import dataclasses
import io
import re
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import one_line_error

from niftyport.checkpoint import read_checkpoint
from niftyport.cli import main
from niftyport.config import load_config
from niftyport.errors import TrainingError
from niftyport.training.checkpoints import complete_checkpoints
from niftyport.training.run import TrainOptions, train
from niftyport.training.validation import read_split, should_stop

CONFIG = """[image]
path_to_search = {data}
filename_contains = _img
spatial_window_size = (8, 8, 8)
interp_order = 1

[label]
path_to_search = {data}
filename_contains = _lab
spatial_window_size = (8, 8, 8)
interp_order = 0

[SYSTEM]
model_dir = {model_dir}

[NETWORK]
name = toynet
batch_size = 2
volume_padding_size = 0
whitening = True
window_sampling = {sampling}
queue_length = 4
{network}
[TRAINING]
optimiser = adam
lr = 0.01
loss_type = Dice
starting_iter = 0
max_iter = 6
save_every_n = 2
max_checkpoints = 5
sample_per_volume = 2
validation_every_n = 2
validation_max_iter = 2
exclude_fraction_for_validation = 0.25
random_flipping_axes = 0, 1
rotation_angle = (-10, 10)
scaling_percentage = (-10, 10)
{training}
[SEGMENTATION]
image = image
label = label
sampler = label
num_classes = 3
{segmentation}"""


def make_data(folder, n=4, shape=(12, 11, 10)):
    """``n`` subjects: a label map with two blobs (classes 1, 2) and an image of it plus noise."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(n):
        label = np.zeros(shape, np.int16)
        label[2 + k % 2:7, 3:8, 2:6] = 1
        label[7:10, 2:5, 5 + k % 2:9] = 2
        image = (label * 40.0 + rng.normal(100, 10, shape)).astype(np.float32)
        nib.save(nib.Nifti1Image(image, np.eye(4)), str(folder / f"s{k}_img.nii.gz"))
        nib.save(nib.Nifti1Image(label, np.eye(4)), str(folder / f"s{k}_lab.nii.gz"))


def config_in(tmp_path, name="run", sampling="balanced", training="", network="", segmentation=""):
    data = tmp_path / "data"
    if not data.exists():
        make_data(data)
    ini = tmp_path / f"{name}.ini"
    ini.write_text(CONFIG.format(data=data, model_dir=tmp_path / name, sampling=sampling, training=training,
                                 network=network, segmentation=segmentation))
    return load_config(ini)


@pytest.fixture
def two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 2))
    yield
    torch.set_num_threads(threads)


class Interrupted(Exception):
    pass


def stop_after(k):
    def hook(iteration):
        if iteration == k:
            raise Interrupted(iteration)
    return hook


def variables_of(prefix):
    ckpt = read_checkpoint(prefix)
    return {v.name: ckpt.read(v.name) for v in ckpt.variables}


def log_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_resume_gives_the_uninterrupted_run_bit_for_bit(tmp_path, two_threads):
    quiet = TrainOptions(verbose=False, seed=3)
    straight = train(config_in(tmp_path, "straight"), quiet)
    config = config_in(tmp_path, "cut")
    with pytest.raises(Interrupted):
        train(config, TrainOptions(verbose=False, seed=3, on_iteration=stop_after(3)))
    models = tmp_path / "cut" / "models"
    assert [i for i, _ in complete_checkpoints(models)] == [2]
    # a checkpoint half-written when the run died (no sidecar, not in the index) is ignored
    for f in models.glob("model.ckpt-2.*"):
        if not f.name.endswith(".resume.json"):
            (models / f.name.replace("ckpt-2", "ckpt-4")).write_bytes(f.read_bytes())
    resumed = train(config, TrainOptions(verbose=False, seed=99, resume=True))   # the saved seed wins
    assert [i for i, _ in resumed.losses] == [3, 4, 5, 6]
    a, b = variables_of(tmp_path / "straight" / "models" / "model.ckpt-6"), variables_of(models / "model.ckpt-6")
    assert sorted(a) == sorted(b) and len(a) > 10
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert [i for i, _ in straight.losses] == [1, 2, 3, 4, 5, 6]
    assert straight.losses[2:] == resumed.losses
    for log in ("training_log.csv", "validation_log.csv"):
        ours, theirs = log_rows(tmp_path / "straight" / log), log_rows(tmp_path / "cut" / log)
        drop = "seconds"
        assert [{k: v for k, v in r.items() if k != drop} for r in ours] == \
               [{k: v for k, v in r.items() if k != drop} for r in theirs], log
    assert (tmp_path / "cut" / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_split_validation_and_logs(tmp_path, two_threads):
    config = config_in(tmp_path)
    result = train(config, TrainOptions(verbose=False))
    rows = read_split(tmp_path / "run" / "dataset_split.csv")
    # NiftyNet's file: subject_id,phase per subject, no header; ceil(4 * 0.25) = 1 for validation
    assert sorted(s for s, _ in rows) == ["s0", "s1", "s2", "s3"]
    assert sorted(p for _, p in rows) == ["training", "training", "training", "validation"]
    assert (tmp_path / "run" / "dataset_split.csv").read_text().splitlines()[0].count(",") == 1
    assert set(result.split.validation) == {s for s, p in rows if p == "validation"}
    v = log_rows(tmp_path / "run" / "validation_log.csv")
    assert [r["iteration"] for r in v] == ["2", "4", "6"]
    assert list(v[0]) == ["iteration", "loss", "total_loss", "mean_dice", "dice_0", "dice_1", "dice_2"]
    for r in v:
        dice = np.array([float(r[f"dice_{c}"]) for c in range(3)])
        assert np.all((dice >= 0) & (dice <= 1))
        assert float(r["mean_dice"]) == pytest.approx(dice[1:].mean(), abs=1e-6)
        assert r["loss"] == r["total_loss"]                    # no decay: nothing added
    # a second run reads the split file instead of drawing a new one (NiftyNet's rule), here with another seed
    before = (tmp_path / "run" / "dataset_split.csv").read_text()
    again = train(config, TrainOptions(verbose=False, force=True, seed=5, max_iter=2))
    assert (tmp_path / "run" / "dataset_split.csv").read_text() == before
    assert again.split.validation == result.split.validation


def with_training(config, **keys):
    return dataclasses.replace(config, training={**dict(config.training), **keys})


def test_validation_needs_validation_subjects(tmp_path):
    config = with_training(config_in(tmp_path), exclude_fraction_for_validation="0.0")
    with pytest.raises(TrainingError, match="no subject is for validation"):
        train(config, TrainOptions(verbose=False))


def test_early_stopping_follows_niftynets_rule(tmp_path, two_threads):
    config = config_in(tmp_path, network="decay = 0.001\n", training="patience = 2\n"
                       "early_stopping_mode = generalisation_loss\n")
    lines = []
    result = train(config, TrainOptions(early_stopping=True, max_iter=40, curves=False), echo=lines.append)
    rows = log_rows(tmp_path / "run" / "training_log.csv")
    assert all(float(r["total_loss"]) > float(r["loss"]) for r in rows)      # decay > 0: the term is added
    # NiftyNet's history: the total_loss of each validation batch (two per round), the last `patience` of them;
    # with two values, generalisation_loss = (last - min) / (max - min) > 0.2 means: the second one is larger
    found = [re.search(r"^    validation iter (\d+) loss \S+ total_loss (\S+)$", line) for line in lines]
    batches = [(int(m.group(1)), float(m.group(2))) for m in found if m]
    expected = next(i for k, (i, v) in enumerate(batches) if k >= 1 and v > batches[k - 1][1])
    assert result.stopped_early and result.losses[-1][0] == expected < 40
    assert batches[-1][0] == expected and (tmp_path / "run" / "models" / f"model.ckpt-{expected}.index").is_file()


@pytest.mark.parametrize("sampling", ["uniform", "weighted"])
def test_other_samplers_run(tmp_path, sampling, two_threads):
    config = config_in(tmp_path, sampling=sampling, training="")
    result = train(config, TrainOptions(verbose=False, max_iter=2, prefetch=0))
    assert [i for i, _ in result.losses] == [1, 2] and all(np.isfinite(v) for _, v in result.losses)


def test_weight_map_reaches_the_loss(tmp_path, two_threads):
    # [SEGMENTATION] weight: the image's intensities (about 100 .. 180) as voxel weights of the Dice loss
    plain = train(config_in(tmp_path, name="plain"), TrainOptions(verbose=False, max_iter=1, curves=False))
    weighted = train(config_in(tmp_path, name="weighted", segmentation="weight = image\n"),
                     TrainOptions(verbose=False, max_iter=1, curves=False))
    assert plain.losses[0][1] != pytest.approx(weighted.losses[0][1], rel=1e-4)


def test_command_line_resume_and_quiet(tmp_path, capsys):
    config_in(tmp_path)
    ini = str(tmp_path / "run.ini")
    status = main(["train", "--config", ini, "--resume"])
    one_line_error(status, capsys.readouterr().err, "--resume", "no complete checkpoint")
    assert main(["train", "--config", ini, "-q", "--max-iter", "2", "--threads", "2"]) == 0
    out = capsys.readouterr().out
    assert "iter 1 loss" not in out and "wrote" in out
    assert main(["train", "--config", ini, "--max-iter", "4", "--resume", "--threads", "2"]) == 0
    out = capsys.readouterr().out
    assert "iter 3 loss" in out and "iter 2 loss" not in out and "    validation iter 4 loss" in out
    status = main(["train", "--config", ini, "--max-iter", "4"])
    one_line_error(status, capsys.readouterr().err, "exists", "--force", "--resume")
    # a config whose windows differ cannot continue the run
    (tmp_path / "run.ini").write_text((tmp_path / "run.ini").read_text().replace("batch_size = 2", "batch_size = 1"))
    status = main(["train", "--config", ini, "--max-iter", "6", "--resume"])
    one_line_error(status, capsys.readouterr().err, "--resume: batch_size was 2", "now 1")


def test_refused_and_ignored_options(tmp_path, capsys):
    config = config_in(tmp_path, training="bias_field_range = (-0.5, 0.5)\n")
    lines = []
    train(config, TrainOptions(verbose=False, max_iter=1), echo=lines.append)
    assert any("bias_field_range" in line and "ignored" in line for line in lines)
    base = config_in(tmp_path, name="bad")
    for cfg, fragment in [
            (with_training(base, do_elastic_deformation="True"), r"do_elastic_deformation = True: elastic"),
            (with_training(base, rotation_angle="(10, -10)"), r"rotation_angle = \(10.0, -10.0\): needs"),
            (with_training(base, random_flipping_axes="3"), r"random_flipping_axes = \(3,\): spatial axes"),
            (config_in(tmp_path, name="bad2", sampling="resize"), r"window_sampling = 'resize'"),
            (config_in(tmp_path, name="bad3", network="keep_prob = 0.5\n"), r"keep_prob = 0.5: dropout"),
            (config_in(tmp_path, name="bad4", network="decay = 0.1\nreg_type = L3\n"), r"reg_type = 'L3'"),
            (dataclasses.replace(base, segmentation=dataclasses.replace(base.segmentation, image=("image", "label"))),
             r"one image modality")]:
        with pytest.raises(TrainingError, match=fragment):
            train(cfg, TrainOptions(verbose=False, max_iter=1))


# NiftyNet's check_should_stop, hand-computed cases per mode
@pytest.mark.parametrize("history, mode, expected", [
    ([1.0, 2.0, 3.0], "mean", True),                    # 3 > mean(1, 2)
    ([3.0, 2.0, 1.0], "mean", False),
    ([1.0, 5.0, 3.0, 4.0], "median", True),             # 4 > median(1, 5, 3) = 3
    (list(range(21)) + [10.5], "robust_mean", True),    # others 0..20: 5th/95th percentiles 1, 19 -> mean(2..18) = 10
    (list(range(21)) + [9.5], "robust_mean", False),
    ([1.0, 3.0, 2.0], "generalisation_loss", True),     # (2 - 1) / (3 - 1) = 0.5 > 0.2
    ([1.0, 3.0, 1.2], "generalisation_loss", False),    # 0.1
    ([0.0, 1.0, 0.1], "generalisation_loss", False),    # minimum 0: the last value, 0.1
    ([10, 8, 6, 4, 2, 0, 5], "median_smoothing", False),   # smoothed (8,8,6,4,2,2), gradient all < 0.03: 6/6
    ([0, 2, 4, 6, 8, 10, 5], "median_smoothing", True),    # smoothed (2,2,4,6,8,8), gradient (0,1,2,2,1,0): 2/6
    ([1, 2, 1, 2, 1, 2, 1, 2, 1, 2], "validation_up", True),    # five rising strips: each 1 >= 0.03
    ([1, 2, 1, 2, 2, 1, 1, 2, 1, 2], "validation_up", False),   # one falling strip: 0
])
def test_should_stop_by_hand(history, mode, expected):
    assert should_stop(history, mode) is expected


def test_progress_bar_on_a_terminal(tmp_path, monkeypatch, two_threads):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    lines = []
    train(config_in(tmp_path), TrainOptions(progress=True, max_iter=2, curves=False), echo=lines.append)
    bar = screen.getvalue()
    assert "training" in bar and "2/2" in bar and "it/s" in bar and "loss=" in bar
    assert any(line.startswith("iter 2 loss ") for line in lines)
    screen.truncate(0)
    train(config_in(tmp_path, name="quiet"), TrainOptions(progress=False, verbose=False, max_iter=2, curves=False),
          echo=lines.append)
    assert screen.getvalue().strip("\x00") == ""
