import itertools

import numpy as np
import pytest

from niftyport.errors import NiftyportError
from niftyport.inference.tiling import (Box, ConvStep, grid_owner_map, input_box, owned_regions,
                              parse_memory, plan_tiles, region_values, region_work, remaining_radii,
                              split_axis, split_box, tiles_of_size)

# A toy network: radius 1, then 2, then a 1x1x1 layer (FLOPs per output voxel 10, 100, 1000;
# channels 4, 8, 2).
TOY = (ConvStep(1, 10, 4), ConvStep(2, 100, 8), ConvStep(0, 1000, 2))


def coverage(tiles, shape):
    count = np.zeros(shape, dtype=np.int32)
    for t in tiles:
        count[t.slices()] += 1
    return count


def reached(tile, domain_shape, reach):
    """Voxels of the domain within `reach` (Chebyshev distance) of the tile, as a mask."""
    grids = np.meshgrid(*[np.arange(n) for n in domain_shape], indexing="ij")
    inside = np.ones(domain_shape, dtype=bool)
    for g, lo, hi in zip(grids, tile.lo, tile.hi):
        inside &= (g >= lo - reach) & (g < hi + reach)
    return inside


def brute_force_values(tile, domain_shape, steps):
    """The largest activation (channels x voxels) a convolution of the tile reads."""
    return max(s.channels * int(reached(tile, domain_shape, sum(t.radius for t in steps[k:])).sum())
               for k, s in enumerate(steps))


def brute_force_work(tiles, domain_shape, steps):
    """Work counted voxel by voxel: a convolution with `reach` voxels still to come runs on
    every voxel of the domain within `reach` (Chebyshev distance) of the tile."""
    return sum(step.flops * int(reached(t, domain_shape, sum(s.radius for s in steps[k:])).sum())
               for t in tiles for k, step in enumerate(steps))


def test_box_grow_is_cut_at_the_domain():
    domain = Box((0, 0, 0), (20, 30, 40))
    grown = Box((2, 10, 30), (5, 12, 39)).grow(4, domain)
    assert grown == Box((0, 6, 26), (9, 16, 40))
    assert grown.shape == (9, 10, 14) and grown.size == 9 * 10 * 14
    assert Box((3, 4, 5), (6, 8, 10)).slices((1, 1, 1)) == (slice(2, 5), slice(3, 7), slice(4, 9))


def test_remaining_radii_and_input_box():
    assert remaining_radii(TOY) == [3, 2, 0]
    domain = Box.of_shape((10, 10, 10))
    assert input_box(Box((1, 5, 4), (2, 6, 9)), domain, TOY) == Box((0, 2, 1), (5, 9, 10))


def test_region_work_by_hand():
    # one axis of interest: region x in [4, 6) of a domain [0, 10); y, z span the domain (2 x 3)
    domain = Box.of_shape((10, 2, 3))
    region = Box((4, 0, 0), (6, 2, 3))
    # layer 1 runs on x in [1, 9) (8), layer 2 on [2, 8) (6), layer 3 on [4, 6) (2)
    expected = 6 * (10 * 8 + 100 * 6 + 1000 * 2)
    assert region_work(region, domain, TOY) == expected == brute_force_work([region], (10, 2, 3), TOY)
    # activations read: 4 channels x (8 x 2 x 3), 8 x (6 x 2 x 3), 2 x (2 x 2 x 3)
    assert region_values(region, domain, TOY) == 8 * 36 == brute_force_values(region, (10, 2, 3), TOY)


@pytest.mark.parametrize("n, parts", [(10, 3), (7, 7), (100, 6), (5, 1)])
def test_split_axis_covers_in_near_equal_pieces(n, parts):
    pieces = split_axis(3, 3 + n, parts)
    assert pieces[0][0] == 3 and pieces[-1][1] == 3 + n
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))
    sizes = [b - a for a, b in pieces]
    assert len(sizes) == parts and max(sizes) - min(sizes) <= 1


def test_tiles_of_size_cover_once_including_tiles_that_do_not_divide():
    region = Box.of_shape((23, 10, 17))
    tiles = tiles_of_size(region, (8, 10, 5))
    assert len(tiles) == 3 * 1 * 4
    assert sorted({t.shape for t in tiles}) == [(7, 10, 2), (7, 10, 5), (8, 10, 2), (8, 10, 5)]
    assert (coverage(tiles, region.shape) == 1).all()
    assert (coverage(split_box(region, (3, 2, 5)), region.shape) == 1).all()


