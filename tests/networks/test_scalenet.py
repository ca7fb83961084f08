"""ScaleNet against NiftyNet 0.6.0's own graph (oracle reference, random non-trivial weights, 2 modalities)."""
import pytest

from network_refs import assert_matches_niftynet, load_ref, run_niftynet_layout
from niftyport import networks


def _model():
    ref = load_ref("scalenet")
    modalities = ref.meta["input_shape"][-1]
    return ref, networks.load("scalenet", ref.variables, in_channels=modalities, **ref.constructor_kwargs,
                              **ref.attributes)


def test_a_relu_front_end_does_not_match():
    """Control: the front end with the configured relu instead of HighRes3DNet's default prelu is off."""
    from niftyport.networks.layers import Activation

    ref, model = _model()
    prelus = [m for m in model.highres3dnet.modules() if isinstance(m, Activation)]
    assert prelus and all(m.func == "prelu" for m in prelus)
    for m in prelus:
        m.func = "relu"
    with pytest.raises(AssertionError, match="max"):
        assert_matches_niftynet(run_niftynet_layout(model, ref.input("random")), ref.outputs["random"])


def test_registry_shapes_agree_with_the_module():
    spec = networks.get("scalenet")
    for acti, modalities in (("relu", 2), ("prelu", 3)):
        model = networks.build("scalenet", num_classes=4, in_channels=modalities, acti_func=acti)
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        assert shapes == spec.shapes(num_classes=4, in_channels=modalities, acti_func=acti)


def test_one_modality_is_refused():
    from niftyport.errors import NetworkError

    with pytest.raises(NetworkError, match="at least 2 input modalities"):
        networks.build("scalenet", num_classes=3, in_channels=1)


def test_input_size_rule():
    from niftyport.errors import InputShapeError

    spec = networks.get("scalenet")
    spec.validate_input((16, 24, 8))
    with pytest.raises(InputShapeError, match="multiple of 8"):
        spec.validate_input((16, 24, 12))
