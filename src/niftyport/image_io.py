"""Read and validate input scans; write label maps. Every volume format nibabel reads.

Formats: NIfTI-1 and NIfTI-2 (``.nii``, ``.nii.gz``, ``.img``/``.hdr`` pairs),
Analyze 7.5 (``.img``/``.hdr``, SPM's ``.mat`` included) and FreeSurfer MGH
(``.mgh``, ``.mgz``), read through nibabel as NiftyNet reads them
(``niftynet/io/image_loader.py``: ``nib.load``).

Before any voxel is read, :func:`open_image` checks what the header
declares against the file and against a memory budget: an uncompressed file
must hold the declared bytes after the header's data offset (exactly); a
compressed one is first checked against the most its size can expand to
(deflate: 1032:1) and then decompressed once as a stream in bounded memory,
which verifies it to its end (gzip CRC and length) and counts the bytes it
holds. A header claiming 4000^3 voxels fails there, in milliseconds, with
one line naming the file.

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
* files whose header has 5 dimensions are left alone;
* images without an sform (MGH, Analyze) are never repaired, as in
  NiftyNet (``hasattr(img, 'get_sform')``): their affine is nibabel's and
  their voxel sizes the header's ``get_zooms()[:3]``. (NiftyNet 0.6 itself
  stops on an MGH file, whose header has no ``dim`` field; this is what it
  does for every other header without an sform.)

The repaired affine is what NiftyNet reorients with and writes its output
with. Data are read as NiftyNet reads them, ``np.asanyarray(img.dataobj)``
(scale factors applied), in any on-disk dtype (big-endian too).

:func:`save_labels` writes an int32 label map atomically (temporary files in
the destination folder, then ``os.replace``) in the format the output name
asks for, and refuses to write over any of the input files;
:func:`default_label_path` names it after the input, keeping its format.
"""
from __future__ import annotations

import bz2
import contextlib
import gzip
import math
import os
import zlib
from collections.abc import Iterable
from pathlib import Path

import nibabel as nib
import numpy as np

from .errors import ImageError
from .outputs import atomic_output, check_outputs

#: Largest expansion of a deflate stream (a 258-byte match per 2 bits, plus block overhead, rounded up).
DEFLATE_MAX_RATIO = 1032
#: Extensions of the volume formats nibabel reads, and the compressions it reads them in.
IMAGE_EXTENSIONS = (".nii", ".mgh", ".mgz", ".img", ".hdr")
COMPRESSION_EXTENSIONS = (".gz", ".bz2", ".zst")
#: Bytes per voxel kept while an image is read and converted, beyond the stored ones (one float64/int64 copy).
WORKING_BYTES_PER_VOXEL = 8
_READ_CHUNK = 1 << 20
#: What nibabel and the decompressors raise for a file that is not what its header says.
_READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, nib.filebasedimages.ImageFileError,
                nib.spatialimages.HeaderDataError, KeyError, IndexError, TypeError)


def _name(source: object) -> str:
    return str(source) if source is not None else "<in-memory image>"


# --------------------------------------------------------------------------- names and formats

def image_suffix(name: str | os.PathLike) -> str | None:
    """The image extension of a file name, compression included; None if it is no volume format's.

    >>> image_suffix("sub-01/T1w.nii.gz"), image_suffix("orig.mgz"), image_suffix("scan.IMG"), image_suffix("a.txt")
    ('.nii.gz', '.mgz', '.IMG', None)
    """
    suffixes = Path(name).suffixes
    if len(suffixes) >= 2 and suffixes[-1].lower() in COMPRESSION_EXTENSIONS \
            and suffixes[-2].lower() in IMAGE_EXTENSIONS:
        return "".join(suffixes[-2:])
    if suffixes and suffixes[-1].lower() in IMAGE_EXTENSIONS:
        return suffixes[-1]
    return None


def default_label_path(input_path: str | os.PathLike, suffix: str = "_parcellation") -> Path:
    """Where a label map of ``input_path`` goes by default: next to it, ``suffix`` added, same format.

    The extension is kept (``.nii.gz``, ``.nii``, ``.mgz``, ``.mgh``, ``.img``,
    ``.hdr``, compressed pairs too), so :func:`save_labels` writes the input's
    format; a name without a volume extension gets ``.nii.gz``.

    >>> str(default_label_path("/data/sub-01/orig.mgz"))
    '/data/sub-01/orig_parcellation.mgz'
    >>> str(default_label_path("t1.nii.gz")), str(default_label_path("scan.hdr")), str(default_label_path("t1"))
    ('t1_parcellation.nii.gz', 'scan_parcellation.hdr', 't1_parcellation.nii.gz')
    """
    path = Path(input_path)
    extension = image_suffix(path.name)
    stem = path.name[:-len(extension)] if extension else path.name
    return path.with_name(f"{stem}{suffix}{extension or '.nii.gz'}")


