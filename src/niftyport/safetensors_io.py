""".safetensors files from and to numpy arrays, bfloat16 included, without torch.

The format (github.com/huggingface/safetensors): an 8-byte little-endian
header length N, N bytes of JSON header (``{"name": {"dtype": "F32",
"shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}}``,
padded with spaces), then the tensors' bytes, little-endian, C order.
Both directions go through the safetensors library's own (de)serializer, so
the files are byte for byte the ones ``safetensors.torch.save_file`` writes
and are checked as strictly when read (truncation, bad JSON, offsets that
do not cover the data). ``safetensors.numpy`` knows no bfloat16; here a
``BF16`` tensor is a :data:`niftyport.tensors.BFLOAT16` array of its bits.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np

from .errors import WeightsError
from .tensors import BFLOAT16, is_bfloat16

#: safetensors dtype codes -> numpy dtypes (little-endian, as stored).
SAFETENSORS_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": BFLOAT16.newbyteorder("<"),
    "I64": np.dtype("<i8"), "U64": np.dtype("<u8"), "I32": np.dtype("<i4"), "U32": np.dtype("<u4"),
    "I16": np.dtype("<i2"), "U16": np.dtype("<u2"), "I8": np.dtype("i1"), "U8": np.dtype("u1"),
    "BOOL": np.dtype(bool), "C64": np.dtype("<c8"),
}


def _library_message(exc: Exception) -> str:
    """The safetensors library's message without its generic prefix."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for prefix in ("Error while deserializing header:", "Error while deserializing:"):
        if text.startswith(prefix):
            text = text[len(prefix):].strip()
    return text


def _to_array(name: str, view: Mapping, path: Path) -> np.ndarray:
    try:
        stored = SAFETENSORS_DTYPES[view["dtype"]]
    except KeyError:
        known = ", ".join(SAFETENSORS_DTYPES)
        raise WeightsError(f"{path}: tensor {name!r} has dtype {view['dtype']}, which niftyport "
                           f"cannot read (known: {known})") from None
    array = np.frombuffer(view["data"], dtype=stored).reshape(tuple(view["shape"]))
    native = BFLOAT16 if is_bfloat16(stored) else stored.newbyteorder("=")
    return array.astype(native, copy=True)


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{name: array}`` of a ``.safetensors`` file, in stored order (writeable, native byte order).

    Raises :class:`~niftyport.errors.WeightsError` naming the file when it is
    empty, truncated, not a safetensors file, or holds a dtype numpy cannot
    represent (float8); BF16 tensors come back as :data:`~niftyport.tensors.BFLOAT16`.
    """
    from safetensors import SafetensorError, deserialize

    path = Path(path)
    data = path.read_bytes()
    try:
        views = deserialize(data)
    except (SafetensorError, ValueError, OverflowError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({_library_message(exc)})") from None
    return {name: _to_array(name, view, path) for name, view in views}


def _library_dtype(array: np.ndarray) -> str:
    """The dtype name the safetensors serializer takes (torch's names: ``'float32'``, ``'bfloat16'``)."""
    return "bfloat16" if is_bfloat16(array.dtype) else array.dtype.name


def write_safetensors(tensors: Mapping[str, np.ndarray], path: str | os.PathLike, *,
                      metadata: Mapping[str, str] | None = None) -> None:
    """Write numpy ``tensors`` (C-contiguous, any byte order) to ``path`` as ``.safetensors``.

    Not atomic by itself: :func:`niftyport.weights.save_safetensors` wraps it.
    """
    import safetensors

    arrays = {}
    for name, value in tensors.items():
        array = np.ascontiguousarray(value).reshape(np.shape(value))  # ascontiguousarray makes 0-d arrays 1-d
        if array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("<"))
        arrays[name] = array
    meta = dict(metadata) if metadata is not None else None
    if hasattr(safetensors, "TensorSpec"):  # safetensors >= 0.7: descriptors pointing at the arrays
        specs = {name: safetensors.TensorSpec(dtype=_library_dtype(a), shape=a.shape, data_ptr=a.ctypes.data,
                                              data_len=a.nbytes) for name, a in arrays.items()}
    else:  # older releases take the bytes themselves
        specs = {name: {"dtype": _library_dtype(a), "shape": list(a.shape), "data": a.tobytes()}
                 for name, a in arrays.items()}
    safetensors.serialize_file(specs, str(path), metadata=meta)
