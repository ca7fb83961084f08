"""DenseVNet against NiftyNet 0.6.0's own graph (oracle references, random non-trivial weights)."""
import pytest
from network_refs import assert_matches_niftynet, load_ref, run_niftynet_layout

from niftyport import networks
from niftyport.errors import InputShapeError, MappingError, NetworkError

KEYS = ["dense_vnet", "dense_vnet_prior"]


def test_the_prior_is_needed_to_match():
    """Control: the prior checkpoint without its prior does not load, and zeroing log(prior) changes the output."""
    import torch

    ref = load_ref("dense_vnet_prior")
    with pytest.raises(MappingError, match="unexpected"):
        networks.load("dense_vnet", ref.variables, num_classes=9)
    model = networks.load("dense_vnet", ref.variables, **ref.constructor_kwargs)
    with torch.no_grad():
        model.spatial_prior.prior.fill_(1.0)  # log(1) = 0: the network without its prior
    ours = run_niftynet_layout(model, ref.input("random"))
    with pytest.raises(AssertionError, match="max"):
        assert_matches_niftynet(ours, ref.outputs["random"])


def test_registry_shapes_agree_with_the_module_and_rules():
    spec = networks.get("dense_vnet")
    cases = [{"num_classes": 9},
             {"num_classes": 4, "in_channels": 2, "hyperparams": {"use_prior": True}},
             {"num_classes": 3, "hyperparams": {"use_bdo": True, "n_dense_channels": [2, 3],
                                                "n_down_channels": [5, 6], "dilation_rates": [[1] * 2, [1] * 3]}},
             {"num_classes": 3, "spatial_dims": 2, "hyperparams": {"prior_size": 6, "use_prior": True}}]
    for kwargs in cases:
        model = networks.build("dense_vnet", **kwargs)
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        assert shapes == spec.shapes(**kwargs)
        rules = spec.rules("DenseVNet", spatial_dims=kwargs.get("spatial_dims", 3)).reversed()
        assert all(rules.target_of(key) is not None for key in shapes), kwargs


def test_every_checkpoint_variable_is_mapped_once():
    ref = load_ref("dense_vnet_prior")
    spec = networks.get("dense_vnet")
    model = networks.load("dense_vnet", ref.variables, **ref.constructor_kwargs)
    targets = {spec.rules("DenseVNet").target_of(n)[1] for n in ref.variables
               if "/biased" not in n and "/local_step" not in n}
    assert targets == set(model.state_dict())


def test_a_2d_network_runs_and_loads_with_2d_rules():
    import torch

    from niftyport.mapping import convert_state_dict, export_state_dict

    spec = networks.get("dense_vnet")
    model = networks.build("dense_vnet", num_classes=3, spatial_dims=2)
    assert model(torch.zeros(1, 1, 16, 24)).shape == (1, 3, 16, 24)
    rules = spec.rules("DenseVNet", spatial_dims=2)
    niftynet_names = export_state_dict(model.state_dict(), rules)
    assert niftynet_names["DenseVNet/conv_bn/conv_/w"].shape == (5, 5, 1, 24)
    again = convert_state_dict(niftynet_names, rules, expected=model)
    assert all(torch.equal(again[k], v) for k, v in model.state_dict().items())


def test_input_size_rule():
    import torch

    spec = networks.get("dense_vnet")
    spec.validate_input((16, 24, 8))
    with pytest.raises(InputShapeError, match="multiple of 8"):
        spec.validate_input((16, 20, 8))
    model = networks.build("dense_vnet", hyperparams={"n_dense_channels": [2, 2], "dilation_rates": [[1], [1]]})
    model(torch.zeros(1, 1, 4, 8, 12))  # two blocks: multiples of 4 do
    with pytest.raises(InputShapeError, match="multiple of 4"):
        model(torch.zeros(1, 1, 4, 6, 8))


@pytest.mark.parametrize("hyperparams, match", [
    ({"n_dense_channel": [4]}, "no hyperparameter 'n_dense_channel'"),
    ({"dilation_rates": [[1, 2], [1], [1]]}, "dilated"),
    ({"use_dense_connections": False}, "use_dense_connections"),
    ({"use_coords": True}, "use_coords"),
    ({"n_down_channels": [24, None, None]}, "only the last block"),
    ({"n_seg_channels": [12, 24]}, "fewer than"),
])
def test_what_niftynet_refuses_is_refused(hyperparams, match):
    with pytest.raises(NetworkError, match=match):
        networks.build("dense_vnet", hyperparams=hyperparams)


def test_hyperparams_do_not_leak_between_networks():
    first = networks.build("dense_vnet", hyperparams={"use_prior": True})
    second = networks.build("dense_vnet")
    assert hasattr(first, "spatial_prior") and not hasattr(second, "spatial_prior")
    assert sum(p.numel() for p in second.parameters()) == load_ref("dense_vnet").meta["n_trainable_parameters"]


def test_acti_func_is_ignored_as_in_niftynet():
    ref = load_ref("dense_vnet")
    model = networks.load("dense_vnet", ref.variables, num_classes=9, acti_func="prelu")
    assert_matches_niftynet(run_niftynet_layout(model, ref.input("random")), ref.outputs["random"])


def test_the_inference_stack_is_the_training_one():
    import torch

    model = networks.build("dense_vnet", num_classes=3, hyperparams={"use_bdo": True})
    x = torch.randn(2, 1, 16, 16, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fast = model(x)
    assert torch.equal(model(x).detach(), fast)
