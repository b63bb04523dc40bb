"""The UploadDataset request streams for each server, plain or seed-compressed.

Plain: server ``i`` receives both of its components ``(x_i, x_{i+1})`` in
chunks. Seed-compressed (the default): components 0 and 1 are PRG
expansions of two fresh 16-byte seeds, so server 0 receives only both seeds,
server 1 ``seed_1`` and the vector ``x_2``, server 2 ``x_2`` and ``seed_0``
(``UploadHeader.first_seed``/``second_seed`` in ``protos/``). Two vectors
cross the network instead of six, and the client draws far less randomness.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from mpc_client._transport import ServerConnection
from mpc_core.errors import EncodingError, ProtocolError
from mpc_core.fixed_point import FixedPoint, magnitude_bits_of
from mpc_core.protowire import encode_chunk_items
from mpc_core.ring import Ring, RingArray, ring_of
from mpc_core.sharing import ReplicatedShare, SeededSplit
from mpc_core.types import PartyId
from mpc_proto.v1 import client_service_pb2 as pb

_NOTHING = memoryview(b"")


def _chunks(ring: Ring, first: RingArray | None, second: RingArray | None) -> Iterator[bytes]:
    """Encoded chunk requests of 2 MiB of shares, straight from the arrays (one copy each)."""
    first_bytes = _NOTHING if first is None else ring.wire_bytes(first)
    second_bytes = _NOTHING if second is None else ring.wire_bytes(second)
    return encode_chunk_items(first_bytes, second_bytes, ring.element_bytes)


def _header(header: pb.UploadHeader) -> bytes:
    return pb.UploadDatasetRequest(header=header).SerializeToString()


TOKEN_MESSAGE_BYTES = 2 << 20


def _tokens(tokens: bytes) -> Iterator[bytes]:
    """A keyed upload's row tokens in messages of at most 2 MiB."""
    for start in range(0, len(tokens), TOKEN_MESSAGE_BYTES):
        yield pb.UploadDatasetRequest(tokens=tokens[start : start + TOKEN_MESSAGE_BYTES]).SerializeToString()


def plain_requests(header: pb.UploadHeader, pair: ReplicatedShare, tokens: bytes = b"") -> Iterator[bytes]:
    """The header, the row tokens (if keyed), then both components of ``pair`` in chunks."""
    yield _header(header)
    yield from _tokens(tokens)
    yield from _chunks(ring_of(pair.first), pair.first, pair.second)


def seeded_requests(
    header: pb.UploadHeader, split: SeededSplit, party: PartyId, tokens: bytes = b""
) -> Iterator[bytes]:
    """Server ``party``'s seed-compressed upload of ``split`` (the same row tokens to every server)."""
    own = pb.UploadHeader()
    own.CopyFrom(header)
    if party == 0:
        own.first_seed, own.second_seed = split.seed_0, split.seed_1
        yield _header(own)
        yield from _tokens(tokens)
    elif party == 1:
        own.first_seed = split.seed_1
        yield _header(own)
        yield from _tokens(tokens)
        yield from _chunks(split.ring, None, split.x_2)
    else:
        own.second_seed = split.seed_0
        yield _header(own)
        yield from _tokens(tokens)
        yield from _chunks(split.ring, split.x_2, None)


def check_stored(
    connections: Sequence[ServerConnection],
    replies: Sequence[pb.UploadDatasetResponse],
    upload_id: bytes,
    count: int,
) -> None:
    """Every server must report the version and element count that was sent."""
    wrong = [
        c.name
        for c, reply in zip(connections, replies, strict=True)
        if reply.upload_id != upload_id or reply.element_count != count
    ]
    if wrong:
        raise ProtocolError(
            f"{', '.join(wrong)} reported storing another version or size of the dataset than was uploaded"
        )


def declared_magnitude(fixed_point: FixedPoint, bound: float, largest: float) -> int:
    """The magnitude bits of a bound the owner declares, which must cover every value."""
    if not np.isfinite(bound) or bound <= 0:
        raise EncodingError(f"bound must be a positive finite number, got {bound!r}")
    if largest > bound:
        raise EncodingError(f"a value ({largest:g}) exceeds the declared bound {bound:g}")
    scaled = float(np.ceil(bound * fixed_point.scale))
    if scaled >= 2.0 ** (fixed_point.ring.bits - 1):
        raise EncodingError(f"bound {bound:g} is outside the fixed-point range of {fixed_point.ring.name}")
    return magnitude_bits_of(int(scaled))
