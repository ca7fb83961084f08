"""``--mode full-winograd``: the C kernel computes the convolution, the mode the network.

Expected values come from float64 ``torch.nn.functional.conv3d`` / float64
eager HighRes3DNet and, for all-ones data, the count of in-bounds taps (a hand
formula); none from the kernel itself.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from torch.nn import functional as F

from conftest import REFERENCE, THIRD_PARTY_PTH, need, one_line_error
from niftyport.cli import main
from niftyport.errors import OptionError
from niftyport.inference import engines, winograd
from niftyport.inference.engines import conv_steps, engine_input_box, region_logits, segment_full
from niftyport.inference.tiling import Box
from niftyport.network import HighRes3DNet

pytestmark = pytest.mark.skipif(winograd._compiler() is None, reason="no C compiler to build the kernel")


def _rel(got, want) -> float:
    return float((got.double() - want).abs().max() / want.abs().max())


def _batch_norm(channels: int, gen: torch.Generator) -> torch.nn.BatchNorm3d:
    bn = torch.nn.BatchNorm3d(channels).eval()
    with torch.no_grad():
        bn.running_mean.copy_(torch.rand(channels, generator=gen) - 0.5)
        bn.running_var.copy_(torch.rand(channels, generator=gen) * 1.5 + 0.5)
        bn.weight.copy_(torch.rand(channels, generator=gen) + 0.5)
        bn.bias.copy_(torch.rand(channels, generator=gen) * 0.6 - 0.3)
    return bn


def test_all_ones_counts_the_taps_inside_the_box():
    # ones in, ones kernel, 'SAME' zero padding: each output is cin times the number of
    # taps inside the box, per axis 2 at a face and 3 inside (dilation 1)
    per_axis = np.array([2, 3, 3, 3, 3, 2], dtype=np.float64)
    want = 16 * per_axis[:, None, None] * per_axis[None, :, None] * per_axis[None, None, :]
    u = winograd.transform_weight(torch.ones(16, 16, 3, 3, 3))
    got = winograd.conv3d(torch.ones(1, 16, 6, 6, 6), u, dilation=1)
    for c in (0, 7, 15):
        np.testing.assert_allclose(got[0, c].numpy(), want, rtol=1e-5)


@pytest.mark.parametrize("cin, cout, d, spatial, lo, shape", [
    (16, 16, 1, (9, 10, 11), (0, 0, 0), None),          # partial tiles on every axis
    (32, 64, 2, (20, 17, 13), (2, 1, 3), (15, 13, 9)),  # a crop, dilation 2
    (64, 64, 4, (30, 29, 31), (4, 0, 5), (22, 29, 21)),  # dilation 4: four phases per axis
    (64, 32, 1, (7, 5, 6), (1, 1, 1), (5, 3, 4)),        # fewer voxels than a tile
    (16, 80, 1, (8, 8, 8), (0, 0, 0), None),            # cout past one 64-channel block
])
def test_matches_float64_conv3d_on_its_crop(cin, cout, d, spatial, lo, shape):
    gen = torch.Generator().manual_seed(cin + cout + d)
    x = torch.randn(2, cin, *spatial, generator=gen)
    w = torch.randn(cout, cin, 3, 3, 3, generator=gen) / (27 * cin) ** 0.5
    b = torch.randn(cout, generator=gen)
    shape = shape or spatial
    crop = (slice(None), slice(None)) + tuple(slice(a, a + s) for a, s in zip(lo, shape))
    want = F.conv3d(x.double(), w.double(), b.double(), padding=d, dilation=d)[crop]
    got = winograd.conv3d(x, winograd.transform_weight(w), dilation=d, lo=lo, shape=shape, bias=b)
    assert got.shape == want.shape and got.is_contiguous(memory_format=torch.channels_last_3d)
    direct = _rel(F.conv3d(x, w, b, padding=d, dilation=d)[crop], want)
    assert direct < _rel(got, want) < 1e-4  # F(4,3)'s coefficients cost precision, not much


@pytest.mark.parametrize("cin, cout, channel_lo", [(16, 32, 8), (32, 64, 16), (64, 64, 0)])
def test_fused_batch_norm_relu_and_residual(cin, cout, channel_lo):
    # what a residual block needs: relu(bn_0(x)) before the padding, relu(bn_1(.)) after,
    # and the shortcut zero-padded to cout channels (HighResBlock's channel_pad)
    gen = torch.Generator().manual_seed(cout)
    x = torch.randn(2, cin, 14, 13, 12, generator=gen)
    w = torch.randn(cout, cin, 3, 3, 3, generator=gen) / (27 * cin) ** 0.5
    bn0, bn1 = _batch_norm(cin, gen), _batch_norm(cout, gen)
    lo, shape = (2, 1, 3), (9, 10, 7)
    crop = (slice(None), slice(None)) + tuple(slice(a, a + s) for a, s in zip(lo, shape))
    u = winograd.transform_weight(w)
    with torch.no_grad():
        h = F.conv3d(F.relu(bn0.double()(x.double())), w.double(), padding=2, dilation=2)[crop]
        want_post = F.relu(bn1.double()(h))
        shortcut = torch.randn(2, cin, 14, 13, 12, generator=gen)
        pad = (0, 0, 0, 0, 0, 0, channel_lo, cout - cin - channel_lo)
        want_res = h + F.pad(shortcut.double(), pad)[crop]
    post = winograd.conv3d(x, u, dilation=2, lo=lo, shape=shape, pre=winograd.affine(bn0),
                           post=winograd.affine(bn1), relu=True)
    res = winograd.conv3d(x, u, dilation=2, lo=lo, shape=shape, pre=winograd.affine(bn0),
                          residual=shortcut, residual_lo=lo, channel_lo=channel_lo)
    assert _rel(post, want_post) < 1e-4 and _rel(res, want_res) < 1e-4
    assert (post >= 0).all() and (post == 0).any()


def test_writes_into_a_given_buffer_and_refuses_what_does_not_fit():
    x = torch.randn(1, 16, 8, 8, 8)
    u = winograd.transform_weight(torch.randn(16, 16, 3, 3, 3))
    out = torch.full((1, 16, 6, 6, 6), float("nan")).contiguous(memory_format=torch.channels_last_3d)
    got = winograd.conv3d(x, u, dilation=1, lo=(1, 1, 1), shape=(6, 6, 6), out=out)
    assert got.data_ptr() == out.data_ptr() and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="outside"):
        winograd.conv3d(x, u, dilation=1, lo=(3, 0, 0), shape=(6, 8, 8))
    with pytest.raises(ValueError, match="do not fit"):
        winograd.conv3d(torch.randn(1, 8, 8, 8, 8), u, dilation=1)
    with pytest.raises(ValueError, match="does not cover"):
        winograd.conv3d(x, u, dilation=1, residual=torch.randn(1, 16, 4, 8, 8))
    assert not winograd.supports(torch.nn.Conv3d(1, 16, 3, padding=1))  # conv_0: oneDNN's


def test_compiled_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    winograd.library.cache_clear()
    try:
        winograd.library()
        built = list((tmp_path / "niftyport").glob("winograd-*.so"))
        assert len(built) == 1
        stamp = built[0].stat().st_mtime_ns
        winograd.library.cache_clear()
        winograd.library()
        assert [p.stat().st_mtime_ns for p in (tmp_path / "niftyport").iterdir()] == [stamp]
    finally:
        winograd.library.cache_clear()


def test_no_compiler_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(winograd, "_compiler", lambda: None)
    winograd.library.cache_clear()
    try:
        with pytest.raises(OptionError, match="C compiler"):
            winograd.library()
        t1 = tmp_path / "t1.nii.gz"
        import nibabel as nib
        nib.save(nib.Nifti1Image(np.random.default_rng(0).gamma(2, 50, (12, 12, 12)).astype(np.float32),
                                 np.eye(4)), t1)
        status = main(["parcellate", str(t1), "--mode", "full-winograd", "--device", "cpu", "-q"])
        one_line_error(status, capsys.readouterr().err, "C compiler")
        assert not (tmp_path / "t1_parcellation.nii.gz").exists()
    finally:
        winograd.library.cache_clear()


# --- the network -------------------------------------------------------------------------------

def _random_highres(seed: int) -> HighRes3DNet:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = HighRes3DNet()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm3d) and m is not net.conv_2.bn:
            m.load_state_dict(_batch_norm(m.num_features, gen).state_dict())
    return net.eval()


def _smooth(shape, seed):
    v = gaussian_filter(np.random.default_rng(seed).standard_normal(shape), 2.0)
    return ((v - v.mean()) / v.std()).astype(np.float32)


def _float64_logits(net, volume):
    with torch.inference_mode():
        out = net.double()(torch.from_numpy(volume).double()[None, None])[0]
    net.float()
    return out


def _check_against_float64(net, volume, tolerance):
    want = _float64_logits(net, volume)
    domain = Box.of_shape(volume.shape)
    steps = conv_steps(net)
    for region in (domain, Box((3, 5, 2), (volume.shape[0] - 4, volume.shape[1], 17))):
        x = torch.from_numpy(np.ascontiguousarray(
            volume[engine_input_box(region, domain, steps, engine="winograd").slices()]))[None, None]
        got = region_logits(net, x, region, domain, engine="winograd")[0]
        ref = want[(slice(None),) + region.slices()]
        fast = region_logits(net, x, region, domain, engine="fast")[0]
        assert _rel(fast, ref) < _rel(got, ref) < tolerance
    return want


def test_network_logits_within_1e4_of_float64_random_weights():
    _check_against_float64(_random_highres(5), _smooth((30, 28, 26), 5), 1e-4)


def test_network_logits_within_1e4_of_float64_real_weights_and_input():
    from niftyport.weights import load_weights

    net = load_weights(need(THIRD_PARTY_PTH))
    volume = np.load(need(REFERENCE / "stages.npz"))["stage3_whitened"][..., 0, 0]
    want = _check_against_float64(net, np.ascontiguousarray(volume[66:102, 76:110, 58:94]), 1e-4)
    assert len(np.unique(want.argmax(0).numpy())) > 20  # a crop with many labels


@pytest.mark.parametrize("tile", [None, (13, 28, 11)])
def test_mode_labels_are_the_float64_pass_but_near_ties(tile):
    net = _random_highres(6)
    volume = _smooth((30, 28, 26), 6)
    want = _float64_logits(net, volume)
    expected = want.argmax(0).numpy()
    assert len(np.unique(expected)) > 10
    top2 = want.topk(2, dim=0).values
    near_tie = ((top2[0] - top2[1]) / want.abs().max()).numpy() < 1e-4
    stats = {}
    got = engines.run_mode("full-winograd", net, volume, window=(32, 32, 32), border=(0, 0, 0),
                           tile=tile, stats=stats)
    assert np.array_equal(got[~near_tie], expected[~near_tie])
    assert stats["regions"] == (1 if tile is None else 9)
    # Winograd's products: 216 per 64 outputs and channel pair, against 27 per output
    direct = {}
    segment_full(net, volume, tile=tile, engine="fast", stats=direct)
    assert direct["flops"] / stats["flops"] > 3
