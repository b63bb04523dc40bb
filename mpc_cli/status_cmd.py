"""``mpc status``: the health of a cluster's three servers, as a table or JSON.

For every server of a cluster file it asks, over mutual TLS with a client
certificate and concurrently, ``grpc.health.v1`` (SERVING once both peers
are connected) and ``GetServerInfo``: identity, versions, readiness, the
state of each peer link (down when it is not connected, or when the peer
made no progress on it within the link's keepalive, e.g. a frozen
process; the servers a peer is reported down by are listed), and whether
it can store shares (``storage``, with the problems an operator must fix,
such as a full disk or damaged share files). Every call has a deadline: a
server that cannot be reached is reported as unreachable after at most
twice ``--timeout`` seconds, never waited for indefinitely. The exit code
is 0 only if all three servers are reachable and ready and report no
storage problem.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc

from mpc_cli.probe_cmd import DEFAULT_TIMEOUT, health_status, open_channel, rpc_failure
from mpc_core.cluster import ClusterConfig, ServerEndpoint
from mpc_core.errors import ConfigError
from mpc_core.identity import Role
from mpc_proto.v1 import client_service_pb2 as pb
from mpc_proto.v1 import client_service_pb2_grpc as pb_grpc
from mpc_proto.v1 import types_pb2
from mpc_server.config import load_cluster
from mpc_server.transport import tls

EXIT_HEALTHY = 0
EXIT_UNHEALTHY = 1
_COLUMNS = (
    "identity", "address", "reachable", "health", "version", "protocol", "ring", "readiness", "peers",
)  # fmt: skip
_RING_NAMES = {types_pb2.RING_Z2_64: "Z_2^64", types_pb2.RING_Z2_128: "Z_2^128"}


@dataclass
class ServerStatus:
    """What one server said about itself (or why it said nothing)."""

    identity: str
    address: str
    reachable: bool = False
    health: str | None = None
    reported_identity: str | None = None
    software_version: str | None = None
    protocol_version: int | None = None
    ring: str | None = None
    """The ring the server computes in, e.g. ``Z_2^128``."""
    fractional_bits: int | None = None
    """The cluster's default scale for new datasets."""
    readiness: str | None = None
    peers: dict[str, bool] = field(default_factory=dict)
    programs: list[dict[str, Any]] = field(default_factory=list)
    """The programs a job can run: name, summary, roles, parameters, outputs."""
    storage: str | None = None
    """``OK``, ``PROBLEM`` (see ``storage_problems``), or None if the server does not say."""
    storage_problems: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        """Reachable, the expected identity, READY and both peers connected."""
        return (
            self.reachable
            and self.reported_identity == self.identity
            and self.readiness == "READY"
            and len(self.peers) == 2
            and all(self.peers.values())
        )

    @property
    def healthy(self) -> bool:
        """Ready, and no storage problem reported."""
        return self.ready and self.storage != "PROBLEM"

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dictionary, including the derived ``ready`` and ``healthy``."""
        return {**asdict(self), "ready": self.ready, "healthy": self.healthy}


def register(commands: Any) -> None:
    """Add the ``status`` subcommand."""
    parser = commands.add_parser(
        "status",
        help="show whether the three servers are reachable, ready and connected to their peers",
        description=(
            "Ask each server of the cluster file, over mutual TLS with a client certificate, for "
            "its health (grpc.health.v1), identity, software and protocol version, readiness and "
            "peer links and storage (full disk, failed writes, damaged share files). Prints a table "
            "(or JSON with --json). Unreachable servers are shown as such after at most twice "
            "--timeout seconds. Exit code 0 only if all three servers are reachable and ready and "
            "report no storage problem, 1 otherwise."
        ),
    )
    parser.add_argument(
        "--cluster", type=Path, required=True, help="cluster file with the addresses to reach the servers at"
    )
    parser.add_argument("--cert", type=Path, required=True, help="client certificate (PEM)")
    parser.add_argument("--key", type=Path, required=True, help="the client certificate's private key")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"deadline of each call in seconds (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.set_defaults(run=run)


def _readiness_name(value: pb.ReadinessState.ValueType) -> str:
    return pb.ReadinessState.Name(value).removeprefix("READINESS_STATE_")


def query_server(endpoint: ServerEndpoint, material: tls.TlsMaterial, timeout: float) -> ServerStatus:
    """Ask one server for its health and its server info; never raises for RPC failures."""
    status = ServerStatus(endpoint.identity, endpoint.address)
    with open_channel(endpoint.address, endpoint.identity, material) as channel:
        try:
            status.health = health_status(channel, timeout)
            status.reachable = True
        except grpc.RpcError as exc:
            status.errors.append(f"health: {rpc_failure(exc)}")
            return status
        try:
            info = pb_grpc.ClientServiceStub(channel).GetServerInfo(
                pb.GetServerInfoRequest(), timeout=timeout
            )
        except grpc.RpcError as exc:
            status.errors.append(f"server info: {rpc_failure(exc)}")
            return status
    status.reported_identity = info.identity
    status.software_version = info.software_version
    status.protocol_version = info.protocol_version
    status.ring = _RING_NAMES.get(info.ring, "unknown")
    status.fractional_bits = info.fractional_bits
    status.readiness = _readiness_name(info.readiness)
    status.peers = {peer.identity: peer.connected for peer in info.peers}
    status.programs = [_program(p) for p in info.programs]
    if info.storage.state != pb.STORAGE_STATE_UNSPECIFIED:
        status.storage = pb.StorageState.Name(info.storage.state).removeprefix("STORAGE_STATE_")
        status.storage_problems = list(info.storage.problems)
    if info.identity != endpoint.identity:
        status.errors.append(f"reports identity {info.identity!r}, expected {endpoint.identity!r}")
    return status


def _program(info: pb.ProgramInfo) -> dict[str, Any]:
    parameters = []
    for p in info.parameters:
        entry: dict[str, Any] = {
            "name": p.name,
            "type": pb.ParameterType.Name(p.type).removeprefix("PARAMETER_TYPE_").lower(),
        }
        if p.HasField("default"):
            kind = p.default.WhichOneof("value")
            entry["default"] = getattr(p.default, kind) if kind else None
        entry["summary"] = p.summary
        parameters.append(entry)
    return {
        "name": info.name,
        "summary": info.summary,
        "roles": [{"name": r.name, "min": r.min_count, "max": r.max_count} for r in info.roles],
        "parameters": parameters,
        "outputs": list(info.outputs),
    }


def describe_program(program: dict[str, Any]) -> str:
    """One line: ``name(role, role..; parameter=default ..) -> outputs: summary``."""
    roles = ", ".join(
        r["name"] + ("" if (r["min"], r["max"]) == (1, 1) else f"[{r['min']}..{r['max']}]")
        for r in program["roles"]
    )
    params = ", ".join(f"{p['name']}={p.get('default', '?')}" for p in program["parameters"])
    signature = roles + (f"; {params}" if params else "")
    return f"  {program['name']}({signature}) -> {', '.join(program['outputs'])}: {program['summary']}"


def collect(cluster: ClusterConfig, material: tls.TlsMaterial, timeout: float) -> list[ServerStatus]:
    """Query the three servers concurrently, in party order."""
    with ThreadPoolExecutor(max_workers=len(cluster.servers), thread_name_prefix="mpc-status") as pool:
        futures = [pool.submit(query_server, endpoint, material, timeout) for endpoint in cluster.servers]
        return [future.result() for future in futures]


def _row(status: ServerStatus) -> tuple[str, ...]:
    peers = ", ".join(f"{name} {'up' if up else 'down'}" for name, up in status.peers.items())
    return (
        status.identity,
        status.address,
        "yes" if status.reachable else "NO",
        (status.health or "-") + (", storage PROBLEM" if status.storage == "PROBLEM" else ""),
        status.software_version or "-",
        "-" if status.protocol_version is None else str(status.protocol_version),
        "-" if status.ring is None else f"{status.ring}, f={status.fractional_bits}",
        status.readiness or "-",
        peers or "-",
    )


def peers_down(statuses: list[ServerStatus]) -> dict[str, list[str]]:
    """For each server that another server reports down (not connected, or frozen): who reports it."""
    down: dict[str, list[str]] = {}
    for status in statuses:
        for peer, up in status.peers.items():
            if not up:
                down.setdefault(peer, []).append(status.identity)
    return down


def render_table(statuses: list[ServerStatus]) -> str:
    """A fixed-width table, one row per server, then any errors."""
    rows = [_COLUMNS, *(_row(status) for status in statuses)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(_COLUMNS))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines += [f"{status.identity}: {error}" for status in statuses for error in status.errors]
    lines += [
        f"{peer}: reported down by {', '.join(reporters)} (no connection, or no progress on the link)"
        for peer, reporters in peers_down(statuses).items()
    ]
    lines += [f"{s.identity}: storage: {problem}" for s in statuses for problem in s.storage_problems]
    healthy = sum(status.ready for status in statuses)
    lines.append(f"{healthy} of {len(statuses)} servers reachable and ready")
    troubled = [status.identity for status in statuses if status.storage == "PROBLEM"]
    if troubled:
        lines.append(f"storage problems on {', '.join(troubled)}")
    listed = next((status.programs for status in statuses if status.programs), [])
    if listed:
        lines += ["programs:", *(describe_program(program) for program in listed)]
    return "\n".join(lines)


def load_client_material(cert: Path, key: Path, ca: Path) -> tls.TlsMaterial:
    """Read and check a client certificate against the cluster CA."""
    material = tls.load_tls(cert, key, ca)
    if material.info.principal.role is not Role.CLIENT:
        raise ConfigError(
            f"{cert} is a {material.info.principal.role.value} certificate; "
            "mpc status needs a client certificate"
        )
    return material


def run(args: argparse.Namespace) -> int:
    """Print the cluster's status; 0 only if every server is reachable and ready."""
    if args.timeout <= 0:
        raise ConfigError("--timeout must be positive")
    cluster = load_cluster(args.cluster)
    material = load_client_material(args.cert, args.key, cluster.ca_path)
    statuses = collect(cluster, material, args.timeout)
    healthy = all(status.healthy for status in statuses)
    if args.json:
        print(
            json.dumps(
                {
                    "healthy": healthy,
                    "servers": [status.as_json() for status in statuses],
                    "peers_down": peers_down(statuses),
                },
                indent=2,
            )
        )
    else:
        print(render_table(statuses))
    return EXIT_HEALTHY if healthy else EXIT_UNHEALTHY
