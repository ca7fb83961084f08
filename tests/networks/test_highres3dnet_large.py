"""HighRes3DNetLarge against NiftyNet 0.6.0's own graph (oracle references, random non-trivial weights)."""
import pytest

from network_refs import assert_matches_niftynet, load_ref, run_niftynet_layout
from niftyport import networks
from niftyport.checkpoint.filter import classify

NAME = "highres3dnet_large"
KEYS = ["highres3dnet_large", "highres3dnet_large_prelu"]


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


def test_conv_2_is_active():
    """Control: leaving out conv_2's activation (HighRes3DNet's last layers) does not reproduce NiftyNet."""
    ref = load_ref(KEYS[0])
    model = networks.load(NAME, ref.variables, **ref.constructor_kwargs)
    model.conv_2.relu = False
    with pytest.raises(AssertionError, match=r"max \|diff\|"):
        assert_matches_niftynet(run_niftynet_layout(model, ref.input("random")), ref.outputs["random"])


# ------------------------------------------------------------------ telling the HighRes3DNets apart

#: Reference -> the network detect() must name. HighRes3DNet and HighRes3DNetLarge share the scope
#: 'HighRes3DNet'; HighRes3DNetSmall's rules also map HighRes3DNet's names (a subset of its own).
HIGHRES_REFS = {"highres3dnet_relu": "highres3dnet", "highres3dnet_small": "highres3dnet_small",
                "highres3dnet_large": "highres3dnet_large"}


@pytest.mark.parametrize("key, name", list(HIGHRES_REFS.items()) + [("highres3dnet_prelu", "highres3dnet")])
def test_detect_tells_the_highres3dnets_apart(key, name):
    spec, acti = networks.detect(list(model_variables(load_ref(key))))
    assert spec.name == name and acti == load_ref(key).constructor_kwargs["acti_func"]


def test_neither_highres3dnet_maps_the_others_names():
    """What detect() relies on: same scope, but each rule set refuses some of the other's variables."""
    plain = model_variables(load_ref("highres3dnet_relu"))
    large = model_variables(load_ref(KEYS[0]))
    assert not all(networks.get("highres3dnet").rules("HighRes3DNet").covers(n) for n in large)
    assert not all(networks.get(NAME).rules("HighRes3DNet").covers(n) for n in plain)
