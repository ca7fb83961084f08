"""No New-Net (``nonewnet``) against NiftyNet 0.6.0's own graph (oracle references, random non-trivial weights).

``nonewnet``: leakyrelu (the class default), n_features [10, 20, 40, 80, 160], 32x16x16.
``nonewnet_prelu``: prelu, n_features [6, 12, 24, 48, 96], 6 classes (the last layer ``6`` beside
``6_in_prelu_1``), 16x16x16, so that the bottom level is one voxel.
"""
import numpy as np
import pytest
from torch.nn import functional as F

from network_refs import load_ref, run_niftynet_layout
from niftyport import networks

KEYS = ["nonewnet", "nonewnet_prelu"]


def _model_variables(ref):
    """The checkpoint's model variables (what the loader keeps: no batch-norm debias helpers)."""
    from niftyport.checkpoint.filter import classify

    return [n for n, a in ref.variables.items() if classify(n, tuple(a.shape)).kept]


def _load(key):
    ref = load_ref(key)
    model = networks.load("nonewnet", ref.variables, in_channels=ref.meta["input_shape"][-1],
                          **ref.constructor_kwargs, **ref.attributes)
    return ref, model


def test_torch_trilinear_upsampling_does_not_match(monkeypatch):
    """Control: torch's half-pixel trilinear interpolation in place of TF1's legacy resize breaks the match."""
    from niftyport.networks.nonewnet import module

    ref, model = _load("nonewnet_prelu")
    monkeypatch.setattr(module, "resize_linear_tf1",
                        lambda x, size: F.interpolate(x, size=size, mode="trilinear", align_corners=False))
    ours, theirs = run_niftynet_layout(model, ref.input("random")), ref.outputs["random"]
    assert np.max(np.abs(ours - theirs)) > 1e-2 * np.max(np.abs(theirs))


@pytest.mark.parametrize("key", KEYS)
def test_registry_round_trip(key):
    """Module keys == the rules' targets of the checkpoint (both ways) == the torch-free shapes."""
    ref = load_ref(key)
    spec = networks.get("nonewnet")
    kwargs = dict(in_channels=ref.meta["input_shape"][-1], **ref.constructor_kwargs, **ref.attributes)
    model = networks.build("nonewnet", **kwargs)
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
    spec = networks.get("nonewnet")
    rules = spec.rules(spec.default_scope)
    assert all(rules.target_of(n) is not None for n in _model_variables(load_ref("nonewnet")))


def test_instance_norm_of_one_voxel_is_beta():
    import torch

    from niftyport.networks.nonewnet.module import InstanceNorm

    norm = InstanceNorm(3)
    with torch.no_grad():
        norm.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
        out = norm(torch.randn(2, 3, 1, 1, 1))
    assert torch.equal(out, norm.bias.detach().reshape(1, 3, 1, 1, 1).expand(2, 3, 1, 1, 1))


def test_input_size_rule():
    from niftyport.errors import InputShapeError

    spec = networks.get("nonewnet")
    spec.validate_input((32, 16, 48))
    with pytest.raises(InputShapeError, match="multiple of 16"):
        spec.validate_input((32, 24, 16))
