"""``docker-compose up`` for real: build the image, start the cluster, run the demo, tear down.

Runs Debian's docker-compose v1.29 against Podman's Docker API on this kind of
machine (root, no Docker engine, no registry; ``deploy/ci/setup-podman.sh``
prepares it). What the test handles, from the machine's known gotchas:

* no registry: the image is built FROM ``localhost/localbase:latest`` (a bare
  Debian) and installs from wheels downloaded on the host (``INSTALL_FROM=wheels``),
  because pip inside containers cannot verify TLS here;
* Podman has no systemd timers for health checks: a background thread runs
  ``podman healthcheck run`` on the project's containers;
* ``DOCKER_BUILDKIT=0``; the Podman API service is started on a private socket
  and stopped by the test.

The build context is a temporary copy of what the image needs (the compose file,
``deploy/`` and the wheels), so nothing is written into the repository. Host
ports are picked free and published on 127.0.0.1 only. Everything is removed
(``down -v``) in a finalizer, also when the test fails. Where Podman cannot run,
the test skips and says why.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mpc_cli.local_cluster import free_ports

pytestmark = [pytest.mark.compose, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = "localhost/localbase:latest"
IMAGE = "localhost/mpc-service:smoke"
IMAGE_PYTHON = "3.11"  # python3 of Debian 12, which localhost/localbase is
NODES = ("node0", "node1", "node2")
RECORDS = 20
SETUP = "sh deploy/ci/setup-podman.sh (as root)"
_PODMAN_EXIT_RACE = "/cgroup: no such process"


_NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis",
    "node_modules", "certs", "*.key", "*.whl", "*.so",
)  # fmt: skip


def _run(
    command: list[str],
    timeout: float,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd, env=env, input=input
    )


def _require_podman() -> None:
    """Skip unless this machine can run containers through Podman."""
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("the compose smoke test needs Linux and root (rootful Podman)")
    for tool in ("podman", "docker-compose"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed; run {SETUP}")
    info = _run(["podman", "info"], timeout=120)
    if info.returncode != 0:
        pytest.skip(f"podman cannot run here: {info.stderr.strip()[-500:]}")
    if _run(["podman", "image", "exists", BASE_IMAGE], timeout=60).returncode != 0:
        # The same idempotent script CI runs; it debootstraps and imports the base image.
        setup = _run(["sh", str(ROOT / "deploy/ci/setup-podman.sh")], timeout=900)
        if setup.returncode != 0:
            pytest.skip(f"no {BASE_IMAGE} and it could not be built: {setup.stderr.strip()[-500:]}")
    trial = _run(["podman", "run", "--rm", BASE_IMAGE, "true"], timeout=300)
    if trial.returncode != 0:
        pytest.skip(f"podman cannot run containers here: {trial.stderr.strip()[-500:]}")


@pytest.fixture(scope="module")
def docker_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Podman API service on a private socket, stopped at the end."""
    _require_podman()
    sock = tmp_path_factory.mktemp("podman") / "podman.sock"
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{sock}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_socket(sock, service)
        yield f"unix://{sock}"
    finally:
        service.terminate()
        try:
            service.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()


