"""HighRes3DNet against NiftyNet 0.6.0's own graph (oracle references, random non-trivial weights)."""
import pytest

from network_refs import load_ref
from niftyport import networks


def test_a_wrong_activation_does_not_match():
    """Control: the prelu checkpoint's weights with ReLU's names do not even map."""
    from niftyport.errors import MappingError

    ref = load_ref("highres3dnet_prelu")
    with pytest.raises(MappingError, match="match no rule"):
        networks.load("highres3dnet", ref.variables, num_classes=5, acti_func="relu")


def test_registry_shapes_agree_with_the_module():
    spec = networks.get("highres3dnet")
    for acti in ("relu", "prelu"):
        model = networks.build("highres3dnet", num_classes=7, in_channels=2, acti_func=acti)
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        assert shapes == spec.shapes(num_classes=7, in_channels=2, acti_func=acti)


def test_input_size_rule():
    from niftyport.errors import InputShapeError

    spec = networks.get("highres3dnet")
    spec.validate_input((16, 24, 8))
    with pytest.raises(InputShapeError, match="multiple of 8"):
        spec.validate_input((16, 20, 8))
