"""``mpc demo --cluster``: the showcase against an existing cluster, as three separate clients."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mpc_cli.local_cluster import LocalCluster
from mpc_cli.main import main

pytestmark = pytest.mark.e2e

CLIENTS = ("model-owner", "bank-1", "bank-2")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path_factory.mktemp("demo-cluster"), clients=CLIENTS)
    local.start()
    yield local
    local.stop()


def _check(result: dict[str, Any], records: int) -> None:
    predictions = np.asarray(result["predictions"])
    plaintext = result["a"] * np.asarray(result["x"]) + result["b"] * np.asarray(result["z"]) + result["c"]
    assert predictions.shape == (records,)
    assert np.max(np.abs(predictions - plaintext)) <= result["error_bound"]
    assert result["within_bound"] is True


def test_json_against_an_existing_cluster_twice(
    cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["demo", "--cluster", str(cluster.cluster_file), "--records", "5", "--json"]
    for _ in range(2):  # the second run replaces the first run's datasets
        assert main(args) == 0
        captured = capsys.readouterr()
        _check(json.loads(captured.out), 5)
        assert "Using the existing cluster" in captured.err
        # A bank is told the predictions do not exist (not that they are someone else's) ...
        assert "fetch the predictions too and was refused: NotFoundError" in captured.err
        # ... and the model owner cannot reuse the banks' data in a job they did not pin.
        assert "did not consent to (bank-1's income alone) and was refused: PermissionDeniedError" in (
            captured.err
        )
        assert "Starting 3 MPC servers" not in captured.err


def test_table_with_a_separate_certificate_directory(
    cluster: LocalCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Clients hold only their own certificates, the CA and the cluster file: no server keys.
    for name in CLIENTS:
        for suffix in (".pem", ".key"):
            shutil.copy2(cluster.cert_dir / f"{name}{suffix}", tmp_path)
    assert main(["demo", "--cluster", str(cluster.cluster_file), "--certs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "within the fixed-point rounding bound" in out
    assert "refused: NotFoundError" in out and "refused: PermissionDeniedError" in out
    assert "Stopping the servers" not in out


def test_train_keeps_the_model_on_the_servers_and_predicts_for_bank_1(
    cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["demo", "--train", "--cluster", str(cluster.cluster_file), "--records", "50"]
    assert main([*args, "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    x, z, label = (np.asarray(result[key]) for key in ("x", "z", "label"))
    solution = np.linalg.lstsq(np.column_stack([x, z, np.ones_like(x)]), label, rcond=None)[0]
    assert np.allclose(result["plaintext_weights"], solution[:2]) and np.isclose(
        result["plaintext_intercept"], solution[2]
    )
    predictions, expected = np.asarray(result["predictions"]), x * solution[0] + z * solution[1] + solution[2]
    assert predictions.shape == (50,)
    assert np.max(np.abs(predictions - expected) / np.maximum(1.0, np.abs(expected))) < 1e-4
    assert result["max_relative_error"] < 1e-4 and len(result["kept_model"]) == 2
    assert "with the model delivered to itself and was refused: PermissionDeniedError" in captured.err
    assert main(args) == 0  # the table, on the same cluster (the datasets are replaced)
    out = capsys.readouterr().out
    assert "Plaintext least squares" in out and "bank-1 (MPC)" in out and "max |MPC - plaintext|" in out
    assert "nobody saw its weights" in out


def test_missing_client_certificate_is_named(
    cluster: LocalCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--cluster", str(cluster.cluster_file), "--certs", str(tmp_path)]) == 1
    assert "no model-owner.pem in" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--certs", "somewhere"], "--certs only applies together with --cluster"),
        (["--cluster", "c.toml", "--keep", "k"], "--keep applies to the local cluster only"),
        (["--cluster", "c.toml", "--wait", "0"], "--wait must be positive"),
    ],
)
def test_argument_combinations(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", *args]) == 1
    assert message in capsys.readouterr().err
