"""MSNet (W-Net / T-Net / E-Net of github.com/taigw/brats17) against TensorFlow, with the real BraTS 2017 weights.

References: ``tests/data/networks/msnet_<net>/`` (made by ``tests/oracle/make_msnet_refs.py``:
the graph rebuilt on NiftyNet 0.6.0's layers at small shapes, bitwise equal to the saved
MetaGraphs at their own shapes, the real checkpoints restored, batch norm on batch statistics).
"""
from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DATA, MODELS, need
from msnet_inputs import T1_FILES, brain_input, random_input, sha256
from network_refs import REFS, assert_matches_niftynet, run_niftynet_layout

from niftyport import networks
from niftyport.errors import InputShapeError, MappingError

KEYS = ("msnet_wnet", "msnet_tnet", "msnet_enet", "msnet_wnet_min")  # _min: 9 x 4 x 4, BN of single values


@cache
def ref_meta(key: str) -> dict:
    return json.loads((REFS / key / "meta.json").read_text())


def checkpoint(key: str) -> Path:
    meta = ref_meta(key)
    prefix = MODELS.parent / meta["checkpoint"]
    data = need(Path(f"{prefix}.data-00000-of-00001"))
    if hashlib.sha256(data.read_bytes()).hexdigest() != meta["checkpoint_data_sha256"]:
        raise AssertionError(f"{key}: {data.name} is not the checkpoint the reference was made with")
    return prefix


def ref_input(key: str, which: str) -> np.ndarray:
    meta = ref_meta(key)
    shape = tuple(meta["input_shape"])
    if which == "random":
        array = random_input(shape, meta["input_seed"])
    else:
        for name in T1_FILES:
            need(DATA / name)
        array = brain_input(shape, DATA)
    assert sha256(array) == meta["input_sha256"][which], f"{key}: regenerated {which} input differs"
    return array


@cache
def loaded(key: str) -> torch.nn.Module:
    return networks.load("msnet", checkpoint(key), **ref_meta(key)["niftyport_kwargs"])


def ref_output(key: str, which: str) -> np.ndarray:
    with np.load(REFS / key / "outputs.npz") as npz:
        return npz[f"output_{which}"]


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("which", ["random", "brain"])
def test_forward_matches_tensorflow(key, which):
    out = run_niftynet_layout(loaded(key), ref_input(key, which))
    assert_matches_niftynet(out, ref_output(key, which))


def test_moving_statistics_would_not_match():
    """Control: normalising with the stored (untrained 0/1) statistics, as is_training=False would, fails."""
    model = networks.load("msnet", checkpoint("msnet_wnet"), **ref_meta("msnet_wnet")["niftyport_kwargs"])
    for module in model.modules():
        if hasattr(module, "batch_stats"):
            module.batch_stats = False
    out = run_niftynet_layout(model, ref_input("msnet_wnet", "random"))
    with pytest.raises(AssertionError, match=r"max \|diff\|"):
        assert_matches_niftynet(out, ref_output("msnet_wnet", "random"))


def test_a_sample_depends_on_its_batch():
    """Batch statistics: one sample alone gives another output than within its batch (as in TF)."""
    model = loaded("msnet_enet")
    x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(ref_input("msnet_enet", "random"), -1, 1)))
    with torch.no_grad():
        together, alone = model(x)[:1], model(x[:1])
    assert float((together - alone).abs().max()) > 1e-2


def test_wrong_variant_does_not_load():
    """Control: E-Net weights into a W-Net (downsample_twice=True) miss its extra layers."""
    kwargs = dict(ref_meta("msnet_enet")["niftyport_kwargs"], downsample_twice=True)
    with pytest.raises(MappingError):
        networks.load("msnet", checkpoint("msnet_enet"), **kwargs)


def tf_names(model: torch.nn.Module, scope: str) -> set[str]:
    """The module's keys mapped to TF names by the reversed rules, checked to map back (strict both ways)."""
    rules = networks.get("msnet").rules(scope, acti_func=model.acti_func)
    back = rules.reversed()
    names = set()
    for key in model.state_dict():
        hit = back.target_of(key)
        assert hit is not None, f"module key {key} has no NiftyNet name"
        name = hit[1]
        assert rules.target_of(name)[1] == key
        names.add(name)
    return names


@pytest.mark.parametrize("key", KEYS)
def test_rules_give_exactly_the_checkpoints_names(key):
    from niftyport.checkpoint import read_checkpoint

    stored = set(read_checkpoint(checkpoint(key)).model_tensors())
    scope = ref_meta(key)["scope"]
    kwargs = ref_meta(key)["niftyport_kwargs"]
    assert tf_names(networks.build("msnet", **kwargs), scope) == stored


@pytest.mark.parametrize("options", [
    dict(downsample_twice=True),
    dict(downsample_twice=False),
    dict(downsample_twice=True, base_chns=[8, 12, 16, 20], acti_func="relu"),
    dict(downsample_twice=False, base_chns=[8, 8, 12, 12], in_channels=10),
])
def test_registry_round_trip(options):
    """Module keys == rules' targets for every variant (feature_expand, projection shortcut, relu)."""
    kwargs = dict(num_classes=3, in_channels=4, acti_func="prelu") | options
    model = networks.build("msnet", **kwargs)
    names = tf_names(model, "MSNet")
    assert any("feature_expand" in n for n in names) == (len(set(kwargs.get("base_chns", [32]))) > 1)
    assert any("residual_sum/proj" in n for n in names) == (kwargs["in_channels"] > model.base_chns[0])
    assert any("alpha" in n for n in names) == (kwargs["acti_func"] == "prelu")
    x = torch.randn(2, kwargs["in_channels"], 10, 8, 12)
    with torch.no_grad():
        assert model(x).shape == (2, 3, 2, 8, 12)


def test_input_size_rule():
    spec = networks.get("msnet")
    spec.validate_input((19, 144, 144))
    assert spec.output_shape((19, 180, 160)) == (11, 180, 160)
    with pytest.raises(InputShapeError, match="at least 9 slices"):
        spec.validate_input((8, 96, 96))
    with pytest.raises(InputShapeError, match="multiples of 4"):
        spec.validate_input((19, 98, 96))
    e_net = networks.build("msnet", num_classes=2, in_channels=4, acti_func="prelu", downsample_twice=False)
    w_net = networks.build("msnet", num_classes=2, in_channels=4, acti_func="prelu", downsample_twice=True)
    x = torch.zeros(1, 4, 9, 6, 10)  # even, not multiples of 4
    with torch.no_grad():
        assert e_net(x).shape == (1, 2, 1, 6, 10)
        with pytest.raises(InputShapeError, match="multiples of 4"):
            w_net(x)
        with pytest.raises(InputShapeError, match="multiples of 2"):
            e_net(torch.zeros(1, 4, 9, 6, 9))
