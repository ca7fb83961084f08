"""A checkpoint niftyport writes during training, restored by NiftyNet 0.6.0's own code.

Needs the oracle (``$NIFTYPORT_ORACLE_PYTHON``: the Python of the venv of
``shared/oracle/README.md``); skipped without it. niftyport trains three
iterations from the zoo checkpoint (Adam, Dice), writes
``model.ckpt-33003``, then NiftyNet (``tests/oracle/check_training_checkpoint.py``)
resumes its own training from it for one iteration and runs its network in
inference mode from it: NiftyNet's loss at iteration 33004 must be
niftyport's fourth loss, its logits niftyport's.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CHECKPOINT, REPO, need
from training_refs import batch

from niftyport import networks
from niftyport.training.batchnorm import BatchNormTraining
from niftyport.training.loop import train_step
from niftyport.training.optimisers import Adam
from niftyport.training.state import restore, save_checkpoint, trainable_parameters, training_variables

ORACLE_PYTHON = os.environ.get("NIFTYPORT_ORACLE_PYTHON")


@pytest.mark.skipif(not ORACLE_PYTHON, reason="set NIFTYPORT_ORACLE_PYTHON to the oracle venv's python")
def test_niftynet_resumes_and_infers_from_our_checkpoint(tmp_path):
    need(CHECKPOINT.with_name(CHECKPOINT.name + ".index"))
    rules = networks.get("highres3dnet").rules("HighRes3DNet")
    model = networks.build("highres3dnet")
    optimiser = Adam(trainable_parameters(model, rules), 1e-3)
    bn = BatchNormTraining(model)
    variables = training_variables(model, rules, optimiser=optimiser, batch_norm=bn)
    restore(variables, CHECKPOINT)
    image, label = (torch.from_numpy(a)[None, None] for a in batch())
    for _ in range(3):
        train_step(model, optimiser, bn, image, label)
    save_checkpoint(variables, tmp_path / "models" / "model.ckpt-33003", global_step=33003)
    model.eval()
    with torch.no_grad():
        logits = model(image).permute(0, 2, 3, 4, 1).numpy()        # NiftyNet's (N, X, Y, Z, C)
    fourth = train_step(model, optimiser, bn, image, label)

    out = tmp_path / "oracle.npz"
    script = Path(REPO) / "tests" / "oracle" / "check_training_checkpoint.py"
    done = subprocess.run([ORACLE_PYTHON, str(script), str(tmp_path), "33003", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    oracle = np.load(out)
    assert float(oracle["loss"]) == pytest.approx(fourth, rel=1e-5)
    assert np.abs(oracle["logits"] - logits).max() <= 1e-5 * np.abs(oracle["logits"]).max()
