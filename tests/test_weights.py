import dataclasses
import hashlib
import io
import socket
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

import niftyport
from conftest import VARIABLES_CSV
from niftyport import weights
from niftyport.checkpoint import read_checkpoint
from niftyport.errors import WeightsError
from niftyport.network import HighRes3DNet
from niftyport.weights import (WEIGHTS_FILENAME, cache_dir, export_niftynet, load_niftynet_weights, load_state_dict,
                               load_weights, resolve_weights, save_pth, save_safetensors)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Tests never reach the network: any connection attempt fails loudly."""
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to use the network")
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No environment variables, and an installation without packaged weights (the fallback path)."""
    for var in ("NIFTYPORT_WEIGHTS", "NIFTYPORT_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(weights, "_packaged", lambda network: None)
    return monkeypatch


class FakeResponse(io.BytesIO):
    def __init__(self, payload):
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))}


def serve(monkeypatch, payload):
    """Make urllib return ``payload``; returns the list of requested URLs."""
    requested = []

    def urlopen(url, timeout=None):
        requested.append(url)
        return FakeResponse(payload)
    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return requested


def test_third_party_file_has_the_published_hash(third_party_pth):
    assert hashlib.sha256(third_party_pth.read_bytes()).hexdigest() == weights.WEIGHTS_SHA256
    assert weights.WEIGHTS_SHA256.startswith("7d297872") and "7d297872" in WEIGHTS_FILENAME


# --------------------------------------------------------------------------- resolution order

