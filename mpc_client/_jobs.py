"""Job descriptions for the wire, and the three servers' answers as one :class:`JobResult`."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence

from mpc_client import _fetch
from mpc_client._catalog import grant_to_proto, param_to_proto
from mpc_client._transport import ServerConnection
from mpc_client.types import (
    DatasetRef,
    JobResult,
    Keep,
    OutputDescription,
    ParamValue,
    Select,
    ServerJobStats,
)
from mpc_core.errors import InvalidArgumentError, ProtocolError
from mpc_core.identity import validate_name
from mpc_proto.v1 import client_service_pb2 as pb
from mpc_proto.v1 import types_pb2

InputSpec = DatasetRef | str | Select | Sequence[DatasetRef | str | Select]
KeepSpec = str | Keep
"""A kept output: the new dataset's name, or a :class:`Keep` with grants."""


def job_spec(
    identity: str,
    program: str,
    inputs: Mapping[str, InputSpec],
    *,
    receiver: str | None,
    job_id: str | None,
    output_fractional_bits: int | None,
    parameters: Mapping[str, ParamValue] | None,
    keep: Mapping[str, KeepSpec] | None,
) -> pb.JobSpec:
    """The ``JobSpec`` all three servers get."""
    receiver = validate_name(receiver or identity, "receiver")
    spec = pb.JobSpec(
        job_id=validate_name(job_id, "job id") if job_id else f"job-{secrets.token_hex(8)}",
        program=program,
        inputs=job_inputs(identity, inputs),
        receiver=receiver,
        parameters=[param_to_proto(name, value) for name, value in sorted((parameters or {}).items())],
    )
    for output, spec_of in (keep or {}).items():
        kept = spec_of if isinstance(spec_of, Keep) else Keep(spec_of)
        spec.keep.append(
            pb.KeepOutput(
                output=output,
                dataset=kept.dataset,
                grants=[grant_to_proto(g, receiver, kept.dataset) for g in kept.grants],
                overwrite=kept.overwrite,
            )
        )
    if output_fractional_bits is not None:
        spec.output_fractional_bits = output_fractional_bits
    return spec


def job_inputs(identity: str, inputs: Mapping[str, InputSpec]) -> list[pb.JobInput]:
    """Each role's datasets, in order (bare names are the caller's own)."""
    items: list[pb.JobInput] = []
    for role, spec in inputs.items():
        refs = [spec] if isinstance(spec, (str, DatasetRef, Select)) else list(spec)
        for ref in refs:
            columns = ref.columns if isinstance(ref, Select) else ()
            named = ref.dataset if isinstance(ref, Select) else ref
            parsed = named if isinstance(named, DatasetRef) else DatasetRef.parse(named, identity)
            dataset = types_pb2.DatasetRef(owner=parsed.owner, name=parsed.name)
            items.append(pb.JobInput(role=role, dataset=dataset, columns=list(columns)))
    return items


def job_result(
    connections: Sequence[ServerConnection],
    responses: Sequence[pb.RunJobResponse],
    spec: pb.JobSpec,
    identity: str,
) -> JobResult:
    """The job as the three servers report it; they must agree on its outputs."""
    described = [_outputs(c.name, r) for c, r in zip(connections, responses, strict=True)]
    if any(d != described[0] for d in described[1:]):
        names = ", ".join(c.name for c in connections)
        raise ProtocolError(f"{names} describe the outputs of job {spec.job_id} differently")
    outputs = described[0]
    if not outputs:
        raise ProtocolError(f"{connections[0].name} reported no output of job {spec.job_id}")
    first = outputs[0]
    return JobResult(
        job_id=spec.job_id,
        receiver=spec.receiver,
        submitter=identity,
        shape=first.shape,
        fractional_bits=first.fractional_bits,
        stats={c.name: _stats(r.stats) for c, r in zip(connections, responses, strict=True)},
        ring_bits=_fetch.ring_from_proto(connections[0].name, responses[0].output.ring).bits,
        magnitude_bits=first.magnitude_bits,
        truncation_failure_log2=first.truncation_failure_log2,
        outputs=outputs,
    )


def _outputs(server: str, response: pb.RunJobResponse) -> tuple[OutputDescription, ...]:
    infos = list(response.outputs) or [response.output]  # servers before named outputs sent one
    return tuple(_description(server, info) for info in infos)


def _description(server: str, info: pb.OutputInfo) -> OutputDescription:
    kept = None
    if info.HasField("kept_as"):
        if len(info.kept_version) != 16:
            raise ProtocolError(f"{server} named a kept output without a 16-byte version")
        kept = DatasetRef(info.kept_as.owner, info.kept_as.name, info.kept_version.hex())
    return OutputDescription(
        name=info.name,
        shape=tuple(info.shape),
        fractional_bits=info.fractional_bits,
        magnitude_bits=info.magnitude_bits,
        truncation_failure_log2=(
            info.truncation_failure_log2 if info.HasField("truncation_failure_log2") else None
        ),
        kept_as=kept,
        keyed=info.keyed,
    )


def _stats(stats: pb.JobStats) -> ServerJobStats:
    return ServerJobStats(
        stats.bytes_sent_to_peers, stats.bytes_received_from_peers, stats.rounds, stats.duration_seconds
    )


def delivered(result: JobResult) -> list[str]:
    """The names of the outputs a job delivered (not kept as datasets)."""
    names = [o.name for o in result.outputs if o.kept_as is None]
    if not names:
        raise InvalidArgumentError(
            f"job {result.job_id} kept all its outputs on the servers: nothing to fetch"
        )
    return names
