"""``mpc datasets``, ``mpc grants``, ``mpc jobs``, ``mpc audit`` against a real local cluster."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from mpc_cli.local_cluster import LocalCluster
from mpc_cli.main import main
from mpc_client import Grant, NotFoundError

pytestmark = pytest.mark.e2e
DOT = "dot"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path_factory.mktemp("data-cmds"), clients=("bank-1", "model-owner"))
    local.start()
    with local.client("bank-1") as bank:
        bank.upload("income", [3.0, 4.0], grants=[Grant("model-owner", DOT)])
    yield local
    local.stop()


def _mpc(cluster: LocalCluster, who: str, *args: str) -> list[str]:
    certs = cluster.cert_dir
    connection = ["--cluster", str(cluster.cluster_file), "--cert", str(certs / f"{who}.pem")]
    return [*args[:2], *connection, "--key", str(certs / f"{who}.key"), *args[2:]]


def _json(cluster: LocalCluster, capsys: pytest.CaptureFixture[str], who: str, *args: str) -> Any:
    capsys.readouterr()
    command = _mpc(cluster, who, *args) if args[0] == "grants" else _mpc(cluster, who, args[0], *args[1:])
    assert main([*command, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(
    "command", [["datasets"], ["jobs"], ["audit"], ["grants", "add"], ["grants", "list"]]
)
def test_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    assert "--json" in capsys.readouterr().out


def test_datasets_lists_my_datasets_as_a_table_and_as_json(
    cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    document = _json(cluster, capsys, "bank-1", "datasets")
    (income,) = document["datasets"]
    assert income["ref"]["owner"] == "bank-1" and income["ref"]["name"] == "income"
    assert len(income["ref"]["version"]) == 32 and income["shape"] == [2]
    assert income["grants"][0]["grant"]["scope"] == "own-data" and document["disagreements"] == []
    assert main(_mpc(cluster, "bank-1", "datasets")) == 0
    table = capsys.readouterr().out
    assert "income" in table and income["ref"]["version"][:12] in table and "Z_2^128" in table
    assert main(_mpc(cluster, "model-owner", "datasets")) == 0
    assert capsys.readouterr().out.strip() == "no datasets"  # nobody else's


def test_grants_add_list_and_revoke(cluster: LocalCluster, capsys: pytest.CaptureFixture[str]) -> None:
    added = _json(
        cluster,
        capsys,
        "bank-1",
        "grants",
        "add",
        "income",
        "--receiver",
        "model-owner",
        "--program",
        "linear_regression.predict",
        "--input",
        "features=self",
        "--input",
        "weights=model-owner/weights",
        "--max-uses",
        "3",
    )
    grant_id = added["grant"]["grant_id"]
    listed = _json(cluster, capsys, "bank-1", "grants", "list", "income")
    (pinned,) = [g for g in listed["grants"] if g["grant"]["grant_id"] == grant_id]
    assert pinned["grant"]["inputs"] == [["features", "self"], ["weights", "model-owner/weights"]]
    assert pinned["grant"]["max_uses"] == 3 and pinned["uses"] == 0
    assert main(_mpc(cluster, "bank-1", "grants", "list", "income")) == 0
    assert "pinned: features=self, weights=model-owner/weights" in capsys.readouterr().out
    assert main(_mpc(cluster, "bank-1", "grants", "revoke", "income", grant_id)) == 0
    assert f"revoked grant {grant_id}" in capsys.readouterr().out
    listed = _json(cluster, capsys, "bank-1", "grants", "list", "income")
    assert grant_id not in {g["grant"]["grant_id"] for g in listed["grants"]}


def test_jobs_and_audit_show_who_used_what(cluster: LocalCluster, capsys: pytest.CaptureFixture[str]) -> None:
    with cluster.client("model-owner") as owner:
        job, _ = owner.run_and_fetch(DOT, {"x": "bank-1/income", "y": "bank-1/income"})
    mine = _json(cluster, capsys, "model-owner", "jobs")
    assert [(j["job_id"], j["status"]) for j in mine["jobs"] if j["job_id"] == job.job_id] == [
        (job.job_id, "OK")
    ]
    trail = _json(cluster, capsys, "bank-1", "audit", "income")
    (record,) = [r for r in trail["records"] if r["job_id"] == job.job_id]
    assert record["submitter"] == "model-owner" and record["program"] == DOT
    assert [i["role"] for i in record["inputs"]] == ["x", "y"]
    assert main(_mpc(cluster, "bank-1", "audit")) == 0
    table = capsys.readouterr().out
    assert job.job_id in table and "model-owner" in table and "x=bank-1/income@" in table


def test_bad_input_gets_a_clear_error(cluster: LocalCluster, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(_mpc(cluster, "bank-1", "grants", "list", "nothing")) == 1
    assert "no dataset named 'nothing'" in capsys.readouterr().err
    bad = _mpc(
        cluster, "bank-1", "grants", "add", "income", "--receiver", "x", "--program", DOT, "--input", "oops"
    )
    assert main(bad) == 1
    assert "expected ROLE=DATASET" in capsys.readouterr().err
    assert main(_mpc(cluster, "bank-1", "grants", "revoke", "income", "00" * 16)) == 1
    assert "no grant" in capsys.readouterr().err
    assert main(_mpc(cluster, "bank-1", "jobs", "--limit=-1")) == 1
    with cluster.client("bank-1") as bank, pytest.raises(NotFoundError):
        bank.add_grant("nothing", Grant("model-owner", DOT))
