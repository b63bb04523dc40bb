"""Consent: what a grant allows, checked by each server on its own for every job.

A dataset's owner grants a **receiver** outputs of one **program**, and says
exactly what the job may look like:

* ``role``: the role the dataset plays (empty: any role);
* the **scope** of the other inputs:

  - ``OWN_DATA`` (the default and the safest): every other input is a dataset
    of the same owner, so nobody else's data (a receiver's crafted weights,
    say) can be combined with it;
  - ``PINNED``: the job's complete list of inputs, in order, each by
    owner/name and, for other owners' datasets, usually by version (the
    ``upload_id`` current when the grant was made: re-uploading the dataset
    voids the grant). The granting dataset itself appears in the list without
    a version;
  - ``ANY_INPUTS``: read access. Any combination, which lets the receiver
    compute anything the program can from the dataset.

* who may **submit** such a job (default: the receiver only);
* optionally a **use limit** (jobs) and an **expiry** (Unix time).

:meth:`Grant.refusal` says why a job is not allowed (None when it is); the
job service asks it for every input on every server. Messages name the grant
by its id and say which condition failed; they are shown only to clients the
grant names (receiver or submitters), so they reveal nothing to strangers.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mpc_core.errors import InvalidArgumentError, ResourceLimitError
from mpc_core.identity import validate_name
from mpc_server.service.model import DatasetRef, JobInput
from mpc_server.service.programs.params import (
    MAX_PARAMETERS,
    ParamSpec,
    ParamType,
    ParamValue,
    params_from_json,
    params_to_json,
    type_of,
)

GRANT_ID_BYTES = 16
MAX_PINNED_INPUTS = 130
MAX_SUBMITTERS = 64


class GrantScope(enum.Enum):
    """What the other inputs of a job may be."""

    OWN_DATA = "own-data"
    PINNED = "pinned"
    ANY_INPUTS = "any-inputs"


@dataclass(frozen=True)
class PinnedInput:
    """One input of a pinned job: its role, the dataset, and the version it must have (or any)."""

    role: str
    dataset: DatasetRef
    upload_id: bytes = b""
    """The required version; empty: any version (always so for the granting dataset itself)."""
    columns: tuple[str, ...] = ()
    """The columns the job must select from it, exactly (empty: it selects none)."""

    def __str__(self) -> str:
        """``role=owner/name@version#columns``."""
        version = f"@{self.upload_id.hex()}" if self.upload_id else ""
        columns = f"#{','.join(self.columns)}" if self.columns else ""
        return f"{self.role}={self.dataset}{version}{columns}"


