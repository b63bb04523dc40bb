"""Three real servers in three network namespaces, and the faults the tests inject.

Layout (root and iproute2 only; ``iptables`` for the silent-drop and loss faults)::

    host (pytest, the clients)  10.99.0.1  on bridge mpcf<pid>
      ├─ veth ── namespace mpcf<pid>-0  eth0 10.99.0.10   server-0  :7100 (gRPC)  :9100 (metrics)
      ├─ veth ── namespace mpcf<pid>-1  eth0 10.99.0.11   server-1
      └─ veth ── namespace mpcf<pid>-2  eth0 10.99.0.12   server-2

Names carry the pid of the pytest process that made them, so a crashed run
cannot collide with the next one; at start-up the fixture removes whatever
an earlier run whose process is gone left behind (its servers included).
Every fault is undone by the fixture that tracks it, also when a test
fails; the namespaces (with their routes and iptables rules) and the bridge
are deleted at the end of the session. All test traffic stays on
10.99.0.0/24 and on loopback inside the namespaces.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from mpc_cli.certs import CertificateAuthority
from mpc_client import Grant, JobResult, MpcClient, MpcError
from mpc_core.cluster import render_cluster
from mpc_core.identity import Principal, Role
from mpc_proto.v1 import client_service_pb2 as client_pb
from mpc_proto.v1 import client_service_pb2_grpc as client_grpc

PREFIX = "mpcf"
HOST_ADDRESS = "10.99.0.1"
SERVER_IPS = ("10.99.0.10", "10.99.0.11", "10.99.0.12")
IDENTITIES = ("server-0", "server-1", "server-2")
GRPC_PORT = 7100
METRICS_PORT = 9100
CLIENTS = ("model-owner",)
PROGRAM = "elementwise.multiply"
COMMAND_TIMEOUT = 30.0
LEAK_SLACK = {
    "asyncio_tasks": 2,
    "mailbox_jobs": 0,
    "mailbox_buffered_bytes": 0,
    "running_jobs": 0,
    "open_fds": 2,
    "rss_bytes": 8 << 20,
}
"""How far a server may be above its earlier reading after a series of failures."""
READY_TIMEOUT = 30.0

_REACH_PROBE = """
import socket, sys
for ip in sys.argv[1:]:
    try:
        socket.create_connection((ip, 9), timeout=2).close()
    except ConnectionRefusedError:
        pass
