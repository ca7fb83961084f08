"""Foreground masks used by intensity normalisation (NiftyNet's ``BinaryMaskingLayer``).

NiftyNet (``niftynet/layer/binary_masking.py``, ``niftynet/utilities/util_common.py``)
thresholds one 3-D volume, then grows the mask with
``scipy.ndimage.binary_dilation(mask, iterations=2)`` and closes it with
``scipy.ndimage.binary_fill_holes``, both with scipy's default structuring
element (6-connected cross). Threshold per ``foreground_type``:

==================  ==========================================================
``mean_plus``       ``image > mean(image)`` (mean over every voxel, float32)
``otsu_plus``       ``image > otsu`` (256-bin Otsu; ``threshold`` if all zero)
``otsu_minus``      ``image < otsu``
``threshold_plus``  ``image > threshold`` (NiftyNet passes 0.0)
``threshold_minus`` ``image < threshold``
==================  ==========================================================

In the pipeline the mask is computed once, on the *padded* raw image, and
reused by histogram standardisation and whitening.

Arrays: ``image`` float32 ``(X, Y, Z)`` voxel-index space; masks bool, same shape.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.ndimage

from ..errors import ImageError, OptionError

FOREGROUND_TYPES = ("otsu_plus", "otsu_minus", "threshold_plus", "threshold_minus", "mean_plus")
MULTIMOD_FUSIONS = ("and", "or", "multi")


def otsu_threshold(image: np.ndarray, nbins: int = 256) -> float:
    """Otsu threshold over a ``nbins`` histogram, exactly as NiftyNet computes it.

    Returns the centre of the histogram bin that maximises the between-class
    variance (first maximum; the first bin centre if none is positive).

    NiftyNet quirk kept (``util_common.otsu_threshold``): the cumulative
    intensity sums start from the bin *count* of the first (and, from the
    top, the last) bin instead of count x centre. Cumulative sums run in
    float64 in the same sequential order, so the threshold is identical.

    >>> otsu_threshold(np.float32([0, 0, 1, 1, 2, 2, 3, 6, 7, 7, 8, 8, 9, 9, 10, 10]), nbins=8)
    1.875
    """
    hist, edges = np.histogram(image.ravel(), bins=nbins)
    hist = hist.astype(np.float64)
    centres = edges[:-1] + (edges[1] - edges[0]) * 0.5  # float32 for float32 images
    weighted = hist * centres
    # sums from the bottom, bins 0..i; bin 0 contributes its count (quirk)
    weighted_low = weighted.copy()
    weighted_low[0] = hist[0]
    mean_low = np.cumsum(weighted_low)
    weight_low = np.cumsum(hist)
    # sums from the top, bins i..n-1; the last bin contributes its count (quirk)
    weighted_high = weighted.copy()
    weighted_high[-1] = hist[-1]
    mean_high = np.cumsum(weighted_high[::-1])[::-1]
    weight_high = np.cumsum(hist[::-1])[::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio_low = mean_low[:-1] / weight_low[:-1]
        ratio_high = mean_high[1:] / weight_high[1:]
        target = weight_low[:-1] * weight_high[1:] * (ratio_low - ratio_high) ** 2
    target = np.where(np.isnan(target), -np.inf, target)
    best = int(np.argmax(target)) if target.size else 0
    if target.size and target[best] > 0:
        return float(centres[best])
    return float(centres[0])


def threshold_mask(image: np.ndarray, foreground_type: str, *, threshold: float = 0.0) -> np.ndarray:
    """The raw thresholded mask (before dilation and hole filling), bool ``(X, Y, Z)``."""
    if foreground_type not in FOREGROUND_TYPES:
        raise OptionError(f"foreground_type {foreground_type!r} must be one of {FOREGROUND_TYPES}")
    flat = image.reshape(-1)
    if foreground_type == "threshold_plus":
        mask = flat > threshold
    elif foreground_type == "threshold_minus":
        mask = flat < threshold
    elif foreground_type == "mean_plus":
        mask = flat > np.mean(flat)
    else:
        thr = otsu_threshold(flat) if np.any(flat) else threshold
        mask = flat > thr if foreground_type == "otsu_plus" else flat < thr
    return mask.reshape(image.shape)


def foreground_mask(image: np.ndarray, foreground_type: str = "otsu_plus", *,
                    threshold: float = 0.0) -> np.ndarray:
    """Foreground of one volume: threshold, dilate twice, fill holes.

    ``image``: ``(X, Y, Z)`` float32 (the padded image in the pipeline).
    Returns bool ``(X, Y, Z)``. Raises :class:`ImageError` when no voxel is
    foreground (NiftyNet stops there too, with an assertion).

    >>> img = np.zeros((7, 7, 7), np.float32); img[3, 3, 3] = 1.0
    >>> int(foreground_mask(img, "threshold_plus").sum())   # a radius-2 diamond
    25
    """
    if image.ndim != 3:
        raise ValueError(f"foreground_mask expects a 3-D volume, got shape {image.shape}")
    mask = threshold_mask(image, foreground_type, threshold=threshold)
    mask = scipy.ndimage.binary_dilation(mask, iterations=2)
    mask = scipy.ndimage.binary_fill_holes(mask)
    if not mask.any():
        raise ImageError(f"no foreground voxel with foreground_type={foreground_type!r} "
                         f"(image range {float(image.min())}..{float(image.max())})")
    return mask


def fuse_masks(masks: Sequence[np.ndarray], fusion: str = "and") -> list[np.ndarray]:
    """Combine per-modality masks: ``'and'`` (intersection), ``'or'`` (union), ``'multi'``.

    ``masks``: bool ``(X, Y, Z)`` each, one per modality that has a mask.
    Returns one mask per input: the combined mask repeated, or with
    ``'multi'`` each modality's own mask.

    Departure from NiftyNet: for ``'multi'`` NiftyNet 0.6.0
    (``binary_masking.py``, ``layer_op``) assigns ``None`` to the masks,
    which makes them all False; here each modality keeps its own mask, as
    NiftyNet's help text describes.

    >>> a = np.array([True, True, False]); b = np.array([True, False, False])
    >>> fuse_masks([a, b], "or")[0].tolist()
    [True, True, False]
    """
    if fusion not in MULTIMOD_FUSIONS:
        raise OptionError(f"multimod_foreground_type {fusion!r} must be one of {MULTIMOD_FUSIONS}")
    masks = [np.asarray(m, dtype=bool) for m in masks]
    if fusion == "multi" or not masks:
        return masks
    combine = np.logical_and if fusion == "and" else np.logical_or
    fused = masks[0]
    for m in masks[1:]:
        fused = combine(fused, m)
    return [fused.copy() for _ in masks]
