"""The TF-exact building blocks against formulas written from TensorFlow's documented semantics."""
import numpy as np
import pytest
import torch

from niftyport.networks import layers


def tf1_resize_axis(a: np.ndarray, axis: int, new: int) -> np.ndarray:
    """TF1 ``resize_bilinear`` (align_corners=False, half_pixel_centers=False) along one axis, in numpy."""
    old = a.shape[axis]
    out = np.empty(a.shape[:axis] + (new,) + a.shape[axis + 1:], np.float32)
    for i in range(new):
        src = np.float32(i) * (np.float32(old) / np.float32(new))
        lo = int(np.floor(src))
        hi = min(lo + 1, old - 1)
        frac = np.float32(src - np.float32(lo))
        low, high = np.take(a, lo, axis=axis), np.take(a, hi, axis=axis)
        np.moveaxis(out, axis, 0)[i] = low + (high - low) * frac
    return out


@pytest.mark.parametrize("shape, size", [((2, 3, 5, 6, 7), (10, 3, 7)), ((1, 2, 9, 4, 6), (18, 8, 12)),
                                         ((1, 2, 6, 10), (12, 5))])
def test_resize_is_tf1_legacy_bilinear(shape, size):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    expected = x
    for axis in reversed(range(2, x.ndim)):  # the last axis first, as TF's kernel
        expected = tf1_resize_axis(expected, axis, size[axis - 2])
    ours = layers.resize_linear_tf1(torch.from_numpy(x), size).numpy()
    assert ours.shape == expected.shape and np.array_equal(ours, expected)


def test_resize_is_not_torch_half_pixel():
    """Control: torch's align_corners=False uses half-pixel centres, which TF1 does not."""
    x = torch.arange(4.0).reshape(1, 1, 4)
    ours = layers.resize_linear_tf1(x[..., None], (8, 1)).flatten()
    theirs = torch.nn.functional.interpolate(x, size=8, mode="linear", align_corners=False).flatten()
    assert not torch.equal(ours, theirs)


@pytest.mark.parametrize("size, kernel, stride", [(9, 3, 2), (8, 3, 2), (8, 2, 2), (7, 5, 1), (10, 1, 2)])
def test_same_padding_formula(size, kernel, stride):
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    assert layers.same_padding(size, kernel, stride) == (total // 2, total - total // 2)


def test_strided_same_conv_puts_the_extra_zero_at_the_end():
    x = torch.arange(1.0, 9.0).reshape(1, 1, 8)  # 1..8
    w = torch.ones(1, 1, 3)
    # TF SAME, k=3, s=2 on 8 samples: pad 0 before, 1 after -> windows [1,2,3], [3,4,5], [5,6,7], [7,8,0]
    assert layers.conv_same(x, w, stride=2).flatten().tolist() == [6.0, 12.0, 18.0, 15.0]


def test_avg_pool_same_leaves_padding_out():
    x = torch.arange(1.0, 6.0).reshape(1, 1, 5)  # 1..5, k=3, s=2: pad 1 and 1
    # windows [0,1,2] -> mean of (1,2) = 1.5 (the padded zero is not counted), [2,3,4] -> 3, [4,5,0] -> 4.5
    assert layers.avg_pool_same(x, 3, 2).flatten().tolist() == [1.5, 3.0, 4.5]


def test_transposed_same_conv_output_size_and_crop():
    x = torch.tensor([[[1.0, 2.0]]])
    w = torch.tensor([[[1.0, 10.0, 100.0]]])  # (in, out, k)
    # full transposed output (k=3, s=2): [1, 10, 100+2, 20, 200]; SAME keeps n*s=4 from (k-s)//2 = 0
    assert layers.conv_transpose_same(x, w, stride=2).flatten().tolist() == [1.0, 10.0, 102.0, 20.0]
    # k=1 < s=2: zero-stuffing, n*s outputs
    w1 = torch.tensor([[[3.0]]])
    assert layers.conv_transpose_same(x, w1, stride=2).flatten().tolist() == [3.0, 0.0, 6.0, 0.0]


def test_niftynet_activations():
    x = torch.tensor([[-2.0, -0.5, 0.0, 1.5]]).reshape(1, 1, 4)
    leaky = layers.Activation("leakyrelu")(x).flatten()
    assert torch.allclose(leaky, torch.tensor([-0.04, -0.01, 0.0, 1.5]), atol=1e-7)
    prelu = layers.Activation("prelu", 1)
    with torch.no_grad():
        prelu.alpha.fill_(0.25)
    assert prelu(x).flatten().tolist() == [-0.5, -0.125, 0.0, 1.5]


def test_instance_norm_on_one_voxel_gives_beta():
    """TF's formula on a one-voxel map: variance 0, ``x * inv + (beta - x * inv)`` = beta up to rounding."""
    norm = layers.InstanceNorm(3)
    with torch.no_grad():
        norm.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
        out = norm(torch.randn(2, 3, 1, 1, 1, generator=torch.Generator().manual_seed(3)))
    expected = torch.tensor([0.5, -1.0, 2.0]).reshape(1, 3, 1, 1, 1).expand(2, 3, 1, 1, 1)
    assert torch.allclose(out, expected, rtol=0, atol=1e-5)  # |x| / sqrt(eps) ~ 300 |x| of rounding headroom
