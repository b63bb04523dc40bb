"""A full disk on one server, with real server processes: server-1's data directory is a
small tmpfs (needs root to mount; skipped otherwise).

The issue: the uploader saw "internal server error", the name stayed locked until a
restart, a partial temp file stayed, a kept output's background write failed without a
log line and the output was gone after a restart, and ``mpc status`` showed all green.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mpc_cli.local_cluster import LocalCluster
from mpc_cli.main import main
from mpc_client import Grant, ResourceLimitError
from mpc_core.errors import DataLossError

pytestmark = pytest.mark.e2e
MUL = "elementwise.multiply"
STORAGE = "mpc.v1.Storage"


def _mount(directory: Path, size: str) -> None:
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(directory)], check=True
    )


def _resize(directory: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(directory)], check=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[tuple[LocalCluster, Path]]:
    """A cluster whose server-1 keeps its data on a 4 MiB tmpfs."""
    data = tmp_path / "data" / "server-1"
    data.mkdir(parents=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        _mount(data, "4m")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("cannot mount a tmpfs here")
    cluster = LocalCluster(tmp_path, clients=("model-owner", "bank-1"), log_level="INFO")
    try:
        cluster.start()
        yield cluster, data
    finally:
        cluster.stop()
        subprocess.run(["umount", str(data)], check=False)


def _status(cluster: LocalCluster, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, object]]:
    certs = cluster.cert_dir
    code = main(
        [
            "status",
            "--cluster",
            str(cluster.cluster_file),
            "--json",
            "--cert",
            str(certs / "model-owner.pem"),
            "--key",
            str(certs / "model-owner.key"),
        ]
    )
    servers: list[dict[str, object]] = json.loads(capsys.readouterr().out)["servers"]
    return code, servers[1]


def _storage_health(cluster: LocalCluster, capsys: pytest.CaptureFixture[str]) -> str:
    main(["probe", "--cluster", str(cluster.cluster_file), "--identity", "server-1", "--service", STORAGE])
    return capsys.readouterr().out.split()[-1]


def _background_write_errors(cluster: LocalCluster, job_id: str) -> list[dict[str, str]]:
    """server-1's log records (JSON lines) at ERROR about a failed background write of ``job_id``."""
    records = [
        json.loads(line) for line in cluster.log_path(1).read_text().splitlines() if line.startswith("{")
    ]
    return [
        r
        for r in records
        if r["level"] == "ERROR"
        and r["logger"] == "mpc_server.service.deferred_writer"
        and f"of job {job_id} " in r["message"]
    ]


def _eventually(check: object, timeout: float = 15.0) -> None:
    assert callable(check)
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.2)


def test_a_full_disk_refuses_the_upload_clearly_and_a_retry_works_once_space_is_freed(
    small_disk: tuple[LocalCluster, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cluster, data = small_disk
    values = np.arange(300_000) / 4.0  # 9.6 MB of shares per server: more than server-1 has
    grants = [Grant("model-owner", MUL)]
    with cluster.client("bank-1") as bank, pytest.raises(ResourceLimitError) as caught:
        bank.upload("big", values, grants=grants, compress=False)
    message = str(caught.value)
    assert "server-1: disk full: cannot store dataset bank-1/big on server-1" in message, message
    assert "internal" not in message
    assert list((data / "tmp" / "datasets").iterdir()) == []  # no partial file
    code, server_1 = _status(cluster, capsys)
    assert code == 1 and server_1["storage"] == "PROBLEM", server_1
    problems = server_1["storage_problems"]
    assert isinstance(problems, list) and problems[0].startswith("disk full: the last write of a share file")
    _eventually(lambda: _storage_health(cluster, capsys) == "NOT_SERVING")
    assert "server-1: disk full: cannot store dataset bank-1/big" in cluster.log_path(1).read_text()

    _resize(data, "64m")  # the operator frees space
    with cluster.client("bank-1") as bank:  # atomic: no server kept it and the name is free
        bank.upload("big", values, grants=grants, compress=False)  # no overwrite: ALREADY_EXISTS otherwise
    with cluster.client("model-owner") as owner:
        _, product = owner.run_and_fetch(MUL, {"x": "bank-1/big", "y": "bank-1/big"})
    assert np.allclose(product, values * values)
    code, server_1 = _status(cluster, capsys)
    assert code == 0 and server_1["storage"] == "OK" and server_1["storage_problems"] == []
    _eventually(lambda: _storage_health(cluster, capsys) == "SERVING")


def test_a_failed_background_write_of_a_kept_output_is_logged_and_its_fetch_fails_clearly(
    small_disk: tuple[LocalCluster, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cluster, data = small_disk
    values = np.arange(60_000) / 8.0
    with cluster.client("bank-1") as bank:
        bank.upload("x", values, grants=[Grant("model-owner", MUL)])  # seeds: small files
    free = os.statvfs(data).f_bavail * os.statvfs(data).f_frsize
    (data / "filler").write_bytes(bytes(max(0, free - (256 << 10))))  # leave 256 KiB
    with cluster.client("model-owner") as owner:  # the 1.9 MB output comes back with the answer
        job, product = owner.run_and_fetch(MUL, {"x": "bank-1/x", "y": "bank-1/x"}, keep=True)
        assert np.allclose(product, values * values)
        _eventually(lambda: _background_write_errors(cluster, job.job_id))
        [logged] = _background_write_errors(cluster, job.job_id)
        assert "disk full" in logged["message"] and logged["server"] == "server-1", logged
        _, server_1 = _status(cluster, capsys)
        assert server_1["storage"] == "PROBLEM"
        assert np.allclose(owner.fetch(job), values * values)  # still in server-1's memory
    cluster.kill(1)
    cluster.start_server(1)
    cluster.wait_ready(30)
    with cluster.client("model-owner") as owner, pytest.raises(DataLossError) as caught:
        owner.fetch(job)
    message = str(caught.value)
    assert f"of job {job.job_id} on server-1 was lost" in message, message
    assert "No space left on device" in message and "run the job again" in message
