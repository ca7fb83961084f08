"""Checkpoints written by real TensorFlow 2 (tests/oracle/make_tf2_checkpoints.py): bfloat16, a saved
tf.data iterator (DT_VARIANT) and a partitioned variable. Expected values are TensorFlow's own
(values.json), never this reader's."""
import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from niftyport.checkpoint import bundle as tb
from niftyport.checkpoint import read_checkpoint, write_checkpoint
from niftyport.cli import main
from niftyport.errors import CheckpointError
from niftyport.safetensors_io import read_safetensors, write_safetensors
from niftyport.tensors import BFLOAT16, bfloat16_array, dtype_name, widen_to_float32
from niftyport.weights import read_tensors, save_pth

DATA = Path(__file__).parent / "data" / "tf2_checkpoints"
VALUES = json.loads((DATA / "values.json").read_text())
VARIANT = "iterator/.ATTRIBUTES/ITERATOR_STATE"
KEEP_VALUE_RULES = {"rules": [{"source": "{name}/.ATTRIBUTES/VARIABLE_VALUE", "target": "{name}"}]}


def run(capsys, *args):
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def tf_values(key, name):
    entry = VALUES[key]["variables"][name]
    return np.array(entry["values"], dtype=np.float64).reshape(entry["shape"])


@pytest.fixture
def copies(tmp_path):
    """Writable copies of both fixtures (so that no test can touch the committed files)."""
    shutil.copytree(DATA, tmp_path / "tf2")
    return tmp_path / "tf2"


def test_every_variable_is_listed_with_tensorflows_shape_and_dtype():
    for key in ("bf16_variant", "partitioned"):
        ckpt = read_checkpoint(DATA / key)
        listed = {v.name: (list(v.shape), v.dtype_name) for v in ckpt.variables}
        assert listed == {name: (e["shape"], e["dtype"]) for name, e in VALUES[key]["variables"].items()}


def test_bfloat16_float16_and_float32_values_are_tensorflows():
    ckpt = read_checkpoint(DATA / "bf16_variant")
    bf16 = ckpt.read("bf16/.ATTRIBUTES/VARIABLE_VALUE")
    assert dtype_name(bf16.dtype) == "bfloat16" and bf16.shape == (3, 4)
    assert np.array_equal(widen_to_float32(bf16), tf_values("bf16_variant", "bf16/.ATTRIBUTES/VARIABLE_VALUE"))
    for name in ("half/.ATTRIBUTES/VARIABLE_VALUE", "kernel/.ATTRIBUTES/VARIABLE_VALUE"):
        assert np.array_equal(ckpt.read(name), tf_values("bf16_variant", name))
    part = read_checkpoint(DATA / "partitioned")
    assert np.array_equal(widen_to_float32(part.read("net/bf16/w")), tf_values("partitioned", "net/bf16/w"))


def test_variant_and_partitioned_variables_are_unreadable_alone():
    ckpt = read_checkpoint(DATA / "bf16_variant")
    variant = ckpt.info(VARIANT)
    assert not variant.readable and variant.unreadable.startswith("TensorFlow dtype variant")
    with pytest.raises(CheckpointError, match="ITERATOR_STATE' cannot be read: TensorFlow dtype variant"):
        ckpt.read(VARIANT)
    assert sorted(ckpt.model_tensors()) == ["bf16/.ATTRIBUTES/VARIABLE_VALUE", "half/.ATTRIBUTES/VARIABLE_VALUE",
                                            "kernel/.ATTRIBUTES/VARIABLE_VALUE"]
    assert ckpt.verify() == []
    part = read_checkpoint(DATA / "partitioned")
    assert "partitioned variable" in part.info("net/split/w").unreadable
    assert [v.name for v in part.unreadable_kept()] == ["net/split/w"]
    assert np.array_equal(part.read("net/plain/b"), tf_values("partitioned", "net/plain/b"))


