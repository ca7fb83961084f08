"""Read and validate input scans; write label maps.

:func:`load_image` accepts a path or an in-memory nibabel image and returns a
:class:`nibabel.Nifti1Image` holding one 3-D volume of finite numbers, with
NiftyNet's affine repair applied (``niftynet/io/misc_io.py``:
``correct_image_if_necessary``, ``rectify_header_sform_qform``):

* if the column norms of the image affine differ (exactly, in float64) from
  the header's voxel sizes ``get_zooms()`` -- which for a 4-D file include
  the fourth zoom, so a 4-D file always differs -- the sform and qform are
  checked separately against the zooms: with a valid ``sform_code`` a bad
  sform is replaced by the qform if that one is consistent; with only a
  ``qform_code``, a bad qform is replaced by the sform if consistent;
  otherwise both become the affine's columns rescaled to the voxel sizes;
* files whose header has 5 dimensions are left alone.

The repaired affine is what NiftyNet reorients with and writes its output
with. Data are read as NiftyNet reads them, ``np.asanyarray(img.dataobj)``
(scale factors applied), in any on-disk dtype (big-endian too).

:func:`save_labels` writes an int32 label map atomically (temporary file in
the destination folder, then ``os.replace``) and refuses to write over any
of the input files.
"""
from __future__ import annotations

import os
import zlib
from collections.abc import Iterable
from pathlib import Path

import nibabel as nib
import numpy as np

from .errors import ImageError
from .outputs import atomic_output, check_outputs

def _name(source: object) -> str:
    return str(source) if source is not None else "<in-memory image>"


def _read_nifti(path: Path) -> nib.Nifti1Image:
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not a NIfTI file")
    try:
        img = nib.load(str(path))
    except nib.filebasedimages.ImageFileError as exc:
        raise ImageError(f"{path}: not a NIfTI image ({exc})") from None
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise ImageError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(img, nib.Nifti1Image):  # Nifti2Image is a subclass
        raise ImageError(f"{path}: not a NIfTI image (nibabel reads it as {type(img).__name__})")
    return img


def _norms(matrix: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum(np.square(matrix[0:3, 0:3]), 0))


def rescaled_affine(affine: np.ndarray, pixdim) -> np.ndarray:
    """``affine`` with each of its first 3 columns rescaled to length ``pixdim`` (mm).

    NiftyNet's ``create_affine_pixdim``: columns divided by their norms and
    multiplied by the voxel sizes; the translation is kept.

    >>> rescaled_affine(np.diag([-2.0, 3.0, 4.0, 1.0]), (1.0, 1.0, 1.0)).diagonal().tolist()
    [-1.0, 1.0, 1.0, 1.0]
    """
    affine = np.asarray(affine, dtype=np.float64)
    norms = np.append(np.sqrt(np.sum(np.square(affine[:, 0:3]), 0)), 1.0)
    scale = np.append(np.asarray(pixdim, dtype=np.float64)[:3], 1.0)
    return affine / norms[np.newaxis, :] * scale[np.newaxis, :]


def repair_affine(header: nib.Nifti1Header, affine: np.ndarray) -> tuple[nib.Nifti1Header, np.ndarray]:
    """NiftyNet's sform/qform repair; returns ``(header, affine)`` (copies).

    ``affine``: the image's ``(4, 4)`` float64 voxel -> RAS+ mm affine;
    ``header``: its NIfTI header. Unchanged when the affine's column norms
    equal the header zooms exactly, or when the header has 5 dimensions.
    The returned affine is read back from the header (float32-rounded), as
    nibabel's ``set_sform``/``set_qform`` do for NiftyNet.
    """
    header = header.copy()
    affine = np.array(affine, dtype=np.float64)
    if int(header["dim"][0]) == 5:
        return header, affine
    zooms = np.asarray(header.get_zooms())
    if np.array_equal(_norms(affine), zooms):
        return header, affine
    sform_bad = not np.array_equal(_norms(header.get_sform()), zooms)
    qform_bad = not np.array_equal(_norms(header.get_qform()), zooms)
    if int(header["sform_code"]) > 0:
        if not sform_bad:
            return header, affine
        if not qform_bad:
            header.set_sform(header.get_qform().copy())
            return header, header.get_best_affine()
    elif int(header["qform_code"]) > 0:
        if not qform_bad:
            return header, affine
        if not sform_bad:
            header.set_qform(header.get_sform().copy())
            return header, header.get_best_affine()
    pixdim = tuple(zooms)
    while len(pixdim) < 3:
        pixdim = pixdim + (1.0,)
    new_affine = rescaled_affine(affine, pixdim[:3])
    header.set_sform(new_affine)
    header.set_qform(new_affine)
    return header, header.get_best_affine()


