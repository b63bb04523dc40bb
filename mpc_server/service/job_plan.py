"""Planning a job on one server: inputs, visibility, consent, rings, bounds, digest.

Everything here is decided from datasets' summaries (no share is read) and
before any message leaves the server:

1. the program, its roles and its public parameters (independent of any
   data), and the outputs to keep as datasets (names, grants);
2. every input must exist **and be visible to the submitter**: owned by it,
   or holding a grant that names it (as receiver or submitter). Otherwise
   the answer is NOT_FOUND with the same words as for a dataset that does not
   exist, so a stranger learns nothing, not even existence;
3. every input must hold a grant that allows exactly this job
   (``service.grants``); otherwise PERMISSION_DENIED naming the grants the
   submitter may see and why each refuses;
4. the inputs' ring, and the program's shape, scale and bound checks;
5. the submitter's output quota (``service.jobs``).

The job's digest, which the three servers compare before computing, covers
the spec (parameters and kept outputs included), the submitter, every
input's version and the full text of the grant each server found allowing
it. A kept output's version (its dataset's upload id) is derived from the
digest, so the three servers name it alike without another message.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from mpc_core.bounds import STATISTICAL_SECURITY_BITS
from mpc_core.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError, PermissionDeniedError
from mpc_core.identity import shown
from mpc_core.ring import Ring
from mpc_core.version import PROTOCOL_VERSION
from mpc_server.service.grant_book import GrantBook
from mpc_server.service.grants import Grant, JobView, check_grants, grant_to_json
from mpc_server.service.join import Join, inner_join
from mpc_server.service.key_store import KeyStore
from mpc_server.service.model import DatasetRef, DatasetSummary, JobSpec, KeepRequest, OutputInfo
from mpc_server.service.programs import Params, Program, ProgramPlan, resolve
from mpc_server.service.programs.params import params_to_json
from mpc_server.service.row_layout import RowLayout, keyed_datasets, layout_of, program_view
from mpc_server.service.store import DatasetStore

PlanInputs = Mapping[str, tuple[DatasetSummary, ...]]
MAX_KEPT_GRANTS = 256


@dataclass(frozen=True)
class JobPlan:
    """A job that passed every local check, ready to agree on and run."""

    submitter: str
    spec: JobSpec
    program: Program
    inputs: PlanInputs
    allowed_by: Mapping[DatasetRef, Grant]
    """The grant that allows each input dataset (on this server)."""
    program_plan: ProgramPlan
    digest: bytes
    session: str
    """The protocol session (message tags) of the job: ``job/<submitter>/<id>``."""
    keeps: Mapping[str, KeepRequest]
    """The outputs to keep as datasets, by output name."""
    layout: RowLayout
    """Which rows and columns of each input the program sees (``service.row_layout``)."""

    @property
    def outputs(self) -> tuple[OutputInfo, ...]:
        """Every output as the job reports it: kept ones with their dataset and version."""
        infos = []
        for output in self.program_plan.outputs:
            keep = self.keeps.get(output.name)
            info = replace(output.info, keyed=self.layout.keyed and output.name in self.row_outputs)
            if keep is None:
                infos.append(info)
            else:
                kept = DatasetRef(self.spec.receiver, keep.dataset)
                infos.append(replace(info, kept_as=kept, kept_version=self.kept_version(output.name)))
        return tuple(infos)

    @property
    def row_outputs(self) -> tuple[str, ...]:
        """The program's outputs with one row per input row (keyed when the job is)."""
        rows: tuple[str, ...] = getattr(self.program, "row_outputs", ())
        return rows

    @property
    def info(self) -> OutputInfo:
        """The first output's name, shape, ring, scale and bound."""
        return self.outputs[0]

    def kept_version(self, output: str) -> bytes:
        """The upload id of the dataset a kept output becomes: the same on every server."""
        return hashlib.sha256(b"kept-output|" + self.digest + output.encode()).digest()[:16]

    @property
    def output_bytes(self) -> int:
        """Bytes of this server's shares of the delivered outputs (both components)."""
        total = 0
        for info in self.outputs:
            if info.kept_as is None:
                count = 1
                for dim in info.shape:
                    count *= dim
                total += 2 * count * info.ring_bits // 8
        return total


