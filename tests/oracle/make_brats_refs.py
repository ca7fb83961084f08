"""References for ``niftyport brats``: taigw/brats17's own ``test.py`` run on TensorFlow (oracle venv).

The repository's code itself is run, unmodified, from a checkout of
github.com/taigw/brats17 (commit d44297e37f4cccaf691217554980b65c2bc87990): its
``test.test(config)`` loads the four scans with ``util/data_loader.py``,
normalises them, runs its ``util/MSNet.py`` networks (on NiftyNet 0.6.0's
layers, the nine real checkpoints restored by its own Savers) through
``util/train_test_func.py``'s sliding batches, post-processes with
``util/data_process.py`` and writes the label map. Before it runs, NumPy's
global generator is seeded (``np.random.seed(SEED)``: ``test.py`` draws its
noise from it), so ``niftyport``'s ``fill="random", seed=SEED`` must form the
same batches and give the same labels.

What is only wrapped, not changed (``install_shims``): TF1 behaviour and the
NumPy/nibabel aliases (``shared/oracle/nn_compat.py``); stand-ins for modules
``test.py``/``train.py`` import but never use here (``tensorflow.contrib.data``,
``tensorflow.contrib.layers...regularizers``); SimpleITK, which only writes the
result, replaced by nibabel (``sitk_stand_in``); NiftyNet 0.6
renamed the layers' ``with_bn=True`` to ``feature_normalization='batch'``
(translated); ``tf.nn.moments`` computed by the shifted formula inside the
T-Net scopes, as their graphs (saved by TF 1.2) compute it
(``make_msnet_refs.shifted_moments``); ``tf.InteractiveSession`` records every
batch fed to a network and the softmax it returns.

``--engine pipeline`` instead runs niftyport's own batches and post-processing
(``niftyport.segmentation.brats``, numpy and scipy only) with the repository's
``MSNet`` on TensorFlow as its ``predict`` (:func:`tf_predictor`): the reference
for ``--fill repeat``, which ``test.py`` cannot run.

Input: ``tests/brats_inputs.py`` (a real skull-stripped T1 in all four channels
with a painted lesion). Config: ``tests/data/brats/test_small.txt`` (the
published config with small in-plane shapes and batch size 3, so that both
engines run in seconds; ``--config`` takes another, e.g. the published
``test_all_class.txt``). Written: ``tests/data/brats/<name>.npz`` (labels,
per batch the input's sha256 and the probabilities at fixed sample points)
and ``<name>.json``. Usage::

    git clone https://github.com/taigw/brats17 BRATS17 && git -C BRATS17 checkout d44297e
    $ORACLE_VENV/bin/python tests/oracle/make_brats_refs.py BRATS17 [--seed 1] [--config FILE] [--name small]
    $ORACLE_VENV/bin/python tests/oracle/make_brats_refs.py BRATS17 --engine pipeline --fill repeat --name small_repeat
    $ORACLE_VENV/bin/python tests/oracle/make_brats_refs.py BRATS17 \
        --config ../shared/models/brats17/test_all_class.txt --crop brain --name brain17

The shared folder is ``$NIFTYPORT_SHARED``, else ``../shared`` beside the repository.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("NIFTYPORT_SHARED", REPO.parent / "shared"))
MODELS = SHARED / "models" / "brats17"
DATA = SHARED / "data"
OUT = REPO / "tests" / "data" / "brats"
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "oracle"))
sys.path.insert(0, str(SHARED / "oracle"))

from brats_inputs import write_channels

#: Sample points per batch output at which the probabilities are stored.
SAMPLES = 512
RECORDED: list[dict] = []


def sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def sitk_stand_in() -> types.ModuleType:
    """The three SimpleITK calls of ``save_array_as_nifty_volume``, writing the array with nibabel instead.

    ``GetImageFromArray`` takes the ``(z, y, x)`` array, ``CopyInformation``
    the reference file, ``WriteImage`` writes ``(x, y, z)`` with the
    reference's affine (only the voxel values are used by the references).
    """
    import nibabel as nib

    class Image:
        def __init__(self, data):
            self.data, self.reference = data, None

        def CopyInformation(self, reference):
            self.reference = reference

    module = types.ModuleType("SimpleITK")
    module.GetImageFromArray = Image
    module.ReadImage = lambda name: nib.load(name)
    module.WriteImage = lambda img, name: nib.save(
        nib.Nifti1Image(np.transpose(img.data, (2, 1, 0)), img.reference.affine), name)
    return module


def install_shims() -> None:
    import nn_compat  # noqa: F401  (before niftynet)
    import tensorflow as tf

    for name in ("tensorflow.contrib.data", "tensorflow.contrib.layers", "tensorflow.contrib.layers.python",
                 "tensorflow.contrib.layers.python.layers"):
        module = types.ModuleType(name)
        module.__path__ = []
        sys.modules[name] = module
    sys.modules["tensorflow.contrib.data"].Iterator = None
    sys.modules["tensorflow.contrib.layers.python.layers"].regularizers = types.ModuleType("regularizers")
    sys.modules["SimpleITK"] = sitk_stand_in()

    from niftynet.layer import convolution, deconvolution

    for cls in (convolution.ConvolutionalLayer, deconvolution.DeconvolutionalLayer):
        original = cls.__init__

        def init(self, *args, _original=original, **kwargs):
            if "with_bn" in kwargs:
                kwargs["feature_normalization"] = "batch" if kwargs.pop("with_bn") else None
            _original(self, *args, **kwargs)

        cls.__init__ = init

    from make_msnet_refs import shifted_moments

    plain = tf.nn.moments

    def moments(x, axes, *args, **kwargs):
        scope = tf.get_default_graph().get_name_scope()
        return (shifted_moments if scope.startswith("MSNet_TC32") else plain)(x, axes, *args, **kwargs)

    tf.nn.moments = moments

    class Recording(tf.InteractiveSession):
        def run(self, fetches, feed_dict=None, *args, **kwargs):
            out = super().run(fetches, feed_dict, *args, **kwargs)
            batches = [v for v in (feed_dict or {}).values() if isinstance(v, np.ndarray) and v.ndim == 5]
            if batches:
                logits = fetches.op.inputs[0]
                RECORDED.append({"scope": logits.name.split("/")[0], "batch": np.array(batches[0]),
                                 "probabilities": np.array(out)})
            return out

    sys.modules["tensorflow"].InteractiveSession = Recording


def write_config(source: Path, data_root: Path, names: Path, save: Path, out: Path) -> None:
    """``source`` with its [data] paths and model files pointed at the temporary data and the shared models."""
    import configparser

    parser = configparser.ConfigParser()
    parser.read(source)
    parser["data"]["data_root"] = str(data_root)
    parser["data"]["data_names"] = str(names)
    parser["data"]["save_folder"] = str(save)
    for section in parser.sections():
        if "model_file" in parser[section]:
            parser[section]["model_file"] = str(MODELS / Path(parser[section]["model_file"]).name)
    with open(out, "w") as f:
        parser.write(f)


def samples(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Fixed sample points (flat indices into a batch's class-1 probabilities)."""
    size = int(np.prod(shape))
    return np.sort(np.random.default_rng(seed).choice(size, size=min(SAMPLES, size), replace=False))


