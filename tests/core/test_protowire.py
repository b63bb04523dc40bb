"""The hand-written protobuf encoding of bulk messages is ordinary protobuf.

``mpc_core.protowire`` encodes and decodes the share-carrying messages
without the protobuf runtime's copies. These properties check it against
that runtime: what we encode is byte for byte what ``SerializeToString``
produces, what the runtime encodes we decode to the same values, and any
other bytes are refused with ``WireFormatError`` and nothing else.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc_core import protowire
from mpc_core.protowire import SHARE_BYTES_PER_MESSAGE, WireFormatError, chunk_elements
from mpc_core.ring import RING64, RING128, Ring
from mpc_proto.v1 import client_service_pb2 as cpb
from mpc_proto.v1 import types_pb2

uint64s = st.integers(min_value=0, max_value=2**64 - 1)
word_bytes = st.binary(max_size=64).map(lambda raw: raw[: len(raw) // 8 * 8])
ITEM_MESSAGES = (cpb.UploadDatasetRequest, cpb.FetchOutputResponse)
RINGS = pytest.mark.parametrize("ring", [RING64, RING128], ids=["Z2^64", "Z2^128"])


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


@RINGS
@given(values=st.lists(st.integers(min_value=0, max_value=2**128 - 1), max_size=20))
def test_ring_wire_bytes_are_the_little_endian_elements(ring: Ring, values: list[int]) -> None:
    array = ring.from_ints(values)
    view = ring.wire_bytes(array)
    expected = b"".join((v % ring.modulus).to_bytes(ring.element_bytes, "little") for v in values)
    assert bytes(view) == expected
    assert ring.wire_view(bytes(view)).tobytes() == array.tobytes()


@RINGS
def test_ring_wire_bytes_share_the_arrays_memory(ring: Ring) -> None:
    values = ring.from_ints([0, 1, 2, 3])
    view = ring.wire_bytes(values)
    values[0] = ring.from_ints(9)
    assert view[0] == 9


def test_chunk_elements_fill_two_mebibytes() -> None:
    assert SHARE_BYTES_PER_MESSAGE == 2 * 1024 * 1024
    assert chunk_elements(8, 1) == 262144
    assert chunk_elements(8, 2) == 131072
    assert chunk_elements(16, 1) == 131072
    assert chunk_elements(16, 2) == 65536


def decoded_chunks(items: list[bytes]) -> list[protowire.ChunkView]:
    chunks = []
    for item in items:
        number, chunk = protowire.decode_item(item)
        assert number == protowire.ITEM_CHUNK
        assert isinstance(chunk, protowire.ChunkView)
        chunks.append(chunk)
    return chunks


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from([8, 16]),
    st.integers(0, 40),
    st.booleans(),
    st.booleans(),
    st.integers(1, 7),
)
def test_chunk_items_cover_both_components_in_order(
    element_bytes: int, elements: int, has_first: bool, has_second: bool, per: int
) -> None:
    first = bytes(range(element_bytes)) * elements if has_first else b""
    second = bytes(range(100, 100 + element_bytes)) * elements if has_second else b""
    items = list(protowire.encode_chunk_items(memoryview(first), memoryview(second), element_bytes, per))
    chunks = decoded_chunks(items)
    count = max(len(first), len(second)) // element_bytes
    assert [chunk.offset for chunk in chunks] == list(range(0, count, per))
    assert all(len(c.first) <= per * element_bytes and len(c.second) <= per * element_bytes for c in chunks)
    assert b"".join(bytes(c.first) for c in chunks) == first
    assert b"".join(bytes(c.second) for c in chunks) == second
    for chunk, item in zip(chunks, items, strict=True):
        assert item == _chunk_item(
            cpb.UploadDatasetRequest, chunk.offset, bytes(chunk.first), bytes(chunk.second)
        )


@RINGS
@pytest.mark.parametrize("components", ["both", "first", "second"])
def test_default_chunks_carry_at_most_2_mib_of_share_bytes(ring: Ring, components: str) -> None:
    width = ring.element_bytes
    per = chunk_elements(width, 2 if components == "both" else 1)
    count = 2 * per + per // 3  # two full chunks and a partial one
    first = bytes((i * 7) % 251 for i in range(count * width)) if components != "second" else b""
    second = bytes((i * 11) % 253 for i in range(count * width)) if components != "first" else b""
    items = list(protowire.encode_chunk_items(memoryview(first), memoryview(second), width))
    chunks = decoded_chunks(items)
    assert len(chunks) == 3
    sizes = [len(c.first) + len(c.second) for c in chunks]
    assert all(size <= SHARE_BYTES_PER_MESSAGE for size in sizes)
    assert sizes[:2] == [SHARE_BYTES_PER_MESSAGE] * 2  # full chunks use the whole budget
    assert all(len(item) < 4 << 20 for item in items)  # receivers accept 4 MiB messages
    assert [c.offset for c in chunks] == [0, per, 2 * per]  # offsets count elements, not bytes
    assert b"".join(bytes(c.first) for c in chunks) == first
    assert b"".join(bytes(c.second) for c in chunks) == second
    for chunk, item in zip(chunks, items, strict=True):
        assert item == _chunk_item(
            cpb.FetchOutputResponse, chunk.offset, bytes(chunk.first), bytes(chunk.second)
        )
    # What the chunks carry are whole elements of the ring.
    for component in ("first", "second"):
        joined = b"".join(bytes(getattr(c, component)) for c in chunks)
        assert len(ring.from_wire(joined)) == (count if joined else 0)


@RINGS
def test_ring_arrays_round_trip_through_chunk_items(ring: Ring) -> None:
    first = ring.from_ints([3 * i - 2**100 for i in range(50)])
    second = ring.from_ints([-(i**5) for i in range(50)])
    items = protowire.encode_chunk_items(
        ring.wire_bytes(first), ring.wire_bytes(second), ring.element_bytes, 8
    )
    chunks = decoded_chunks(list(items))
    assert [c.offset for c in chunks] == list(range(0, 50, 8))
    assert ring.from_wire(b"".join(bytes(c.first) for c in chunks)).tobytes() == first.tobytes()
    assert ring.from_wire(b"".join(bytes(c.second) for c in chunks)).tobytes() == second.tobytes()


def test_no_items_for_no_elements() -> None:
    assert list(protowire.encode_chunk_items(memoryview(b""), memoryview(b""), 16)) == []
