"""Running jobs: plan locally, agree with the peers, compute, keep the output, audit.

Each server decides on its own whether a job may run (``service.job_plan``:
inputs visible to the submitter, grants that allow exactly this job, rings,
bounds, the receiver's output quota). The three servers then confirm they
hold the same job description (a digest over the spec, the dataset versions
and the grants that allow it) in the first protocol round; only then does a
server spend grant uses, read the inputs' shares and compute. Every job that
got that far is recorded in the audit trail of every owner whose data it
read, with its outcome.

Job ids are scoped by submitter: ``(submitter, job id)`` names one job
forever. Re-submitting the same spec returns the recorded result (or waits
for the running job), so clients may retry; a different spec under a used id
is refused with :class:`AlreadyExistsError`. When anything fails here, the
peers are told at once (``Channel.abort``) so they stop waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Protocol

from mpc_core.errors import AlreadyExistsError, MpcError, ResourceLimitError, ServerUnavailableError
from mpc_core.sharing import ReplicatedShare
from mpc_server.protocol.channel import Channel
from mpc_server.protocol.context import PartyContext
from mpc_server.protocol.setup import agree_and_setup_keys
from mpc_server.service.audit import AuditInput, AuditLog, JobRecord, KeptOutput
from mpc_server.service.chunks import (
    DEFAULT_JOB_MEMORY_BYTES,
    LoadedInputs,
    load_inputs,
    memory_plan,
    run_program,
)
from mpc_server.service.grant_book import GrantBook, Reservation
from mpc_server.service.job_outputs import JobOutputs
from mpc_server.service.job_plan import JobPlan, JobPlanner
from mpc_server.service.key_store import KeyStore
from mpc_server.service.model import DatasetRef, DatasetSummary, JobResult, JobSpec, JobStats
from mpc_server.service.programs import rescale
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
    """Deadlines and quotas for jobs."""

    max_seconds: float = 300.0
    memory_bytes: int = DEFAULT_JOB_MEMORY_BYTES
    """What one job may hold at its peak (``service.chunks``); more is RESOURCE_EXHAUSTED."""
    max_jobs_per_client: int = 32
    """Jobs one client may have running on this server at once (``mpc server --jobs-per-client``).

    Legitimate clients run a few jobs in parallel (the concurrency tests run 10 at once per
    client); the default leaves room for that and still bounds what one client makes a server hold.
    """


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


@dataclass
class _JobRecord:
    digest: bytes
    done: asyncio.Future[JobResult]


@dataclass(frozen=True)
class JobServices:
    """What the job service works with, besides the channel."""

    planner: JobPlanner
    datasets: DatasetStore
    grants: GrantBook
    outputs: OutputStore
    audit: AuditLog
    output_keys: KeyStore | None = None
    """Where keyed jobs' row tokens are kept for their outputs' receivers."""


class JobService:
    """Runs jobs on one server."""

    def __init__(
        self,
        channel: Channel,
        services: JobServices,
        limits: JobLimits = JobLimits(),
        *,
        observer: JobObserver | None = None,
        unready_peer: Callable[[], str | None] = lambda: None,
    ) -> None:
        """Wire the service to its channel, stores and programs."""
        self._channel = channel
        self._planner = services.planner
        self._datasets = services.datasets
        self._grants = services.grants
        self._outputs = services.outputs
        self._audit = services.audit
        self.limits = limits
        self._observer = observer or _NoObserver()
        self._unready_peer = unready_peer
        self._jobs: OrderedDict[tuple[str, str], _JobRecord] = OrderedDict()
        self._records: dict[tuple[str, str], JobRecord] = {}
        """Audit records of the jobs computing now (agreed on by the three servers)."""
        self._running = 0
        self._by_client: Counter[str] = Counter()
        self._idle = asyncio.Event()
        self._idle.set()
        self._results = JobOutputs(
            self._outputs, self._datasets, services.output_keys, dataset_keys=services.planner.keys
        )
        self._draining = False

    def activity(self) -> None:
        """Clients are busy (e.g. fetching an output): postpone background writes."""
        self._results.activity()

    def sweep_row_tokens(self) -> int:
        """Remove the row tokens of keyed jobs whose outputs are all gone (blocking: off the loop)."""
        return self._results.sweep_row_tokens()

    def drop_output_soon(self, submitter: str, job_id: str) -> None:
        """The receiver has the job's outputs and wants no server copy (``JobOutputs.drop_soon``)."""
        self._results.drop_soon(submitter, job_id)

    @property
    def running(self) -> int:
        """Number of jobs running (agreeing or computing) right now."""
        return self._running

    def running_records(self, identity: str) -> list[JobRecord]:
        """Records of the running jobs ``identity`` submitted or receives."""
        return [r for r in self._records.values() if identity in (r.submitter, r.receiver)]

    def start_draining(self) -> None:
        """Refuse new jobs from now on (the server is shutting down)."""
        self._draining = True

    async def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s until no job runs; True if none does."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
                await self._results.flush()
                await self._audit.sync()
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
        label = spec.program if self._planner.knows(spec.program) else "unknown"  # bounded labels
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
        record = self._jobs.get((submitter, spec.job_id))
        replay = record is not None or self._results.kept_any(submitter, spec.job_id)
        try:
            plan = await self._planner.plan(submitter, spec, session, replay=replay)
            if not replay:
                self._require_peers()
                self._outputs.check_quota(submitter, plan.output_bytes)
                memory_plan(plan, self.limits.memory_bytes, self._channel.peer_name(self._channel.party))
                self._admit(submitter)
        except MpcError as exc:
            if record is None:  # nothing of this id runs here: stop the peers, forget it
                await self._channel.abort(session, str(exc))
                self._channel.refuse_job(session)
            raise
        if record is not None:
            if record.digest != plan.digest:
                raise AlreadyExistsError(f"job id {spec.job_id} is already used by another job")
            return await asyncio.shield(record.done), False
        if replay:  # it ran before a restart: its delivered outputs are kept
            kept = self._results.recorded(plan)
            if kept is None:
                raise AlreadyExistsError(f"job id {spec.job_id} is already used by another job")
            return kept, False
        return await self._start(plan, timeout, fetched_now), True

    def _admit(self, submitter: str) -> None:
        """Refuse a job over the submitter's quota of concurrent jobs, before any agreement."""
        limit = self.limits.max_jobs_per_client
        if self._by_client[submitter] >= limit:
            server = self._channel.peer_name(self._channel.party)
            raise ResourceLimitError(
                f"quota of concurrent jobs per client exceeded: {submitter} already runs {limit} jobs "
                f"on {server} (the limit, `mpc server --jobs-per-client`); wait for one to finish"
            )

    def _require_peers(self) -> None:
        missing = self._unready_peer()
        if missing is not None:
            raise ServerUnavailableError(missing, "not connected in both directions")

    async def _start(self, plan: JobPlan, timeout: float, fetched_now: bool) -> JobResult:
        self._results.activity()
        record = _JobRecord(plan.digest, asyncio.get_running_loop().create_future())
        key = (plan.submitter, plan.spec.job_id)
        self._jobs[key] = record
        while len(self._jobs) > _JOBS_REMEMBERED:
            self._jobs.popitem(last=False)
        self._running += 1
        self._by_client[plan.submitter] += 1
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
            self._by_client[plan.submitter] -= 1
            if not self._by_client[plan.submitter]:
                del self._by_client[plan.submitter]
            if self._running == 0:
                self._idle.set()
        record.done.set_result(result)
        return result

    async def _execute(self, plan: JobPlan, timeout: float, fetched_now: bool) -> JobResult:
        spec = plan.spec
        started = time.perf_counter()
        deadline = asyncio.get_running_loop().time() + min(timeout, self.limits.max_seconds)
        ctx = PartyContext(self._channel, plan.session, deadline, ring=self._planner.ring)
        uses = [(d, plan.allowed_by[d.ref]) for d in _distinct(plan)]
        reservation = self._grants.reserve(uses)
        audit = self._record(plan)
        _log.info("job %s started: %s for %s by %s", spec.job_id, spec.program, spec.receiver, plan.submitter)
        try:
            try:
                await agree_and_setup_keys(ctx, plan.digest)
            except BaseException:
                self._grants.release(reservation)
                raise
            await self._spend(reservation)
            self._records[(plan.submitter, spec.job_id)] = audit
            natural = await self._compute(ctx, plan)
            shares = {o.name: await rescale(ctx, natural[o.name], o) for o in plan.program_plan.outputs}
        except (Exception, asyncio.CancelledError) as exc:
            reason = str(exc) if isinstance(exc, MpcError) else "job cancelled or failed internally"
            _log.warning("job %s failed: %s", spec.job_id, reason)
            await self._channel.abort(plan.session, reason)
            self._finish(plan, audit, exc)
            raise
        finally:
            self._channel.close_job(plan.session)
        await self._results.store(plan, shares, background=fetched_now)
        self._finish(plan, audit, None)
        stats = JobStats(
            bytes_sent=ctx.stats.bytes_sent,
            bytes_received=ctx.stats.bytes_received,
            rounds=ctx.stats.rounds,
            duration_seconds=time.perf_counter() - started,
        )
        _log.info("job %s finished in %.3f s", spec.job_id, stats.duration_seconds)
        return JobResult(spec.job_id, plan.outputs, stats)

    async def _spend(self, reservation: Reservation) -> None:
        """Spend the reserved uses; limited grants' counts are durable before computing."""
        for ref in self._grants.commit(reservation):
            state = self._grants.snapshot(ref)
            await asyncio.to_thread(self._grants.save_durably, ref, state)

    async def _compute(self, ctx: PartyContext, plan: JobPlan) -> Mapping[str, ReplicatedShare]:
        """The program's outputs at their natural scale, its inputs loaded (or streamed) for it."""
        inputs = await self._load(plan)
        try:
            return await run_program(ctx, plan, inputs)
        finally:
            inputs.close()

    async def _load(self, plan: JobPlan) -> LoadedInputs:
        """The inputs of the versions agreed on, off the event loop: whole, or streamed (``chunks``)."""
        server = self._channel.peer_name(self._channel.party)
        return await load_inputs(self._datasets, plan, self.limits.memory_bytes, server)

    def _record(self, plan: JobPlan) -> JobRecord:
        versions = {d.ref: d.upload_id for d in _distinct(plan)}
        inputs = tuple(
            AuditInput(i.role, i.dataset, versions[i.dataset], plan.allowed_by[i.dataset].grant_id, i.columns)
            for i in plan.spec.inputs
        )
        spec = plan.spec
        kept = tuple(
            KeptOutput(o.name, o.kept_as, o.kept_version) for o in plan.outputs if o.kept_as is not None
        )
        params = tuple(sorted(plan.program_plan.params.items()))
        return JobRecord(
            spec.job_id,
            plan.submitter,
            spec.receiver,
            spec.program,
            inputs,
            time.time(),
            parameters=params,
            kept=kept,
        )

    def _finish(self, plan: JobPlan, audit: JobRecord, error: BaseException | None) -> None:
        """Append the job's outcome to the audit trail, if it got past the agreement."""
        if self._records.pop((plan.submitter, plan.spec.job_id), None) is None:
            return
        status = "OK" if error is None else getattr(error, "grpc_status", "CANCELLED")
        message = "" if error is None or not isinstance(error, MpcError) else str(error)
        self._audit.append(replace(audit, finished_at=time.time(), status=status, error=message))
        self._audit.sync_soon()


def _distinct(plan: JobPlan) -> list[DatasetSummary]:
    """The job's datasets, each once."""
    seen: dict[DatasetRef, DatasetSummary] = {}
    for datasets in plan.inputs.values():
        for dataset in datasets:
            seen.setdefault(dataset.ref, dataset)
    return list(seen.values())
