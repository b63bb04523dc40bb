"""Running jobs: authorise locally, agree with the peers, compute, keep the output.

Each server decides on its own whether a job may run (DESIGN.md, "Access is
by consent"): every input must exist here and grant the job's receiver the
job's program. The three servers then confirm they hold the same job
description (a SHA-256 over the spec and the exact dataset versions) in the
first protocol round, compute, and keep the output share for the receiver.

A job id names one job forever. Re-submitting the same spec returns the
recorded result (or waits for the running job), so clients may retry; a
different spec under a used id is refused with :class:`AlreadyExistsError`.
When anything fails here, the peers are told at once (``Channel.abort``) so
they stop waiting instead of running into their deadline.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

from mpc_core.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    MpcError,
    NotFoundError,
    PermissionDeniedError,
    ServerUnavailableError,
)
from mpc_core.identity import shown
from mpc_core.ring import Ring
from mpc_core.version import PROTOCOL_VERSION
from mpc_server.protocol.channel import Channel
from mpc_server.protocol.context import PartyContext
from mpc_server.protocol.setup import agree_and_setup_keys
from mpc_server.service.model import (
    JobResult,
    JobSpec,
    JobStats,
    OutputInfo,
    StoredDataset,
    StoredOutput,
)
from mpc_server.service.output_store import DeferredWriter
from mpc_server.service.programs import BoundInputs, Program, ProgramPlan, rescale
from mpc_server.service.store import DatasetStore, OutputStore

_log = logging.getLogger(__name__)
_JOBS_REMEMBERED = 100_000


CURRENT_JOB: ContextVar[str | None] = ContextVar("mpc_current_job", default=None)
"""The job the running task works on, for log records (``observability``)."""


class JobObserver(Protocol):
    """Told about every job's outcome (metrics); must not raise."""

    def job_finished(self, program: str, status: str, seconds: float) -> None:
        """``status`` is ``OK`` or the gRPC status name of the job's error."""
        ...


class _NoObserver:
    def job_finished(self, program: str, status: str, seconds: float) -> None:
        """Ignore the outcome."""


@dataclass(frozen=True)
class JobLimits:
    """Deadlines for jobs."""

    max_seconds: float = 300.0


def _detached(error: Exception) -> Exception:
    """A fresh copy of ``error`` without traceback or context.

    A job record keeps its error for retries; the traceback's frames would
    keep the job's inputs (open share files) and keys alive with it.
    """
    if not isinstance(error, MpcError):
        return MpcError("internal error")
    fresh = type(error).__new__(type(error))
    fresh.args = error.args
    fresh.__dict__.update(vars(error))
    return fresh


def _session(submitter: str, job_id: str) -> str:
    """Message tags are scoped by submitter: no client can disturb another's job."""
    return f"job/{submitter}/{job_id}"


def job_digest(submitter: str, spec: JobSpec, inputs: BoundInputs) -> bytes:
    """SHA-256 of the canonical description of a job and its dataset versions."""
    described = {
        "protocol_version": PROTOCOL_VERSION,
        "job_id": spec.job_id,
        "program": spec.program,
        "receiver": spec.receiver,
        "submitter": submitter,
        "output_fractional_bits": spec.output_fractional_bits,
        "inputs": {
            role: [
                {
                    "dataset": str(d.ref),
                    "upload_id": d.upload_id.hex(),
                    "shape": list(d.shape),
                    "ring_bits": d.ring.bits,
                    "fractional_bits": d.fractional_bits,
                    "magnitude_bits": d.magnitude_bits,
                }
                for d in datasets
            ]
            for role, datasets in sorted(inputs.items())
        },
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).digest()


@dataclass(frozen=True)
class _Plan:
    """A job that passed the local checks, ready to agree on and run."""

    spec: JobSpec
    program: Program
    inputs: BoundInputs
    program_plan: ProgramPlan
    digest: bytes
    session: str
    """The protocol session (message tags) of the job: ``job/<submitter>/<id>``."""

    @property
    def info(self) -> OutputInfo:
        """The output's shape, ring, scale and bound."""
        return self.program_plan.output


@dataclass
class _JobRecord:
    digest: bytes
    done: asyncio.Future[JobResult]


