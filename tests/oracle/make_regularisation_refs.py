"""Make the L2-regularisation references with NiftyNet 0.6.0's own code (oracle's Python).

1. ``networks``: every network of the oracle's ``networks/networks.py`` specs built
   as ``SegmentationApplication.initialise_network`` builds it for ``decay > 0``
   (``w_regularizer`` and ``b_regularizer`` both ``l2_regularizer(decay)``), and
   the variables TensorFlow put a loss for in ``REGULARIZATION_LOSSES`` listed
   (a loss created under ``<variable>/Regularizer/``), with the trainable ones::

       tests/data/training/regularised.json   {key: {"regularised": [...], "trainable": [...]}}

2. ``decay``: NiftyNet's complete training application (``make_training_refs.run_case``)
   with ``[NETWORK] decay = 0.01``, Adam, ``Dice``, lr 1e-3, three iterations from
   the zoo checkpoint; both console values per iteration (``loss`` = the data
   loss, ``total_loss`` = data loss + mean of the regularisation losses) and
   the digest of every variable after the last::

       tests/data/training/adam_dice_decay.npz   losses (3,), total_losses (3,), digests as the other cases

Usage::

    $ORACLE_VENV/bin/python tests/oracle/make_regularisation_refs.py [networks] [decay]
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import make_training_refs as refs

NETWORKS_DIR = refs.ORACLE / "networks"
DECAY = 0.01
CASE = "adam_dice_decay"


def regularised_variables(key: str) -> dict[str, list[str]]:
    """One network's regularised and trainable variables (in a fresh process: NiftyNet keeps module state)."""
    sys.path.insert(0, str(NETWORKS_DIR))
    import importlib

    import networks as specs
    import nn_compat_networks  # noqa: F401  (shims, contrib regularizers; before niftynet)
    tf = sys.modules["tensorflow"]
    from tensorflow.contrib.layers.python.layers import regularizers

    spec = specs.SPEC_BY_KEY[key]
    module = importlib.import_module("niftynet.network." + spec["module"])
    with tf.Graph().as_default():
        x = tf.placeholder(tf.float32, tuple(spec["shape"]))
        net = getattr(module, spec["cls"])(w_regularizer=regularizers.l2_regularizer(DECAY),
                                           b_regularizer=regularizers.l2_regularizer(DECAY), **spec["kwargs"])
        for attr, value in spec.get("attrs", {}).items():
            setattr(net, attr, list(value))
        net(x, is_training=True, keep_prob=1.0)
        losses = tf.get_collection(tf.GraphKeys.REGULARIZATION_LOSSES)
        names = sorted({loss.op.name.split("/Regularizer/")[0] for loss in losses})
        trainable = sorted(v.op.name for v in tf.trainable_variables())
    if len(names) != len(losses):
        raise SystemExit(f"{key}: {len(losses)} losses for {len(names)} variables")
    return {"regularised": names, "trainable": trainable, "class": f"{spec['module']}.{spec['cls']}",
            "kwargs": spec["kwargs"], "attrs": spec.get("attrs", {})}


def networks_part() -> None:
    sys.path.insert(0, str(NETWORKS_DIR))
    import networks as specs

    out = {}
    for spec in specs.SPECS:
        result = subprocess.run([sys.executable, __file__, "_one", spec["key"]], check=True,
                                capture_output=True, text=True)
        out[spec["key"]] = json.loads(result.stdout.strip().splitlines()[-1])
        print(spec["key"], len(out[spec["key"]]["regularised"]), "of", len(out[spec["key"]]["trainable"]))
    (refs.OUT / "regularised.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


def decay_part() -> None:
    sys.path.insert(0, str(NETWORKS_DIR))
    import nn_compat_networks  # noqa: F401  (contrib regularizers, before niftynet)

    refs.CASES[CASE] = ("adam", "Dice", 1e-3)
    refs.CONFIG = refs.CONFIG.replace("decay = 0.0", f"decay = {DECAY}\nreg_type = L2")
    from niftynet.engine.application_variables import CONSOLE
    from niftynet.engine.signal import ITER_FINISHED

    totals = []

    def record(_sender, **msg):
        it = msg["iter_msg"]
        if it.is_training:
            totals.append(float(it.current_iter_output[CONSOLE]["total_loss"]))

    ITER_FINISHED.connect(record, weak=False)
    root = Path(tempfile.mkdtemp(prefix="niftynet_decay_"))
    try:
        losses, last = refs.run_case(CASE, root / CASE)
        import tensorflow as tf

        reader = tf.train.load_checkpoint(str(last))
        arrays = {}
        for name in sorted(reader.get_variable_to_shape_map()):
            arrays.update(refs.digest(name, reader.get_tensor(name)))
        arrays["losses"] = np.asarray(losses, dtype=np.float64)
        arrays["total_losses"] = np.asarray(totals, dtype=np.float64)
        np.savez_compressed(refs.OUT / f"{CASE}.npz", **arrays)
        meta_path = refs.OUT / "meta.json"
        meta = json.loads(meta_path.read_text())
        meta["cases"][CASE] = {"optimiser": "adam", "loss_type": "Dice", "lr": 1e-3, "decay": DECAY,
                               "reg_type": "L2", "losses": losses, "total_losses": totals,
                               "variables": len(reader.get_variable_to_shape_map()), "checkpoint": last.name}
        meta_path.write_text(json.dumps(meta, indent=1) + "\n")
        print(CASE, "losses", losses, "total", totals)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str]) -> int:
    if argv[:1] == ["_one"]:
        print(json.dumps(regularised_variables(argv[1])))
        return 0
    parts = argv or ["networks", "decay"]
    refs.OUT.mkdir(parents=True, exist_ok=True)
    for part in parts:
        if part == "networks":
            networks_part()
        elif part == "decay":
            subprocess.run([sys.executable, __file__, "_decay"], check=True)
        elif part == "_decay":
            decay_part()
        else:
            raise SystemExit(f"unknown part {part!r}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main(sys.argv[1:]))