def _base_extension(path: str | os.PathLike) -> str | None:
    """``'.nii'``, ``'.mgh'``, ``'.mgz'``, ``'.img'`` or ``'.hdr'`` (lower case), compression removed."""
    extension = image_suffix(Path(path).name)
    if extension is None:
        return None
    base = extension.lower()
    for compression in COMPRESSION_EXTENSIONS:
        base = base.removesuffix(compression)
    return base


def image_files(path: str | os.PathLike) -> list[Path]:
    """The files an image named ``path`` consists of: both of an ``.img``/``.hdr`` pair, else ``path``."""
    path = Path(path)
    if _base_extension(path) not in (".img", ".hdr"):
        return [path]
    file_map = nib.Nifti1Pair.filespec_to_file_map(str(path))
    return [Path(file_map["header"].filename), Path(file_map["image"].filename)]


#: Label-map formats :func:`save_labels` writes, by name, and the extensions they use.
LABEL_FORMATS = {"nifti1": (nib.Nifti1Image, ".nii"), "nifti2": (nib.Nifti2Image, ".nii"),
                 "nifti1-pair": (nib.Nifti1Pair, ".img"), "nifti2-pair": (nib.Nifti2Pair, ".img"),
                 "mgh": (nib.MGHImage, ".mgh")}


def image_format(image: nib.spatialimages.SpatialImage) -> str:
    """Name of an image's format: ``'nifti1'``, ``'nifti2'``, ``'nifti1-pair'``, ``'nifti2-pair'``,
    ``'mgh'``, ``'analyze'`` (plain, SPM99 or SPM2), or nibabel's class name for others."""
    for name, klass in (("nifti2", nib.Nifti2Image), ("nifti1", nib.Nifti1Image), ("nifti2-pair", nib.Nifti2Pair),
                        ("nifti1-pair", nib.Nifti1Pair), ("mgh", nib.MGHImage), ("analyze", nib.AnalyzeImage)):
        if isinstance(image, klass):
            return name
    return type(image).__name__


def _input_format(input_paths: Iterable[str | os.PathLike], base: str) -> str | None:
    """Format of the first input that is an image with the same base extension, if any."""
    family = (".img", ".hdr") if base in (".img", ".hdr") else (base,)
    for source in input_paths:
        if source is None or _base_extension(source) not in family:
            continue
        try:
            return image_format(nib.load(str(source)))
        except _READ_ERRORS:
            continue
    return None


def label_format(path: str | os.PathLike, input_paths: Iterable[str | os.PathLike] = ()) -> str:
    """The :data:`LABEL_FORMATS` name a label map written to ``path`` gets.

    The output name decides: ``.mgh``/``.mgz`` MGH; ``.nii``/``.nii.gz`` NIfTI;
    ``.img``/``.hdr`` a NIfTI pair. Where the name fits NIfTI-1 and NIfTI-2
    alike, an input in NIfTI-2 (the first of ``input_paths`` with the same
    extension) makes it NIfTI-2; otherwise NIfTI-1. An Analyze input's labels
    are a NIfTI-1 pair: the same ``.hdr``/``.img`` files, a header Analyze
    readers read, and an affine Analyze could not hold.
    """
    base = _base_extension(path)
    if base in (".mgh", ".mgz"):
        return "mgh"
    if base not in (".nii", ".img", ".hdr"):
        raise ImageError(f"{path}: cannot tell the image format from this name; end it with .nii.gz, .nii, "
                         ".mgz, .mgh, .img or .hdr")
    pair = "-pair" if base in (".img", ".hdr") else ""
    nifti2 = (_input_format(input_paths, base) or "").startswith("nifti2")
    return ("nifti2" if nifti2 else "nifti1") + pair


# --------------------------------------------------------------------------- reading

def memory_budget() -> int:
    """Default memory budget for reading an image: 3/4 of the machine's physical memory (bytes)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 3 // 4
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def _gib(n: int) -> str:
    return f"{n / 2**30:.3g} GiB" if n >= 2**26 else f"{n / 2**20:.3g} MiB"


def _declared(img: nib.spatialimages.SpatialImage) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, on-disk dtype, voxel count)`` the header declares, as exact Python ints."""
    shape = tuple(int(n) for n in img.shape)
    return shape, np.dtype(img.get_data_dtype()), math.prod(shape)


