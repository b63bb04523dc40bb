"""Where a finished job's outputs go: kept for the receiver to fetch, or stored as its datasets.

The one owner of that step for the job service. A delivered output goes to
the output store under ``submitter/job_id/output`` (durably before the job
answers, or written in the background when the receiver takes it with the
answer: ``DeferredWriter``). A kept output (``JobSpec.keep``) becomes a
dataset of the receiver, with the grants the job gave it and a version the
three servers derive from the job digest; nothing of it is ever delivered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from mpc_core.sharing import ReplicatedShare
from mpc_server.service.deferred_writer import DeferredWriter
from mpc_server.service.job_plan import JobPlan
from mpc_server.service.key_store import KeyStore
from mpc_server.service.model import (
    DatasetRef,
    DatasetSummary,
    JobResult,
    JobStats,
    OutputInfo,
    StoredOutput,
)
from mpc_server.service.store import DatasetStore, OutputStore


class JobOutputs:
    """Stores the outputs of the jobs one server runs."""

    def __init__(
        self,
        outputs: OutputStore,
        datasets: DatasetStore,
        keys: KeyStore | None = None,
        *,
        dataset_keys: KeyStore | None = None,
    ) -> None:
        """Deliver into ``outputs``, keep into ``datasets``; a keyed job's row tokens into ``keys``.

        ``dataset_keys`` holds the tokens of keyed datasets: those of kept keyed outputs go there.
        """
        self._outputs = outputs
        self._datasets = datasets
        self.keys = keys
        self._dataset_keys = dataset_keys
        self._storing: set[DatasetRef] = set()
        """Keyed jobs between writing their tokens and storing their outputs (not to be swept)."""
        self._deferred = DeferredWriter(outputs)

    def activity(self) -> None:
        """Clients are busy: postpone background writes."""
        self._deferred.activity()

    async def flush(self) -> None:
        """Write (or drop) every output pending in the background."""
        await self._deferred.flush()

    def sweep_row_tokens(self) -> int:
        """Remove the row tokens of jobs none of whose outputs is kept any more (blocking)."""
        return self.keys.sweep(self._has_outputs) if self.keys is not None else 0

    def _has_outputs(self, job: DatasetRef) -> bool:
        """Whether the job (``submitter/job_id``) still has an output kept for its receiver."""
        return job in self._storing or self.kept_any(job.owner, job.name)

    def kept_any(self, submitter: str, job_id: str) -> bool:
        """Whether an output of this job is still kept (the job ran before, perhaps before a restart)."""
        return bool(self._outputs.outputs_of(submitter, job_id))

    def drop_soon(self, submitter: str, job_id: str) -> None:
        """The receiver has every delivered output and wants no server copy.

        They are dropped with the next background batch, within about a second
        and never written: retries of the job racing the answer still get them.
        """
        for key in self._outputs.outputs_of(submitter, job_id):
            self._outputs.handed_over(key)
            self._deferred.add(key, keep=False)

    def recorded(self, plan: JobPlan) -> JobResult | None:
        """The result of a job that ran before a restart (its delivered outputs are kept), if any."""
        keys = self._outputs.outputs_of(plan.submitter, plan.spec.job_id)
        if not keys:
            return None
        stored = [self._outputs.get(key) for key in keys]
        if any(output.job_digest != plan.digest for output in stored):
            return None
        return JobResult(plan.spec.job_id, plan.outputs, JobStats(0, 0, 0, 0.0))

    async def store(self, plan: JobPlan, shares: Mapping[str, ReplicatedShare], *, background: bool) -> None:
        """Deliver or keep every output of a finished job (a keyed job's row tokens first)."""
        join = plan.layout.join
        if (
            join is not None
            and self.keys is not None
            and any(o.keyed and o.kept_as is None for o in plan.outputs)
        ):
            ref = DatasetRef(plan.submitter, plan.spec.job_id)
            self._storing.add(ref)
            try:
                await asyncio.to_thread(self.keys.write, ref, plan.digest[:16], "job", join.tokens.tobytes())
                await self._store_outputs(plan, shares, background=background)
            finally:
                self._storing.discard(ref)
            return
        await self._store_outputs(plan, shares, background=background)

    async def _store_outputs(
        self, plan: JobPlan, shares: Mapping[str, ReplicatedShare], *, background: bool
    ) -> None:
        """Deliver each output to the output store, or keep it as a dataset."""
        for index, info in enumerate(plan.outputs):
            share = shares[info.name]
            if info.kept_as is not None:
                await self._keep(plan, info, share)
                continue
            spec = plan.spec
            output = StoredOutput(spec.job_id, spec.receiver, info, share, plan.digest, plan.submitter, index)
            if background:
                self._outputs.put(output, durable=False)
                self._deferred.add(output.key)
            else:
                await asyncio.to_thread(self._outputs.put, output)

    async def _keep(self, plan: JobPlan, info: OutputInfo, share: ReplicatedShare) -> None:
        """Store one output as the receiver's dataset; a keyed output stays keyed by the join's tokens.

        The tokens are written before the dataset is published, so a
        published keyed dataset always has its tokens (``service.key_store``).
        """
        if info.kept_as is None:
            return
        join = plan.layout.join
        keys = self._dataset_keys
        alignment = _alignment(plan) if info.keyed and join is not None and keys is not None else ""
        if alignment and join is not None and keys is not None:
            tokens = join.tokens.tobytes()
            await asyncio.to_thread(keys.write, info.kept_as, info.kept_version, alignment, tokens)
        keep = plan.keeps[info.name]
        summary = DatasetSummary(
            info.kept_as,
            info.shape,
            info.ring_bits,
            info.fractional_bits,
            info.magnitude_bits,
            info.kept_version,
            time.time(),
            keep.grants,
            alignment=alignment,
        )
        await asyncio.to_thread(self._datasets.keep, summary, share, keep.overwrite)


def _alignment(plan: JobPlan) -> str:
    """The alignment of a keyed job's inputs (the planner made sure there is exactly one)."""
    return next((d.alignment for ds in plan.inputs.values() for d in ds if d.keyed), "")
