"""Make the training references: NiftyNet 0.6.0's own ``net_segment train`` on TensorFlow (oracle's Python).

Each case runs NiftyNet's complete training application (``niftynet.main``
-> ApplicationDriver -> SegmentationApplication: reader, uniform sampler,
HighRes3DNet, ``LossFunction``, the optimiser of
``engine/application_optimiser.py``, ``ApplyGradients`` with the batch-norm
update ops, ``ModelRestorer`` / ``ModelSaver``) for three iterations, from
the model zoo checkpoint (iteration 33000, Adam slots and beta powers
included), on one fixed batch:

* the image is a 16^3 crop of NiftyNet's own network input for the MNI152
  template (``shared/reference/mni152_2mm_lps_w64/stages.npz``,
  ``stage3_whitened``), the label the same crop of NiftyNet's parcellation of
  it (``labels_padded_ras1mm``); the window equals the image, so the uniform
  sampler has one choice; no normalisation, no augmentation, batch size 1.

It records the loss NiftyNet computes at each iteration (before that
iteration's update) and, from the checkpoints NiftyNet saves after each
iteration, a digest of every variable (see :func:`digest`); the zoo
checkpoint itself is read by the test from the shared folder. Written::

    tests/data/training/<case>.npz    losses (3,), and per variable of the last checkpoint:
                                      "<name>|full" (every value, when small) or
                                      "<name>|sample" (values at sample_indices(size)),
                                      "<name>|stats" (sum, sum of squares, float64)
    tests/data/training/meta.json     settings, crop, versions, variable counts, the losses

Usage::

    $ORACLE_VENV/bin/python tests/oracle/make_training_refs.py [CASE ...] [--keep DIR]

``--keep DIR`` leaves NiftyNet's model folders (every checkpoint) in DIR.
NiftyNet's training graph names the beta powers ``ApplyGradients/beta1_power``
(``beta2_power``) while the zoo checkpoint stores them at the top level, so
the starting checkpoint is the zoo's with those two also stored under the
graph's names (values unchanged); nothing else is renamed.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("NIFTYPORT_SHARED", REPO.parent / "shared"))
ORACLE = SHARED / "oracle"
ZOO = SHARED / "models" / "niftynet" / "models" / "highres3dnet_brain_parcellation" / "models"
STAGES = SHARED / "reference" / "mni152_2mm_lps_w64" / "stages.npz"
OUT = REPO / "tests" / "data" / "training"

START_ITER = 33000
STEPS = 3
#: where the 16^3 crop starts in the padded RAS volume of ``stages.npz`` (174 x 210 x 180)
CROP_START = (79, 97, 82)
CROP_SIZE = 16
#: case -> (optimiser, loss_type, learning rate); the rates are chosen so that three steps move
#: the variables measurably (GDSC's gradients, 160 classes on 16^3 voxels, are about 1e-6)
CASES = {
    "adam_dice": ("adam", "Dice", 1e-3),
    "gd_gdsc": ("gradientdescent", "GDSC", 1000.0),
    "gd_crossentropy": ("gradientdescent", "CrossEntropy", 1e-2),
}
#: variables up to this many values are stored whole
FULL_SIZE = 1024
#: values sampled from larger variables
N_SAMPLES = 32

CONFIG = """[image]
path_to_search = {data}
filename_contains = image
spatial_window_size = ({w}, {w}, {w})
interp_order = 1

[label]
path_to_search = {data}
filename_contains = label
spatial_window_size = ({w}, {w}, {w})
interp_order = 0

[SYSTEM]
cuda_devices = ""
num_threads = 1
num_gpus = 1
model_dir = {model_dir}

[NETWORK]
name = highres3dnet
activation_function = relu
batch_size = 1
volume_padding_size = 0
window_sampling = uniform
queue_length = 1
normalisation = False
whitening = False
decay = 0.0
keep_prob = 1.0

