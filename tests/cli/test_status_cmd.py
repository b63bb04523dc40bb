"""``mpc status`` and ``mpc probe`` against a real local cluster: reachable, unreachable, silent."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mpc_cli.local_cluster import LocalCluster, free_ports
from mpc_cli.main import main
from mpc_core.cluster import render_cluster
from mpc_core.version import PROTOCOL_VERSION

pytestmark = pytest.mark.e2e

CLIENT = "model-owner"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path_factory.mktemp("status-cluster"), clients=(CLIENT,))
    local.start()
    yield local
    local.stop()


@pytest.fixture
def silent_listener() -> Iterator[str]:
    """A TCP port that accepts connections and never says a word (no TLS handshake)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"127.0.0.1:{server.getsockname()[1]}"


def _client_args(local: LocalCluster) -> list[str]:
    certs = local.cert_dir
    return ["--cert", str(certs / f"{CLIENT}.pem"), "--key", str(certs / f"{CLIENT}.key")]


def _cluster_with(local: LocalCluster, directory: Path, server_2_address: str) -> Path:
    """A copy of the cluster file in which server-2 lives at ``server_2_address``."""
    addresses = [*local.addresses[:2], server_2_address]
    servers = [(f"server-{i}", address) for i, address in enumerate(addresses)]
    path = directory / "cluster.toml"
    path.write_text(render_cluster(servers, str(local.cert_dir / "ca.pem")))
    return path


def _status(cluster_file: Path, local: LocalCluster, *extra: str) -> int:
    return main(["status", "--cluster", str(cluster_file), *_client_args(local), *extra])


@pytest.mark.parametrize("command", ["status", "probe"])
def test_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    assert "usage: mpc" in capsys.readouterr().out


def test_status_table_of_a_ready_cluster(cluster: LocalCluster, capsys: pytest.CaptureFixture[str]) -> None:
    assert _status(cluster.cluster_file, cluster) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "identity", "address", "reachable", "health", "version", "protocol", "ring", "readiness", "peers",
    ]  # fmt: skip
    for index, line in enumerate(lines[1:4]):
        assert line.startswith(f"server-{index}  {cluster.addresses[index]}")
        assert "yes" in line and "SERVING" in line and "READY" in line and "down" not in line
        assert "Z_2^128, f=32" in line
    assert "3 of 3 servers reachable and ready" in lines
    programs = lines[lines.index("programs:") + 1 :]
    assert any(
        line.strip().startswith("linear_regression.predict(features[1..64], weights, intercept[0..1])")
        and "-> predictions" in line
        for line in programs
    ), programs


