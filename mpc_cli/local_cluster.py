"""A throwaway three-server cluster on loopback, for the demo, tests and benchmarks.

It writes a cluster file and fresh certificates (CA, three servers, the
named clients) into a directory, starts three ``mpc server`` processes on
free loopback ports and waits until every server reports both peers
connected. :meth:`LocalCluster.stop` sends SIGTERM (graceful shutdown) and
kills whatever has not exited after a grace period. These are real,
separate OS processes talking mutual TLS: the production code path.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from prometheus_client.parser import text_string_to_metric_families

from mpc_cli.certs import CertificateAuthority
from mpc_client import MpcClient
from mpc_core.cluster import render_cluster
from mpc_core.errors import ConfigError, MpcError
from mpc_core.identity import Principal, Role

SERVER_IDENTITIES = ("server-0", "server-1", "server-2")
_LOG_TAIL_BYTES = 4000


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Ports that were free a moment ago (the OS picks them)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class LocalCluster:
    """Three ``mpc server`` processes with their certificates in ``directory``."""

    def __init__(
        self,
        directory: Path,
        clients: Sequence[str] = (),
        *,
        host: str = "127.0.0.1",
        server_args: Sequence[str] = (),
        log_level: str = "WARNING",
        metrics: bool = False,
        ring_bits: int = 128,
        fractional_bits: int | None = None,
    ) -> None:
        """Prepare a cluster in Z_2^ring_bits; nothing starts before :meth:`start`."""
        self.directory = directory
        self.cert_dir = directory / "certs"
        self.cluster_file = directory / "cluster.toml"
        self.clients = tuple(clients)
        self.host = host
        self.server_args = tuple(server_args)
        self.metrics = metrics
        self.metrics_ports: list[int] = []
        self.log_level = log_level
        self.ring_bits = ring_bits
        self.fractional_bits = fractional_bits
        self.processes: list[subprocess.Popen[bytes] | None] = [None, None, None]
        self.addresses: list[str] = []

    def prepare(self) -> None:
        """Write the cluster file and issue every certificate."""
        self.directory.mkdir(parents=True, exist_ok=True)
        ports = free_ports(6 if self.metrics else 3, self.host)
        self.addresses = [f"{self.host}:{port}" for port in ports[:3]]
        self.metrics_ports = ports[3:]
        text = render_cluster(
            list(zip(SERVER_IDENTITIES, self.addresses, strict=True)),
            "certs/ca.pem",
            self.fractional_bits,
            self.ring_bits,
        )
        self.cluster_file.write_text(text)
        ca = CertificateAuthority(self.cert_dir)
        for identity in SERVER_IDENTITIES:
            ca.ensure(Principal(Role.SERVER, identity), [self.host, "localhost"])
        for identity in self.clients:
            ca.ensure(Principal(Role.CLIENT, identity))

    def scrape(self, index: int) -> dict[str, float]:
        """Server ``index``'s Prometheus metrics (the cluster needs ``metrics=True``).

        Keys are ``name`` or ``name{label=value,...}``; values are the samples.
        """
        url = f"http://{self.host}:{self.metrics_ports[index]}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        values: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return values

    def log_path(self, index: int) -> Path:
        """Where server ``index`` writes its log."""
        return self.directory / f"{SERVER_IDENTITIES[index]}.log"

    def start_server(self, index: int) -> subprocess.Popen[bytes]:
        """Start (or restart) server ``index`` as its own process."""
        command = [
            sys.executable,
            "-m",
            "mpc_cli",
            "--log-level",
            self.log_level,
            "server",
            "--cluster",
            str(self.cluster_file),
            "--identity",
            SERVER_IDENTITIES[index],
            *self.server_args,
        ]
        if self.metrics_ports:
            command += ["--metrics-address", f"{self.host}:{self.metrics_ports[index]}"]
        with self.log_path(index).open("ab") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self.processes[index] = process
        return process

    def start(self, timeout: float = 30.0, attempts: int = 3) -> LocalCluster:
        """Prepare, start all three servers and wait until they are ready.

        A port picked as free can be taken by another process before the
        server binds it; the cluster then retries with fresh ports.
        """
        for attempt in range(1, attempts + 1):
            self.prepare()
            for index in range(3):
                self.start_server(index)
            try:
                self.wait_ready(timeout)
                return self
            except ConfigError:
                self.stop()
                if attempt == attempts:
                    raise
        return self

    def client(self, identity: str, *, timeout: float = 60.0) -> MpcClient:
        """A client connected under ``identity`` (one of ``clients``)."""
        cert, key = self.cert_dir / f"{identity}.pem", self.cert_dir / f"{identity}.key"
        return MpcClient.connect(self.cluster_file, cert, key, timeout=timeout)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until all servers report READY; fail early if one exits."""
        if not self.clients:
            raise ConfigError("a local cluster needs at least one client identity to probe readiness")
        end = time.monotonic() + timeout
        with self.client(self.clients[0]) as probe:
            while True:
                self._check_alive()
                try:
                    probe.wait_until_ready(timeout=min(1.0, max(0.1, end - time.monotonic())))
                    return
                except MpcError:
                    if time.monotonic() >= end:
                        raise ConfigError(
                            f"local cluster not ready within {timeout:.0f} s\n{self.log_tails()}"
                        ) from None

    def _check_alive(self) -> None:
        for index, process in enumerate(self.processes):
            if process is not None and process.poll() is not None:
                raise ConfigError(
                    f"{SERVER_IDENTITIES[index]} exited with code {process.returncode}\n{self.log_tails()}"
                )

    def log_tails(self) -> str:
        """The end of every server log, for error messages."""
        parts = []
        for index in range(3):
            path = self.log_path(index)
            if path.exists():
                tail = path.read_bytes()[-_LOG_TAIL_BYTES:].decode(errors="replace")
                parts.append(f"--- {path.name} ---\n{tail}")
        return "\n".join(parts)

    def send_signal(self, index: int, sig: int) -> None:
        """Send ``sig`` to server ``index`` if it is running."""
        process = self.processes[index]
        if process is not None and process.poll() is None:
            os.kill(process.pid, sig)

    def kill(self, index: int, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (default SIGKILL) to server ``index`` and wait for it to exit."""
        process = self.processes[index]
        if process is not None and process.poll() is None:
            os.kill(process.pid, sig)
            process.wait(timeout=30)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM every server; SIGKILL those still running after ``grace`` s."""
        running = [p for p in self.processes if p is not None and p.poll() is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        end = time.monotonic() + grace
        for process in running:
            try:
                process.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> LocalCluster:
        """Start the cluster."""
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop the cluster."""
        self.stop()
