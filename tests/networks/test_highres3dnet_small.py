"""HighRes3DNetSmall against NiftyNet 0.6.0's own graph (oracle references, random non-trivial weights)."""
import pytest

from network_refs import assert_matches_niftynet, load_ref, run_niftynet_layout
from niftyport import networks
from niftyport.checkpoint.filter import classify

NAME = "highres3dnet_small"
KEYS = ["highres3dnet_small", "highres3dnet_small_prelu"]


def model_variables(ref):
    """The reference's variables a checkpoint reader keeps (no batch-norm debias accumulators)."""
    return {k: v for k, v in ref.variables.items() if classify(k, v.shape).kept}


def test_a_wrong_activation_does_not_match():
    """Control: the relu checkpoint read with prelu's names (conv_0_bn_prelu ...) is refused."""
    from niftyport.errors import MappingError

    ref = load_ref(KEYS[0])
    with pytest.raises(MappingError, match="match no rule"):
        networks.load(NAME, ref.variables, num_classes=5, acti_func="prelu")


def test_input_size_rule():
    from niftyport.errors import InputShapeError

    spec = networks.get(NAME)
    spec.validate_input((16, 24, 8))
    with pytest.raises(InputShapeError, match="multiple of 8"):
        spec.validate_input((16, 20, 8))
    with pytest.raises(InputShapeError, match="3-D"):
        spec.validate_input((16, 16))


def test_a_flipped_transposed_kernel_does_not_match():
    """Control: the output moves beyond the bound when the transposed kernel is flipped."""
    ref = load_ref(KEYS[0])
    variables = dict(ref.variables)
    name = "HighRes3DNetSmall/deconv_bn_relu/deconv_/w"
    variables[name] = variables[name][::-1, ::-1, ::-1].copy()
    model = networks.load(NAME, variables, **ref.constructor_kwargs)
    with pytest.raises(AssertionError, match=r"max \|diff\|"):
        assert_matches_niftynet(run_niftynet_layout(model, ref.input("random")), ref.outputs["random"])
