import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from torch.nn import functional as F

from conftest import REFERENCE, THIRD_PARTY_PTH, need
from niftyport.errors import NiftyportError
from niftyport.inference.engines import (MODES, conv_steps, eager_uses_onednn, engine_input_box, grid_jobs,
                                 region_logits, run_mode, segment_full, segment_grid)
from niftyport.network import HighRes3DNet
from niftyport.inference.tiling import Box, region_work, tiles_of_size

K = 7


class OneHot(torch.nn.Module):
    """A "network" whose argmax is the rounded input: proves the stitching exact."""

    def forward(self, x):
        return F.one_hot(x[:, 0].round().long() % K, K).permute(0, 4, 1, 2, 3).float()


class EdgeSensitive(torch.nn.Module):
    """Box filter with zero padding: outputs near a window's edge depend on the window."""

    def forward(self, x):
        s = F.conv3d(x, torch.ones(1, 1, 5, 5, 5), padding=2)
        return F.one_hot(s[:, 0].floor().long() % K, K).permute(0, 4, 1, 2, 3).float()


def naive_niftynet_loop(model, volume, window, border, batch_size, reverse=False):
    """NiftyNet's inference written out plainly, one window at a time."""
    def starts(n, w, step):
        s = []
        p = 0
        while p + w <= n:
            s.append(p)
            p += step
        s.append(n - w)
        s = sorted(set(s))
        if len(s) == 2:
            s.append(int(np.round(np.mean(s))))
        return list(dict.fromkeys(s))

    axes = [starts(n, w, w - 2 * b) for n, w, b in zip(volume.shape, window, border)]
    locs = [(x, y, z) for y in axes[1] for x in axes[0] for z in axes[2]]
    n = len(locs)
    locs = locs + locs[: (-n) % batch_size]
    if reverse:
        locs = locs[::-1]
    out = np.zeros(volume.shape, np.int32)
    bx, by, bz = border
    for x, y, z in locs:
        wx, wy, wz = window
        inp = torch.from_numpy(volume[x:x + wx, y:y + wy, z:z + wz].copy())[None, None]
        lab = model(inp).argmax(1)[0].numpy()
        out[x + bx:x + wx - bx, y + by:y + wy - by, z + bz:z + wz - bz] = \
            lab[bx:wx - bx, by:wy - by, bz:wz - bz]
    return out


def test_identity_network_stitches_the_input_back():
    rng = np.random.default_rng(1)
    volume = rng.integers(0, K, size=(37, 29, 44)).astype(np.float32)
    labels = segment_grid(OneHot(), volume, window=(16, 16, 16), border=(2, 2, 2), compute_batch=4)
    assert labels.dtype == np.int32
    assert np.array_equal(labels[2:-2, 2:-2, 2:-2], volume[2:-2, 2:-2, 2:-2].astype(np.int32))


@pytest.mark.parametrize("batch_size, compute_batch", [(1, 1), (5, 3), (4, 7)])
def test_edge_effects_follow_niftynet_write_order(batch_size, compute_batch):
    rng = np.random.default_rng(2)
    volume = rng.random((41, 30, 35)).astype(np.float32)
    window, border = (16, 16, 24), (1, 2, 3)
    expected = naive_niftynet_loop(EdgeSensitive(), volume, window, border, batch_size)
    got = segment_grid(EdgeSensitive(), volume, window=window, border=border,
                       batch_size=batch_size, compute_batch=compute_batch)
    assert np.array_equal(got, expected)
    # the test can fail: on this input, writing in another order gives other labels
    assert not np.array_equal(
        got, naive_niftynet_loop(EdgeSensitive(), volume, window, border, batch_size, reverse=True))


def test_multichannel_input_is_accepted():
    volume = np.zeros((16, 16, 16, 2), np.float32)
    volume[..., 0] = 3
    labels = segment_grid(OneHot(), volume, window=(8, 8, 8), border=(0, 0, 0))
    assert (labels == 3).all()


# --- HighRes3DNet: the exact engines ----------------------------------------------------------

def random_highres(seed=0):
    """HighRes3DNet with random weights and random batch-norm statistics, in eval mode."""
    torch.manual_seed(seed)
    net = HighRes3DNet()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        # no per-class offsets: labels follow the features and vary from voxel to voxel
        net.conv_2.bn.reset_parameters()
    return net.eval()


def smooth_volume(shape, seed=0):
    rng = np.random.default_rng(seed)
    v = gaussian_filter(rng.standard_normal(shape), 2.0)
    return ((v - v.mean()) / v.std()).astype(np.float32)


def real_highres():
    from niftyport.weights import load_weights

    return load_weights(need(THIRD_PARTY_PTH))


def reference_input():
    z = np.load(need(REFERENCE / "stages.npz"))
    return z["stage3_whitened"][..., 0, 0], z["labels_padded_ras1mm"][..., 0], z["grid_locations"][:, 1:]


def plain_logits(model, volume):
    with torch.inference_mode():
        return model(torch.from_numpy(np.ascontiguousarray(volume))[None, None])[0]


