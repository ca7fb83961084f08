"""TensorFlow's V2 checkpoint format ("tensor bundle"), encoded and decoded in pure Python.

A checkpoint ``PREFIX`` is a set of files:

* ``PREFIX.index``: an immutable sorted key/value table in LevelDB's SSTable
  layout. Key ``b""`` holds a ``BundleHeaderProto`` (number of data shards,
  endianness, format version); every other key is a variable name (UTF-8)
  whose value is a ``BundleEntryProto``: dtype, shape, shard id, byte offset
  and size of the tensor in its shard, and the masked CRC-32C of those bytes.
* ``PREFIX.data-SSSSS-of-NNNNN``: the shards, the raw tensor bytes back to back
  (C order, the header's endianness).

This module only turns bytes into values and back (no file I/O; see
:mod:`niftyport.checkpoint`). It follows TensorFlow's ``tensor_bundle.proto``,
``tensor_shape.proto``, ``types.proto`` and the LevelDB table format
(``table_format.md``) as reimplemented in ``tensorflow/core/lib/io/``;
TensorFlow itself is never imported.

Table layout, as read here::

    [data block 0][trailer] ... [data block n][trailer]
    [metaindex block][trailer] [index block][trailer] [footer: 48 bytes]

    block   = entries, restart offsets (uint32 each), number of restarts (uint32)
    entry   = varint shared, varint non_shared, varint value_size,
              key[shared:] (the first ``shared`` bytes repeat the previous key), value
    trailer = compression type (1 byte: 0 none, 1 snappy), masked crc32c (uint32)
              of the block contents followed by the type byte
    footer  = metaindex handle, index handle (each: varint offset, varint size),
              zero padding to 40 bytes, magic 0xdb4775248b80fb57 (uint64 LE)

Every integer is little-endian. The index block maps a key >= the last key of
each data block to that block's handle.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping

import crc32c as _crc32c
import numpy as np

from ..errors import CheckpointError
from ..tensors import BFLOAT16, is_bfloat16

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5
#: Block-building options of TensorFlow's ``table::Options`` (tensorflow/core/lib/io/table_options.h).
DEFAULT_BLOCK_SIZE = 262144
DEFAULT_RESTART_INTERVAL = 16
#: ``kTensorBundleVersion`` of tensorflow/core/util/tensor_bundle/tensor_bundle.h.
BUNDLE_VERSION = 1
HEADER_KEY = b""
_SLICE_KEY_PREFIX = b"\0"

_CRC_MASK_DELTA = 0xA282EAD8
_NO_COMPRESSION = 0
_SNAPPY_COMPRESSION = 1

#: TensorFlow ``DataType`` enum (tensorflow/core/framework/types.proto) -> numpy dtype.
#: ``DT_STRING`` (7) is handled apart: numpy ``object`` arrays of ``bytes``; so is
#: ``DT_BFLOAT16`` (14): :data:`niftyport.tensors.BFLOAT16` arrays (the raw bits, marked).
DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.float32),     # DT_FLOAT
    2: np.dtype(np.float64),     # DT_DOUBLE
    3: np.dtype(np.int32),       # DT_INT32
    4: np.dtype(np.uint8),       # DT_UINT8
    5: np.dtype(np.int16),       # DT_INT16
    6: np.dtype(np.int8),        # DT_INT8
    8: np.dtype(np.complex64),   # DT_COMPLEX64
    9: np.dtype(np.int64),       # DT_INT64
    10: np.dtype(np.bool_),      # DT_BOOL
    17: np.dtype(np.uint16),     # DT_UINT16
    18: np.dtype(np.complex128),  # DT_COMPLEX128
    19: np.dtype(np.float16),    # DT_HALF
    22: np.dtype(np.uint32),     # DT_UINT32
    23: np.dtype(np.uint64),     # DT_UINT64
}
DT_STRING = 7
DT_BFLOAT16 = 14
STRING_DTYPE = np.dtype(object)
#: TensorFlow's names of the dtypes this reader cannot turn into arrays, and why.
_UNSUPPORTED_DTYPES = {
    11: ("qint8", "a quantized type"), 12: ("quint8", "a quantized type"), 13: ("qint32", "a quantized type"),
    15: ("qint16", "a quantized type"), 16: ("quint16", "a quantized type"),
    20: ("resource", "a handle to a resource, not values"),
    21: ("variant", "opaque serialized objects, such as a saved tf.data iterator's state"),
    24: ("float8_e5m2", "an 8-bit float numpy cannot hold"), 25: ("float8_e4m3fn", "an 8-bit float numpy cannot hold"),
    29: ("int4", "a 4-bit integer numpy cannot hold"), 30: ("uint4", "a 4-bit integer numpy cannot hold"),
}
_DTYPE_CODES = {dtype: code for code, dtype in DTYPES.items()}
#: Largest byte count a tensor may take (TensorFlow's sizes are int64).
_MAX_BYTES = (1 << 63) - 1


# --------------------------------------------------------------------------- checksums

def masked_crc32c(data: bytes | memoryview) -> int:
    """CRC-32C of ``data``, masked as LevelDB and TensorFlow store it (uint32).

    Masking (rotate right by 15, add 0xa282ead8) keeps a CRC stored inside
    checksummed data from being trivially self-consistent.

    >>> hex(masked_crc32c(b""))
    '0xa282ead8'
    """
    crc = _crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _CRC_MASK_DELTA) & 0xFFFFFFFF


# --------------------------------------------------------------------------- varints

def encode_varint(value: int) -> bytes:
    """Base-128 varint of a non-negative int, or of a negative one as 64-bit two's complement.

    >>> encode_varint(300).hex()
    'ac02'
    """
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Decode the varint at ``buf[pos:]``; returns ``(value, position after it)``.

    Raises ``ValueError`` when the buffer ends inside the varint or it exceeds 64 bits.
    """
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("varint runs past the end of the buffer")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ValueError("varint longer than 10 bytes")


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