def test_variables_command_lists_the_unreadable_ones(capsys, tmp_path):
    status, out, err = run(capsys, "variables", DATA / "bf16_variant", "--verify", "--csv", tmp_path / "v.csv")
    assert status == 0, err
    line = next(l for l in out.splitlines() if l.startswith(VARIANT))
    assert line.split()[1:3] == ["3", "variant"] and "kept; unreadable: TensorFlow dtype variant" in line
    assert "5 variables in" in out and "1 unreadable" in out
    assert "crc32c verified for every readable variable (1 unreadable, not checked)" in out
    assert "every crc32c verified" not in out
    with open(tmp_path / "v.csv", newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["name"] == VARIANT)
    assert (row["shape"], row["dtype"], row["kept"]) == ("3", "variant", "1")
    assert row["unreadable"].startswith("TensorFlow dtype variant")
    status, out, _ = run(capsys, "variables", DATA / "partitioned")
    assert status == 0 and "net/split/w" in out and "unreadable: partitioned variable" in out


def test_convert_converts_around_unneeded_unreadable_variables(capsys, copies, tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(KEEP_VALUE_RULES))
    out_file = tmp_path / "w.safetensors"
    status, out, err = run(capsys, "convert", copies / "bf16_variant", "-o", out_file, "--network", "none",
                           "--rules", rules)
    assert status == 0, err
    assert f"not read {VARIANT}: TensorFlow dtype variant" in out and "(not needed)" in out
    with safe_open(out_file, framework="pt") as f:
        assert sorted(f.keys()) == ["bf16", "half", "kernel"]
        assert f.get_slice("bf16").get_dtype() == "BF16" and f.get_slice("half").get_dtype() == "F16"
    state = load_file(out_file)
    assert state["bf16"].dtype == torch.bfloat16
    assert np.array_equal(state["bf16"].float().numpy(), tf_values("bf16_variant", "bf16/.ATTRIBUTES/VARIABLE_VALUE"))
    wide = tmp_path / "w32.safetensors"
    assert run(capsys, "convert", copies / "bf16_variant", "-o", wide, "--network", "none", "--rules", rules,
               "--float32")[0] == 0
    state32 = load_file(wide)
    assert {k: v.dtype for k, v in state32.items()} == dict.fromkeys(["bf16", "half", "kernel"], torch.float32)
    assert torch.equal(state32["bf16"], state["bf16"].float()) and torch.equal(state32["half"], state["half"].float())


def test_convert_refuses_an_unreadable_variable_it_needs(capsys, copies, tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"rules": [{"source": "{name:.+}", "target": "{name}"}]}))
    out_file = tmp_path / "w.safetensors"
    status, out, err = run(capsys, "convert", copies / "bf16_variant", "-o", out_file, "--network", "none",
                           "--rules", rules)
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and "ckpt-1.index: variable 'iterator/.ATTRIBUTES/ITERATOR_STATE' " \
        "is needed for 'iterator/.ATTRIBUTES/ITERATOR_STATE' but cannot be read: TensorFlow dtype variant" in lines[0]
    assert not out_file.exists()
    rules.write_text(json.dumps({"rules": [{"source": "net/{a}/{b}", "target": "{a}.{b}"}]}))
    status, _, err = run(capsys, "convert", copies / "partitioned", "-o", out_file, "--network", "none",
                         "--rules", rules)
    assert status == 2 and "variable 'net/split/w' is needed for 'split.w' but cannot be read: partitioned" in err
    rules.write_text(json.dumps({"rules": [{"source": "net/{a}/{b}", "target": "{a}.{b}"}],
                                 "ignore_source": ["net/split/.+"]}))
    status, out, err = run(capsys, "convert", copies / "partitioned", "-o", out_file, "--network", "none",
                           "--rules", rules)
    assert status == 0, err
    assert sorted(load_file(out_file)) == ["bf16.w", "plain.b"]