def _wait_for_socket(sock: Path, service: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if service.poll() is not None:
            pytest.skip(f"podman system service exited with code {service.returncode}")
        with socket.socket(socket.AF_UNIX) as client:
            try:
                client.connect(str(sock))
                return
            except OSError:
                time.sleep(0.2)
    pytest.fail(f"podman system service did not listen on {sock} within {timeout:.0f} s")


SOURCE_ONLY = ("pysodium>=0.7.19",)
"""Dependencies without binary wheels on the index (``pip download --only-binary`` cannot fetch them)."""


def _build_context(directory: Path) -> Path:
    """The compose file, deploy/ and wheels of the project and its dependencies."""
    context = directory / "context"
    (context / "deploy").mkdir(parents=True)
    shutil.copy2(ROOT / "docker-compose.yml", context)
    shutil.copy2(ROOT / "deploy" / "Dockerfile", context / "deploy")
    shutil.copytree(ROOT / "deploy" / "docker", context / "deploy" / "docker")
    wheels = context / "deploy" / "wheels"
    wheels.mkdir()
    # Build the project's wheel from a copy: building in the work tree would leave build/ there.
    sources = shutil.copytree(ROOT, directory / "sources", ignore=_NOT_SOURCES)
    pip = [sys.executable, "-m", "pip"]
    # A reproducible wheel (fixed zip timestamps): unchanged sources hit the image build cache.
    reproducible = {**os.environ, "SOURCE_DATE_EPOCH": "315532800"}
    built = _run(
        [*pip, "wheel", "--no-deps", "-q", "-w", str(wheels), str(sources)], timeout=600, env=reproducible
    )
    assert built.returncode == 0, f"pip wheel failed:\n{built.stderr}"
    # Dependencies published only as source (pure Python, e.g. pysodium) are built as wheels here.
    pure = _run([*pip, "wheel", "--no-deps", "-q", "-w", str(wheels), *SOURCE_ONLY], timeout=600)
    assert pure.returncode == 0, f"pip wheel of the source-only dependencies failed:\n{pure.stderr}"
    machine = platform.machine()
    target = ["--only-binary=:all:", "--implementation", "cp", "--python-version", IMAGE_PYTHON]
    target += ["--platform", f"manylinux_2_36_{machine}", "--platform", f"manylinux2014_{machine}"]
    target += ["--platform", f"linux_{machine}"]  # the project's own wheel (compiled ring kernel)
    project = [str(wheel) for wheel in wheels.glob("mpc_service-*.whl")]
    local = ["--find-links", str(wheels)]
    downloaded = _run([*pip, "download", "-q", "-d", str(wheels), *local, *target, *project], timeout=600)
    assert downloaded.returncode == 0, f"pip download of the dependencies failed:\n{downloaded.stderr}"
    return context


class Compose:
    """``docker-compose`` for one project in one build context, through Podman."""

    def __init__(self, context: Path, docker_host: str) -> None:
        self.context = context
        self.project = f"mpcsmoke{os.getpid()}"
        ports = free_ports(3)
        self.ports = ports
        self.env = {
            **os.environ,
            "DOCKER_HOST": docker_host,
            "DOCKER_BUILDKIT": "0",
            "COMPOSE_DOCKER_CLI_BUILD": "0",
            "BASE_IMAGE": BASE_IMAGE,
            "INSTALL_FROM": "wheels",
            "MPC_IMAGE": IMAGE,
            "MPC_BIND_ADDRESS": "127.0.0.1",
            **{f"MPC_PORT_{index}": str(port) for index, port in enumerate(ports)},
        }
        self.env.pop("COMPOSE_FILE", None)
        self.env.pop("COMPOSE_PROJECT_NAME", None)

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run ``docker-compose -p PROJECT ARGS`` in the context.

        ``run`` and ``down`` enable the ``demo`` profile (the demo service, and its
        removal); ``up`` does not, exactly as a user's plain ``docker-compose up``.
        """
        profile = ["--profile", "demo"] if args[0] in {"run", "down"} else []
        command = ["docker-compose", "-p", self.project, *profile, *args]
        completed = _run(command, timeout=timeout, cwd=self.context, env=self.env)
        if args[0] == "up" and completed.returncode and _PODMAN_EXIT_RACE in completed.stderr:
            # Podman reads the cgroup of a one-shot container (certs) that has just
            # exited; compose then reports failure although nothing went wrong. ``up``
            # is idempotent: run it again (a real failure fails again).
            completed = _run(command, timeout=timeout, cwd=self.context, env=self.env)
        return completed

    def check(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Like :meth:`run`, but fail with the output and the containers' logs."""
        completed = self.run(*args, timeout=timeout)
        if completed.returncode != 0:
            pytest.fail(
                f"docker-compose {' '.join(args)} exited {completed.returncode}\n"
                f"stdout:\n{completed.stdout[-3000:]}\nstderr:\n{completed.stderr[-3000:]}\n{self.logs()}"
            )
        return completed

    def logs(self) -> str:
        """The end of every container's log, for failure messages."""
        logs = self.run("logs", "--no-color", "--tail=40", timeout=60)
        return f"--- container logs ---\n{logs.stdout[-6000:]}"

    def container_ids(self) -> list[str]:
        """IDs of the project's running containers."""
        label = f"label=com.docker.compose.project={self.project}"
        listed = _run(["podman", "ps", "-q", "--filter", label, "--filter", "status=running"], timeout=60)
        return listed.stdout.split()

    def inspect(self, service: str, template: str) -> str:
        """``podman inspect --format TEMPLATE`` of a service's first container."""
        name = f"{self.project}_{service}_1"
        return _run(["podman", "inspect", "--format", template, name], timeout=60).stdout.strip()


class HealthChecks:
    """Runs ``podman healthcheck run`` on the project's containers (Podman has no timers here)."""

    def __init__(self, compose: Compose, every: float = 1.5) -> None:
        self.compose = compose
        self.every = every
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="podman-healthchecks", daemon=True)

    def _loop(self) -> None:
        while not self.stopped.wait(self.every):
            for container in self.compose.container_ids():
                _run(["podman", "healthcheck", "run", container], timeout=30)

    def __enter__(self) -> HealthChecks:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(timeout=60)


@pytest.fixture(scope="module")
def project(docker_host: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Compose]:
    """A built, started compose project; ``down -v`` on the way out, whatever happened."""
    compose = Compose(_build_context(tmp_path_factory.mktemp("compose")), docker_host)
    try:
        with HealthChecks(compose):
            compose.check("build", "certs", timeout=900)
            compose.check("up", "-d")
            _wait_healthy(compose)
            yield compose
    finally:
        down = compose.run("down", "-v", "--remove-orphans", timeout=300)
        assert down.returncode == 0, down.stderr


