"""Conversions between ``mpc.v1`` messages and service-layer types.

Every request field is checked here or in the service layer; malformed
input raises :class:`InvalidArgumentError` (or :class:`ShareFormatError`),
which the servicer reports as ``INVALID_ARGUMENT``.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator

from google.protobuf.message import DecodeError

from mpc_core import protowire, tags
from mpc_core.errors import InvalidArgumentError
from mpc_core.identity import shown, validate_name
from mpc_core.ring import RingArray, ring_of
from mpc_core.sharing import ReplicatedShare
from mpc_proto.v1 import client_service_pb2 as pb
from mpc_proto.v1 import types_pb2
from mpc_server.service.audit import AuditInput, JobRecord
from mpc_server.service.grants import Grant, GrantScope, PinnedInput
from mpc_server.service.model import (
    DatasetRef,
    DatasetSummary,
    JobInput,
    JobResult,
    JobSpec,
    KeepRequest,
    OutputInfo,
)
from mpc_server.service.programs import Program
from mpc_server.service.programs.params import ParamType, ParamValue, type_of
from mpc_server.service.upload_session import ShareChunk, TokenChunk, UploadHeader

DIGEST_INLINE_BYTES = 1 << 16
RING_BITS = {types_pb2.RING_Z2_64: 64, types_pb2.RING_Z2_128: 128}
"""The ``mpc.v1.Ring`` values and the ring sizes they name (RING_UNSPECIFIED is absent)."""
RING_ENUM = {bits: value for value, bits in RING_BITS.items()}


SCOPES = {
    types_pb2.GRANT_SCOPE_UNSPECIFIED: GrantScope.OWN_DATA,
    types_pb2.GRANT_SCOPE_OWN_DATA: GrantScope.OWN_DATA,
    types_pb2.GRANT_SCOPE_PINNED: GrantScope.PINNED,
    types_pb2.GRANT_SCOPE_ANY_INPUTS: GrantScope.ANY_INPUTS,
}
SCOPE_ENUM = {
    GrantScope.OWN_DATA: types_pb2.GRANT_SCOPE_OWN_DATA,
    GrantScope.PINNED: types_pb2.GRANT_SCOPE_PINNED,
    GrantScope.ANY_INPUTS: types_pb2.GRANT_SCOPE_ANY_INPUTS,
}


def grant_from_proto(message: types_pb2.Grant) -> Grant:
    """Decode and validate a grant."""
    scope = SCOPES.get(message.scope)
    if scope is None:
        raise InvalidArgumentError(f"unknown grant scope {message.scope}")
    if not message.grant_id:
        raise InvalidArgumentError("a grant needs a grant_id (16 random bytes)")
    inputs = []
    for pin in message.inputs:
        if not pin.HasField("dataset"):
            raise InvalidArgumentError(f"a pinned input {shown(pin.role)} names no dataset")
        columns = tuple(validate_name(c, "column name") for c in pin.columns)
        inputs.append(PinnedInput(pin.role, dataset_ref_from_proto(pin.dataset), pin.upload_id, columns))
    if any(len(pin.upload_id) not in (0, 16) for pin in inputs):
        raise InvalidArgumentError("pinned versions are 16-byte upload ids")
    return Grant(
        grant_id=message.grant_id,
        receiver=message.receiver,
        program=message.program,
        role=message.role,
        scope=scope,
        inputs=tuple(inputs),
        submitters=tuple(message.submitters),
        max_uses=message.max_uses,
        expires_at=message.expires_at,
        parameters=tuple(sorted(param_from_proto(p) for p in message.parameters)),
        keep_outputs=message.keep_outputs,
    )


def param_from_proto(message: types_pb2.JobParameter) -> tuple[str, ParamValue]:
    """A parameter's name and typed value (the oneof says the type)."""
    kind = message.WhichOneof("value")
    if kind is None:
        raise InvalidArgumentError(f"parameter {shown(message.name)} has no value")
    value: ParamValue = getattr(message, kind)
    return message.name, value


def param_to_proto(name: str, value: ParamValue) -> types_pb2.JobParameter:
    """Encode a parameter in the oneof field of its type."""
    message = types_pb2.JobParameter(name=name)
    setattr(message, type_of(value).value, value)
    return message


