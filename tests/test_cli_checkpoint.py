import csv
import json
import shutil
import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from niftyport.checkpoint import bundle as tb
from niftyport.checkpoint import read_checkpoint, write_checkpoint
from niftyport.cli import main


def run(capsys, *args):
    """Run the CLI in-process; returns (exit status, stdout, stderr)."""
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(status, err, *fragments):
    assert status != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("niftyport: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture
def ckpt_copy(checkpoint_prefix, tmp_path):
    """A writable copy of the real checkpoint (index and data)."""
    folder = tmp_path / "ckpt"
    folder.mkdir()
    for suffix in (".index", ".data-00000-of-00001"):
        shutil.copyfile(checkpoint_prefix.with_name(checkpoint_prefix.name + suffix),
                        folder / (checkpoint_prefix.name + suffix))
    return folder / checkpoint_prefix.name


# --------------------------------------------------------------------------- variables

def test_variables_table_and_csv_match_tensorflows_listing(capsys, checkpoint_prefix, tf_listing, tmp_path):
    status, out, _ = run(capsys, "variables", checkpoint_prefix, "--csv", tmp_path / "vars.csv")
    assert status == 0
    with open(tmp_path / "vars.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    as_listed = {name: ("x".join(map(str, shape)) or "scalar", dtype, kind)
                 for name, (shape, dtype, kind) in tf_listing.items()}
    assert {r["name"]: (r["shape"], r["dtype"], r["kind"]) for r in rows} == as_listed
    assert all(r["kept"] == str(int(r["kind"] == "model")) and r["reason"] for r in rows)
    assert "381 variables in" in out and "105 kept, 276 dropped" in out
    assert "dropped   63 ExponentialMovingAverage: moving-average shadow copy" in out
    table = out.splitlines()
    assert table[0].split() == ["name", "shape", "dtype", "status"]
    line = next(l for l in table if l.startswith("HighRes3DNet/conv_0_bn_relu/conv_/w "))
    assert line.split()[1:4] == ["3x3x3x1x16", "float32", "kept"]


def test_variables_kept_only(capsys, checkpoint_prefix, tmp_path):
    status, out, _ = run(capsys, "variables", checkpoint_prefix.parent, "--kept-only", "--verify",
                         "--csv", tmp_path / "kept.csv")
    assert status == 0 and "every crc32c verified" in out
    with open(tmp_path / "kept.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 105


# --------------------------------------------------------------------------- convert and export

def test_convert_is_bit_identical_to_the_third_party_pth(capsys, checkpoint_prefix, third_party_pth, tmp_path):
    out_file, pth_file = tmp_path / "highres3dnet.safetensors", tmp_path / "highres3dnet.pth"
    status, out, _ = run(capsys, "convert", checkpoint_prefix, "-o", out_file, "--network", "highres3dnet",
                         "--pth", pth_file)
    assert status == 0
    assert "381 variables" in out and "105 kept, 276 dropped" in out and "dropped   63 Adam:" in out
    converted = load_file(out_file)
    assert converted.keys() == torch.load(pth_file, weights_only=True).keys()
    theirs = torch.load(third_party_pth, weights_only=True)
    # all 105 parameter groups, byte for byte, whatever the key names
    assert sorted(t.numpy().tobytes() for t in converted.values()) == sorted(
        t.numpy().tobytes() for k, t in theirs.items() if not k.endswith("num_batches_tracked"))
    assert torch.equal(converted["res_3_0.conv_1.weight"],
                       theirs["block.3.dilation_block.0.residual_block.1.convolutional_block.3.weight"])


def test_export_then_convert_round_trips(capsys, checkpoint_prefix, tmp_path):
    first = tmp_path / "a.safetensors"
    assert run(capsys, "convert", checkpoint_prefix, "-o", first)[0] == 0
    status, out, _ = run(capsys, "export", first, "-o", tmp_path / "out" / "model.ckpt-33000")
    assert status == 0 and "global_step 33000" in out
    exported = read_checkpoint(tmp_path / "out")
    assert int(exported.read("global_step")) == 33000
    original = read_checkpoint(checkpoint_prefix).model_tensors()
    assert {n: v.tobytes() for n, v in exported.model_tensors().items()} == {n: v.tobytes() for n, v in original.items()}
    second = tmp_path / "b.safetensors"
    assert run(capsys, "convert", tmp_path / "out", "-o", second)[0] == 0
    a, b = load_file(first), load_file(second)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_outputs_never_replace_inputs_and_need_force(capsys, third_party_pth, tmp_path):
    out_file = tmp_path / "w.safetensors"
    assert run(capsys, "convert", third_party_pth, "-o", out_file)[0] == 0
    status, _, err = run(capsys, "convert", third_party_pth, "-o", out_file)
    assert_one_line_error(status, err, "exists; use --force")
    assert run(capsys, "convert", third_party_pth, "-o", out_file, "--force")[0] == 0
    status, _, err = run(capsys, "convert", out_file, "-o", out_file, "--force")
    assert_one_line_error(status, err, "is the input file")
    prefix = tmp_path / "ckpt" / "model.ckpt-1"
    assert run(capsys, "export", out_file, "-o", prefix)[0] == 0
    status, _, err = run(capsys, "export", prefix, "-o", prefix, "--force")
    assert_one_line_error(status, err, "is the input file")


def test_read_only_outputs_are_never_replaced(capsys, third_party_pth, tmp_path):
    out_file = tmp_path / "w.safetensors"
    out_file.write_bytes(b"keep me")
    out_file.chmod(0o444)
    status, _, err = run(capsys, "convert", third_party_pth, "-o", out_file, "--force")
    assert_one_line_error(status, err, "is read-only")
    assert out_file.read_bytes() == b"keep me"
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        status, _, err = run(capsys, "export", third_party_pth, "-o", folder / "model.ckpt-1")
        assert_one_line_error(status, err, "is read-only")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


# --------------------------------------------------------------------------- damaged or mismatched checkpoints

def test_corrupt_index_block(capsys, ckpt_copy, tmp_path):
    index = ckpt_copy.with_name(ckpt_copy.name + ".index")
    raw = bytearray(index.read_bytes())
    raw[100] ^= 0x01  # inside the data block
    index.write_bytes(bytes(raw))
    status, _, err = run(capsys, "convert", ckpt_copy, "-o", tmp_path / "o.safetensors")
    assert_one_line_error(status, err, ".index: corrupt: crc32c mismatch in block at byte 0")
    assert not (tmp_path / "o.safetensors").exists()


def test_truncated_index(capsys, ckpt_copy, tmp_path):
    index = ckpt_copy.with_name(ckpt_copy.name + ".index")
    index.write_bytes(index.read_bytes()[:-10])
    status, _, err = run(capsys, "variables", ckpt_copy)
    assert_one_line_error(status, err, "model.ckpt-33000.index", "truncated")


def test_truncated_data(capsys, ckpt_copy, tmp_path):
    data = ckpt_copy.with_name(ckpt_copy.name + ".data-00000-of-00001")
    data.write_bytes(data.read_bytes()[:4096])
    status, _, err = run(capsys, "convert", ckpt_copy, "-o", tmp_path / "o.safetensors")
    assert_one_line_error(status, err, "data-00000-of-00001: truncated")


def test_wrong_tensor_crc(capsys, ckpt_copy, tmp_path):
    entry = tb.decode_index(ckpt_copy.with_name(ckpt_copy.name + ".index").read_bytes())[1][
        "HighRes3DNet/res_1_0/conv_1/w"]
    data = ckpt_copy.with_name(ckpt_copy.name + ".data-00000-of-00001")
    raw = bytearray(data.read_bytes())
    raw[entry.offset + entry.size // 2] ^= 0x10
    data.write_bytes(bytes(raw))
    status, _, err = run(capsys, "convert", ckpt_copy, "-o", tmp_path / "o.safetensors")
    assert_one_line_error(status, err, "crc32c mismatch for variable 'HighRes3DNet/res_1_0/conv_1/w'")
    status, _, err = run(capsys, "variables", ckpt_copy, "--verify")
    assert_one_line_error(status, err, "crc32c mismatch")


def test_missing_variable(capsys, checkpoint_prefix, tmp_path):
    tensors = read_checkpoint(checkpoint_prefix).model_tensors()
    del tensors["HighRes3DNet/res_3_1/bn_0/moving_variance"]
    write_checkpoint(tmp_path / "m" / "model.ckpt-1", tensors)
    status, _, err = run(capsys, "convert", tmp_path / "m", "-o", tmp_path / "o.safetensors")
    assert_one_line_error(status, err, "missing 1 key(s): 'res_3_1.bn_0.running_var' "
                                       "(from 'HighRes3DNet/res_3_1/bn_0/moving_variance')")


def test_wrong_shape(capsys, checkpoint_prefix, tmp_path):
    tensors = read_checkpoint(checkpoint_prefix).model_tensors()
    tensors["HighRes3DNet/conv_2_bn/conv_/w"] = np.zeros((1, 1, 1, 80, 150), np.float32)
    write_checkpoint(tmp_path / "m" / "model.ckpt-1", tensors)
    status, _, err = run(capsys, "convert", tmp_path / "m" / "model.ckpt-1.index", "-o", tmp_path / "o.safetensors")
    assert_one_line_error(status, err, "'HighRes3DNet/conv_2_bn/conv_/w' of shape (1, 1, 1, 80, 150)",
                          "expects (160, 80, 1, 1, 1)")


def test_not_a_checkpoint(capsys, tmp_path):
    status, _, err = run(capsys, "variables", tmp_path / "model.ckpt-5")
    assert_one_line_error(status, err, "model.ckpt-5: no TensorFlow checkpoint there")


# --------------------------------------------------------------------------- a user's own model via a rules file

USER_MODULE = textwrap.dedent("""
    from torch import nn

    class UserNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Conv3d(1, 2, 3)
            self.head = nn.Linear(2, 4)

    def build():
        return UserNet()
""")

USER_RULES = {
    "rules": [
        {"source": "User/conv/kernel", "target": "body.weight", "transform": "conv3d_dhwio_to_oidhw"},
        {"source": "User/{layer:conv|dense}/bias", "target": "{layer}.bias"},
        {"source": "User/dense/kernel", "target": "head.weight", "transform": "dense_io_to_oi"},
    ],
}


def test_users_own_model_with_a_rules_file(capsys, tmp_path, monkeypatch):
    (tmp_path / "user_models_for_niftyport_test.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    rng = np.random.default_rng(1)
    tensors = {"User/conv/kernel": rng.standard_normal((3, 3, 3, 1, 2)).astype(np.float32),
               "User/conv/bias": np.array([1, 2], np.float32),
               "User/dense/kernel": rng.standard_normal((2, 4)).astype(np.float32),
               "User/dense/bias": np.arange(4, dtype=np.float32),
               "User/dense/kernel/Adam": np.zeros((2, 4), np.float32), "global_step": np.int64(9)}
    write_checkpoint(tmp_path / "user" / "model.ckpt-9", tensors)
    rules = tmp_path / "rules.json"
    # the bias rule maps conv/dense scopes onto themselves: wrong for this module, on purpose first
    rules.write_text(json.dumps(USER_RULES))
    network = "user_models_for_niftyport_test:build"
    status, _, err = run(capsys, "convert", tmp_path / "user", "-o", tmp_path / "u.safetensors",
                         "--rules", rules, "--network", network)
    assert_one_line_error(status, err, "missing 2 key(s): 'body.bias', 'head.bias'",
                          "unexpected 2 key(s): 'conv.bias', 'dense.bias'")
    USER_RULES["rules"][1] = {"source": "User/conv/bias", "target": "body.bias"}
    USER_RULES["rules"].append({"source": "User/dense/bias", "target": "head.bias"})
    rules.write_text(json.dumps(USER_RULES))
    status, out, _ = run(capsys, "convert", tmp_path / "user", "-o", tmp_path / "u.safetensors",
                         "--rules", rules, "--network", network)
    assert status == 0 and "dropped    1 Adam" in out and "onto UserNet" in out
    state = load_file(tmp_path / "u.safetensors")
    assert state["head.weight"].shape == (4, 2)
    assert torch.equal(state["head.weight"], torch.from_numpy(tensors["User/dense/kernel"].T.copy()))
    assert state["body.weight"][1, 0, 2, 1, 0].item() == tensors["User/conv/kernel"][2, 1, 0, 0, 1]
    # and back to TensorFlow names with the same rules
    assert run(capsys, "export", tmp_path / "u.safetensors", "-o", tmp_path / "back" / "model.ckpt-9",
               "--rules", rules)[0] == 0
    back = read_checkpoint(tmp_path / "back")
    for name in ("User/conv/kernel", "User/conv/bias", "User/dense/kernel", "User/dense/bias"):
        assert back.read(name).tobytes() == tensors[name].tobytes()


def test_convert_to_safetensors_needs_neither_torch_nor_tensorflow(checkpoint_prefix, tmp_path):
    """Reading, checking and writing the 105 tensors runs without importing torch (it costs seconds)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import niftyport

    out = tmp_path / "w.safetensors"
    env = dict(os.environ, PYTHONPATH=str(Path(niftyport.__file__).parents[1]))
    code = ("import sys; from niftyport.cli import main; "
            f"status = main(['convert', {str(checkpoint_prefix)!r}, '-o', {str(out)!r}]); "
            "print(status, 'torch' in sys.modules, 'tensorflow' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert run.stdout.strip().splitlines()[-1] == "0 False False", run.stderr
    assert len(load_file(out)) == 105
