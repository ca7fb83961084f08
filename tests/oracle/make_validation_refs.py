"""Make the validation reference: NiftyNet 0.6.0's ``net_segment train`` with a validation subject (oracle's Python).

As ``make_training_refs.py``'s ``adam_dice`` case (the zoo checkpoint, Adam, ``Dice``, lr 1e-3,
three iterations, the 16^3 crop as the training subject), plus a second subject, the same crop
mirrored along x (image and label), named ``validation`` in a ``dataset_split.csv`` NiftyNet reads,
and ``validation_every_n = 1``, ``validation_max_iter = 1``. Recorded: the training losses and, after
each iteration, the validation iteration's ``loss`` -- NiftyNet's validation forward pass (its
network built with ``is_training=True``: batch norm on the batch's moments, no update). Every
variable after the run is checked here to equal the ``adam_dice`` reference's (validation changes
none), so only the losses are stored::

    tests/data/training/adam_dice_validation.npz   losses (3,), validation_losses (3,)

Usage::

    $ORACLE_VENV/bin/python tests/oracle/make_validation_refs.py
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import make_training_refs as refs  # noqa: E402

CASE = "adam_dice_validation"


def main() -> int:
    import nibabel as nib

    refs.CASES[CASE] = ("adam", "Dice", 1e-3)
    refs.CONFIG = refs.CONFIG.replace("validation_every_n = -1", "validation_every_n = 1\nvalidation_max_iter = 1")
    root = Path(tempfile.mkdtemp(prefix="niftynet_validation_"))
    workdir = root / CASE
    data = workdir / "data"
    data.mkdir(parents=True)
    image, label = refs.batch()
    nib.save(nib.Nifti1Image(np.ascontiguousarray(image[::-1]), np.eye(4)), str(data / "mirror_image.nii.gz"))
    nib.save(nib.Nifti1Image(np.ascontiguousarray(label[::-1]), np.eye(4)), str(data / "mirror_label.nii.gz"))
    # subject ids as NiftyNet makes them: the file name without 'image' / 'label' and the extension
    (workdir / "dataset_split.csv").write_text("crop_,training\nmirror_,validation\n")
    sys.path.insert(0, str(refs.ORACLE))
    import nn_compat  # noqa: F401  (before anything from niftynet)
    from niftynet.engine.application_variables import CONSOLE
    from niftynet.engine.signal import ITER_FINISHED

    validation = []

    def record(_sender, **msg):
        it = msg["iter_msg"]
        if it.is_validation:
            validation.append((it.current_iter, float(it.current_iter_output[CONSOLE]["loss"])))

    ITER_FINISHED.connect(record, weak=False)
    try:
        losses, last = refs.run_case(CASE, workdir)
        import tensorflow as tf

        reader = tf.train.load_checkpoint(str(last))
        arrays = {}
        for name in sorted(reader.get_variable_to_shape_map()):
            arrays.update(refs.digest(name, reader.get_tensor(name)))
        if [i for i, _ in validation] != [refs.START_ITER + k for k in (1, 2, 3)]:
            raise SystemExit(f"validation iterations {validation}")
        with np.load(refs.OUT / "adam_dice.npz") as plain:
            differ = [k for k in arrays if not np.array_equal(arrays[k], plain[k])]
        if differ:
            raise SystemExit(f"validation changed {len(differ)} variables, e.g. {differ[0]}")
        np.savez_compressed(refs.OUT / f"{CASE}.npz", losses=np.asarray(losses, dtype=np.float64),
                            validation_losses=np.asarray([v for _, v in validation], dtype=np.float64))
        meta_path = refs.OUT / "meta.json"
        meta = json.loads(meta_path.read_text())
        meta["cases"][CASE] = {"optimiser": "adam", "loss_type": "Dice", "lr": 1e-3, "losses": losses,
                               "validation_losses": [v for _, v in validation],
                               "validation_subject": "the crop mirrored along x (image[::-1], label[::-1])",
                               "variables": len(reader.get_variable_to_shape_map()), "checkpoint": last.name}
        meta_path.write_text(json.dumps(meta, indent=1) + "\n")
        print(CASE, "losses", losses, "validation", validation)
    finally:
        ITER_FINISHED.disconnect(record)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
