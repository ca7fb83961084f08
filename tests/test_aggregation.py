import numpy as np

from niftyport.inference.aggregation import GridAggregator, crop_window, cropped_location
from niftyport.inference.sampling import grid_locations


def test_crop_window_removes_border_on_every_side():
    w = np.arange(6 * 7 * 8).reshape(6, 7, 8)
    c = crop_window(w, (1, 2, 3))
    assert c.shape == (4, 3, 2)
    assert c[0, 0, 0] == w[1, 2, 3]


def test_stitching_identity_windows_reproduces_the_volume():
    rng = np.random.default_rng(0)
    shape = (40, 33, 47)
    volume = rng.integers(1, 1000, size=shape).astype(np.int32)
    border = (2, 3, 1)
    agg = GridAggregator(shape, border)
    for x0, y0, z0, x1, y1, z1 in grid_locations(shape, (16, 16, 24), border):
        agg.add(volume[x0:x1, y0:y1, z0:z1], (x0, y0, z0, x1, y1, z1))
    inner = tuple(slice(b, s - b) for s, b in zip(shape, border))
    assert np.array_equal(agg.volume[inner], volume[inner])
    # the frame no cropped window reaches stays 0
    assert agg.volume[:2].max() == 0 and agg.volume[:, :, -1].max() == 0


def test_last_written_window_wins_where_windows_overlap():
    # axis of 100 with window 64: starts 0, 36, 18 (the middle one written last)
    shape = (100, 8, 8)
    locs = grid_locations(shape, (64, 8, 8), (2, 0, 0))
    agg = GridAggregator(shape, (2, 0, 0))
    for i, loc in enumerate(locs):
        agg.add(np.full((64, 8, 8), i + 1), loc)
    line = agg.volume[:, 4, 4]
    # window 3 (start 18) covers 20..79 and was written last
    assert line[20:80].tolist() == [3] * 60
    assert line[2:20].tolist() == [1] * 18
    assert line[80:98].tolist() == [2] * 18
    assert line[[0, 1, 98, 99]].tolist() == [0, 0, 0, 0]


def test_cropped_location_matches_niftynet_reference_rows():
    row = np.array([0, 60, 0, 64, 124, 64])
    assert cropped_location(row, (2, 2, 2)).tolist() == [2, 62, 2, 62, 122, 62]
