import numpy as np
import pytest

from conftest import REFERENCE, need
from niftyport.errors import OptionError
from niftyport.preprocessing.whitening import foreground_mean_std, whiten


def test_hand_computed_population_std():
    image = np.float32([2, 4, 4, 4, 5, 5, 7, 9, 1000]).reshape(3, 3, 1)
    mask = image < 100
    mean, std = foreground_mean_std(image, mask)
    assert (mean, std) == (5.0, 2.0)  # ddof 0
    out = whiten(image, mask)
    assert out.dtype == np.float32
    assert out.ravel().tolist() == [-1.5, -0.5, -0.5, -0.5, 0.0, 0.0, 1.0, 2.0, 497.5]  # all voxels


def test_constant_foreground_uses_the_std_floor():
    image = np.float32([3, 3, 3, 8]).reshape(2, 2, 1)
    out = whiten(image, image < 5)
    assert out.ravel().tolist() == [0.0, 0.0, 0.0, pytest.approx(5 / 1e-5)]


def test_statistics_are_float64_like_numpy_ma():
    rng = np.random.default_rng(0)
    image = rng.normal(50, 10, size=(30, 30, 30)).astype(np.float32)
    mask = image > 45
    mean, std = foreground_mean_std(image, mask)
    assert isinstance(mean, np.float64)
    assert mean == pytest.approx(image[mask].astype(np.float64).mean(), rel=1e-6)
    assert std == pytest.approx(image[mask].astype(np.float64).std(), rel=1e-5)


def test_empty_mask_is_an_error():
    with pytest.raises(OptionError, match="mask is empty"):
        whiten(np.ones((2, 2, 2), np.float32), np.zeros((2, 2, 2), bool))


def test_whiten_equals_niftynet_reference_exactly():
    stages = np.load(need(REFERENCE / "stages.npz"))
    out = whiten(stages["stage2_histnorm"][..., 0, 0], stages["foreground_mask"][..., 0, 0])
    expected = stages["stage3_whitened"][..., 0, 0]
    assert np.array_equal(out, expected)
    fg = stages["foreground_mask"][..., 0, 0]
    assert abs(out[fg].astype(np.float64).mean()) < 1e-6
    assert out[fg].astype(np.float64).std() == pytest.approx(1.0, abs=1e-6)
