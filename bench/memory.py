"""Our side of the memory rows (``--suite memory``): a large prediction and the servers' peak RSS.

``predict-large``: ``linear_regression.predict`` over ``n`` rows x ``d``
features from seed-compressed uploads (the SDK's default: server 0 receives
only the two PRG seeds of each dataset and expands them itself). Each feature
column is its own dataset (a dataset holds at most 2^25 elements), the first
half bank-1's, the rest bank-2's; the weights and the intercept are the model
owner's. The uploads are untimed (their wall time is in ``extra``). A
repetition is the model owner's ``run`` (job submission to the output kept
on the servers) and ``fetch(release=True)`` (the ``n`` predictions checked
and reconstructed); both are in ``extra`` separately.

Peak RSS is each server's VmHWM, reset after the uploads (and after the
warm-up, if any), so it covers the timed job and fetch only; the RSS each
server had just before the job (its process and the datasets the uploads
left in its cache) is beside it. Then every server is restarted (SIGTERM,
caches empty) and the job runs once more, read from the share files: the
``cold_*`` figures in ``extra`` (peak RSS since the restart). No peer: this
row is about our servers' memory.
"""

from __future__ import annotations

import signal
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from mpc_client import JobResult

from .measure import peak_rss_mb, rss_mb
from .training import BANK_1, BANK_2, OWNER, upload
from .workloads import Row, Workload

if TYPE_CHECKING:
    from .ours import OursRunner

PREDICT = "linear_regression.predict"


def _upload_columns(runner: OursRunner, n: int, d: int) -> tuple[list[str], npt.NDArray[np.float64], float]:
    """One dataset per column (bank-1's first half, bank-2's the rest); refs, X w + c, upload seconds."""
    rng = np.random.default_rng([777, n, d])  # benchmark data only
    weights, intercept = rng.standard_normal(d), 0.5
    expected = np.full(n, intercept)
    refs = []
    started = time.perf_counter()
    for j in range(d):
        column = rng.standard_normal(n)
        bank = BANK_1 if j < d // 2 else BANK_2
        upload(runner, bank, f"bench-col-{j}", column, PREDICT)
        refs.append(f"{bank}/bench-col-{j}")
        expected += weights[j] * column
    upload(runner, OWNER, "bench-w", weights, PREDICT)
    upload(runner, OWNER, "bench-c", np.array(intercept), PREDICT)
    return refs, expected, time.perf_counter() - started


def predict_large(runner: OursRunner, workload: Workload) -> Row:
    """``n x d`` predictions from shares on the servers: run + fetch timed, peak RSS per server."""
    refs, expected, upload_s = _upload_columns(runner, workload.n, workload.d)
    job: dict[str, Any] = {"features": refs, "weights": "bench-w", "intercept": "bench-c"}
    pids = [p.pid for p in runner.cluster.processes if p is not None]
    jobs: list[JobResult] = []
    phases: list[tuple[float, float]] = []
    rss_before: list[list[float]] = []

    def once() -> float:
        rss_before.append([round(rss_mb(pid), 1) for pid in pids])
        started = time.perf_counter()
        result = runner.owner_client.run(PREDICT, job, timeout=3600)
        ran = time.perf_counter()
        values = runner.owner_client.fetch(result, release=True, timeout=3600)
        phases.append((ran - started, time.perf_counter() - ran))
        jobs.append(result)
        return float(np.abs(values - expected).max())

    row = runner.measured(workload, once)
    row.extra.update(_figures(jobs[-1], upload_s, phases[-1], rss_before[-1], row.peak_rss_mb))
    row.rounds = max(row.extra["rounds_per_server"])
    row.extra.update(_cold(runner, job, expected))
    row.note = (
        f"linear_regression.predict, {workload.d} one-column datasets (seeded uploads, untimed), "
        "timed: run + fetch(release) at the model owner; peak RSS reset after the uploads; "
        "cold_*: once more after restarting the servers"
    )
    return row


def _cold(runner: OursRunner, job: dict[str, Any], expected: npt.NDArray[np.float64]) -> dict[str, object]:
    """Restart every server (empty caches), run + fetch once from the share files; its figures."""
    for index in range(3):
        runner.cluster.kill(index, signal.SIGTERM)
        runner.cluster.start_server(index)
    runner.cluster.wait_ready(60)
    pids = [p.pid for p in runner.cluster.processes if p is not None]
    before = [round(rss_mb(pid), 1) for pid in pids]
    with runner.cluster.client(OWNER, timeout=3600) as client:
        started = time.perf_counter()
        result = client.run(PREDICT, job, timeout=3600)
        ran = time.perf_counter()
        values = client.fetch(result, release=True, timeout=3600)
        ended = time.perf_counter()
    return {
        "cold_s": round(ended - started, 3),
        "cold_run_s": round(ran - started, 3),
        "cold_error": float(np.abs(values - expected).max()),
        "cold_rss_before_job_mb": before,
        "cold_peak_rss_mb": [round(peak_rss_mb(pid), 1) for pid in pids],
    }


def _figures(
    job: JobResult, upload_s: float, phases: tuple[float, float], rss_before: list[float], peaks: list[float]
) -> dict[str, Any]:
    stats = sorted(job.stats.items())
    return {
        "upload_s": round(upload_s, 1),
        "run_s": round(phases[0], 3),
        "fetch_s": round(phases[1], 3),
        "rss_before_job_mb": rss_before,
        "peak_rss_gib": [round(mb / 1024, 3) for mb in peaks],
        "rounds_per_server": [s.rounds for _, s in stats],
        "bytes_sent_per_server": [s.bytes_sent_to_peers for _, s in stats],
        "server_seconds": [round(s.duration_seconds, 3) for _, s in stats],
    }
