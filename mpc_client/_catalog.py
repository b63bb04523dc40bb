"""Grants on the wire, and the owner's views (datasets, jobs, audit trail) from three servers.

Each server keeps its own record of grants, jobs and audit entries. The SDK
asks all three and compares: an item all three report alike is listed once;
where they differ (a server missed a grant change, or lacks an audit record
its peers have), the listing says so, naming the servers, so that an owner
sees whether any server's account of the use of its data is off.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from mpc_client._transport import ServerConnection, fan_out
from mpc_client.types import (
    SELF,
    AuditInput,
    DatasetInfo,
    DatasetRef,
    Grant,
    GrantScope,
    GrantState,
    JobRecord,
    Listing,
    ParamValue,
)
from mpc_core.errors import InvalidArgumentError
from mpc_core.identity import validate_name
from mpc_proto.v1 import client_service_pb2 as pb
from mpc_proto.v1 import types_pb2

_SCOPE = {
    GrantScope.OWN_DATA: types_pb2.GRANT_SCOPE_OWN_DATA,
    GrantScope.PINNED: types_pb2.GRANT_SCOPE_PINNED,
    GrantScope.ANY_INPUTS: types_pb2.GRANT_SCOPE_ANY_INPUTS,
}
_SCOPE_FROM = {value: scope for scope, value in _SCOPE.items()}
_RING_BITS = {types_pb2.RING_Z2_64: 64, types_pb2.RING_Z2_128: 128}

_T = TypeVar("_T")


def grant_to_proto(grant: Grant, owner: str, name: str) -> types_pb2.Grant:
    """The wire form of ``grant`` on dataset ``owner/name`` (``"self"`` resolved)."""
    try:
        grant_id = bytes.fromhex(grant.grant_id)
    except ValueError:
        raise InvalidArgumentError("a grant id is 16 bytes in hex") from None
    pins, own_roles = [], set()
    for role, pinned in grant.inputs:
        text, _, selected = pinned.partition("#")
        columns = [validate_name(c, "column name") for c in selected.split(",")] if selected else []
        ref = DatasetRef(owner, name) if text == SELF else DatasetRef.parse(text, owner)
        if (ref.owner, ref.name) == (owner, name):
            own_roles.add(role)
            ref = DatasetRef(owner, name)  # the granting dataset itself: always its current version
        pins.append(
            types_pb2.PinnedInput(
                role=role,
                dataset=types_pb2.DatasetRef(owner=ref.owner, name=ref.name),
                upload_id=bytes.fromhex(ref.version) if ref.version else b"",
                columns=columns,
            )
        )
    if grant.scope is GrantScope.PINNED and not own_roles:
        raise InvalidArgumentError(
            f"a pinned grant on {owner}/{name} must list {owner}/{name} among its inputs"
        )
    role = grant.role or (own_roles.pop() if len(own_roles) == 1 else "")
    return types_pb2.Grant(
        receiver=grant.receiver,
        program=grant.program,
        role=role,
        scope=_SCOPE[grant.scope],
        inputs=pins,
        submitters=list(grant.submitters),
        max_uses=grant.max_uses,
        expires_at=grant.expires_at,
        grant_id=grant_id,
        parameters=[param_to_proto(name, value) for name, value in grant.fixed_parameters.items()],
        keep_outputs=grant.keep_outputs,
    )


def param_to_proto(name: str, value: ParamValue) -> types_pb2.JobParameter:
    """A parameter in the oneof field of its Python type (bool: flag, int: integer, float: number)."""
    message = types_pb2.JobParameter(name=validate_name(name, "parameter name"))
    if isinstance(value, bool):
        message.flag = value
    elif isinstance(value, int):
        message.integer = value
    elif isinstance(value, float):
        message.number = value
    else:
        raise InvalidArgumentError(f"parameter {name} must be a number, an integer or a flag")
    return message


def param_from_proto(message: types_pb2.JobParameter) -> tuple[str, ParamValue]:
    """A parameter's name and typed value."""
    kind = message.WhichOneof("value")
    value: ParamValue = getattr(message, kind) if kind else 0.0
    return message.name, value