def grant_to_proto(grant: Grant) -> types_pb2.Grant:
    """Encode a grant."""
    return types_pb2.Grant(
        receiver=grant.receiver,
        program=grant.program,
        role=grant.role,
        scope=SCOPE_ENUM[grant.scope],
        inputs=[
            types_pb2.PinnedInput(
                role=p.role, dataset=dataset_ref_to_proto(p.dataset), upload_id=p.upload_id, columns=p.columns
            )
            for p in grant.inputs
        ],
        submitters=list(grant.submitters),
        max_uses=grant.max_uses,
        expires_at=grant.expires_at,
        grant_id=grant.grant_id,
        parameters=[param_to_proto(name, value) for name, value in grant.parameters],
        keep_outputs=grant.keep_outputs,
    )


def dataset_info(summary: DatasetSummary, grants: list[tuple[Grant, int]]) -> pb.DatasetInfo:
    """One dataset of a listing, with its current grants and their uses."""
    info = pb.DatasetInfo(
        name=summary.ref.name,
        shape=list(summary.shape),
        upload_id=summary.upload_id,
        created_at=summary.created_at,
        ring=RING_ENUM[summary.ring_bits],
        fractional_bits=summary.fractional_bits,
        grants=[pb.GrantState(grant=grant_to_proto(g), uses=uses) for g, uses in grants],
        alignment=summary.alignment,
        columns=list(summary.columns),
    )
    if summary.magnitude_bits is not None:
        info.magnitude_bits = summary.magnitude_bits
    return info


def job_record_to_proto(record: JobRecord) -> pb.JobRecord:
    """One audited job."""
    return pb.JobRecord(
        job_id=record.job_id,
        submitter=record.submitter,
        receiver=record.receiver,
        program=record.program,
        inputs=[_audit_input(i) for i in record.inputs],
        started_at=record.started_at,
        finished_at=record.finished_at,
        status=record.status,
        error=record.error,
        parameters=[param_to_proto(name, value) for name, value in record.parameters],
        kept=[
            pb.KeptOutput(output=k.output, dataset=dataset_ref_to_proto(k.dataset), upload_id=k.upload_id)
            for k in record.kept
        ],
    )


def _audit_input(item: AuditInput) -> pb.AuditInput:
    return pb.AuditInput(
        role=item.role,
        dataset=dataset_ref_to_proto(item.dataset),
        upload_id=item.upload_id,
        grant_id=item.grant_id,
        columns=item.columns,
    )


def ring_bits_from_proto(value: int) -> int:
    """The ring size a ``Ring`` value names; 0 for RING_UNSPECIFIED or an unknown value."""
    bits: int = RING_BITS.get(value, 0)  # type: ignore[call-overload]
    return bits


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


def upload_chunk_from_bytes(data: bytes) -> ShareChunk | TokenChunk:
    """Decode a later message of an upload: a chunk of shares, or of row tokens (no copies)."""
    number, value = protowire.decode_item(data)
    if number == protowire.ITEM_TOKENS and isinstance(value, memoryview):
        return TokenChunk(value)
    if not isinstance(value, protowire.ChunkView):
        raise InvalidArgumentError(
            "only share chunks (and a keyed dataset's tokens) may follow the upload header"
        )
    return ShareChunk(value.offset, value.first, value.second)


def upload_header_from_proto(message: pb.UploadHeader) -> UploadHeader:
    """Decode the first message of an upload."""
    return UploadHeader(
        name=message.name,
        shape=tuple(message.shape),
        fractional_bits=message.fractional_bits if message.HasField("fractional_bits") else None,
        grants=tuple(grant_from_proto(g) for g in message.grants),
        upload_id=message.upload_id,
        overwrite=message.overwrite,
        first_seed=message.first_seed,
        second_seed=message.second_seed,
        ring_bits=ring_bits_from_proto(message.ring),
        magnitude_bits=message.magnitude_bits if message.HasField("magnitude_bits") else None,
        alignment=message.alignment,
        columns=tuple(message.columns),
    )


def job_spec_from_proto(message: pb.JobSpec) -> JobSpec:
    """Decode a job description."""
    inputs = []
    for item in message.inputs:
        if not item.HasField("dataset"):
            raise InvalidArgumentError(f"job input {shown(item.role)} names no dataset")
        columns = tuple(validate_name(c, "column name") for c in item.columns)
        inputs.append(JobInput(item.role, dataset_ref_from_proto(item.dataset), columns))
    output_bits = message.output_fractional_bits if message.HasField("output_fractional_bits") else None
    keep = tuple(
        KeepRequest(k.output, k.dataset, tuple(grant_from_proto(g) for g in k.grants), k.overwrite)
        for k in message.keep
    )
    return JobSpec(
        message.job_id,
        message.program,
        tuple(inputs),
        message.receiver,
        output_bits,
        tuple(param_from_proto(p) for p in message.parameters),
        keep,
    )