def test_bfloat16_goes_back_into_a_checkpoint_and_a_pth_bit_for_bit(capsys, tmp_path):
    original = read_checkpoint(DATA / "partitioned").read("net/bf16/w")
    write_safetensors({"net/bf16/w": original}, tmp_path / "w.safetensors")
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"rules": [{"source": "{name:.+}", "target": "{name}"}]}))
    status, _, err = run(capsys, "export", tmp_path / "w.safetensors", "-o", tmp_path / "back" / "model.ckpt-1",
                         "--rules", rules)
    assert status == 0, err
    back = read_checkpoint(tmp_path / "back")
    index = (tmp_path / "back" / "model.ckpt-1.index").read_bytes()
    assert tb.decode_index(index)[1]["net/bf16/w"].dtype == tb.DT_BFLOAT16
    assert back.read("net/bf16/w").tobytes() == original.tobytes()
    save_pth({"w": original}, tmp_path / "w.pth")
    loaded = torch.load(tmp_path / "w.pth", weights_only=True)["w"]
    assert loaded.dtype == torch.bfloat16 and loaded.view(torch.int16).numpy().tobytes() == original.tobytes()
    tensors, _ = read_tensors(tmp_path / "w.pth")
    assert tensors["w"].dtype == torch.bfloat16


def test_bfloat16_safetensors_are_the_librarys_bytes(tmp_path):
    rng = np.random.default_rng(3)
    values = torch.from_numpy(rng.standard_normal((3, 5)).astype(np.float32))
    reference = {"a.bf16": values.to(torch.bfloat16), "b.f32": values[0].clone(), "c.f16": values[1].half()}
    save_file(reference, tmp_path / "torch.safetensors", metadata={"format": "pt"})
    ours = {"a.bf16": bfloat16_array(reference["a.bf16"].view(torch.int16).numpy()),
            "b.f32": reference["b.f32"].numpy(), "c.f16": reference["c.f16"].numpy()}
    write_safetensors(ours, tmp_path / "ours.safetensors", metadata={"format": "pt"})
    assert (tmp_path / "ours.safetensors").read_bytes() == (tmp_path / "torch.safetensors").read_bytes()
    back = read_safetensors(tmp_path / "torch.safetensors")
    assert back["a.bf16"].dtype == BFLOAT16 and dtype_name(back["a.bf16"].dtype) == "bfloat16"
    assert back["a.bf16"].tobytes() == ours["a.bf16"].tobytes()


def test_write_checkpoint_refuses_object_arrays_of_non_strings(tmp_path):
    numbers = np.array([1.5, 2.5], dtype=object)
    with pytest.raises(CheckpointError, match="tensor 'w': object array holds a float"):
        write_checkpoint(tmp_path / "m" / "model.ckpt-1", {"w": numbers})
    assert not (tmp_path / "m" / "model.ckpt-1.index").exists()
    strings = np.array([b"a", "b\u00e9"], dtype=object)
    write_checkpoint(tmp_path / "s" / "model.ckpt-1", {"names": strings})
    assert read_checkpoint(tmp_path / "s").read("names").tolist() == [b"a", "b\u00e9".encode()]


def test_convert_outputs_get_the_usual_permissions(capsys, tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(KEEP_VALUE_RULES))
    old = os.umask(0o022)
    try:
        status, _, err = run(capsys, "convert", DATA / "bf16_variant", "-o", tmp_path / "w.safetensors",
                             "--pth", tmp_path / "w.pth", "--network", "none", "--rules", rules)
        assert status == 0, err
        assert run(capsys, "export", tmp_path / "w.safetensors", "-o", tmp_path / "e" / "model.ckpt-1",
                   "--rules", rules)[0] == 0
    finally:
        os.umask(old)
    written = [tmp_path / "w.safetensors", tmp_path / "w.pth", *sorted((tmp_path / "e").iterdir())]
    assert len(written) == 5
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in written} == {p.name: "0o644" for p in written}
