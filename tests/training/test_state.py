"""Training variables under NiftyNet's names: which exist, restore by vars_to_restore, freeze, save."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import CHECKPOINT, need
from training_refs import reference_names

from niftyport import networks
from niftyport.checkpoint import read_checkpoint, write_checkpoint
from niftyport.errors import TrainingError
from niftyport.training.batchnorm import BatchNormTraining
from niftyport.training.optimisers import Adam, GradientDescent
from niftyport.training.state import (frozen_names, restore, save_checkpoint, search_names, trainable_parameters,
                                      training_variables)

RULES = networks.get("highres3dnet").rules("HighRes3DNet")


@pytest.fixture(scope="module")
def zoo():
    need(CHECKPOINT.with_name(CHECKPOINT.name + ".index"))
    return read_checkpoint(CHECKPOINT)


def adam_setup(num_classes=160, **freeze):
    model = networks.build("highres3dnet", num_classes=num_classes)
    optimiser = Adam(trainable_parameters(model, RULES, **freeze), 1e-3)
    bn = BatchNormTraining(model)
    return model, optimiser, bn, training_variables(model, RULES, optimiser=optimiser, batch_norm=bn)


@pytest.mark.parametrize("case", ["adam_dice", "gd_gdsc"])
def test_names_are_those_of_niftynet_training_graph(case):
    # the oracle's list: every variable NiftyNet 0.6.0 saved after training with this optimiser
    expected = reference_names(case)
    model = networks.build("highres3dnet")
    cls = Adam if case.startswith("adam") else GradientDescent
    optimiser = cls(model.parameters(), 1e-3)
    names = training_variables(model, RULES, optimiser=optimiser, batch_norm=BatchNormTraining(model))
    assert sorted(names) == expected


def test_restore_everything_from_the_zoo(zoo):
    model, optimiser, bn, variables = adam_setup()
    report = restore(variables, zoo)
    assert not report.initialised and len(report.restored) == 317
    assert report.restored["ApplyGradients/beta1_power"] == "beta1_power"      # the zoo's top-level name
    assert optimiser.param_groups[0]["beta2_power"] == float(zoo.read("beta2_power"))
    name = "HighRes3DNet/res_2_1/conv_0/w"
    kernel = zoo.read(name)                                                      # (3, 3, 3, in, out)
    np.testing.assert_array_equal(model.res_2_1.conv_0.weight.detach().numpy(), kernel.transpose(4, 3, 0, 1, 2))
    slot = optimiser.state[model.res_2_1.conv_0.weight]["v"]
    np.testing.assert_array_equal(slot.numpy(), zoo.read(name + "/Adam_1").transpose(4, 3, 0, 1, 2))
    debias = bn.debias["res_2_1.bn_0.running_var"]
    key = "HighRes3DNet/res_2_1/bn_0/HighRes3DNet/res_2_1/bn_0/moving_variance"
    np.testing.assert_array_equal(debias.biased.numpy(), zoo.read(key + "/biased"))
    assert debias.local_step.item() == 33000.0


def test_new_head_leaves_conv_2_and_its_slots_fresh(zoo):
    model, optimiser, bn, variables = adam_setup(num_classes=3)
    fresh = model.conv_2.conv.weight.detach().clone()
    with pytest.raises(TrainingError, match="another shape.*conv_2.*vars_to_restore"):
        restore(variables, zoo)
    report = restore(variables, zoo, vars_to_restore=r"^((?!conv_2).)*$")
    assert report.initialised and all("conv_2" in n for n in report.initialised)
    assert "HighRes3DNet/conv_2_bn/conv_/w/Adam" in report.initialised
    assert "HighRes3DNet/conv_2_bn/bn_/HighRes3DNet/conv_2_bn/bn_/moving_mean/biased" in report.initialised
    assert "ApplyGradients/beta1_power" in report.restored
    assert len(report.restored) + len(report.initialised) == len(variables)
    assert model.conv_2.conv.weight.shape == (3, 80, 1, 1, 1)
    assert np.array_equal(model.conv_2.conv.weight.detach().numpy(), fresh.numpy())
    np.testing.assert_array_equal(model.conv_1.conv.weight.detach().numpy(),
                                  zoo.read("HighRes3DNet/conv_1_bn_relu/conv_/w").transpose(4, 3, 0, 1, 2))


def test_patterns_search_the_tensor_name():
    names = ["HighRes3DNet/conv_0_bn_relu/conv_/w", "HighRes3DNet/res_1_0/conv_0/w", "HighRes3DNet/res_2_0/conv_1/w"]
    assert search_names(names, "conv_0") == names[:2]     # re.search, not a whole-name match
    assert search_names(names, r"w:0$") == names
    assert search_names(names, r"w$") == []
    with pytest.raises(TrainingError, match="invalid regular expression"):
        search_names(names, "(")


def test_nothing_matched_is_an_error(zoo):
    *_, variables = adam_setup()
    with pytest.raises(TrainingError, match="matches no variable"):
        restore(variables, zoo, vars_to_restore=r"/w$")


def test_freeze_falls_back_to_vars_to_restore():
    model, optimiser, _, variables = adam_setup(vars_to_restore="res_1")
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert len(frozen) == 18 and all(n.startswith("res_1_") for n in frozen)   # 3 blocks x (2 w + 2 x (gamma, beta))
    held = {id(p) for g in optimiser.param_groups for p in g["params"]}
    assert all(id(p) not in held for n, p in model.named_parameters() if n in frozen)
    assert not any(n.startswith("HighRes3DNet/res_1_") and n.endswith("/Adam") for n in variables)  # no slots
    # vars_to_freeze wins over vars_to_restore; "conv_0" also matches every block's conv_0
    assert len(frozen_names(variables, vars_to_freeze="conv_0", vars_to_restore="res_1")) == 3 + 9
    model2, *_ = adam_setup(vars_to_freeze="conv_0", vars_to_restore="res_1")
    assert sum(not p.requires_grad for p in model2.parameters()) == 12


def test_missing_slots_are_an_error(zoo, tmp_path):
    weights_only = {v.name: zoo.read(v.name) for v in zoo.variables if v.kept}
    prefix = write_checkpoint(tmp_path / "model.ckpt-5", weights_only, global_step=5)
    *_, variables = adam_setup()
    with pytest.raises(TrainingError, match=r"lacks 212 variable\(s\).*vars_to_restore"):
        restore(variables, prefix)
    report = restore(variables, prefix, vars_to_restore=r"^HighRes3DNet/(?!.*/(Adam|Adam_1|biased|local_step):0$)")
    assert len(report.restored) == 105


def test_save_then_restore_round_trip(zoo, tmp_path):
    model, optimiser, bn, variables = adam_setup()
    restore(variables, zoo)
    prefix = save_checkpoint(variables, tmp_path / "models" / "model.ckpt-33000", global_step=33000)
    back = read_checkpoint(prefix)
    names = {v.name for v in back.variables}
    assert names == set(variables) | {"beta1_power", "beta2_power", "global_step"}
    assert int(back.read("global_step")) == 33000
    for name in ("HighRes3DNet/res_3_2/conv_1/w/Adam", "HighRes3DNet/conv_2_bn/bn_/moving_variance",
                 "HighRes3DNet/res_1_0/bn_0/HighRes3DNet/res_1_0/bn_0/moving_mean/local_step", "beta2_power"):
        assert np.array_equal(back.read(name), zoo.read(name)), name
    assert back.read("ApplyGradients/beta2_power") == zoo.read("beta2_power")