def _check_budget(img, path: Path, max_bytes: int | None) -> None:
    shape, dtype, count = _declared(img)
    budget = memory_budget() if max_bytes is None else int(max_bytes)
    needed = count * (dtype.itemsize + WORKING_BYTES_PER_VOXEL)
    if needed > budget:
        dims = " x ".join(str(n) for n in shape)
        raise ImageError(f"{path}: the header declares {dims} voxels of {dtype.name} ({count:,} voxels), about "
                         f"{_gib(needed)} to read; more than the memory budget of {_gib(budget)} "
                         f"(max_memory, default 3/4 of this machine's memory)")


def _compression(path: Path) -> str | None:
    """``'gzip'`` (``.gz``, ``.mgz``), ``'bz2'``, ``'zstd'`` or None, from the name as nibabel decides it."""
    name = path.name.lower()
    if name.endswith((".gz", ".mgz")):
        return "gzip"
    return {".bz2": "bz2", ".zst": "zstd"}.get(path.suffix.lower())


def _stream_length(path: Path, compression: str) -> int:
    """Bytes a compressed file decompresses to, read as a stream in bounded memory (checks its end too)."""
    total = 0
    try:
        with (gzip.open if compression == "gzip" else bz2.open)(path, "rb") as stream:
            while chunk := stream.read(_READ_CHUNK):
                total += len(chunk)
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise ImageError(f"{path}: damaged or truncated {compression} stream after {total:,} bytes "
                         f"({type(exc).__name__}: {exc})") from None
    return total


def _check_file_size(img, path: Path) -> None:
    """The image file holds every byte the header declares (before anything is read).

    Uncompressed: the file size, exactly. gzip: first the most the file can
    expand to (:data:`DEFLATE_MAX_RATIO`), then the whole stream, decompressed
    in bounded memory (which also checks its CRC and end). zstd: only the
    memory budget bounds the read.
    """
    proxy = img.dataobj
    if not hasattr(proxy, "offset"):
        return
    image_file = Path(img.file_map["image"].filename or path)
    if not image_file.is_file():
        raise ImageError(f"{image_file}: no such file (the voxel data of {path})")
    _, dtype, count = _declared(img)
    needed = int(proxy.offset) + count * dtype.itemsize
    size, compression = image_file.stat().st_size, _compression(image_file)
    declared = f"the header declares {needed:,} bytes (voxel data from byte {proxy.offset})"
    if compression is None and size < needed:
        raise ImageError(f"{image_file}: truncated: {declared}, the file has {size:,}")
    if compression == "gzip" and needed > size * DEFLATE_MAX_RATIO:
        raise ImageError(f"{image_file}: truncated, or a corrupt header: {declared}, more than a {size:,}-byte "
                         f"gzip stream can hold (at most {size * DEFLATE_MAX_RATIO:,})")
    if compression in ("gzip", "bz2"):
        held = _stream_length(image_file, compression)
        if held < needed:
            raise ImageError(f"{image_file}: truncated: {declared}, the stream holds {held:,}")


