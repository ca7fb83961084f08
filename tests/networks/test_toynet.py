"""ToyNet against NiftyNet 0.6.0's own graph (oracle references, random non-trivial weights)."""
import numpy as np
import pytest

from network_refs import assert_matches_niftynet, load_ref, run_niftynet_layout
from niftyport import networks
from niftyport.checkpoint.filter import classify


def model_variables(ref):
    """The reference's variables a checkpoint reader keeps (no batch-norm debias accumulators)."""
    return {k: v for k, v in ref.variables.items() if classify(k, v.shape).kept}


def test_acti_func_is_ignored_as_in_niftynet():
    """NiftyNet's names and output do not change with acti_func: prelu builds the same module."""
    relu = networks.build("toynet", num_classes=5, acti_func="relu")
    prelu = networks.build("toynet", num_classes=5, acti_func="prelu")
    assert relu.state_dict().keys() == prelu.state_dict().keys()
    assert not any("alpha" in k for k in prelu.state_dict())


def test_a_wrong_weight_does_not_match():
    """Control: the debias accumulator in place of moving_variance changes the output beyond the bound."""
    ref = load_ref("toynet")
    variables = dict(ref.variables)
    name = "ToyNet/conv_output_bn/bn_/moving_variance"
    variables[name] = variables[f"ToyNet/conv_output_bn/bn_/{name}/biased"] ** 2 + 0.5
    model = networks.load("toynet", variables, **ref.constructor_kwargs)
    with pytest.raises(AssertionError, match=r"max \|diff\|"):
        assert_matches_niftynet(run_niftynet_layout(model, ref.input("random")), ref.outputs["random"])


def test_input_size_rule():
    from niftyport.errors import InputShapeError

    spec = networks.get("toynet")
    spec.validate_input((5, 7, 3))  # no size rule: 'SAME' convolutions, stride 1
    with pytest.raises(InputShapeError, match="3-D"):
        spec.validate_input((16, 16))
    assert spec.output_shape is None
    model = networks.build("toynet", num_classes=2)
    assert run_niftynet_layout(model, np.zeros((1, 5, 7, 3, 1), np.float32)).shape == (1, 5, 7, 3, 2)
