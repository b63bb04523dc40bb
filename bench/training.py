"""Our side of the training suite: statistics, fits, decisions, logistic regression (``--suite training``).

Every row runs on the real cluster of :class:`~mpc_bench.ours.OursRunner`
(three ``mpc server`` processes over mutual TLS) from shares already on the
servers: each owner uploads its block from its own client before the clock
runs; a repetition is the model owner's job submission to its checked,
reconstructed outputs (``run`` and ``fetch_all``, or ``run_and_fetch``).

The peer runs the same algorithm with the counts our plan chose: each row's
``extra["peer_options"]`` holds the arguments ``mpc bench`` hands to CrypTen's
party script (Newton-Schulz iterations, the public trace bound, the momentum
and the weights' clip), planned here exactly as the servers plan the job
(the programs' own ``plan`` on the datasets' public summaries).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from mpc_client import Grant, JobResult
from mpc_core.ring import RING128
from mpc_server.protocol import spd
from mpc_server.service.model import DatasetRef, DatasetSummary
from mpc_server.service.programs import ProgramPlan, default_programs, resolve

from .workloads import Row, Workload

if TYPE_CHECKING:
    from .ours import OursRunner

OWNER, BANK_1, BANK_2 = "model-owner", "bank-1", "bank-2"
STATS, FIT, DECIDE, LOGISTIC = (
    "stats.summary",
    "linear_regression.fit",
    "linear_regression.decide",
    "logistic_regression.fit",
)
RIDGE_L2 = 1.0
LOGISTIC_L2, LOGISTIC_ITERATIONS = 1e-3, 30
THRESHOLD = 0.1
COMPARE_BITS = {"64-bit window": (284, 253, 253), "full width": (444, 381, 381)}
"""Bits party 0 / 1 / 2 sends per comparison in Z_2^128 (``mpc_server/protocol/compare.py``): the sign
read by the 64-bit window (``greater_than_public`` with ``magnitude_bits``, what ``decide`` uses when the
bound allows), or by the full adder (``less_than`` & co., 3.5k-4 / 3k-3 / 3k-3)."""
COMPARE_ROUNDS = {"64-bit window": 8, "full width": 9}
"""Rounds of one comparison in Z_2^128: 8 by the window, ``L + 2 = 9`` full width."""
Matrix = npt.NDArray[np.float64]


def _rng(workload: Workload) -> np.random.Generator:
    return np.random.default_rng([1234, workload.n, workload.d])  # benchmark data only


def upload(
    runner: OursRunner,
    identity: str,
    name: str,
    values: Matrix,
    program: str,
    *,
    fractional_bits: int | None = None,
) -> None:
    """``identity`` uploads ``values`` (untimed), readable by the model owner for ``program``."""
    grants = [Grant.read_access(OWNER, program)]
    if identity == OWNER:
        runner.owner_client.upload(
            name, values, grants=grants, overwrite=True, fractional_bits=fractional_bits
        )
        return
    with runner.cluster.client(identity, timeout=600) as client:
        client.upload(name, values, grants=grants, overwrite=True, fractional_bits=fractional_bits)


def _plan(
    runner: OursRunner, program: str, inputs: Mapping[str, Sequence[str]], params: dict[str, Any]
) -> ProgramPlan:
    """The job's plan as every server makes it, from the datasets' public summaries."""
    infos: dict[str, Any] = {}
    for identity in {ref.split("/")[0] for refs in inputs.values() for ref in refs}:
        if identity == OWNER:
            listing = runner.owner_client.datasets()
        else:
            with runner.cluster.client(identity, timeout=60) as client:
                listing = client.datasets()
        infos.update({f"{identity}/{d.ref.name}": d for d in listing.items})

    def summary(ref: str) -> DatasetSummary:
        info = infos[ref]
        owner, name = ref.split("/")
        return DatasetSummary(
            DatasetRef(owner, name), tuple(info.shape), info.ring_bits, info.fractional_bits,
            info.magnitude_bits, b"", 0.0, (),
        )  # fmt: skip

    chosen = default_programs()[program]
    summaries = {role: tuple(summary(ref) for ref in refs) for role, refs in inputs.items()}
    return chosen.plan(RING128, summaries, resolve(chosen.parameters, list(params.items()), program), None)


def _worst(got: Sequence[Matrix], expected: Sequence[Matrix]) -> float:
    """Largest error relative to ``max(1, |reference|)`` over all outputs."""
    return max(
        float(np.max(np.abs(np.asarray(g).reshape(np.shape(e)) - e) / np.maximum(1.0, np.abs(e))))
        for g, e in zip(got, expected, strict=True)
    )


def _model_fit(  # noqa: PLR0917 - one repetition's parts
    runner: OursRunner,
    program: str,
    job: Mapping[str, Any],
    params: Mapping[str, Any],
    reference: Sequence[Matrix],
    jobs: list[JobResult],
) -> Callable[[], float]:
    """One repetition of a fit: run, fetch the model, its worst error against ``reference``."""

    def once() -> float:
        result = runner.owner_client.run(program, job, parameters=params)
        out = runner.owner_client.fetch_all(result)
        jobs.append(result)
        return _worst([out["weights"], out["intercept"]], reference)

    return once


def one_feature_decision(
    runner: OursRunner, x: Matrix, feature: str, weight: str
) -> tuple[dict[str, str], dict[str, float], Matrix]:
    """Bank-1's column ``x`` and the owner's weight 1 uploaded: the decide job, its parameters, the answer."""
    upload(runner, BANK_1, feature, x, DECIDE)
    upload(runner, OWNER, weight, np.array([1.0]), DECIDE)
    job = {"features": f"{BANK_1}/{feature}", "weights": weight}
    return job, {"threshold": THRESHOLD}, (x > THRESHOLD).astype(np.float64)


def _per_server(job: JobResult) -> dict[str, Any]:
    stats = sorted(job.stats.items())
    return {
        "rounds_per_server": [s.rounds for _, s in stats],
        "bytes_sent_per_server": [s.bytes_sent_to_peers for _, s in stats],
        "server_seconds": [round(s.duration_seconds, 4) for _, s in stats],
    }


def _finish(row: Row, jobs: list[JobResult], note: str, extra: dict[str, Any]) -> Row:
    row.extra.update(_per_server(jobs[-1]))
    row.extra.update(extra)
    row.rounds = max(row.extra["rounds_per_server"])
    row.note = note
    return row


def stats(runner: OursRunner, workload: Workload) -> Row:
    """``stats.summary`` over three owners' blocks of ``n x d`` (column scales 0.5-5, means -3..3)."""
    rng, n, d = _rng(workload), workload.n, workload.d
    x = rng.standard_normal((n, d)) * rng.uniform(0.5, 5.0, d) + rng.uniform(-3.0, 3.0, d)
    owners = (BANK_1, BANK_2, OWNER)
    for owner, cols in zip(owners, np.array_split(np.arange(d), 3), strict=True):
        upload(runner, owner, "bench-stats", x[:, cols], STATS)
    job = {"columns": [f"{owner}/bench-stats" for owner in owners]}
    reference = [x.sum(0), x.mean(0), x.var(0), np.cov(x, rowvar=False, ddof=0), np.corrcoef(x, rowvar=False)]
    jobs: list[JobResult] = []

    def once() -> float:
        result = runner.owner_client.run(STATS, job)
        out = runner.owner_client.fetch_all(result)
        jobs.append(result)
        return _worst([out[k] for k in ("sum", "mean", "variance", "covariance", "correlation")], reference)

    row = runner.measured(workload, once)
    note = "stats.summary (ddof 0) over 3 owners' blocks, shares on the servers; run + fetch_all"
    return _finish(row, jobs, note, {"error": "max relative error, all outputs"})


