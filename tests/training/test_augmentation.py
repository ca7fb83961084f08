"""NiftyNet's flip, scaling and rotation layers: hand-computed arrays and the formulas of their source."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi

from niftyport.errors import TrainingError
from niftyport.training.augmentation import (
    Augmentation,
    Transform,
    antialiasing_sigma,
    apply_transform,
    draw_transform,
    rotate,
    rotation_matrix,
    scale,
)

VOLUME = np.arange(4 * 4 * 2, dtype=np.float32).reshape(4, 4, 2)


def test_flip_by_hand():
    out = apply_transform({"image": VOLUME}, {"image": 3}, Transform(flipped=(0, 2)))["image"]
    expected = np.array([[[VOLUME[3 - x, y, 1 - z] for z in range(2)] for y in range(4)] for x in range(4)])
    np.testing.assert_array_equal(out, expected)


def test_flip_draws_one_uniform_per_axis_and_keeps_the_listed_axes():
    aug = Augmentation(flip_axes=(0, 2))
    for seed in range(20):
        u = np.random.default_rng(seed).random(3)                  # NiftyNet: random(size=3) < 0.5
        expected = tuple(a for a in (0, 2) if u[a] < 0.5)
        assert draw_transform(aug, np.random.default_rng(seed)).flipped == expected


def test_negative_order_leaves_a_field_alone():
    out = apply_transform({"image": VOLUME, "weight": VOLUME}, {"image": 0, "weight": -1}, Transform(flipped=(1,)))
    np.testing.assert_array_equal(out["image"], VOLUME[:, ::-1])
    assert out["weight"] is VOLUME


def test_rotation_matrix_is_niftynets_product():
    a, b, c = 0.3, -0.2, 0.5
    rx = [[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]
    ry = [[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]]
    rz = [[1, 0, 0], [0, np.cos(c), -np.sin(c)], [0, np.sin(c), np.cos(c)]]
    np.testing.assert_allclose(rotation_matrix(a, b, c), np.array(rz) @ np.array(rx) @ np.array(ry), atol=1e-15)


def test_quarter_turn_about_half_the_shape_by_hand():
    # R = Rx(90 deg); output o reads input R^T (o - c) + c with c = 0.5 * shape = (2, 2, 1):
    # (o1, 4 - o0, o2) -- so o0 = 0 falls outside (0) and the rest is the input turned, shifted by one voxel
    out = rotate(VOLUME.copy(), rotation_matrix(np.pi / 2, 0, 0), 0)
    expected = np.zeros_like(VOLUME)
    for o0 in range(1, 4):
        for o1 in range(4):
            expected[o0, o1, :] = VOLUME[o1, 4 - o0, :]
    np.testing.assert_array_equal(out, expected)


def test_rotation_is_scipys_affine_map_with_niftynets_centre():
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(9, 8, 7)).astype(np.float32)
    matrix = rotation_matrix(0.2, -0.1, 0.3)
    c = 0.5 * np.array(volume.shape)
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in volume.shape), indexing="ij")).reshape(3, -1)
    source = matrix.T @ (grid - c[:, None]) + c[:, None]
    for order in (0, 1, 3):
        expected = ndi.map_coordinates(volume, source, order=order, mode="constant", cval=0.0).reshape(volume.shape)
        np.testing.assert_allclose(rotate(volume, matrix, order), expected, atol=1e-5)


def test_rotation_angles_are_drawn_in_niftynets_order():
    rng = np.random.default_rng(7)
    a = [rng.uniform(-10, 20) * np.pi / 180 for _ in range(3)]
    got = draw_transform(Augmentation(rotation_angle=(-10, 20)), np.random.default_rng(7)).matrix
    np.testing.assert_allclose(got, rotation_matrix(*a))
    # per-axis ranges: only the axes given draw; the others stay at 0
    b = np.random.default_rng(7).uniform(5, 6) * np.pi / 180
    got = draw_transform(Augmentation(rotation_angle_y=(5, 6)), np.random.default_rng(7)).matrix
    np.testing.assert_allclose(got, rotation_matrix(0.0, b, 0.0))


def test_scaling_of_a_ramp_by_hand():
    # scipy.ndimage.zoom (NiftyNet 0.6.0's call): output i samples input i * (n_in - 1) / (n_out - 1);
    # linear interpolation of a ramp gives that position back
    ramp = np.broadcast_to(np.arange(3, dtype=np.float64)[:, None, None], (3, 4, 4)).copy()
    out = scale(ramp, np.array([2.0, 1.0, 1.0]), 1, antialiasing=True)
    assert out.shape == (6, 4, 4)
    np.testing.assert_allclose(out[:, 0, 0], np.arange(6) * 2 / 5, atol=1e-12)


def test_antialiasing_only_when_every_axis_shrinks():
    rng = np.random.default_rng(1)
    volume = rng.normal(size=(10, 10, 10))
    mixed = np.array([0.8, 1.0, 0.9])
    np.testing.assert_array_equal(scale(volume, mixed, 1), ndi.zoom(volume, mixed, order=1))
    shrink = np.array([0.8, 0.7, 0.9])
    sigma = np.sqrt((1 / shrink ** 2 - 1) / (8 * np.log(2)))
    np.testing.assert_allclose(antialiasing_sigma(shrink), sigma)
    np.testing.assert_allclose(scale(volume, shrink, 1),
                               ndi.zoom(ndi.gaussian_filter(volume, sigma), shrink, order=1))
    np.testing.assert_array_equal(scale(volume, shrink, 1, antialiasing=False), ndi.zoom(volume, shrink, order=1))


def test_scaling_draw_isotropic_and_clipped():
    zoom = draw_transform(Augmentation(scaling_percentage=(-150, 10), isotropic_scaling=True),
                          np.random.default_rng(3)).zoom
    expected = (np.random.default_rng(3).uniform(-99.9, 10) + 100) / 100      # min clipped to -99.9
    np.testing.assert_allclose(zoom, np.repeat(expected, 3))
    zoom = draw_transform(Augmentation(scaling_percentage=(-10, 10)), np.random.default_rng(3)).zoom
    np.testing.assert_allclose(zoom, (np.random.default_rng(3).uniform(-10, 10, 3) + 100) / 100)
    with pytest.raises(TrainingError, match="min above max"):
        draw_transform(Augmentation(scaling_percentage=(10, -10)), np.random.default_rng(0))


def test_labels_are_transformed_as_float_and_truncated():
    label = np.zeros((6, 6, 6), np.int64)
    label[2:4, 2:4, 2:4] = 3
    zoom = np.array([0.8, 0.8, 0.8])
    out = apply_transform({"label": label}, {"label": 0}, Transform(zoom=zoom))["label"]
    smoothed = ndi.gaussian_filter(label.astype(np.float32), antialiasing_sigma(zoom))
    expected = np.trunc(ndi.zoom(smoothed, zoom, order=0)).astype(np.int64)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, expected)


def test_bad_ranges_are_refused():
    with pytest.raises(TrainingError, match=r"rotation_angle_x = \(5.0, 5.0\)"):
        draw_transform(Augmentation(rotation_angle_x=(5.0, 5.0)), np.random.default_rng(0))
