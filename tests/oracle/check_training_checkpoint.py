"""Restore a niftyport training checkpoint with NiftyNet 0.6.0's own code (run with the oracle's Python).

Given a model folder whose ``models/model.ckpt-<ITER>`` niftyport wrote,
this runs, on the batch of ``make_training_refs.py``:

1. NiftyNet's ``net_segment train`` from ``starting_iter = ITER`` for one
   iteration (its ``ModelRestorer`` restores every variable of the training
   graph: network, Adam slots, ``ApplyGradients/beta*_power``, batch-norm
   accumulators) and records the loss it prints for iteration ITER + 1;
2. NiftyNet's HighRes3DNet in inference mode (``is_training=False``) in a
   fresh graph, restored from the same checkpoint by ``tf.train.Saver``
   (every variable of that graph, the batch-norm debias variables
   included), on the batch's image; its logits are kept.

Usage::

    $ORACLE_VENV/bin/python tests/oracle/check_training_checkpoint.py MODEL_DIR ITER OUT.npz [--case adam_dice]

``OUT.npz``: ``loss`` (NiftyNet's loss at ITER + 1) and ``logits``
(NiftyNet's layout ``(1, X, Y, Z, 160)``, float32).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_training_refs import CASES, batch, run_case  # noqa: E402


def forward(prefix: Path, image: np.ndarray) -> np.ndarray:
    """NiftyNet's HighRes3DNet (inference mode) restored from ``prefix``: logits ``(1, X, Y, Z, 160)``."""
    import tensorflow as tf  # nn_compat's proxy, installed by run_case
    from niftynet.network.highres3dnet import HighRes3DNet

    with tf.Graph().as_default(), tf.Session() as sess:
        x = tf.placeholder(tf.float32, (1, *image.shape, 1))
        logits = HighRes3DNet(num_classes=160, acti_func="relu")(x, is_training=False)
        tf.train.Saver().restore(sess, str(prefix))
        return sess.run(logits, {x: image[None, ..., None]})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("iteration", type=int)
    parser.add_argument("out", type=Path)
    parser.add_argument("--case", default="adam_dice", choices=list(CASES))
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="niftynet_restore_"))
    try:
        shutil.copytree(args.model_dir / "models", work / "models")
        losses, _ = run_case(args.case, work, start=args.iteration, steps=1, existing_models=True)
        image, _ = batch()
        logits = forward(args.model_dir / "models" / f"model.ckpt-{args.iteration}", image)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    np.savez(args.out, loss=np.float64(losses[0]), logits=logits.astype(np.float32))
    print(f"iteration {args.iteration + 1} loss {losses[0]:.7f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
