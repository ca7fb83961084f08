"""numpy arrays for every tensor niftyport reads or writes, bfloat16 included.

numpy has no bfloat16. niftyport holds a bfloat16 tensor as its raw bits, a
``uint16`` array whose dtype carries a marker (:data:`BFLOAT16`, numpy dtype
metadata); views, reshapes, transposes, ``np.ascontiguousarray`` and
``astype(BFLOAT16)`` keep it, so a bfloat16 tensor goes from a checkpoint
through the name and layout rules into a ``.safetensors`` file (dtype
``BF16``), a ``.pth`` file (``torch.bfloat16``) or back into a checkpoint
(``DT_BFLOAT16``) bit for bit. :func:`widen_to_float32` turns it into float32
exactly (a bfloat16 is the upper half of a float32).

>>> bits = bfloat16_array(np.array([0x3FC0, 0xC010], dtype=np.uint16))
>>> dtype_name(bits.dtype), widen_to_float32(bits).tolist()
('bfloat16', [1.5, -2.25])
>>> dtype_name(np.transpose(bits.reshape(2, 1)).dtype)
'bfloat16'
"""
from __future__ import annotations

from typing import Any

import numpy as np

_MARKER = "niftyport_dtype"
#: dtype of bfloat16 tensors: uint16 bits, marked. Compares equal to ``np.uint16``: test with :func:`is_bfloat16`.
BFLOAT16 = np.dtype(np.uint16, metadata={_MARKER: "bfloat16"})


def is_bfloat16(dtype: Any) -> bool:
    """Whether ``dtype`` is the marked bfloat16 dtype (not a plain uint16)."""
    metadata = np.dtype(dtype).metadata
    return bool(metadata) and metadata.get(_MARKER) == "bfloat16"


def bfloat16_array(bits: np.ndarray) -> np.ndarray:
    """A view of 16-bit ``bits`` (any 2-byte integer dtype, native order) as bfloat16."""
    bits = np.asarray(bits)
    if bits.dtype.itemsize != 2 or bits.dtype.kind not in "iu":
        raise TypeError(f"bfloat16 bits must be a 16-bit integer array, got {bits.dtype}")
    return bits.view(BFLOAT16)


def dtype_name(dtype: Any) -> str:
    """``'bfloat16'`` for the marked dtype, ``'string'`` for object/bytes arrays, else numpy's name."""
    dtype = np.dtype(dtype)
    if is_bfloat16(dtype):
        return "bfloat16"
    if dtype.kind in "OSU":
        return "string"
    return dtype.name


def widen_to_float32(array: np.ndarray) -> np.ndarray:
    """bfloat16 or float16 ``array`` as float32, exactly; other arrays unchanged."""
    array = np.asarray(array)
    if is_bfloat16(array.dtype):
        return (np.asarray(array, dtype=np.uint32) << 16).view(np.float32)
    if array.dtype == np.float16:
        return array.astype(np.float32)
    return array


def to_numpy(value: Any) -> np.ndarray:
    """numpy array of an array-like; torch tensors are detached and moved to the CPU first.

    A ``torch.bfloat16`` tensor becomes a :data:`BFLOAT16` array of the same bits.
    """
    if hasattr(value, "detach"):  # a torch tensor (torch is not imported here)
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            import torch

            return bfloat16_array(value.view(torch.int16).numpy())
        return value.numpy()
    return np.asarray(value)


def to_torch(array: np.ndarray) -> Any:
    """``torch.from_numpy`` that turns a :data:`BFLOAT16` array into a ``torch.bfloat16`` tensor."""
    import torch

    array = np.asarray(array)
    if is_bfloat16(array.dtype):
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)