class JobPlanner:
    """Makes job plans on one server."""

    def __init__(
        self,
        datasets: DatasetStore,
        grants: GrantBook,
        programs: Mapping[str, Program],
        ring: Ring,
        clock: Callable[[], float] = time.time,
        *,
        keys: KeyStore | None = None,
    ) -> None:
        """Plan jobs in ``ring`` over ``datasets`` with consent from ``grants`` (``keys``: join tokens)."""
        self.keys = keys
        """The keyed datasets' join tokens (None: this server keeps none)."""
        self._datasets = datasets
        self._grants = grants
        self._programs = programs
        self.ring = ring
        self._clock = clock

    def knows(self, program: str) -> bool:
        """Whether ``program`` is a program of this server."""
        return program in self._programs

    async def plan(self, submitter: str, spec: JobSpec, session: str, *, replay: bool = False) -> JobPlan:
        """Check the job locally (steps 1-4 of the module docstring).

        With ``replay`` (a job of this id ran here) the grants' use limits are
        not counted: the job itself spent the use, and an identical retry only
        returns its recorded result (the digest decides whether it is identical).
        """
        program = self._program(spec.program)
        params = resolve(program.parameters, spec.parameters, program.name)
        keeps = self._keeps(submitter, spec, program, replay)
        inputs = self._bind(submitter, program, spec)
        allowed_by = self._authorise(
            submitter,
            spec,
            inputs,
            params,
            keeps_all=len(keeps) == len(program.outputs),
            count_uses=not replay,
        )
        self._check_rings(inputs)
        keyed = keyed_datasets(program, inputs)
        join = await asyncio.to_thread(self._join, keyed) if keyed else None  # after consent, off the loop
        layout = layout_of(program, spec.inputs, inputs, join, keyed)
        program_plan = replace(
            program.plan(self.ring, program_view(inputs, layout), params, spec.output_fractional_bits),
            params=params,
        )
        _check_job_budget(program_plan)
        digest = job_digest(submitter, spec, params, inputs, allowed_by)
        return JobPlan(
            submitter, spec, program, inputs, allowed_by, program_plan, digest, session, keeps, layout
        )

    def _join(self, keyed: list[DatasetSummary]) -> Join:
        if self.keys is None:
            raise InvalidArgumentError("this server keeps no join tokens: keyed datasets cannot be joined")
        keys = self.keys
        return inner_join([keys.read(d.ref, d.upload_id, d.rows) for d in keyed])

    def _keeps(self, submitter: str, spec: JobSpec, program: Program, replay: bool) -> dict[str, KeepRequest]:
        """The outputs to keep, checked: program outputs, distinct names, grants an owner can give."""
        keeps: dict[str, KeepRequest] = {}
        for keep in spec.keep:
            if keep.output not in program.outputs:
                raise InvalidArgumentError(
                    f"program {program.name} has no output {shown(keep.output)} "
                    f"(outputs: {', '.join(program.outputs)})"
                )
            if keep.output in keeps or keep.dataset in {k.dataset for k in keeps.values()}:
                raise InvalidArgumentError("each output is kept at most once, each as its own dataset")
            ref = DatasetRef(spec.receiver, keep.dataset)
            check_grants(keep.grants, self._programs, ref, MAX_KEPT_GRANTS)
            keeps[keep.output] = keep
        if keeps and submitter != spec.receiver:
            raise PermissionDeniedError(
                "only the receiver may submit a job that keeps outputs as its datasets"
            )
        for keep in keeps.values():
            if not replay:  # a retry finds the datasets its first run kept
                self._check_free(DatasetRef(spec.receiver, keep.dataset), keep.overwrite)
        return keeps

    def _check_free(self, ref: DatasetRef, overwrite: bool) -> None:
        try:
            self._datasets.summary(ref)
        except NotFoundError:
            return
        if not overwrite:
            raise AlreadyExistsError(
                f"dataset {ref} already exists; keep the output with overwrite to replace it"
            )

    def _program(self, name: str) -> Program:
        try:
            return self._programs[name]
        except KeyError:
            known = ", ".join(sorted(self._programs))
            raise InvalidArgumentError(f"unknown program {shown(name)} (known: {known})") from None

    def _bind(self, submitter: str, program: Program, spec: JobSpec) -> PlanInputs:
        by_role: dict[str, list[DatasetSummary]] = {role.name: [] for role in program.roles}
        for job_input in spec.inputs:
            if job_input.role not in by_role:
                raise InvalidArgumentError(
                    f"program {program.name} has no input role {shown(job_input.role)} "
                    f"(roles: {', '.join(by_role)})"
                )
        for job_input in spec.inputs:
            by_role[job_input.role].append(self._visible(submitter, job_input.dataset))
        for role in program.roles:
            count = len(by_role[role.name])
            if not role.min_count <= count <= role.max_count:
                raise InvalidArgumentError(
                    f"program {program.name} takes {role.min_count}..{role.max_count} "
                    f"{role.name!r} inputs, got {count}"
                )
        return {role: tuple(datasets) for role, datasets in by_role.items()}

    def _visible(self, submitter: str, ref: DatasetRef) -> DatasetSummary:
        """The dataset, if the submitter may know it exists; else the answer for a missing one."""
        try:
            summary = self._datasets.summary(ref)
        except NotFoundError:
            summary = None
        if summary is not None and (
            ref.owner == submitter or any(g.names(submitter) for g in self._grants.grants(summary))
        ):
            return summary
        raise NotFoundError(f"dataset {ref} not found")

    def _authorise(
        self,
        submitter: str,
        spec: JobSpec,
        inputs: PlanInputs,
        params: Params,
        *,
        keeps_all: bool,
        count_uses: bool,
    ) -> dict[DatasetRef, Grant]:
        versions = {d.ref: d.upload_id for datasets in inputs.values() for d in datasets}
        view = JobView(submitter, spec.receiver, spec.program, spec.inputs, versions.get, params, keeps_all)
        now = self._clock()
        allowed: dict[DatasetRef, Grant] = {}
        for datasets in inputs.values():
            for dataset in datasets:
                if dataset.ref not in allowed:
                    allowed[dataset.ref] = self._allowing(submitter, view, dataset, now, count_uses)
        return allowed

    def _allowing(
        self, submitter: str, view: JobView, dataset: DatasetSummary, now: float, count_uses: bool
    ) -> Grant:
        refusals = []
        for grant in self._grants.grants(dataset):  # in grant-id order: every server picks the same
            uses = self._grants.uses(dataset, grant.grant_id) if count_uses else 0
            reason = grant.refusal(view, dataset.ref, uses, now)
            if reason is None:
                return grant
            if dataset.ref.owner == submitter or grant.names(submitter):
                refusals.append(f"{grant.label} does not allow it: {reason}")
        detail = "; ".join(refusals) or "no grant allows it"
        raise PermissionDeniedError(f"dataset {dataset.ref} may not be used in this job: {detail}")

    def _check_rings(self, inputs: PlanInputs) -> None:
        stale = [d for datasets in inputs.values() for d in datasets if d.ring_bits != self.ring.bits]
        if stale:
            names = ", ".join(f"{d.ref} (Z_2^{d.ring_bits})" for d in stale)
            raise InvalidArgumentError(
                f"this cluster computes in {self.ring.name}, but {names} were shared in another ring; "
                "upload them again"
            )


