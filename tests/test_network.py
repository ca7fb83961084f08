import pytest
import torch

from niftyport.network import HighRes3DNet, RECEPTIVE_FIELD_RADIUS


def test_state_dict_has_niftynet_scopes_and_105_parameter_groups():
    sd = HighRes3DNet().state_dict()
    tensors = [k for k in sd if not k.endswith("num_batches_tracked")]
    assert len(tensors) == 21 + 21 * 4
    assert sd["conv_0.conv.weight"].shape == (16, 1, 3, 3, 3)
    assert sd["res_2_0.conv_0.weight"].shape == (32, 16, 3, 3, 3)
    assert sd["res_3_2.conv_1.weight"].shape == (64, 64, 3, 3, 3)
    assert sd["conv_1.conv.weight"].shape == (80, 64, 1, 1, 1)
    assert sd["conv_2.conv.weight"].shape == (160, 80, 1, 1, 1)


def test_without_hidden_1x1_layer():
    net = HighRes3DNet(in_channels=2, num_classes=5, hidden_1x1=False)
    assert net.conv_1 is None
    assert net.conv_2.conv.weight.shape == (5, 64, 1, 1, 1)
    assert net(torch.zeros(1, 2, 8, 8, 8)).shape == (1, 5, 8, 8, 8)


def test_receptive_field_radius_is_43():
    assert RECEPTIVE_FIELD_RADIUS == 43


def test_receptive_field_matches_gradient_support():
    torch.manual_seed(0)
    net = HighRes3DNet(num_classes=2).eval()
    x = torch.randn(1, 1, 96, 1, 1, requires_grad=True)
    # a 1-voxel-thick line: the output at the centre depends on inputs within the radius
    net(x)[0, 0, 48, 0, 0].backward()
    support = torch.nonzero(x.grad[0, 0, :, 0, 0]).flatten()
    assert support.min().item() == 48 - RECEPTIVE_FIELD_RADIUS
    assert support.max().item() == 48 + RECEPTIVE_FIELD_RADIUS


def test_shortcut_zero_padding_is_split_evenly():
    net = HighRes3DNet().eval()
    block = net.res_2_0
    assert block.channel_pad == (8, 8)
    with torch.no_grad():
        for p in block.parameters():
            p.zero_()
        x = torch.randn(1, 16, 4, 4, 4)
        y = block(x)  # convs are zero: the output is the padded shortcut
    assert torch.equal(y[:, 8:24], x)
    assert y[:, :8].abs().max() == 0 and y[:, 24:].abs().max() == 0


@pytest.mark.parametrize("kwargs", [{}, {"in_channels": 2, "num_classes": 5, "hidden_1x1": False}])
def test_torch_free_shape_table_matches_the_module(kwargs):
    from niftyport.architecture import state_dict_shapes

    args = (kwargs.get("in_channels", 1), kwargs.get("num_classes", 160))
    module = HighRes3DNet(*args, hidden_1x1=kwargs.get("hidden_1x1", True)).state_dict()
    table = state_dict_shapes(*args, hidden_1x1=kwargs.get("hidden_1x1", True))
    assert list(table) == list(module)
    assert all(tuple(module[k].shape) == shape for k, shape in table.items())
