import json

import numpy as np
import pytest
import torch
from torch import nn

from niftyport.checkpoint import read_checkpoint
from niftyport.errors import MappingError
from niftyport.mapping import (HIGHRES3DNET_NIFTYNET_RULES, HIGHRES3DNET_THIRD_PARTY_RULES, Rule, RuleSet,
                               apply_transform, convert_state_dict, export_state_dict, load_rules, map_tensors,
                               rules_from_dict)
from niftyport.network import HighRes3DNet


@pytest.fixture
def niftynet_tensors(checkpoint_prefix):
    return read_checkpoint(checkpoint_prefix).model_tensors()


@pytest.fixture
def pth(third_party_pth):
    return torch.load(third_party_pth, map_location="cpu", weights_only=True)


# --------------------------------------------------------------------------- the real weights

def test_checkpoint_converts_bit_identically_to_the_third_party_pth(niftynet_tensors, pth):
    converted = convert_state_dict(niftynet_tensors, HIGHRES3DNET_NIFTYNET_RULES, expected=HighRes3DNet())
    assert len(converted) == 105
    # independent of our rules: the third-party file holds the same 105 tensors, byte for byte
    ours = sorted(t.numpy().tobytes() for t in converted.values())
    theirs = sorted(t.numpy().tobytes() for k, t in pth.items() if not k.endswith("num_batches_tracked"))
    assert ours == theirs
    # and a few hand-matched keys (block.2 = second stage, dilation_block.1 = block 1, residual_block.0 = first conv)
    for key, third_party in [
        ("conv_0.conv.weight", "block.0.convolutional_block.1.weight"),
        ("conv_0.bn.running_var", "block.0.convolutional_block.2.running_var"),
        ("res_2_1.conv_0.weight", "block.2.dilation_block.1.residual_block.0.convolutional_block.3.weight"),
        ("res_3_2.bn_1.bias", "block.3.dilation_block.2.residual_block.1.convolutional_block.0.bias"),
        ("conv_1.conv.weight", "block.4.convolutional_block.0.weight"),
        ("conv_2.bn.weight", "block.6.convolutional_block.1.weight"),
    ]:
        assert torch.equal(converted[key], pth[third_party]), key


def test_kernels_move_from_dhwio_to_oidhw(niftynet_tensors):
    converted = convert_state_dict(niftynet_tensors, HIGHRES3DNET_NIFTYNET_RULES, expected=HighRes3DNet())
    w = niftynet_tensors["HighRes3DNet/res_2_0/conv_0/w"]  # (D, H, W, in=16, out=32)
    t = converted["res_2_0.conv_0.weight"]  # (out, in, D, H, W)
    assert tuple(t.shape) == (32, 16, 3, 3, 3) and t.is_contiguous()
    assert t[31, 15, 0, 1, 2].item() == w[0, 1, 2, 15, 31]
    assert t[5, 3, 2, 0, 1].item() == w[2, 0, 1, 3, 5]
    gamma = niftynet_tensors["HighRes3DNet/res_2_0/bn_1/gamma"]
    assert np.array_equal(converted["res_2_0.bn_1.weight"].numpy(), gamma)


def test_third_party_pth_loads_strictly(pth):
    model = HighRes3DNet()
    state = convert_state_dict(pth, HIGHRES3DNET_THIRD_PARTY_RULES, expected=model)
    assert not any(k.endswith("num_batches_tracked") for k in state)
    state.update({k: v for k, v in model.state_dict().items() if k.endswith("num_batches_tracked")})
    model.load_state_dict(state, strict=True)


def test_export_inverts_convert_bit_for_bit(niftynet_tensors):
    state = convert_state_dict(niftynet_tensors, HIGHRES3DNET_NIFTYNET_RULES, expected=HighRes3DNet())
    state["conv_0.bn.num_batches_tracked"] = torch.tensor(0)  # bookkeeping: not exported
    back = export_state_dict(state, HIGHRES3DNET_NIFTYNET_RULES)
    assert sorted(back) == sorted(niftynet_tensors)
    for name, value in niftynet_tensors.items():
        assert back[name].shape == value.shape and back[name].tobytes() == value.tobytes(), name


def test_reversed_rules_give_niftynet_names():
    reverse = HIGHRES3DNET_NIFTYNET_RULES.reversed()
    assert reverse.target_of("res_3_2.bn_1.running_var")[1] == "HighRes3DNet/res_3_2/bn_1/moving_variance"
    assert reverse.target_of("conv_1.conv.weight")[1] == "HighRes3DNet/conv_1_bn_relu/conv_/w"
    assert reverse.target_of("conv_2.bn.bias")[1] == "HighRes3DNet/conv_2_bn/bn_/beta"
    assert reverse.target_of("conv_2.conv.weight")[0].transform == "conv3d_oidhw_to_dhwio"
    assert reverse.target_of("conv_3.conv.weight") is None  # conv_n_bn_relu is declared for n in {0, 1}


# --------------------------------------------------------------------------- strict checks

