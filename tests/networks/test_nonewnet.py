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


def test_input_size_rule():
    from niftyport.errors import InputShapeError

    spec = networks.get("nonewnet")
    spec.validate_input((32, 16, 48))
    with pytest.raises(InputShapeError, match="multiple of 16"):
        spec.validate_input((32, 24, 16))
