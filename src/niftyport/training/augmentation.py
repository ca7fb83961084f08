"""NiftyNet 0.6.0's training augmentation, on whole volumes, with scipy.ndimage as NiftyNet calls it.

``SegmentationApplication`` (``niftynet/application/segmentation_application.py``)
appends, after volume padding and normalisation, to the *training* reader
only (never to the validation one), in this order:

1. :func:`flip` -- ``RandomFlipLayer`` (``layer/rand_flip.py``), when
   ``random_flipping_axes`` is not ``-1``: for each spatial axis ``a`` a draw
   ``u_a < 0.5``; axis ``a`` is flipped when drawn and listed;
2. :func:`scale` -- ``RandomSpatialScalingLayer`` (``layer/rand_spatial_scaling.py``),
   when ``scaling_percentage`` is set: zoom ``(100 + p) / 100`` per axis, ``p``
   uniform in ``[max(min, -99.9), max]`` (one ``p`` for every axis with
   ``isotropic_scaling``); ``scipy.ndimage.zoom`` of the whole volume (so
   its size changes), after a Gaussian filter of sigma
   ``sqrt((1 / zoom^2 - 1) / (8 ln 2))`` when ``antialiasing`` and every
   zoom is below 1;
3. :func:`rotate` -- ``RandomRotationLayer`` (``layer/rand_rotation.py``),
   when ``rotation_angle`` (three angles, each uniform in it) or
   ``rotation_angle_x/y/z`` (each axis its own range; an axis without one
   keeps 0) is set: :func:`rotation_matrix`, then
   ``scipy.ndimage.affine_transform(volume, R.T, c - R.T @ c)`` about
   ``c = 0.5 * shape`` (not the centre voxel ``(shape - 1) / 2``), zeros outside.

Each volume visit draws once (NiftyNet's reader deep-copies and
re-randomises its layers per read) and applies the same transform to every
field -- image, label, sampler and weight maps -- each with its input
section's ``interp_order`` as the spline order (NiftyNet's: e.g. 3 or 1 for
the image, 0, nearest, for a label; a negative order leaves that field out).
As NiftyNet's reader holds labels as float32, labels are transformed as
float32 (antialiasing smooths them too) and cut back to integers by
truncation, as ``tf.cast`` does in the loss.

Elastic deformation (``RandomElasticDeformationLayer``) is SimpleITK's
B-spline transform; it is not reproduced, and asking for it is an error.
``bias_field_range`` is not used by NiftyNet 0.6.0's segmentation
application at all.

Departure: draws come from the :class:`numpy.random.Generator` passed in,
not NumPy's global state.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi

from ..errors import TrainingError

__all__ = ["Augmentation", "Transform", "antialiasing_sigma", "apply_transform", "draw_transform", "flip",
           "rotate", "rotation_matrix", "scale"]


@dataclass(frozen=True)
class Augmentation:
    """The ``[TRAINING]`` augmentation keys NiftyNet 0.6.0's segmentation application reads (angles in degrees)."""

    flip_axes: tuple[int, ...] = (-1,)
    scaling_percentage: tuple[float, ...] = ()
    isotropic_scaling: bool = False
    antialiasing: bool = True
    rotation_angle: tuple[float, ...] = ()
    rotation_angle_x: tuple[float, ...] = ()
    rotation_angle_y: tuple[float, ...] = ()
    rotation_angle_z: tuple[float, ...] = ()

    @property
    def flips(self) -> bool:
        return tuple(self.flip_axes) != (-1,)

    @property
    def rotates(self) -> bool:
        return bool(self.rotation_angle or self.rotation_angle_x or self.rotation_angle_y or self.rotation_angle_z)

    @property
    def active(self) -> bool:
        return self.flips or bool(self.scaling_percentage) or self.rotates


@dataclass(frozen=True)
class Transform:
    """One visit's draw: ``flipped`` axes, ``zoom`` (3,) or None, rotation ``matrix`` (3, 3) or None."""

    flipped: tuple[int, ...] = ()
    zoom: np.ndarray | None = None
    matrix: np.ndarray | None = None


def rotation_matrix(angle_x: float, angle_y: float, angle_z: float) -> np.ndarray:
    """``R = Rz @ (Rx @ Ry)`` (radians), NiftyNet's names: ``Rx`` turns in the ``(0, 1)`` plane,
    ``Ry`` in ``(0, 2)`` (``[[c, 0, s], [0, 1, 0], [-s, 0, c]]``), ``Rz`` in ``(1, 2)``.

    >>> np.round(rotation_matrix(np.pi / 2, 0, 0)).astype(int).tolist()
    [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    """
    cx, sx, cy, sy, cz, sz = (np.cos(angle_x), np.sin(angle_x), np.cos(angle_y), np.sin(angle_y),
                              np.cos(angle_z), np.sin(angle_z))
    rx = np.array([[cx, -sx, 0.0], [sx, cx, 0.0], [0.0, 0.0, 1.0]])
    ry = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    rz = np.array([[1.0, 0.0, 0.0], [0.0, cz, -sz], [0.0, sz, cz]])
    return np.dot(rz, np.dot(rx, ry))