# --------------------------------------------------------------------------- protobuf wire format

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


def iter_fields(buf: bytes | memoryview) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield ``(field number, wire type, value)`` for each field of a serialized message.

    Varint and fixed-width values are ints; length-delimited ones are bytes.
    Raises ``ValueError`` on malformed input.
    """
    pos = 0
    while pos < len(buf):
        tag, pos = decode_varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == _VARINT:
            value, pos = decode_varint(buf, pos)
        elif wire == _FIXED64:
            if pos + 8 > len(buf):
                raise ValueError("fixed64 field runs past the end")
            value, pos = int.from_bytes(buf[pos:pos + 8], "little"), pos + 8
        elif wire == _FIXED32:
            if pos + 4 > len(buf):
                raise ValueError("fixed32 field runs past the end")
            value, pos = int.from_bytes(buf[pos:pos + 4], "little"), pos + 4
        elif wire == _LENGTH:
            size, pos = decode_varint(buf, pos)
            if pos + size > len(buf):
                raise ValueError("length-delimited field runs past the end")
            value, pos = bytes(buf[pos:pos + size]), pos + size
        else:
            raise ValueError(f"unsupported wire type {wire} for field {number}")
        yield number, wire, value


def _field_varint(number: int, value: int) -> bytes:
    """A varint field, omitted when zero (proto3 default)."""
    return encode_varint(number << 3 | _VARINT) + encode_varint(value) if value else b""


def _field_bytes(number: int, payload: bytes) -> bytes:
    return encode_varint(number << 3 | _LENGTH) + encode_varint(len(payload)) + payload


def _field_fixed32(number: int, value: int) -> bytes:
    return encode_varint(number << 3 | _FIXED32) + struct.pack("<I", value)


@dataclass(frozen=True)
class BundleHeader:
    """``BundleHeaderProto``: number of data shards, byte order, format version."""

    num_shards: int = 1
    big_endian: bool = False
    producer: int = BUNDLE_VERSION
    min_consumer: int = 0


@dataclass(frozen=True)
class BundleEntry:
    """``BundleEntryProto``: where one tensor lives.

    ``dtype`` is TensorFlow's enum code; ``offset`` and ``size`` are bytes in
    shard ``shard_id``; ``crc32c`` is the masked CRC-32C of those bytes, or
    None when absent (TensorFlow always writes one, except for a partitioned
    variable's own entry). ``sliced`` is True for a partitioned variable,
    whose bytes are stored in slices under other keys.
    """

    dtype: int
    shape: tuple[int, ...]
    shard_id: int = 0
    offset: int = 0
    size: int = 0
    crc32c: int | None = None
    sliced: bool = False


def encode_shape(shape: Iterable[int]) -> bytes:
    """``TensorShapeProto`` with one ``dim { size }`` per axis."""
    return b"".join(_field_bytes(2, _field_varint(1, int(n))) for n in shape)


def decode_shape(buf: bytes) -> tuple[int, ...]:
    """Dimension sizes of a ``TensorShapeProto``; raises ``ValueError`` for an unknown rank."""
    dims = []
    for number, wire, value in iter_fields(buf):
        if number == 2 and wire == _LENGTH:
            size = 0
            for dnum, dwire, dvalue in iter_fields(value):
                if dnum == 1 and dwire == _VARINT:
                    size = _signed64(dvalue)
            dims.append(size)
        elif number == 3 and wire == _VARINT and value:
            raise ValueError("shape of unknown rank")
    return tuple(dims)


def encode_header(header: BundleHeader) -> bytes:
    version = _field_varint(1, header.producer) + _field_varint(2, header.min_consumer)
    return (_field_varint(1, header.num_shards) + _field_varint(2, int(header.big_endian))
            + _field_bytes(3, version))


def decode_header(buf: bytes) -> BundleHeader:
    fields = {"num_shards": 0, "big_endian": False, "producer": 0, "min_consumer": 0}
    for number, wire, value in iter_fields(buf):
        if number == 1 and wire == _VARINT:
            fields["num_shards"] = _signed64(value)
        elif number == 2 and wire == _VARINT:
            fields["big_endian"] = value == 1
        elif number == 3 and wire == _LENGTH:
            for vnum, vwire, vvalue in iter_fields(value):
                if vnum == 1 and vwire == _VARINT:
                    fields["producer"] = _signed64(vvalue)
                elif vnum == 2 and vwire == _VARINT:
                    fields["min_consumer"] = _signed64(vvalue)
    return BundleHeader(**fields)


def encode_entry(entry: BundleEntry) -> bytes:
    out = (_field_varint(1, entry.dtype) + _field_bytes(2, encode_shape(entry.shape))
           + _field_varint(3, entry.shard_id) + _field_varint(4, entry.offset)
           + _field_varint(5, entry.size))
    if entry.crc32c is not None:
        out += _field_fixed32(6, entry.crc32c)
    return out


def decode_entry(buf: bytes) -> BundleEntry:
    fields: dict = {"dtype": 0, "shape": ()}
    for number, wire, value in iter_fields(buf):
        if number == 1 and wire == _VARINT:
            fields["dtype"] = value
        elif number == 2 and wire == _LENGTH:
            fields["shape"] = decode_shape(value)
        elif number in (3, 4, 5) and wire == _VARINT:
            fields[{3: "shard_id", 4: "offset", 5: "size"}[number]] = _signed64(value)
        elif number == 6 and wire == _FIXED32:
            fields["crc32c"] = value
        elif number == 7 and wire == _LENGTH:
            fields["sliced"] = True
    return BundleEntry(**fields)


# --------------------------------------------------------------------------- SSTable blocks

def _decode_handle(buf: bytes | memoryview, pos: int = 0) -> tuple[int, int, int]:
    """BlockHandle at ``buf[pos:]``: ``(offset, size, position after it)``."""
    offset, pos = decode_varint(buf, pos)
    size, pos = decode_varint(buf, pos)
    return offset, size, pos


def _encode_handle(offset: int, size: int) -> bytes:
    return encode_varint(offset) + encode_varint(size)


def _parse_block(block: memoryview, source: str, what: str) -> list[tuple[bytes, bytes]]:
    """Key/value pairs of one block's contents (trailer removed), in stored order.

    ``source`` names the file, ``what`` the block, in error messages.
    """
    if len(block) < 4:
        raise CheckpointError(f"{source}: corrupt: {what} of {len(block)} bytes is too short")
    num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    entries_end = len(block) - 4 - 4 * num_restarts
    if num_restarts == 0 or entries_end < 0:
        raise CheckpointError(f"{source}: corrupt: bad restart count {num_restarts} in {what} "
                              f"of {len(block)} bytes")
    restarts = set(struct.unpack_from(f"<{num_restarts}I", block, entries_end))
    items: list[tuple[bytes, bytes]] = []
    key = b""
    pos = 0
    try:
        while pos < entries_end:
            at_restart = pos in restarts
            shared, pos = decode_varint(block, pos)
            non_shared, pos = decode_varint(block, pos)
            value_size, pos = decode_varint(block, pos)
            end = pos + non_shared + value_size
            if shared > len(key) or (at_restart and shared) or end > entries_end:
                raise ValueError(f"bad entry header at byte {pos}")
            key = key[:shared] + bytes(block[pos:pos + non_shared])
            items.append((key, bytes(block[pos + non_shared:end])))
            pos = end
    except ValueError as exc:
        raise CheckpointError(f"{source}: corrupt: {what} ({exc})") from None
    return items


def _read_block(table: memoryview, offset: int, size: int, source: str) -> memoryview:
    """Contents of the block at ``offset`` after checking its trailer (type and masked crc32c)."""
    end = offset + size + BLOCK_TRAILER_SIZE
    if end > len(table) - FOOTER_SIZE:
        raise CheckpointError(f"{source}: truncated or corrupt: block at byte {offset} "
                              f"({size} bytes) runs past the end of the table")
    contents = table[offset:offset + size]
    kind = table[offset + size]
    stored = struct.unpack_from("<I", table, offset + size + 1)[0]
    actual = masked_crc32c(table[offset:offset + size + 1])
    if stored != actual:
        raise CheckpointError(f"{source}: corrupt: crc32c mismatch in block at byte {offset} "
                              f"(stored {stored:#010x}, computed {actual:#010x})")
    if kind == _SNAPPY_COMPRESSION:
        raise CheckpointError(f"{source}: block at byte {offset} is snappy-compressed; only "
                              "uncompressed tables are supported (TensorFlow writes checkpoints uncompressed)")
    if kind != _NO_COMPRESSION:
        raise CheckpointError(f"{source}: corrupt: block at byte {offset} has unknown compression type {kind}")
    return contents


def decode_table(table: bytes, *, source: str = "table") -> list[tuple[bytes, bytes]]:
    """All key/value pairs of a LevelDB-format table, in key order.

    ``source`` names the file in error messages. Every block's checksum is
    verified; keys must be strictly increasing.
    """
    view = memoryview(table)
    if len(view) < FOOTER_SIZE:
        raise CheckpointError(f"{source}: truncated: {len(view)} bytes, a table needs at least {FOOTER_SIZE}")
    magic = struct.unpack_from("<Q", view, len(view) - 8)[0]
    if magic != TABLE_MAGIC:
        raise CheckpointError(f"{source}: not a TensorFlow checkpoint index, or truncated "
                              f"(footer magic {magic:#018x}, expected {TABLE_MAGIC:#018x})")
    footer = view[len(view) - FOOTER_SIZE:]
    try:
        _, _, pos = _decode_handle(footer)  # metaindex: holds no filters in TensorFlow's tables
        index_offset, index_size, _ = _decode_handle(footer, pos)
    except ValueError as exc:
        raise CheckpointError(f"{source}: corrupt: bad footer ({exc})") from None
    index = _parse_block(_read_block(view, index_offset, index_size, source), source, "index block")
    items: list[tuple[bytes, bytes]] = []
    for _, handle in index:
        try:
            offset, size, _ = _decode_handle(handle)
        except ValueError as exc:
            raise CheckpointError(f"{source}: corrupt: bad block handle in the index ({exc})") from None
        items.extend(_parse_block(_read_block(view, offset, size, source), source, f"block at byte {offset}"))
    for (previous, _), (key, _) in zip(items, items[1:]):
        if key <= previous:
            raise CheckpointError(f"{source}: corrupt: keys out of order ({previous!r} then {key!r})")
    return items


def _shortest_separator(start: bytes, limit: bytes) -> bytes:
    """A short key k with start <= k < limit (LevelDB's BytewiseComparator::FindShortestSeparator)."""
    n = 0
    while n < min(len(start), len(limit)) and start[n] == limit[n]:
        n += 1
    if n < min(len(start), len(limit)) and start[n] < 0xFF and start[n] + 1 < limit[n]:
        return start[:n] + bytes([start[n] + 1])
    return start


def _short_successor(key: bytes) -> bytes:
    """A short key >= ``key`` (LevelDB's BytewiseComparator::FindShortSuccessor)."""
    for n, byte in enumerate(key):
        if byte != 0xFF:
            return key[:n] + bytes([byte + 1])
    return key


class _BlockBuilder:
    """Builds one block: prefix-compressed entries, a restart point every ``restart_interval`` keys."""

    def __init__(self, restart_interval: int):
        self.restart_interval = restart_interval
        self.buffer = bytearray()
        self.restarts = [0]
        self.count = 0  # entries since the last restart point
        self.previous = b""
        self.empty = True

    def add(self, key: bytes, value: bytes) -> None:
        shared = 0
        if self.count == self.restart_interval:
            self.restarts.append(len(self.buffer))
            self.count = 0
        else:
            limit = min(len(self.previous), len(key))
            while shared < limit and self.previous[shared] == key[shared]:
                shared += 1
        self.buffer += encode_varint(shared) + encode_varint(len(key) - shared) + encode_varint(len(value))
        self.buffer += key[shared:] + value
        self.previous = key
        self.count += 1
        self.empty = False

    def size_estimate(self) -> int:
        return len(self.buffer) + 4 * len(self.restarts) + 4

    def finish(self) -> bytes:
        restarts = struct.pack(f"<{len(self.restarts)}I", *self.restarts)
        return bytes(self.buffer) + restarts + struct.pack("<I", len(self.restarts))


def encode_table(items: Iterable[tuple[bytes, bytes]], *,
                 block_size: int = DEFAULT_BLOCK_SIZE,
                 restart_interval: int = DEFAULT_RESTART_INTERVAL) -> bytes:
    """A LevelDB-format table (uncompressed) holding ``items``, which must be sorted by key.

    A data block is closed once its estimated size reaches ``block_size``
    bytes, and index keys are shortened separators, as in TensorFlow's
    ``TableBuilder`` (tensorflow/core/lib/io/table_builder.cc).
    """
    out = bytearray()

    def write_block(builder: _BlockBuilder) -> bytes:
        contents = builder.finish()
        handle = _encode_handle(len(out), len(contents))
        trailer = bytes([_NO_COMPRESSION])
        out.extend(contents + trailer + struct.pack("<I", masked_crc32c(contents + trailer)))
        return handle

    index = _BlockBuilder(1)
    block = _BlockBuilder(restart_interval)
    pending: bytes | None = None  # handle of the last closed block, waiting for the next key
    last_key: bytes | None = None
    for key, value in items:
        if last_key is not None and key <= last_key:
            raise ValueError(f"table keys must be strictly increasing: {last_key!r} then {key!r}")
        if pending is not None:
            index.add(_shortest_separator(last_key, key), pending)
            pending = None
        block.add(key, value)
        last_key = key
        if block.size_estimate() >= block_size:
            pending = write_block(block)
            block = _BlockBuilder(restart_interval)
    if not block.empty:
        pending = write_block(block)
    if pending is not None:
        index.add(_short_successor(last_key), pending)
    metaindex = write_block(_BlockBuilder(restart_interval))
    index_handle = write_block(index)
    footer = (metaindex + index_handle).ljust(FOOTER_SIZE - 8, b"\0")
    out.extend(footer + struct.pack("<Q", TABLE_MAGIC))
    return bytes(out)


# --------------------------------------------------------------------------- tensors

def tf_dtype_name(code: int) -> str:
    """TensorFlow's name of a ``DataType`` code (``1`` -> ``'float32'``, ``21`` -> ``'variant'``)."""
    if code == DT_STRING:
        return "string"
    if code == DT_BFLOAT16:
        return "bfloat16"
    if code in DTYPES:
        return DTYPES[code].name
    return _UNSUPPORTED_DTYPES.get(code, (f"dtype code {code}", ""))[0]


def unreadable_reason(entry: BundleEntry) -> str:
    """Why this reader cannot turn the entry into an array, or ``''`` when it can.

    A partitioned variable (its bytes are slices under other keys) and a
    dtype numpy cannot hold make that one variable unreadable; the rest of
    the checkpoint still reads.
    """
    if entry.sliced:
        return "partitioned variable (stored as slices, which this reader does not reassemble)"
    if entry.dtype in DTYPES or entry.dtype in (DT_STRING, DT_BFLOAT16):
        return ""
    name, why = _UNSUPPORTED_DTYPES.get(entry.dtype, (f"code {entry.dtype}", "unknown to this reader"))
    return f"TensorFlow dtype {name} ({why})"


def numpy_dtype(code: int, *, name: str = "tensor") -> np.dtype:
    """numpy dtype of a TensorFlow ``DataType`` code; ``CheckpointError`` if numpy has none.

    ``DT_BFLOAT16`` gives :data:`niftyport.tensors.BFLOAT16`; ``DT_STRING`` ``object``.
    """
    if code == DT_STRING:
        return STRING_DTYPE
    if code == DT_BFLOAT16:
        return BFLOAT16
    try:
        return DTYPES[code]
    except KeyError:
        raise CheckpointError(f"variable {name!r} has TensorFlow dtype {tf_dtype_name(code)}, "
                              "which numpy cannot hold") from None


def dtype_code(dtype: np.dtype, *, name: str = "tensor") -> int:
    """TensorFlow ``DataType`` code of a numpy dtype (``object``/``bytes``/``str`` -> DT_STRING)."""
    dtype = np.dtype(dtype)
    if is_bfloat16(dtype):
        return DT_BFLOAT16
    if dtype == STRING_DTYPE or dtype.kind in "SU":
        return DT_STRING
    try:
        return _DTYPE_CODES[dtype.newbyteorder("=")]
    except KeyError:
        raise CheckpointError(f"tensor {name!r}: dtype {dtype} cannot be stored in a TensorFlow checkpoint") from None


def element_count(shape: Iterable[int]) -> int:
    """Number of elements of ``shape``, as an exact Python int (never wraps around)."""
    return math.prod(int(n) for n in shape)


def check_entry(entry: BundleEntry, *, name: str, num_shards: int, source: str) -> np.dtype | None:
    """Validate an entry before reading it; returns its numpy dtype (None when :func:`unreadable_reason`).

    Raises :class:`CheckpointError` (naming ``source``) for a negative
    dimension, a shape whose byte size overflows 64 bits, a shard that does
    not exist or a byte size that does not match shape and dtype.
    """
    if any(n < 0 for n in entry.shape):
        raise CheckpointError(f"{source}: corrupt: variable {name!r} has shape {entry.shape}")
    count = element_count(entry.shape)
    readable = not unreadable_reason(entry)
    dtype = numpy_dtype(entry.dtype, name=name) if readable else None
    itemsize = dtype.itemsize if dtype is not None and dtype != STRING_DTYPE else 1
    if count * itemsize > _MAX_BYTES:
        raise CheckpointError(f"{source}: corrupt: variable {name!r} has shape {entry.shape} of "
                              f"{count} elements, whose size overflows 64 bits")
    if entry.sliced:
        return None  # its bytes are elsewhere
    if not 0 <= entry.shard_id < num_shards:
        raise CheckpointError(f"{source}: corrupt: variable {name!r} is in shard {entry.shard_id} "
                              f"of {num_shards}")
    if entry.offset < 0 or entry.size < 0:
        raise CheckpointError(f"{source}: corrupt: variable {name!r} has byte offset {entry.offset} "
                              f"and size {entry.size}")
    if dtype is not None and dtype != STRING_DTYPE and entry.size != count * dtype.itemsize:
        raise CheckpointError(f"{source}: corrupt: variable {name!r} of shape {entry.shape} and dtype "
                              f"{tf_dtype_name(entry.dtype)} should take {count * dtype.itemsize} bytes, "
                              f"the index says {entry.size}")
    if dtype == STRING_DTYPE and count and entry.size < count + 4:  # a length byte each, 4 of checksum
        raise CheckpointError(f"{source}: corrupt: string variable {name!r} of {count} elements cannot "
                              f"fit in {entry.size} bytes")
    return dtype


def decode_tensor(buf: bytes, entry: BundleEntry, *, name: str, big_endian: bool = False,
                  source: str = "data") -> np.ndarray:
    """The array stored in ``buf`` (the entry's ``size`` bytes, already read from its shard).

    Verifies the masked CRC-32C when the entry has one. Returns a new,
    writeable, C-ordered array in native byte order with the entry's shape;
    strings come back as an ``object`` array of ``bytes``, bfloat16 as a
    :data:`~niftyport.tensors.BFLOAT16` array. Raises :class:`CheckpointError`
    for an entry :func:`unreadable_reason` refuses.
    """
    reason = unreadable_reason(entry)
    if reason:
        raise CheckpointError(f"{source}: variable {name!r} cannot be read: {reason}")
    if len(buf) != entry.size:
        raise CheckpointError(f"{source}: truncated: variable {name!r} needs bytes "
                              f"[{entry.offset}, {entry.offset + entry.size}) but only {len(buf)} could be read")
    dtype = numpy_dtype(entry.dtype, name=name)
    if dtype == STRING_DTYPE:
        array, checksummed = _decode_strings(buf, entry.shape, name=name, source=source)
    else:
        stored = np.frombuffer(buf, dtype=dtype.newbyteorder(">" if big_endian else "<"))
        array, checksummed = stored.reshape(entry.shape).astype(dtype, copy=True), buf
    if entry.crc32c is not None:
        actual = masked_crc32c(checksummed)
        if actual != entry.crc32c:
            raise CheckpointError(f"{source}: corrupt: crc32c mismatch for variable {name!r} "
                                  f"(stored {entry.crc32c:#010x}, computed {actual:#010x})")
    return array


def _length_bytes(lengths: Iterable[int]) -> bytes:
    """String lengths as TensorFlow checksums them: little-endian uint32 each (uint64 above 4 GiB)."""
    return b"".join(struct.pack("<I" if n <= 0xFFFFFFFF else "<Q", n) for n in lengths)


def _decode_strings(buf: bytes, shape: tuple[int, ...], *, name: str,
                    source: str) -> tuple[np.ndarray, bytes]:
    """A string tensor and the bytes its crc32c covers.

    Stored as: varint length of each element, masked crc32c of the lengths
    (uint32), then the bytes of every element. The entry's crc32c covers the
    lengths as fixed-width integers, that length checksum and the element
    bytes (``WriteStringTensor`` in tensorflow/core/util/tensor_bundle/tensor_bundle.cc).
    """
    count = element_count(shape)
    try:
        if count > len(buf):  # each length takes at least one byte
            raise ValueError(f"{count} elements cannot fit in {len(buf)} bytes")
        lengths, pos = [], 0
        for _ in range(count):
            length, pos = decode_varint(buf, pos)
            lengths.append(length)
        if pos + 4 + sum(lengths) != len(buf):
            raise ValueError("string lengths do not add up to the stored size")
    except ValueError as exc:
        raise CheckpointError(f"{source}: corrupt: string variable {name!r} ({exc})") from None
    length_checksum = buf[pos:pos + 4]
    pos += 4
    values = np.empty(count, dtype=object)
    for i, length in enumerate(lengths):
        values[i] = bytes(buf[pos:pos + length])
        pos += length
    return values.reshape(shape), _length_bytes(lengths) + length_checksum + buf[pos - sum(lengths):]


def _string_items(array: np.ndarray, name: str) -> list[bytes]:
    """The elements of a string tensor as bytes (str as UTF-8); refuses anything else."""
    items = []
    for value in array.reshape(-1):
        if isinstance(value, str):
            items.append(value.encode("utf-8"))
        elif isinstance(value, (bytes, np.bytes_)):
            items.append(bytes(value))
        else:
            raise CheckpointError(f"tensor {name!r}: object array holds a {type(value).__name__} "
                                  f"({value!r}); only str or bytes elements can be stored (as a string tensor)")
    return items


def encode_tensor(array: np.ndarray, *, name: str = "tensor") -> tuple[bytes, int]:
    """``(bytes as a bundle stores them, masked crc32c)`` of ``array``.

    Numbers are stored little-endian in C order; strings (object arrays of
    str/bytes, numpy ``S``/``U`` arrays) as TensorFlow stores them. Any other
    object array raises :class:`CheckpointError`.
    """
    if array.dtype == STRING_DTYPE or array.dtype.kind in "SU":
        items = _string_items(array, name)
        lengths = [len(v) for v in items]
        length_checksum = struct.pack("<I", masked_crc32c(_length_bytes(lengths)))
        strings = b"".join(items)
        payload = b"".join(encode_varint(n) for n in lengths) + length_checksum + strings
        return payload, masked_crc32c(_length_bytes(lengths) + length_checksum + strings)
    payload = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    return payload, masked_crc32c(payload)


def encode_bundle(tensors: Mapping[str, np.ndarray], *,
                  block_size: int = DEFAULT_BLOCK_SIZE) -> tuple[bytes, bytes]:
    """``(index bytes, data bytes)`` of a one-shard bundle holding ``tensors``.

    Tensors are stored in name order; each entry carries its masked CRC-32C.
    """
    data = bytearray()
    items = [(HEADER_KEY, encode_header(BundleHeader()))]
    for name in sorted(tensors, key=lambda n: n.encode("utf-8")):
        if not name:
            raise CheckpointError("tensor names must not be empty (the empty key holds the bundle header)")
        array = np.asarray(tensors[name])
        code = dtype_code(array.dtype, name=name)
        payload, crc = encode_tensor(array, name=name)
        entry = BundleEntry(dtype=code, shape=tuple(array.shape), offset=len(data), size=len(payload), crc32c=crc)
        data += payload
        items.append((name.encode("utf-8"), encode_entry(entry)))
    return encode_table(items, block_size=block_size), bytes(data)


def decode_index(table: bytes, *, source: str = "index") -> tuple[BundleHeader, dict[str, BundleEntry]]:
    """Header and ``{variable name: entry}`` (in key order) of a ``.index`` file's bytes."""
    items = decode_table(table, source=source)
    if not items or items[0][0] != HEADER_KEY:
        raise CheckpointError(f"{source}: no bundle header (first key {items[0][0]!r} "
                              "instead of the empty key)" if items else f"{source}: holds no entries")
    try:
        header = decode_header(items[0][1])
        # keys starting with a zero byte hold the slices of partitioned variables, listed by those
        # variables' own entries (``BundleEntry.sliced``); they are no variables themselves
        entries = {key.decode("utf-8"): decode_entry(value) for key, value in items[1:]
                   if not key.startswith(_SLICE_KEY_PREFIX)}
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{source}: corrupt: bad entry ({exc})") from None
    if header.num_shards < 1:
        raise CheckpointError(f"{source}: corrupt: header says {header.num_shards} data shards")
    if header.min_consumer > BUNDLE_VERSION:
        raise CheckpointError(f"{source}: needs a reader of bundle version >= {header.min_consumer}; "
                              f"this one reads version {BUNDLE_VERSION}")
    return header, entries


def data_file_suffix(shard: int, num_shards: int) -> str:
    """``.data-00000-of-00001`` style suffix of shard ``shard``."""
    return f".data-{shard:05d}-of-{num_shards:05d}"