def _regression_data(rng: np.random.Generator, n: int, d: int) -> tuple[Matrix, Matrix]:
    mixing = np.eye(d) + 0.3 * rng.standard_normal((d, d)) / np.sqrt(d)
    x = rng.standard_normal((n, d)) @ mixing
    return x, x @ rng.standard_normal(d) + 0.5 + 0.1 * rng.standard_normal(n)


def fit(runner: OursRunner, workload: Workload) -> Row:
    """``linear_regression.fit``, ridge (``l2 = 1``) or OLS with an intercept: two banks' X, the owner's y."""
    rng, n, d = _rng(workload), workload.n, workload.d
    x, y = _regression_data(rng, n, d)
    l2 = RIDGE_L2 if workload.kind == "fit-ridge" else 0.0
    half = d // 2
    scale = workload.fractional_bits
    upload(runner, BANK_1, "bench-fit", x[:, :half], FIT, fractional_bits=scale)
    upload(runner, BANK_2, "bench-fit", x[:, half:], FIT, fractional_bits=scale)
    upload(runner, OWNER, "bench-label", y, FIT, fractional_bits=scale)
    inputs = {"features": [f"{BANK_1}/bench-fit", f"{BANK_2}/bench-fit"], "label": [f"{OWNER}/bench-label"]}
    job = {"features": inputs["features"], "label": "bench-label"}
    params = {"l2": l2}
    solve: spd.SolvePlan = _plan(runner, FIT, inputs, params).details["fit"].solve
    centred, mean_y = x - x.mean(0), y.mean()
    weights = np.linalg.solve(centred.T @ centred + l2 * np.eye(d), centred.T @ (y - mean_y))
    reference = [weights, np.array(mean_y - weights @ x.mean(0))]
    jobs: list[JobResult] = []
    row = runner.measured(workload, _model_fit(runner, FIT, job, params, reference, jobs))
    options = ["--l2", str(l2), "--solver", str(solve.iterations), "--trace-bound", str(2 * d)]
    extra: dict[str, Any] = {
        "l2": l2,
        "solver_iterations": solve.iterations,
        "error": "max |w - w_ref| / max(1, |w_ref|), w_ref numpy's closed form (sklearn's Ridge/OLS)",
        "peer_options": options,
    }
    if scale is not None:
        extra["variant"] = f"uploads at 2^-{scale} (CrypTen's encoding is 2^-16)"
    note = f"linear_regression.fit l2={l2:g}, intercept; Newton-Schulz K={solve.iterations}; run + fetch_all"
    return _finish(row, jobs, note, extra)


