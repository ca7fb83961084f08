import struct

import numpy as np
import pytest

from niftyport.checkpoint import bundle as tb
from niftyport.errors import CheckpointError


def index_bytes(prefix):
    return prefix.with_name(prefix.name + ".index").read_bytes()


def data_bytes(prefix):
    return prefix.with_name(prefix.name + ".data-00000-of-00001").read_bytes()


# --------------------------------------------------------------------------- checksums, varints

def test_masked_crc32c_of_the_standard_check_string():
    # CRC-32C("123456789") = 0xe3069283 (the RFC 3720 check value); rotated right by 15
    # and offset by 0xa282ead8 as LevelDB masks it: 0xc78ab0e5.
    assert tb.masked_crc32c(b"123456789") == 0xC78AB0E5


@pytest.mark.parametrize("value, encoded", [
    (0, "00"), (1, "01"), (127, "7f"), (128, "8001"), (300, "ac02"),
    (2**63 - 1, "ffffffffffffffff7f"), (-1, "ffffffffffffffffff01"),
])
def test_varint_encoding(value, encoded):
    assert tb.encode_varint(value).hex() == encoded
    decoded, end = tb.decode_varint(bytes.fromhex(encoded), 0)
    assert end == len(encoded) // 2
    assert decoded == value % 2**64


def test_truncated_varint_is_an_error():
    with pytest.raises(ValueError, match="past the end"):
        tb.decode_varint(b"\x80\x80", 0)


# --------------------------------------------------------------------------- golden files written by TensorFlow

def test_real_index_decodes_and_reencodes_byte_for_byte(checkpoint_prefix):
    raw = index_bytes(checkpoint_prefix)
    items = tb.decode_table(raw, source="index")
    assert len(items) == 1 + 381  # header + TensorFlow's listing
    assert items[0] == (b"", bytes.fromhex("08011a020801"))  # num_shards: 1, version { producer: 1 }
    assert tb.encode_table(items) == raw


def test_real_entries_reencode_byte_for_byte(checkpoint_prefix):
    items = tb.decode_table(index_bytes(checkpoint_prefix))
    header = tb.decode_header(items[0][1])
    assert (header.num_shards, header.big_endian, header.producer) == (1, False, 1)
    for _, value in items[1:]:
        assert tb.encode_entry(tb.decode_entry(value)) == value
    first = tb.decode_entry(items[1][1])  # ...conv_0_bn_relu/bn_/.../moving_mean/biased, 16 floats
    assert (first.dtype, first.shape, first.offset, first.size) == (1, (16,), 0, 64)


def test_encoding_every_variable_reproduces_tensorflows_files(checkpoint_prefix):
    header, entries = tb.decode_index(index_bytes(checkpoint_prefix))
    data = data_bytes(checkpoint_prefix)
    arrays = {name: tb.decode_tensor(data[e.offset:e.offset + e.size], e, name=name)
              for name, e in entries.items()}
    index, payload = tb.encode_bundle(arrays)
    assert index == index_bytes(checkpoint_prefix)
    assert payload == data


# --------------------------------------------------------------------------- tables

def test_separators_as_leveldb_shortens_them():
    assert tb._shortest_separator(b"abcdef", b"abzz") == b"abd"
    assert tb._shortest_separator(b"abc", b"abd") == b"abc"  # c + 1 is not < d
    assert tb._shortest_separator(b"ab", b"abc") == b"ab"  # prefix: unchanged
    assert tb._short_successor(b"global_step") == b"h"
    assert tb._short_successor(b"\xff\xffa") == b"\xff\xffb"
    assert tb._short_successor(b"\xff") == b"\xff"


def _many_items(n=600):
    # long shared prefixes exercise prefix compression and restart points
    return [(f"scope/layer_{i:04d}/kernel".encode(), bytes([i % 251]) * (i % 7)) for i in range(n)]


def test_multi_block_table_round_trips():
    items = _many_items()
    raw = tb.encode_table(items, block_size=512)
    footer = raw[-tb.FOOTER_SIZE:]
    _, _, pos = tb._decode_handle(footer)
    index_offset, index_size, _ = tb._decode_handle(footer, pos)
    index = tb._parse_block(memoryview(raw)[index_offset:index_offset + index_size], "x.index", "index block")
    assert len(index) > 10  # many data blocks
    assert tb.decode_table(raw) == items


def test_prefix_compression_stores_shared_prefix_once():
    items = [(b"HighRes3DNet/res_1_0/conv_0/w", b"A"), (b"HighRes3DNet/res_1_0/conv_1/w", b"B")]
    raw = tb.encode_table(items)
    # second entry: 26 shared bytes, 3 new ("1/w"), value of 1 byte
    assert bytes([26, 3, 1]) + b"1/wB" in raw
    assert raw.count(b"HighRes3DNet") == 1


def _first_block(raw):
    footer = raw[-tb.FOOTER_SIZE:]
    _, _, pos = tb._decode_handle(footer)
    index_offset, index_size, _ = tb._decode_handle(footer, pos)
    (_, handle), = tb._parse_block(memoryview(raw)[index_offset:index_offset + index_size], "x.index", "index block")
    offset, size, _ = tb._decode_handle(handle)
    return offset, size