"""
"""Exits 0 when every address answers (a refusal is an answer), with a traceback otherwise."""

_STALE_NAMESPACE = re.compile(rf"^{PREFIX}(\d+)-\d$")
_STALE_LINK = re.compile(rf"^{PREFIX}(\d+)(v\d)?$")


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command (never through a shell); on failure raise with its stderr."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------- network


class Network:
    """A bridge with a host address and three namespaces, plus the faults on it."""

    def __init__(self) -> None:
        """Choose names (nothing is created before :meth:`up`)."""
        self.tag = f"{PREFIX}{os.getpid()}"
        self.bridge = self.tag
        self.namespaces = tuple(f"{self.tag}-{i}" for i in range(3))
        self.host_links = tuple(f"{self.tag}v{i}" for i in range(3))
        self._undo: list[tuple[str, ...]] = []
        self.iptables = shutil.which("iptables") is not None
        self.iptables_error = "the iptables command is not installed"

    # ---- lifecycle

    @staticmethod
    def clean_stale() -> None:
        """Remove namespaces and links of earlier runs whose pytest process is gone."""
        own = os.getpid()
        for line in run("ip", "netns", "list").stdout.splitlines():
            name = line.split()[0] if line.split() else ""
            match = _STALE_NAMESPACE.match(name)
            if match and (int(match[1]) == own or not _pid_alive(int(match[1]))):
                pids = run("ip", "netns", "pids", name, check=False).stdout.split()
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)
                run("ip", "netns", "del", name, check=False)
        for line in run("ip", "-o", "link", "show").stdout.splitlines():
            fields = line.split(":")
            name = fields[1].strip().split("@")[0] if len(fields) > 1 else ""
            match = _STALE_LINK.match(name)
            if match and (int(match[1]) == own or not _pid_alive(int(match[1]))):
                run("ip", "link", "del", name, check=False)

    @staticmethod
    def subnet_users() -> list[str]:
        """Host interfaces holding an address in 10.99.0.0/24 (besides ours)."""
        users = []
        for line in run("ip", "-o", "-4", "addr", "show").stdout.splitlines():
            if " 10.99.0." in line:
                users.append(line.split()[1])
        return users

    def up(self) -> None:
        """Create the bridge, the namespaces and their links; check they talk."""
        run("ip", "link", "add", self.bridge, "type", "bridge")
        run("ip", "addr", "add", f"{HOST_ADDRESS}/24", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")
        for index, (namespace, link) in enumerate(zip(self.namespaces, self.host_links, strict=True)):
            run("ip", "netns", "add", namespace)
            run("ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            run("ip", "link", "set", link, "master", self.bridge)
            run("ip", "link", "set", link, "up")
            run("ip", "-n", namespace, "addr", "add", f"{SERVER_IPS[index]}/24", "dev", "eth0")
            run("ip", "-n", namespace, "link", "set", "eth0", "up")
            run("ip", "-n", namespace, "link", "set", "lo", "up")
        # Bridged traffic can be filtered by the host (br_netfilter and a FORWARD policy of DROP):
        # a refused connection from one namespace to another proves the path works.
        reach = run(*self.exec_argv(0, sys.executable, "-c", _REACH_PROBE, *SERVER_IPS[1:]), check=False)
        if reach.returncode != 0:
            raise RuntimeError(f"namespaces cannot reach each other over the bridge: {reach.stderr.strip()}")
        if self.iptables:
            # iptables may be installed but unusable (no kernel support): then say so once.
            probe = run("ip", "netns", "exec", self.namespaces[0], "iptables", "-S", "OUTPUT", check=False)
            if probe.returncode != 0:
                self.iptables_error = probe.stderr.strip()
                self.iptables = False

    def down(self) -> None:
        """Kill what still runs inside, delete the namespaces and the bridge."""
        for namespace in self.namespaces:
            for pid in run("ip", "netns", "pids", namespace, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            run("ip", "netns", "del", namespace, check=False)
        for link in self.host_links:
            run("ip", "link", "del", link, check=False)
        run("ip", "link", "del", self.bridge, check=False)

    def exec_argv(self, index: int, *argv: str) -> list[str]:
        """``argv`` run inside namespace ``index``."""
        return ["ip", "netns", "exec", self.namespaces[index], *argv]

    # ---- faults

    def require_iptables(self) -> None:
        """Skip the calling test when iptables cannot be used here."""
        if not self.iptables:
            reason = self.iptables_error
            pytest.skip(f"needs iptables inside network namespaces (.ci/run installs it): {reason}")

    def _apply(self, do: tuple[str, ...], undo: tuple[str, ...]) -> None:
        run(*do)
        self._undo.append(undo)

    def block(self, src: int, dst: int, mode: str, probability: float = 1.0) -> None:
        """Stop (or thin out) what namespace ``src`` sends to server ``dst``'s address.

        ``prohibit``: a prohibit route; new connections fail at once with EACCES,
        packets of established ones are dropped locally. ``drop``: an iptables
        DROP rule, silent. ``loss``: DROP each packet with ``probability``.
        """
        namespace, target = self.namespaces[src], SERVER_IPS[dst]
        if mode == "prohibit":
            route = ("route", "add", "prohibit", f"{target}/32")
            self._apply(("ip", "-n", namespace, *route), ("ip", "-n", namespace, "route", "del", *route[2:]))
            return
        self.require_iptables()
        match = ["-d", target]
        if mode == "loss":
            match += ["-m", "statistic", "--mode", "random", "--probability", f"{probability}"]
        elif mode != "drop":
            raise ValueError(f"unknown fault mode {mode!r}")
        rule = ("OUTPUT", *match, "-j", "DROP")
        prefix = ("ip", "netns", "exec", namespace, "iptables")
        self._apply((*prefix, "-A", *rule), (*prefix, "-D", *rule))

    def cut(self, a: int, b: int, mode: str, probability: float = 1.0) -> None:
        """Apply ``mode`` to the link between servers ``a`` and ``b``, both directions."""
        self.block(a, b, mode, probability)
        self.block(b, a, mode, probability)

    def drop_resets(self, src: int, dst: int) -> None:
        """Drop the TCP resets that server ``src``'s own port sends to server ``dst`` (half-open links)."""
        self.require_iptables()
        rule = ("OUTPUT", "-d", SERVER_IPS[dst], "-p", "tcp", "--sport", str(GRPC_PORT))
        rule += ("--tcp-flags", "RST", "RST", "-j", "DROP")
        prefix = ("ip", "netns", "exec", self.namespaces[src], "iptables")
        self._apply((*prefix, "-A", *rule), (*prefix, "-D", *rule))

    def abort_inbound(self, src: int, dst: int) -> None:
        """Abort (``ss -K``) the connections server ``dst`` opened to server ``src``, at ``src``'s end."""
        run(*self.exec_argv(src, "ss", "-K", "-tn", "dst", SERVER_IPS[dst], "sport", "=", f":{GRPC_PORT}"))

    def connections(self, src: int, dst: int) -> int:
        """Established TCP connections between servers ``src`` and ``dst``, seen from ``src``."""
        listing = run(*self.exec_argv(src, "ss", "-Htn", "state", "established", "dst", SERVER_IPS[dst]))
        return len(listing.stdout.splitlines())

    def dropped_packets(self, src: int) -> int:
        """Packets the iptables OUTPUT rules of namespace ``src`` dropped so far."""
        listing = run(*self.exec_argv(src, "iptables", "-L", "OUTPUT", "-v", "-x", "-n")).stdout
        return sum(int(line.split()[0]) for line in listing.splitlines() if " DROP " in f" {line} ")

    def heal(self) -> None:
        """Undo every fault, newest first."""
        while self._undo:
            run(*self._undo.pop(), check=False)