def decide(runner: OursRunner, workload: Workload) -> Row:
    """``linear_regression.decide`` of ``n`` rows, one feature: ``x * 1 > 0.1``, decisions to the owner."""
    x = _rng(workload).standard_normal(workload.n)
    job, params, expected = one_feature_decision(runner, x, "bench-score", "bench-w")
    jobs: list[JobResult] = []

    def once() -> float:
        result, decisions = runner.owner_client.run_and_fetch(DECIDE, job, parameters=params)
        jobs.append(result)
        return float(np.sum(decisions != expected))

    row = runner.measured(workload, once)
    sent = _per_server(jobs[-1])["bytes_sent_per_server"]
    bits = [8 * b / workload.n for b in sent]
    extra = {
        "error": "decisions differing from the plaintext ones (count)",
        "bits_per_row_per_server": [round(b, 1) for b in bits],
        "bits_per_comparison_per_server": [round(b - 128, 1) for b in bits],
        "stated_bits_per_comparison": COMPARE_BITS,
        "stated_comparison_rounds": COMPARE_ROUNDS,
        "peer_options": ["--threshold", str(THRESHOLD)],
    }
    note = (
        "linear_regression.decide, 1 feature: one product (128 bits/row) + one comparison per row; "
        "run_and_fetch; per-row bits include the job's fixed agreement"
    )
    return _finish(row, jobs, note, extra)


def logistic(runner: OursRunner, workload: Workload) -> Row:
    """``logistic_regression.fit`` (30 iterations, ``l2 = 1e-3``) on two banks' standardised halves."""
    rng, n, d = _rng(workload), workload.n, workload.d
    x, _ = _regression_data(rng, n, d)
    x = (x - x.mean(0)) / x.std(0)  # each bank standardises its own columns
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(x @ rng.standard_normal(d) + 0.3)))).astype(np.float64)
    half = d // 2
    upload(runner, BANK_1, "bench-logit", x[:, :half], LOGISTIC)
    upload(runner, BANK_2, "bench-logit", x[:, half:], LOGISTIC)
    upload(runner, OWNER, "bench-outcome", y, LOGISTIC)
    inputs = {
        "features": [f"{BANK_1}/bench-logit", f"{BANK_2}/bench-logit"],
        "label": [f"{OWNER}/bench-outcome"],
    }
    job = {"features": inputs["features"], "label": "bench-outcome"}
    params = {"l2": LOGISTIC_L2, "iterations": LOGISTIC_ITERATIONS}
    plan = _plan(runner, LOGISTIC, inputs, params).details["fit"]
    solver = spd.plan_solve(RING128, plan.system).iterations
    betas = [float(Fraction(b0, b1 - b0)) for b1, b0 in plan.momentum]
    clip = float(Fraction(plan.weight_limit, 1 << (plan.working_bits + plan.solver_bits)))
    reference = _logistic_reference(x, y, betas, clip)
    jobs: list[JobResult] = []
    row = runner.measured(workload, _model_fit(runner, LOGISTIC, job, params, reference, jobs))
    trace_bound = ((d * 17 / 16) + 1) / 4 + d * LOGISTIC_L2
    options = [
        "--l2", str(LOGISTIC_L2), "--iterations", str(LOGISTIC_ITERATIONS), "--solver", str(solver),
        "--trace-bound", f"{trace_bound:.6f}", "--momentum", json.dumps(betas), "--clip", f"{clip:.6f}",
    ]  # fmt: skip
    extra = {
        "iterations": LOGISTIC_ITERATIONS,
        "solver_iterations": solver,
        "clip": clip,
        "error": "max |w - w_ref| / max(1, |w_ref|), w_ref the same iteration in float64, exact sigmoid",
        "peer_options": options,
    }
    note = (
        f"logistic_regression.fit: fixed-Hessian Newton + momentum, {LOGISTIC_ITERATIONS} iterations, "
        f"l2={LOGISTIC_L2:g}, sigmoid POLY13, H^-1 by Newton-Schulz K={solver}; run + fetch_all"
    )
    return _finish(row, jobs, note, extra)


def _logistic_reference(x: Matrix, y: Matrix, betas: Sequence[float], clip: float) -> list[Matrix]:
    """The fit's iteration in float64 with the exact sigmoid (what the CrypTen party compares against too)."""
    n, d = x.shape
    z = np.hstack([x, np.ones((n, 1))])
    penalised = np.r_[np.ones(d), 0.0] * LOGISTIC_L2
    inverse = np.linalg.inv(z.T @ z / (4 * n) + np.diag(penalised))
    w = v = np.zeros(d + 1)
    for step, beta in enumerate(betas):
        p = 0.5 if step == 0 else 1 / (1 + np.exp(-(z @ v)))
        updated = np.clip(v + inverse @ (z.T @ (y - p) / n - v * penalised), -clip, clip)
        w, v = updated, updated + beta * (updated - w)
    return [w[:d], np.array(w[d])]
