"""The UploadDataset request streams for each server, plain or seed-compressed.

Plain: server ``i`` receives both of its components ``(x_i, x_{i+1})`` in
chunks. Seed-compressed (the default): components 0 and 1 are PRG
expansions of two fresh 16-byte seeds, so server 0 receives only both seeds,
server 1 ``seed_1`` and the vector ``x_2``, server 2 ``x_2`` and ``seed_0``
(``UploadHeader.first_seed``/``second_seed`` in ``protos/``). Two vectors
cross the network instead of six, and the client draws far less randomness.
"""

from __future__ import annotations

from collections.abc import Iterator

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


def plain_requests(header: pb.UploadHeader, pair: ReplicatedShare) -> Iterator[bytes]:
    """The header, then both components of ``pair`` in chunks (encoded requests)."""
    yield _header(header)
    yield from _chunks(ring_of(pair.first), pair.first, pair.second)


def seeded_requests(header: pb.UploadHeader, split: SeededSplit, party: PartyId) -> Iterator[bytes]:
    """Server ``party``'s seed-compressed upload of ``split`` (encoded requests)."""
    own = pb.UploadHeader()
    own.CopyFrom(header)
    if party == 0:
        own.first_seed, own.second_seed = split.seed_0, split.seed_1
        yield _header(own)
    elif party == 1:
        own.first_seed = split.seed_1
        yield _header(own)
        yield from _chunks(split.ring, None, split.x_2)
    else:
        own.second_seed = split.seed_0
        yield _header(own)
        yield from _chunks(split.ring, split.x_2, None)
