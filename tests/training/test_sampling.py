"""Window centres of NiftyNet's uniform, weighted and balanced samplers, against hand-computed probabilities."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from scipy import stats

from niftyport.errors import TrainingError
from niftyport.training.data import TrainingVolume
from niftyport.training.sampler import SamplerSettings, WindowSampler, prefetched
from niftyport.training.sampling import (
    balanced_centres,
    centres_to_corners,
    sampling_box,
    uniform_centres,
    weighted_centres,
    weighted_probabilities,
)


def chi_square_ok(counts: np.ndarray, probabilities: np.ndarray) -> bool:
    """Counts consistent with the probabilities: Pearson's statistic below its 99.9 % point (cells with p > 0),
    and no count where p == 0."""
    counts, probabilities = np.asarray(counts, float).ravel(), np.asarray(probabilities, float).ravel()
    if counts[probabilities == 0].sum() > 0:
        return False
    keep = probabilities > 0
    if keep.sum() == 1:
        return True
    expected = counts.sum() * probabilities[keep]
    statistic = ((counts[keep] - expected) ** 2 / expected).sum()
    return statistic < stats.chi2.ppf(0.999, keep.sum() - 1)


def test_chi_square_control():
    # chi_square_ok rejects a clearly wrong distribution and an impossible cell
    assert chi_square_ok([250, 250, 500], [0.25, 0.25, 0.5])
    assert not chi_square_ok([400, 100, 500], [0.25, 0.25, 0.5])
    assert not chi_square_ok([1, 499, 500], [0.0, 0.5, 0.5])


def test_uniform_corners_are_uniform():
    rng = np.random.default_rng(3)
    shape, window = (6, 5, 4), (3, 5, 2)
    centres = uniform_centres(6000, shape, window, rng)
    corners = centres_to_corners(centres, window)
    # centre = corner + floor(window / 2); corners 0..shape-window per axis, each equally likely
    np.testing.assert_array_equal(centres - corners, np.tile([1, 2, 1], (6000, 1)))
    assert set(corners[:, 1]) == {0}
    assert chi_square_ok(np.bincount(corners[:, 0], minlength=4), np.full(4, 0.25))
    assert chi_square_ok(np.bincount(corners[:, 2], minlength=3), np.full(3, 1 / 3))


def test_sampling_box_by_hand():
    # crop_sampling_map: [floor(w/2), s - w + int(w/2 + 0.6)); odd w keeps every corner, even w drops the last
    assert sampling_box((10, 10, 10), (3, 4, 10)) == (slice(1, 9), slice(2, 8), slice(5, 6))
    assert sampling_box((7, 8, 9), (1, 8, 2)) == (slice(0, 7), slice(4, 5), slice(1, 8))


# a map whose sorted cumulative shares are known: values 0..4 along x, window 1 -> every voxel a centre
RAMP = np.arange(5, dtype=np.float32).reshape(5, 1, 1)


@pytest.mark.parametrize("n, s, expected", [
    # shares 0, .1, .2, .3, .4; cumulative 0, .1, .3, .6, 1; draw s of n: threshold uniform on (1 - (s+1)/n, 1 - s/n]
    (1, 0, [0, 0.1, 0.2, 0.3, 0.4]),         # (0, 1]: the shares themselves
    (2, 0, [0, 0, 0, 0.2, 0.8]),             # (1/2, 1]: (.3, .6] covers .1 of its .5, (.6, 1] .4
    (2, 1, [0, 0.2, 0.4, 0.4, 0]),           # (0, 1/2]: (0, .1], (.1, .3], (.3, .5]
    (4, 3, [0, 0.4, 0.6, 0, 0]),             # (0, 1/4]: (0, .1], (.1, .25]
])
def test_weighted_probabilities_by_hand(n, s, expected):
    p = weighted_probabilities(RAMP, (1, 1, 1), n, s)
    np.testing.assert_allclose(p.ravel(), expected, atol=1e-6)  # float32 shares, as NiftyNet's


@pytest.mark.parametrize("values, expected", [
    ([1.0, 1.0, 2.0], [0.25, 0.25, 0.5]),    # a positive minimum is kept (0.6.0 shifts only negative maps)
    ([-1.0, 0.0, 1.0], [0.0, 1 / 3, 2 / 3]),  # shifted to 0, 1, 2
])
def test_weighted_shift_only_for_negative_maps(values, expected):
    p = weighted_probabilities(np.array(values, np.float32).reshape(3, 1, 1), (1, 1, 1), 1, 0)
    np.testing.assert_allclose(p.ravel(), expected, atol=1e-6)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_weighted_centres_follow_the_probabilities(n):
    rng = np.random.default_rng(11)
    draws = np.stack([weighted_centres(n, RAMP.shape, (1, 1, 1), RAMP, rng)[:, 0] for _ in range(3000)])
    for s in range(n):
        expected = weighted_probabilities(RAMP, (1, 1, 1), n, s).ravel()
        assert chi_square_ok(np.bincount(draws[:, s], minlength=5), expected), (n, s)
    # over the n draws: proportional to the map
    assert chi_square_ok(np.bincount(draws.ravel(), minlength=5), RAMP.ravel() / RAMP.sum())


def test_weighted_centres_stay_in_the_box_and_follow_a_3d_map():
    rng = np.random.default_rng(5)
    sampler_map = np.zeros((6, 7, 5), np.float32)
    sampler_map[1, 2, 2], sampler_map[4, 4, 3], sampler_map[0, 0, 0] = 1.0, 3.0, 100.0  # (0,0,0) outside the box
    window = (3, 3, 3)
    centres = np.stack([weighted_centres(1, sampler_map.shape, window, sampler_map, rng)[0] for _ in range(2000)])
    # only the two voxels inside the box carry weight: 1/4 and 3/4
    found, counts = np.unique(centres, axis=0, return_counts=True)
    np.testing.assert_array_equal(found, [[1, 2, 2], [4, 4, 3]])
    assert chi_square_ok(counts, [0.25, 0.75])
    corners = centres_to_corners(centres, window)
    assert np.all(corners >= 0) and np.all(corners + window <= sampler_map.shape)


def test_zero_weighted_map_is_uniform_over_the_box():
    rng = np.random.default_rng(0)
    centres = np.concatenate([weighted_centres(1, (5, 4, 3), (3, 2, 1), np.zeros((5, 4, 3)), rng)
                              for _ in range(3000)])
    # box x [1, 4), y [1, 3) (even window: the last corner dropped), z [0, 3)
    flat = np.ravel_multi_index((centres[:, 0] - 1, centres[:, 1] - 1, centres[:, 2]), (3, 2, 3))
    assert chi_square_ok(np.bincount(flat, minlength=18), np.full(18, 1 / 18))


def test_balanced_centres_make_each_class_equally_likely():
    rng = np.random.default_rng(2)
    labels = np.zeros((4, 3, 1), np.int64)
    labels[0, 0, 0] = 1                      # one voxel of class 1
    labels[3, :, 0] = 2                      # three of class 2, eight of class 0
    draws = balanced_centres(9000, labels.shape, (1, 1, 1), labels, rng)
    chosen = labels[tuple(draws.T)]
    assert chi_square_ok(np.bincount(chosen, minlength=3), np.full(3, 1 / 3))
    # within a class uniform: p(v) = 1 / (3 * count of v's class)
    counts = np.bincount(np.ravel_multi_index(tuple(draws.T), labels.shape), minlength=12)
    per_voxel = 1.0 / (3 * np.bincount(labels.ravel())[labels.ravel()])
    assert chi_square_ok(counts, per_voxel)
    # NiftyNet groups the centres by class, ascending
    assert np.all(np.diff(chosen) >= 0)


def test_sampler_needs_a_map():
    volume = TrainingVolume("a", np.zeros((4, 4, 4), np.float32), np.zeros((4, 4, 4), np.int64))
    sampler = WindowSampler([volume], SamplerSettings(window=(2, 2, 2), method="weighted"))
    with pytest.raises(TrainingError, match="sampler map"):
        sampler.batch(0)


def coordinate_volume(shape, subject="s"):
    """image[x, y, z] = 10000 + 100 x + 10 y + z (the label the same values): a window reveals its corner."""
    x, y, z = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    code = 10000 + 100 * x + 10 * y + z
    return TrainingVolume(subject, code.astype(np.float32), code.astype(np.int64))


def test_windows_are_crops_and_fields_stay_aligned():
    volumes = [coordinate_volume((9, 8, 7), "a"), coordinate_volume((6, 6, 6), "b")]
    settings = SamplerSettings(window=(4, 3, 2), batch_size=3, sample_per_volume=2, seed=4)
    sampler = WindowSampler(volumes, settings)
    for i in range(6):
        batch = sampler.batch(i)
        assert batch.image.shape == (3, 1, 4, 3, 2) and batch.label.dtype == np.int64
        np.testing.assert_array_equal(batch.image, batch.label)
        for window in batch.image[:, 0]:
            corner = np.array([int(window[0, 0, 0]) // 100 % 100, int(window[0, 0, 0]) // 10 % 10,
                               int(window[0, 0, 0]) % 10])
            expected = 10000 + (corner[0] + np.arange(4))[:, None, None] * 100 + \
                (corner[1] + np.arange(3))[None, :, None] * 10 + (corner[2] + np.arange(2))[None, None, :]
            np.testing.assert_array_equal(window, expected)


def test_visits_cover_every_volume_each_round():
    volumes = [coordinate_volume((3, 3, 3), str(k)) for k in range(5)]
    sampler = WindowSampler(volumes, SamplerSettings(window=(3, 3, 3), seed=9))
    for r in range(3):
        assert sorted(sampler.volume_of_visit(5 * r + k) for k in range(5)) == list(range(5))


def test_batches_depend_on_seed_and_index_only():
    volumes = [coordinate_volume((9, 8, 7), "a"), coordinate_volume((6, 6, 6), "b")]
    settings = SamplerSettings(window=(4, 3, 2), batch_size=2, sample_per_volume=3, seed=1)
    straight = [b.image for _, b in zip(range(7), WindowSampler(volumes, settings).batches())]
    ahead = [b.image for _, b in zip(range(7), WindowSampler(volumes, settings).batches(prefetch=3))]
    resumed = [b.image for _, b in zip(range(3), WindowSampler(volumes, settings).batches(4, prefetch=2))]
    for a, b in zip(straight, ahead):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(straight[4:], resumed):
        np.testing.assert_array_equal(a, b)
    other = WindowSampler(volumes, SamplerSettings(window=(4, 3, 2), batch_size=2, sample_per_volume=3, seed=2))
    assert any(not np.array_equal(a, other.batch(i).image) for i, a in enumerate(straight))


def test_prefetch_runs_ahead_and_stops():
    made = []

    def make(i):
        made.append(i)
        return i

    stream = prefetched(make, 10, 3)
    assert next(stream) == 10
    deadline = time.monotonic() + 5
    while len(made) < 5 and time.monotonic() < deadline:   # 11, 12, 13 queued, 14 waiting to be queued
        time.sleep(0.01)
    assert made[:5] == [10, 11, 12, 13, 14]
    assert [next(stream) for _ in range(3)] == [11, 12, 13]
    stream.close()
    assert not any(t.name == "niftyport-sampler" and t.is_alive() for t in threading.enumerate())


def test_prefetch_passes_errors_on():
    def make(i):
        if i == 2:
            raise TrainingError("bad volume")
        return i

    stream = prefetched(make, 0, 2)
    assert [next(stream), next(stream)] == [0, 1]
    with pytest.raises(TrainingError, match="bad volume"):
        next(stream)


def test_window_batches_is_the_plain_uniform_sampler():
    from niftyport.training.data import window_batches

    volumes = [coordinate_volume((9, 8, 7), "a"), coordinate_volume((6, 6, 6), "b")]
    pairs = window_batches(volumes, (4, 3, 2), batch_size=2, sample_per_volume=3, seed=6)
    sampler = WindowSampler(volumes, SamplerSettings(window=(4, 3, 2), batch_size=2, sample_per_volume=3, seed=6))
    for i in range(4):
        image, label = next(pairs)
        assert image.dtype == np.float32 and label.dtype == np.int64 and image.shape == (2, 1, 4, 3, 2)
        np.testing.assert_array_equal(image, sampler.batch(i).image)
