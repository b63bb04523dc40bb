"""Our side of the alignment rows (``--suite alignment``): two banks' customers aligned and scored.

End to end through the SDK, nothing precomputed: the model owner opens an
alignment (``MpcClient.open_alignment``); each bank, in its own process
(``mpc_bench.align_owner``, both at once as two banks would), uploads its
customers with ``upload_table`` (the ids become the alignment's tokens with
the servers' OPRF, the rows are shuffled and uploaded keyed); bank-1 then
runs ``linear_regression.predict`` on the join (``run``: the servers join the
two tables on the tokens) and ``fetch_table`` (its own customers'
predictions, by its own ids). Bank-1 holds income, bank-2 debt and number of
products; half of each bank's ``n`` customers are the other's too. The model
(w, c) is the model owner's, uploaded before the clock runs, pinned to the job.

No peer runs this protocol; the report sets it next to SecretFlow's
published ECDH-PSI figure (another protocol, other hardware).
"""

from __future__ import annotations

import os
import secrets
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from mpc_client import Grant

from .measure import cpu_seconds, machine_busy_seconds
from .workloads import Row, Workload

if TYPE_CHECKING:
    from .ours import OursRunner, Owner

OWNER, BANK_1, BANK_2 = "model-owner", "bank-1", "bank-2"
PREDICT = "linear_regression.predict"
W, C = np.array([0.25, -0.5, 1.5]), 100.0
SECRETFLOW_IDS, SECRETFLOW_SECONDS = 10_000_000, 73.0
SECRETFLOW = {
    "ids_per_side": SECRETFLOW_IDS,
    "seconds": SECRETFLOW_SECONDS,
    "what": "ECDH-PSI 2P FourQ, LAN, 32C64G",
}
"""``secretflow/secretflow:docs/developer/benchmark/psi_benchmark.md`` (../shared/reference/alignment.md)."""


