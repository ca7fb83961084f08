"""NiftyNet's volume-level pipeline for one scan: load, preprocess, and map labels back.

The three entry points, in the order the pipeline calls them:

1. :func:`load_and_resample` -- NiftyNet's ``ImageReader``
   (``niftynet/io/image_type.py``): read the scan (:mod:`.image_io`, with
   NiftyNet's affine repair), cast to float32, reorient to the config's
   ``axcodes`` (:mod:`.orientation`), then resample to its ``pixdim`` with
   ``interp_order`` (:mod:`.resample`).
2. :func:`preprocess` -- the preprocessing layers of
   ``niftynet/application/segmentation_application.py``, in its order: pad
   (:mod:`.padding`); one foreground mask on the padded raw image
   (:mod:`.masking`, when ``normalise_foreground_only``); histogram
   standardisation (:mod:`.histogram`, when ``normalisation`` and a
   ``histogram_ref_file``); whitening (:mod:`.whitening`, when ``whitening``).
3. :func:`restore_to_input_space` -- what the grid aggregator does before
   writing (``niftynet/engine/windows_aggregator_grid.py``,
   ``niftynet/io/misc_io.py``: ``save_data_array``): remove the padding,
   resample back to the original shape with ``output_interp_order``,
   reorient back to the original axis codes.

No torch here: numpy, scipy and nibabel only.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from ..config import Config, InputSection
from .histogram import read_landmarks, standardise
from ..image_io import load_image
from .masking import foreground_mask, fuse_masks
from .orientation import affine_axcodes, permute_like, reorient
from .padding import pad, pad_widths, unpad, unpad_slices
from .resample import resample_to_pixdim, resample_to_shape
from .whitening import whiten


@dataclass(frozen=True, eq=False)
class Loaded:
    """A scan as NiftyNet's reader hands it to the preprocessing layers.

    ``data``: float32 ``(X, Y, Z)`` in the config's axis codes
    (``output_axcodes``, e.g. RAS) and voxel size (``output_pixdim``, mm);
    either may be ``()`` when the config keeps the image's own.
    ``original_shape``: ``(X0, Y0, Z0)`` of the file. ``affine``: ``(4, 4)``
    float64 voxel -> RAS+ mm of the file (after NiftyNet's repair): write
    outputs with it. ``axcodes``/``pixdim``: of the file, in its own axis
    order (``pixdim`` holds the header's float32 values). ``header``: the
    file's header (repaired sform/qform). ``source``: the file, if any.

    ``data`` keeps the memory layout NiftyNet's array has (Fortran order as
    nibabel reads NIfTI, a view after reorientation, C order after
    resampling): np.pad keeps Fortran order, and the float32 sums of the
    whitening statistics run in memory order, so the layout decides the
    last bit of the network input.
    """

    data: np.ndarray
    original_shape: tuple[int, int, int]
    affine: np.ndarray
    axcodes: tuple[str, str, str]
    pixdim: tuple[float, float, float]
    header: nib.Nifti1Header
    source: Path | None
    output_axcodes: tuple[str, ...] = ()
    output_pixdim: tuple[float, ...] = ()


@dataclass(frozen=True, eq=False)
class Preprocessed:
    """The preprocessing stages, all ``(X + 2p, Y + 2p, Z + 2p)`` in the loaded space.

    ``padded``: float32, after volume padding. ``mask``: bool foreground
    (all True when ``normalise_foreground_only`` is off).
    ``standardised``: float32 after histogram standardisation (a copy of
    ``padded`` when it is off). ``whitened``: float32 after whitening --
    the network input (a copy of ``standardised`` when it is off).
    """

    padded: np.ndarray
    mask: np.ndarray
    standardised: np.ndarray
    whitened: np.ndarray


def _source(image: str | os.PathLike | nib.spatialimages.SpatialImage) -> Path | None:
    if isinstance(image, (str, os.PathLike)):
        return Path(image)
    filename = image.get_filename() if isinstance(image, nib.spatialimages.SpatialImage) else None
    return Path(filename) if filename else None


def load_and_resample(image: str | os.PathLike | nib.spatialimages.SpatialImage, config: Config, *,
                      section: InputSection | None = None, max_bytes: int | None = None,
                      planar: bool = False) -> Loaded:
    """Read a scan and bring it to the config's orientation and voxel size.

    ``image``: a path to any volume nibabel reads (NIfTI, MGH/MGZ, Analyze)
    or a nibabel image (validated by :func:`~niftyport.image_io.load_image`,
    with ``max_bytes`` as its memory budget). Uses the ``axcodes``,
    ``pixdim`` and ``interp_order`` of ``section`` (default: ``config.image``,
    the first image modality); reorientation happens before resampling,
    with the voxel sizes permuted accordingly, as in NiftyNet.

    ``planar``: also accept a 2-D image (``(X, Y)`` or ``(X, Y, 1)``), loaded as
    ``(X, Y, 1)`` and neither reoriented nor resampled, as NiftyNet's reader
    leaves images of spatial rank 2 (``niftynet/io/image_type.py``:
    ``SpatialImage2D``, and ``SpatialImage3D`` when ``spatial_rank < 3``);
    its :attr:`Loaded.output_axcodes` and ``output_pixdim`` are then empty.
    """
    img = load_image(image, max_bytes=max_bytes, planar=planar)
    affine = np.array(img.affine, dtype=np.float64)
    name = str(_source(image) or "<in-memory image>")
    axcodes = affine_axcodes(affine, name=name)
    pixdim = tuple(float(z) for z in img.header.get_zooms()[:3])
    data = np.asanyarray(img.dataobj).astype(np.float32)  # order 'K': layout kept, as NiftyNet
    original_shape = tuple(int(n) for n in data.shape)
    section = config.image if section is None else section
    if original_shape[2] == 1:  # spatial rank 2: NiftyNet neither reorients nor resamples
        return Loaded(data=data, original_shape=original_shape, affine=affine, axcodes=axcodes,  # type: ignore[arg-type]
                      pixdim=pixdim, header=img.header.copy(), source=_source(image))  # type: ignore[arg-type]
    current_pixdim = pixdim
    if section.axcodes:
        data = reorient(data, axcodes, section.axcodes)
        current_pixdim = permute_like(pixdim, axcodes, section.axcodes)
    if section.pixdim:
        data = resample_to_pixdim(data, current_pixdim, section.pixdim, order=section.interp_order)
    return Loaded(
        data=data,
        original_shape=original_shape,  # type: ignore[arg-type]
        affine=affine,
        axcodes=axcodes,
        pixdim=pixdim,  # type: ignore[arg-type]
        header=img.header.copy(),
        source=_source(image),
        output_axcodes=tuple(section.axcodes),
        output_pixdim=tuple(section.pixdim),
    )


def preprocess(data: np.ndarray, config: Config, *, landmarks: np.ndarray | None = None) -> Preprocessed:
    """Pad, mask, histogram-standardise and whiten one loaded volume.

    ``data``: float32 ``(X, Y, Z)``, :attr:`Loaded.data`. ``landmarks``:
    float32 ``(13,)`` reference landmarks; read from
    ``config.network.histogram_ref_file`` (line ``config.modality``) when
    not given. Returns every stage (:class:`Preprocessed`).
    """
    net = config.network
    data = np.asarray(data, dtype=np.float32)
    if data.ndim != 3:
        raise ValueError(f"preprocess expects a 3-D volume, got shape {data.shape}")
    padded = pad(data, net.volume_padding_size, mode=net.volume_padding_mode,
                 pad_to=net.volume_padding_to_size)
    use_histogram = bool(net.normalisation and net.histogram_ref_file)
    if net.normalise_foreground_only and (use_histogram or net.whitening):
        mask = fuse_masks([foreground_mask(padded, net.foreground_type, threshold=0.0)],
                          net.multimod_foreground_type)[0]
    else:
        mask = np.ones(padded.shape, dtype=bool)
    if use_histogram:
        if landmarks is None:
            landmarks = read_landmarks(net.histogram_ref_file, config.modality)
        standardised = standardise(padded, mask, landmarks, cutoff=net.cutoff, norm_type=net.norm_type)
    else:
        standardised = padded.copy()
    whitened = whiten(standardised, mask) if net.whitening else standardised.copy()
    return Preprocessed(padded=padded, mask=mask, standardised=standardised, whitened=whitened)


def scan_region(loaded: Loaded, config: Config) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(lo, hi)`` voxel corners, in the padded network space, of what
    :func:`restore_to_input_space` keeps (the scan without its volume padding):
    the only network outputs that reach the label map.

    >>> from types import SimpleNamespace
    >>> from niftyport.config import default_config
    >>> scan_region(SimpleNamespace(data=np.zeros((90, 100, 80))), default_config())
    ((10, 10, 10), (100, 110, 90))
    """
    net = config.network
    shape = loaded.data.shape[:3]
    widths = pad_widths(shape, net.volume_padding_size, net.volume_padding_to_size)
    padded = tuple(n + a + b for n, (a, b) in zip(shape, widths))
    slices = unpad_slices(padded, widths)
    return tuple(s.start for s in slices), tuple(s.stop for s in slices)


def restore_to_input_space(labels_padded: np.ndarray, loaded: Loaded, config: Config) -> np.ndarray:
    """Map a label volume from the padded network space back onto the scan's grid.

    ``labels_padded``: integer ``(X + 2p, Y + 2p, Z + 2p)`` in the loaded
    space (the aggregated network output). Returns int32
    ``loaded.original_shape`` in the file's voxel order, to be written with
    ``loaded.affine``. Resampling uses ``config.inference.output_interp_order``
    (0: nearest neighbour, as the model zoo).
    """
    labels = np.asarray(labels_padded)
    if labels.dtype.kind not in "biu":
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    net = config.network
    widths = pad_widths(loaded.data.shape, net.volume_padding_size, net.volume_padding_to_size)
    expected = tuple(n + a + b for n, (a, b) in zip(loaded.data.shape, widths))
    if labels.shape != expected:
        raise ValueError(f"labels shape {labels.shape} is not the padded shape {expected}")
    labels = unpad(labels, widths).astype(np.int32)
    out_axcodes, out_pixdim = loaded.output_axcodes, loaded.output_pixdim
    shape = tuple(loaded.original_shape)
    if out_axcodes:
        shape = permute_like(shape, loaded.axcodes, out_axcodes)
    if out_pixdim:
        labels = resample_to_shape(labels, shape, loaded.pixdim,
                                   order=config.inference.output_interp_order)
    if out_axcodes:
        labels = reorient(labels, out_axcodes, loaded.axcodes)
    return np.ascontiguousarray(labels, dtype=np.int32)


def restore_output(output_padded: np.ndarray, loaded: Loaded, config: Config) -> np.ndarray:
    """Any network output, labels or per-class maps, from the padded network space to the scan's grid.

    What NiftyNet's aggregators do before writing (``PadLayer.inverse_op``,
    then ``niftynet/io/misc_io.py``: ``save_data_array``): un-pad, resample
    each channel back to the original shape with
    ``config.inference.output_interp_order``, reorient back to the file's axis codes.

    ``output_padded``: ``(X + 2p, Y + 2p, Z + 2p)`` or ``(X + 2p, Y + 2p, Z + 2p, K)``
    (channels last), any dtype, in the loaded space of ``loaded`` (for several
    modalities, the first one's: NiftyNet writes with the first file's geometry).
    Returns ``loaded.original_shape`` (``+ (K,)``) in the file's voxel order,
    same dtype, C-contiguous. :func:`restore_to_input_space` is the int32 labels case.
    """
    out = np.asarray(output_padded)
    if out.ndim not in (3, 4):
        raise ValueError(f"output of shape {out.shape}: expected (X, Y, Z) or (X, Y, Z, K)")
    net = config.network
    widths = pad_widths(loaded.data.shape, net.volume_padding_size, net.volume_padding_to_size)
    expected = tuple(n + a + b for n, (a, b) in zip(loaded.data.shape, widths))
    if out.shape[:3] != expected:
        raise ValueError(f"output shape {out.shape} is not the padded shape {expected}")
    out = unpad(out, widths)
    out_axcodes, out_pixdim = loaded.output_axcodes, loaded.output_pixdim
    shape = tuple(loaded.original_shape)
    if out_axcodes:
        shape = permute_like(shape, loaded.axcodes, out_axcodes)
    if out_pixdim:
        order = config.inference.output_interp_order
        if out.ndim == 3:
            out = resample_to_shape(out, shape, loaded.pixdim, order=order)
        else:
            out = np.stack([resample_to_shape(out[..., k], shape, loaded.pixdim, order=order)
                            for k in range(out.shape[-1])], axis=-1)
    if out_axcodes:
        out = reorient(out, out_axcodes, loaded.axcodes)
    return np.ascontiguousarray(out)
