"""The hand-written protobuf encoding of bulk messages is ordinary protobuf.

``mpc_core.protowire`` encodes and decodes the share-carrying messages
without the protobuf runtime's copies. These properties check it against
that runtime: what we encode is byte for byte what ``SerializeToString``
produces, what the runtime encodes we decode to the same values, and any
other bytes are refused with ``WireFormatError`` and nothing else.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpc_core import protowire, ring
from mpc_core.protowire import WireFormatError
from mpc_proto.v1 import client_service_pb2 as cpb
from mpc_proto.v1 import types_pb2

uint64s = st.integers(min_value=0, max_value=2**64 - 1)
word_bytes = st.binary(max_size=64).map(lambda raw: raw[: len(raw) // 8 * 8])
ITEM_MESSAGES = (cpb.UploadDatasetRequest, cpb.FetchOutputResponse)


def _chunk_item(message_type: type, offset: int, first: bytes, second: bytes) -> bytes:
    chunk = types_pb2.ShareChunk(offset=offset, first=first, second=second)
    return bytes(message_type(chunk=chunk).SerializeToString())


@given(uint64s)
def test_varints_match_the_runtime(value: int) -> None:
    assert protowire.uint_field(1, value) == types_pb2.ShareChunk(offset=value).SerializeToString()


@pytest.mark.parametrize("value", [-1, 2**64])
def test_varints_outside_64_bits_are_refused(value: int) -> None:
    with pytest.raises(ValueError, match="varint out of range"):
        protowire.varint(value)


@given(uint64s, word_bytes, word_bytes)
def test_chunk_items_are_encoded_as_the_runtime_does(offset: int, first: bytes, second: bytes) -> None:
    ours = protowire.encode_chunk_item(offset, memoryview(first), memoryview(second))
    for message_type in ITEM_MESSAGES:
        assert ours == _chunk_item(message_type, offset, first, second)


@given(uint64s, word_bytes, word_bytes)
def test_chunk_items_from_the_runtime_decode_to_their_values(
    offset: int, first: bytes, second: bytes
) -> None:
    for message_type in ITEM_MESSAGES:
        number, chunk = protowire.decode_item(_chunk_item(message_type, offset, first, second))
        assert number == protowire.ITEM_CHUNK
        assert isinstance(chunk, protowire.ChunkView)
        assert (chunk.offset, bytes(chunk.first), bytes(chunk.second)) == (offset, first, second)


def test_other_members_come_back_as_their_bytes() -> None:
    header = cpb.OutputInfo(shape=[3, 2], fractional_bits=32)
    number, raw = protowire.decode_item(cpb.FetchOutputResponse(header=header).SerializeToString())
    assert number == protowire.ITEM_HEADER
    assert cpb.OutputInfo.FromString(bytes(raw)) == header
    number, raw = protowire.decode_item(cpb.FetchOutputResponse(second_digest=b"d" * 32).SerializeToString())
    assert (number, bytes(raw)) == (protowire.ITEM_SECOND_DIGEST, b"d" * 32)


def test_decoded_chunks_are_views_of_the_message_not_copies() -> None:
    message = bytearray(_chunk_item(cpb.UploadDatasetRequest, 5, b"\x01" * 8, b"\x02" * 8))
    _, chunk = protowire.decode_item(message)
    assert isinstance(chunk, protowire.ChunkView)
    message[-1] = 0xFF
    assert chunk.second[-1] == 0xFF
    assert "\x02" not in repr(chunk) and "bytes" in repr(chunk)  # sizes only


@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_wire_format_error(data: bytes) -> None:
    with contextlib.suppress(WireFormatError):
        protowire.decode_item(data)


@given(uint64s, word_bytes, word_bytes, st.data())
def test_mutated_messages_decode_or_raise_wire_format_error(
    offset: int, first: bytes, second: bytes, data: st.DataObject
) -> None:
    message = bytearray(_chunk_item(cpb.UploadDatasetRequest, offset, first, second))
    position = data.draw(st.integers(0, len(message) - 1))
    message[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(message)))
    with contextlib.suppress(WireFormatError):
        protowire.decode_item(bytes(message[:cut]))


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "found 0"),
        (b"\x12\x05\x08\x01", "runs past the end"),
        (b"\x12\x00\x12\x00", "found 2"),
        (b"\x10\x01", "must be length-delimited"),
        (b"\x12\x02\x10\x01", "must be length-delimited"),  # ShareChunk.first as a varint
        (b"\x12\x02\x0a\x00", "must be a varint"),  # ShareChunk.offset as bytes
        (b"\x0b", "unsupported wire type 3"),
        (b"\x12" + b"\xff" * 10, "overlong varint"),
        (b"\x02", "field number 0"),
    ],
)
def test_malformed_messages_name_the_problem(data: bytes, reason: str) -> None:
    with pytest.raises(WireFormatError, match=reason):
        protowire.decode_item(data)


def test_unknown_fields_are_skipped_as_protobuf_does() -> None:
    extra = protowire.uint_field(9, 7) + protowire.tag(10, protowire.I64) + bytes(8)
    extra += protowire.tag(11, protowire.I32) + bytes(4)
    message = extra + _chunk_item(cpb.UploadDatasetRequest, 1, b"a" * 8, b"")
    number, chunk = protowire.decode_item(message)
    assert number == protowire.ITEM_CHUNK and isinstance(chunk, protowire.ChunkView)
    assert (chunk.offset, bytes(chunk.first), bytes(chunk.second)) == (1, b"a" * 8, b"")


def test_field_numbers_match_the_protos() -> None:
    chunk = types_pb2.ShareChunk.DESCRIPTOR.fields_by_name
    assert (chunk["offset"].number, chunk["first"].number, chunk["second"].number) == (
        protowire.CHUNK_OFFSET,
        protowire.CHUNK_FIRST,
        protowire.CHUNK_SECOND,
    )
    for message_type in ITEM_MESSAGES:
        members = message_type.DESCRIPTOR.fields_by_name
        assert members["header"].number == protowire.ITEM_HEADER
        assert members["chunk"].number == protowire.ITEM_CHUNK
        assert members["chunk"].message_type.full_name == "mpc.v1.ShareChunk"
    assert (
        cpb.FetchOutputResponse.DESCRIPTOR.fields_by_name["second_digest"].number
        == protowire.ITEM_SECOND_DIGEST
    )


@given(st.lists(uint64s, max_size=20))
def test_ring_wire_bytes_are_the_little_endian_words(words: list[int]) -> None:
    values = np.array(words, dtype=np.uint64)
    view = ring.wire_bytes(values)
    assert bytes(view) == b"".join(word.to_bytes(8, "little") for word in words)
    assert np.array_equal(ring.wire_view(bytes(view)), values)


def test_ring_wire_bytes_share_the_arrays_memory() -> None:
    values = np.arange(4, dtype=np.uint64)
    view = ring.wire_bytes(values)
    values[0] = 9
    assert view[0] == 9


@given(st.integers(0, 40), st.booleans(), st.booleans(), st.integers(1, 7))
def test_chunk_items_cover_both_components_in_order(
    words: int, has_first: bool, has_second: bool, per: int
) -> None:
    first = bytes(range(8)) * words if has_first else b""
    second = bytes(range(8, 16)) * words if has_second else b""
    items = list(protowire.encode_chunk_items(memoryview(first), memoryview(second), per))
    chunks = [protowire.decode_item(item)[1] for item in items]
    assert all(isinstance(chunk, protowire.ChunkView) for chunk in chunks)
    views = [chunk for chunk in chunks if isinstance(chunk, protowire.ChunkView)]
    assert [chunk.offset for chunk in views] == list(range(0, max(len(first), len(second)) // 8, per))
    assert b"".join(bytes(c.first) for c in views) == first
    assert b"".join(bytes(c.second) for c in views) == second