def tf_predictor(checkout: Path):
    """``predict(net, batch)`` for niftyport's pipeline: the repository's ``MSNet`` on TensorFlow, as ``test.py``
    builds it (one net object per checkpoint, called again for each new batch shape, weights restored by a
    Saver of its scope's variables, ``is_training=True``, softmax); batches recorded like ``test.py``'s."""
    import tensorflow as tf
    from util.MSNet import MSNet

    sess = tf.InteractiveSession()
    nets, graphs = {}, {}

    def predict(net, batch):
        key = (net.checkpoint, batch.shape)
        if key not in graphs:
            first = net.checkpoint not in nets
            if first:
                nets[net.checkpoint] = MSNet(num_classes=net.class_num, w_regularizer=None, b_regularizer=None,
                                             name=net.scope)
                nets[net.checkpoint].set_params({"downsample_twice": net.downsample_twice})
            x = tf.placeholder(tf.float32, shape=batch.shape)
            graphs[key] = (x, tf.nn.softmax(nets[net.checkpoint](x, is_training=True)))
            if first:
                variables = [v for v in tf.global_variables() if v.name.startswith(net.scope + "/")]
                sess.run(tf.variables_initializer(variables))
                tf.train.Saver(variables).restore(sess, str(MODELS / net.checkpoint))
        x, proby = graphs[key]
        return sess.run(proby, feed_dict={x: batch})

    return predict


def run_test_py(args, checkout: Path, tmp: Path) -> np.ndarray:
    """``test.test(config)`` of the checkout after ``np.random.seed(seed)``; its label map ``(X, Y, Z)``."""
    import nibabel as nib

    write_channels(DATA, tmp / "data" / "BraTS_test", crop=args.crop)
    (tmp / "names.txt").write_text("BraTS_test\n")
    (tmp / "result").mkdir()
    write_config(args.config, tmp / "data", tmp / "names.txt", tmp / "result", tmp / "config.txt")
    cwd = os.getcwd()
    os.chdir(checkout)
    try:
        import test as brats17_test

        np.random.seed(args.seed)
        brats17_test.test(str(tmp / "config.txt"))
    finally:
        os.chdir(cwd)
    return np.asarray(nib.load(tmp / "result" / "BraTS_test.nii.gz").dataobj)