def _check_range(name: str, values: Sequence[float]) -> None:
    if len(values) < 2 or not values[0] < values[1]:
        raise TrainingError(f"[TRAINING] {name} = {tuple(values)}: needs (min, max) with min < max")


def draw_transform(aug: Augmentation, rng: np.random.Generator) -> Transform:
    """One visit's random transform, drawn in NiftyNet's layer order (flip, scaling, rotation)."""
    flipped: tuple[int, ...] = ()
    zoom = matrix = None
    if aug.flips:
        drawn = rng.random(3) < 0.5
        flipped = tuple(a for a in range(3) if drawn[a] and a in aug.flip_axes)
    if aug.scaling_percentage:
        low, high = aug.scaling_percentage[0], aug.scaling_percentage[1]
        if not low <= high:
            raise TrainingError(f"[TRAINING] scaling_percentage = {aug.scaling_percentage}: min above max")
        low = max(low, -99.9)
        if high < low:
            raise TrainingError(f"[TRAINING] scaling_percentage = {aug.scaling_percentage}: the largest zoom "
                                "must be positive (max above -99.9)")
        percent = np.repeat(rng.uniform(low, high), 3) if aug.isotropic_scaling else rng.uniform(low, high, 3)
        zoom = (percent + 100.0) / 100.0
    if aug.rotates:
        angles = [0.0, 0.0, 0.0]
        if aug.rotation_angle:
            _check_range("rotation_angle", aug.rotation_angle)
            angles = [rng.uniform(aug.rotation_angle[0], aug.rotation_angle[1]) * np.pi / 180.0 for _ in range(3)]
        else:
            for axis, name in enumerate(("rotation_angle_x", "rotation_angle_y", "rotation_angle_z")):
                values = getattr(aug, name)
                if values:
                    _check_range(name, values)
                    angles[axis] = rng.uniform(values[0], values[1]) * np.pi / 180.0
        matrix = rotation_matrix(*angles)
    return Transform(flipped, zoom, matrix)


def flip(volume: np.ndarray, axes: Sequence[int]) -> np.ndarray:
    """``volume`` ``(X, Y, Z)`` reversed along each of ``axes`` (a view)."""
    for axis in axes:
        volume = np.flip(volume, axis=axis)
    return volume


def antialiasing_sigma(zoom: np.ndarray) -> np.ndarray:
    """The Gaussian sigma (voxels) before a zoom below 1: ``sqrt((1 / zoom^2 - 1) / (8 ln 2))``
    (Cardoso et al., MICCAI 2015, as ``_get_sigma``).

    >>> round(float(antialiasing_sigma(np.array([0.5]))[0]), 6)
    0.735534
    """
    k = 1 / np.asarray(zoom, dtype=np.float64)
    return np.sqrt((k ** 2 - 1) * (2 * np.sqrt(2 * np.log(2))) ** (-2))


def scale(volume: np.ndarray, zoom: np.ndarray, order: int, *, antialiasing: bool = True) -> np.ndarray:
    """``scipy.ndimage.zoom(volume, zoom, order)`` of ``(X, Y, Z)``, Gaussian-smoothed first when every zoom < 1."""
    zoom = np.asarray(zoom, dtype=np.float64)
    if antialiasing and np.all(zoom < 1):
        volume = ndi.gaussian_filter(volume, antialiasing_sigma(zoom))
    return ndi.zoom(volume, zoom, order=order)


def rotate(volume: np.ndarray, matrix: np.ndarray, order: int) -> np.ndarray:
    """``volume`` ``(X, Y, Z)`` rotated by ``matrix`` about ``0.5 * shape``; output voxel ``o`` reads
    input ``R.T @ (o - c) + c`` (spline ``order``, zeros outside), the input's dtype.
    """
    if any(s <= 1 for s in volume.shape):
        raise TrainingError(f"random rotation needs a 3-D volume, not one of shape {volume.shape}")
    centre = 0.5 * np.asarray(volume.shape, dtype=np.int64)
    offset = centre - centre.dot(matrix)
    return ndi.affine_transform(volume, matrix.T, offset, order=order, output=volume.dtype)


def apply_transform(fields: Mapping[str, np.ndarray], orders: Mapping[str, int], transform: Transform, *,
                    antialiasing: bool = True) -> dict[str, np.ndarray]:
    """Every field ``(X, Y, Z)`` transformed (flip, then scaling, then rotation); a field of negative order unchanged.

    Returns new arrays (C-contiguous); integer fields are transformed as
    float32 and truncated back to their dtype.
    """
    out = {}
    for name, volume in fields.items():
        order = int(orders[name])
        if order < 0:
            out[name] = volume
            continue
        integer = np.issubdtype(volume.dtype, np.integer)
        work = volume.astype(np.float32) if integer else volume
        work = flip(work, transform.flipped)
        if transform.zoom is not None:
            work = scale(work, transform.zoom, order, antialiasing=antialiasing)
        if transform.matrix is not None:
            work = rotate(np.ascontiguousarray(work), transform.matrix, order)
        out[name] = np.ascontiguousarray(work.astype(volume.dtype) if integer else work)
    return out
