"""``mpc certs``: create the cluster CA, server and client certificates."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mpc_cli.certs import DEFAULT_DAYS, CertificateAuthority, Issued
from mpc_core.errors import ConfigError, InvalidArgumentError
from mpc_core.identity import Principal, Role, validate_name
from mpc_server.config import load_cluster

DEFAULT_SERVERS = ("server-0", "server-1", "server-2")
DEFAULT_HOSTS = ("localhost", "127.0.0.1")


def register(commands: Any) -> None:
    """Add the ``certs`` subcommand."""
    parser = commands.add_parser(
        "certs",
        help="create a CA, server and client certificates",
        description=(
            "Create (or complete) a cluster's certificates in one directory: ca.pem/ca.key, "
            "<server>.pem/.key for the three servers and <client>.pem/.key for each --client. "
            "Existing valid files are kept, so the command is safe to re-run. Private keys "
            "are written with mode 0600; distribute ca.pem to everyone and each key only to "
            "its holder."
        ),
    )
    parser.add_argument(
        "--cluster", type=Path, help="take server identities and host names from this cluster file"
    )
    parser.add_argument(
        "--out", type=Path, help="directory (default: the cluster file's CA directory, else ./certs)"
    )
    parser.add_argument(
        "--client",
        action="append",
        default=[],
        metavar="NAME",
        help="issue a client certificate (repeatable)",
    )
    parser.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="HOST",
        help="extra DNS name or IP for every server certificate (repeatable)",
    )
    parser.add_argument(
        "--days",
        type=int,
        default=DEFAULT_DAYS,
        help=f"validity of new leaf certificates (default {DEFAULT_DAYS})",
    )
    parser.add_argument("--force", action="store_true", help="replace existing CA and certificates")
    parser.set_defaults(run=run)


def _servers(args: argparse.Namespace) -> tuple[list[tuple[str, list[str]]], Path]:
    extra = list(args.host)
    if args.cluster is None:
        hosts = [*DEFAULT_HOSTS, *extra]
        return [(name, hosts) for name in DEFAULT_SERVERS], args.out or Path("certs")
    cluster = load_cluster(args.cluster)
    servers = [(s.identity, [s.host, *DEFAULT_HOSTS, *extra]) for s in cluster.servers]
    return servers, args.out or cluster.ca_path.parent


def issue_all(args: argparse.Namespace) -> tuple[CertificateAuthority, list[tuple[Role, Issued]]]:
    """Create or complete every certificate the arguments ask for."""
    if args.days <= 0:
        raise ConfigError("--days must be positive")
    servers, out = _servers(args)
    try:
        clients = [validate_name(name, "client identity") for name in args.client]
    except InvalidArgumentError as exc:
        raise ConfigError(str(exc)) from None
    clashes = set(clients) & {name for name, _ in servers}
    if clashes:
        raise ConfigError(f"client identities may not reuse server names: {', '.join(sorted(clashes))}")
    ca = CertificateAuthority(out, force=args.force, days=args.days)
    issued = [(Role.SERVER, ca.ensure(Principal(Role.SERVER, name), hosts)) for name, hosts in servers]
    issued += [(Role.CLIENT, ca.ensure(Principal(Role.CLIENT, name))) for name in clients]
    return ca, issued


def run(args: argparse.Namespace) -> int:
    """Issue the certificates and print a summary with expiry dates."""
    ca, issued = issue_all(args)
    state = "created" if ca.created else "kept"
    ca_expiry = ca.cert.not_valid_after_utc
    print(f"CA        {ca.cert_path}  expires {ca_expiry:%Y-%m-%d}  ({state})")
    for role, item in issued:
        status = "created" if item.created else "kept"
        print(f"{role.value:<9} {item.cert_path}  expires {item.not_after:%Y-%m-%d}  ({status})")
    print(f"private keys (*.key, mode 0600) are in {ca.directory}; keep ca.key offline")
    return 0