[TRAINING]
optimiser = {optimiser}
lr = {lr}
loss_type = {loss}
starting_iter = {start}
max_iter = {stop}
save_every_n = 1
max_checkpoints = 10
tensorboard_every_n = -1
validation_every_n = -1
sample_per_volume = 1

[SEGMENTATION]
image = image
label = label
num_classes = 160
label_normalisation = False
softmax = True
"""


def sample_indices(size: int) -> np.ndarray:
    """Flat indices sampled from a variable of ``size`` values: evenly spaced, ends included."""
    return np.unique(np.linspace(0, size - 1, min(size, N_SAMPLES)).round().astype(np.int64))


def digest(name: str, array: np.ndarray) -> dict[str, np.ndarray]:
    """What the test compares of one variable: its values (all, or samples) and two sums."""
    flat = np.asarray(array).reshape(-1)
    out = {f"{name}|stats": np.array([flat.astype(np.float64).sum(), np.square(flat.astype(np.float64)).sum()])}
    if flat.size <= FULL_SIZE:
        out[f"{name}|full"] = np.asarray(array)
    else:
        out[f"{name}|sample"] = flat[sample_indices(flat.size)]
    return out


def batch() -> tuple[np.ndarray, np.ndarray]:
    """The image (float32) and label (int32) crops, (16, 16, 16) each."""
    stages = np.load(STAGES)
    box = tuple(slice(s, s + CROP_SIZE) for s in CROP_START)
    image = stages["stage3_whitened"][box + (0, 0)].astype(np.float32)
    label = stages["labels_padded_ras1mm"][box + (0,)].astype(np.int32)
    return image, label


def starting_checkpoint(tf, models_dir: Path) -> None:
    """The zoo checkpoint, with the beta powers also under ``ApplyGradients/`` (NiftyNet 0.6.0's names)."""
    reader = tf.train.load_checkpoint(str(ZOO / f"model.ckpt-{START_ITER}"))
    tensors = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
    for name in ("beta1_power", "beta2_power"):
        tensors[f"ApplyGradients/{name}"] = tensors[name]
    names = sorted(tensors)
    with tf.Graph().as_default(), tf.Session() as sess:
        save = tf.raw_ops.SaveV2(prefix=str(models_dir / f"model.ckpt-{START_ITER}"), tensor_names=names,
                                 shape_and_slices=[""] * len(names),
                                 tensors=[tf.constant(tensors[n]) for n in names])
        sess.run(save)
    (models_dir / "checkpoint").write_text(f'model_checkpoint_path: "model.ckpt-{START_ITER}"\n')


def numpy2_location_shim() -> None:
    """Window locations back to int32, as NiftyNet's sampler declares them.

    ``UniformSampler._spatial_coordinates_generator`` multiplies an int32
    array by the subject index TensorFlow passes in (an int64 scalar):
    NumPy < 2 kept int32, NumPy 2 promotes to int64, which the
    ``tf.py_func`` then rejects. The values are unchanged; NiftyNet's file
    is not edited.
    """
    from niftynet.engine import sampler_uniform_v2 as uniform

    original = uniform.UniformSampler._spatial_coordinates_generator
    if getattr(original, "_int32_shim", False):
        return

    def coordinates(self, *args, **kwargs):
        return {name: np.asarray(c, dtype=np.int32) for name, c in original(self, *args, **kwargs).items()}

    coordinates._int32_shim = True
    uniform.UniformSampler._spatial_coordinates_generator = coordinates


def run_case(case: str, workdir: Path, *, start: int = START_ITER, steps: int = STEPS,
             existing_models: bool = False) -> tuple[list[float], Path]:
    """NiftyNet's training application for ``case`` in ``workdir``; returns the losses and the last checkpoint.

    It starts from ``workdir/models/model.ckpt-<start>``: the zoo's (made
    here) unless ``existing_models``, when that checkpoint is already there.
    """
    import nibabel as nib

    sys.path.insert(0, str(ORACLE))
    import nn_compat  # noqa: F401  (before anything from niftynet)

    import tensorflow as tf
    from niftynet import main as niftynet_main
    from niftynet.engine.application_variables import CONSOLE
    from niftynet.engine.signal import ITER_FINISHED

    numpy2_location_shim()

    optimiser, loss, lr = CASES[case]
    data, models = workdir / "data", workdir / "models"
    data.mkdir(parents=True, exist_ok=True)
    models.mkdir(exist_ok=True)
    image, label = batch()
    nib.save(nib.Nifti1Image(image, np.eye(4)), str(data / "crop_image.nii.gz"))
    nib.save(nib.Nifti1Image(label, np.eye(4)), str(data / "crop_label.nii.gz"))
    if not existing_models:
        starting_checkpoint(tf, models)
    config = workdir / "train.ini"
    config.write_text(CONFIG.format(data=data, model_dir=workdir, w=CROP_SIZE, optimiser=optimiser, lr=lr,
                                    loss=loss, start=start, stop=start + steps))
    losses: list[tuple[int, float]] = []

    def record(_sender, **msg):
        it = msg["iter_msg"]
        if it.is_training:
            losses.append((it.current_iter, float(it.current_iter_output[CONSOLE]["loss"])))

    ITER_FINISHED.connect(record, weak=False)
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        sys.argv = ["net_segment", "train", "-c", str(config)]
        niftynet_main()
    finally:
        os.chdir(cwd)
        ITER_FINISHED.disconnect(record)
    iters = [i for i, _ in losses]
    if iters != list(range(start + 1, start + steps + 1)):
        raise SystemExit(f"{case}: NiftyNet ran iterations {iters}")
    return [value for _, value in losses], models / f"model.ckpt-{start + steps}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cases", nargs="*", metavar="CASE", help="default: all of " + ", ".join(CASES))
    parser.add_argument("--keep", type=Path, help="leave NiftyNet's model folders here")
    args = parser.parse_args(argv)
    args.cases = args.cases or list(CASES)
    unknown = [case for case in args.cases if case not in CASES]
    if unknown:
        parser.error(f"unknown case {unknown[0]!r} (known: {', '.join(CASES)})")
    OUT.mkdir(parents=True, exist_ok=True)
    meta_path = OUT / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    meta.update({"start_iter": START_ITER, "steps": STEPS, "crop_start": list(CROP_START), "crop_size": CROP_SIZE,
                 "stages": "reference/mni152_2mm_lps_w64/stages.npz (stage3_whitened, labels_padded_ras1mm)",
                 "full_size": FULL_SIZE, "n_samples": N_SAMPLES})
    meta.setdefault("cases", {})
    for case in args.cases:
        # one process per case: NiftyNet's signals and factories are module-level state
        if len(args.cases) > 1:
            import subprocess

            cmd = [sys.executable, __file__, case] + (["--keep", str(args.keep)] if args.keep else [])
            subprocess.run(cmd, check=True)
            continue
        root = Path(tempfile.mkdtemp(prefix=f"niftynet_{case}_"))
        try:
            losses, last = run_case(case, root / case)
            import tensorflow as tf

            reader = tf.train.load_checkpoint(str(last))
            arrays = {}
            for name in sorted(reader.get_variable_to_shape_map()):
                arrays.update(digest(name, reader.get_tensor(name)))
            arrays["losses"] = np.asarray(losses, dtype=np.float64)
            np.savez_compressed(OUT / f"{case}.npz", **arrays)
            optimiser, loss, lr = CASES[case]
            meta["cases"][case] = {"optimiser": optimiser, "loss_type": loss, "lr": lr, "losses": losses,
                                   "variables": len(reader.get_variable_to_shape_map()),
                                   "checkpoint": last.name}
            meta["versions"] = {"tensorflow": tf.__version__, "numpy": np.__version__, "niftynet": "0.6.0"}
            meta_path.write_text(json.dumps(meta, indent=1) + "\n")
            print(case, "losses", " ".join(f"{v:.7f}" for v in losses))
            if args.keep:
                shutil.copytree(root / case, args.keep / case, dirs_exist_ok=True)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
