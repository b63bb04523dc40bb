"""The product's main path on real processes: banks upload, model owner predicts."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mpc_cli.local_cluster import LocalCluster
from mpc_client import Grant

pytestmark = pytest.mark.e2e
PROGRAM = "linear_regression.predict"
F = 32  # the default scale of the default ring, Z_2^128


def _bound(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The documented fixed-point error bound per row (README, fixed_point.py)."""
    d = w.size
    rounding = 2.0 ** -(F + 1) * (np.abs(x).sum(axis=1) + np.abs(w).sum() + 1)
    bound: np.ndarray = rounding + d * 2.0 ** -(2 * F + 2)
    return bound


def test_regression_from_three_owners_matches_plaintext(cluster: LocalCluster) -> None:
    x = np.array([101_234.56, 87_000.0, 130_500.25, 45_321.0])
    z = np.array([[5_000.5, 2.0], [12_000.0, 0.0], [300.0, 5.0], [0.0, 1.0]])
    w = np.array([0.2731, -0.5912, 150.25])
    c = 1250.75
    inputs = {"features": ["bank-1/income", "bank-2/debt-and-cards"], "weights": "w", "intercept": "c"}
    with cluster.client("model-owner") as owner:  # the model first: the banks pin its version
        model_grant = [Grant.pinned("model-owner", PROGRAM, inputs)]
        weights = owner.upload("w", w, grants=model_grant, overwrite=True)
        intercept = owner.upload("c", c, grants=model_grant, overwrite=True)
    assert weights.pinned == f"model-owner/w@{weights.version}" and len(weights.version) == 32
    bank_grant = [
        Grant.pinned("model-owner", PROGRAM, {**inputs, "weights": weights, "intercept": intercept})
    ]
    with cluster.client("bank-1") as bank_1, cluster.client("bank-2") as bank_2:
        bank_1.upload("income", x, grants=bank_grant, overwrite=True)
        bank_2.upload("debt-and-cards", z, grants=bank_grant, overwrite=True)
    with cluster.client("model-owner") as owner:
        job = owner.run(PROGRAM, inputs)
        predictions = owner.fetch(job)
    features = np.column_stack([x, z])
    expected = features @ w + c
    assert predictions.shape == (4,)
    assert job.shape == (4,) and job.fractional_bits == 2 * F
    assert np.all(np.abs(predictions - expected) <= _bound(features, w))
    # One reshare of N outputs after the agreement round: N 16-byte elements per server.
    for stats in job.stats.values():
        assert stats.rounds == 2
        assert stats.bytes_sent_to_peers == 4 * 16 + (32 + 16) + 32


def test_large_vectors_travel_in_chunks(cluster: LocalCluster) -> None:
    n = 600_000  # 4.8 MB per share component: above gRPC's 4 MiB message limit
    values = (np.arange(n) % 1000) / 8.0 - 60.0
    with cluster.client("model-owner") as owner:
        owner.upload(
            "big",
            values,
            grants=[Grant("model-owner", "elementwise.multiply"), Grant("model-owner", "dot")],
            overwrite=True,
        )
        squared = owner.fetch(owner.run("elementwise.multiply", {"x": "big", "y": "big"}))
        dot = owner.fetch(owner.run("dot", {"x": "big", "y": "big"}))
    assert np.array_equal(squared, values * values)  # multiples of 1/8 square exactly
    assert squared.shape == (n,)
    assert dot.shape == () and float(dot) == pytest.approx(float(values @ values), rel=1e-9)


def test_demo_json_is_independently_checkable() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "mpc_cli", "demo", "--records", "5", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(completed.stdout)
    x, z = np.array(result["x"]), np.array(result["z"])
    expected = result["a"] * x + result["b"] * z + result["c"]
    predictions = np.array(result["predictions"])
    assert len(predictions) == 5
    assert result["max_abs_error"] == pytest.approx(float(np.abs(predictions - expected).max()))
    bound = _bound(np.column_stack([x, z]), np.array([result["a"], result["b"]]))
    assert np.all(np.abs(predictions - expected) <= bound)
    assert "Stopping the servers" in completed.stderr


def test_demo_shuts_the_cluster_down_on_ctrl_c() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "mpc_cli", "demo", "--records", "2000000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    pids: list[int] = []
    for line in process.stdout:
        pids += [int(pid) for pid in re.findall(r"pid (\d+)", line)]
        if line.startswith("Cluster ready"):
            break
    assert len(pids) == 3
    process.send_signal(signal.SIGINT)
    rest = process.communicate(timeout=60)[0]
    assert process.returncode == 130
    assert "Stopping the servers" in rest
    deadline = time.monotonic() + 15
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in pids if _running(pid)]
        time.sleep(0.1)
    assert not alive, f"servers still running: {alive}"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is not running
        return stat.read().split()[2] != "Z"