def test_wrong_shape_names_the_variable_and_both_shapes(niftynet_tensors):
    niftynet_tensors["HighRes3DNet/res_2_1/conv_0/w"] = np.zeros((3, 3, 3, 16, 32), np.float32)
    with pytest.raises(MappingError) as err:
        convert_state_dict(niftynet_tensors, HIGHRES3DNET_NIFTYNET_RULES, expected=HighRes3DNet())
    message = str(err.value)
    assert "'HighRes3DNet/res_2_1/conv_0/w' of shape (3, 3, 3, 16, 32)" in message
    assert "'res_2_1.conv_0.weight' of shape (32, 16, 3, 3, 3)" in message
    assert "expects (32, 32, 3, 3, 3)" in message and "\n" not in message


def test_missing_variable_names_the_module_key_and_its_source(niftynet_tensors):
    del niftynet_tensors["HighRes3DNet/res_2_1/conv_0/w"]
    del niftynet_tensors["HighRes3DNet/conv_0_bn_relu/bn_/gamma"]
    with pytest.raises(MappingError, match=r"missing 2 key\(s\): 'conv_0\.bn\.weight' \(from "
                                           r"'HighRes3DNet/conv_0_bn_relu/bn_/gamma'\), 'res_2_1\.conv_0\.weight'"):
        convert_state_dict(niftynet_tensors, HIGHRES3DNET_NIFTYNET_RULES, expected=HighRes3DNet())


def test_variable_without_a_rule_is_reported(niftynet_tensors):
    niftynet_tensors["HighRes3DNet/extra_layer/w"] = np.zeros(3, np.float32)
    with pytest.raises(MappingError, match=r"1 variable\(s\) match no rule: 'HighRes3DNet/extra_layer/w'"):
        convert_state_dict(niftynet_tensors, HIGHRES3DNET_NIFTYNET_RULES, expected=HighRes3DNet())


def test_unexpected_keys_are_listed_sorted(niftynet_tensors):
    expected = {k: v.shape for k, v in HighRes3DNet().state_dict().items() if not k.startswith("conv_1.")}
    with pytest.raises(MappingError, match=r"unexpected 5 key\(s\): 'conv_1\.bn\.bias', 'conv_1\.bn\.running_mean', "
                                           r"'conv_1\.bn\.running_var', 'conv_1\.bn\.weight', 'conv_1\.conv\.weight'$"):
        convert_state_dict(niftynet_tensors, HIGHRES3DNET_NIFTYNET_RULES, expected=expected)


def test_a_key_produced_twice_is_an_error():
    rules = RuleSet((Rule("a/w", "weight"), Rule("b/w", "weight")))
    with pytest.raises(MappingError, match="'weight' produced twice, from 'a/w' and 'b/w'"):
        map_tensors({"a/w": np.zeros(1), "b/w": np.zeros(1)}, rules)


def test_transform_needs_the_right_rank():
    rules = RuleSet((Rule("w", "weight", "conv3d_dhwio_to_oidhw"),))
    with pytest.raises(MappingError, match=r"variable 'w' has shape \(3, 3\)"):
        map_tensors({"w": np.zeros((3, 3))}, rules)


# --------------------------------------------------------------------------- templates

def test_templates_fields_and_regexes():
    rule = Rule(r"net/block_{i:\d+}/{kind:conv|bn}/{i}", "blocks.{i}.{kind}")
    assert rule.apply("net/block_12/conv/12") == "blocks.12.conv"
    assert rule.apply("net/block_12/conv/3") is None  # a repeated field must repeat its value
    assert rule.apply("net/block_x/conv/x") is None
    assert rule.reversed().apply("blocks.4.bn") == "net/block_4/bn/4"
    assert rule.reversed().apply("blocks.4.fc") is None  # the source's field regex applies in reverse too
    default = Rule("{a}/w", "{a}.weight")
    assert default.apply("x.y/w") is None and default.apply("x/y/w") is None  # one component only
    assert Rule("a.b", "x").apply("aXb") is None  # literal text is literal


def test_rules_must_use_the_same_fields_and_known_transforms():
    with pytest.raises(MappingError, match="same fields"):
        Rule("{a}/w", "{b}.weight")
    with pytest.raises(MappingError, match="unknown transform 'conv3d'"):
        Rule("w", "weight", "conv3d")


def test_permutations_are_the_documented_layouts():
    kernel = np.arange(2 * 3 * 4 * 5 * 6).reshape(2, 3, 4, 5, 6)  # (D, H, W, in, out)
    oidhw = apply_transform(kernel, "conv3d_dhwio_to_oidhw")
    assert oidhw.shape == (6, 5, 2, 3, 4) and oidhw[4, 3, 1, 2, 0] == kernel[1, 2, 0, 3, 4]
    assert np.array_equal(apply_transform(oidhw, "conv3d_oidhw_to_dhwio"), kernel)
    dense = np.arange(6).reshape(2, 3)  # (in, out)
    assert np.array_equal(apply_transform(dense, "dense_io_to_oi"), dense.T)
    conv2d = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)  # (H, W, in, out)
    assert apply_transform(conv2d, "conv2d_hwio_to_oihw")[4, 3, 1, 2] == conv2d[1, 2, 3, 4]