def test_cache_dir_precedence(clean_env, tmp_path):
    assert cache_dir() == tmp_path / "home" / ".cache" / "niftyport"
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "niftyport"
    clean_env.setenv("NIFTYPORT_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def test_explicit_then_env_then_cache_then_download(clean_env, tmp_path, third_party_pth, checkpoint_prefix):
    payload = third_party_pth.read_bytes()
    requested = serve(clean_env, payload)
    clean_env.setenv("NIFTYPORT_CACHE_DIR", str(tmp_path / "cache"))

    downloaded = resolve_weights()  # nothing anywhere: download into the cache
    assert downloaded == tmp_path / "cache" / WEIGHTS_FILENAME and downloaded.read_bytes() == payload
    assert requested == [weights.WEIGHTS_URL]
    assert sorted(p.name for p in downloaded.parent.iterdir()) == [WEIGHTS_FILENAME]  # no temporary file left

    assert resolve_weights() == downloaded and len(requested) == 1  # cached: no second download
    clean_env.setenv("NIFTYPORT_WEIGHTS", str(checkpoint_prefix))
    assert resolve_weights() == checkpoint_prefix
    assert resolve_weights(third_party_pth) == third_party_pth
    assert len(requested) == 1


def test_bad_env_or_explicit_path_is_an_error(clean_env, tmp_path):
    clean_env.setenv("NIFTYPORT_WEIGHTS", str(tmp_path / "nope.pth"))
    with pytest.raises(WeightsError, match=r"\$NIFTYPORT_WEIGHTS: .*nope\.pth not found"):
        resolve_weights()
    with pytest.raises(WeightsError, match=r"weights .*other\.pth not found"):
        resolve_weights(tmp_path / "other.pth")


def test_download_with_wrong_hash_leaves_nothing(clean_env, tmp_path):
    serve(clean_env, b"not the weights")
    clean_env.setenv("NIFTYPORT_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(WeightsError, match="has sha256 .*, expected 7d297872"):
        resolve_weights()
    assert list((tmp_path / "cache").iterdir()) == []


def test_corrupt_cache_is_downloaded_again(clean_env, tmp_path, third_party_pth):
    clean_env.setenv("NIFTYPORT_CACHE_DIR", str(tmp_path))
    (tmp_path / WEIGHTS_FILENAME).write_bytes(b"truncated")
    requested = serve(clean_env, third_party_pth.read_bytes())
    assert resolve_weights().read_bytes() == third_party_pth.read_bytes() and len(requested) == 1


def test_unreachable_upstream_is_a_clear_error(clean_env, tmp_path):
    def urlopen(url, timeout=None):
        raise urllib.error.URLError("no route to host")
    clean_env.setattr(urllib.request, "urlopen", urlopen)
    clean_env.setenv("NIFTYPORT_CACHE_DIR", str(tmp_path))
    with pytest.raises(WeightsError, match="cannot download weights from https://.*no route to host.*NIFTYPORT_WEIGHTS"):
        resolve_weights()
    with pytest.raises(WeightsError, match="no pretrained weights for highres3dnet"):
        resolve_weights(download=False)


def test_packaged_weights_come_before_cache_and_download(monkeypatch, tmp_path):
    for var in ("NIFTYPORT_WEIGHTS", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NIFTYPORT_CACHE_DIR", str(tmp_path / "cache"))
    requested = serve(monkeypatch, b"never asked for")
    found = weights.find_weights()
    assert found.origin == "packaged" and found.path.name == "highres3dnet_brain_parcellation.safetensors"
    assert found.path.is_relative_to(Path(niftyport.__file__).parent) and requested == []
    monkeypatch.setenv("NIFTYPORT_WEIGHTS", str(found.path))  # the environment variable still wins
    assert weights.find_weights().origin == "environment"


def test_damaged_packaged_weights_are_not_used(monkeypatch, tmp_path):
    from niftyport import networks

    bad = tmp_path / "damaged.safetensors"
    bad.write_bytes(b"x" * 100)
    spec = networks.get("highres3dnet")
    monkeypatch.setattr(weights, "_packaged", lambda network: dataclasses.replace(spec.pretrained, weights=bad))
    monkeypatch.delenv("NIFTYPORT_WEIGHTS", raising=False)
    monkeypatch.setenv("NIFTYPORT_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(WeightsError, match="no pretrained weights"):
        weights.find_weights(download=False)


def test_shipped_weights_equal_the_model_zoo_checkpoint_bit_for_bit(checkpoint_prefix, third_party_pth):
    """The packaged file holds exactly the zoo checkpoint's values (read by TensorFlow's format, not ours)."""
    import csv

    from safetensors.numpy import load_file

    from niftyport import networks

    pretrained = networks.get("highres3dnet").pretrained
    assert hashlib.sha256(pretrained.weights.read_bytes()).hexdigest() == pretrained.sha256
    shipped = load_file(pretrained.weights)
    ckpt = read_checkpoint(checkpoint_prefix).model_tensors()
    assert len(shipped) == len(ckpt) == 105
    rules = weights.HIGHRES3DNET_NIFTYNET_RULES.reversed()
    for key, array in shipped.items():
        name = rules.target_of(key)[1]
        expected = ckpt[name]
        if expected.ndim == 5:
            expected = expected.transpose(4, 3, 0, 1, 2)
        assert array.dtype == expected.dtype and np.array_equal(array, expected), key
    third = torch.load(third_party_pth, weights_only=True)  # the MIT port: the same values
    ours = load_state_dict(pretrained.weights)
    for key, value in load_state_dict(third_party_pth).items():
        assert torch.equal(value, ours[key]), key
    assert len(third) >= 105
    with open(VARIABLES_CSV, newline="") as f:  # TensorFlow's own listing of the checkpoint
        tf_shapes = {r["name"]: r["shape"] for r in csv.DictReader(f)}
    for key, array in shipped.items():
        name = rules.target_of(key)[1]
        assert "x".join(map(str, ckpt[name].shape)) == tf_shapes[name]


# --------------------------------------------------------------------------- loading from every source

def test_every_source_gives_the_same_state_dict(checkpoint_prefix, third_party_pth, tmp_path):
    reference = load_state_dict(third_party_pth)
    assert len(reference) == 105
    save_safetensors(reference, tmp_path / "w.safetensors")
    save_pth(reference, tmp_path / "w.pth")
    sources = [checkpoint_prefix, checkpoint_prefix.with_name(checkpoint_prefix.name + ".index"),
               checkpoint_prefix.parent, tmp_path / "w.safetensors", tmp_path / "w.pth"]
    for source in sources:
        state = load_state_dict(source)
        assert list(state) == list(reference), source
        for key, value in reference.items():
            assert torch.equal(state[key], value) and state[key].dtype == value.dtype, (source, key)


def test_load_weights_is_strict_and_in_eval_mode(third_party_pth):
    pth = torch.load(third_party_pth, weights_only=True)
    model = load_weights(third_party_pth)
    assert isinstance(model, HighRes3DNet) and not model.training
    assert torch.equal(model.res_2_1.conv_0.weight, pth["block.2.dilation_block.1.residual_block.0.convolutional_block.3.weight"])
    assert torch.equal(model.conv_2.bn.running_mean, pth["block.6.convolutional_block.1.running_mean"])
    assert model.conv_0.bn.num_batches_tracked.item() == 0  # the module's own counter


def test_load_niftynet_weights_into_a_model(checkpoint_prefix):
    ckpt = read_checkpoint(checkpoint_prefix)
    model = load_niftynet_weights(HighRes3DNet(), ckpt)
    kernel = ckpt.read("HighRes3DNet/conv_1_bn_relu/conv_/w")  # (1, 1, 1, 64, 80)
    assert torch.equal(model.conv_1.conv.weight[:, :, 0, 0, 0], torch.from_numpy(kernel[0, 0, 0].T.copy()))


def test_pickled_code_is_never_loaded(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"conv_0.conv.weight": torch.zeros(1), "extra": np.dtype}, path)  # not a plain state_dict
    with pytest.raises(WeightsError, match=r"evil\.pth: it holds pickled code or objects, which are never run"):
        load_state_dict(path)


def test_unknown_format_and_wrong_contents(tmp_path):
    (tmp_path / "w.npz").write_bytes(b"")
    with pytest.raises(WeightsError, match=r"w\.npz: unknown weights format '\.npz'"):
        load_state_dict(tmp_path / "w.npz")
    (tmp_path / "w.safetensors").write_bytes(b"garbage")
    with pytest.raises(WeightsError, match=r"w\.safetensors: not a readable safetensors file"):
        load_state_dict(tmp_path / "w.safetensors")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(WeightsError, match=r"list\.pth: holds no state_dict"):
        load_state_dict(tmp_path / "list.pth")


# --------------------------------------------------------------------------- exporting

def test_export_writes_what_niftynet_restores(third_party_pth, checkpoint_prefix, tf_listing, tmp_path):
    prefix = export_niftynet(load_state_dict(third_party_pth), tmp_path / "model.ckpt-33000", global_step=33000)
    listing = tf_listing
    # NiftyNet's inference graph holds the weights and the batch-norm zero-debias variables
    wanted = {name: (shape, dtype) for name, (shape, dtype, kind) in listing.items()
              if kind in ("model", "biased", "local_step", "global_step")}
    ckpt = read_checkpoint(prefix)
    assert {v.name: (v.shape, v.dtype_name) for v in ckpt.variables} == wanted
    original = read_checkpoint(checkpoint_prefix).model_tensors()
    for name, value in ckpt.model_tensors().items():
        assert value.tobytes() == original[name].tobytes(), name


def test_export_weights_only(third_party_pth, tmp_path):
    prefix = export_niftynet(load_state_dict(third_party_pth), tmp_path / "m", debias_variables=False)
    assert len(read_checkpoint(prefix).variables) == 105


def test_regression_scalar_tensors_keep_their_empty_shape_in_safetensors(tmp_path):
    # np.ascontiguousarray turns a 0-d array into shape (1,): batch norm's num_batches_tracked
    # then no longer loaded into the module it came from
    path = save_safetensors({"n": torch.tensor(3), "w": torch.ones(2)}, tmp_path / "s.safetensors")
    from safetensors.numpy import load_file

    loaded = load_file(str(path))
    assert loaded["n"].shape == () and int(loaded["n"]) == 3 and loaded["w"].shape == (2,)
