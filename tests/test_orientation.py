import itertools

import nibabel as nib
import numpy as np
import pytest

from niftyport.errors import ImageError, OptionError
from niftyport.preprocessing.orientation import (affine_axcodes, check_axcodes, orientation_transform, permute_like,
                                   reorient, reoriented_affine)


def all_axcodes():
    """The 48 orientations: 6 axis permutations x 8 sign choices."""
    names = (("L", "R"), ("P", "A"), ("I", "S"))
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((0, 1), repeat=3):
            yield tuple(names[p][s] for p, s in zip(perm, signs))


ALL = list(all_axcodes())


def test_there_are_48_distinct_orientations():
    assert len(set(ALL)) == 48


@pytest.mark.parametrize("codes", ALL)
def test_round_trip_is_identity_for_every_orientation(codes):
    data = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    there = reorient(data, "RAS", codes)
    assert np.array_equal(reorient(there, codes, "RAS"), data)


@pytest.mark.parametrize("codes", ALL)
def test_world_positions_are_kept_for_every_orientation(codes):
    # an affine in `codes` with distinct voxel sizes; the reoriented array with its
    # new affine must place every voxel value at the same world coordinate
    rng = np.random.default_rng(0)
    data = rng.integers(0, 1000, size=(3, 4, 5))
    affine = np.eye(4)
    affine[:3, :3] = 0.0
    for axis, (code, size) in enumerate(zip(codes, (1.5, 2.0, 3.0))):
        world = "LRPAIS".index(code) // 2
        affine[world, axis] = size if code in "RAS" else -size
    affine[:3, 3] = [10.0, -20.0, 5.0]
    assert affine_axcodes(affine) == codes
    ras = reorient(data, codes, "RAS")
    ras_affine = reoriented_affine(affine, data.shape, codes, "RAS")
    assert affine_axcodes(ras_affine) == ("R", "A", "S")
    for index in [(0, 0, 0), (2, 3, 4), (1, 2, 3)]:
        world = affine @ (*index, 1)
        ras_index = np.linalg.solve(ras_affine, world)[:3]
        assert np.allclose(ras_index, np.round(ras_index))
        assert ras[tuple(np.round(ras_index).astype(int))] == data[index]


def test_matches_nibabel_as_closest_canonical():
    rng = np.random.default_rng(1)
    data = rng.random((4, 5, 6)).astype(np.float32)
    affine = np.array([[0.0, 0.0, -2.0, 50.0], [-1.0, 0.0, 0.0, 10.0], [0.0, 3.0, 0.0, -7.0], [0, 0, 0, 1]])
    img = nib.Nifti1Image(data, affine)
    canonical = nib.as_closest_canonical(img)
    codes = affine_axcodes(affine)
    assert codes == ("P", "S", "L")
    assert np.array_equal(reorient(data, codes, "RAS"), canonical.get_fdata(dtype=np.float32))
    assert np.allclose(reoriented_affine(affine, data.shape, codes, "RAS"), canonical.affine)


def test_lps_to_ras_flips_first_two_axes():
    data = np.arange(24).reshape(2, 3, 4)
    assert np.array_equal(reorient(data, "LPS", "RAS"), data[::-1, ::-1, :])


def test_same_codes_return_the_input_itself():
    data = np.zeros((2, 2, 2))
    assert reorient(data, "RAS", ("R", "A", "S")) is data


def test_permute_like_follows_the_axes():
    # PIR -> RAS: axis 2 (R) becomes x, axis 0 (P) becomes y, axis 1 (I) becomes z
    assert permute_like((1.0, 2.0, 3.0), "PIR", "RAS") == (3.0, 1.0, 2.0)
    shape = (5, 6, 7)
    assert permute_like(shape, "PIR", "RAS") == reorient(np.zeros(shape), "PIR", "RAS").shape


def test_orientation_transform_rows():
    t = orientation_transform("LPS", "RAS")
    assert t.tolist() == [[0, -1], [1, -1], [2, 1]]


@pytest.mark.parametrize("codes", ["RAL", "RA", "XYZ", ("R", "A", "S", "L")])
def test_bad_axcodes_are_rejected(codes):
    with pytest.raises(OptionError, match="axcodes"):
        check_axcodes(codes)


def test_degenerate_affine_has_no_axcodes():
    affine = np.diag([1.0, 0.0, 1.0, 1.0])
    with pytest.raises(ImageError, match="scan.nii: affine has no orientation"):
        affine_axcodes(affine, name="scan.nii")
