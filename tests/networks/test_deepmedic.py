"""DeepMedic against NiftyNet 0.6.0's own graph (oracle references, random non-trivial weights)."""
import pytest

from network_refs import assert_matches_niftynet, load_ref, run_niftynet_layout
from niftyport import networks

KEYS = ["deepmedic_relu", "deepmedic_prelu"]


def _model(key):
    ref = load_ref(key)
    return ref, networks.load("deepmedic", ref.variables, **ref.constructor_kwargs, **ref.attributes)


def test_sampling_the_wrong_voxels_does_not_match(monkeypatch):
    """Control: sub-sampling voxels 3i (not NiftyNet's 3i+1) changes the output beyond the tolerance."""
    from niftyport.networks.deepmedic import module

    ref, model = _model("deepmedic_relu")
    monkeypatch.setattr(module, "subsample", lambda x, factor=3: x[:, :, ::factor, ::factor, ::factor])
    with pytest.raises(AssertionError, match="max"):
        assert_matches_niftynet(run_niftynet_layout(model, ref.input("random")), ref.outputs["random"])


def test_registry_shapes_agree_with_the_module():
    spec = networks.get("deepmedic")
    for acti, classes in (("relu", 150), ("prelu", 4)):  # 150: the third 1x1x1 scope becomes ..._150_..._2
        model = networks.build("deepmedic", num_classes=classes, in_channels=2, acti_func=acti)
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        assert shapes == spec.shapes(num_classes=classes, in_channels=2, acti_func=acti)


def test_input_size_rule():
    from niftyport.errors import InputShapeError

    spec = networks.get("deepmedic")
    spec.validate_input((57, 63, 105))
    assert spec.output_shape((57, 63, 105)) == (9, 15, 57)
    spec.validate_input((51, 51, 51))  # the smallest
    for bad in ((57, 57, 60), (57, 57, 55), (45, 57, 57)):  # even, not a multiple of 3, too small
        with pytest.raises(InputShapeError, match="odd, a multiple of 3 and greater than 48"):
            spec.validate_input(bad)
