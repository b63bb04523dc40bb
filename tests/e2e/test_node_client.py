"""The Node client (clients/node) against real servers, side by side with the Python SDK.

A Node bank uploads its column, a Python bank its own, the Python model owner
runs ``linear_regression.predict`` for the receiver ``node-analyst``, and a
Node process acting as ``node-analyst`` fetches, checks and prints the result.
The numbers must match plaintext within the README's error bound. Refusals
(no grant, bad values, a server with the wrong identity, a silent server, a
foreign CA) must fail with a clear message and a non-zero exit status. The
Node unit tests (``node --test``) run from here too, so CI executes them.

Needs ``node`` and ``npm``; runs ``npm ci`` in clients/node when its
dependencies are missing (the npm registry must then be reachable).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mpc_cli.certs import CertificateAuthority
from mpc_cli.local_cluster import LocalCluster
from mpc_client import Grant, NotFoundError
from mpc_core.cluster import render_cluster
from mpc_core.identity import Principal, Role

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "clients" / "node"
CLI = NODE_DIR / "bin" / "mpc-node.js"
PROGRAM = "linear_regression.predict"
CLIENTS = ("model-owner", "bank-1", "node-bank", "node-analyst")
F = 16


def _missing_dependencies() -> list[str]:
    package = json.loads((NODE_DIR / "package.json").read_text())
    return [name for name in package["dependencies"] if not (NODE_DIR / "node_modules" / name).is_dir()]


@pytest.fixture(scope="module")
def node() -> str:
    """The node executable, with the client's dependencies installed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are not installed: the Node client cannot be tested here")
    if _missing_dependencies():
        installed = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert installed.returncode == 0, f"npm ci failed in {NODE_DIR}:\n{installed.stderr[-3000:]}"
        assert not _missing_dependencies(), _missing_dependencies()
    return node


