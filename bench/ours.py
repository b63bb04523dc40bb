"""Our side of the benchmark: a real three-server cluster over mutual TLS.

Bytes between servers and between clients and servers come from the
servers' own transport counters (their Prometheus metrics,
``mpc_peer_bytes_sent_total`` and ``mpc_client_bytes_total``), peak memory
from each server process's VmHWM, reset before each workload. Uploads in
``linreg`` come from three owner processes (``mpc_bench.owner``) started
before the clock runs; each grants the model owner exactly the benchmark's
prediction job (a pinned grant).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import IO, Any

import numpy as np

from mpc_cli.demo_data import normal, uniform
from mpc_cli.local_cluster import LocalCluster
from mpc_client import Grant, MpcClient

from . import alignment, comparison, memory, training
from .measure import CpuWindow, peak_rss_mb, reset_peak_rss, summary
from .workloads import Row, Workload

OWNER, BANK_1, BANK_2 = "model-owner", "bank-1", "bank-2"
GRANTS = [Grant(OWNER, "elementwise.multiply"), Grant(OWNER, "dot")]  # the owner's own data only
LINREG_JOB: dict[str, Any] = {
    "features": [f"{BANK_1}/X", f"{BANK_2}/X"],
    "weights": f"{OWNER}/w",
    "intercept": f"{OWNER}/c",
}
"""The input mapping of the ``linreg`` job; each owner's grant pins exactly it."""


class Owner:
    """An owner process speaking the line protocol of ``mpc_bench.owner`` (or ``module``'s)."""

    def __init__(
        self,
        cluster: LocalCluster,
        identity: str,
        data: Path,
        job: dict[str, Any] | None = None,
        *,
        module: str = "mpc_bench.owner",
        env: dict[str, str] | None = None,
    ) -> None:
        command = [sys.executable, "-m", module, "--cluster", str(cluster.cluster_file)]
        command += ["--identity", identity, "--data", str(data)]
        command += [] if job is None else ["--job", json.dumps(job)]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.expect("ready")

    def send(self, message: dict[str, Any]) -> None:
        """Write one command line."""
        stdin: IO[str] | None = self.process.stdin
        if stdin is None:
            raise RuntimeError("owner process has no stdin")
        stdin.write(json.dumps(message) + "\n")
        stdin.flush()

    def receive(self) -> dict[str, Any]:
        """The process's next reply."""
        stdout: IO[str] | None = self.process.stdout
        line = stdout.readline() if stdout is not None else ""
        if not line:
            raise RuntimeError(f"owner process exited (code {self.process.poll()})")
        message: dict[str, Any] = json.loads(line)
        return message

    def expect(self, key: str) -> Any:
        """The value of ``key`` in the next reply."""
        return self.receive()[key]

    def close(self) -> None:
        """Tell the process to quit and wait for it."""
        self.send({"cmd": "quit"})
        self.process.wait(timeout=30)