def box_input(volume, box):
    return torch.from_numpy(np.ascontiguousarray(volume[box.slices()]))[None, None]


def ops_run(fn):
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key for e in prof.key_averages()}


@pytest.mark.parametrize("cin, cout, k, dilation, shape, threads", [
    (16, 16, 3, 2, (1, 16, 32, 32, 8), 2),    # 16*32*32 = 16384: ATen's own
    (16, 16, 3, 2, (1, 16, 40, 40, 8), 2),    # 25600: oneDNN
    (1, 16, 3, 1, (1, 1, 64, 64, 8), 2),      # conv_0 on a 64^3 window: ATen's own
    (1, 16, 3, 1, (2, 1, 16, 16, 8), 2),      # a batch of two: oneDNN
    (64, 80, 1, 1, (1, 64, 24, 24, 4), 2),    # 1x1, two threads: oneDNN
    (64, 80, 1, 1, (1, 64, 24, 24, 4), 1),    # 1x1, one thread: ATen's own
])
def test_backend_rule_is_the_one_torch_applies(cin, cout, k, dilation, shape, threads):
    conv = torch.nn.Conv3d(cin, cout, k, padding=dilation * (k // 2), dilation=dilation, bias=False)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            ops = ops_run(lambda: conv(torch.zeros(shape)))
    finally:
        torch.set_num_threads(old)
    assert ("aten::mkldnn_convolution" in ops) == eager_uses_onednn(conv, shape, threads)


@pytest.mark.parametrize("window", [(32, 40, 48), (24, 24, 32)])
def test_eager_engine_gives_the_window_logits_bit_for_bit(window):
    net = random_highres(1)
    volume = smooth_volume(window, seed=1)
    reference = plain_logits(net, volume)
    assert len(np.unique(reference.argmax(0).numpy())) > 10  # labels vary: the test can fail
    domain = Box.of_shape(window)
    steps = conv_steps(net)
    regions = [Box((2, 2, 2), (11, 19, 31)),                              # low faces
               Box((9, 7, 13), (window[0] - 5, window[1] - 3, window[2] - 11)),  # inside
               Box((17, 3, 30), window)]                                  # high faces
    for region in regions:
        x = box_input(volume, engine_input_box(region, domain, steps, engine="eager"))
        got = region_logits(net, x, region, domain, engine="eager")[0]
        assert torch.equal(got, reference[(slice(None),) + region.slices()])


def test_fast_engine_is_within_rounding_and_crop_invariant():
    window = (32, 40, 24)
    net = random_highres(2)
    volume = smooth_volume(window, seed=2)
    reference = plain_logits(net, volume)
    domain = Box.of_shape(window)
    whole = region_logits(net, box_input(volume, domain), domain, domain, engine="fast")[0]
    assert 0 < (whole - reference).abs().max() < 1e-4  # other rounding, same values
    region = Box((5, 3, 1), (20, 40, 17))
    x = box_input(volume, engine_input_box(region, domain, conv_steps(net), engine="fast"))
    got = region_logits(net, x, region, domain, engine="fast")[0]
    assert torch.equal(got, whole[(slice(None),) + region.slices()])


@pytest.mark.parametrize("batch_size, compute_batch", [(1, 1), (4, 2)])
def test_niftynet_mode_equals_the_plain_window_loop(batch_size, compute_batch):
    net = random_highres(3)
    volume = smooth_volume((40, 40, 24), seed=3)
    window, border = (24, 24, 24), (2, 2, 2)
    with torch.inference_mode():
        expected = naive_niftynet_loop(net, volume, window, border, batch_size)
    stats = {}
    got = segment_grid(net, volume, window=window, border=border, batch_size=batch_size,
                       compute_batch=compute_batch, stats=stats)
    assert len(np.unique(expected)) > 10
    assert np.array_equal(got, expected)
    # 9 windows; with compute_batch 2, regions of the same shape share network calls
    assert stats["regions"] == 9 if compute_batch == 1 else stats["regions"] < 9


def test_niftynet_mode_computes_less_than_whole_windows():
    # 128^3 windows over a 1 mm head as in NiftyNet's tutorial (196 x 276 x 196 padded)
    steps = conv_steps(HighRes3DNet())
    _, jobs = grid_jobs((196, 276, 196), (128,) * 3, (2,) * 3, 1, steps)
    work = sum(region_work(r, d, steps) for _, r, d in jobs)
    whole = 27 * 128**3 * sum(s.flops for s in steps)
    assert len(jobs) == 27 and work < 0.5 * whole


def test_niftynet_mode_matches_niftynet_on_two_reference_windows():
    net = real_highres()
    volume, niftynet_labels, locations = reference_input()
    steps = conv_steps(net)
    owner, jobs = grid_jobs(volume.shape, (64,) * 3, (2,) * 3, 1, steps)
    assert np.array_equal(np.stack([np.r_[d.lo, d.hi] for _, _, d in jobs]), locations)
    for index, region, domain in (jobs[0], jobs[22]):
        x = box_input(volume, engine_input_box(region, domain, steps, engine="eager"))
        labels = region_logits(net, x, region, domain, engine="eager")[0].argmax(0).numpy()
        mine = owner[region.slices()] == index
        assert mine.sum() > 50_000
        assert np.array_equal(labels[mine], niftynet_labels[region.slices()][mine])


@pytest.mark.parametrize("tile", [None, (16, 26, 34), (11, 13, 20)])
def test_full_mode_equals_one_whole_volume_pass(tile):
    net = random_highres(4)
    volume = smooth_volume((30, 26, 34), seed=4)
    logits = plain_logits(net, volume)
    expected = logits.argmax(0).numpy()
    assert len(np.unique(expected)) > 10
    eager = segment_full(net, volume, tile=tile, engine="eager")
    assert np.array_equal(eager, expected)
    fast = segment_full(net, volume, tile=tile, engine="fast")
    top2 = logits.topk(2, dim=0).values
    near_tie = (top2[0] - top2[1]).numpy() < 1e-4
    assert np.array_equal(fast[~near_tie], expected[~near_tie])
    assert np.array_equal(fast, segment_full(net, volume, engine="fast"))  # tiles change nothing


def test_full_mode_tile_logits_with_real_weights():
    net = real_highres()
    volume = reference_input()[0][70:100, 80:106, 60:94]
    reference = plain_logits(net, volume)
    domain = Box.of_shape(volume.shape)
    steps = conv_steps(net)
    for tile in tiles_of_size(domain, (13, 26, 20)):
        for engine, tolerance in (("eager", 0.0), ("fast", 1e-4)):
            x = box_input(volume, engine_input_box(tile, domain, steps, engine=engine))
            got = region_logits(net, x, tile, domain, engine=engine)[0]
            want = reference[(slice(None),) + tile.slices()]
            assert (got - want).abs().max() <= tolerance
            assert torch.equal(got.argmax(0), want.argmax(0))


@pytest.mark.parametrize("mode", ["niftynet", "full-eager"])
def test_keep_computes_only_the_wanted_voxels_and_changes_none(mode):
    # what the pipeline does: the volume padding is never computed, it is cut off anyway
    net = random_highres(3)
    volume = smooth_volume((40, 40, 24), seed=3)
    keep = Box((6, 5, 4), (33, 36, 19))
    options = dict(window=(24, 24, 24), border=(2, 2, 2), batch_size=2)
    whole_stats, kept_stats = {}, {}
    whole = run_mode(mode, net, volume, stats=whole_stats, **options)
    kept = run_mode(mode, net, volume, keep=(keep.lo, keep.hi), stats=kept_stats, **options)
    inside = np.zeros(volume.shape, bool)
    inside[keep.slices()] = True
    assert len(np.unique(whole[inside])) > 10
    assert np.array_equal(kept[inside], whole[inside])
    assert not kept[~inside].any()
    assert kept_stats["flops"] < whole_stats["flops"]  # a few % on a real head: the halo reaches the padding


def test_keep_outside_the_volume_is_refused():
    with pytest.raises(NiftyportError, match="not inside the volume"):
        run_mode("niftynet", OneHot(), np.zeros((8, 8, 8), np.float32), window=(8, 8, 8),
                 border=(0, 0, 0), keep=((0, 0, 0), (9, 8, 8)))


def test_keep_with_any_module_zeroes_the_rest():
    volume = np.random.default_rng(6).integers(0, K, (20, 20, 20)).astype(np.float32)
    got = segment_grid(OneHot(), volume, window=(8, 8, 8), border=(1, 1, 1),
                       keep=Box((2, 3, 4), (18, 17, 16)))
    assert np.array_equal(got[2:18, 3:17, 4:16], volume[2:18, 3:17, 4:16])
    assert got.sum() == volume[2:18, 3:17, 4:16].sum()


def test_modes_table_and_unknown_mode():
    assert {"niftynet", "full"} <= set(MODES)
    with pytest.raises(NiftyportError, match="--mode"):
        run_mode("fastest", OneHot(), np.zeros((8, 8, 8), np.float32), window=(8, 8, 8),
                 border=(0, 0, 0))


def test_too_small_memory_budget_is_refused():
    with pytest.raises(NiftyportError, match="max_memory 1M is too small"):
        segment_full(HighRes3DNet().eval(), np.zeros((64, 64, 64), np.float32), max_memory="1M")


def test_full_mode_keeps_within_max_memory():
    # a fresh process: its peak resident memory (VmHWM) is this run's alone
    script = textwrap.dedent("""
        import numpy as np, torch
        from niftyport.inference.engines import segment_full, _rss_bytes
        from niftyport.network import HighRes3DNet
        torch.manual_seed(0)
        net = HighRes3DNet().eval()
        volume = np.random.default_rng(0).standard_normal((64, 72, 56)).astype(np.float32)
        base = _rss_bytes()
        labels = segment_full(net, volume, max_memory=base + 400 * 2**20)
        peak = [int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
        print(base, peak, labels.shape)
    """)
    if not sys.platform.startswith("linux"):
        pytest.skip("peak memory is read from /proc (Linux)")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    base, peak, _ = out.stdout.split(maxsplit=2)
    assert int(peak) <= int(base) + 400 * 2**20
