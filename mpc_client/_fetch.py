"""Collecting output shares from each server, and the checked reconstruction.

Server ``i`` holds ``(y_i, y_{i+1})`` of the output ``y``. Component ``j``
thus comes from two servers: as server ``j``'s first and as server
``j - 1``'s second. Before reconstructing, the client checks that the two
copies agree; either both copies arrive in full (small outputs, returned
with ``RunJob``), or the second copy arrives as a one-time keyed tag
(``FetchOutput`` with ``second_mac_key``, ``mpc_core.tags``): server ``i``
alone gets key ``k_i`` and tags its second component; the client tags server
``i + 1``'s first component under ``k_i`` as it streams in and compares. The
same check at half the traffic. A mismatch raises
:class:`OutputIntegrityError` naming the two servers.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError

from mpc_client._transport import ServerConnection, fan_out
from mpc_client.types import ProgramDescription, ServerInfo
from mpc_core import protowire, tags
from mpc_core.errors import OutputIntegrityError, ShareFormatError
from mpc_core.fixed_point import FixedPoint
from mpc_core.ring import Ring, RingArray, element_count, ring_for_bits
from mpc_core.sharing import ReplicatedShare, reconstruct_checked
from mpc_proto.v1 import client_service_pb2 as pb
from mpc_proto.v1 import types_pb2

RING_BITS = {types_pb2.RING_Z2_64: 64, types_pb2.RING_Z2_128: 128}
RING_ENUM = {bits: value for value, bits in RING_BITS.items()}


def ring_from_proto(server: str, value: int) -> Ring:
    """The ring a server's ``mpc.v1.Ring`` value names."""
    bits = RING_BITS.get(value)  # type: ignore[call-overload]
    if bits is None:
        raise ShareFormatError(f"{server}: the output names no known ring ({value})")
    return ring_for_bits(bits)


@dataclass(frozen=True, eq=False, repr=False)
class OutputPart:
    """One server's share of an output, as it arrived.

    ``second`` is the full second component, or None when only its
    ``second_digest`` came; ``first_digest`` is computed by the client.
    """

    server: str
    shape: tuple[int, ...]
    fractional_bits: int
    ring: Ring
    first: RingArray
    second: RingArray | None = None
    second_digest: bytes = b""
    first_digest: bytes = b""
    row_tokens: bytes = b""
    """A keyed output's row tokens (16 bytes per row), as the server sent them."""
    pieces: tuple[RingArray, ...] = ()
    """A streamed first component as it arrived: views of the received chunks, not copied
    (``first`` is then empty)."""

    def first_pieces(self) -> tuple[RingArray, ...]:
        """The first component in consecutive pieces (one piece when it came whole)."""
        return self.pieces or (self.first,)

    def __repr__(self) -> str:
        """No share values in logs."""
        return f"OutputPart({self.server}, shape={self.shape}, <redacted>)"


def part_from_share(server: str, info: pb.OutputInfo, chunk: types_pb2.ShareChunk) -> OutputPart:
    """An output part from a whole share returned inline (RunJob)."""
    shape = tuple(int(d) for d in info.shape)
    count = element_count(shape)
    ring = ring_from_proto(server, info.ring)
    first, second = ring.from_wire(chunk.first, count), ring.from_wire(chunk.second, count)
    return OutputPart(server, shape, info.fractional_bits, ring, first, second)