@dataclass(frozen=True)
class Grant:
    """One consent given by a dataset's owner; see the module docstring."""

    grant_id: bytes
    receiver: str
    program: str
    role: str = ""
    scope: GrantScope = GrantScope.OWN_DATA
    inputs: tuple[PinnedInput, ...] = ()
    submitters: tuple[str, ...] = ()
    max_uses: int = 0
    expires_at: float = 0.0
    parameters: tuple[tuple[str, ParamValue], ...] = ()
    """Parameters the job must have exactly these values of (sorted by name)."""
    keep_outputs: bool = False
    """Every output of the job must be kept on the servers as a dataset (none delivered)."""

    def __post_init__(self) -> None:
        """Refuse grants that cannot mean what they say."""
        if len(self.grant_id) != GRANT_ID_BYTES:
            raise InvalidArgumentError(f"a grant id is {GRANT_ID_BYTES} bytes")
        validate_name(self.receiver, "grant receiver")
        for submitter in self.submitters:
            validate_name(submitter, "grant submitter")
        if len(self.submitters) > MAX_SUBMITTERS or len(self.inputs) > MAX_PINNED_INPUTS:
            raise InvalidArgumentError("a grant names too many submitters or inputs")
        if (self.scope is GrantScope.PINNED) != bool(self.inputs):
            raise InvalidArgumentError("a grant lists pinned inputs exactly when its scope is pinned")
        if self.max_uses < 0 or self.expires_at < 0:
            raise InvalidArgumentError("use limits and expiry times cannot be negative")
        names = [name for name, _ in self.parameters]
        if len(set(names)) != len(names) or len(names) > MAX_PARAMETERS:
            raise InvalidArgumentError("a grant fixes each parameter at most once")

    @property
    def label(self) -> str:
        """How messages name the grant: its id."""
        return f"grant {self.grant_id.hex()[:12]}"

    @property
    def may_submit(self) -> tuple[str, ...]:
        """The identities that may submit jobs under this grant."""
        return self.submitters or (self.receiver,)

    def names(self, identity: str) -> bool:
        """Whether ``identity`` is a party of this grant (receiver or submitter)."""
        return identity == self.receiver or identity in self.may_submit

    def refusal(self, job: JobView, dataset: DatasetRef, uses: int, now: float) -> str | None:
        """Why ``job`` is not allowed to use ``dataset`` under this grant; None if it is."""
        return (
            self._parties_refusal(job, uses, now)
            or self._terms_refusal(job, dataset)
            or self._inputs_refusal(job, dataset)
        )

    def _parties_refusal(self, job: JobView, uses: int, now: float) -> str | None:
        if job.receiver != self.receiver or job.program != self.program:
            return f"it allows {self.receiver} outputs of {self.program}"
        if job.submitter not in self.may_submit:
            return f"jobs under it may be submitted by {', '.join(self.may_submit)} only"
        if self.expires_at and now >= self.expires_at:
            return "it has expired"
        if self.max_uses and uses >= self.max_uses:
            return f"its {self.max_uses} uses are spent"
        return None

    def _terms_refusal(self, job: JobView, dataset: DatasetRef) -> str | None:
        roles = {item.role for item in job.inputs if item.dataset == dataset}
        if self.role and roles != {self.role}:
            return f"it allows the dataset in the role {self.role!r} only"
        for name, value in self.parameters:
            given = job.params.get(name)
            if given is None or not _same_value(given, value):
                return f"it fixes the parameter {name} to {value!r}"
        if self.keep_outputs and not job.keeps_all:
            return "it allows only jobs that keep every output on the servers"
        return None

    def _inputs_refusal(self, job: JobView, dataset: DatasetRef) -> str | None:
        if self.scope is GrantScope.ANY_INPUTS:
            return None
        if self.scope is GrantScope.OWN_DATA:
            foreign = sorted({str(i.dataset) for i in job.inputs if i.dataset.owner != dataset.owner})
            return (
                f"it allows no other owner's data (the job names {', '.join(foreign)})" if foreign else None
            )
        actual = [(item.role, item.dataset, tuple(item.columns)) for item in job.inputs]
        if actual != [(pin.role, pin.dataset, pin.columns) for pin in self.inputs]:  # columns too
            return "its inputs are pinned to " + ", ".join(str(pin) for pin in self.inputs)
        for pin in self.inputs:
            if pin.upload_id and pin.dataset != dataset and job.version_of(pin.dataset) != pin.upload_id:
                return f"it pins {pin.dataset} to a version that has been replaced"
        return None


def _same_value(given: ParamValue, fixed: ParamValue) -> bool:
    """Whether a job's parameter equals a grant's (an integer fixes a number parameter to that number)."""
    if type_of(given) is ParamType.NUMBER and type_of(fixed) is ParamType.INTEGER:
        return given == float(fixed)
    return type_of(given) is type_of(fixed) and given == fixed


@dataclass(frozen=True)
class JobView:
    """What a grant looks at in a job: submitter, receiver, program, inputs, versions."""

    submitter: str
    receiver: str
    program: str
    inputs: tuple[JobInput, ...]
    version_of: Callable[[DatasetRef], bytes | None]
    """The current upload id of a dataset named by the job."""
    params: Mapping[str, ParamValue] = field(default_factory=dict)
    """The job's complete parameters (defaults filled in)."""
    keeps_all: bool = False
    """Whether the job keeps every output on the servers."""