class OursRunner:
    """Runs each workload on a freshly started local cluster.

    A fresh cluster per workload keeps one workload's data and memory out
    of the next one's figures (startup is not timed).
    """

    def __init__(self, directory: Path, progress: Callable[[str], None]) -> None:
        """Keep certificates, logs and data in ``directory``."""
        self.directory = directory
        self.progress = progress
        self.client: MpcClient | None = None
        self.cluster = self._cluster(128)

    def _cluster(self, ring: int) -> LocalCluster:
        clients = (OWNER, BANK_1, BANK_2)
        return LocalCluster(self.directory / f"cluster-{ring}", clients=clients, ring_bits=ring, metrics=True)

    @property
    def owner_client(self) -> MpcClient:
        """The model owner's client (connected while a workload runs)."""
        return self._client

    @property
    def _client(self) -> MpcClient:
        if self.client is None:
            raise RuntimeError("the cluster is not started")
        return self.client

    def run(self, workload: Workload) -> Row:
        """Start a cluster, measure one workload, stop the cluster."""
        runners: dict[str, Callable[[Workload], Row]] = {
            "multiply": self._products,
            "dot": self._products,
            "linreg": self._linreg,
            "upload": self._upload,
            "stats": partial(training.stats, self),
            "fit-ridge": partial(training.fit, self),
            "fit-ols": partial(training.fit, self),
            "decide": partial(training.decide, self),
            "compare": partial(comparison.compare, self),
            "predict-large": partial(memory.predict_large, self),
            "logistic": partial(training.logistic, self),
            "align": partial(alignment.align, self),
        }
        runner = runners[workload.kind]
        self.cluster = self._cluster(workload.ring)
        self.cluster.start()
        try:
            with self.cluster.client(OWNER, timeout=300) as client:
                self.client = client
                return runner(workload)
        finally:
            self.client = None
            self.cluster.stop()

    def measured(self, workload: Workload, once: Callable[[], float | None]) -> Row:
        """Warm up once (unless the workload says not to), then time ``workload.reps`` calls of ``once``."""
        if workload.warmup:
            once()
        pids = [p.pid for p in self.cluster.processes if p is not None]
        for pid in pids:
            reset_peak_rss(pid)
        before = self._traffic_now()
        cpu = CpuWindow(pids)
        times, errors = [], []
        for _ in range(workload.reps):
            started = time.perf_counter()
            error = once()
            times.append(time.perf_counter() - started)
            errors.append(error)
        cpu_figures = cpu.close()
        after = self._traffic_now()
        median, low, high = summary(times)
        peer, client = (b - a for a, b in zip(before, after, strict=True))
        return Row(
            system="ours",
            workload=workload.kind,
            n=workload.n,
            d=workload.d,
            median_s=median,
            ring=workload.ring,
            min_s=low,
            max_s=high,
            reps=workload.reps,
            max_abs_error=max((e for e in errors if e is not None), default=None),
            bytes_between_servers=peer // workload.reps,
            bytes_client_server=client // workload.reps,
            peak_rss_mb=[round(peak_rss_mb(pid), 1) for pid in pids],
            extra=cpu_figures,
        )

    def _traffic_now(self) -> tuple[int, int]:
        """Bytes the servers sent to their peers, and client-API bytes, so far (from their metrics)."""
        peer = client = 0.0
        for index in range(3):
            metrics = self.cluster.scrape(index)
            peer += sum(v for k, v in metrics.items() if k.startswith("mpc_peer_bytes_sent_total"))
            client += sum(v for k, v in metrics.items() if k.startswith("mpc_client_bytes_total"))
        return int(peer), int(client)

    def _products(self, workload: Workload) -> Row:
        x, y = 20 * uniform(workload.n) - 10, 20 * uniform(workload.n) - 10
        self._client.upload("bench-x", x, grants=GRANTS, overwrite=True)
        self._client.upload("bench-y", y, grants=GRANTS, overwrite=True)
        program = "elementwise.multiply" if workload.kind == "multiply" else "dot"
        expected = x * y if workload.kind == "multiply" else np.array(x @ y)
        rounds: list[int] = []

        def once() -> float:
            job, values = self._client.run_and_fetch(program, {"x": "bench-x", "y": "bench-y"})
            rounds.append(max(s.rounds for s in job.stats.values()))
            return float(np.abs(values - expected).max())

        row = self.measured(workload, once)
        row.rounds = rounds[-1]
        row.note = "shares already on the servers; job submission to checked, reconstructed output"
        return row

    def _upload(self, workload: Workload) -> Row:
        values = 2000 * uniform(workload.n) - 1000

        def once() -> None:
            self._client.upload("bench-upload", values, overwrite=True)

        row = self.measured(workload, once)
        row.note = "one owner: encode, secret-share, upload (seed-compressed) to all three servers"
        return row

    def _linreg(self, workload: Workload) -> Row:
        owners = self._start_owners(workload)
        inputs = LINREG_JOB
        try:

            def once() -> float:
                for owner in owners.values():
                    owner.send({"cmd": "upload"})
                for owner in owners.values():
                    owner.expect("ok")
                owners[OWNER].send({"cmd": "run", "inputs": inputs})
                owners[OWNER].expect("ok")
                return float(owners[OWNER].expect("max_abs_error"))

            row = self.measured(workload, once)
        finally:
            for owner in owners.values():
                owner.close()
        row.rounds = 2
        row.note = "end to end: three owner processes upload, the job runs, the model owner reconstructs"
        return row

    def _start_owners(self, workload: Workload) -> dict[str, Owner]:
        n, d = workload.n, workload.d
        half = d // 2
        features = normal(n * d).reshape(n, d)
        weights, intercept = normal(d), float(normal(1)[0])
        data = self.directory / "data"
        data.mkdir(exist_ok=True)
        np.savez(data / "bank-1.npz", X=features[:, :half])
        np.savez(data / "bank-2.npz", X=features[:, half:])
        np.savez(
            data / "owner.npz", w=weights, c=np.array(intercept), reference=features @ weights + intercept
        )
        files = {BANK_1: "bank-1.npz", BANK_2: "bank-2.npz", OWNER: "owner.npz"}
        return {
            identity: Owner(self.cluster, identity, data / name, LINREG_JOB)
            for identity, name in files.items()
        }
