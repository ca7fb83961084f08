"""UNet3D (``unet``) against NiftyNet 0.6.0's own graph (oracle references, random non-trivial weights).

``unet3d``: relu, n_features [8, 16, 32, 64, 128], 96x104x96 -> 8x16x8.
``unet3d_prelu``: prelu, 2 input channels, n_features [4, 8, 8, 16, 32] and 8 classes, so that
NiftyNet's repeated layer names (``8_bn_prelu_1``, ``_2``) occur.
"""
import numpy as np
import pytest
from torch import nn

from network_refs import load_ref, run_niftynet_layout
from niftyport import networks

KEYS = ["unet3d", "unet3d_prelu"]


def _model_variables(ref):
    """The checkpoint's model variables (what the loader keeps: no batch-norm debias helpers)."""
    from niftyport.checkpoint.filter import classify

    return [n for n, a in ref.variables.items() if classify(n, tuple(a.shape)).kept]


def _load(key):
    ref = load_ref(key)
    model = networks.load("unet", ref.variables, in_channels=ref.meta["input_shape"][-1],
                          **ref.constructor_kwargs, **ref.attributes)
    return ref, model


def test_an_activated_upsampling_does_not_match():
    """Control: an activation after the up-sampling layers' batch norm (as one might guess) breaks the match."""
    ref, model = _load("unet3d_prelu")
    for name in ("L4", "R3", "R2"):
        up = getattr(model, name).up_2x2_bn
        up.bn = nn.Sequential(up.bn, nn.ReLU())
    ours, theirs = run_niftynet_layout(model, ref.input("random")), ref.outputs["random"]
    assert np.max(np.abs(ours - theirs)) > 1e-2 * np.max(np.abs(theirs))


def test_input_size_rule_and_output_shape():
    from niftyport.errors import InputShapeError

    spec = networks.get("unet")
    spec.validate_input((96, 104, 96))
    assert spec.output_shape((96, 104, 96)) == (8, 16, 8)
    for bad in ((88, 96, 96), (96, 100, 96)):
        with pytest.raises(InputShapeError, match="multiple of 8 and at least 89"):
            spec.validate_input(bad)


def test_n_features_must_be_five_widths():
    from niftyport.errors import NetworkError

    with pytest.raises(NetworkError, match="5 positive widths"):
        networks.build("unet", num_classes=2, n_features=[8, 16])
