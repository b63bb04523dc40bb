"""``ExchangeRequest`` messages to and from bytes, without copying payloads.

The peer stream carries every protocol message; its ``DataChunk.payload``
is most of the servers' traffic. Data chunks are encoded straight from the
sender's array into the one ``bytes`` object gRPC sends and decoded into a
view of the received bytes (``mpc_core.protowire``), instead of through the
protobuf runtime's copies. Aborts are small and use the generated class.
The bytes are ordinary ``mpc.v1.ExchangeRequest`` messages either way.
"""

from __future__ import annotations

from dataclasses import dataclass

from mpc_core.protowire import WireFormatError, expect_len, expect_uint, fields, len_prefix, uint_field
from mpc_proto.v1 import peer_service_pb2 as pb

JOB_ID, OP, DATA, ABORT = 1, 2, 3, 4  # ExchangeRequest
OFFSET, TOTAL_WORDS, PAYLOAD = 1, 2, 3  # DataChunk
REASON = 1  # JobAbort
_NO_PAYLOAD = memoryview(b"")


@dataclass(frozen=True, eq=False, repr=False)
class ExchangeFrame:
    """One decoded ``ExchangeRequest``: a data chunk or an abort.

    ``payload`` is a slice of the received bytes (read-only, no copy);
    ``wire_bytes`` is the size of the whole message, for traffic counters.
    """

    job_id: str
    op: int
    wire_bytes: int
    is_abort: bool = False
    offset: int = 0
    total_words: int = 0
    payload: memoryview = _NO_PAYLOAD
    reason: str = ""

    def __repr__(self) -> str:
        """No payload bytes in logs."""
        kind = "abort" if self.is_abort else f"data {self.offset}+{len(self.payload) // 8}/{self.total_words}"
        return f"ExchangeFrame({self.job_id!r}, op={self.op}, {kind})"


def encode_data(job_id: str, op: int, offset: int, total_words: int, payload: memoryview) -> bytes:
    """An ``ExchangeRequest`` carrying ``payload`` (copied once, into the result)."""
    chunk_head = uint_field(OFFSET, offset) + uint_field(TOTAL_WORDS, total_words)
    if len(payload):
        chunk_head += len_prefix(PAYLOAD, len(payload))
    name = job_id.encode()
    head = len_prefix(JOB_ID, len(name)) + name if name else b""
    head += uint_field(OP, op) + len_prefix(DATA, len(chunk_head) + len(payload)) + chunk_head
    return b"".join((head, payload))


def encode_abort(job_id: str, reason: str) -> bytes:
    """An ``ExchangeRequest`` telling the peer we gave up on ``job_id``."""
    message = pb.ExchangeRequest(job_id=job_id, abort=pb.JobAbort(reason=reason))
    return message.SerializeToString()


def decode(data: bytes) -> ExchangeFrame:
    """Decode one ``ExchangeRequest`` (unknown fields are skipped).

    Raises:
        WireFormatError: malformed bytes, a job id that is not UTF-8, or
            neither or both of ``data`` and ``abort`` set.
    """
    job_id, op = b"", 0
    bodies: list[tuple[int, memoryview]] = []
    for field in fields(memoryview(data)):
        number = field[0]
        if number == JOB_ID:
            job_id = bytes(expect_len(field, "ExchangeRequest.job_id"))
        elif number == OP:
            op = expect_uint(field, "ExchangeRequest.op")
        elif number in (DATA, ABORT):
            bodies.append((number, expect_len(field, "ExchangeRequest body")))
    if len(bodies) != 1:
        raise WireFormatError(f"an exchange message needs one body (data or abort), found {len(bodies)}")
    try:
        name = job_id.decode()
    except UnicodeDecodeError:
        raise WireFormatError("job id is not UTF-8") from None
    number, body = bodies[0]
    if number == ABORT:
        return ExchangeFrame(name, op, len(data), is_abort=True, reason=_reason(body))
    return _data_frame(name, op, len(data), body)


def _reason(body: memoryview) -> str:
    reason = b""
    for field in fields(body):
        if field[0] == REASON:
            reason = bytes(expect_len(field, "JobAbort.reason"))
    return reason.decode(errors="replace")


def _data_frame(job_id: str, op: int, size: int, body: memoryview) -> ExchangeFrame:
    offset = total = 0
    payload = _NO_PAYLOAD
    for field in fields(body):
        if field[0] == OFFSET:
            offset = expect_uint(field, "DataChunk.offset")
        elif field[0] == TOTAL_WORDS:
            total = expect_uint(field, "DataChunk.total_words")
        elif field[0] == PAYLOAD:
            payload = expect_len(field, "DataChunk.payload")
    return ExchangeFrame(job_id, op, size, offset=offset, total_words=total, payload=payload)