@pytest.fixture(scope="module")
def node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A cluster with certificates for the Node identities too."""
    with LocalCluster(tmp_path_factory.mktemp("node-cluster"), clients=CLIENTS) as local:
        yield local


def _node(
    node: str, cluster: LocalCluster, identity: str, *args: str, cluster_file: str = "cluster.toml"
) -> subprocess.CompletedProcess[str]:
    """Run the Node CLI as ``identity`` in the cluster directory (certs/<identity>.pem|.key)."""
    command = [node, str(CLI), *args, "--identity", identity, "--cluster", cluster_file]
    return subprocess.run(
        command, cwd=cluster.directory, capture_output=True, text=True, timeout=120, check=False
    )


def _ok(completed: subprocess.CompletedProcess[str]) -> str:
    assert completed.returncode == 0, f"exit {completed.returncode}\n{completed.stderr}"
    return completed.stdout


def test_node_unit_tests_pass(node: str) -> None:
    completed = subprocess.run(
        [node, "--test", "test/"], cwd=NODE_DIR, capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stdout[-5000:] + completed.stderr[-2000:]
    assert "# fail 0" in completed.stdout
    assert "# pass 0" not in completed.stdout


@pytest.mark.parametrize("upload_mode", ["seed-compressed", "plain"])
def test_node_bank_python_bank_python_owner_node_receiver(
    node: str, node_cluster: LocalCluster, tmp_path: Path, upload_mode: str
) -> None:
    # More than 2 x 131072 customers: every upload and fetch takes several chunks.
    n = 300_001
    i = np.arange(n, dtype=np.float64)
    income = np.round(35_000 + (i * 7919) % 120_000 + (i % 97) * 0.37, 2)
    debt = np.round(1_000 + (i * 104_729) % 30_000 + (i % 89) * 0.29, 2)
    weights, intercept = np.array([0.2731, -0.5912]), 1250.75
    grant = [Grant("node-analyst", PROGRAM)]
    name = f"income-{upload_mode}"

    values_file = tmp_path / "income.json"
    values_file.write_text(json.dumps(income.tolist()))
    upload = ["upload", name, "--values-file", str(values_file), "--grant", f"node-analyst:{PROGRAM}"]
    if upload_mode == "plain":
        upload.append("--plain")
    assert f"uploaded node-bank/{name} ({n} elements, " in _ok(
        _node(node, node_cluster, "node-bank", *upload)
    )

    with node_cluster.client("bank-1") as bank:
        bank.upload("debt", debt, grants=grant, overwrite=True)
    with node_cluster.client("model-owner") as owner:
        owner.upload("weights", weights, grants=grant, overwrite=True)
        owner.upload("intercept", intercept, grants=grant, overwrite=True)
        job = owner.run(
            PROGRAM,
            {
                "features": [f"node-bank/{name}", "bank-1/debt"],
                "weights": "weights",
                "intercept": "intercept",
            },
            receiver="node-analyst",
        )

    full = json.loads(_ok(_node(node, node_cluster, "node-analyst", "fetch", job.job_id)))
    assert full["shape"] == [n]
    assert full["fractional_bits"] == 2 * F
    predictions = np.array(full["values"])
    plaintext = weights[0] * income + weights[1] * debt + intercept
    # README, "Error bound": 2^-(f+1) (sum|w| + sum|x| + 1) + d 2^-(2f+2), per customer.
    bound = 2.0 ** -(F + 1) * (np.abs(weights).sum() + np.abs(income) + np.abs(debt) + 1) + 2 * 2.0 ** -(
        2 * F + 2
    )
    error = np.abs(predictions - plaintext)
    assert np.all(error <= bound), (
        f"max error {error.max()} above the bound at {int(np.argmax(error - bound))}"
    )
    assert error.max() > 0  # fixed point really rounded: the numbers went through the MPC path

    digest = json.loads(_ok(_node(node, node_cluster, "node-analyst", "fetch", job.job_id, "--digest")))
    assert digest["values"] == full["values"]


def test_node_fetch_of_an_output_for_someone_else_is_permission_denied(
    node: str, node_cluster: LocalCluster
) -> None:
    grants = ["--grant", f"node-analyst:{PROGRAM}"]
    _ok(_node(node, node_cluster, "node-bank", "upload", "small", "1.5", "-2.25", *grants, "--overwrite"))
    _ok(_node(node, node_cluster, "node-bank", "upload", "w1", "2", *grants, "--overwrite"))
    run = _node(
        node,
        node_cluster,
        "node-bank",
        "run",
        PROGRAM,
        "features=small",
        "weights=w1",
        "--receiver",
        "node-analyst",
        "--job-id",
        "node-refusal-job",
    )
    assert json.loads(_ok(run))["receiver"] == "node-analyst"
    assert json.loads(_ok(_node(node, node_cluster, "node-analyst", "fetch", "node-refusal-job")))[
        "values"
    ] == [
        3.0,
        -4.5,
    ]

    refused = _node(node, node_cluster, "node-bank", "fetch", "node-refusal-job")
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert "PERMISSION_DENIED" in refused.stderr
    assert "is for its receiver only, not node-bank" in refused.stderr
    for server in ("server-0", "server-1", "server-2"):
        assert server in refused.stderr

    # A job for a receiver the inputs do not grant does not run at all.
    ungranted = _node(node, node_cluster, "node-bank", "run", PROGRAM, "features=small", "weights=w1")
    assert ungranted.returncode == 1
    assert "PERMISSION_DENIED" in ungranted.stderr
    assert "does not grant node-bank" in ungranted.stderr


def test_node_refuses_bad_values_before_sending(node: str, node_cluster: LocalCluster) -> None:
    for bad in ("nan", "inf", "-1e15"):
        refused = _node(node, node_cluster, "node-bank", "upload", "never", "1", bad, "3")
        assert refused.returncode == 1, refused.stderr
        assert "INVALID_ARGUMENT" in refused.stderr
        assert "at index 1" in refused.stderr
        assert "nothing was sent" in refused.stderr
    with node_cluster.client("model-owner") as owner, pytest.raises(NotFoundError):
        owner.run("dot", {"x": "node-bank/never", "y": "node-bank/never"})


def test_node_verifies_each_server_by_its_identity(node: str, node_cluster: LocalCluster) -> None:
    infos = json.loads(_ok(_node(node, node_cluster, "node-analyst", "info")))
    assert [(i["identity"], i["party"], i["readiness"]) for i in infos] == [
        (f"server-{p}", p, "READINESS_STATE_READY") for p in range(3)
    ]
    # server-1's address under server-0's name: its certificate does not carry that identity.
    swapped = list(zip(("server-1", "server-0", "server-2"), node_cluster.addresses, strict=True))
    (node_cluster.directory / "swapped.toml").write_text(render_cluster(swapped, "certs/ca.pem"))
    refused = _node(
        node, node_cluster, "node-analyst", "info", "--timeout", "10", cluster_file="swapped.toml"
    )
    assert refused.returncode == 1
    assert "UNAVAILABLE" in refused.stderr
    assert "server-0" in refused.stderr
    assert "server-1" in refused.stderr
    assert "server-2" not in refused.stderr


def test_every_node_call_has_a_deadline(node: str, node_cluster: LocalCluster) -> None:
    with socket.socket() as silent:  # accepts TCP connections, never speaks TLS
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        addresses = [*node_cluster.addresses[:2], f"127.0.0.1:{silent.getsockname()[1]}"]
        servers = list(zip(("server-0", "server-1", "server-2"), addresses, strict=True))
        (node_cluster.directory / "silent.toml").write_text(render_cluster(servers, "certs/ca.pem"))
        start = time.monotonic()
        refused = _node(
            node, node_cluster, "node-analyst", "info", "--timeout", "1.5", cluster_file="silent.toml"
        )
        elapsed = time.monotonic() - start
    assert refused.returncode == 1
    assert "DEADLINE_EXCEEDED" in refused.stderr
    assert "server-2" in refused.stderr
    assert elapsed < 20


def test_node_refuses_a_certificate_from_another_ca(
    node: str, node_cluster: LocalCluster, tmp_path: Path
) -> None:
    rogue = CertificateAuthority(tmp_path / "rogue").ensure(Principal(Role.CLIENT, "node-bank"))
    completed = subprocess.run(
        [node, str(CLI), "info", "--cert", str(rogue.cert_path), "--key", str(rogue.key_path)],
        cwd=node_cluster.directory,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 1
    assert "not issued by the cluster CA" in completed.stderr
