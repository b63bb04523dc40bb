"""A lost server fails the job quickly, with a status naming it; nothing hangs."""

from __future__ import annotations

import signal
import threading
import time

import numpy as np
import pytest

from mpc_cli.local_cluster import LocalCluster
from mpc_client import Grant, MpcError, ProtocolTimeoutError, ServerUnavailableError

pytestmark = pytest.mark.e2e
JOB_TIMEOUT = 20.0


def _prepare(cluster: LocalCluster) -> None:
    with cluster.client("model-owner") as owner:
        owner.upload("v", np.arange(1000) / 4, grants=[Grant("model-owner", "elementwise.multiply")])


def _wait_for_log(cluster: LocalCluster, index: int, text: str, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if text in cluster.log_path(index).read_text(errors="replace"):
            return
        time.sleep(0.02)
    raise AssertionError(f"{text!r} never appeared in {cluster.log_path(index)}")


def test_a_peer_killed_mid_job_fails_the_job_naming_it(fresh_cluster: LocalCluster) -> None:
    cluster = fresh_cluster
    _prepare(cluster)
    outcome: dict[str, object] = {}

    def submit() -> None:
        with cluster.client("model-owner") as owner:
            started = time.monotonic()
            try:
                owner.run("elementwise.multiply", {"x": "v", "y": "v"}, job_id="doomed", timeout=JOB_TIMEOUT)
            except MpcError as exc:
                outcome["error"] = exc
            outcome["elapsed"] = time.monotonic() - started

    # Freeze server-1 so that the job cannot finish; server-0 and server-2 start it.
    cluster.send_signal(1, signal.SIGSTOP)
    try:
        worker = threading.Thread(target=submit)
        worker.start()
        _wait_for_log(cluster, 2, "job doomed started")
        cluster.kill(2)  # SIGKILL in the middle of the job
    finally:
        cluster.send_signal(1, signal.SIGCONT)
    worker.join(JOB_TIMEOUT + 10)
    assert not worker.is_alive(), "the job hung"
    error = outcome["error"]
    assert isinstance(error, ServerUnavailableError)
    assert error.server == "server-2"
    assert "server-2" in str(error)
    assert float(outcome["elapsed"]) < JOB_TIMEOUT / 2  # type: ignore[arg-type]


def test_a_job_with_a_dead_peer_fails_at_once(fresh_cluster: LocalCluster) -> None:
    cluster = fresh_cluster
    _prepare(cluster)
    cluster.kill(0)
    with cluster.client("model-owner") as owner:
        started = time.monotonic()
        with pytest.raises(ServerUnavailableError) as caught:
            owner.run("elementwise.multiply", {"x": "v", "y": "v"}, timeout=JOB_TIMEOUT)
    assert caught.value.server == "server-0"
    assert time.monotonic() - started < 5.0


def test_a_frozen_peer_runs_into_the_deadline_not_forever(fresh_cluster: LocalCluster) -> None:
    cluster = fresh_cluster
    _prepare(cluster)
    cluster.send_signal(2, signal.SIGSTOP)
    try:
        with cluster.client("model-owner") as owner:
            started = time.monotonic()
            with pytest.raises((ProtocolTimeoutError, ServerUnavailableError)) as caught:
                owner.run("elementwise.multiply", {"x": "v", "y": "v"}, timeout=3.0)
            elapsed = time.monotonic() - started
    finally:
        cluster.send_signal(2, signal.SIGCONT)
    assert elapsed < 6.0
    assert "server-2" in str(caught.value)
    assert caught.value.server == "server-2"
