"""``mpc probe``: is one server up and ready? A health check for containers.

It calls ``grpc.health.v1.Health/Check`` of one server over mutual TLS and
exits 0 only if the answer is SERVING, which a server reports once both of
its peers are connected and verified. The health service accepts every
certificate the cluster CA signed, so a node can probe itself with its own
server certificate. Every argument is a single word (container engines such
as Podman 4 split health-check commands on spaces), and every call has a
deadline, so a probe never hangs.

The channel helpers here are shared with ``mpc status``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mpc_core.errors import ConfigError
from mpc_server.config import load_cluster
from mpc_server.transport import tls

EXIT_SERVING = 0
EXIT_NOT_SERVING = 1
DEFAULT_TIMEOUT = 3.0
SERVING = "SERVING"


@dataclass(frozen=True)
class ProbeTarget:
    """Where to probe and with which certificate."""

    identity: str
    address: str
    ca: Path
    cert: Path
    key: Path


def register(commands: Any) -> None:
    """Add the ``probe`` subcommand."""
    parser = commands.add_parser(
        "probe",
        help="exit 0 if one server answers SERVING on grpc.health.v1 (for health checks)",
        description=(
            "Check one server's grpc.health.v1 status over mutual TLS and exit 0 only if it is "
            "SERVING (up, and both peers connected and verified); exit 1 otherwise, also when "
            "the server is unreachable or does not answer within --timeout. Any certificate "
            "signed by the cluster CA may be used, e.g. the server's own. With --cluster, the "
            "address, CA and certificate default to the cluster file's entries for --identity "
            "(the same defaults as 'mpc server')."
        ),
    )
    parser.add_argument("--identity", required=True, help="the server's identity, e.g. server-0")
    parser.add_argument("--cluster", type=Path, help="cluster file to take defaults from")
    parser.add_argument(
        "--address", help="host:port to connect to (default: the cluster file's address), e.g. 127.0.0.1:7100"
    )
    parser.add_argument("--ca", type=Path, help="CA certificate (default: the cluster file's CA)")
    parser.add_argument("--cert", type=Path, help="certificate to present (default: <CA dir>/<identity>.pem)")
    parser.add_argument("--key", type=Path, help="its private key (default: <CA dir>/<identity>.key)")
    parser.add_argument(
        "--service",
        default="",
        help="health service name to check (default: the whole server)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"deadline of the check in seconds (default {DEFAULT_TIMEOUT:g})",
    )
    parser.set_defaults(run=run)


def resolve_target(args: argparse.Namespace) -> ProbeTarget:
    """Fill in what the arguments leave out from the cluster file."""
    if args.cluster is None:
        missing = [flag for flag in ("address", "ca", "cert", "key") if getattr(args, flag) is None]
        if missing:
            raise ConfigError("without --cluster, give " + ", ".join(f"--{flag}" for flag in missing))
        return ProbeTarget(args.identity, args.address, args.ca, args.cert, args.key)
    cluster = load_cluster(args.cluster)
    endpoint = cluster.by_identity(args.identity)
    cert_dir = cluster.ca_path.parent
    return ProbeTarget(
        identity=args.identity,
        address=args.address or endpoint.address,
        ca=args.ca or cluster.ca_path,
        cert=args.cert or cert_dir / f"{args.identity}.pem",
        key=args.key or cert_dir / f"{args.identity}.key",
    )


def open_channel(address: str, identity: str, material: tls.TlsMaterial) -> grpc.Channel:
    """A mutual-TLS channel that verifies the server as ``identity``, not by its address."""
    return grpc.secure_channel(
        address, tls.channel_credentials(material), options=tls.channel_options(identity)
    )


def health_status(channel: grpc.Channel, timeout: float, service: str = "") -> str:
    """The health status name (``SERVING``, ``NOT_SERVING``, ...) of ``service``.

    Raises:
        grpc.RpcError: the server was not reached or refused the call.
    """
    stub = health_pb2_grpc.HealthStub(channel)
    reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return name


def rpc_failure(error: grpc.RpcError) -> str:
    """A one-line description of a failed call: status code and details."""
    if isinstance(error, grpc.Call):
        code = error.code()
        details = (error.details() or "").splitlines()
        return f"{code.name}: {details[0] if details else code.name}"
    return str(error)


def run(args: argparse.Namespace) -> int:
    """Probe the server; print one line and return 0 only if it is SERVING."""
    if args.timeout <= 0:
        raise ConfigError("--timeout must be positive")
    target = resolve_target(args)
    material = tls.load_tls(target.cert, target.key, target.ca)
    with open_channel(target.address, target.identity, material) as channel:
        try:
            status = health_status(channel, args.timeout, args.service)
        except grpc.RpcError as exc:
            print(f"{target.identity} {target.address} unreachable ({rpc_failure(exc)})")
            return EXIT_NOT_SERVING
    print(f"{target.identity} {target.address} {status}")
    return EXIT_SERVING if status == SERVING else EXIT_NOT_SERVING
