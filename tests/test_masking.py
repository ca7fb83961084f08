import numpy as np
import pytest
import scipy.ndimage

from conftest import DATA, REFERENCE, need
from niftyport.config import default_config
from niftyport.errors import ImageError, OptionError
from niftyport.preprocessing.masking import foreground_mask, fuse_masks, otsu_threshold, threshold_mask
from niftyport.preprocessing.padding import pad
from niftyport.preprocessing import load_and_resample


def test_otsu_hand_computed_with_niftynet_quirk():
    # hist [4, 2, 1, 3] over centres [1.25, 3.75, 6.25, 8.75]. NiftyNet's running sums start
    # with the *count* of the end bins (4 and 3), giving targets 77.0, 3.8, 49.5 -> bin 0.
    # (Textbook Otsu would pick 3.75.)
    data = np.float32([0, 0, 0, 0, 4, 4, 6, 10, 10, 10])
    assert otsu_threshold(data, nbins=4) == 1.25


def _otsu_loop(values, nbins=256):
    """Independent transcription of the algorithm, one bin at a time."""
    hist, edges = np.histogram(values, bins=nbins)
    centres = edges[:-1] + (edges[1] - edges[0]) / 2
    best, thr = 0.0, centres[0]
    for i in range(nbins - 1):
        w_low = hist[: i + 1].sum()
        w_high = hist[i + 1:].sum()
        s_low = hist[0] + sum(float(hist[k]) * float(centres[k]) for k in range(1, i + 1))
        s_high = hist[-1] + sum(float(hist[k]) * float(centres[k]) for k in range(i + 1, nbins - 1))
        if w_low == 0 or w_high == 0:
            continue
        target = w_low * w_high * (s_low / w_low - s_high / w_high) ** 2
        if target > best:
            best, thr = target, centres[i]
    return float(thr)


def test_otsu_agrees_with_a_bin_by_bin_loop():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(20, 5, 3000), rng.normal(100, 15, 2000)]).astype(np.float32)
    assert otsu_threshold(values) == pytest.approx(_otsu_loop(values), abs=0)


def test_dilation_twice_with_the_6_connected_cross():
    img = np.zeros((9, 9, 9), np.float32)
    img[4, 4, 4] = 5.0
    mask = foreground_mask(img, "threshold_plus")
    # voxels within city-block distance 2 of the centre: 1 + 6 + 18 = 25
    assert mask.sum() == 25
    assert mask[4, 4, 6] and mask[4, 5, 5] and not mask[4, 5, 6] and not mask[5, 5, 5]


def test_holes_are_filled():
    img = np.zeros((15, 15, 15), np.float32)
    img[2:13, 2:13, 2:13] = 1.0
    img[4:11, 4:11, 4:11] = 0.0  # a hollow cube, too thick for the dilation to close
    raw = threshold_mask(img, "threshold_plus")
    assert not scipy.ndimage.binary_dilation(raw, iterations=2)[7, 7, 7]
    assert foreground_mask(img, "threshold_plus")[7, 7, 7]


@pytest.mark.parametrize("kind,expected", [
    ("threshold_plus", [False, False, True, True]),
    ("threshold_minus", [True, False, False, False]),
    ("mean_plus", [False, False, False, True]),  # mean 2.0
])
def test_thresholds(kind, expected):
    img = np.float32([-1.0, 0.0, 1.0, 8.0]).reshape(4, 1, 1)
    assert threshold_mask(img, kind).ravel().tolist() == expected


def test_otsu_on_all_zero_image_falls_back_to_threshold():
    img = np.zeros((3, 3, 3), np.float32)
    assert not threshold_mask(img, "otsu_plus").any()


def test_empty_foreground_is_an_error():
    with pytest.raises(ImageError, match="no foreground voxel with foreground_type='threshold_plus'"):
        foreground_mask(np.full((4, 4, 4), -3.0, np.float32), "threshold_plus")


def test_unknown_type_names_the_parameter():
    with pytest.raises(OptionError, match="foreground_type 'mean'"):
        foreground_mask(np.ones((3, 3, 3), np.float32), "mean")


def test_fusion():
    a = np.array([True, True, False, False])
    b = np.array([True, False, True, False])
    assert fuse_masks([a, b], "and")[1].tolist() == [True, False, False, False]
    assert fuse_masks([a, b], "or")[0].tolist() == [True, True, True, False]
    multi = fuse_masks([a, b], "multi")
    assert multi[0].tolist() == a.tolist() and multi[1].tolist() == b.tolist()
    with pytest.raises(OptionError, match="multimod_foreground_type"):
        fuse_masks([a], "xor")


def test_mean_plus_mask_equals_niftynet_reference():
    stages = np.load(need(REFERENCE / "stages.npz"))
    padded = stages["stage1_padded"][..., 0, 0]
    expected = stages["foreground_mask"][..., 0, 0]
    assert np.array_equal(foreground_mask(padded, "mean_plus"), expected)



@pytest.mark.parametrize("kind,count", [
    ("otsu_plus", 393411), ("otsu_minus", 457571), ("threshold_plus", 599672),
    ("threshold_minus", 116682), ("mean_plus", 414268),
])
def test_real_scan_masks_match_niftynet_counts(kind, count):
    # foreground sizes NiftyNet's BinaryMaskingLayer gave on this padded scan (its Otsu threshold: 5505.826)
    padded = pad(load_and_resample(need(DATA / "real_t1_nipy_tiny_2mm_crop.nii.gz"), default_config()).data,
                 (10, 10, 10))
    assert padded.shape == (86, 102, 70)
    if kind.startswith("otsu"):
        assert otsu_threshold(padded) == np.float32(5505.826171875)
    assert int(foreground_mask(padded, kind).sum()) == count