def grant_from_proto(message: types_pb2.Grant, owner: str, name: str) -> Grant:
    """An SDK grant from the wire (the dataset itself shown as ``"self"``)."""
    inputs = []
    for pin in message.inputs:
        ref = DatasetRef(pin.dataset.owner, pin.dataset.name, pin.upload_id.hex())
        own = (ref.owner, ref.name) == (owner, name)
        columns = f"#{','.join(pin.columns)}" if pin.columns else ""
        inputs.append((pin.role, (SELF if own else ref.pinned) + columns))
    return Grant(
        receiver=message.receiver,
        program=message.program,
        role=message.role,
        scope=_SCOPE_FROM.get(message.scope, GrantScope.OWN_DATA),
        inputs=tuple(inputs),
        submitters=tuple(message.submitters),
        max_uses=message.max_uses,
        expires_at=message.expires_at,
        grant_id=message.grant_id.hex(),
        parameters=dict(param_from_proto(p) for p in message.parameters),
        keep_outputs=message.keep_outputs,
    )


def dataset_info(owner: str, message: pb.DatasetInfo) -> DatasetInfo:
    """One dataset of a server's listing."""
    return DatasetInfo(
        ref=DatasetRef(owner, message.name, message.upload_id.hex()),
        shape=tuple(message.shape),
        created_at=message.created_at,
        ring_bits=_RING_BITS.get(message.ring, 0),
        fractional_bits=message.fractional_bits,
        magnitude_bits=message.magnitude_bits if message.HasField("magnitude_bits") else None,
        grants=tuple(
            GrantState(grant_from_proto(g.grant, owner, message.name), g.uses) for g in message.grants
        ),
        alignment=message.alignment,
        columns=tuple(message.columns),
    )


def job_record(message: pb.JobRecord) -> JobRecord:
    """One job of a server's job list or audit trail."""
    return JobRecord(
        job_id=message.job_id,
        submitter=message.submitter,
        receiver=message.receiver,
        program=message.program,
        inputs=tuple(
            AuditInput(
                item.role,
                DatasetRef(item.dataset.owner, item.dataset.name, item.upload_id.hex()),
                item.grant_id.hex(),
                tuple(item.columns),
            )
            for item in message.inputs
        ),
        started_at=message.started_at,
        finished_at=message.finished_at,
        status=message.status,
        error=message.error,
        parameters=tuple(sorted(param_from_proto(p) for p in message.parameters)),
        kept=tuple(
            (k.output, DatasetRef(k.dataset.owner, k.dataset.name, k.upload_id.hex())) for k in message.kept
        ),
    )


def compare(
    servers: Sequence[str],
    lists: Sequence[Sequence[_T]],
    key: Callable[[_T], Hashable],
    content: Callable[[_T], Hashable],
    describe: Callable[[_T], str],
) -> Listing:
    """Merge three servers' lists: one item per key, and every disagreement named.

    An item is listed as most servers report it; a key some servers lack, or
    report differently, gives a line in ``disagreements``.
    """
    order: list[Hashable] = []
    seen: dict[Hashable, dict[str, _T]] = {}
    for server, items in zip(servers, lists, strict=True):
        for item in items:
            k = key(item)
            if k not in seen:
                seen[k] = {}
                order.append(k)
            seen[k][server] = item
    merged, disagreements = [], []
    for k in order:
        by_server = seen[k]
        versions: dict[Hashable, list[str]] = {}
        for server, item in by_server.items():
            versions.setdefault(content(item), []).append(server)
        best = max(versions.values(), key=len)
        merged.append(by_server[best[0]])
        missing = [s for s in servers if s not in by_server]
        if missing or len(versions) > 1:
            groups = "; ".join(f"{', '.join(names)} agree" for names in versions.values())
            absent = f"; {', '.join(missing)} report nothing" if missing else ""
            disagreements.append(f"{describe(by_server[best[0]])}: {groups}{absent}")
    return Listing(tuple(merged), tuple(disagreements))


