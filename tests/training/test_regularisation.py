"""``[NETWORK] decay``: which variables NiftyNet regularises, the term it adds, and a training run against NiftyNet.

References (``tests/oracle/make_regularisation_refs.py``, NiftyNet 0.6.0's own code):
``regularised.json`` lists, for every network the oracle builds, the variables
TensorFlow put in ``REGULARIZATION_LOSSES`` when the network gets the
application's ``w_regularizer`` and ``b_regularizer``; ``adam_dice_decay.npz``
is ``net_segment train`` with ``decay = 0.01`` for three iterations from the
model zoo checkpoint: the ``loss`` and ``total_loss`` it printed and every variable after.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import CHECKPOINT, need
from training_refs import REFS, batch, load, reference_values

from niftyport import networks
from niftyport.checkpoint import read_checkpoint
from niftyport.errors import TrainingError
from niftyport.training.batchnorm import BatchNormTraining
from niftyport.training.loop import LossSettings, train_step_losses
from niftyport.training.optimisers import make_optimiser
from niftyport.training.regularisation import make_regulariser, regularisation_term, regularised_names
from niftyport.training.state import checkpoint_tensors, restore, trainable_parameters, training_variables

ORACLE = json.loads((REFS / "regularised.json").read_text())
DECAY = 0.01


def spec_of(oracle_class: str):
    """The registry's network for the oracle's ``module.Class``."""
    for spec in networks.specs():
        if spec.niftynet_class == f"niftynet.network.{oracle_class}":
            return spec
    raise LookupError(oracle_class)


@pytest.mark.parametrize("key", sorted(ORACLE))
def test_regularised_variables_are_niftynets(key):
    ref = ORACLE[key]
    spec = spec_of(ref["class"])
    assert regularised_names(ref["trainable"], spec.unregularised) == ref["regularised"]


def test_every_niftynet_network_is_covered():
    covered = {spec_of(ref["class"]).name for ref in ORACLE.values()}
    niftynets = {s.name for s in networks.specs() if s.niftynet_class.startswith("niftynet.network.")}
    assert covered == niftynets
    # a network whose regularisation is not known refuses decay
    unknown = [s for s in networks.specs() if s.unregularised is None]
    assert unknown and all(s.name not in covered for s in unknown)
    with pytest.raises(TrainingError, match="decay = 0"):
        regularised_names(["a/w"], None)


def test_term_by_hand():
    a, b = torch.tensor([[1.0, -2.0], [0.5, 0.0]]), torch.tensor([3.0, -1.0, 2.0])
    # L2: tf.nn.l2_loss = sum(w^2) / 2, times decay, then the mean over the variables
    l2 = regularisation_term([a, b], 0.1, "L2")
    assert l2.dtype == torch.float32
    np.testing.assert_allclose(float(l2), np.mean([0.1 * 5.25 / 2, 0.1 * 14 / 2]), rtol=1e-7)
    np.testing.assert_allclose(float(regularisation_term([a, b], 0.1, "l1")), np.mean([0.1 * 3.5, 0.1 * 6]), rtol=1e-7)
    with pytest.raises(TrainingError, match="reg_type = L3"):
        regularisation_term([a], 0.1, "L3")


def test_gradient_is_decay_times_weight_over_count():
    model = networks.build("toynet", num_classes=3)
    rules = networks.get("toynet").rules("ToyNet")
    reg = make_regulariser(model, rules, decay=0.5)
    assert len(reg.names) == len(reg.parameters) == 6          # the oracle: all 6 trainable variables of ToyNet
    reg().backward()
    for p in reg.parameters:
        torch.testing.assert_close(p.grad, 0.5 * p.detach() / 6)
    assert make_regulariser(model, rules, decay=0.0) is None


@pytest.fixture(scope="module")
def decay_run():
    need(CHECKPOINT.with_name(CHECKPOINT.name + ".index"))
    zoo = read_checkpoint(CHECKPOINT)
    image, label = (torch.from_numpy(a)[None, None] for a in batch())
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 2))
    try:
        rules = networks.get("highres3dnet").rules("HighRes3DNet")
        model = networks.build("highres3dnet")
        optimiser = make_optimiser("adam", trainable_parameters(model, rules), 1e-3)
        bn = BatchNormTraining(model)
        variables = training_variables(model, rules, optimiser=optimiser, batch_norm=bn)
        restore(variables, zoo)
        reg = make_regulariser(model, rules, decay=DECAY, reg_type="L2", unregularised="")
        steps = [train_step_losses(model, optimiser, bn, image, label, loss=LossSettings("Dice"), regulariser=reg)
                 for _ in range(3)]
    finally:
        torch.set_num_threads(threads)
    return steps, checkpoint_tensors(variables)


def test_decay_losses_match_niftynet(decay_run):
    steps, _ = decay_run
    refs = load("adam_dice_decay")
    np.testing.assert_allclose([s.loss for s in steps], refs["losses"], rtol=1e-5)
    np.testing.assert_allclose([s.total_loss for s in steps], refs["total_losses"], rtol=1e-6)
    assert refs["total_losses"][0] > 100 * refs["losses"][0]      # the term dominates: a wrong one cannot pass


def test_decay_variables_match_niftynet(decay_run):
    _, ours = decay_run
    refs = load("adam_dice_decay")
    failures = []
    for name in sorted({k.split("|")[0] for k in refs if "|" in k}):
        mine, theirs = reference_values(refs, name, ours[name])
        err = float(np.abs(mine.astype(np.float64) - theirs).max() / max(np.abs(theirs).max(), 1e-30))
        if err > (2e-3 if name.endswith("/Adam") else 5e-5):
            failures.append(f"{name}: {err:.2e}")
    assert not failures, "\n".join(failures)