def test_snappy_compressed_block_is_rejected_clearly():
    raw = bytearray(tb.encode_table(_many_items(20)))
    offset, size = _first_block(bytes(raw))
    raw[offset + size] = 1  # compression type: snappy; re-checksum so only the type is "wrong"
    struct.pack_into("<I", raw, offset + size + 1, tb.masked_crc32c(bytes(raw[offset:offset + size + 1])))
    with pytest.raises(CheckpointError, match="snappy-compressed"):
        tb.decode_table(bytes(raw), source="x.index")


def test_corrupt_block_fails_its_checksum():
    raw = bytearray(tb.encode_table(_many_items(20)))
    offset, size = _first_block(bytes(raw))
    raw[offset + 5] ^= 0x01
    with pytest.raises(CheckpointError, match=r"x\.index: corrupt: crc32c mismatch in block at byte 0"):
        tb.decode_table(bytes(raw), source="x.index")


def test_truncated_table_is_detected():
    raw = tb.encode_table(_many_items(20))
    with pytest.raises(CheckpointError, match="footer magic"):
        tb.decode_table(raw[:-1], source="x.index")
    with pytest.raises(CheckpointError, match="truncated: 20 bytes"):
        tb.decode_table(raw[:20], source="x.index")


def test_unsorted_keys_are_refused_when_writing():
    with pytest.raises(ValueError, match="strictly increasing"):
        tb.encode_table([(b"b", b""), (b"a", b"")])


# --------------------------------------------------------------------------- tensors

@pytest.mark.parametrize("dtype, code", [
    # TensorFlow's DataType enum (tensorflow/core/framework/types.proto)
    (np.float32, 1), (np.float64, 2), (np.int32, 3), (np.uint8, 4), (np.int16, 5), (np.int8, 6),
    (np.int64, 9), (np.bool_, 10), (np.float16, 19),
])
def test_dtype_codes_and_round_trip(dtype, code):
    assert tb.dtype_code(np.dtype(dtype)) == code
    array = (np.arange(12) % 3 - 1).astype(dtype).reshape(3, 4)
    payload, crc = tb.encode_tensor(array)
    assert payload == array.astype(np.dtype(dtype).newbyteorder("<")).tobytes()
    entry = tb.BundleEntry(dtype=code, shape=(3, 4), size=len(payload), crc32c=crc)
    back = tb.decode_tensor(payload, entry, name="t")
    assert back.dtype == np.dtype(dtype) and np.array_equal(back, array)


def test_big_endian_bundle_values():
    payload = np.array([1.5, -2.0], dtype=">f4").tobytes()
    entry = tb.BundleEntry(dtype=1, shape=(2,), size=8, crc32c=tb.masked_crc32c(payload))
    back = tb.decode_tensor(payload, entry, name="t", big_endian=True)
    assert back.dtype == np.float32 and back.tolist() == [1.5, -2.0]


def test_string_tensor_layout():
    import crc32c

    strings = np.array([b"hello", b"", "w\u00f6rld".encode()], dtype=object)
    payload, crc = tb.encode_tensor(strings)
    lengths_le32 = struct.pack("<3I", 5, 0, 6)
    assert payload[:3] == bytes([5, 0, 6])  # varint lengths
    assert payload[3:7] == struct.pack("<I", tb.masked_crc32c(lengths_le32))
    assert payload[7:] == b"hellow\xc3\xb6rld"
    assert crc == tb.masked_crc32c(lengths_le32 + payload[3:7] + payload[7:])
    raw_crc = crc32c.crc32c(lengths_le32 + payload[3:])
    assert crc == (((raw_crc >> 15) | (raw_crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    entry = tb.BundleEntry(dtype=tb.DT_STRING, shape=(3,), size=len(payload), crc32c=crc)
    assert tb.decode_tensor(payload, entry, name="s").tolist() == [b"hello", b"", "w\u00f6rld".encode()]


def test_wrong_tensor_checksum_names_the_variable():
    payload, crc = tb.encode_tensor(np.ones(4, np.float32))
    entry = tb.BundleEntry(dtype=1, shape=(4,), size=16, crc32c=crc ^ 1)
    with pytest.raises(CheckpointError, match=r"crc32c mismatch for variable 'net/w'"):
        tb.decode_tensor(payload, entry, name="net/w", source="x.data-00000-of-00001")


def test_entry_size_must_match_shape_and_dtype():
    entry = tb.BundleEntry(dtype=1, shape=(2, 3), size=20)
    with pytest.raises(CheckpointError, match="should take 24 bytes, the index says 20"):
        tb.check_entry(entry, name="w", num_shards=1, source="x.index")


def test_unsupported_dtype_is_named():
    with pytest.raises(CheckpointError, match="variant"):
        tb.numpy_dtype(21, name="w")
    entry = tb.BundleEntry(dtype=21, shape=(3,), size=50)
    assert tb.unreadable_reason(entry).startswith("TensorFlow dtype variant (")
    assert tb.check_entry(entry, name="w", num_shards=1, source="x") is None
    with pytest.raises(CheckpointError, match="x: variable 'w' cannot be read: TensorFlow dtype variant"):
        tb.decode_tensor(b"\0" * 50, entry, name="w", source="x")


def test_sliced_variables_are_listed_but_not_read():
    entry = tb.BundleEntry(dtype=1, shape=(4,), sliced=True)
    assert tb.check_entry(entry, name="w", num_shards=1, source="x") is None
    assert "partitioned" in tb.unreadable_reason(entry)
    with pytest.raises(CheckpointError, match="partitioned"):
        tb.decode_tensor(b"", entry, name="w")