def _dataset_content(info: DatasetInfo) -> Hashable:
    """What must agree between servers for a dataset (the creation time is each server's clock)."""
    return (
        info.ref, info.shape, info.ring_bits, info.fractional_bits, info.magnitude_bits, info.grants,
        info.alignment, info.columns,
    )  # fmt: skip


def record_content(record: JobRecord) -> Hashable:
    """What must agree between servers for a job record (times are each server's own)."""
    return (
        record.job_id,
        record.submitter,
        record.receiver,
        record.program,
        record.inputs,
        record.status,
        record.parameters,
        record.kept,
    )


class CatalogCalls:
    """The owner's calls of :class:`~mpc_client.MpcClient`: datasets, grants, jobs, audit."""

    identity: str
    _connections: tuple[ServerConnection, ...]
    _pool: ThreadPoolExecutor

    def _deadline(self, timeout: float | None) -> float:
        raise NotImplementedError

    def _names(self) -> list[str]:
        return [c.name for c in self._connections]

    def datasets(self, *, timeout: float | None = None) -> Listing:
        """This client's datasets (each a :class:`DatasetInfo`), as the three servers hold them."""
        deadline = self._deadline(timeout)
        replies = fan_out(
            self._connections,
            lambda c: c.stub.ListDatasets(pb.ListDatasetsRequest(), timeout=deadline),
            self._pool,
        )
        lists = [[dataset_info(self.identity, d) for d in reply.datasets] for reply in replies]
        return compare(
            self._names(), lists, lambda d: d.ref.name, _dataset_content, lambda d: f"dataset {d.ref}"
        )

    def add_grant(self, name: str, grant: Grant, *, timeout: float | None = None) -> None:
        """Add ``grant`` to this client's dataset ``name`` on all three servers.

        Raises:
            MpcError: a server refused; the message names it. A grant that
                reached only some servers allows no job until it reaches all.
        """
        request = pb.AddGrantRequest(name=validate_name(name, "dataset name"))
        request.grant.CopyFrom(grant_to_proto(grant, self.identity, name))
        deadline = self._deadline(timeout)
        fan_out(self._connections, lambda c: c.stub.AddGrant(request, timeout=deadline), self._pool)

    def revoke_grant(self, name: str, grant: Grant | str, *, timeout: float | None = None) -> None:
        """Revoke a grant (or grant id) of this client's dataset ``name`` on all three servers."""
        grant_id = grant.grant_id if isinstance(grant, Grant) else grant
        request = pb.RevokeGrantRequest(
            name=validate_name(name, "dataset name"), grant_id=bytes.fromhex(grant_id)
        )
        deadline = self._deadline(timeout)
        fan_out(self._connections, lambda c: c.stub.RevokeGrant(request, timeout=deadline), self._pool)

    def jobs(self, *, limit: int = 0, timeout: float | None = None) -> Listing:
        """The jobs this client submitted or receives (each a :class:`JobRecord`), newest last."""
        request = pb.ListJobsRequest(limit=limit)
        deadline = self._deadline(timeout)
        replies = fan_out(self._connections, lambda c: c.stub.ListJobs(request, timeout=deadline), self._pool)
        return self._records([reply.jobs for reply in replies])

    def audit(self, name: str = "", *, limit: int = 0, timeout: float | None = None) -> Listing:
        """Every job that read this client's datasets (``name``: one of them), from all three servers.

        ``disagreements`` names any job a server recorded differently or not
        at all: each server keeps its own append-only trail.
        """
        request = pb.GetAuditTrailRequest(
            name=validate_name(name, "dataset name") if name else "", limit=limit
        )
        deadline = self._deadline(timeout)
        replies = fan_out(
            self._connections, lambda c: c.stub.GetAuditTrail(request, timeout=deadline), self._pool
        )
        return self._records([reply.records for reply in replies])

    def _records(self, lists: Sequence[Sequence[pb.JobRecord]]) -> Listing:
        records = [[job_record(r) for r in items] for items in lists]
        return compare(
            self._names(),
            records,
            lambda r: (r.submitter, r.job_id),
            record_content,
            lambda r: f"job {r.job_id} of {r.submitter}",
        )
