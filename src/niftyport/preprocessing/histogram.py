"""Piecewise-linear histogram standardisation (Nyul et al. 2000), NiftyNet's variant.

NiftyNet (``niftynet/utilities/histogram_standardisation.py``,
``niftynet/layer/histogram_normalisation.py``):

1. the landmarks file holds one line per modality, ``Modality0 v1 ... v13``,
   read as float32: the 13 reference intensities (trained once, part of the
   model);
2. the image's own 13 landmarks are ``np.percentile`` of its foreground
   voxels at ``[c0, .1, .2, .25, .3, .4, .5, .6, .7, .75, .8, .9, c1]``
   (percent x 100), with the cutoff clamped to ``c0 <= .09``, ``c1 >= .91``
   (``.24``/``.76`` for ``norm_type='quartile'``);
3. a subset of landmarks (``percentile``: indices 0,1,2,4,5,6,7,8,10,11,12)
   defines linear pieces from image to reference intensities; each voxel
   picks its piece with ``np.digitize(v, inner_landmarks, right=False)``,
   the two end pieces extrapolate, a zero-width piece gets slope 0;
4. every voxel is mapped (masked-out ones too), the result stored as float32.

Departure from NiftyNet: when the modality is missing from the landmarks
file NiftyNet silently trains a new mapping from the images at hand and
rewrites the file; :func:`read_landmarks` stops with an error instead.

Arrays: ``image`` float32 ``(X, Y, Z)``, ``mask`` bool same shape,
voxel-index space; intensities in the image's own units in, reference units
(0-100) out.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError, OptionError

NORM_TYPES = ("percentile", "quartile", "median")

#: Landmarks used by each ``norm_type`` (indices into the 13 landmarks).
LANDMARK_INDICES: Mapping[str, tuple[int, ...]] = {
    "percentile": (0, 1, 2, 4, 5, 6, 7, 8, 10, 11, 12),
    "quartile": (0, 3, 6, 9, 12),
    "median": (0, 6, 12),
}

#: The 11 fixed inner percentiles (fractions); the cutoff gives the two ends.
INNER_PERCENTILES = (0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9)

#: NiftyNet's fallback when ``cutoff`` has fewer than two distinct values.
DEFAULT_CUTOFF = (0.01, 0.99)


def read_landmarks_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All modalities of a landmarks file: ``{name: float32 array (13,)}``.

    Lines of two characters or fewer, or with a single word, are skipped
    (as NiftyNet). Raises :class:`ConfigError` when the file is missing or a
    value is not a number.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"histogram_ref_file {str(path)!r}: no such file")
    mapping: dict[str, np.ndarray] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if len(line) <= 2:
                continue
            words = line.split()
            if len(words) < 2:
                continue
            try:
                values = np.float32(words[1:])
            except ValueError:
                raise ConfigError(f"histogram_ref_file {str(path)!r} line {lineno}: "
                                  f"not a list of numbers after {words[0]!r}: {line.strip()!r}") from None
            mapping[words[0]] = np.asarray(values, dtype=np.float32)
    return mapping


def read_landmarks(path: str | os.PathLike, modality: str = "Modality0") -> np.ndarray:
    """The 13 reference landmarks of ``modality``, float32 ``(13,)``.

    Raises :class:`ConfigError` naming the file and the modalities it has
    when ``modality`` is missing (NiftyNet would train a new mapping) or
    when it holds fewer than 13 values.
    """
    mapping = read_landmarks_file(path)
    if modality not in mapping:
        raise ConfigError(f"histogram_ref_file {str(path)!r} has no line for modality "
                          f"{modality!r} (it has: {', '.join(sorted(mapping)) or 'none'}); "
                          "NiftyNet would train a new mapping here, niftyport stops")
    values = mapping[modality]
    if values.size < 13:
        raise ConfigError(f"histogram_ref_file {str(path)!r}: {modality} has {values.size} "
                          "landmarks, 13 expected")
    return values


def standardise_cutoff(cutoff: Sequence[float], norm_type: str = "percentile") -> np.ndarray:
    """The two cutoff fractions actually used, float64 ``(2,)`` (NiftyNet's rules).

    Sorted, clipped to [0, 1], then ``c0 = min(c0, .09)``, ``c1 = max(c1, .91)``
    (quartile: ``.24``/``.76``). More than two values: their min and max;
    fewer than two distinct: ``(0.01, 0.99)`` unclamped (NiftyNet's fallback).

    >>> standardise_cutoff((0.001, 0.999)).tolist()
    [0.001, 0.999]
    >>> standardise_cutoff((0.95, 0.2)).tolist()
    [0.09, 0.95]
    """
    _check_norm_type(norm_type)
    cut = np.asarray(cutoff, dtype=np.float64)
    if cut.size > 2:
        cut = np.unique([np.min(cut), np.max(cut)])
    if cut.size < 2:
        return np.asarray(DEFAULT_CUTOFF, dtype=np.float64)
    low, high = sorted((float(cut[0]), float(cut[1])))
    low, high = max(0.0, low), min(1.0, high)
    if norm_type == "quartile":
        low, high = min(low, 0.24), max(high, 0.76)
    else:
        low, high = min(low, 0.09), max(high, 0.91)
    return np.array([low, high], dtype=np.float64)


def image_landmarks(image: np.ndarray, mask: np.ndarray, cutoff: Sequence[float]) -> np.ndarray:
    """The image's 13 landmarks: percentiles of the masked voxels, float64 ``(13,)``.

    ``cutoff``: the two end fractions, already standardised
    (:func:`standardise_cutoff`). ``np.percentile`` with linear interpolation.
    """
    fractions = np.array([cutoff[0], *INNER_PERCENTILES, cutoff[1]], dtype=np.float64)
    values = image[np.asarray(mask, dtype=bool)]
    if values.size == 0:
        raise OptionError("histogram standardisation: the foreground mask is empty")
    return np.percentile(values, 100 * fractions)


def _check_norm_type(norm_type: str) -> None:
    if norm_type not in NORM_TYPES:
        raise OptionError(f"norm_type {norm_type!r} must be one of {NORM_TYPES}")


def piecewise_linear_map(image: np.ndarray, image_marks: np.ndarray,
                         reference_marks: np.ndarray) -> np.ndarray:
    """Map intensities linearly between matching landmarks, float64 result.

    ``image_marks`` (float64) and ``reference_marks`` (float32, from the
    file): the selected landmarks, same length ``k``. Voxel ``v`` uses piece
    ``np.digitize(v, image_marks[1:-1])``; slopes are
    ``diff(reference) / diff(image)`` with zero-width pieces given slope 0;
    intercepts ``reference[:-1] - slope * image[:-1]``. Arithmetic dtypes
    follow NiftyNet (float32 reference differences, float64 slopes).

    >>> piecewise_linear_map(np.float32([0, 5, 10, 20]), np.array([0.0, 10.0, 20.0]),
    ...                      np.float32([0, 50, 100])).tolist()
    [0.0, 25.0, 50.0, 100.0]
    """
    ref = np.asarray(reference_marks)
    marks = np.asarray(image_marks)
    diff_ref = ref[1:] - ref[:-1]
    diff_img = marks[1:] - marks[:-1]
    diff_img[diff_img == 0] = np.inf
    slopes = np.zeros(len(marks) - 1)
    slopes[:] = diff_ref / diff_img
    intercepts = np.zeros(len(marks) - 1)
    intercepts[:] = ref[:-1] - slopes * marks[:-1]
    flat = image.reshape(-1)
    piece = np.digitize(flat, marks[1:-1], right=False)
    return (slopes[piece] * flat + intercepts[piece]).reshape(image.shape)


def standardise(image: np.ndarray, mask: np.ndarray, landmarks: np.ndarray, *,
                cutoff: Sequence[float], norm_type: str = "percentile") -> np.ndarray:
    """Histogram-standardise one volume onto the reference landmarks.

    ``image``: float32 ``(X, Y, Z)``; ``mask``: bool ``(X, Y, Z)`` (where
    the image landmarks are measured); ``landmarks``: float32 ``(13,)`` from
    :func:`read_landmarks`; ``cutoff``: the config's two fractions (clamped
    here). Returns float32 ``(X, Y, Z)`` with the memory layout (C or
    Fortran order) of ``image``; every voxel is mapped. An
    all-zero image is returned unchanged (NiftyNet treats it as a missing
    modality).
    """
    _check_norm_type(norm_type)
    image = np.asarray(image, dtype=np.float32)
    if image.shape != np.shape(mask):
        raise ValueError(f"image {image.shape} and mask {np.shape(mask)} differ in shape")
    if not np.any(image):
        return image.copy()
    landmarks = np.asarray(landmarks, dtype=np.float32)
    index = list(LANDMARK_INDICES[norm_type])
    if landmarks.size < 13:
        raise OptionError(f"landmarks: {landmarks.size} values, 13 expected")
    marks = image_landmarks(image, mask, standardise_cutoff(cutoff, norm_type))
    mapped = piecewise_linear_map(image, marks[index], landmarks[index])
    # NiftyNet writes the result into the input array: keep its memory layout,
    # which later decides the summation order of the whitening statistics
    out = np.empty_like(image)
    out[...] = mapped
    return out