def fetch_part(
    connection: ServerConnection,
    job_id: str,
    submitter: str,
    timeout: float,
    keys: tuple[bytes, bytes],
    *,
    release: bool = False,
    output: str = "",
) -> OutputPart:
    """Stream one server's output: header, first component in chunks, the second's tag.

    ``keys`` is ``(k_i, k_{i-1})`` for server ``i``: it tags its second
    component under ``k_i``; the client tags the first it sends under
    ``k_{i-1}``, for comparison with server ``i - 1``'s tag.
    """
    own_key, check_key = keys
    request = pb.FetchOutputRequest(
        job_id=job_id, submitter=submitter, second_mac_key=own_key, release=release, output=output
    )
    stream = connection.fetch_raw(request, timeout=timeout)
    header = _output_header(connection.name, next(stream, b""))
    if output and header.name and header.name != output:
        raise ShareFormatError(f"{connection.name} sent output {header.name!r} for {output!r}")
    shape = tuple(int(d) for d in header.shape)
    count = element_count(shape)
    ring = ring_from_proto(connection.name, header.ring)
    first = _Component(ring, count)
    tagger = tags.Tagger(check_key)
    filled, second_digest, tokens = 0, b"", bytearray()
    for response in stream:
        number, item = _decode(connection.name, response)
        if number == protowire.ITEM_SECOND_DIGEST and not isinstance(item, protowire.ChunkView):
            second_digest = bytes(item)
            continue
        if number == protowire.ITEM_ROW_TOKENS and not isinstance(item, protowire.ChunkView):
            if not header.keyed or filled or len(tokens) + len(item) > 16 * (shape[0] if shape else 1):
                raise ShareFormatError(f"{connection.name}: unexpected row tokens in an output stream")
            tokens += item
            continue
        if not isinstance(item, protowire.ChunkView):
            raise ShareFormatError(f"{connection.name}: unexpected message in an output stream")
        size = len(item.first) // ring.element_bytes
        if item.offset != filled or filled + size > count or second_digest:
            raise ShareFormatError(f"{connection.name}: malformed output chunk at element {item.offset}")
        first.add(ring.wire_view(item.first, size), last=filled + size == count)
        tagger.update(item.first)
        filled += size
    if filled != count or not second_digest:
        raise ShareFormatError(f"{connection.name}: sent {filled} of {count} output elements")
    if header.keyed and len(tokens) != 16 * (shape[0] if shape else 1):
        raise ShareFormatError(f"{connection.name}: sent the row tokens of a keyed output incompletely")
    return OutputPart(
        connection.name,
        shape,
        header.fractional_bits,
        ring,
        first.whole if first.whole is not None else ring.empty(0),
        second_digest=second_digest,
        first_digest=tagger.tag(),
        row_tokens=bytes(tokens),
        pieces=tuple(first.pieces),
    )


MIN_VIEW_BYTES = 256 << 10
"""Chunks at least this large are kept as views of the received messages (servers send 2 MiB)."""


class _Component:
    """One streamed component: the received chunks as views, or copied when a server sends small ones.

    Views cost no copy but an array header each; a stream of tiny chunks (a
    server that misbehaves) is copied into one array instead, so that the
    client's memory stays that of the output.
    """

    def __init__(self, ring: Ring, count: int) -> None:
        self._ring, self._count, self._filled = ring, count, 0
        self.pieces: list[RingArray] = []
        self.whole: RingArray | None = None

    def add(self, chunk: RingArray, *, last: bool) -> None:
        """Append the next chunk (``last``: it ends the component, and may be short)."""
        if self.whole is None and not last and chunk.size * self._ring.element_bytes < MIN_VIEW_BYTES:
            self.whole = _joined(self._ring, self.pieces, self._count)
            self.pieces = []
        if self.whole is not None:
            self._ring.assign(self.whole, self._filled, chunk)
        else:
            self.pieces.append(chunk)
        self._filled += chunk.size


@dataclass(frozen=True)
class FetchRequest:
    """Which output to fetch, and how."""

    job_id: str
    submitter: str
    output: str
    release: bool
    deadline: float


def fetch_output(
    connections: tuple[ServerConnection, ...], pool: ThreadPoolExecutor, request: FetchRequest
) -> tuple[npt.NDArray[np.float64], bytes]:
    """Fetch from all three servers, check, reconstruct; also the row tokens of a keyed output."""
    keys = [secrets.token_bytes(tags.MAC_KEY_BYTES) for _ in connections]  # one per server, once

    def fetch_one(connection: ServerConnection) -> OutputPart:
        party = connection.endpoint.party
        own, check = keys[party], keys[(party - 1) % len(keys)]
        return fetch_part(
            connection,
            request.job_id,
            request.submitter,
            request.deadline,
            (own, check),
            release=request.release,
            output=request.output,
        )

    parts = fan_out(connections, fetch_one, pool)
    for part, other in zip(parts, [*parts[1:], parts[0]], strict=True):
        if part.row_tokens != other.row_tokens:  # name a pair that really disagrees
            raise OutputIntegrityError((part.server, other.server), "row tokens")
    tokens = {parts[0].row_tokens}
    return reconstruct_output(parts), tokens.pop()


def _decode(server: str, data: bytes) -> tuple[int, protowire.ChunkView | memoryview]:
    try:
        return protowire.decode_item(data)
    except protowire.WireFormatError as exc:
        raise ShareFormatError(f"{server}: malformed output message: {exc}") from None


def _output_header(server: str, data: bytes) -> pb.OutputInfo:
    number, item = _decode(server, data)
    if number != protowire.ITEM_HEADER or not isinstance(item, memoryview):
        raise ShareFormatError(f"{server}: an output stream must start with its header")
    try:
        return pb.OutputInfo.FromString(bytes(item))
    except DecodeError:
        raise ShareFormatError(f"{server}: malformed output header") from None