def open_image(path: str | os.PathLike, *, max_bytes: int | None = None) -> nib.spatialimages.SpatialImage:
    """Open an image file (header only) after checking it can be read whole.

    ``max_bytes``: memory budget for reading it (default :func:`memory_budget`).
    Raises :class:`ImageError`, one line starting with the file, for a
    missing file, a folder, an empty file, a file nibabel cannot read, a
    header that declares more voxels than the file holds or than the budget
    allows, or a damaged compressed stream.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: empty file")
    try:
        img = nib.load(str(path))
    except nib.filebasedimages.ImageFileError as exc:
        raise ImageError(f"{path}: not an image nibabel can read ({exc})") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:  # the header or an MGH footer in a broken stream
        raise ImageError(f"{path}: damaged or truncated compressed stream ({type(exc).__name__}: {exc})") from None
    except _READ_ERRORS as exc:
        raise ImageError(f"{path}: unreadable header ({type(exc).__name__}: {exc})") from None
    if not isinstance(img, nib.spatialimages.SpatialImage):
        raise ImageError(f"{path}: not a volume (nibabel reads it as {type(img).__name__})")
    _check_budget(img, path, max_bytes)
    _check_file_size(img, path)
    return img


def read_voxels(img: nib.spatialimages.SpatialImage, name: str) -> np.ndarray:
    """``np.asanyarray(img.dataobj)`` (NiftyNet's read), with read errors as :class:`ImageError`."""
    try:
        return np.asarray(np.asanyarray(img.dataobj))
    except _READ_ERRORS as exc:
        raise ImageError(f"{name}: unreadable voxel data ({type(exc).__name__}: {exc})") from None
    except MemoryError:
        raise ImageError(f"{name}: not enough memory to read {img.shape} voxels of {img.get_data_dtype()}") from None


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


def _check_planar_shape(shape: tuple[int, ...], name: str) -> tuple[int, int, int] | None:
    """``(X, Y, 1)`` for a 2-D image (``(X, Y)``, or ``(X, Y, 1, ...)`` holding one slice), else None.

    Raises :class:`ImageError` for a single slice along x or y: NiftyNet
    moves that axis last (``expand_to_5d``) but writes its output with the
    file's affine, so the labels would lie in another plane.
    """
    if len(shape) < 2 or any(n != 1 for n in shape[3:]) or 0 in shape:
        return None
    spatial = tuple(int(n) for n in (tuple(shape[:3]) + (1,))[:3])
    if sum(n > 1 for n in spatial) != 2:
        return None
    if spatial[2] != 1:
        raise ImageError(f"{name}: a single slice along axis {spatial.index(1)} (shape {shape}); a 2-D image "
                         "must be (X, Y) or (X, Y, 1): NiftyNet would move the slice axis last and write its "
                         "output in the file's geometry, in another plane")
    return spatial  # type: ignore[return-value]


def _check_shape(shape: tuple[int, ...], name: str, planar: bool = False) -> tuple[int, int, int]:
    if planar and (spatial := _check_planar_shape(shape, name)) is not None:
        return spatial
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


def _as_nifti(img: nib.spatialimages.SpatialImage, data: np.ndarray) -> nib.Nifti1Image:
    """An in-memory NIfTI-1 image of ``data`` with ``img``'s affine and voxel sizes, repaired as NiftyNet does.

    NIfTI images (single files and pairs) keep their header, with NiftyNet's
    sform/qform repair; MGH and Analyze images (no sform: never repaired)
    get a fresh header carrying their affine and ``get_zooms()[:3]``, in mm.
    """
    if isinstance(img, nib.Nifti1Pair):  # Nifti1Image, Nifti2Image and the pairs
        header, affine = repair_affine(img.header, img.affine)
        out = nib.Nifti1Image(data, affine, header=header)
        # keep the repaired sform/qform (and codes) exactly as NiftyNet's header has them
        out.header.set_sform(header.get_sform(), code=int(header["sform_code"]))
        out.header.set_qform(header.get_qform(), code=int(header["qform_code"]))
    else:
        out = nib.Nifti1Image(data, np.asarray(img.affine, dtype=np.float64))
        out.header.set_zooms(tuple(float(z) for z in img.header.get_zooms()[:3]))
        out.header.set_xyzt_units("mm")
    out.header.set_slope_inter(None, None)  # the data held are already scaled
    return out


def load_image(image: str | os.PathLike | nib.spatialimages.SpatialImage, *,
               max_bytes: int | None = None, planar: bool = False) -> nib.Nifti1Image:
    """Load and validate one scan; returns an in-memory 3-D :class:`nibabel.Nifti1Image`.

    ``image``: a path to any volume nibabel reads (``.nii``/``.nii.gz``,
    ``.mgz``/``.mgh``, ``.img``/``.hdr``) or an in-memory nibabel image;
    ``max_bytes``: memory budget for reading it (see :func:`open_image`).
    The result holds ``np.asanyarray(dataobj)`` (scaled, native byte order,
    on-disk dtype or float when scaled) of shape ``(X, Y, Z)``, the
    repaired affine (``(4, 4)`` float64, voxel -> RAS+ mm) and a NIfTI header
    with the same sform/qform and the file's voxel sizes. A 4-D/5-D file
    holding one volume is squeezed to 3-D (after the affine repair, which
    looks at the original header).

    ``planar``: also accept a 2-D image, ``(X, Y)`` or one slice ``(X, Y, 1)``
    (NiftyNet's ``SpatialImage2D``, and 3-D files of spatial rank 2); it is
    returned as ``(X, Y, 1)``. A 2-D header's two voxel sizes do not match
    the affine's three columns, so NiftyNet's repair rescales the affine
    with a third voxel size of 1 (``rectify_header_sform_qform``), and so
    does this.

    Raises :class:`ImageError` (naming the file) for a missing, unreadable,
    truncated or too large file, fewer than 3 spatial dimensions (2 with
    ``planar``), several volumes, zero voxels, a constant image,
    NaN/infinite values or a non-numeric voxel type.
    """
    if isinstance(image, (str, os.PathLike)):
        path: Path | None = Path(image)
        img = open_image(path, max_bytes=max_bytes)
    elif isinstance(image, nib.spatialimages.SpatialImage):
        path = Path(image.get_filename()) if image.get_filename() else None
        img = image
    else:
        raise ImageError(f"expected an image file path or a nibabel image, got {type(image).__name__}")
    name = _name(path)
    _check_shape(tuple(int(n) for n in img.shape), name, planar)
    data = read_voxels(img, name)
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    spatial = _check_shape(data.shape, name, planar)
    data = data.reshape(spatial)
    _check_values(data, name)
    return _as_nifti(img, data)


def label_image(labels: np.ndarray, affine: np.ndarray,
                header_like: nib.Nifti1Header | None = None, *,
                format: str = "nifti1", description: str = "") -> nib.spatialimages.SpatialImage:
    """An int32 label map as the in-memory image :func:`save_labels` writes.

    ``labels``: integer ``(X, Y, Z)``; ``affine``: ``(4, 4)`` voxel -> RAS+ mm;
    ``format``: a :data:`LABEL_FORMATS` name. NIfTI: a fresh header (sform
    code 2, qform code 0, as NiftyNet writes), with the spatial/time units of
    ``header_like`` when given, and ``description`` in ``descrip`` (at most
    80 ASCII characters; it says which network made the labels, see
    :mod:`niftyport.reporting.labels`). MGH: its header built from the affine
    (it has no description field).
    """
    try:
        klass = LABEL_FORMATS[format][0]
    except KeyError:
        raise ImageError(f"format {format!r} is not one of {', '.join(LABEL_FORMATS)}") from None
    img = klass(np.asarray(labels).astype(np.int32), np.asarray(affine, dtype=np.float64))
    img.set_data_dtype(np.int32)
    if isinstance(img, nib.Nifti1Pair) and header_like is not None and "xyzt_units" in header_like:
        img.header["xyzt_units"] = header_like["xyzt_units"]
    if description and isinstance(img, nib.Nifti1Pair):
        img.header["descrip"] = description.encode("ascii")[:80]
    return img


def _write_image(img: nib.spatialimages.SpatialImage, path: Path) -> None:
    """``nib.save`` through :func:`~niftyport.outputs.atomic_output`, one temporary file per file of the image."""
    file_map = type(img).filespec_to_file_map(str(path))
    with contextlib.ExitStack() as stack:
        for key, holder in file_map.items():
            tmp = stack.enter_context(atomic_output(holder.filename))
            file_map[key] = nib.fileholders.FileHolder(filename=str(tmp))
        img.to_file_map(file_map)


def save_labels(path: str | os.PathLike, labels: np.ndarray, affine: np.ndarray,
                header_like: nib.Nifti1Header | None = None, *,
                input_paths: Iterable[str | os.PathLike] = (), format: str | None = None,
                description: str = "") -> Path:
    """Write an int32 label map, atomically, in the format its name asks for; returns the path written.

    ``labels``: integer ``(X, Y, Z)`` in the input scan's voxel grid;
    ``affine``: ``(4, 4)`` float64 voxel -> RAS+ mm (the loaded image's
    repaired affine). The format follows ``path``'s extension
    (:func:`label_format`: ``.nii.gz`` NIfTI, ``.mgz`` MGH, ``.img``/``.hdr``
    a NIfTI pair, both files written), or ``format`` when given. Like
    NiftyNet's ``save_volume_5d`` a NIfTI header is a fresh one built from
    the affine (sform code 2 'aligned', qform code 0); from ``header_like``
    only the spatial/time units are copied (NiftyNet leaves them unknown) so
    that voxel volumes read in mm.

    Raises :class:`NiftyportError` if a file of ``path`` is one of the files
    of ``input_paths`` or its folder does not exist, :class:`ImageError` for
    a name of no known format.
    """
    path = Path(path)
    inputs = [p for p in input_paths if p is not None]
    check_outputs(image_files(path), [f for p in inputs for f in image_files(p)])
    labels = np.asarray(labels)
    if labels.ndim != 3 or labels.dtype.kind not in "biu":
        raise ImageError(f"{path}: labels must be a 3-D integer array, got {labels.dtype} {labels.shape}")
    chosen = format or label_format(path, inputs)
    _write_image(label_image(labels, affine, header_like, format=chosen, description=description), path)
    return path


def output_image(output: np.ndarray, affine: np.ndarray, header_like=None, *,
                 description: str = "", format: str = "nifti1") -> nib.spatialimages.SpatialImage:
    """A segmentation output as NiftyNet's ``save_volume_5d`` builds it, in memory.

    ``output``: integer labels ``(X, Y, Z)`` (written int32, as :func:`label_image`),
    or float maps ``(X, Y, Z, 1, K)`` (NiftyNet's 5-D layout, one channel per
    class; written float32); ``affine``: ``(4, 4)`` voxel -> RAS+ mm;
    ``format``: a :data:`LABEL_FORMATS` name. NIfTI, as NiftyNet: trailing
    length-1 axes dropped (the labels of a 2-D image ``(X, Y, 1)`` are written
    ``(X, Y)``), a fresh header (sform code 2, qform code 0), the spatial/time
    units of a NIfTI ``header_like``, ``description`` in ``descrip``. MGH
    (``.mgz``/``.mgh``, which holds at most 4 axes, 3 of them spatial): labels
    ``(X, Y, Z)``, maps ``(X, Y, Z, K)`` (the time axis dropped, one frame per
    class); the voxels are the NIfTI file's, bit for bit.
    """
    try:
        klass = LABEL_FORMATS[format][0]
    except KeyError:
        raise ImageError(f"format {format!r} is not one of {', '.join(LABEL_FORMATS)}") from None
    output = np.asarray(output)
    if output.dtype.kind in "biu":
        if output.ndim != 3:
            raise ImageError(f"labels must be 3-D, got shape {output.shape}")
        data, dtype = output.astype(np.int32), np.int32
    elif output.dtype.kind == "f" and output.ndim in (3, 4, 5):
        data, dtype = output.astype(np.float32), np.float32
    else:
        raise ImageError(f"an output must be integer labels or float maps, got {output.dtype} {output.shape}")
    shape = data.shape
    if klass is nib.MGHImage:
        shape = shape[:3] + tuple(n for n in shape[3:] if n != 1)
        if len(shape) > 4:
            raise ImageError(f"an MGH file holds at most 4 axes; the output has shape {output.shape}")
    else:
        while len(shape) > 2 and shape[-1] == 1:
            shape = shape[:-1]
    img = klass(data.reshape(shape), np.asarray(affine, dtype=np.float64))
    img.set_data_dtype(dtype)
    if isinstance(img, nib.Nifti1Pair):
        if header_like is not None and "xyzt_units" in header_like:
            img.header["xyzt_units"] = header_like["xyzt_units"]
        if description:
            img.header["descrip"] = description.encode("ascii")[:80]
    return img


def save_output(path: str | os.PathLike, output: np.ndarray, affine: np.ndarray, header_like=None, *,
                description: str = "", input_paths: Iterable[str | os.PathLike] = ()) -> Path:
    """Write a segmentation output (see :func:`output_image`) atomically, in the format its name asks for.

    The format follows ``path`` (:func:`label_format`: ``.nii.gz``/``.nii``
    NIfTI, ``.mgz``/``.mgh`` MGH, ``.img``/``.hdr`` a NIfTI pair); never
    written over one of the files of ``input_paths``. Returns ``path``.
    """
    path = Path(path)
    inputs = [p for p in input_paths if p is not None]
    check_outputs(image_files(path), [f for p in inputs for f in image_files(p)])
    chosen = label_format(path, inputs)
    _write_image(output_image(output, affine, header_like, description=description, format=chosen), path)
    return path


def save_image(path: str | os.PathLike, img: nib.Nifti1Image, *,
               input_paths: Iterable[str | os.PathLike] = ()) -> Path:
    """Write a NIfTI ``img`` to ``path`` (``.nii`` or ``.nii.gz``) atomically, never over one of ``input_paths``."""
    path = check_nifti_name(path)
    check_outputs([path], input_paths)
    _write_image(img, path)
    return path


def check_nifti_name(path: str | os.PathLike) -> Path:
    """``path`` if it names a NIfTI file (``.nii``, ``.nii.gz``), else :class:`ImageError`."""
    path = Path(path)
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        raise ImageError(f"{path}: segmentation outputs are written as NIfTI; name the file .nii.gz or .nii")
    return path