def output_info_to_proto(info: OutputInfo) -> pb.OutputInfo:
    """Encode an output's shape, ring, scale, bound and truncation failure bound."""
    message = pb.OutputInfo(
        name=info.name,
        shape=list(info.shape),
        fractional_bits=info.fractional_bits,
        ring=RING_ENUM[info.ring_bits],
        magnitude_bits=info.magnitude_bits,
        kept_version=info.kept_version,
        keyed=info.keyed,
    )
    if info.kept_as is not None:
        message.kept_as.CopyFrom(dataset_ref_to_proto(info.kept_as))
    if info.truncation_failure_log2 is not None:
        message.truncation_failure_log2 = info.truncation_failure_log2
    return message


def run_job_response(result: JobResult) -> pb.RunJobResponse:
    """Encode a finished job."""
    stats = pb.JobStats(
        bytes_sent_to_peers=result.stats.bytes_sent,
        bytes_received_from_peers=result.stats.bytes_received,
        rounds=result.stats.rounds,
        duration_seconds=result.stats.duration_seconds,
    )
    outputs = [output_info_to_proto(info) for info in result.outputs]
    return pb.RunJobResponse(job_id=result.job_id, output=outputs[0], outputs=outputs, stats=stats)


TOKEN_MESSAGE_BYTES = 2 << 20


def token_responses(tokens: bytes) -> Iterator[bytes]:
    """A keyed output's row tokens as ``FetchOutputResponse.row_tokens`` messages of at most 2 MiB."""
    for start in range(0, len(tokens), TOKEN_MESSAGE_BYTES):
        yield pb.FetchOutputResponse(
            row_tokens=tokens[start : start + TOKEN_MESSAGE_BYTES]
        ).SerializeToString()


def whole_share_chunk(share: ReplicatedShare) -> types_pb2.ShareChunk:
    """A whole (small) share as one chunk with both components (inline RunJob outputs)."""
    ring = share.ring
    return types_pb2.ShareChunk(offset=0, first=ring.to_wire(share.first), second=ring.to_wire(share.second))


def output_responses(share: ReplicatedShare, *, with_second: bool) -> Iterator[bytes]:
    """Encoded FetchOutput chunk messages for ``share`` (first component, maybe second).

    Encoded straight from the arrays (``protowire``): one copy per message,
    2 MiB of shares per message.
    """
    ring = share.ring
    second = ring.wire_bytes(share.second) if with_second else memoryview(b"")
    return protowire.encode_chunk_items(ring.wire_bytes(share.first), second, ring.element_bytes)


async def digest_of(component: RingArray, mac_key: bytes = b"") -> bytes:
    """SHA-256 of a component's wire bytes, or its GMAC tag under ``mac_key`` (``mpc_core.tags``).

    Large components are hashed off the event loop.
    """
    data = ring_of(component).wire_bytes(component)  # no copy on little-endian hosts
    if mac_key and len(mac_key) != tags.MAC_KEY_BYTES:
        raise InvalidArgumentError(f"second_mac_key must be {tags.MAC_KEY_BYTES} bytes, got {len(mac_key)}")

    def compute() -> bytes:
        return tags.tag(mac_key, data) if mac_key else hashlib.sha256(data).digest()

    limit = DIGEST_INLINE_BYTES * (64 if mac_key else 1)  # GMAC is ~15x faster than SHA-256
    return compute() if len(data) < limit else await asyncio.to_thread(compute)


_PARAMETER_TYPES = {
    ParamType.NUMBER: pb.PARAMETER_TYPE_NUMBER,
    ParamType.INTEGER: pb.PARAMETER_TYPE_INTEGER,
    ParamType.FLAG: pb.PARAMETER_TYPE_FLAG,
}


def program_info(program: Program) -> pb.ProgramInfo:
    """A program's roles, parameters and outputs, for GetServerInfo."""
    parameters = []
    for spec in program.parameters:
        info = pb.ParameterInfo(name=spec.name, type=_PARAMETER_TYPES[spec.type], summary=spec.summary)
        if spec.default is not None:
            info.default.CopyFrom(param_to_proto(spec.name, spec.default))
        if spec.minimum is not None:
            info.minimum = spec.minimum
        if spec.maximum is not None:
            info.maximum = spec.maximum
        parameters.append(info)
    return pb.ProgramInfo(
        name=program.name,
        summary=program.summary,
        roles=[pb.RoleInfo(name=r.name, min_count=r.min_count, max_count=r.max_count) for r in program.roles],
        parameters=parameters,
        outputs=list(program.outputs),
    )
