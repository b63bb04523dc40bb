"""``mpc certs``: create the cluster CA, server and client certificates; ``mpc certs revoke``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mpc_cli.certs import (
    CA_NAME,
    DEFAULT_DAYS,
    REVOKED_NAME,
    CertificateAuthority,
    Issued,
    ensure_revocation_list,
    read_revocation_list,
    revoke,
)
from mpc_core.certificates import load_pem
from mpc_core.cluster import ClusterConfig
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
            "its holder. Certificates on the cluster file's revocation list ('revoked') are "
            "issued anew. `mpc certs revoke NAME` revokes a certificate."
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
    actions = parser.add_subparsers(dest="certs_action", metavar="ACTION")
    _register_revoke(actions)


def _register_revoke(actions: Any) -> None:
    parser = actions.add_parser(
        "revoke",
        help="put a certificate on the cluster's revocation list",
        description=(
            "Add the current certificate of identity NAME (<dir>/NAME.pem), or the certificate "
            "file given with --cert, to the revocation list: its SHA-256 fingerprint and serial "
            'number. The list is the file the cluster file names with revoked = "..." '
            "(default: revoked.txt in the CA directory). Copy it to every server (and client) "
            "where the cluster file points; servers re-read it within a second, without a "
            "restart, and refuse every call, also on connections already open, made with a "
            "revoked certificate (UNAUTHENTICATED). A revoked certificate counts as missing "
            "for `mpc certs`, so re-running it issues NAME a new key and certificate."
        ),
    )
    parser.add_argument("name", nargs="?", metavar="NAME", help="the identity whose certificate to revoke")
    parser.add_argument(
        "--cert", type=Path, help="revoke this certificate file instead (e.g. a kept old one)"
    )
    parser.add_argument(
        "--cluster", type=Path, help="take the CA directory and the list from this cluster file"
    )
    parser.add_argument(
        "--out", type=Path, help="the CA directory (default: the cluster file's, else ./certs)"
    )
    parser.add_argument("--list", type=Path, help="the revocation list file (default: see above)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.set_defaults(run=run_revoke)


def _servers(args: argparse.Namespace) -> tuple[list[tuple[str, list[str]]], Path, ClusterConfig | None]:
    extra = list(args.host)
    if args.cluster is None:
        hosts = [*DEFAULT_HOSTS, *extra]
        return [(name, hosts) for name in DEFAULT_SERVERS], args.out or Path("certs"), None
    cluster = load_cluster(args.cluster)
    servers = [(s.identity, [s.host, *DEFAULT_HOSTS, *extra]) for s in cluster.servers]
    return servers, args.out or cluster.ca_path.parent, cluster


def issue_all(args: argparse.Namespace) -> tuple[CertificateAuthority, list[tuple[Role, Issued]]]:
    """Create or complete every certificate the arguments ask for."""
    if args.days <= 0:
        raise ConfigError("--days must be positive")
    servers, out, cluster = _servers(args)
    try:
        clients = [validate_name(name, "client identity") for name in args.client]
    except InvalidArgumentError as exc:
        raise ConfigError(str(exc)) from None
    clashes = set(clients) & {name for name, _ in servers}
    if clashes:
        raise ConfigError(f"client identities may not reuse server names: {', '.join(sorted(clashes))}")
    revoked = cluster.revoked_path if cluster is not None else None
    if revoked is not None:
        ensure_revocation_list(revoked)  # the servers refuse to start without the file it names
    ca = CertificateAuthority(out, force=args.force, days=args.days, revoked=revoked)
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


def _revocation_target(args: argparse.Namespace) -> tuple[Path, Path, bool]:
    """The CA directory, the list file, and whether servers will read that list."""
    cluster = load_cluster(args.cluster) if args.cluster is not None else None
    directory = args.out or (cluster.ca_path.parent if cluster is not None else Path("certs"))
    named = cluster.revoked_path if cluster is not None else None
    if args.list is not None:
        return directory, args.list, named is not None and args.list.resolve() == named.resolve()
    if named is not None:
        return directory, named, True
    return directory, directory / REVOKED_NAME, False


def _count_entries(path: Path) -> int:
    """Lines of the list that revoke something (a certificate each, as `revoke` writes them)."""
    read_revocation_list(path)  # well-formed
    return sum(1 for line in path.read_text().splitlines() if line.split("#", 1)[0].strip())


def run_revoke(args: argparse.Namespace) -> int:
    """Add a certificate to the revocation list and say what to do next."""
    if (args.name is None) == (args.cert is None):
        raise ConfigError("name the identity to revoke, or give --cert FILE (not both)")
    directory, list_path, named = _revocation_target(args)
    if args.name is not None:
        try:
            validate_name(args.name, "identity")
        except InvalidArgumentError as exc:
            raise ConfigError(str(exc)) from None
        if args.name == CA_NAME:
            raise ConfigError(
                "the CA certificate cannot be revoked: make a new CA instead (deploy/README.md)"
            )
    cert_path = args.cert if args.cert is not None else directory / f"{args.name}.pem"
    ca_path = directory / f"{CA_NAME}.pem"
    try:
        ca_pem = ca_path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read CA certificate {ca_path}: {exc.strerror}") from None
    info, added = revoke(cert_path, list_path, load_pem(ca_pem, f"CA certificate {ca_path}"))
    entries = _count_entries(list_path)
    if args.json:
        document = {
            "identity": info.principal.name,
            "uri": info.principal.uri,
            "certificate": str(cert_path),
            "serial": f"{info.serial:x}",
            "sha256": info.fingerprint,
            "not_after": info.not_after.isoformat(),
            "list": str(list_path),
            "added": added,
            "revoked_certificates": entries,
            "named_in_cluster_file": named,
        }
        print(json.dumps(document, indent=2))
    else:
        state = "revoked" if added else "was already revoked"
        print(f"{info.principal.uri} {state}: serial {info.serial:x}, sha256 {info.fingerprint}")
        print(f"revocation list {list_path}: {entries} revoked certificates")
        print(
            "copy it to every server (and client) where its cluster file points; "
            "servers apply it within a second"
        )
        if args.name is not None:
            print(f"re-run `mpc certs ... --client {args.name}` (or the server's) to issue a new certificate")
    if not named:
        print(
            f"warning: no cluster file given names {list_path}; servers read a list only if their "
            'cluster file says revoked = "<its path, relative to the cluster file>"',
            file=sys.stderr,
        )
    return 0
