"""Three servers' services in one process over the in-memory network: no gRPC, real stores.

``Cluster.put`` stores a dataset's three shares straight into the servers'
dataset stores (as a finished upload would), ``Cluster.run`` runs a job on
all three job services at once, and ``Cluster.fetch`` reconstructs an output
with the checked reveal. Programs are tested here end to end through the job
service (planning, consent, agreement, rescaling, outputs) in milliseconds.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from mpc_core.fixed_point import FixedPoint
from mpc_core.ring import RING128, Ring
from mpc_core.sharing import reconstruct_checked, share
from mpc_core.types import PARTIES
from mpc_server.protocol.memory import InMemoryNetwork
from mpc_server.service.audit import AuditLog
from mpc_server.service.grant_book import GrantBook
from mpc_server.service.grants import Grant, GrantScope
from mpc_server.service.job_plan import JobPlanner
from mpc_server.service.jobs import JobService, JobServices
from mpc_server.service.model import DatasetRef, DatasetSummary, JobInput, JobResult, JobSpec, KeepRequest
from mpc_server.service.output_store import FileOutputStore
from mpc_server.service.outputs import OutputService
from mpc_server.service.programs import default_programs
from mpc_server.service.store import FileDatasetStore

Inputs = Mapping[str, str | Sequence[str]]


@dataclass
class Server:
    """One server's services."""

    datasets: FileDatasetStore
    jobs: JobService
    outputs: OutputService


class Cluster:
    """Three servers' services sharing an in-memory network."""

    def __init__(self, root: Path, ring: Ring = RING128) -> None:
        """Create the three servers' stores under ``root``."""
        self.ring = ring
        self.network = InMemoryNetwork()
        programs = default_programs()
        self.servers = []
        for party in PARTIES:
            data = root / f"server-{party}"
            datasets, grants = FileDatasetStore(data), GrantBook(data)
            outputs = FileOutputStore(data)
            planner = JobPlanner(datasets, grants, programs, ring)
            services = JobServices(planner, datasets, grants, outputs, AuditLog(data))
            jobs = JobService(self.network.channels[party], services)
            self.servers.append(Server(datasets, jobs, OutputService(outputs)))

    def put(
        self,
        ref: str,
        values: npt.ArrayLike,
        *,
        grants: Sequence[Grant] = (),
        fractional_bits: int | None = None,
    ) -> DatasetRef:
        """Store ``values`` as dataset ``owner/name`` on all three servers (like an upload)."""
        owner, name = ref.split("/")
        array = np.asarray(values, dtype=np.float64)
        fixed = FixedPoint(32 if fractional_bits is None else fractional_bits, self.ring)
        encoded, magnitude = fixed.encode_bounded(array)
        upload_id = secrets.token_bytes(16)
        summary = DatasetSummary(
            DatasetRef(owner, name), array.shape, self.ring.bits, fixed.fractional_bits, magnitude,
            upload_id, time.time(), tuple(grants),
        )  # fmt: skip
        for server, part in zip(self.servers, share(self.ring, encoded.reshape(-1)), strict=True):
            server.datasets.keep(summary, part, overwrite=True)
        return summary.ref

    def run(
        self,
        program: str,
        inputs: Inputs,
        *,
        submitter: str = "model-owner",
        receiver: str | None = None,
        parameters: Mapping[str, float | int | bool] | None = None,
        keep: Mapping[str, str] | None = None,
        output_fractional_bits: int | None = None,
        job_id: str | None = None,
    ) -> JobResult:
        """Run a job on all three servers at once; every server must report the same outputs."""
        spec = JobSpec(
            job_id or f"job-{secrets.token_hex(6)}",
            program,
            tuple(
                JobInput(role, DatasetRef(*ref.split("/")))
                for role, refs in inputs.items()
                for ref in ([refs] if isinstance(refs, str) else refs)
            ),
            receiver or submitter,
            output_fractional_bits,
            tuple(sorted((parameters or {}).items())),
            tuple(KeepRequest(output, name) for output, name in (keep or {}).items()),
        )

        async def all_three() -> list[JobResult]:
            return list(await asyncio.gather(*(s.jobs.run(submitter, spec, 60.0) for s in self.servers)))

        results = asyncio.run(all_three())
        assert all(r.outputs == results[0].outputs for r in results), "the servers disagree on the outputs"
        return results[0]

    def fetch(self, result: JobResult, output: str = "", *, receiver: str = "model-owner",
              submitter: str = "model-owner") -> npt.NDArray[np.float64]:  # fmt: skip
        """Reconstruct one delivered output (checked reveal), decoded at its scale, in its shape."""
        parts = [s.outputs.fetch(receiver, submitter, result.job_id, output) for s in self.servers]
        info = parts[0].info
        values = reconstruct_checked([p.share for p in parts], [f"server-{i}" for i in PARTIES])
        decoded = FixedPoint(info.fractional_bits, self.ring).decode(values)
        return np.asarray(decoded, dtype=np.float64).reshape(info.shape)


def read_access(receiver: str, program: str) -> Grant:
    """A grant that lets ``receiver`` run ``program`` with any inputs (for tests not about consent)."""
    return Grant(secrets.token_bytes(16), receiver, program, scope=GrantScope.ANY_INPUTS)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Three servers' services over the in-memory network, in Z_2^128."""
    yield Cluster(tmp_path)
