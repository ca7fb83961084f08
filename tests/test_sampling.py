import numpy as np
import pytest

from niftyport.errors import NiftyportError
from niftyport.inference.sampling import axis_starts, batch_emission_order, check_window, grid_locations

from conftest import REFERENCE, need


@pytest.mark.parametrize("length, window, step, expected", [
    (174, 64, 60, [0, 60, 110]),        # fits twice, then the last start
    (100, 64, 60, [0, 36, 18]),         # two starts: their rounded mean goes last
    (101, 64, 60, [0, 37, 18]),         # mean 18.5 rounds half to even
    (64, 64, 60, [0]),                  # exactly one window
    (65, 64, 60, [0, 1]),               # mean 0.5 rounds to 0, a duplicate, dropped
    (276, 128, 124, [0, 124, 148]),     # NiftyNet's 1 mm head example
    (180, 128, 124, [0, 52, 26]),
    (10, 4, 0, list(range(0, 7))),      # step 0 is raised to 1
])
def test_axis_starts_hand_computed(length, window, step, expected):
    assert axis_starts(length, window, step).tolist() == expected


def test_grid_order_is_y_outermost_then_x_then_z():
    locs = grid_locations((100, 64, 100), (64, 64, 64), (2, 2, 2))
    # x starts (0, 36, 18), y (0,), z (0, 36, 18): x varies slower than z
    assert locs[:, 0].tolist() == [0, 0, 0, 36, 36, 36, 18, 18, 18]
    assert locs[:, 2].tolist() == [0, 36, 18] * 3
    assert (locs[:, 3:] - locs[:, :3] == 64).all()
    locs = grid_locations((64, 100, 64), (64, 64, 64), (2, 2, 2))
    assert locs[:, 1].tolist() == [0, 36, 18]


def test_grid_locations_match_niftynet_reference():
    stages = np.load(need(REFERENCE / "stages.npz"))
    shape = stages["stage3_whitened"].shape[:3]
    expected = stages["grid_locations"][:, 1:]
    assert np.array_equal(grid_locations(shape, (64, 64, 64), (2, 2, 2)), expected)


def test_batch_padding_repeats_first_windows():
    assert batch_emission_order(36, 1).tolist() == list(range(36))
    assert batch_emission_order(36, 5).tolist() == list(range(36)) + [0, 1, 2, 3]
    assert batch_emission_order(4, 4).tolist() == [0, 1, 2, 3]


def test_window_that_does_not_fit_is_a_clear_error():
    with pytest.raises(NiftyportError, match=r"does not fit .* axis 2: use a window of at most 48"):
        grid_locations((80, 80, 50), (64, 64, 64), (2, 2, 2))


@pytest.mark.parametrize("window, border", [((60, 64, 64), (2, 2, 2)), ((64, 64, 64), (32, 2, 2)),
                                            ((64, 64, 64), (-1, 0, 0))])
def test_bad_window_or_border(window, border):
    with pytest.raises(NiftyportError):
        check_window(window, border)
