"""HolisticNet against NiftyNet 0.6.0's own graph (oracle reference, random non-trivial weights)."""
import pytest

from network_refs import assert_matches_niftynet, load_ref, run_niftynet_layout
from niftyport import networks


def _model():
    ref = load_ref("holisticnet")
    return ref, networks.load("holisticnet", ref.variables, **ref.constructor_kwargs, **ref.attributes)


def test_scale_4_with_moving_statistics_does_not_match():
    """Control: without NiftyNet's bug (scale 4's BN on batch statistics) the output is off."""
    ref, model = _model()
    assert all(m.bn.batch_stats for m in (model.score_4.conv_fc_0, model.score_4.conv_bn))
    for layer in (model.score_4.conv_fc_0, model.score_4.conv_bn):
        layer.bn.batch_stats = False
    with pytest.raises(AssertionError, match="max"):
        assert_matches_niftynet(run_niftynet_layout(model, ref.input("random")), ref.outputs["random"])


def test_registry_shapes_agree_with_the_module():
    spec = networks.get("holisticnet")
    for acti in ("relu", "prelu"):
        model = networks.build("holisticnet", num_classes=3, in_channels=2, acti_func=acti)
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        assert shapes == spec.shapes(num_classes=3, in_channels=2, acti_func=acti)


def test_input_size_rule():
    from niftyport.errors import InputShapeError

    spec = networks.get("holisticnet")
    spec.validate_input((12, 20, 4))  # multiples of 4 are enough (checked against the oracle)
    with pytest.raises(InputShapeError, match="multiple of 4"):
        spec.validate_input((12, 20, 10))