def test_plan_without_memory_pressure_is_one_tile():
    domain = Box.of_shape((20, 16, 12))
    plan = plan_tiles(domain, domain, TOY, max_values=10**9)
    assert plan.splits == (1, 1, 1) and plan.tiles == (domain,)
    assert plan.work == brute_force_work([domain], domain.shape, TOY)


def test_plan_beats_naive_tilings_within_the_budget():
    domain = Box.of_shape((30, 24, 18))
    budget = 8 * 30 * 24 * 18 // 3

    def fits(tiles):
        return all(brute_force_values(t, domain.shape, TOY) <= budget for t in tiles)

    plan = plan_tiles(domain, domain, TOY, max_values=budget)
    assert (coverage(plan.tiles, domain.shape) == 1).all()
    assert fits(plan.tiles) and plan.max_values <= budget
    planned = brute_force_work(plan.tiles, domain.shape, TOY)
    assert planned == plan.work
    # naive choices that fit the same budget: equal cubes, or slabs along the longest axis
    naive = []
    for side in range(4, 31):
        tiles = tiles_of_size(domain, (side, side, side))
        if fits(tiles):
            naive.append(brute_force_work(tiles, domain.shape, TOY))
    slabs = min(n for n in range(1, 31)
                if fits(split_box(domain, (n, 1, 1))))
    naive.append(brute_force_work(split_box(domain, (slabs, 1, 1)), domain.shape, TOY))
    assert planned <= min(naive)
    # and no even tiling that fits does better
    for splits in itertools.product(range(1, 5), repeat=3):
        tiles = split_box(domain, splits)
        if fits(tiles):
            assert planned <= brute_force_work(tiles, domain.shape, TOY)


def test_plan_that_cannot_fit_says_so():
    domain = Box.of_shape((30, 30, 30))
    with pytest.raises(NiftyportError, match="max_memory"):
        plan_tiles(domain, domain, TOY, max_values=10)


def test_owner_map_and_owned_regions_by_hand():
    # one axis of length 10, windows of 6, border 1: starts [0, 4, 2] (NiftyNet's grid);
    # cropped outputs x in [1, 5), [5, 9), [3, 7), written in that order
    locations = np.array([[0, 0, 0, 6, 4, 4], [4, 0, 0, 10, 4, 4], [2, 0, 0, 8, 4, 4]])
    owner = grid_owner_map((10, 4, 4), locations, np.array([0, 1, 2]), (1, 0, 0))
    assert owner[:, 0, 0].tolist() == [-1, 0, 0, 2, 2, 2, 2, 1, 1, -1]
    assert owned_regions(owner, locations, (1, 0, 0)) == [
        (0, Box((1, 0, 0), (3, 4, 4))), (1, Box((7, 0, 0), (9, 4, 4))), (2, Box((3, 0, 0), (7, 4, 4)))]
    # a repeat of window 0 written last (NiftyNet's batch filling) takes [1, 5) back
    owner = grid_owner_map((10, 4, 4), locations, np.array([0, 1, 2, 0]), (1, 0, 0))
    assert owner[:, 0, 0].tolist() == [-1, 0, 0, 0, 0, 2, 2, 1, 1, -1]
    assert owned_regions(owner, locations, (1, 0, 0))[2] == (2, Box((5, 0, 0), (7, 4, 4)))


def test_window_that_keeps_nothing_is_left_out():
    locations = np.array([[0, 0, 0, 4, 4, 4], [0, 0, 0, 4, 4, 4]])
    owner = grid_owner_map((4, 4, 4), locations, np.array([0, 1]), (0, 0, 0))
    assert [i for i, _ in owned_regions(owner, locations, (0, 0, 0))] == [1]


@pytest.mark.parametrize("text, expected", [
    ("8G", 8 * 2**30), ("512M", 512 * 2**20), ("1.5GiB", 3 * 2**29), ("64 kb", 65536),
    ("4096", 4096), (4096, 4096), ("2t", 2 * 2**40)])
def test_parse_memory(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["", "8Q", "lots", "-1G", "0", "1.2.3G", True])
def test_parse_memory_rejects(text):
    with pytest.raises(NiftyportError, match="max-memory"):
        parse_memory(text)
