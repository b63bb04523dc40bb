"""Ten clients, a hundred jobs at once: right answers, no cross-talk, nothing left behind.

Each client is its own identity with its own MpcClient in its own thread,
its own datasets (distinct values and sizes per client) and its own mix of
elementwise.multiply, dot and linear_regression.predict jobs, half fetched
inline and half through FetchOutput. Inputs are multiples of 1/8, so every
result is exact in fixed point: any mix-up between jobs (a share of another
job, a message of another job's round) shows as a wrong value, not as
rounding. Afterwards the servers' own gauges must be back at idle.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mpc_cli.local_cluster import LocalCluster
from mpc_client import (
    AlreadyExistsError,
    FailedPreconditionError,
    Grant,
    MpcClient,
    NotFoundError,
    ProtocolTimeoutError,
)

from .conftest import metric, scrape, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
CLIENT_COUNT = 10
JOBS_PER_CLIENT = 10
MUL, DOT, LR = "elementwise.multiply", "dot", "linear_regression.predict"
NAMES = tuple(f"tenant-{i}" for i in range(CLIENT_COUNT))
TASK_TOLERANCE = 3


@pytest.fixture(scope="module")
def busy_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path_factory.mktemp("busy-cluster"), clients=NAMES, metrics=True)
    local.start()
    yield local
    local.stop()


def _gauges(cluster: LocalCluster) -> list[dict[str, float]]:
    names = ("mpc_mailbox_jobs", "mpc_mailbox_buffered_bytes", "mpc_running_jobs", "mpc_asyncio_tasks")
    out = []
    for server in range(3):
        text = scrape(cluster, server)
        out.append({name: metric(text, name) for name in names})
    return out


MIX = (MUL, DOT, LR)


class Tenant:
    """One client identity: its data, its jobs and the answers it expects."""

    def __init__(self, cluster: LocalCluster, index: int) -> None:
        self.cluster = cluster
        self.index = index
        self.name = NAMES[index]
        rows = 16 + 211 * index  # 16 .. 1915 rows: every tenant a different size
        base = 100.0 * (index + 1)  # and distinct values (|results| stay far below 2^31)
        self.x = base + np.arange(rows) / 8
        self.y = -np.arange(rows) / 8 + index
        self.features = np.stack(
            [np.arange(rows) / 8, np.full(rows, base / 8), (np.arange(rows) % 7) / 8], axis=1
        )
        self.weights = np.array([0.5, -0.125, index / 8 + 1])
        self.intercept = 3.125 * index
        self.expected = {
            MUL: self.x * self.y,
            DOT: np.asarray(float(self.x @ self.y)),
            LR: self.features @ self.weights + self.intercept,
        }
        self.inputs = {
            MUL: {"x": "x", "y": "y"},
            DOT: {"x": "x", "y": "y"},
            LR: {"features": "features", "weights": "weights", "intercept": "intercept"},
        }

    def connect(self) -> MpcClient:
        certs = self.cluster.cert_dir
        return MpcClient.connect(
            self.cluster.cluster_file, certs / f"{self.name}.pem", certs / f"{self.name}.key", timeout=60
        )

    def upload(self) -> None:
        grants = [Grant(self.name, p) for p in MIX]
        with self.connect() as client:
            for dataset in ("x", "y", "features", "weights", "intercept"):
                client.upload(dataset, getattr(self, dataset), grants=grants, overwrite=True)

    def job(self, k: int, start: threading.Barrier) -> str | None:
        """Job ``k`` of this tenant, from its own client; a failure description or None."""
        program = MIX[(k + self.index) % 3]
        job_id = f"{self.name}-job-{k}"
        with self.connect() as client:
            start.wait(60)
            if k % 2:
                _, got = client.run_and_fetch(program, self.inputs[program], job_id=job_id)
            else:
                got = client.fetch(client.run(program, self.inputs[program], job_id=job_id), release=True)
        want = self.expected[program]
        if got.shape != want.shape or not np.array_equal(got, want):
            return f"{job_id} ({program}): got {got.ravel()[:3]}..., expected {want.ravel()[:3]}..."
        return None


def test_ten_clients_a_hundred_jobs(busy_cluster: LocalCluster) -> None:
    # Idle baseline after one warm-up job (the first job starts long-lived helpers).
    _tenant_warm_up(busy_cluster)
    assert wait_for(lambda: all(g["mpc_running_jobs"] == 0 for g in _gauges(busy_cluster)), 10)
    baseline = [g["mpc_asyncio_tasks"] for g in _gauges(busy_cluster)]

    tenants = [Tenant(busy_cluster, i) for i in range(CLIENT_COUNT)]
    with ThreadPoolExecutor(max_workers=CLIENT_COUNT) as pool:
        list(pool.map(Tenant.upload, tenants, timeout=60))
    # All hundred jobs leave their clients at the same moment.
    start = threading.Barrier(CLIENT_COUNT * JOBS_PER_CLIENT)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=CLIENT_COUNT * JOBS_PER_CLIENT) as pool:
        futures = [pool.submit(t.job, k, start) for t in tenants for k in range(JOBS_PER_CLIENT)]
        failures = [f for f in (future.result(timeout=100) for future in futures) if f]
    elapsed = time.monotonic() - started
    assert not failures, f"{len(failures)} wrong results (cross-talk?): {failures[:5]}"
    assert elapsed < 90, f"{CLIENT_COUNT * JOBS_PER_CLIENT} jobs took {elapsed:.0f} s"

    def idle() -> bool:
        gauges = _gauges(busy_cluster)
        return all(
            g["mpc_mailbox_jobs"] == 0
            and g["mpc_mailbox_buffered_bytes"] == 0
            and g["mpc_running_jobs"] == 0
            and g["mpc_asyncio_tasks"] <= base + TASK_TOLERANCE
            for g, base in zip(gauges, baseline, strict=True)
        )

    assert wait_for(idle, timeout=10), (
        f"not idle after the burst: {_gauges(busy_cluster)} (tasks at rest: {baseline})"
    )
    # Every job ran exactly once on every server (plus the warm-up dot), and none failed.
    ran = Counter(MIX[(k + t.index) % 3] for t in tenants for k in range(JOBS_PER_CLIENT))
    ran[DOT] += 1
    for server in range(3):
        text = scrape(busy_cluster, server)
        for program in MIX:
            assert metric(text, "mpc_jobs_total", program=program, status="OK") == ran[program]
        assert "mpc_jobs_total" in text and not re.search(r'mpc_jobs_total\{[^}]*status="(?!OK")', text)


def _tenant_warm_up(cluster: LocalCluster) -> None:
    with cluster.client(NAMES[0]) as client:
        client.upload("warm", [1.0, 2.0], grants=[Grant(NAMES[0], DOT)])
        _, value = client.run_and_fetch(DOT, {"x": "warm", "y": "warm"})
    assert float(value) == 5.0


def _peer_bytes(cluster: LocalCluster) -> float:
    total = 0.0
    for server in range(3):
        text = scrape(cluster, server)
        total += sum(
            float(v) for v in re.findall(r"^mpc_peer_bytes_sent_total\{[^}]*\} (\S+)$", text, re.MULTILINE)
        )
    return total


def test_one_job_submitted_by_ten_threads_at_once_runs_once(busy_cluster: LocalCluster) -> None:
    """Retries racing each other: all get the result, the servers compute it once."""
    tenant = Tenant(busy_cluster, 0)
    tenant.upload()
    inputs = tenant.inputs[LR]

    def measure(job_id: str, copies: int) -> tuple[float, list[np.ndarray]]:
        before = _peer_bytes(busy_cluster)
        start = threading.Barrier(copies)

        def submit(_: int) -> np.ndarray:
            with tenant.connect() as client:
                start.wait(30)
                return client.run_and_fetch(LR, inputs, job_id=job_id)[1]

        with ThreadPoolExecutor(max_workers=copies) as pool:
            results = list(pool.map(submit, range(copies), timeout=60))
        return _peer_bytes(busy_cluster) - before, results

    single, _ = measure("once-a-0001", 1)
    raced, results = measure("once-b-0001", 10)
    for result in results:
        np.testing.assert_array_equal(result, tenant.expected[LR])
    assert raced == single, f"10 racing submissions moved {raced:.0f} peer bytes, one job moves {single:.0f}"


def test_fetches_racing_job_completions_never_fail(busy_cluster: LocalCluster) -> None:
    """Many kept outputs, new jobs finishing while receivers fetch and release others.

    Every fetch looks at the whole output store (expiry) while finishing jobs
    add to it: both must work at any interleaving.
    """
    tenant = Tenant(busy_cluster, 1)
    tenant.upload()
    inputs = tenant.inputs[DOT]

    errors: list[str] = []

    def fill(worker: int) -> list[str]:
        done = []
        with tenant.connect() as client:
            for k in range(40):
                try:
                    done.append(client.run(DOT, inputs, job_id=f"fill-{worker}-{k}", timeout=10).job_id)
                except Exception as exc:
                    errors.append(f"run fill-{worker}-{k}: {exc!r}")
        return done

    with ThreadPoolExecutor(max_workers=10) as pool:
        kept = [job for jobs in pool.map(fill, range(10)) for job in jobs]
    stop = threading.Event()

    def fetcher(worker: int) -> None:
        with tenant.connect() as client:
            for job in kept[worker::5]:
                if stop.is_set():
                    return
                try:
                    value = client.fetch(job, release=True, timeout=10)
                except Exception as exc:
                    errors.append(f"fetch {job}: {exc!r}")
                    continue
                if not np.array_equal(value, tenant.expected[DOT]):
                    errors.append(f"fetch {job}: wrong value")

    def runner(worker: int) -> None:
        with tenant.connect() as client:
            for k in range(40):
                if stop.is_set():
                    return
                try:
                    client.run(DOT, inputs, job_id=f"race-{worker}-{k}", timeout=10)
                except Exception as exc:
                    errors.append(f"run race-{worker}-{k}: {exc!r}")

    with ThreadPoolExecutor(max_workers=10) as pool:
        futures = [pool.submit(fetcher, w) for w in range(5)] + [pool.submit(runner, w) for w in range(5)]
        for future in futures:
            future.result(timeout=90)
    stop.set()
    assert not errors, f"{len(errors)} calls failed, e.g. {errors[:3]}"


def test_racing_uploads_of_one_new_name_leave_one_version(busy_cluster: LocalCluster) -> None:
    """Twelve uploads of the same new dataset name, without overwrite, at the same moment.

    At most one may win, and whatever each server kept, the three servers
    must keep the *same* version: a job on the name then either computes on
    the winner's values or finds no dataset. It must never find three
    servers holding different versions of one dataset.
    """
    tenant = Tenant(busy_cluster, 2)
    name = "contended"
    copies = 12
    start = threading.Barrier(copies)
    versions = {k: np.arange(1.0, 5.0) + 10 * k for k in range(copies)}

    def upload(k: int) -> bool:
        with tenant.connect() as client:
            start.wait(30)
            try:
                # A loser refused by one server may keep the others waiting (see
                # tests/fuzz/test_upload_fuzz.py); a short deadline bounds that here.
                client.upload(name, versions[k], grants=[Grant(tenant.name, DOT)], timeout=8)
            except (AlreadyExistsError, ProtocolTimeoutError):
                return False
            return True

    with ThreadPoolExecutor(max_workers=copies) as pool:
        won = [
            k for k, ok in zip(range(copies), pool.map(upload, range(copies), timeout=60), strict=True) if ok
        ]
    assert len(won) <= 1, f"{len(won)} uploads of {tenant.name}/{name} without overwrite all succeeded"
    with tenant.connect() as client:
        try:
            _, value = client.run_and_fetch(DOT, {"x": name, "y": name})
        except NotFoundError:
            assert not won, "the winning upload is not stored"
            return
        except FailedPreconditionError as exc:
            pytest.fail(f"the servers kept different versions of {tenant.name}/{name} (won: {won}): {exc}")
    candidates = {float(v @ v): k for k, v in versions.items()}
    assert float(value) in candidates, "the dataset is none of the uploaded versions"
    if won:
        assert candidates[float(value)] == won[0], "the stored version is not the one whose upload succeeded"


def test_the_output_store_survives_the_servers_own_threading(tmp_path: Path) -> None:
    """The store as the server uses it: ``put`` in worker threads, ``get`` on the loop.

    The job service writes outputs with ``asyncio.to_thread(outputs.put, ...)``
    while FetchOutput and RunJob call ``outputs.get`` (which expires old
    outputs by iterating the index) on the event loop thread. This is that
    pattern without the network, so the interleaving shows in seconds.
    """
    store = server_config_store(tmp_path)
    for k in range(300):
        store.put(_output(f"kept-{k}"))
    stop, errors = threading.Event(), []

    def writer(worker: int) -> None:
        k = 0
        while not stop.is_set():
            store.put(_output(f"new-{worker}-{k}"))
            k += 1

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    threads = [threading.Thread(target=writer, args=(w,)) for w in range(2)]
    try:
        for thread in threads:
            thread.start()
        end = time.monotonic() + 3
        while time.monotonic() < end and not errors:
            try:
                store.get("tenant-0/kept-1/out")
            except RuntimeError as exc:
                errors.append(exc)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        sys.setswitchinterval(interval)
    assert not errors, f"reading the output store while a job stores its output failed: {errors[0]!r}"


def server_config_store(root: Path) -> Any:
    """The output store class MpcServer builds, on ``root``."""
    from mpc_server.service import output_store

    return output_store.FileOutputStore(root)


def _output(job_id: str) -> Any:
    from mpc_core.sharing import ReplicatedShare
    from mpc_server.service.model import OutputInfo, StoredOutput

    zeros = np.zeros(4, dtype=np.uint64)
    return StoredOutput(
        job_id,
        "tenant-0",
        OutputInfo((4,), 32, 64, name="out"),
        ReplicatedShare(zeros, zeros.copy()),
        bytes(32),
    )
