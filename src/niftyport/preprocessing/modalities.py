"""Several input modalities as one network input: NiftyNet's multi-modal image and its normalisation.

NiftyNet reads one file per image section named in ``[SEGMENTATION] image``
(``niftynet/io/image_type.py``, ``SpatialImage4D.get_data``): each with its
own section's ``axcodes``, ``pixdim`` and ``interp_order``, then
concatenated along the modality axis in the config's order -- the files
must share their voxel counts (``header['dim'][1:5]``), and so must the
resampled volumes. The output is written with the *first* file's geometry
(affine, voxel sizes, axis codes).

The preprocessing layers then work on the 5-D array, one modality at a time
(``niftynet/layer/pad.py``, ``binary_masking.py``,
``histogram_normalisation.py``, ``mean_variance_normalisation.py``):

1. pad the spatial axes (``np.pad`` per line, so per modality);
2. one mask per modality holding a non-zero voxel (``foreground_type``),
   combined by ``multimod_foreground_type`` ('and': intersection, 'or':
   union) and given to each of them; an all-zero modality keeps an empty mask;
3. histogram standardisation of each non-zero modality onto its own line of
   ``histogram_ref_file`` (the line named after its section);
4. whitening of each modality over its mask.

Layout matters to the last bit: NiftyNet normalises each modality *in
place*, as a strided view of the 5-D array, and numpy's float32 sums run in
memory order. :func:`stack` builds the ``(X, Y, Z, M)`` array with the
memory layout of NiftyNet's ``(X, Y, Z, 1, M)`` one (``np.concatenate``
along the last axis), and :func:`preprocess_modalities` works on its views
in the same way, so every modality's statistics match NiftyNet's.

Arrays: ``(X, Y, Z)`` per modality, ``(X, Y, Z, M)`` stacked (channels last),
voxel-index space of the loaded (reoriented, resampled) images.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..config import Config
from ..errors import ImageError
from .histogram import read_landmarks, standardise
from .masking import foreground_mask, fuse_masks
from .padding import pad
from .whitening import whiten


def check_same_grid(shapes: Sequence[Sequence[int]], names: Sequence[str], *, what: str) -> None:
    """Refuse modalities whose spatial shapes differ (NiftyNet cannot concatenate them either).

    ``shapes``: one shape per modality; ``names``: their section names; ``what``:
    which shapes these are (``'file'`` or ``'resampled'``), for the message.

    >>> check_same_grid([(4, 5, 6), (4, 5, 6)], ["T1", "T2"], what="file")
    >>> check_same_grid([(4, 5, 6), (4, 5, 7)], ["T1", "T2"], what="file")
    Traceback (most recent call last):
    ...
    niftyport.errors.ImageError: modalities T1, T2 differ in file shape: (4, 5, 6) vs (4, 5, 7); ...
    """
    first = tuple(int(n) for n in shapes[0][:3])
    for name, shape in zip(names[1:], shapes[1:]):
        if tuple(int(n) for n in shape[:3]) != first:
            raise ImageError(f"modalities {names[0]}, {name} differ in {what} shape: {first} vs "
                             f"{tuple(int(n) for n in shape[:3])}; NiftyNet stacks the modalities voxel for "
                             "voxel, so they must share one grid (resample them onto the first one's)")


def stack(volumes: Sequence[np.ndarray]) -> np.ndarray:
    """The modalities as one float32 ``(X, Y, Z, M)`` array, with NiftyNet's memory layout.

    ``volumes``: ``M`` arrays ``(X, Y, Z)`` as loaded (each in its own
    layout: Fortran order from nibabel, a view after reorientation, C order
    after resampling). ``np.concatenate`` chooses the result's layout from
    its inputs' strides, as for NiftyNet's ``(X, Y, Z, 1, 1)`` arrays.

    >>> stack([np.zeros((2, 3, 4), np.float32), np.ones((2, 3, 4), np.float32)]).shape
    (2, 3, 4, 2)
    """
    check_same_grid([v.shape for v in volumes], [f"#{i}" for i in range(len(volumes))], what="loaded")
    return np.concatenate([np.asarray(v, dtype=np.float32)[..., None] for v in volumes], axis=-1)


def modality_masks(padded: np.ndarray, config: Config) -> np.ndarray:
    """The foreground masks NiftyNet's normalisation layers use, bool ``(X, Y, Z, M)``.

    ``padded``: the padded ``(X, Y, Z, M)`` raw stack. All True when
    ``normalise_foreground_only`` is off or no layer uses a mask.
    """
    net = config.network
    uses_mask = bool(net.normalisation and net.histogram_ref_file) or net.whitening
    if not (net.normalise_foreground_only and uses_mask):
        return np.ones(padded.shape, dtype=bool)
    present = [m for m in range(padded.shape[-1]) if np.any(padded[..., m])]
    masks = fuse_masks([foreground_mask(padded[..., m], net.foreground_type, threshold=0.0) for m in present],
                       net.multimod_foreground_type)
    mask = np.zeros(padded.shape, dtype=bool)
    for m, modality_mask in zip(present, masks):
        mask[..., m] = modality_mask
    return mask


def modality_landmarks(config: Config) -> list[np.ndarray]:
    """The reference landmarks of each image modality, float32 ``(13,)`` each, in the config's order."""
    return [read_landmarks(config.network.histogram_ref_file, name) for name in config.modalities]


def preprocess_modalities(stacked: np.ndarray, config: Config, *,
                          landmarks: Sequence[np.ndarray] | None = None):
    """Pad, mask, histogram-standardise and whiten a ``(X, Y, Z, M)`` stack, modality by modality.

    ``stacked``: float32 from :func:`stack`, ``M`` = the config's image
    modalities. ``landmarks``: one float32 ``(13,)`` per modality (default:
    read from ``histogram_ref_file``, the line of each section's name).
    Returns a :class:`~niftyport.preprocessing.Preprocessed` whose arrays are
    ``(X + 2p, Y + 2p, Z + 2p, M)`` (the mask bool, the others float32);
    ``whitened`` is the network input.
    """
    from . import Preprocessed

    net = config.network
    stacked = np.asarray(stacked, dtype=np.float32)
    if stacked.ndim != 4 or stacked.shape[-1] != len(config.modalities):
        raise ValueError(f"stack of shape {stacked.shape}: expected (X, Y, Z, {len(config.modalities)})")
    padded = pad(stacked, net.volume_padding_size, mode=net.volume_padding_mode,
                 pad_to=net.volume_padding_to_size)
    mask = modality_masks(padded, config)
    standardised = padded.copy(order="K")  # NiftyNet writes into its array: keep the layout
    if net.normalisation and net.histogram_ref_file:
        marks = modality_landmarks(config) if landmarks is None else list(landmarks)
        for m in range(padded.shape[-1]):
            if np.any(standardised[..., m]):  # NiftyNet skips a missing (all-zero) modality
                standardised[..., m] = standardise(standardised[..., m], mask[..., m], marks[m],
                                                   cutoff=net.cutoff, norm_type=net.norm_type)
    whitened = standardised.copy(order="K")
    if net.whitening:
        for m in range(padded.shape[-1]):
            whitened[..., m] = whiten(whitened[..., m], mask[..., m])
    return Preprocessed(padded=padded, mask=mask, standardised=standardised, whitened=whitened)
