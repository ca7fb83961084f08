import numpy as np
import pytest

from niftyport.errors import OptionError
from niftyport.preprocessing.padding import pad, pad_widths, unpad


def test_minimum_pads_each_line_with_its_own_minimum():
    data = np.array([[[5.0, 2.0, 9.0], [7.0, 8.0, 6.0]]], np.float32)  # (1, 2, 3)
    out = pad(data, (0, 0, 2), mode="minimum")
    assert out.tolist() == [[[2, 2, 5, 2, 9, 2, 2], [6, 6, 7, 8, 6, 6, 6]]]


def test_minimum_corners_take_minimum_of_padded_lines():
    data = np.array([[1.0, 5.0], [3.0, 4.0]], np.float32)[:, :, None]  # (2, 2, 1)
    out = pad(data, (1, 1, 0), mode="minimum")[:, :, 0]
    # x first: columns [1, 3] -> min 1, [5, 4] -> min 4; then y along each (already padded) row
    assert out.tolist() == [[1, 1, 4, 1], [1, 1, 5, 1], [3, 3, 4, 3], [1, 1, 4, 1]]


def test_same_as_numpy_on_5d_niftynet_layout():
    rng = np.random.default_rng(0)
    data = rng.random((6, 7, 8)).astype(np.float32)
    five = np.pad(data[..., None, None], ((3, 3), (3, 3), (3, 3), (0, 0), (0, 0)), mode="minimum")
    assert np.array_equal(pad(data, (3, 3, 3)), five[..., 0, 0])


def test_fortran_order_is_kept_as_numpy_does():
    data = np.asfortranarray(np.zeros((4, 5, 6), np.float32))
    assert pad(data, (1, 1, 1)).flags.f_contiguous


def test_pad_to_size_splits_before_and_after():
    assert pad_widths((5, 8, 9), (10, 10, 10), pad_to=(8, 8, 8)) == ((1, 2), (0, 0), (0, 0))
    out = pad(np.ones((5, 8, 9)), (10, 10, 10), mode="constant", pad_to=(8, 10, 8))
    assert out.shape == (8, 10, 9)


def test_unpad_inverts_pad():
    data = np.arange(60).reshape(3, 4, 5)
    widths = pad_widths(data.shape, (10, 10, 10))
    assert np.array_equal(unpad(pad(data, (10, 10, 10)), widths), data)


def test_unpad_skips_sides_not_smaller_than_half_the_size():
    # NiftyNet crops a side only if 0 < width < size / 2
    assert unpad(np.zeros((20, 21, 30)), ((10, 10),) * 3).shape == (20, 1, 10)


def test_bad_mode_and_border_are_rejected():
    with pytest.raises(OptionError, match="volume_padding_mode 'minmum'"):
        pad(np.zeros((2, 2, 2)), (1, 1, 1), mode="minmum")
    with pytest.raises(OptionError, match="volume_padding_size"):
        pad(np.zeros((2, 2, 2)), (1, -1, 1))
