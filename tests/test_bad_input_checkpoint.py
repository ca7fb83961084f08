"""Bad input to ``variables``, ``convert`` and ``export``: exit 2, one line naming the file, nothing
written, inputs untouched (see bad_input.py). Checkpoints are made with the project's writer and
then damaged; the weights files with the libraries that write them."""
import json
import pickle
import struct

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from bad_input import assert_refused, pickle_payload, plain_pickle_payload
from niftyport.checkpoint import bundle as tb
from niftyport.checkpoint import write_checkpoint

TENSORS = {"net/conv/w": np.arange(54, dtype=np.float32).reshape(3, 3, 3, 1, 2),
           "net/conv/b": np.array([0.5, -1.5], np.float32), "net/conv/w/Adam": np.zeros((3, 3, 3, 1, 2), np.float32)}
RULES = {"rules": [{"source": "net/{layer}/{p}", "target": "{layer}.{p}"}]}


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    return folder


@pytest.fixture
def outputs(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def _checkpoint(folder):
    prefix = write_checkpoint(folder / "ckpt" / "model.ckpt-1", TENSORS, global_step=1)
    return prefix, prefix.with_name(prefix.name + ".index"), prefix.with_name(prefix.name + ".data-00000-of-00001")


def _flip(path, at):
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))


def _index_with(entries):
    """A .index whose entries are given as BundleEntry objects (sorted by name)."""
    items = [(tb.HEADER_KEY, tb.encode_header(tb.BundleHeader()))]
    items += [(name.encode(), tb.encode_entry(entry)) for name, entry in sorted(entries.items())]
    return tb.encode_table(items)


def _damage_index(kind, index, data):
    if kind == "empty":
        index.write_bytes(b"")
    elif kind == "not a table":
        index.write_text("model_checkpoint_path: 'not an index'\n" * 4)
    elif kind == "truncated":
        index.write_bytes(index.read_bytes()[:-20])
    elif kind == "bit flip":
        _flip(index, 12)
    elif kind == "shape overflowing 64 bits":
        index.write_bytes(_index_with({"net/conv/b": tb.BundleEntry(1, (2**40, 2**40), size=8, crc32c=0)}))
    elif kind == "negative dimension":
        index.write_bytes(_index_with({"net/conv/b": tb.BundleEntry(1, (-2,), size=8, crc32c=0)}))
    elif kind == "size not matching the shape":
        index.write_bytes(_index_with({"net/conv/b": tb.BundleEntry(1, (3,), size=8, crc32c=0)}))


INDEX_DAMAGE = ["empty", "not a table", "truncated", "bit flip", "shape overflowing 64 bits", "negative dimension",
                "size not matching the shape"]
PROBLEMS = {"empty": "truncated", "not a table": "not a TensorFlow checkpoint index", "truncated": "truncated",
            "bit flip": "corrupt", "shape overflowing 64 bits": "overflows 64 bits",
            "negative dimension": "has shape (-2,)", "size not matching the shape": "should take 12 bytes"}


def _commands(prefix, outputs):
    return {"variables": ["variables", prefix, "--verify", "--csv", outputs / "v.csv"],
            "convert": ["convert", prefix, "-o", outputs / "w.safetensors", "--network", "none"],
            "export": ["export", prefix, "-o", outputs / "ckpt" / "model.ckpt-2"]}


@pytest.mark.parametrize("command", ["variables", "convert", "export"])
@pytest.mark.parametrize("kind", INDEX_DAMAGE)
def test_damaged_index(capsys, inputs, outputs, command, kind):
    prefix, index, data = _checkpoint(inputs)
    _damage_index(kind, index, data)
    assert_refused(capsys, _commands(prefix, outputs)[command], names=index, inputs=inputs, outputs=outputs,
                   problem=PROBLEMS[kind])


@pytest.mark.parametrize("command", ["variables", "convert", "export"])
@pytest.mark.parametrize("kind,problem", [("missing", "checkpoint data file not found"), ("empty", "truncated"),
                                          ("truncated", "truncated"), ("bit flip", "corrupt: crc32c mismatch")])
