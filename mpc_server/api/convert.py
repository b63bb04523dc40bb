"""Conversions between ``mpc.v1`` messages and service-layer types.

Every request field is checked here or in the service layer; malformed
input raises :class:`InvalidArgumentError` (or :class:`ShareFormatError`),
which the servicer reports as ``INVALID_ARGUMENT``.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator

import numpy as np
from google.protobuf.message import DecodeError

from mpc_core import protowire
from mpc_core.errors import InvalidArgumentError
from mpc_core.identity import shown
from mpc_core.ring import RingArray, to_wire, wire_bytes
from mpc_core.sharing import ReplicatedShare
from mpc_proto.v1 import client_service_pb2 as pb
from mpc_proto.v1 import types_pb2
from mpc_server.service.model import DatasetRef, Grant, JobInput, JobResult, JobSpec, OutputInfo
from mpc_server.service.uploads import ShareChunk, UploadHeader

OUTPUT_CHUNK_WORDS = 1 << 17
"""Words per component in a chunk carrying both components: 2 MiB per message."""
SINGLE_COMPONENT_CHUNK_WORDS = 1 << 18
"""Words in a chunk carrying only the first component: 2 MiB per message."""
DIGEST_INLINE_BYTES = 1 << 16


def dataset_ref_from_proto(message: types_pb2.DatasetRef) -> DatasetRef:
    """Decode a dataset reference."""
    return DatasetRef(message.owner, message.name)


def dataset_ref_to_proto(ref: DatasetRef) -> types_pb2.DatasetRef:
    """Encode a dataset reference."""
    return types_pb2.DatasetRef(owner=ref.owner, name=ref.name)


def upload_header_from_bytes(data: bytes) -> UploadHeader:
    """Decode the first message of an upload, which must carry the header."""
    number, value = protowire.decode_item(data)
    if number != protowire.ITEM_HEADER or not isinstance(value, memoryview):
        raise InvalidArgumentError("an upload must start with a header")
    try:
        header = pb.UploadHeader.FromString(bytes(value))
    except DecodeError:
        raise protowire.WireFormatError("the upload header is not a valid UploadHeader") from None
    return upload_header_from_proto(header)


def upload_chunk_from_bytes(data: bytes) -> ShareChunk:
    """Decode a later message of an upload, which must carry a chunk (no copies)."""
    _, value = protowire.decode_item(data)
    if not isinstance(value, protowire.ChunkView):
        raise InvalidArgumentError("only share chunks may follow the upload header")
    return ShareChunk(value.offset, value.first, value.second)


def upload_header_from_proto(message: pb.UploadHeader) -> UploadHeader:
    """Decode the first message of an upload."""
    return UploadHeader(
        name=message.name,
        shape=tuple(message.shape),
        fractional_bits=message.fractional_bits,
        grants=tuple(Grant(g.receiver, g.program) for g in message.grants),
        upload_id=message.upload_id,
        overwrite=message.overwrite,
        first_seed=message.first_seed,
        second_seed=message.second_seed,
    )


def job_spec_from_proto(message: pb.JobSpec) -> JobSpec:
    """Decode a job description."""
    inputs = []
    for item in message.inputs:
        if not item.HasField("dataset"):
            raise InvalidArgumentError(f"job input {shown(item.role)} names no dataset")
        inputs.append(JobInput(item.role, dataset_ref_from_proto(item.dataset)))
    return JobSpec(message.job_id, message.program, tuple(inputs), message.receiver)


def output_info_to_proto(info: OutputInfo) -> pb.OutputInfo:
    """Encode an output's shape and scale."""
    return pb.OutputInfo(shape=list(info.shape), fractional_bits=info.fractional_bits)


def run_job_response(result: JobResult) -> pb.RunJobResponse:
    """Encode a finished job."""
    stats = pb.JobStats(
        bytes_sent_to_peers=result.stats.bytes_sent,
        bytes_received_from_peers=result.stats.bytes_received,
        rounds=result.stats.rounds,
        duration_seconds=result.stats.duration_seconds,
    )
    return pb.RunJobResponse(job_id=result.job_id, output=output_info_to_proto(result.output), stats=stats)


def share_chunks(
    share: ReplicatedShare, chunk_words: int = OUTPUT_CHUNK_WORDS, *, with_second: bool = True
) -> Iterator[types_pb2.ShareChunk]:
    """Split a share into wire chunks of at most ``chunk_words`` per component."""
    for offset in range(0, share.size, chunk_words):
        end = offset + chunk_words
        yield types_pb2.ShareChunk(
            offset=offset,
            first=to_wire(share.first[offset:end]),
            second=to_wire(share.second[offset:end]) if with_second else b"",
        )


def output_responses(share: ReplicatedShare, *, with_second: bool) -> Iterator[bytes]:
    """Encoded FetchOutput chunk messages for ``share`` (first component, maybe second).

    Encoded straight from the arrays (``protowire``): one copy per message.
    """
    words = OUTPUT_CHUNK_WORDS if with_second else SINGLE_COMPONENT_CHUNK_WORDS
    second = wire_bytes(share.second) if with_second else memoryview(b"")
    return protowire.encode_chunk_items(wire_bytes(share.first), second, words)


async def digest_of(component: RingArray) -> bytes:
    """SHA-256 of a component's wire bytes (hashed off the event loop if large)."""
    data = np.ascontiguousarray(component, dtype="<u8").data  # no copy on little-endian hosts
    if len(data) < DIGEST_INLINE_BYTES:
        return hashlib.sha256(data).digest()
    return await asyncio.to_thread(lambda: hashlib.sha256(data).digest())