def _check_job_budget(plan: ProgramPlan) -> None:
    """The final rescales' truncations together may fail with probability at most 2^-40 per job."""
    failures = [
        2.0**output.info.truncation_failure_log2
        for output in plan.outputs
        if output.truncate_bits and output.info.truncation_failure_log2 is not None
    ]
    if len(failures) > 1 and sum(failures) > 2.0**-STATISTICAL_SECURITY_BITS:
        raise InvalidArgumentError(
            f"truncating the job's {len(failures)} outputs could fail with probability up to "
            f"2^{math.log2(sum(failures)):.1f} in all, above the limit of 2^-{STATISTICAL_SECURITY_BITS}; "
            "ask for the outputs at their natural scale"
        )


def job_digest(
    submitter: str,
    spec: JobSpec,
    params: Params,
    inputs: PlanInputs,
    allowed_by: Mapping[DatasetRef, Grant],
) -> bytes:
    """SHA-256 of the canonical description of a job, its dataset versions and its grants."""
    described = {
        "parameters": params_to_json(params),
        "keep": [[k.output, k.dataset, k.overwrite, [grant_to_json(g) for g in k.grants]] for k in spec.keep],
        "protocol_version": PROTOCOL_VERSION,
        "job_id": spec.job_id,
        "program": spec.program,
        "receiver": spec.receiver,
        "submitter": submitter,
        "output_fractional_bits": spec.output_fractional_bits,
        "inputs": [[item.role, str(item.dataset), list(item.columns)] for item in spec.inputs],
        "datasets": {
            str(d.ref): {
                "upload_id": d.upload_id.hex(),
                "shape": list(d.shape),
                "ring_bits": d.ring_bits,
                "fractional_bits": d.fractional_bits,
                "magnitude_bits": d.magnitude_bits,
                "grant": grant_to_json(allowed_by[d.ref]),
            }
            for datasets in inputs.values()
            for d in datasets
        },
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).digest()