def test_damaged_data(capsys, inputs, outputs, command, kind, problem):
    prefix, index, data = _checkpoint(inputs)
    if kind == "missing":
        data.unlink()
    elif kind == "empty":
        data.write_bytes(b"")
    elif kind == "truncated":
        data.write_bytes(data.read_bytes()[:100])
    else:
        _flip(data, 30)  # inside 'net/conv/w' (its bytes follow the 8 of 'global_step' and 'net/conv/b')
    assert_refused(capsys, _commands(prefix, outputs)[command], names=data, inputs=inputs, outputs=outputs,
                   problem=problem)


def test_entries_without_a_checksum_are_not_called_verified(capsys, inputs, outputs):
    prefix, index, data = _checkpoint(inputs)
    entries = tb.decode_index(index.read_bytes())[1]
    entries = {name: tb.BundleEntry(e.dtype, e.shape, e.shard_id, e.offset, e.size,
                                    None if name.startswith("net/conv/") else e.crc32c)
               for name, e in entries.items()}
    index.write_bytes(_index_with(entries))
    message = assert_refused(capsys, ["variables", prefix, "--verify", "--csv", outputs / "v.csv"], names=index,
                             inputs=inputs, outputs=outputs)
    assert message == ("3 variable(s) have no crc32c, so their bytes cannot be verified: "
                       "'net/conv/b', 'net/conv/w', 'net/conv/w/Adam'")
    # without --verify the table lists them, and convert reads them saying they are unverified
    from niftyport.cli import main

    assert main(["variables", str(prefix)]) == 0
    assert "verified" not in capsys.readouterr().out
    rules = inputs / "rules.json"
    rules.write_text(json.dumps(RULES))
    assert main(["convert", str(prefix), "-o", str(outputs / "w.safetensors"), "--rules", str(rules),
                 "--network", "none"]) == 0
    assert "2 kept variable(s) have no crc32c, read unverified: 'net/conv/b', 'net/conv/w'" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["variables", "convert", "export"])
def test_missing_checkpoint_and_broken_state_file(capsys, inputs, outputs, command):
    assert_refused(capsys, _commands(inputs / "model.ckpt-9", outputs)[command], names=inputs / "model.ckpt-9",
                   inputs=inputs, outputs=outputs, problem="not found")
    folder = inputs / "models"
    folder.mkdir()
    (folder / "checkpoint").write_bytes(b"\xff\xfe all_model_checkpoint_paths only\n")
    assert_refused(capsys, _commands(folder, outputs)[command], names=folder / "checkpoint", inputs=inputs,
                   outputs=outputs, problem="no model_checkpoint_path line")


# --------------------------------------------------------------------------- weights files (convert, export)

def _safetensors_cases(folder):
    good = folder / "good.safetensors"
    save_file({"conv.w": np.ones((4, 4), np.float32)}, good)
    raw = good.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    cases = {
        "empty": (b"", "empty file"),
        "text": (b"these are not weights\n" * 3, "not a readable safetensors file"),
        "truncated header": (raw[:20], "not a readable safetensors file"),
        "truncated data": (raw[:-10], "not a readable safetensors file"),
        "header length too large": (struct.pack("<Q", 1 << 40) + raw[8:], "not a readable safetensors file"),
        "header not JSON": (raw[:8] + b"{" * n + raw[8 + n:], "not a readable safetensors file"),
        "float8 dtype": (_safetensors_bytes({"conv.w": {"dtype": "F8_E4M3", "shape": [4, 4], "data_offsets": [0, 16]}},
                                            bytes(16)), "has dtype F8_E4M3, which niftyport cannot read"),
    }
    return cases


def _safetensors_bytes(header, data):
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


@pytest.mark.parametrize("command", ["convert", "export"])
@pytest.mark.parametrize("kind", ["empty", "text", "truncated header", "truncated data", "header length too large",
                                  "header not JSON", "float8 dtype"])
def test_bad_safetensors(capsys, inputs, outputs, command, kind):
    data, problem = _safetensors_cases(inputs)[kind]
    (inputs / "good.safetensors").unlink()
    bad = inputs / "w.safetensors"
    bad.write_bytes(data)
    args = {"convert": ["convert", bad, "-o", outputs / "w.pth", "--network", "none"],
            "export": ["export", bad, "-o", outputs / "model.ckpt-1"]}[command]
    assert_refused(capsys, args, names=bad, inputs=inputs, outputs=outputs, problem=problem)