def test_status_json_of_a_ready_cluster(cluster: LocalCluster, capsys: pytest.CaptureFixture[str]) -> None:
    assert _status(cluster.cluster_file, cluster, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["healthy"] is True
    for index, server in enumerate(report["servers"]):
        assert server["identity"] == server["reported_identity"] == f"server-{index}"
        assert server["address"] == cluster.addresses[index]
        assert server["reachable"] and server["ready"] and server["health"] == "SERVING"
        assert server["readiness"] == "READY" and server["protocol_version"] == PROTOCOL_VERSION
        assert server["ring"] == "Z_2^128" and server["fractional_bits"] == 32
        assert server["software_version"] and not server["errors"]
        assert server["peers"] == {f"server-{p}": True for p in range(3) if p != index}
        assert {p["name"] for p in server["programs"]} >= {"linear_regression.predict", "dot"}


def test_status_shows_an_unreachable_server(
    cluster: LocalCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = f"127.0.0.1:{free_ports(1)[0]}"
    cluster_file = _cluster_with(cluster, tmp_path, closed)
    assert _status(cluster_file, cluster, "--json") == 1
    servers = json.loads(capsys.readouterr().out)["servers"]
    assert [s["reachable"] for s in servers] == [True, True, False]
    assert servers[2]["address"] == closed and "UNAVAILABLE" in servers[2]["errors"][0]
    assert _status(cluster_file, cluster) == 1
    out = capsys.readouterr().out
    assert "server-2" in out and " NO " in out and "2 of 3 servers reachable and ready" in out


def test_status_does_not_hang_on_a_silent_server(
    cluster: LocalCluster, tmp_path: Path, silent_listener: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster_file = _cluster_with(cluster, tmp_path, silent_listener)
    started = time.monotonic()
    assert _status(cluster_file, cluster, "--json", "--timeout", "0.5") == 1
    assert time.monotonic() - started < 5.0
    server_2 = json.loads(capsys.readouterr().out)["servers"][2]
    assert not server_2["reachable"]
    assert server_2["errors"][0].startswith(("health: DEADLINE_EXCEEDED", "health: UNAVAILABLE"))


def test_status_shows_peers_down_when_a_server_dies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with LocalCluster(tmp_path, clients=(CLIENT,)) as local:
        local.kill(1)
        deadline = time.monotonic() + 20
        while True:
            code = _status(local.cluster_file, local, "--json")
            servers = json.loads(capsys.readouterr().out)["servers"]
            if not servers[0]["peers"]["server-1"] and not servers[2]["peers"]["server-1"]:
                break
            assert time.monotonic() < deadline, servers
            time.sleep(0.2)
    assert code == 1
    assert [s["reachable"] for s in servers] == [True, False, True]
    assert servers[0]["health"] == "NOT_SERVING" and servers[0]["readiness"] == "WAITING_FOR_PEERS"


def test_status_needs_a_client_certificate(cluster: LocalCluster, capsys: pytest.CaptureFixture[str]) -> None:
    certs = cluster.cert_dir
    server_cert = ["--cert", str(certs / "server-0.pem"), "--key", str(certs / "server-0.key")]
    assert main(["status", "--cluster", str(cluster.cluster_file), *server_cert]) == 1
    assert "needs a client certificate" in capsys.readouterr().err


def test_probe_a_serving_server_with_its_own_certificate(
    cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["probe", "--cluster", str(cluster.cluster_file), "--identity", "server-1"]) == 0
    assert capsys.readouterr().out.strip() == f"server-1 {cluster.addresses[1]} SERVING"


def test_probe_with_explicit_paths_and_a_client_certificate(
    cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["probe", "--identity", "server-0", "--address", cluster.addresses[0]]
    args += ["--ca", str(cluster.cert_dir / "ca.pem"), *_client_args(cluster)]
    assert main(args) == 0
    assert capsys.readouterr().out.strip().endswith("SERVING")


def test_probe_verifies_the_server_identity(
    cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    # server-1's address, but we expect server-0: the TLS handshake must fail.
    args = ["probe", "--cluster", str(cluster.cluster_file), "--identity", "server-0"]
    assert main([*args, "--address", cluster.addresses[1]]) == 1
    assert "unreachable" in capsys.readouterr().out


def test_probe_unreachable_and_silent_servers(
    cluster: LocalCluster, silent_listener: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["probe", "--cluster", str(cluster.cluster_file), "--identity", "server-2"]
    assert main([*args, "--address", f"127.0.0.1:{free_ports(1)[0]}"]) == 1
    assert "unreachable (UNAVAILABLE" in capsys.readouterr().out
    started = time.monotonic()
    assert main([*args, "--address", silent_listener, "--timeout", "0.5"]) == 1
    assert time.monotonic() - started < 5.0
    # gRPC gives up the stalled TLS handshake at the deadline: DEADLINE_EXCEEDED or UNAVAILABLE.
    assert " unreachable (" in capsys.readouterr().out


def test_probe_reports_not_serving_while_peers_are_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local = LocalCluster(tmp_path, clients=(CLIENT,))
    local.prepare()
    local.start_server(0)  # alone: it listens, but its peers never answer
    try:
        args = ["probe", "--cluster", str(local.cluster_file), "--identity", "server-0"]
        deadline = time.monotonic() + 20
        while True:
            code = main(args)
            out = capsys.readouterr().out.strip()
            if "unreachable" not in out:  # until the server has bound its port
                break
            assert time.monotonic() < deadline, out
            time.sleep(0.2)
        assert code == 1
        assert out == f"server-0 {local.addresses[0]} NOT_SERVING"
    finally:
        local.stop()


def test_probe_without_a_cluster_file_needs_every_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "--identity", "server-0", "--address", "127.0.0.1:1"]) == 1
    assert "without --cluster, give --ca, --cert, --key" in capsys.readouterr().err