class JobService:
    """Runs jobs on one server."""

    def __init__(
        self,
        channel: Channel,
        datasets: DatasetStore,
        outputs: OutputStore,
        programs: Mapping[str, Program],
        limits: JobLimits = JobLimits(),
        *,
        ring: Ring,
        observer: JobObserver | None = None,
        unready_peer: Callable[[], str | None] = lambda: None,
    ) -> None:
        """Wire the service to its channel, stores and programs."""
        self._channel = channel
        self._datasets = datasets
        self._outputs = outputs
        self._programs = programs
        self._ring = ring
        self.limits = limits
        self._observer = observer or _NoObserver()
        self._unready_peer = unready_peer
        self._jobs: OrderedDict[str, _JobRecord] = OrderedDict()
        self._running = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._deferred = DeferredWriter(outputs)
        self._draining = False

    def activity(self) -> None:
        """Clients are busy (e.g. fetching an output): postpone background writes."""
        self._deferred.activity()

    def drop_output_soon(self, job_id: str) -> None:
        """The receiver has ``job_id``'s output and wants no server copy.

        It is dropped with the next background batch, within about a second
        and never written: retries of the job racing the answer still get it.
        """
        self._deferred.add(job_id, keep=False)

    @property
    def running(self) -> int:
        """Number of jobs computing right now."""
        return self._running

    def start_draining(self) -> None:
        """Refuse new jobs from now on (the server is shutting down)."""
        self._draining = True

    async def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s until no job runs; True if none does."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
                await self._deferred.flush()
        except TimeoutError:
            return False
        return True

    async def run(
        self, submitter: str, spec: JobSpec, timeout: float, *, fetched_now: bool = False
    ) -> JobResult:
        """Run ``spec`` for ``submitter`` within ``timeout`` seconds.

        With ``fetched_now`` the receiver takes the output right away (with
        the answer, or by a fetch that releases it); the server copy is then
        written in the background within a second (``DeferredWriter``), or
        not at all if released first, instead of before answering.
        """
        token = CURRENT_JOB.set(spec.job_id)
        label = spec.program if spec.program in self._programs else "unknown"
        started = time.perf_counter()
        try:
            result, computed = await self._run(submitter, spec, timeout, fetched_now)
        except Exception as exc:
            status = exc.grpc_status if isinstance(exc, MpcError) else "INTERNAL"
            self._observer.job_finished(label, status, time.perf_counter() - started)
            raise
        finally:
            CURRENT_JOB.reset(token)
        if computed:
            self._observer.job_finished(label, "OK", time.perf_counter() - started)
        return result

    async def _run(
        self, submitter: str, spec: JobSpec, timeout: float, fetched_now: bool
    ) -> tuple[JobResult, bool]:
        """The job's result, and whether it was computed now (not a replay)."""
        if self._draining:
            raise ServerUnavailableError(self._channel.peer_name(self._channel.party), "shutting down")
        session = _session(submitter, spec.job_id)
        record = self._jobs.get(spec.job_id)
        try:
            plan = self._plan(submitter, spec, session)
            if record is None:
                self._require_peers()
        except MpcError as exc:
            if record is None:  # nothing of this id runs here: stop the peers, forget it
                await self._channel.abort(session, str(exc))
                self._channel.refuse_job(session)
            raise
        if record is not None:
            if record.digest != plan.digest:
                raise AlreadyExistsError(f"job id {spec.job_id} is already used by another job")
            return await asyncio.shield(record.done), False
        kept = self._kept_result(plan)
        if kept is not None:
            return kept, False
        return await self._start(plan, timeout, fetched_now), True

    def _require_peers(self) -> None:
        missing = self._unready_peer()
        if missing is not None:
            raise ServerUnavailableError(missing, "not connected in both directions")

    async def _start(self, plan: _Plan, timeout: float, fetched_now: bool) -> JobResult:
        self._deferred.activity()
        record = _JobRecord(plan.digest, asyncio.get_running_loop().create_future())
        self._remember(plan.spec.job_id, record)
        self._running += 1
        self._idle.clear()
        try:
            result = await self._execute(plan, timeout, fetched_now)
        except asyncio.CancelledError:
            record.done.cancel()
            raise
        except Exception as exc:
            record.done.set_exception(_detached(exc))
            record.done.exception()  # mark retrieved: later retries re-raise it
            raise
        finally:
            self._running -= 1
            if self._running == 0:
                self._idle.set()
        record.done.set_result(result)
        return result

    def _kept_result(self, plan: _Plan) -> JobResult | None:
        """The result of a job that ran before a restart (its output is kept)."""
        try:
            output = self._outputs.get(plan.spec.job_id)
        except NotFoundError:
            return None
        if output.job_digest != plan.digest:
            raise AlreadyExistsError(f"job id {plan.spec.job_id} is already used by another job")
        return JobResult(plan.spec.job_id, output.info, JobStats(0, 0, 0, 0.0))

    def _plan(self, submitter: str, spec: JobSpec, session: str) -> _Plan:
        """Check the job locally: program, inputs, grants, rings, shapes, scales and bounds."""
        program = self._program(spec.program)
        inputs = self._bind(program, spec)
        self._authorise(spec, inputs)
        self._check_rings(inputs)
        program_plan = program.plan(self._ring, inputs, spec.output_fractional_bits)
        return _Plan(spec, program, inputs, program_plan, job_digest(submitter, spec, inputs), session)

    def _check_rings(self, inputs: BoundInputs) -> None:
        stale = [d for datasets in inputs.values() for d in datasets if d.ring != self._ring]
        if stale:
            names = ", ".join(f"{d.ref} ({d.ring.name})" for d in stale)
            raise InvalidArgumentError(
                f"this cluster computes in {self._ring.name}, but {names} were shared in another ring; "
                "upload them again"
            )

    def _program(self, name: str) -> Program:
        try:
            return self._programs[name]
        except KeyError:
            known = ", ".join(sorted(self._programs))
            raise InvalidArgumentError(f"unknown program {shown(name)} (known: {known})") from None

    def _bind(self, program: Program, spec: JobSpec) -> BoundInputs:
        by_role: dict[str, list[StoredDataset]] = {role.name: [] for role in program.roles}
        for job_input in spec.inputs:
            if job_input.role not in by_role:
                raise InvalidArgumentError(
                    f"program {program.name} has no input role {shown(job_input.role)} "
                    f"(roles: {', '.join(by_role)})"
                )
            by_role[job_input.role].append(self._datasets.get(job_input.dataset))
        for role in program.roles:
            count = len(by_role[role.name])
            if not role.min_count <= count <= role.max_count:
                raise InvalidArgumentError(
                    f"program {program.name} takes {role.min_count}..{role.max_count} "
                    f"{role.name!r} inputs, got {count}"
                )
        return {role: tuple(datasets) for role, datasets in by_role.items()}

    def _authorise(self, spec: JobSpec, inputs: BoundInputs) -> None:
        for datasets in inputs.values():
            for dataset in datasets:
                if not dataset.allows(spec.receiver, spec.program):
                    raise PermissionDeniedError(
                        f"dataset {dataset.ref} does not grant {spec.receiver} outputs of {spec.program}"
                    )

    async def _execute(self, plan: _Plan, timeout: float, fetched_now: bool) -> JobResult:
        spec = plan.spec
        started = time.perf_counter()
        deadline = asyncio.get_running_loop().time() + min(timeout, self.limits.max_seconds)
        ctx = PartyContext(self._channel, plan.session, deadline, ring=self._ring)
        _log.info("job %s started: %s for %s", spec.job_id, spec.program, spec.receiver)
        try:
            await agree_and_setup_keys(ctx, plan.digest)
            share = await plan.program.run(ctx, plan.inputs, plan.program_plan)
            share = await rescale(ctx, share, plan.program_plan)
        except (Exception, asyncio.CancelledError) as exc:
            reason = str(exc) if isinstance(exc, MpcError) else "job cancelled or failed internally"
            _log.warning("job %s failed: %s", spec.job_id, reason)
            await self._channel.abort(plan.session, reason)
            raise
        finally:
            self._channel.close_job(plan.session)
        output = StoredOutput(spec.job_id, spec.receiver, plan.info, share, plan.digest)
        await self._keep(output, background=fetched_now)
        stats = JobStats(
            bytes_sent=ctx.stats.bytes_sent,
            bytes_received=ctx.stats.bytes_received,
            rounds=ctx.stats.rounds,
            duration_seconds=time.perf_counter() - started,
        )
        _log.info("job %s finished in %.3f s", spec.job_id, stats.duration_seconds)
        return JobResult(spec.job_id, plan.info, stats)

    async def _keep(self, output: StoredOutput, *, background: bool) -> None:
        if not background:
            await asyncio.to_thread(self._outputs.put, output)
            return
        self._outputs.put(output, durable=False)
        self._deferred.add(output.job_id)

    def _remember(self, job_id: str, record: _JobRecord) -> None:
        self._jobs[job_id] = record
        while len(self._jobs) > _JOBS_REMEMBERED:
            self._jobs.popitem(last=False)
