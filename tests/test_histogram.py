import numpy as np
import pytest

from conftest import LANDMARKS, REFERENCE, need
from niftyport.config import PACKAGED_LANDMARKS
from niftyport.errors import ConfigError
from niftyport.preprocessing.histogram import (image_landmarks, piecewise_linear_map, read_landmarks, read_landmarks_file,
                                 standardise, standardise_cutoff)


def test_packaged_landmarks_are_the_model_zoo_values():
    values = read_landmarks(PACKAGED_LANDMARKS, "Modality0")
    assert values.dtype == np.float32 and values.shape == (13,)
    assert values[0] == np.float32(4.4408920985e-16)
    assert values[6] == np.float32(29.9862059045)
    assert values[12] == np.float32(100.0)


def test_packaged_copy_equals_the_model_zoo_file():
    assert np.array_equal(read_landmarks(PACKAGED_LANDMARKS), read_landmarks(need(LANDMARKS)))


def test_missing_modality_stops_with_the_available_ones(tmp_path):
    path = tmp_path / "hist.txt"
    path.write_text("T1 0 1 2 3 4 5 6 7 8 9 10 11 12\nFLAIR 0 1 2 3 4 5 6 7 8 9 10 11 12\n")
    assert sorted(read_landmarks_file(path)) == ["FLAIR", "T1"]
    with pytest.raises(ConfigError, match=r"no line for modality 'Modality0' \(it has: FLAIR, T1\)"):
        read_landmarks(path, "Modality0")


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        read_landmarks(tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("Modality0 1 2 three\n")
    with pytest.raises(ConfigError, match="line 1"):
        read_landmarks(bad)
    short = tmp_path / "short.txt"
    short.write_text("\n\nModality0 1 2 3\n")
    with pytest.raises(ConfigError, match="3 landmarks, 13 expected"):
        read_landmarks(short)


@pytest.mark.parametrize("cutoff,kind,expected", [
    ((0.001, 0.999), "percentile", [0.001, 0.999]),
    ((0.2, 0.8), "percentile", [0.09, 0.91]),
    ((0.2, 0.8), "quartile", [0.2, 0.8]),
    ((0.3, 0.7), "quartile", [0.24, 0.76]),
    ((0.95, -0.5), "median", [0.0, 0.95]),
    ((0.5,), "percentile", [0.01, 0.99]),
    ((0.05, 0.5, 0.97), "percentile", [0.05, 0.97]),
])
def test_cutoff_rules(cutoff, kind, expected):
    assert standardise_cutoff(cutoff, kind).tolist() == pytest.approx(expected, abs=0)


def test_piecewise_map_extrapolates_and_flattens_zero_width_pieces():
    image = np.float32([-10, 0, 5, 10, 10, 15, 30])
    marks = np.array([0.0, 10.0, 10.0, 20.0])  # the middle piece has zero width
    ref = np.float32([0, 50, 60, 100])
    out = piecewise_linear_map(image, marks, ref)
    # inner marks [10, 10]: v < 10 -> piece 0 (slope 5), v >= 10 -> piece 2 (slope 4, through (10, 60))
    assert out.tolist() == [-50.0, 0.0, 25.0, 60.0, 60.0, 80.0, 140.0]


def test_image_landmarks_are_percentiles_of_masked_voxels():
    image = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    mask = image >= 500
    marks = image_landmarks(image, mask, (0.0, 1.0))
    assert marks[0] == 500 and marks[-1] == 999
    assert marks[6] == pytest.approx(749.5)  # median of 500..999


def test_every_voxel_is_mapped_and_dtype_is_float32():
    rng = np.random.default_rng(0)
    image = rng.gamma(2.0, 20.0, size=(20, 20, 20)).astype(np.float32)
    mask = image > 30
    out = standardise(image, mask, np.linspace(0, 100, 13, dtype=np.float32), cutoff=(0.01, 0.99))
    assert out.dtype == np.float32
    outside = ~mask
    assert not np.allclose(out[outside], image[outside])
    # the mapping is monotonic
    order = np.argsort(image, axis=None)
    assert np.all(np.diff(out.ravel()[order]) >= 0)


def test_all_zero_image_is_left_alone():
    image = np.zeros((3, 3, 3), np.float32)
    out = standardise(image, np.ones_like(image, bool), np.arange(13, dtype=np.float32), cutoff=(0.01, 0.99))
    assert np.array_equal(out, image)


def test_memory_layout_of_the_input_is_kept():
    image = np.asfortranarray(np.arange(27, dtype=np.float32).reshape(3, 3, 3))
    out = standardise(image, np.ones_like(image, bool), np.arange(13, dtype=np.float32), cutoff=(0.01, 0.99))
    assert out.flags.f_contiguous


def test_standardise_equals_niftynet_reference_exactly():
    stages = np.load(need(REFERENCE / "stages.npz"))
    padded = stages["stage1_padded"][..., 0, 0]
    mask = stages["foreground_mask"][..., 0, 0]
    landmarks = read_landmarks(PACKAGED_LANDMARKS)
    out = standardise(padded, mask, landmarks, cutoff=(0.001, 0.999), norm_type="percentile")
    assert np.array_equal(out, stages["stage2_histnorm"][..., 0, 0])
