"""UNet2D against NiftyNet 0.6.0's own graph (oracle references, random non-trivial weights, n_fea narrowed)."""
import pytest

from network_refs import assert_matches_niftynet, load_ref, run_niftynet_layout
from niftyport import networks
from niftyport.checkpoint.filter import classify

KEYS = ["unet2d", "unet2d_prelu", "unet2d_offgrid"]


def model_variables(ref):
    """The reference's variables a checkpoint reader keeps (no batch-norm debias accumulators)."""
    return {k: v for k, v in ref.variables.items() if classify(k, v.shape).kept}


def test_default_widths_are_niftynets():
    model = networks.build("unet_2d", num_classes=2)
    assert model.n_fea == (64, 128, 256, 512, 1024)
    assert tuple(model.blocks[4].conv_1.conv.weight.shape) == (1024, 1024, 3, 3)


def test_the_wrong_widths_are_refused():
    """Control: the narrowed checkpoint without its n_fea does not fit the default network."""
    from niftyport.errors import MappingError

    ref = load_ref("unet2d")
    with pytest.raises(MappingError, match="module expects"):
        networks.load("unet_2d", ref.variables, **ref.constructor_kwargs)


def test_skips_go_before_the_upsampled_map(monkeypatch):
    """Control: concatenating the other way round does not reproduce NiftyNet."""
    import torch

    from niftyport.networks.unet_2d import module

    skip_first = module.crop_concat

    def up_first(skip, up):
        return torch.cat(skip_first(skip, up).split([skip.shape[1], up.shape[1]], dim=1)[::-1], dim=1)

    ref = load_ref("unet2d")
    model = networks.load("unet_2d", ref.variables, **ref.constructor_kwargs, **ref.attributes)
    monkeypatch.setattr(module, "crop_concat", up_first)
    with pytest.raises(AssertionError, match=r"max \|diff\|"):
        assert_matches_niftynet(run_niftynet_layout(model, ref.input("random")), ref.outputs["random"])


def test_input_size_rule():
    from niftyport.errors import InputShapeError

    spec = networks.get("unet_2d")
    spec.validate_input((188, 220))
    assert spec.output_shape((188, 220)) == (4, 36)
    assert spec.output_shape((220, 236)) == tuple(load_ref("unet2d").meta["output_shape"][1:3])
    assert spec.output_shape((197, 213)) == tuple(load_ref("unet2d_offgrid").meta["output_shape"][1:3])
    for bad in ((172, 220), (220, 221), (124, 124), (197, 213)):
        with pytest.raises(InputShapeError, match="16k \\+ 124"):
            spec.validate_input(bad)
    with pytest.raises(InputShapeError, match="2-D"):
        spec.validate_input((188, 188, 188))


def test_n_fea_needs_five_widths():
    from niftyport.errors import NetworkError

    with pytest.raises(NetworkError, match="5 widths"):
        networks.build("unet_2d", num_classes=2, n_fea=[16, 32, 64, 128])
