"""Zero-mean, unit-variance intensities over the foreground (NiftyNet's whitening).

NiftyNet (``niftynet/layer/mean_variance_normalisation.py``,
``whitening_transformation``) takes the mean and the standard deviation
(``ddof=0``) of the voxels inside the mask -- computed by
``numpy.ma.masked_array`` on float32 data, so in float64 -- and maps every
voxel (masked-out ones too) to ``(v - mean) / max(std, 1e-5)``; the result
is stored as float32. ``numpy.ma`` is used here as well so that the sums
run in the same order and the values agree to the last bit.

Arrays: ``image`` float32 ``(X, Y, Z)``, ``mask`` bool same shape, voxel-index space.
"""
from __future__ import annotations

import numpy as np
import numpy.ma as ma

from ..errors import OptionError

#: Lower bound of the standard deviation (NiftyNet's constant).
MIN_STD = 1e-5


def foreground_mean_std(image: np.ndarray, mask: np.ndarray) -> tuple[np.float64, np.float64]:
    """Mean and standard deviation (``ddof=0``) of ``image`` where ``mask`` is True.

    Returned as NumPy float64 scalars: subtracting one from a float32 array
    then computes in float64, as NiftyNet does (a Python float would not).

    >>> [float(v) for v in foreground_mean_std(np.float32([1, 3, 100]), np.array([True, True, False]))]
    [2.0, 1.0]
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise OptionError("whitening: the foreground mask is empty")
    masked = ma.masked_array(image, np.logical_not(mask))
    return np.float64(masked.mean()), np.float64(masked.std())


def whiten(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(image - mean) / max(std, 1e-5)`` with mean/std over ``mask``; float32 ``(X, Y, Z)``.

    ``image``: float32 (cast if not) ``(X, Y, Z)``; ``mask``: bool, same shape.

    >>> whiten(np.float32([1, 3, 100]), np.array([True, True, False])).tolist()
    [-1.0, 1.0, 98.0]
    """
    image = np.asarray(image, dtype=np.float32)
    if image.shape != np.shape(mask):
        raise ValueError(f"image {image.shape} and mask {np.shape(mask)} differ in shape")
    mean, std = foreground_mean_std(image, mask)
    return ((image - mean) / max(std, np.float64(MIN_STD))).astype(np.float32)
