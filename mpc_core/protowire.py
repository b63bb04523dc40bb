"""Protocol-buffer wire format for the bulk messages, without extra copies.

Share vectors travel in ``bytes`` fields of ``mpc.v1`` messages
(``ShareChunk.first``/``second``, ``DataChunk.payload``). The protobuf runtime
copies such a field several times on its way from a numpy array to the
socket and back (into the message, out of it when serializing, again when
parsing and reading the field), which profiling showed to be a large share
of a server's time on big jobs. This module encodes those messages straight
from the array's memory into the one ``bytes`` object gRPC sends, and
decodes received messages into zero-copy ``memoryview`` slices.

It is not a protobuf implementation: only the encoding rules the bulk
messages need (varints, tags, length-delimited fields; `the encoding guide
<https://protobuf.dev/programming-guides/encoding/>`_). The output is
ordinary protobuf, byte for byte what the runtime produces (fields in
number order, zero and empty values left out), so clients in any language
read and write these messages with their generated code. The field numbers
below mirror ``protos/mpc/v1``; a test checks them against the descriptors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from mpc_core.errors import ShareFormatError

VARINT, I64, LEN, I32 = 0, 1, 2, 5
_MAX_VARINT_BYTES = 10

# ShareChunk (types.proto)
CHUNK_OFFSET, CHUNK_FIRST, CHUNK_SECOND = 1, 2, 3
# UploadDatasetRequest and FetchOutputResponse (client_service.proto): the
# oneof ``item``, whose ``chunk`` member is a ShareChunk in both.
ITEM_HEADER, ITEM_CHUNK, ITEM_SECOND_DIGEST = 1, 2, 3
ITEM_TOKENS = 3
"""UploadDatasetRequest.tokens (field 3 of that oneof, as second_digest is of FetchOutputResponse's)."""
ITEM_ROW_TOKENS = 4
"""FetchOutputResponse.row_tokens."""

Field = tuple[int, int, "int | memoryview"]
"""A decoded field: number, wire type, value (an int, or a slice of the input)."""


class WireFormatError(ShareFormatError):
    """Bytes that are not a well-formed message of the expected type."""


def varint(value: int) -> bytes:
    """The base-128 varint encoding of a non-negative integer below 2^64."""
    if not 0 <= value < 1 << 64:
        raise ValueError(f"varint out of range: {value}")
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    """The key of field ``number`` with ``wire_type``."""
    return varint(number << 3 | wire_type)


def uint_field(number: int, value: int) -> bytes:
    """A varint field, or nothing for 0 (proto3 leaves defaults out)."""
    return tag(number, VARINT) + varint(value) if value else b""


def len_prefix(number: int, length: int) -> bytes:
    """Key and length of a length-delimited field of ``length`` bytes."""
    return tag(number, LEN) + varint(length)


def _read_varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    end = min(len(data), pos + _MAX_VARINT_BYTES)
    while pos < end:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            if result >= 1 << 64:
                raise WireFormatError("varint exceeds 64 bits")
            return result, pos
        shift += 7
    raise WireFormatError("truncated or overlong varint")


def fields(data: memoryview) -> Iterator[Field]:
    """The fields of one encoded message, in order; LEN values are slices.

    Raises:
        WireFormatError: truncated data, a group (wire types 3 and 4) or
            another malformed key.
    """
    pos, size = 0, len(data)
    while pos < size:
        key, pos = _read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise WireFormatError("field number 0")
        if wire_type == VARINT:
            value, pos = _read_varint(data, pos)
            yield number, wire_type, value
        elif wire_type == LEN:
            length, pos = _read_varint(data, pos)
            if length > size - pos:
                raise WireFormatError("length-delimited field runs past the end")
            yield number, wire_type, data[pos : pos + length]
            pos += length
        elif wire_type in (I64, I32):
            width = 8 if wire_type == I64 else 4
            if width > size - pos:
                raise WireFormatError("fixed-width field runs past the end")
            yield number, wire_type, int.from_bytes(data[pos : pos + width], "little")
            pos += width
        else:
            raise WireFormatError(f"unsupported wire type {wire_type}")


def expect_len(field: Field, what: str) -> memoryview:
    """The bytes of a length-delimited field, or a clear error."""
    number, wire_type, value = field
    if wire_type != LEN or not isinstance(value, memoryview):
        raise WireFormatError(f"{what} (field {number}) must be length-delimited")
    return value


def expect_uint(field: Field, what: str) -> int:
    """The value of a varint field, or a clear error."""
    number, wire_type, value = field
    if wire_type != VARINT or not isinstance(value, int):
        raise WireFormatError(f"{what} (field {number}) must be a varint")
    return value


@dataclass(frozen=True, eq=False, repr=False)
class ChunkView:
    """A decoded ``ShareChunk``: slices of the received message, no copies."""

    offset: int
    first: memoryview
    second: memoryview

    def __repr__(self) -> str:
        """Sizes only: share bytes stay out of logs."""
        return f"ChunkView(offset={self.offset}, {len(self.first)} + {len(self.second)} bytes)"


_EMPTY = memoryview(b"")


def decode_chunk(data: memoryview) -> ChunkView:
    """Decode a ``ShareChunk`` (unknown fields are skipped)."""
    offset, first, second = 0, _EMPTY, _EMPTY
    for field in fields(data):
        if field[0] == CHUNK_OFFSET:
            offset = expect_uint(field, "ShareChunk.offset")
        elif field[0] == CHUNK_FIRST:
            first = expect_len(field, "ShareChunk.first")
        elif field[0] == CHUNK_SECOND:
            second = expect_len(field, "ShareChunk.second")
    return ChunkView(offset, first, second)


def encode_chunk_item(offset: int, first: memoryview, second: memoryview) -> bytes:
    """An ``UploadDatasetRequest``/``FetchOutputResponse`` carrying one chunk.

    ``first`` and ``second`` are the components' little-endian bytes (e.g.
    ``ring.wire_bytes``); they are copied once, into the returned message.
    """
    head = uint_field(CHUNK_OFFSET, offset)
    if len(first):
        head += len_prefix(CHUNK_FIRST, len(first))
    middle = len_prefix(CHUNK_SECOND, len(second)) if len(second) else b""
    inner = len(head) + len(first) + len(middle) + len(second)
    return b"".join((len_prefix(ITEM_CHUNK, inner), head, first, middle, second))


SHARE_BYTES_PER_MESSAGE = 2 << 20
"""Share bytes one chunk message carries at most (receivers accept 4 MiB messages)."""


def chunk_elements(element_bytes: int, components: int) -> int:
    """Elements per chunk when ``components`` (1 or 2) travel: 2 MiB of share bytes in all."""
    return SHARE_BYTES_PER_MESSAGE // (element_bytes * components)


def encode_chunk_items(
    first: memoryview, second: memoryview, element_bytes: int, elements_per_chunk: int | None = None
) -> Iterator[bytes]:
    """Both components' bytes as consecutive chunk items; offsets count elements.

    Either component may be empty (seed-compressed uploads, digest-mode
    outputs); the longer one sets the number of chunks. By default a chunk
    holds :func:`chunk_elements` elements per component.
    """
    components = 2 if len(first) and len(second) else 1
    per_chunk = elements_per_chunk or chunk_elements(element_bytes, components)
    step = per_chunk * element_bytes
    for start in range(0, max(len(first), len(second)), step):
        end = start + step
        yield encode_chunk_item(start // element_bytes, first[start:end], second[start:end])


def decode_item(data: bytes | memoryview) -> tuple[int, ChunkView | memoryview]:
    """The member set in an ``item`` oneof: its number and its value.

    A ``chunk`` comes back decoded; any other member as its raw bytes, for
    the caller to parse with the generated class (they are small).

    Raises:
        WireFormatError: malformed bytes, or not exactly one member set.
    """
    members = (ITEM_HEADER, ITEM_CHUNK, ITEM_SECOND_DIGEST, ITEM_ROW_TOKENS)
    items = [field for field in fields(memoryview(data)) if field[0] in members]
    if len(items) != 1:
        raise WireFormatError(f"expected one item in the message, found {len(items)}")
    number = items[0][0]
    value = expect_len(items[0], "item")
    return number, decode_chunk(value) if number == ITEM_CHUNK else value
