"""The ``mpc`` command: help on every subcommand, certificates, clear errors."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mpc_cli.main import main
from mpc_core.certificates import inspect_certificate
from mpc_core.cluster import render_cluster
from mpc_core.identity import Role


@pytest.mark.parametrize("command", [[], ["server"], ["certs"], ["demo"]])
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    assert "usage: mpc" in capsys.readouterr().out


def test_the_console_script_runs() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "mpc_cli", "--version"], capture_output=True, text=True, check=True
    )
    assert completed.stdout.startswith("mpc ")


def test_certs_from_a_cluster_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = tmp_path / "cluster.toml"
    servers = [("server-0", "10.1.0.10:7000"), ("server-1", "node1.example:7000"), ("server-2", "[::1]:7000")]
    cluster.write_text(render_cluster(servers, "pki/ca.pem"))
    assert main(["certs", "--cluster", str(cluster), "--client", "bank-1", "--host", "extra.example"]) == 0
    out = capsys.readouterr().out
    assert "expires" in out and "bank-1.pem" in out
    pki = tmp_path / "pki"
    for name in ("ca", "server-0", "server-1", "server-2", "bank-1"):
        assert stat.S_IMODE((pki / f"{name}.key").stat().st_mode) == 0o600
    info = inspect_certificate((pki / "server-1.pem").read_bytes())
    assert info.principal.role is Role.SERVER and info.principal.name == "server-1"
    san = (pki / "server-1.pem").read_bytes()
    from cryptography import x509

    names = (
        x509.load_pem_x509_certificate(san)
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value
    )
    assert {"server-1", "node1.example", "extra.example"} <= set(names.get_values_for_type(x509.DNSName))
    ipv6 = x509.load_pem_x509_certificate((pki / "server-2.pem").read_bytes())
    ips = ipv6.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.IPAddress
    )
    assert "::1" in {str(ip) for ip in ips}
    # Re-running keeps what exists.
    assert main(["certs", "--cluster", str(cluster), "--client", "bank-1"]) == 0
    assert "(kept)" in capsys.readouterr().out


def test_certs_refuses_a_client_named_like_a_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["certs", "--out", str(tmp_path), "--client", "server-1"]) == 1
    assert "may not reuse server names" in capsys.readouterr().err


def test_server_refuses_a_certificate_for_another_identity(tmp_path: Path) -> None:
    cluster = tmp_path / "cluster.toml"
    cluster.write_text(
        render_cluster([(f"server-{i}", f"127.0.0.1:{7000 + i}") for i in range(3)], "certs/ca.pem")
    )
    assert main(["certs", "--cluster", str(cluster)]) == 0
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "mpc_cli",
            "server",
            "--cluster",
            str(cluster),
            "--identity",
            "server-1",
            "--cert",
            str(tmp_path / "certs" / "server-0.pem"),
            "--key",
            str(tmp_path / "certs" / "server-0.key"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 1
    assert "is for urn:mpc:server:server-0, but this is server server-1" in completed.stderr


def test_server_reports_a_bad_cluster_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "cluster.toml"
    bad.write_text('ca = "ca.pem"\n[[servers]]\nidentity = "server-0"\naddress = "x:1"\n')
    assert main(["server", "--cluster", str(bad), "--identity", "server-0"]) == 1
    assert "exactly 3" in capsys.readouterr().err
    assert main(["server", "--cluster", str(tmp_path / "missing.toml"), "--identity", "server-0"]) == 1
    assert "cannot read cluster file" in capsys.readouterr().err


def test_demo_validates_its_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--records", "0"]) == 1
    assert "--records" in capsys.readouterr().err