def _check_shape(shape: tuple[int, ...], name: str) -> tuple[int, int, int]:
    if len(shape) < 3:
        raise ImageError(f"{name}: {len(shape)}-D image of shape {shape}; a 3-D volume is needed")
    extra = shape[3:]
    if any(n != 1 for n in extra):
        raise ImageError(f"{name}: {len(shape)}-D image of shape {shape} holds "
                         f"{int(np.prod(extra))} volumes; give one 3-D volume")
    spatial = tuple(int(n) for n in shape[:3])
    if 0 in spatial:
        raise ImageError(f"{name}: empty image of shape {shape}")
    if sum(n > 1 for n in spatial) < 3:
        raise ImageError(f"{name}: image of shape {shape} is a single slice or line; "
                         "a 3-D volume is needed")
    return spatial  # type: ignore[return-value]


def _check_values(data: np.ndarray, name: str) -> None:
    if data.dtype.kind not in "biuf":
        raise ImageError(f"{name}: voxel type {data.dtype} is not a real number type")
    if data.dtype.kind == "f":
        bad = ~np.isfinite(data)
        if bad.any():
            n_nan = int(np.isnan(data).sum())
            raise ImageError(f"{name}: {n_nan} NaN and {int(bad.sum()) - n_nan} infinite voxel values")
    low, high = data.min(), data.max()
    if low == high:
        raise ImageError(f"{name}: every voxel has the same value {low.item()!r}; "
                         "no foreground can be found")


def load_image(image: str | os.PathLike | nib.Nifti1Image) -> nib.Nifti1Image:
    """Load and validate one scan; returns an in-memory 3-D :class:`nibabel.Nifti1Image`.

    ``image``: a path to a ``.nii``/``.nii.gz`` file or a nibabel NIfTI
    image. The result holds ``np.asanyarray(dataobj)`` (scaled, native byte
    order, on-disk dtype or float when scaled) of shape ``(X, Y, Z)``, the
    repaired affine (``(4, 4)`` float64, voxel -> RAS+ mm) and a header copy
    with the same sform/qform. A 4-D/5-D file holding one volume is squeezed
    to 3-D (after the affine repair, which looks at the original header).

    Raises :class:`ImageError` (naming the file) for a missing, unreadable
    or non-NIfTI file, fewer than 3 spatial dimensions, several volumes,
    zero voxels, a constant image, NaN/infinite values or a non-numeric
    voxel type.
    """
    if isinstance(image, (str, os.PathLike)):
        path: Path | None = Path(image)
        img = _read_nifti(path)
    elif isinstance(image, nib.Nifti1Image):
        path = Path(image.get_filename()) if image.get_filename() else None
        img = image
    else:
        raise ImageError(f"expected a NIfTI file path or nibabel.Nifti1Image, got {type(image).__name__}")
    name = _name(path)
    header = img.header
    _check_shape(tuple(int(n) for n in img.shape), name)
    try:
        data = np.asanyarray(img.dataobj)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise ImageError(f"{name}: unreadable voxel data ({type(exc).__name__}: {exc})") from None
    data = np.asarray(data)
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    spatial = _check_shape(data.shape, name)
    data = data.reshape(spatial)
    _check_values(data, name)
    header, affine = repair_affine(header, img.affine)
    out = nib.Nifti1Image(data, affine, header=header)
    # keep the repaired sform/qform (and codes) exactly as NiftyNet's header has them
    out.header.set_sform(header.get_sform(), code=int(header["sform_code"]))
    out.header.set_qform(header.get_qform(), code=int(header["qform_code"]))
    out.header.set_slope_inter(None, None)  # the data held are already scaled
    return out


