import numpy as np
import pytest

from niftyport.errors import OptionError
from niftyport.preprocessing.resample import resample_to_pixdim, resample_to_shape, resampled_shape, zoom_factors


def test_equal_voxel_sizes_skip_resampling():
    data = np.random.default_rng(0).random((4, 5, 6)).astype(np.float32)
    assert resample_to_pixdim(data, np.float32([1, 1, 1]), (1.0, 1.0, 1.0), order=3) is data


def test_2mm_to_1mm_nearest_neighbour_by_hand():
    data = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    out = resample_to_pixdim(data, (2.0, 2.0, 2.0), (1.0, 1.0, 1.0), order=0)
    assert out.shape == (4, 4, 4) and out.dtype == np.float32
    # output i maps to input i * (2 - 1) / (4 - 1): 0, 1/3, 2/3, 1 -> nearest 0, 0, 1, 1
    assert out[:, 0, 0].tolist() == [0.0, 0.0, 4.0, 4.0]
    assert out[0, 0, :].tolist() == [0.0, 0.0, 1.0, 1.0]


def test_linear_interpolation_keeps_end_voxels_aligned():
    data = np.zeros((3, 2, 2), np.float32)
    data[:, :, :] = np.array([0.0, 10.0, 20.0])[:, None, None]
    out = resample_to_pixdim(data, (1.0, 1.0, 1.0), (0.4, 1.0, 1.0), order=1)
    # round(3 * 2.5) = 8 voxels; output i sits at input 2i/7
    assert out.shape == (8, 2, 2)
    assert np.allclose(out[:, 0, 0], np.arange(8) * 20.0 / 7, atol=1e-5)


@pytest.mark.parametrize("shape,pixdim,target,expected", [
    ((77, 95, 80), (2.0, 2.0, 2.0), (1.0, 1.0, 1.0), (154, 190, 160)),
    ((116, 150, 155), (1.5, 1.5, 1.5), (1.0, 1.0, 1.0), (174, 225, 232)),  # 232.5 -> 232 (half to even)
    # 49.5 -> 50, 102.5 -> 102; float32(3.1) = 3.0999999 so 25 x 3.1 = 77.4999976 -> 77
    ((33, 41, 25), (1.5, 2.5, 3.1), (1.0, 1.0, 1.0), (50, 102, 77)),
])
def test_output_shape_rounds_half_to_even(shape, pixdim, target, expected):
    assert resampled_shape(shape, np.float32(pixdim), target) == expected
    out = resample_to_pixdim(np.zeros(shape, np.float32), np.float32(pixdim), target, order=0)
    assert out.shape == expected


def test_zoom_factors_promote_float32_voxel_sizes_exactly():
    f = zoom_factors(np.float32([1.2, 0.9, 3.0]), (1.0, 1.0, 1.5))
    assert f.dtype == np.float64
    assert f[0] == float(np.float32(1.2)) and f[2] == 2.0


def test_back_to_shape_inverts_nearest_neighbour_upsampling():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 160, size=(7, 9, 5)).astype(np.int32)
    up = resample_to_pixdim(labels, (2.0, 2.0, 2.0), (1.0, 1.0, 1.0), order=0)
    back = resample_to_shape(up, (7, 9, 5), (2.0, 2.0, 2.0), order=0)
    assert back.dtype == np.int32 and np.array_equal(back, labels)


def test_back_to_same_shape_is_skipped():
    labels = np.ones((3, 3, 3), np.int32)
    assert resample_to_shape(labels, (3, 3, 3), (1.0, 1.0, 1.0), order=0) is labels


@pytest.mark.parametrize("order", [-1, 4, 1.5, True])
def test_bad_order_is_rejected(order):
    with pytest.raises(OptionError, match="interp_order"):
        resample_to_pixdim(np.zeros((2, 2, 2)), (1, 1, 1), (2, 2, 2), order=order)
