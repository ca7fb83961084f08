"""The Winograd convolutions measured by ``benchmarks/bench_winograd.py`` compute the convolution.

Expected values: float64 ``torch.nn.functional.conv3d`` and, for all-ones data,
the count of in-bounds taps (a hand formula). The implementation lives beside
the benchmark (it is not an inference mode), so it is imported from there.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "winograd_conv.py"
_spec = importlib.util.spec_from_file_location("winograd_conv", _PATH)
wg = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wg)


def _conv(x, w, m, d, **options):
    x = x.contiguous(memory_format=torch.channels_last_3d)
    with torch.inference_mode():
        return wg.winograd_conv3d(x, wg.transform_weight(w, m), m=m, dilation=d, **options)


def test_lavin_gray_matrices_give_the_1d_correlation():
    # y_i = sum_k g_k d_{i+k} for i < m, written out for random numbers
    rng = np.random.default_rng(0)
    for m, (bt, g_mat, at) in wg.MATRICES.items():
        d, g = rng.standard_normal(m + 2), rng.standard_normal(3)
        want = [sum(g[k] * d[i + k] for k in range(3)) for i in range(m)]
        np.testing.assert_allclose(at @ ((g_mat @ g) * (bt @ d)), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("m", [2, 4])
def test_all_ones_counts_the_taps_inside_the_volume(m):
    # 4x4x4 ones, 3x3x3 ones kernel, 'SAME' zero padding: each output is the number of
    # neighbours inside the volume, per axis 2 at a face and 3 inside
    per_axis = np.array([2, 3, 3, 2], dtype=np.float64)
    want = per_axis[:, None, None] * per_axis[None, :, None] * per_axis[None, None, :]
    got = _conv(torch.ones(1, 1, 4, 4, 4), torch.ones(1, 1, 3, 3, 3), m, 1)[0, 0]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)


@pytest.mark.parametrize("m, tolerance", [(2, 1e-6), (4, 1e-4)])
@pytest.mark.parametrize("dilation", [1, 2, 4])
def test_matches_float64_conv3d(m, tolerance, dilation):
    gen = torch.Generator().manual_seed(dilation)
    for shape in ((13, 9, 17), (16, 16, 16), (5, 3, 22)):  # sides no multiple of m or d too
        x = torch.randn(2, 5, *shape, generator=gen)
        w = torch.randn(7, 5, 3, 3, 3, generator=gen)
        ref = F.conv3d(x.double(), w.double(), padding=dilation, dilation=dilation)
        got = _conv(x, w, m, dilation)
        assert got.shape == ref.shape and got.is_contiguous(memory_format=torch.channels_last_3d)
        assert (got.double() - ref).abs().max() <= tolerance * ref.abs().max()


def test_chunks_workers_and_workspace_change_nothing_but_rounding():
    gen = torch.Generator().manual_seed(7)
    x, w = torch.randn(1, 8, 20, 11, 14, generator=gen), torch.randn(6, 8, 3, 3, 3, generator=gen)
    ref = F.conv3d(x.double(), w.double(), padding=2, dilation=2)
    workspace = torch.full((10**6,), float("nan"))  # stale contents must not leak in
    for options in ({"chunk_bytes": 1}, {"chunk_bytes": 2**30}, {"workers": 2, "chunk_bytes": 5000},
                    {"workspace": workspace}):
        got = _conv(x, w, 4, 2, **options)
        assert (got.double() - ref).abs().max() <= 1e-4 * ref.abs().max()
