"""Our side of the comparison rows (``compare`` in ``--suite training``): comparisons per second.

There is no program that only compares, so the row runs the smallest job
that does: ``linear_regression.decide`` on one feature column (the scores,
bank-1's) with the weight 1 (the model owner's) and a public threshold,
``x * 1 > t`` per element. The shares are on the servers before the clock
runs. A repetition times only the job, ``MpcClient.run``: submission,
agreement, the product and the comparison on all three servers, until the
decisions are kept as an output (they stay in shares). The decisions are then
fetched untimed, checked against the plaintext ones and released.

CrypTen's side (``crypten_training_party.py compare``) times only
``x > t`` on a tensor already shared, its result also left in shares; the
reveal for the check is untimed too. Ours therefore also pays one product
per element (one round, 128 bits per element per server) and the job's
agreement over gRPC and TLS, which CrypTen's timing does not include.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from mpc_client import JobResult

from .training import COMPARE_BITS, COMPARE_ROUNDS, DECIDE, THRESHOLD, one_feature_decision
from .workloads import Row, Workload

if TYPE_CHECKING:
    from .ours import OursRunner

PRODUCT_BITS, PRODUCT_ROUNDS = 128, 1
"""The score's product ``x * w``: one element (k bits) per server per row, one round."""


def compare(runner: OursRunner, workload: Workload) -> Row:
    """``n`` comparisons ``x > 0.1`` on shares already on the servers; only the job is timed."""
    n = workload.n
    x = np.random.default_rng([4321, n]).standard_normal(n)  # benchmark data only
    job, params, expected = one_feature_decision(runner, x, "bench-compare", "bench-one")
    jobs: list[JobResult] = []
    job_seconds: list[float] = []

    def once() -> float:
        started = time.perf_counter()
        result = runner.owner_client.run(DECIDE, job, parameters=params)
        job_seconds.append(time.perf_counter() - started)
        decisions = runner.owner_client.fetch(result, release=True)
        jobs.append(result)
        return float(np.sum(decisions != expected))

    row = runner.measured(workload, once)
    timed = job_seconds[-workload.reps :]
    row.median_s, row.min_s, row.max_s = float(np.median(timed)), min(timed), max(timed)
    row.extra.update(_figures(jobs[-1], n, row.median_s))
    row.rounds = max(row.extra["rounds_per_server"])
    row.note = (
        "shares on the servers; timed: MpcClient.run of linear_regression.decide (1 feature, weight 1), "
        "i.e. agreement + 1 product + 1 comparison per element, decisions left in shares; "
        "per-comparison bits = per-element bits - 128 (the product); fetch untimed"
    )
    return row


def _figures(job: JobResult, n: int, median_s: float) -> dict[str, Any]:
    """Per-server rounds, bytes and bits per element and per comparison, beside the stated counts."""
    stats = sorted(job.stats.items())
    sent = [s.bytes_sent_to_peers for _, s in stats]
    return {
        "comparisons_per_s": round(n / median_s),
        "rounds_per_server": [s.rounds for _, s in stats],
        "bytes_sent_per_server": sent,
        "server_seconds": [round(s.duration_seconds, 4) for _, s in stats],
        "bits_per_element_per_server": [round(8 * b / n, 1) for b in sent],
        "bits_per_comparison_per_server": [round(8 * b / n - PRODUCT_BITS, 1) for b in sent],
        "stated_bits_per_comparison": COMPARE_BITS,
        "stated_rounds": {"comparison": COMPARE_ROUNDS, "product": PRODUCT_ROUNDS},
        "error": "decisions differing from the plaintext ones (count)",
        "peer_options": ["--threshold", str(THRESHOLD)],
    }
