"""Fetching output shares from each server, and the checked reconstruction."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mpc_client._transport import ServerConnection
from mpc_client.types import ServerInfo
from mpc_core.errors import OutputIntegrityError, ShareFormatError
from mpc_core.fixed_point import FixedPoint
from mpc_core.ring import element_count, from_wire
from mpc_core.sharing import ReplicatedShare, reconstruct_checked
from mpc_proto.v1 import client_service_pb2 as pb


@dataclass(frozen=True, eq=False)
class OutputPart:
    """One server's share of an output, with the header it sent."""

    server: str
    shape: tuple[int, ...]
    fractional_bits: int
    share: ReplicatedShare


def fetch_part(connection: ServerConnection, job_id: str, timeout: float) -> OutputPart:
    """Stream one server's output share (header first, then chunks in order)."""
    stream = connection.stub.FetchOutput(pb.FetchOutputRequest(job_id=job_id), timeout=timeout)
    header = next(stream).header
    shape = tuple(int(d) for d in header.shape)
    count = element_count(shape)
    first = np.empty(count, dtype=np.uint64)
    second = np.empty(count, dtype=np.uint64)
    filled = 0
    for response in stream:
        chunk = response.chunk
        size = len(chunk.first) // 8
        if chunk.offset != filled or filled + size > count or len(chunk.second) != len(chunk.first):
            raise ShareFormatError(f"{connection.name}: malformed output chunk at element {chunk.offset}")
        first[filled : filled + size] = from_wire(chunk.first, size)
        second[filled : filled + size] = from_wire(chunk.second, size)
        filled += size
    if filled != count:
        raise ShareFormatError(f"{connection.name}: sent {filled} of {count} output elements")
    return OutputPart(connection.name, shape, header.fractional_bits, ReplicatedShare(first, second))


def reconstruct_output(parts: list[OutputPart]) -> npt.NDArray[np.float64]:
    """Check the three parts against each other, then decode the output."""
    names = [part.server for part in parts]
    for part, other in zip(parts, parts[1:] + parts[:1], strict=True):
        if (part.shape, part.fractional_bits) != (other.shape, other.fractional_bits):
            raise OutputIntegrityError((part.server, other.server), "output shapes or scales")
    secret = reconstruct_checked([part.share for part in parts], names)
    values = FixedPoint(parts[0].fractional_bits).decode(secret)
    return values.reshape(parts[0].shape)


def server_info(connection: ServerConnection, timeout: float) -> ServerInfo:
    """Ask one server to describe itself."""
    reply: pb.GetServerInfoResponse = connection.stub.GetServerInfo(
        pb.GetServerInfoRequest(), timeout=timeout
    )
    return ServerInfo(
        identity=reply.identity,
        party=reply.party,
        software_version=reply.software_version,
        protocol_version=reply.protocol_version,
        fractional_bits=reply.fractional_bits,
        ready=reply.readiness == pb.READINESS_STATE_READY,
        peers={peer.identity: peer.connected for peer in reply.peers},
    )