def run_pipeline(args, checkout: Path, tmp: Path) -> np.ndarray:
    """niftyport's pure pipeline (``niftyport.segmentation.brats``, numpy/scipy only) with :func:`tf_predictor`."""
    sys.path.insert(0, str(REPO / "src"))
    from niftyport.segmentation import brats

    paths = write_channels(DATA, tmp, crop=args.crop)
    config = brats.read_config(args.config)
    img = brats.segment_brats(*paths, fill=args.fill, seed=args.seed, config=config, predict=tf_predictor(checkout))
    return np.asarray(img.dataobj)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkout", type=Path, help="a checkout of github.com/taigw/brats17")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--config", type=Path, default=OUT / "test_small.txt")
    parser.add_argument("--name", default="small")
    parser.add_argument("--crop", default="small", help="tests/brats_inputs.py CROPS key (small, brain)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--engine", choices=("test.py", "pipeline"), default="test.py",
                        help="test.py: the repository's test(); pipeline: niftyport's batches and post-processing "
                             "with the repository's networks on TensorFlow (for --fill repeat)")
    parser.add_argument("--fill", choices=("random", "repeat"), default="random", help="with --engine pipeline")
    args = parser.parse_args(argv)
    if args.engine == "test.py" and args.fill != "random":
        parser.error("test.py fills with random sub-images only; use --engine pipeline for --fill repeat")

    install_shims()
    import niftynet
    import tensorflow as tf

    checkout = args.checkout.resolve()
    sys.path.insert(0, str(checkout))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        labels = (run_test_py if args.engine == "test.py" else run_pipeline)(args, checkout, Path(tmp))
        seconds = time.time() - t0

    arrays = {"labels": labels}
    batches = []
    for i, rec in enumerate(RECORDED):
        prob = rec["probabilities"][..., 1]
        where = samples(prob.shape, 1000 + i)
        arrays[f"batch{i}_where"] = where.astype(np.int32)
        arrays[f"batch{i}_p1"] = prob.reshape(-1)[where].astype(np.float32)
        margin = np.abs(rec["probabilities"][..., 1] - rec["probabilities"][..., 0])
        batches.append({"scope": rec["scope"], "shape": list(rec["batch"].shape),
                        "input_sha256": sha256(rec["batch"]), "output_shape": list(rec["probabilities"].shape),
                        "argmax_1": int((prob > rec["probabilities"][..., 0]).sum()),
                        "min_margin": float(margin.min())})
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out / f"{args.name}.npz", **arrays)
    versions = f"TensorFlow {tf.__version__} with NiftyNet {niftynet.__version__.split()[-1]}"
    source = (f"github.com/taigw/brats17 test.py (commit d44297e), run unmodified on {versions}"
              if args.engine == "test.py" else
              f"niftyport.segmentation.brats (batches, post-processing) with github.com/taigw/brats17's "
              f"util/MSNet.py (commit d44297e) on {versions} as predict")
    meta = {
        "source": source + " (tests/oracle/make_brats_refs.py)",
        "engine": args.engine,
        "fill": args.fill,
        "config": str(args.config.relative_to(REPO) if args.config.is_relative_to(REPO) else args.config.name),
        "seed": args.seed,
        "seeding": ("np.random.seed(seed) right before test.test(config): the loader's background noise, the "
                    "sub-images' padding and the last batches' N(0, 1) fillers all come from it"
                    if args.engine == "test.py" else "segment_brats(..., seed=seed): its RandomState(seed)"),
        "input": "tests/brats_inputs.py write_channels(shared/data, crop=CROP): BraTS_test_{flair,t1,t1ce,t2}.nii.gz",
        "crop": args.crop,
        "labels": ("test.py's output file, (X, Y, Z) int16 (save_array_as_nifty_volume)" if args.engine == "test.py"
                   else "segment_brats' label map, (X, Y, Z) int32"),
        "label_counts": {str(int(v)): int((labels == v).sum()) for v in np.unique(labels)},
        "batches": batches,
        "samples_per_batch": SAMPLES,
        "oracle_seconds": round(seconds, 1),
    }
    (args.out / f"{args.name}.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{len(batches)} batches, labels {meta['label_counts']}, {seconds:.0f} s; wrote {args.out}/{args.name}.*")


if __name__ == "__main__":
    main(sys.argv[1:])