def _pth_cases(folder):
    good = folder / "good.pth"
    torch.save({"conv.w": torch.ones(4, 4)}, good)
    raw = good.read_bytes()
    good.unlink()
    return {"empty": (b"", "empty file"), "text": (b"not a torch file\n", "not a torch.save file of tensors"),
            "truncated zip": (raw[: len(raw) // 2], "not a torch.save file of tensors")}


@pytest.mark.parametrize("command", ["convert", "export"])
@pytest.mark.parametrize("kind", ["empty", "text", "truncated zip", "a list", "missing", "unknown extension"])
def test_bad_pth_and_missing_weights(capsys, inputs, outputs, command, kind):
    bad = inputs / ("w.npz" if kind == "unknown extension" else "w.pth")
    problem = {"a list": "holds no state_dict", "missing": "weights file not found",
               "unknown extension": "unknown weights format '.npz'"}.get(kind)
    if kind == "a list":
        torch.save([torch.zeros(2)], bad)
    elif kind == "unknown extension":
        np.savez(bad, w=np.zeros(2))
    elif kind != "missing":
        data, problem = _pth_cases(inputs)[kind]
        bad.write_bytes(data)
    args = {"convert": ["convert", bad, "-o", outputs / "w.safetensors", "--network", "none"],
            "export": ["export", bad, "-o", outputs / "model.ckpt-1"]}[command]
    assert_refused(capsys, args, names=bad, inputs=inputs, outputs=outputs, problem=problem)


@pytest.mark.parametrize("command", ["convert", "export"])
@pytest.mark.parametrize("maker", [pickle_payload, plain_pickle_payload])
def test_a_pickle_payload_is_never_executed(capsys, inputs, outputs, tmp_path, command, maker):
    marker = tmp_path / "payload_ran"
    evil = maker(inputs / "evil.pth", marker)
    # control: the payload is live -- unpickled as plain pickle would, it creates the file
    (torch.load(evil, weights_only=False) if maker is pickle_payload else pickle.loads(evil.read_bytes()))
    assert marker.exists()
    marker.unlink()
    args = {"convert": ["convert", evil, "-o", outputs / "w.safetensors", "--network", "none"],
            "export": ["export", evil, "-o", outputs / "model.ckpt-1"]}[command]
    assert_refused(capsys, args, names=evil, inputs=inputs, outputs=outputs,
                   problem="it holds pickled code or objects, which are never run")
    assert not marker.exists()


# --------------------------------------------------------------------------- rules files (convert, export)

RULES_CASES = {
    "invalid JSON": (b'{"rules": [', "not valid JSON"),
    "invalid template regex": (json.dumps({"rules": [{"source": "net/{a:(}", "target": "{a}"}]}).encode(),
                               "bad field regex"),
    "invalid ignore regex": (json.dumps({"rules": [], "ignore_source": ["net/[a-"]}).encode(), "bad ignore regex"),
    "not UTF-8": (b"\xff\xfe{}", "not UTF-8 text"),
    "nested too deeply": (b"[" * 100000, "nested too deeply"),
    "no rules list": (b'{"name": "x"}', "expected a table with a 'rules' list"),
    "unknown transform": (json.dumps({"rules": [{"source": "a", "target": "b", "transform": "flip"}]}).encode(),
                          "unknown transform 'flip'"),
}


@pytest.mark.parametrize("command", ["convert", "export"])
@pytest.mark.parametrize("kind", list(RULES_CASES))
def test_bad_rules_file(capsys, inputs, outputs, command, kind):
    prefix, _, _ = _checkpoint(inputs)
    data, problem = RULES_CASES[kind]
    rules = inputs / "rules.json"
    rules.write_bytes(data)
    weights = inputs / "w.safetensors"
    save_file({"conv.w": np.ones(2, np.float32)}, weights)
    args = {"convert": ["convert", prefix, "-o", outputs / "w.safetensors", "--network", "none", "--rules", rules],
            "export": ["export", weights, "-o", outputs / "model.ckpt-1", "--rules", rules]}[command]
    assert_refused(capsys, args, names=rules, inputs=inputs, outputs=outputs, problem=problem)