def _customers(runner: OursRunner, n: int) -> dict[str, Any]:
    """Each bank's table (its own row order) and bank-1's expected predictions, saved for the processes."""
    rng = np.random.default_rng([99, n])
    total = n + n // 2  # bank-1: [0, n), bank-2: [n/2, 3n/2)
    ids = np.array([f"CUST-{i:09d}" for i in range(total)])
    income = rng.normal(60_000.0, 20_000.0, total)
    debt, products = rng.normal(8_000.0, 5_000.0, total), rng.normal(2.0, 3.0, total)
    first, second = rng.permutation(n), n // 2 + rng.permutation(n)
    common = np.arange(n // 2, n)
    expected = np.column_stack([income, debt, products])[common] @ W + C
    data = runner.directory / "data"
    data.mkdir(exist_ok=True)
    np.savez(
        data / "align-1.npz", ids=ids[first], values=income[first, None], columns=np.array(["income"]),
        reference_ids=ids[common], reference=expected,
    )  # fmt: skip
    np.savez(
        data / "align-2.npz", ids=ids[second], values=np.column_stack([debt, products])[second],
        columns=np.array(["debt", "products"]),
    )  # fmt: skip
    return {BANK_1: data / "align-1.npz", BANK_2: data / "align-2.npz", "common": len(common)}


def align(runner: OursRunner, workload: Workload) -> Row:
    """Open, tokens + keyed uploads (both banks at once), join + predict, fetch_table: one repetition each."""
    from .ours import Owner  # noqa: PLC0415 - ours imports this module

    n = workload.n
    files = _customers(runner, n)
    env = dict(os.environ, MPC_KEY_DIR=str(runner.directory / "keys"))
    banks: dict[str, Owner] = {
        bank: Owner(runner.cluster, bank, files[bank], module="mpc_bench.align_owner", env=env)
        for bank in (BANK_1, BANK_2)
    }
    phases: list[dict[str, Any]] = []
    jobs = []
    for _ in range(workload.reps + int(workload.warmup)):  # the model of each repetition, untimed
        tag = secrets.token_hex(3)
        job = {
            "features": [f"{BANK_1}/income-{tag}", f"{BANK_2}/debt-{tag}"],
            "weights": f"{OWNER}/w-{tag}",
            "intercept": f"{OWNER}/c-{tag}",
        }
        model_grants = [Grant.pinned(BANK_1, PREDICT, job)]
        runner.owner_client.upload(f"w-{tag}", W, grants=model_grants)
        runner.owner_client.upload(f"c-{tag}", C, grants=model_grants)
        jobs.append((tag, job))
    try:

        def once() -> float:
            tag, job = jobs.pop(0)
            return _once(runner, banks, job, tag, n=n, phases=phases)

        row = runner.measured(workload, once)
    finally:
        for bank in banks.values():
            bank.close()
    last = phases[-1]
    if last["rows"] != files["common"]:
        raise RuntimeError(f"the join returned {last['rows']} rows, expected {files['common']}")
    row.extra.update(last)
    row.extra["ours_cpu_s"] = round(sum(last["cpu_s"].values()), 1)  # servers and both banks' processes
    per_million = row.median_s / n * 1e6 if row.median_s else None  # ids per bank, as SecretFlow's per side
    row.extra["seconds_per_million_ids_per_bank"] = per_million
    row.extra["secretflow"] = {**SECRETFLOW, "seconds_per_million_ids_per_side": SECRETFLOW_SECONDS / 10}
    row.rounds = max(last["rounds_per_server"])
    row.note = (
        f"end to end via the SDK: open_alignment, 2 banks x {n:,} ids (tokens + upload_table, in parallel), "
        f"run predict on the join ({files['common']:,} rows), fetch_table at bank-1"
    )
    return row


def _once(
    runner: OursRunner, banks: dict[str, Owner], job: dict[str, Any], tag: str, *, n: int,
    phases: list[dict[str, Any]],
) -> float:  # fmt: skip
    servers = [p.pid for p in runner.cluster.processes if p is not None]
    processes = {f"server-{i}": pid for i, pid in enumerate(servers)}
    processes.update({bank: owner.process.pid for bank, owner in banks.items()})
    cpu_before = {name: cpu_seconds(pid) for name, pid in processes.items()}
    busy_before = machine_busy_seconds()
    started = time.perf_counter()
    alignment = runner.owner_client.open_alignment(
        f"bench-{tag}", {BANK_1: n, BANK_2: n}, window_seconds=3600
    )
    opened = time.perf_counter()
    for bank, name in ((BANK_1, f"income-{tag}"), (BANK_2, f"debt-{tag}")):
        receivers = [BANK_1]
        banks[bank].send(
            {"cmd": "upload", "alignment": alignment, "name": name, "job": job, "receivers": receivers}
        )
    uploads = {bank: banks[bank].receive() for bank in (BANK_1, BANK_2)}
    uploaded = time.perf_counter()
    banks[BANK_1].send({"cmd": "predict", "job": job})
    result = banks[BANK_1].receive()
    ended = time.perf_counter()
    cpu = {name: round(cpu_seconds(pid) - cpu_before[name], 1) for name, pid in processes.items()}
    busy = machine_busy_seconds() - busy_before
    phases.append(
        {
            "cpu_s": cpu,
            "machine_busy_cpu_s": round(busy, 1),
            "others_cpu_s": round(busy - sum(cpu.values()), 1),
            "open_s": opened - started,
            "uploads_s": uploaded - opened,
            "tokens_s": {bank: round(u["tokens_s"], 2) for bank, u in uploads.items()},
            "upload_table_s": {bank: round(u["total_s"], 2) for bank, u in uploads.items()},
            "predict_run_s": result["run_s"],
            "fetch_table_s": result["fetch_s"],
            "predict_and_fetch_s": ended - uploaded,
            "total_s": ended - started,
            **{k: result[k] for k in ("rows", "rounds_per_server", "bytes_sent_per_server")},
        }
    )
    return float(result["max_abs_error"])