def reconstruct_output(parts: Sequence[OutputPart]) -> npt.NDArray[np.float64]:
    """Check the three parts against each other, then decode the output."""
    names = [part.server for part in parts]
    for part, other in zip(parts, [*parts[1:], parts[0]], strict=True):
        if (part.shape, part.fractional_bits, part.ring) != (other.shape, other.fractional_bits, other.ring):
            raise OutputIntegrityError((part.server, other.server), "output shapes, rings or scales")
    ring = parts[0].ring
    if all(part.second is not None for part in parts):
        shares = [ReplicatedShare(part.first, part.second) for part in parts if part.second is not None]
        values = FixedPoint(parts[0].fractional_bits, ring).decode(reconstruct_checked(shares, names))
    else:
        _check_by_digest(parts)
        values = _sum_to_float(ring, parts)
        values *= 2.0 ** -parts[0].fractional_bits  # exact: a power of two
    return values.reshape(parts[0].shape)


def _sum_to_float(ring: Ring, parts: Sequence[OutputPart]) -> npt.NDArray[np.float64]:
    """``y_0 + y_1 + y_2`` decoded, piece by piece where the three arrived in the same pieces."""
    lists = [part.first_pieces() for part in parts]
    if len({tuple(piece.size for piece in pieces) for pieces in lists}) != 1:
        lists = [(_joined(ring, pieces),) for pieces in lists]
    out = np.empty(sum(piece.size for piece in lists[0]), dtype=np.float64)
    offset = 0
    for a, b, c in zip(*lists, strict=True):
        ring.sum_to_float(a, b, c, out=out[offset : offset + a.size])
        offset += a.size
    return out


def _joined(ring: Ring, pieces: Sequence[RingArray], count: int | None = None) -> RingArray:
    """The pieces copied into one array (of ``count`` elements, the rest left to fill)."""
    whole = ring.empty(sum(piece.size for piece in pieces) if count is None else count)
    offset = 0
    for piece in pieces:
        ring.assign(whole, offset, piece)
        offset += piece.size
    return whole


def _check_by_digest(parts: Sequence[OutputPart]) -> None:
    ring = parts[0].ring
    for holder, part in enumerate(parts):
        other = parts[(holder + 1) % 3]
        first_digest = (
            other.first_digest
            or hashlib.sha256(b"".join(ring.wire_bytes(piece) for piece in other.first_pieces())).digest()
        )
        if not part.second_digest or not tags.same_tag(part.second_digest, first_digest):
            raise OutputIntegrityError(
                (part.server, other.server), f"copies of share component {(holder + 1) % 3}"
            )


def server_info(connection: ServerConnection, timeout: float) -> ServerInfo:
    """Ask one server to describe itself."""
    reply: pb.GetServerInfoResponse = connection.stub.GetServerInfo(
        pb.GetServerInfoRequest(), timeout=timeout
    )
    transport = reply.transport
    return ServerInfo(
        identity=reply.identity,
        party=reply.party,
        software_version=reply.software_version,
        protocol_version=reply.protocol_version,
        fractional_bits=reply.fractional_bits,
        ring_bits=RING_BITS.get(reply.ring, 0),
        ready=reply.readiness == pb.READINESS_STATE_READY,
        peers={peer.identity: peer.connected for peer in reply.peers},
        client_bytes_received=transport.client_bytes_received,
        client_bytes_sent=transport.client_bytes_sent,
        programs=tuple(_program(p) for p in reply.programs),
    )


def _program(info: pb.ProgramInfo) -> ProgramDescription:
    parameters = []
    for p in info.parameters:
        kind = pb.ParameterType.Name(p.type).removeprefix("PARAMETER_TYPE_").lower()
        notes = [p.summary]
        if p.HasField("default"):
            field = p.default.WhichOneof("value")
            notes.append(f"default {getattr(p.default, field)}" if field else "")
        else:
            notes.append("required")
        if p.HasField("minimum") or p.HasField("maximum"):
            low = f"{p.minimum:g}" if p.HasField("minimum") else "-inf"
            high = f"{p.maximum:g}" if p.HasField("maximum") else "inf"
            notes.append(f"range [{low}, {high}]")
        parameters.append((p.name, kind, "; ".join(n for n in notes if n)))
    return ProgramDescription(
        name=info.name,
        summary=info.summary,
        roles=tuple((r.name, r.min_count, r.max_count) for r in info.roles),
        parameters=tuple(parameters),
        outputs=tuple(info.outputs),
    )