def legacy_grant_id(upload_id: bytes, receiver: str, program: str) -> bytes:
    """A deterministic id for a grant stored without one (files of format 1 and 2)."""
    return hashlib.sha256(b"grant|" + upload_id + f"|{receiver}|{program}".encode()).digest()[:GRANT_ID_BYTES]


def check_grants(
    grants: Sequence[Grant], programs: Collection[str], dataset: DatasetRef, max_grants: int
) -> None:
    """Refuse a set of grants an owner cannot give (unknown programs, duplicate ids, too many)."""
    if len(grants) > max_grants:
        raise ResourceLimitError(f"at most {max_grants} grants per dataset")
    if len({g.grant_id for g in grants}) != len(grants):
        raise InvalidArgumentError("two grants share one grant id")
    for grant in grants:
        if grant.program not in programs:
            known = ", ".join(sorted(programs))
            raise InvalidArgumentError(f"{grant.label} names an unknown program (known: {known})")
        if grant.scope is GrantScope.PINNED and dataset not in {pin.dataset for pin in grant.inputs}:
            raise InvalidArgumentError(f"{grant.label} pins inputs that do not include {dataset} itself")
        specs = (
            getattr(programs.get(grant.program), "parameters", ()) if isinstance(programs, Mapping) else None
        )
        if specs is not None:
            _check_fixed(grant, {spec.name: spec for spec in specs})


def _check_fixed(grant: Grant, specs: Mapping[str, ParamSpec]) -> None:
    """A grant may fix only parameters its program has, each with a value of the parameter's type."""
    for name, value in grant.parameters:
        spec = specs.get(name)
        if spec is None:
            known = ", ".join(specs) or "none"
            raise InvalidArgumentError(f"{grant.label} fixes {name}, which {grant.program} has not ({known})")
        spec.check(value, grant.program)


def grant_to_json(grant: Grant) -> dict[str, Any]:
    """A grant as JSON (share-file headers and the grant book)."""
    return {
        "id": grant.grant_id.hex(),
        "receiver": grant.receiver,
        "program": grant.program,
        "role": grant.role,
        "scope": grant.scope.value,
        "inputs": [
            [
                p.role,
                p.dataset.owner,
                p.dataset.name,
                p.upload_id.hex(),
                *([list(p.columns)] if p.columns else []),
            ]
            for p in grant.inputs
        ],
        "submitters": list(grant.submitters),
        "max_uses": grant.max_uses,
        "expires_at": grant.expires_at,
        "parameters": params_to_json(dict(grant.parameters)),
        "keep_outputs": grant.keep_outputs,
    }


def _pin_to_json(pin: PinnedInput) -> list[Any]:
    columns = [list(pin.columns)] if pin.columns else []  # absent when none: old files stay as they were
    return [pin.role, pin.dataset.owner, pin.dataset.name, pin.upload_id.hex(), *columns]


def _pin_from_json(item: Sequence[Any]) -> PinnedInput:
    role, owner, name, version = item[:4]
    columns = tuple(str(c) for c in item[4]) if len(item) > 4 else ()
    return PinnedInput(role, DatasetRef(owner, name), bytes.fromhex(version), columns)


def grant_from_json(data: Any, upload_id: bytes) -> Grant:
    """A grant from :func:`grant_to_json`, or from a format-1/2 ``[receiver, program]`` pair.

    Old pairs meant "any inputs"; they are read as own-data grants, the narrower meaning.
    """
    if isinstance(data, list):
        receiver, program = data
        return Grant(legacy_grant_id(upload_id, receiver, program), receiver, program)
    inputs = tuple(_pin_from_json(item) for item in data["inputs"])
    return Grant(
        grant_id=bytes.fromhex(data["id"]),
        receiver=data["receiver"],
        program=data["program"],
        role=data["role"],
        scope=GrantScope(data["scope"]),
        inputs=inputs,
        submitters=tuple(data["submitters"]),
        max_uses=int(data["max_uses"]),
        expires_at=float(data["expires_at"]),
        parameters=tuple(sorted(params_from_json(data.get("parameters", [])).items())),
        keep_outputs=bool(data.get("keep_outputs", False)),
    )
