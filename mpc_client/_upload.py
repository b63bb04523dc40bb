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

import numpy as np

from mpc_core.ring import RingArray, to_wire
from mpc_core.sharing import ReplicatedShare, SeededSplit
from mpc_core.types import PartyId
from mpc_proto.v1 import client_service_pb2 as pb
from mpc_proto.v1 import types_pb2

CHUNK_WORDS = 1 << 17
"""Elements per chunk carrying both components: 2 MiB per message."""
SINGLE_CHUNK_WORDS = 1 << 18
"""Elements per chunk carrying one component (seed-compressed): 2 MiB."""

_EMPTY = np.empty(0, dtype=np.uint64)


def _chunks(first: RingArray, second: RingArray, count: int) -> Iterator[pb.UploadDatasetRequest]:
    step = CHUNK_WORDS if first.size and second.size else SINGLE_CHUNK_WORDS
    for offset in range(0, count, step):
        end = offset + step
        chunk = types_pb2.ShareChunk(
            offset=offset,
            first=to_wire(first[offset:end]) if first.size else b"",
            second=to_wire(second[offset:end]) if second.size else b"",
        )
        yield pb.UploadDatasetRequest(chunk=chunk)


def plain_requests(header: pb.UploadHeader, pair: ReplicatedShare) -> Iterator[pb.UploadDatasetRequest]:
    """The header, then both components of ``pair`` in chunks."""
    yield pb.UploadDatasetRequest(header=header)
    yield from _chunks(pair.first, pair.second, pair.size)


def seeded_requests(
    header: pb.UploadHeader, split: SeededSplit, party: PartyId
) -> Iterator[pb.UploadDatasetRequest]:
    """Server ``party``'s seed-compressed upload of ``split``."""
    own = pb.UploadHeader()
    own.CopyFrom(header)
    count = int(split.x_2.size)
    if party == 0:
        own.first_seed, own.second_seed = split.seed_0, split.seed_1
        yield pb.UploadDatasetRequest(header=own)
    elif party == 1:
        own.first_seed = split.seed_1
        yield pb.UploadDatasetRequest(header=own)
        yield from _chunks(_EMPTY, split.x_2, count)
    else:
        own.second_seed = split.seed_0
        yield pb.UploadDatasetRequest(header=own)
        yield from _chunks(split.x_2, _EMPTY, count)