def label_image(labels: np.ndarray, affine: np.ndarray,
                header_like: nib.Nifti1Header | None = None, *, description: str = "") -> nib.Nifti1Image:
    """An int32 label map as the in-memory NIfTI image :func:`save_labels` writes.

    ``labels``: integer ``(X, Y, Z)``; ``affine``: ``(4, 4)`` voxel -> RAS+ mm.
    A fresh header (sform code 2, qform code 0, as NiftyNet writes), with the
    spatial/time units of ``header_like`` when given, and ``description`` in
    ``descrip`` (at most 80 ASCII characters; it says which network made the
    labels, see :mod:`niftyport.reporting.labels`).
    """
    img = nib.Nifti1Image(np.asarray(labels).astype(np.int32), np.asarray(affine, dtype=np.float64))
    img.set_data_dtype(np.int32)
    if header_like is not None:
        img.header["xyzt_units"] = header_like["xyzt_units"]
    if description:
        img.header["descrip"] = description.encode("ascii")[:80]
    return img


def save_labels(path: str | os.PathLike, labels: np.ndarray, affine: np.ndarray,
                header_like: nib.Nifti1Header | None = None, *,
                input_paths: Iterable[str | os.PathLike] = (), description: str = "") -> Path:
    """Write an int32 label map as NIfTI, atomically; returns the path written.

    ``labels``: integer ``(X, Y, Z)`` in the input scan's voxel grid;
    ``affine``: ``(4, 4)`` float64 voxel -> RAS+ mm (the loaded image's
    repaired affine). Like NiftyNet's ``save_volume_5d`` the header is a
    fresh one built from the affine (sform code 2 'aligned', qform code 0);
    from ``header_like`` only the spatial/time units are copied (NiftyNet
    leaves them unknown) so that voxel volumes read in mm.

    Raises :class:`NiftyportError` if ``path`` is one of ``input_paths`` or
    its folder does not exist.
    """
    path = Path(path)
    check_outputs([path], input_paths)
    labels = np.asarray(labels)
    if labels.ndim != 3 or labels.dtype.kind not in "biu":
        raise ImageError(f"{path}: labels must be a 3-D integer array, got {labels.dtype} {labels.shape}")
    with atomic_output(path) as tmp:
        nib.save(label_image(labels, affine, header_like, description=description), tmp)
    return path


def output_image(output: np.ndarray, affine: np.ndarray, header_like: nib.Nifti1Header | None = None, *,
                 description: str = "") -> nib.Nifti1Image:
    """A segmentation output as NiftyNet's ``save_volume_5d`` builds it, in memory.

    ``output``: integer labels ``(X, Y, Z)`` (written int32), or float
    maps ``(X, Y, Z, 1, K)`` (NiftyNet's 5-D layout, one channel per class;
    written float32; trailing length-1 axes dropped as NiftyNet squeezes
    them); ``affine``: ``(4, 4)`` voxel -> RAS+ mm. Header as
    :func:`label_image`: fresh (sform code 2, qform code 0), the spatial/time
    units of ``header_like``, ``description`` in ``descrip``.
    """
    output = np.asarray(output)
    if output.dtype.kind in "biu":
        if output.ndim != 3:
            raise ImageError(f"labels must be 3-D, got shape {output.shape}")
        return label_image(output, affine, header_like, description=description)
    if output.dtype.kind != "f" or output.ndim not in (3, 4, 5):
        raise ImageError(f"an output must be integer labels or float maps, got {output.dtype} {output.shape}")
    shape = output.shape
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    img = nib.Nifti1Image(output.astype(np.float32).reshape(shape), np.asarray(affine, dtype=np.float64))
    img.set_data_dtype(np.float32)
    if header_like is not None:
        img.header["xyzt_units"] = header_like["xyzt_units"]
    if description:
        img.header["descrip"] = description.encode("ascii")[:80]
    return img


def save_image(path: str | os.PathLike, img: nib.Nifti1Image, *,
               input_paths: Iterable[str | os.PathLike] = ()) -> Path:
    """Write ``img`` to ``path`` atomically, never over one of ``input_paths``; returns ``path``."""
    path = Path(path)
    check_outputs([path], input_paths)
    with atomic_output(path) as tmp:
        nib.save(img, tmp)
    return path