# --------------------------------------------------------------------------- a user's own model

class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv3d(2, 4, 3, bias=True)
        self.norm = nn.BatchNorm3d(4)
        self.fc = nn.Linear(4, 3)


TINY_RULES = {
    "name": "TinyNet rules",
    "rules": [
        {"source": "Tiny/conv{n:\\d+}/kernel", "target": "conv{n}.weight", "transform": "conv3d_dhwio_to_oidhw"},
        {"source": "Tiny/conv{n:\\d+}/bias", "target": "conv{n}.bias"},
        {"source": "Tiny/bn/gamma", "target": "norm.weight"},
        {"source": "Tiny/bn/beta", "target": "norm.bias"},
        {"source": "Tiny/bn/moving_mean", "target": "norm.running_mean"},
        {"source": "Tiny/bn/moving_variance", "target": "norm.running_var"},
        {"source": "Tiny/fc/kernel", "target": "fc.weight", "transform": "dense_io_to_oi"},
        {"source": "Tiny/fc/bias", "target": "fc.bias"},
    ],
    "ignore_source": ["Tiny/debug/.*"],
}


def tiny_tf_tensors():
    rng = np.random.default_rng(0)
    return {
        "Tiny/conv1/kernel": rng.standard_normal((3, 3, 3, 2, 4)).astype(np.float32),
        "Tiny/conv1/bias": rng.standard_normal(4).astype(np.float32),
        "Tiny/bn/gamma": rng.standard_normal(4).astype(np.float32),
        "Tiny/bn/beta": rng.standard_normal(4).astype(np.float32),
        "Tiny/bn/moving_mean": rng.standard_normal(4).astype(np.float32),
        "Tiny/bn/moving_variance": rng.random(4).astype(np.float32),
        "Tiny/fc/kernel": rng.standard_normal((4, 3)).astype(np.float32),
        "Tiny/fc/bias": rng.standard_normal(3).astype(np.float32),
        "Tiny/debug/counter": np.zeros(1, np.float32),
    }


TINY_TOML = r"""
name = "TinyNet rules"
ignore_source = ['Tiny/debug/.*']

[[rules]]
source = 'Tiny/conv{n:\d+}/kernel'
target = 'conv{n}.weight'
transform = 'conv3d_dhwio_to_oidhw'

[[rules]]
source = 'Tiny/conv{n:\d+}/bias'
target = 'conv{n}.bias'

[[rules]]
source = 'Tiny/bn/moving_{stat:mean|var}iance'
target = 'norm.running_{stat}'

[[rules]]
source = 'Tiny/bn/moving_mean'
target = 'norm.running_mean'

[[rules]]
source = 'Tiny/bn/gamma'
target = 'norm.weight'

[[rules]]
source = 'Tiny/bn/beta'
target = 'norm.bias'

[[rules]]
source = 'Tiny/fc/kernel'
target = 'fc.weight'
transform = 'dense_io_to_oi'

[[rules]]
source = 'Tiny/fc/bias'
target = 'fc.bias'
"""


@pytest.mark.parametrize("fmt", ["json", "toml"])
def test_rules_file_for_a_users_own_model(tmp_path, fmt):
    path = tmp_path / f"rules.{fmt}"
    path.write_text(json.dumps(TINY_RULES) if fmt == "json" else TINY_TOML)
    rules = load_rules(path)
    tensors = tiny_tf_tensors()
    model = TinyNet()
    state = convert_state_dict(tensors, rules, expected=model)
    state["norm.num_batches_tracked"] = model.norm.num_batches_tracked
    model.load_state_dict(state, strict=True)
    kernel = tensors["Tiny/conv1/kernel"]
    assert model.conv1.weight[3, 1, 0, 1, 2].item() == kernel[0, 1, 2, 1, 3]
    assert torch.equal(model.fc.weight.detach(), torch.from_numpy(tensors["Tiny/fc/kernel"].T.copy()))
    assert torch.equal(model.norm.running_var, torch.from_numpy(tensors["Tiny/bn/moving_variance"]))


def test_rules_file_errors_name_the_file(tmp_path):
    bad_json = tmp_path / "rules.json"
    bad_json.write_text("{not json")
    with pytest.raises(MappingError, match=r"rules\.json: not valid JSON"):
        load_rules(bad_json)
    with pytest.raises(MappingError, match=r"unknown key\(s\) \['rule'\]"):
        rules_from_dict({"rules": [], "rule": []}, name="x.json")
    with pytest.raises(MappingError, match="rule 0 must have 'source' and 'target'"):
        rules_from_dict({"rules": [{"source": "a"}]}, name="x.json")
    with pytest.raises(MappingError, match="'ignore_source' must be a list"):
        rules_from_dict({"rules": [], "ignore_source": "a.*"}, name="x.json")
