"""Every registered network: checkpoint -> state_dict -> checkpoint bit for bit, detection, the forward command."""
import numpy as np
import pytest

from network_refs import assert_matches_niftynet, load_ref, ref_keys, run_niftynet_layout
from niftyport import networks
from niftyport.checkpoint import read_checkpoint, write_checkpoint
from niftyport.checkpoint.filter import classify
from niftyport.mapping import export_state_dict, map_tensors


def _spec_of(key):
    """The registered network reproducing the reference's NiftyNet class, or None."""
    cls = load_ref(key).meta.get("class")
    return next((s for s in networks.specs() if s.niftynet_class == cls), None)


KEYS = [k for k in ref_keys() if _spec_of(k) is not None]


def _model_variables(ref):
    return {n: v for n, v in ref.variables.items() if classify(n, v.shape).kept}


def _build(ref, spec):
    return networks.build(spec.name, **ref.constructor_kwargs, **ref.attributes,
                          in_channels=int(ref.meta["input_shape"][-1]))


@pytest.mark.parametrize("which", ["random", "smooth"])
@pytest.mark.parametrize("key", KEYS)
def test_forward_matches_niftynet(key, which):
    """The acceptance test of every port: NiftyNet's own output on random non-trivial weights, two inputs."""
    ref, spec = load_ref(key), _spec_of(key)
    model = networks.load(spec.name, ref.variables, **ref.constructor_kwargs, **ref.attributes,
                          in_channels=int(ref.meta["input_shape"][-1]))
    assert_matches_niftynet(run_niftynet_layout(model, ref.input(which)), ref.outputs[which])


@pytest.mark.parametrize("key", KEYS)
def test_convert_then_export_round_trips_bit_for_bit(key, tmp_path):
    ref, spec = load_ref(key), _spec_of(key)
    tensors = _model_variables(ref)
    model = _build(ref, spec)
    rules = spec.rules(networks.scope_of(list(tensors), spec), acti_func=ref.constructor_kwargs.get("acti_func", "relu"))
    state = map_tensors(tensors, rules, expected=model)  # strict: every variable mapped, every module key made
    assert sorted(state) == sorted(k for k in model.state_dict() if not rules.ignores_target(k))
    if spec.shapes is not None:  # the torch-free table agrees with the module
        kwargs = dict(**ref.constructor_kwargs, **ref.attributes, in_channels=int(ref.meta["input_shape"][-1]))
        assert spec.shapes(**kwargs) == {k: tuple(v.shape) for k, v in model.state_dict().items()}
    back = export_state_dict(state, rules)
    assert sorted(back) == sorted(tensors)
    write_checkpoint(tmp_path / "model.ckpt-1", back)
    reread = read_checkpoint(tmp_path / "model.ckpt-1").model_tensors()
    for name, value in tensors.items():
        assert reread[name].dtype == value.dtype and np.array_equal(reread[name], value), name


@pytest.mark.parametrize("key", KEYS)
def test_detect_names_the_network(key):
    spec, acti = networks.detect(list(_model_variables(load_ref(key))))
    assert spec is _spec_of(key)


def test_forward_command_reproduces_niftynet(tmp_path, capsys):
    from niftyport.cli import main

    ref = load_ref("toynet")
    write_checkpoint(tmp_path / "ckpt" / "model.ckpt-1", ref.variables)
    np.save(tmp_path / "in.npy", ref.input("random"))
    status = main(["forward", "--network", "toynet", "--weights", str(tmp_path / "ckpt" / "model.ckpt-1"),
                   "--num-classes", "5", str(tmp_path / "in.npy"), str(tmp_path / "out.npy")])
    assert status == 0, capsys.readouterr().err
    assert_matches_niftynet(np.load(tmp_path / "out.npy"), ref.outputs["random"])


def test_forward_checks_the_input_size_rule(tmp_path, capsys):
    from conftest import one_line_error
    from niftyport.cli import main

    np.save(tmp_path / "in.npy", np.zeros((1, 12, 16, 16, 1), np.float32))
    status = main(["forward", "--network", "highres3dnet", "--weights", "x", str(tmp_path / "in.npy"),
                   str(tmp_path / "out.npy")])
    one_line_error(status, capsys.readouterr().err, "multiple of 8")
    assert not (tmp_path / "out.npy").exists()


def test_networks_command_lists_every_network(capsys):
    from niftyport.cli import main

    assert main(["networks"]) == 0
    out = capsys.readouterr().out
    for name in networks.names():
        assert name in out


def test_every_niftynet_reference_has_its_network():
    """Every NiftyNet network with a reference is registered (none silently left out of the tests above)."""
    niftynet_refs = [k for k in ref_keys() if load_ref(k).meta.get("class", "").startswith("niftynet.network.")]
    assert len(niftynet_refs) >= 15 and sorted(KEYS) == sorted(set(KEYS) | set(niftynet_refs))


@pytest.mark.parametrize("key, network, extra", [
    ("dense_vnet", "dense_vnet", ["--num-classes", "9"]),
    ("unet3d", "auto", ["--num-classes", "5", "--option", "n_features=[8,16,32,64,128]"]),
    ("deepmedic_prelu", "deepmedic", ["--num-classes", "5", "--acti-func", "prelu"]),
])
def test_convert_any_network_from_the_command_line(tmp_path, capsys, key, network, extra):
    """convert -> safetensors of the module's keys (the module loads them strictly) -> export -> same variables."""
    from safetensors.numpy import load_file

    from niftyport.cli import main

    ref, spec = load_ref(key), _spec_of(key)
    write_checkpoint(tmp_path / "in" / "model.ckpt-1", ref.variables)
    out = tmp_path / "net.safetensors"
    assert main(["convert", str(tmp_path / "in" / "model.ckpt-1"), "-o", str(out), "--network", network, *extra]) == 0
    model = networks.load(spec.name, str(out), **ref.constructor_kwargs, **ref.attributes)
    assert_matches_niftynet(run_niftynet_layout(model, ref.input("random")), ref.outputs["random"])
    rules = spec.rules(spec.default_scope, acti_func=ref.constructor_kwargs["acti_func"])
    back = export_state_dict(load_file(out), rules)
    tensors = _model_variables(ref)
    assert sorted(back) == sorted(tensors) and all(np.array_equal(back[n], tensors[n]) for n in tensors)


def test_variables_names_the_network(tmp_path, capsys):
    from conftest import one_line_error
    from niftyport.cli import main

    write_checkpoint(tmp_path / "model.ckpt-1", load_ref("vnet").variables)
    assert main(["variables", str(tmp_path / "model.ckpt-1"), "--network", "auto"]) == 0
    assert "network: vnet (niftynet.network.vnet.VNet, acti_func relu)" in capsys.readouterr().out
    one_line_error(main(["variables", str(tmp_path / "model.ckpt-1"), "--network", "unet"]),
                   capsys.readouterr().err, "do not map")