def _wait_healthy(compose: Compose, timeout: float = 180.0) -> None:
    end = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < end:
        states = {node: compose.inspect(node, "{{.State.Health.Status}}") for node in NODES}
        if all(state == "healthy" for state in states.values()):
            return
        time.sleep(1.0)
    pytest.fail(f"nodes not healthy within {timeout:.0f} s: {states}\n{compose.logs()}")


def _readme_error_bound(result: dict[str, Any]) -> np.ndarray:
    """The README's bound: 2^-(f+1) * (|a| + |b| + |x| + |z| + 1) + d * 2^-(2f+2), d = 2."""
    bits = result["fractional_bits"]
    x, z = np.asarray(result["x"]), np.asarray(result["z"])
    magnitude = abs(result["a"]) + abs(result["b"]) + np.abs(x) + np.abs(z) + 1.0
    bound: np.ndarray = 2.0 ** -(bits + 1) * magnitude + 2 * 2.0 ** -(2 * bits + 2)
    return bound


def test_demo_service_predicts_within_the_error_bound(project: Compose) -> None:
    cluster = "/var/lib/mpc/clients/cluster.toml"
    completed = project.check(
        "run", "--rm", "-T", "demo", "demo", "--cluster", cluster, "--records", str(RECORDS), "--json"
    )
    result = json.loads(completed.stdout)
    predictions = np.asarray(result["predictions"])
    x, z = np.asarray(result["x"]), np.asarray(result["z"])
    plaintext = result["a"] * x + result["b"] * z + result["c"]
    assert predictions.shape == (RECORDS,)
    errors = np.abs(predictions - plaintext)
    assert np.all(errors <= _readme_error_bound(result)), errors
    assert result["within_bound"] is True
    assert "fetch the predictions too and was refused: NotFoundError" in completed.stderr, (
        "a bank fetched the owner's output"
    )
    assert "did not consent to (bank-1's income alone) and was refused: PermissionDeniedError" in (
        completed.stderr
    ), "a job the banks did not consent to ran"


def test_demo_service_default_command_prints_the_table(project: Compose) -> None:
    completed = project.check("run", "--rm", "-T", "demo")
    assert "within the fixed-point rounding bound" in completed.stdout, completed.stdout


def test_nodes_run_unprivileged_and_hold_only_their_own_key(project: Compose) -> None:
    for index, node in enumerate(NODES):
        container = f"{project.project}_{node}_1"
        listing = "id -u; ls /var/lib/mpc/node; ls /var/lib/mpc/node/data"
        shown = _run(["podman", "exec", container, "sh", "-c", listing], timeout=60)
        assert shown.returncode == 0, shown.stderr
        uid, *files = shown.stdout.split()
        assert uid == "10001"
        # its certificate and key, the CA and cluster file, and its data directory (shares)
        assert sorted(files) == sorted(
            [
                "ca.pem",
                "cluster.toml",
                "data",
                f"server-{index}.key",
                f"server-{index}.pem",
                f"server-{index}",
            ]
        )


def test_outside_clients_reach_the_published_ports(project: Compose, tmp_path: Path) -> None:
    # The guide's export command, verbatim apart from the project name.
    export = (
        f"docker-compose -p {project.project} --profile demo run --rm --no-deps -T --entrypoint tar demo "
        f"-C /var/lib/mpc/clients -cf - . | tar -x --no-same-owner -C {tmp_path}"
    )
    exported = _run(
        ["bash", "-o", "pipefail", "-c", export], timeout=120, cwd=project.context, env=project.env
    )
    assert exported.returncode == 0, exported.stderr
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == sorted(
        ["ca.pem", "cluster.toml", "cluster-host.toml"]
        + [f"{name}{suffix}" for name in ("model-owner", "bank-1", "bank-2") for suffix in (".pem", ".key")]
    ), names  # no ca.key, no server key
    client = ["--cert", str(tmp_path / "bank-1.pem"), "--key", str(tmp_path / "bank-1.key")]
    cluster = ["--cluster", str(tmp_path / "cluster-host.toml")]
    status = _run([sys.executable, "-m", "mpc_cli", "status", *cluster, *client, "--json"], timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    servers = json.loads(status.stdout)["servers"]
    assert [s["address"] for s in servers] == [f"127.0.0.1:{port}" for port in project.ports]
    assert all(s["ready"] and s["health"] == "SERVING" for s in servers), servers


def test_certs_service_is_idempotent(project: Compose) -> None:
    project.check("up", "-d")
    assert not project.inspect("demo", "{{.Id}}"), "up started the demo outside its profile"
    logs = project.check("logs", "--no-color", "certs").stdout
    assert logs.count("(created)") == 7, logs  # CA, three servers, three clients: once
    assert logs.count("(kept)") >= 7, logs
    _wait_healthy(project)


def test_nodes_drain_and_exit_cleanly_on_sigterm(project: Compose) -> None:
    project.check("stop", *NODES)
    for node in NODES:
        assert project.inspect(node, "{{.State.ExitCode}}") == "0", project.logs()
    logs = project.check("logs", "--no-color", *NODES).stdout
    assert logs.count("shutting down") == len(NODES), logs
