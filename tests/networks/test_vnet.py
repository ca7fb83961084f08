"""VNet (``vnet``) against NiftyNet 0.6.0's own graph (oracle references, random non-trivial weights).

``vnet``: relu, n_features [2, 4, 8, 16, 32], 32x16x16.
``vnet_prelu``: prelu, 2 input channels (L1's tiled bypass is then projected, ``L1/residual_sum/proj``),
3 classes.
"""
import numpy as np
import pytest
from torch import nn

from network_refs import load_ref, run_niftynet_layout
from niftyport import networks

KEYS = ["vnet", "vnet_prelu"]


def _model_variables(ref):
    """The checkpoint's model variables (what the loader keeps: no batch-norm debias helpers)."""
    from niftyport.checkpoint.filter import classify

    return [n for n, a in ref.variables.items() if classify(n, tuple(a.shape)).kept]


def _load(key):
    ref = load_ref(key)
    model = networks.load("vnet", ref.variables, in_channels=ref.meta["input_shape"][-1],
                          **ref.constructor_kwargs, **ref.attributes)
    return ref, model


def test_output_is_activated():
    """NiftyNet's VNet output is relu(logits); the raw logits (control) do not match."""
    ref, model = _load("vnet")
    theirs = ref.outputs["random"]
    assert theirs.min() == 0.0
    model.R1.acti = nn.Identity()  # the last block's final activation
    ours = run_niftynet_layout(model, ref.input("random"))
    assert ours.min() < 0.0
    assert np.max(np.abs(ours - theirs)) > 1e-2 * np.max(np.abs(theirs))


@pytest.mark.parametrize("key", KEYS)
def test_registry_round_trip(key):
    """Module keys == the rules' targets of the checkpoint (both ways) == the torch-free shapes."""
    ref = load_ref(key)
    spec = networks.get("vnet")
    kwargs = dict(in_channels=ref.meta["input_shape"][-1], **ref.constructor_kwargs, **ref.attributes)
    model = networks.build("vnet", **kwargs)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    names = _model_variables(ref)
    rules = spec.rules(networks.scope_of(names, spec), acti_func=kwargs["acti_func"])
    targets = [rules.target_of(n) for n in names]
    assert None not in targets
    assert sorted(t for _, t in targets) == sorted(shapes)
    assert sorted(rules.reversed().target_of(k)[1] for k in shapes) == sorted(names)  # and back to NiftyNet's
    assert spec.shapes(**kwargs) == shapes


def test_default_rules_map_every_variable():
    """What ``--network auto`` needs: the rules at their defaults map every model variable of a default checkpoint."""
    spec = networks.get("vnet")
    rules = spec.rules(spec.default_scope)
    assert all(rules.target_of(n) is not None for n in _model_variables(load_ref("vnet")))


def test_input_size_rule():
    from niftyport.errors import InputShapeError

    spec = networks.get("vnet")
    spec.validate_input((32, 16, 48))
    with pytest.raises(InputShapeError, match="multiple of 16"):
        spec.validate_input((32, 24, 16))
