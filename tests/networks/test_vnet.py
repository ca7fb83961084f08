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


def test_input_size_rule():
    from niftyport.errors import InputShapeError

    spec = networks.get("vnet")
    spec.validate_input((32, 16, 48))
    with pytest.raises(InputShapeError, match="multiple of 16"):
        spec.validate_input((32, 24, 16))