# --------------------------------------------------------------------------- cluster


@dataclass(frozen=True)
class Resources:
    """What one server process holds, from its metrics endpoint and /proc."""

    pid: int
    asyncio_tasks: float
    mailbox_jobs: float
    mailbox_buffered_bytes: float
    running_jobs: float
    open_fds: int
    rss_bytes: int


class BackgroundJob:
    """A job run in a thread, so the test can break things while it runs."""

    def __init__(self, client: MpcClient, job_id: str, timeout: float) -> None:
        """Start ``PROGRAM`` on the uploaded inputs as ``job_id``."""
        self.job_id = job_id
        self.timeout = timeout
        self.error: MpcError | None = None
        self.output: np.ndarray[Any, Any] | None = None
        self.result: JobResult | None = None
        self.elapsed = float("nan")
        self._client = client
        self._thread = threading.Thread(target=self._run, name=f"job-{job_id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        started = time.monotonic()
        try:
            self.result, self.output = self._client.run_and_fetch(
                PROGRAM, {"x": "x", "y": "y"}, job_id=self.job_id, timeout=self.timeout
            )
        except MpcError as exc:
            self.error = exc
        finally:
            self.elapsed = time.monotonic() - started

    def join(self) -> None:
        """Wait for the job; fail the test if it outlives its deadline by far."""
        self._thread.join(self.timeout + 15)
        assert not self._thread.is_alive(), f"job {self.job_id} hung past its {self.timeout} s deadline"


class Cluster:
    """Three ``mpc server`` processes, one per namespace, and a client on the host."""

    def __init__(self, network: Network, directory: Path) -> None:
        """Write the cluster file and issue the certificates for the 10.99.0.x addresses."""
        self.network = network
        self.directory = directory
        self.cert_dir = directory / "certs"
        self.cluster_file = directory / "cluster.toml"
        self.addresses = tuple(f"{ip}:{GRPC_PORT}" for ip in SERVER_IPS)
        self.processes: list[subprocess.Popen[bytes] | None] = [None, None, None]
        self.proxies: list[subprocess.Popen[str]] = []
        self.cluster_files: list[Path] = [self.cluster_file] * 3
        """The cluster file each server was started with (the latency test changes two)."""
        self.data_size = 0
        directory.mkdir(parents=True, exist_ok=True)
        self.cluster_file.write_text(self.render(self.addresses))
        ca = CertificateAuthority(self.cert_dir)
        for identity, ip in zip(IDENTITIES, SERVER_IPS, strict=True):
            ca.ensure(Principal(Role.SERVER, identity), [ip, "localhost"])
        for identity in CLIENTS:
            ca.ensure(Principal(Role.CLIENT, identity))
        self._ca_pem = (self.cert_dir / "ca.pem").read_bytes()
        self._client_pem = (self.cert_dir / f"{CLIENTS[0]}.pem").read_bytes()
        self._client_key = (self.cert_dir / f"{CLIENTS[0]}.key").read_bytes()

    def render(self, addresses: tuple[str, ...]) -> str:
        """A cluster file naming the servers at ``addresses`` (and the CA by its absolute path)."""
        return render_cluster(list(zip(IDENTITIES, addresses, strict=True)), f"{self.cert_dir}/ca.pem")

    # ---- processes

    def log_path(self, index: int) -> Path:
        """Where server ``index`` logs (appended across restarts)."""
        return self.directory / f"{IDENTITIES[index]}.log"

    def start_server(self, index: int, cluster_file: Path | None = None) -> None:
        """Start server ``index`` inside its namespace (same identity and port on restarts)."""
        assert not self.alive(index), f"{IDENTITIES[index]} is already running"
        self.cluster_files[index] = cluster_file or self.cluster_file
        command = self.network.exec_argv(
            index,
            sys.executable,
            "-m",
            "mpc_cli",
            "--log-level",
            "INFO",
            "server",
            "--cluster",
            str(self.cluster_files[index]),
            "--identity",
            IDENTITIES[index],
            "--metrics-address",
            f"{SERVER_IPS[index]}:{METRICS_PORT}",
        )
        with self.log_path(index).open("ab") as log:
            log.write(f"=== start {' '.join(command)}\n".encode())
            log.flush()
            self.processes[index] = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def pid(self, index: int) -> int:
        """The server's pid (``ip netns exec`` execs the server in its own process)."""
        process = self.processes[index]
        assert process is not None and process.poll() is None, f"{IDENTITIES[index]} is not running"
        return process.pid

    def alive(self, index: int) -> bool:
        """Whether server ``index`` runs."""
        process = self.processes[index]
        return process is not None and process.poll() is None

    def kill(self, index: int) -> None:
        """SIGKILL server ``index`` and reap it."""
        process = self.processes[index]
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=30)

    def restart(self, index: int, cluster_file: Path | None = None) -> None:
        """Stop server ``index`` gracefully (SIGTERM) and start it again."""
        process = self.processes[index]
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.start_server(index, cluster_file)

    @contextlib.contextmanager
    def frozen(self, index: int) -> Iterator[None]:
        """SIGSTOP server ``index`` for the duration (SIGCONT afterwards, always)."""
        os.kill(self.pid(index), signal.SIGSTOP)
        try:
            yield
        finally:
            if self.alive(index):
                os.kill(self.pid(index), signal.SIGCONT)

    def stop(self) -> None:
        """SIGTERM every server, SIGKILL what has not exited after 10 s; stop the proxies."""
        running = [p for p in self.processes if p is not None and p.poll() is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)
                process.terminate()
        end = time.monotonic() + 10
        for process in running:
            try:
                process.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.stop_proxies()

    def start_proxy(self, index: int, target: int, delay_ms: float) -> int:
        """A delay proxy inside namespace ``index``, on its loopback, to server ``target``."""
        script = Path(__file__).with_name("delay_proxy.py")
        command = self.network.exec_argv(
            index, sys.executable, str(script), "127.0.0.1", "0", SERVER_IPS[target], str(GRPC_PORT)
        )
        command.append(str(delay_ms))
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        self.proxies.append(process)
        assert process.stdout is not None
        line = process.stdout.readline().split()
        assert line[:1] == ["ready"], f"delay proxy did not start: {line}"
        return int(line[1])

    def stop_proxies(self) -> None:
        """Stop every delay proxy."""
        for process in self.proxies:
            process.kill()
            process.wait()
        self.proxies.clear()

    # ---- observing

    def log_text(self, index: int) -> str:
        """Server ``index``'s log so far."""
        return self.log_path(index).read_text(errors="replace")

    def log_tails(self) -> str:
        """The end of every log, for assertion messages."""
        return "\n".join(f"--- {IDENTITIES[i]} ---\n{self.log_text(i)[-3000:]}" for i in range(3))

    def wait_for_log(self, index: int, text: str, timeout: float = 10.0) -> None:
        """Wait until ``text`` appears in server ``index``'s log."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in self.log_text(index):
                return
            time.sleep(0.02)
        raise AssertionError(f"{text!r} never appeared in the log of {IDENTITIES[index]}")

    def client(self, timeout: float = 60.0) -> MpcClient:
        """The model owner's client, on the host (10.99.0.1)."""
        return MpcClient.connect(
            self.cluster_file,
            self.cert_dir / f"{CLIENTS[0]}.pem",
            self.cert_dir / f"{CLIENTS[0]}.key",
            timeout=timeout,
        )

    def _channel(self, index: int) -> grpc.Channel:
        credentials = grpc.ssl_channel_credentials(self._ca_pem, self._client_key, self._client_pem)
        return grpc.secure_channel(
            self.addresses[index], credentials, options=[("grpc.ssl_target_name_override", IDENTITIES[index])]
        )

    def health(self, index: int, timeout: float = 3.0) -> str:
        """``grpc.health.v1`` status of server ``index`` (raises if it does not answer)."""
        with self._channel(index) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))

    def peers(self, index: int, timeout: float = 3.0) -> dict[str, bool]:
        """Server ``index``'s own view of its peer links (GetServerInfo, that server only)."""
        with self._channel(index) as channel:
            info = client_grpc.ClientServiceStub(channel).GetServerInfo(
                client_pb.GetServerInfoRequest(), timeout=timeout
            )
        assert info.identity == IDENTITIES[index]
        return {peer.identity: peer.connected for peer in info.peers}

    def wait_until(self, what: str, check: Callable[[], bool], timeout: float) -> float:
        """Poll ``check`` until it holds; returns the seconds it took."""
        started = time.monotonic()
        last: Exception | None = None
        while time.monotonic() - started < timeout:
            try:
                if check():
                    return time.monotonic() - started
            except (grpc.RpcError, MpcError, OSError) as exc:
                last = exc
            time.sleep(0.1)
        raise AssertionError(f"not within {timeout:.0f} s: {what} (last error: {last})\n{self.log_tails()}")

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait until every server is SERVING (both peer links up); fail early if one exits."""

        def ready() -> bool:
            for index in range(3):
                process = self.processes[index]
                if process is None or process.poll() is not None:
                    raise AssertionError(f"{IDENTITIES[index]} is not running\n{self.log_tails()}")
            return all(self.health(i, timeout=1.0) == "SERVING" for i in range(3))

        self.wait_until("all three servers SERVING", ready, timeout)

    def metrics(self, index: int) -> dict[str, float]:
        """Server ``index``'s unlabelled Prometheus samples by name."""
        url = f"http://{SERVER_IPS[index]}:{METRICS_PORT}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        return {
            sample.name: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if not sample.labels
        }

    def resources(self, index: int) -> Resources:
        """Tasks, mailbox, fds and RSS of server ``index`` right now."""
        pid = self.pid(index)
        values = self.metrics(index)
        status = Path(f"/proc/{pid}/status").read_text()
        rss_kib = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
        return Resources(
            pid=pid,
            asyncio_tasks=values["mpc_asyncio_tasks"],
            mailbox_jobs=values["mpc_mailbox_jobs"],
            mailbox_buffered_bytes=values["mpc_mailbox_buffered_bytes"],
            running_jobs=values["mpc_running_jobs"],
            open_fds=len(os.listdir(f"/proc/{pid}/fd")),
            rss_bytes=rss_kib * 1024,
        )

    # ---- jobs

    def inputs(self, size: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """The test inputs x and y of ``size`` elements (deterministic, within +-100)."""
        index = np.arange(size, dtype=np.float64)
        return (index % 2001) / 10 - 100, ((index * 7) % 1999) / 20 - 50

    def upload(self, size: int = 1000) -> None:
        """(Re-)upload x and y to all three servers."""
        x, y = self.inputs(size)
        grants = [Grant(CLIENTS[0], PROGRAM)]
        with self.client() as client:
            client.upload("x", x, grants=grants, overwrite=True)
            client.upload("y", y, grants=grants, overwrite=True)
        self.data_size = size

    def check_output(self, output: np.ndarray[Any, Any] | None) -> None:
        """``output`` is x * y within the fixed-point error bound."""
        x, y = self.inputs(self.data_size)
        assert output is not None
        # inputs rounded by 2^-17 each: |error| <= 2^-17 (|x| + |y|) + 2^-34 < 0.002
        np.testing.assert_allclose(output, x * y, rtol=0, atol=0.002)

    def start_job(self, client: MpcClient, timeout: float, kind: str = "job") -> BackgroundJob:
        """Start x * y as a new job in the background."""
        return BackgroundJob(client, new_job_id(kind), timeout)

    def run_job_eventually(self, attempts: int = 4, timeout: float = 5.0) -> int:
        """Run correct jobs until one succeeds; returns how many attempts failed first.

        As a client would retry: after a failure it waits (0.5 s, doubling) and
        until every server is SERVING again. Right after a repaired cut both ends
        of a link may drop their half-open connections one after the other, a
        few hundred milliseconds apart, and a job in between fails UNAVAILABLE.
        """
        for attempt in range(attempts):
            if attempt:
                time.sleep(0.5 * 2 ** (attempt - 1))
                self.wait_ready(READY_TIMEOUT)
            with self.client() as client:
                job = self.start_job(client, timeout, "retry")
                job.join()
            if job.error is None:
                self.check_output(job.output)
                return attempt
        raise AssertionError(f"no job succeeded in {attempts} attempts: {job.error!r}\n{self.log_tails()}")

    def run_job(self, timeout: float = 30.0) -> float:
        """Run one job that must succeed with the right output; returns its wall time."""
        with self.client() as client:
            job = self.start_job(client, timeout, "ok")
            job.join()
        assert job.error is None, f"job failed: {job.error!r}\n{self.log_tails()}"
        self.check_output(job.output)
        return job.elapsed

    def timed_jobs(self, count: int, timeout: float = 30.0) -> list[float]:
        """Wall times of ``count`` correct jobs on one connection (after one unmeasured job)."""
        times = []
        with self.client() as client:
            for _ in range(count + 1):
                started = time.monotonic()
                _, output = client.run_and_fetch(
                    PROGRAM, {"x": "x", "y": "y"}, job_id=new_job_id("timed"), timeout=timeout
                )
                times.append(time.monotonic() - started)
                self.check_output(output)
        return times[1:]

    # ---- leaks

    def _quiet(self, index: int) -> Resources:
        now = self.resources(index)
        assert now.running_jobs == 0 and now.mailbox_jobs == 0 and now.mailbox_buffered_bytes == 0, now
        return now

    def settled_resources(self, indices: list[int], timeout: float = 10.0) -> dict[int, Resources]:
        """Resources of the servers ``indices`` once no job runs and closed connections are gone."""
        end = time.monotonic() + timeout
        while True:
            try:
                time.sleep(0.5)
                return {index: self._quiet(index) for index in indices}
            except AssertionError:
                if time.monotonic() > end:
                    raise

    def assert_no_leaks(self, before: dict[int, Resources], timeout: float = 15.0) -> None:
        """Each server still runs as the same process and is back to ``before``, within slack."""
        problems: list[str] = []
        end = time.monotonic() + timeout
        while True:
            problems = []
            report = []
            for index, old in before.items():
                new = self.resources(index)
                name = IDENTITIES[index]
                report.append(f"{name}: {old} -> {new}")
                if new.pid != old.pid:
                    problems.append(f"{name} is not the process measured before ({old.pid} -> {new.pid})")
                    continue
                for field, slack in LEAK_SLACK.items():
                    was, now = getattr(old, field), getattr(new, field)
                    if now > was + slack:
                        problems.append(f"{name}: {field} {was:g} -> {now:g} (slack {slack:g})")
            if not problems or time.monotonic() > end:
                break
            time.sleep(0.5)
        print("\n".join(report))
        assert not problems, "leaks after the failures:\n" + "\n".join(problems)

    # ---- recovery between tests

    def heal(self) -> None:
        """Undo faults, resume frozen servers, restart missing ones, wait until all are ready."""
        self.network.heal()
        self.stop_proxies()
        for index in range(3):
            if self.alive(index):
                os.kill(self.pid(index), signal.SIGCONT)
            if self.cluster_files[index] != self.cluster_file:
                self.restart(index)
            elif not self.alive(index):
                self.start_server(index)
        try:
            self.wait_ready(timeout=10.0)
        except AssertionError:
            # A server that cannot recover by itself (e.g. a peer link that gave up
            # for good) must not break the next test: start it afresh.
            for index in range(3):
                if not self._serving(index):
                    self.restart(index)
            self.wait_ready()

    def _serving(self, index: int) -> bool:
        try:
            return self.alive(index) and self.health(index, timeout=1.0) == "SERVING"
        except grpc.RpcError:
            return False


def new_job_id(kind: str) -> str:
    """A job id never used before (job ids name one job forever)."""
    return f"{kind}-{secrets.token_hex(6)}"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def network() -> Iterator[Network]:
    """The bridge and three namespaces; skips (saying why) where they cannot be made."""
    if not sys.platform.startswith("linux"):
        pytest.skip("network-fault tests need Linux network namespaces")
    if os.geteuid() != 0:
        pytest.skip("network-fault tests need root (they create network namespaces); CI runs them as root")
    if shutil.which("ip") is None:
        pytest.skip("network-fault tests need iproute2 (the ip command); .ci/run installs it")
    Network.clean_stale()
    users = Network.subnet_users()
    if users:
        pytest.skip(f"10.99.0.0/24 is already in use on this host (by {', '.join(users)})")
    net = Network()
    try:
        net.up()
    except RuntimeError as exc:
        net.down()
        pytest.skip(f"cannot create network namespaces here: {exc}")
    try:
        yield net
    finally:
        net.heal()
        net.down()


@pytest.fixture(scope="session")
def netns_cluster(network: Network, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three servers, one per namespace, shared by the tests (each leaves it healthy)."""
    cluster = Cluster(network, tmp_path_factory.mktemp("netns-cluster"))
    try:
        for index in range(3):
            cluster.start_server(index)
        cluster.wait_ready()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster(netns_cluster: Cluster) -> Iterator[Cluster]:
    """The shared cluster, healthy and with fresh inputs; faults undone afterwards, always."""
    netns_cluster.heal()
    netns_cluster.upload()
    yield netns_cluster
    netns_cluster.network.heal()
    netns_cluster.stop_proxies()
