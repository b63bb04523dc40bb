"""``mpc datasets``, ``mpc grants``, ``mpc jobs``, ``mpc audit``: an owner's view of its data.

Each command connects with the caller's client certificate, asks all three
servers (the SDK's catalog calls) and prints a table for people or, with
``--json``, one JSON object for programs. Where the three servers disagree
(a grant that reached only two of them, a job one of them did not record)
the disagreement is printed after the table and the exit code is 1.
"""

from __future__ import annotations

import argparse
import enum
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from mpc_client import DatasetInfo, DatasetRef, Grant, GrantScope, JobRecord, Listing, MpcClient
from mpc_core.errors import ConfigError

EXIT_AGREED = 0
EXIT_DISAGREED = 1
DEFAULT_TIMEOUT = 30.0


def register(commands: Any) -> None:
    """Add the ``datasets``, ``grants``, ``jobs`` and ``audit`` subcommands."""
    datasets = _command(commands, "datasets", "list my datasets with their versions and grants")
    datasets.set_defaults(run=_run(_datasets))
    jobs = _command(commands, "jobs", "list the jobs I submitted or receive, with status and error")
    jobs.add_argument("--limit", type=int, default=0, help="only the newest N (default: up to 10000)")
    jobs.set_defaults(run=_run(_jobs))
    audit = _command(
        commands, "audit", "show every job that read my datasets (the audit trail of all three servers)"
    )
    audit.add_argument("name", nargs="?", default="", help="one of my datasets (default: all of them)")
    audit.add_argument(
        "--limit", type=int, default=0, help="only the newest N records (default: up to 10000)"
    )
    audit.set_defaults(run=_run(_audit))
    _register_grants(commands)


def _command(commands: Any, name: str, summary: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=summary,
        description=f"{summary[0].upper()}{summary[1:]}. Asks all three servers over mutual TLS and "
        "reports any disagreement between them (exit code 1).",
    )
    _connection_options(parser)
    return parser


def _connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cluster", type=Path, required=True, help="cluster file naming the three servers")
    parser.add_argument("--cert", type=Path, required=True, help="my client certificate (PEM)")
    parser.add_argument("--key", type=Path, required=True, help="its private key")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"deadline in seconds (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def _register_grants(commands: Any) -> None:
    grants = commands.add_parser(
        "grants",
        help="list, add or revoke the grants of one of my datasets",
        description="List, add or revoke the grants of one of my datasets on all three servers, "
        "without uploading it again.",
    )
    actions = grants.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="the dataset's grants and their uses")
    _connection_options(listing)
    listing.add_argument("name", help="one of my datasets")
    listing.set_defaults(run=_run(_grants_list))
    add = actions.add_parser(
        "add",
        help="add a grant",
        description="Allow RECEIVER outputs of PROGRAM from jobs using the dataset. By default the "
        "job's other inputs must be my own datasets; --input pins the job's exact inputs (the "
        "safe way to allow a job with other owners' data); --read-access allows any inputs.",
    )
    _connection_options(add)
    add.add_argument("name", help="one of my datasets")
    add.add_argument("--receiver", required=True, help="who gets the outputs")
    add.add_argument("--program", required=True, help="the program, e.g. linear_regression.predict")
    add.add_argument("--role", default="", help="the only role the dataset may play (default: any)")
    add.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="ROLE=DATASET",
        help="pin the job's inputs, in order, one --input each: e.g. --input features=self "
        "--input features=bank-2/debt --input weights=model-owner/weights@VERSION ('self': this dataset)",
    )
    add.add_argument(
        "--read-access",
        action="store_true",
        help="allow ANY other inputs: the receiver can compute anything the program can from the data",
    )
    add.add_argument(
        "--submitter",
        action="append",
        default=[],
        help="who may submit such jobs (repeat; default: receiver)",
    )
    add.add_argument("--max-uses", type=int, default=0, help="at most this many jobs (default: no limit)")
    add.add_argument(
        "--expires-in", type=float, default=0.0, help="seconds until the grant expires (default: never)"
    )
    add.set_defaults(run=_run(_grants_add))
    revoke = actions.add_parser("revoke", help="revoke a grant by its id")
    _connection_options(revoke)
    revoke.add_argument("name", help="one of my datasets")
    revoke.add_argument("grant_id", help="the grant's id (32 hex digits, from `mpc grants list`)")
    revoke.set_defaults(run=_run(_grants_revoke))


Action = Callable[[MpcClient, argparse.Namespace], tuple[dict[str, Any], str, bool]]
"""Runs a command: its JSON object, its text for people, whether the servers agreed."""


def _run(action: Action) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        if args.timeout <= 0:
            raise ConfigError("--timeout must be positive")
        if getattr(args, "limit", 0) < 0:
            raise ConfigError("--limit cannot be negative")
        with MpcClient.connect(args.cluster, args.cert, args.key, timeout=args.timeout) as client:
            document, text, agreed = action(client, args)
        print(json.dumps(_plain(document), indent=2) if args.json else text)
        return EXIT_AGREED if agreed else EXIT_DISAGREED

    return run


def _plain(value: Any) -> Any:
    """``value`` as JSON-ready data: dataclasses as objects, enums by value, tuples as lists."""
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _listing(listing: Listing, key: str, text: str) -> tuple[dict[str, Any], str, bool]:
    lines = [text, *(f"DISAGREEMENT: {line}" for line in listing.disagreements)]
    document = {key: [_plain(item) for item in listing.items], "disagreements": list(listing.disagreements)}
    return document, "\n".join(lines), not listing.disagreements


def _datasets(client: MpcClient, args: argparse.Namespace) -> tuple[dict[str, Any], str, bool]:
    listing = client.datasets()
    columns = ("name", "shape", "version", "created", "ring", "scale", "bound", "grants")
    rows = [
        (
            d.ref.name,
            "x".join(map(str, d.shape)) or "scalar",
            d.ref.version[:12],
            _when(d.created_at),
            f"Z_2^{d.ring_bits}",
            f"2^{d.fractional_bits}",
            "-" if d.magnitude_bits is None else f"2^{d.magnitude_bits}",
            str(len(d.grants)),
        )
        for d in listing.items
    ]
    return _listing(listing, "datasets", table(columns, rows, empty="no datasets"))


def _grants_list(client: MpcClient, args: argparse.Namespace) -> tuple[dict[str, Any], str, bool]:
    listing = client.datasets()
    found: list[DatasetInfo] = [d for d in listing.items if d.ref.name == args.name]
    if not found:
        raise ConfigError(f"you have no dataset named {args.name!r}")
    grants = found[0].grants
    columns = ("grant id", "receiver", "program", "role", "other inputs", "submitters", "uses", "expires")
    rows = [
        (
            s.grant.grant_id,
            s.grant.receiver,
            s.grant.program,
            s.grant.role or "any",
            describe_scope(s.grant),
            ", ".join(s.grant.submitters) or "receiver",
            f"{s.uses}/{s.grant.max_uses}" if s.grant.max_uses else str(s.uses),
            _when(s.grant.expires_at) if s.grant.expires_at else "never",
        )
        for s in grants
    ]
    document = {"dataset": args.name, "grants": [_plain(s) for s in grants]}
    disagreements = [line for line in listing.disagreements if f"/{args.name}" in line]
    text = "\n".join(
        [table(columns, rows, empty="no grants"), *(f"DISAGREEMENT: {d}" for d in disagreements)]
    )
    return {**document, "disagreements": disagreements}, text, not disagreements


def describe_scope(grant: Grant) -> str:
    """What a grant lets the dataset be combined with, in words."""
    if grant.scope is GrantScope.OWN_DATA:
        return "my own datasets only"
    if grant.scope is GrantScope.ANY_INPUTS:
        return "ANY (read access)"
    return "pinned: " + ", ".join(f"{role}={ref}" for role, ref in grant.inputs)


def _grants_add(client: MpcClient, args: argparse.Namespace) -> tuple[dict[str, Any], str, bool]:
    options: dict[str, Any] = {
        "role": args.role,
        "submitters": tuple(args.submitter),
        "max_uses": args.max_uses,
        "expires_at": time.time() + args.expires_in if args.expires_in > 0 else 0.0,
    }
    if args.input and args.read_access:
        raise ConfigError("--input pins the inputs, --read-access allows any: choose one")
    if args.input:
        grant = Grant(
            args.receiver, args.program, scope=GrantScope.PINNED, inputs=_pins(args.input), **options
        )
    elif args.read_access:
        grant = Grant.read_access(args.receiver, args.program, **options)
    else:
        grant = Grant(args.receiver, args.program, **options)
    client.add_grant(args.name, grant)
    text = f"added grant {grant.grant_id} to {client.identity}/{args.name}: {describe_scope(grant)}"
    return {"dataset": args.name, "grant": _plain(grant)}, text, True


def _pins(items: Sequence[str]) -> tuple[tuple[str, str], ...]:
    pins = []
    for item in items:
        role, equals, ref = item.partition("=")
        if not equals or not role or not ref:
            raise ConfigError(
                f"--input {item!r}: expected ROLE=DATASET, e.g. weights=model-owner/weights@VERSION"
            )
        pins.append((role, ref))
    return tuple(pins)


def _grants_revoke(client: MpcClient, args: argparse.Namespace) -> tuple[dict[str, Any], str, bool]:
    client.revoke_grant(args.name, args.grant_id)
    text = f"revoked grant {args.grant_id} of {client.identity}/{args.name} on all three servers"
    return {"dataset": args.name, "revoked": args.grant_id}, text, True


def _jobs(client: MpcClient, args: argparse.Namespace) -> tuple[dict[str, Any], str, bool]:
    return _records(client.jobs(limit=args.limit), "jobs", "no jobs")


def _audit(client: MpcClient, args: argparse.Namespace) -> tuple[dict[str, Any], str, bool]:
    return _records(client.audit(args.name, limit=args.limit), "records", "no job has read these datasets")


def _records(listing: Listing, key: str, empty: str) -> tuple[dict[str, Any], str, bool]:
    columns = ("started", "job id", "submitter", "receiver", "program", "inputs", "status")
    records: list[JobRecord] = list(listing.items)
    rows = [
        (
            _when(r.started_at),
            r.job_id,
            r.submitter,
            r.receiver,
            r.program,
            ", ".join(f"{i.role}={_short(i.dataset)}" for i in r.inputs),
            r.status if not r.error else f"{r.status}: {r.error}",
        )
        for r in records
    ]
    return _listing(listing, key, table(columns, rows, empty=empty))


def _short(ref: DatasetRef) -> str:
    """``owner/name@version`` with the version cut to 12 hex digits, as tables show it."""
    return f"{ref}@{ref.version[:12]}" if ref.version else str(ref)


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp)) if timestamp else "-"


def table(columns: Sequence[str], rows: Sequence[Sequence[str]], *, empty: str) -> str:
    """A fixed-width table with a header, or ``empty`` when there are no rows."""
    if not rows:
        return empty
    widths = [max(len(str(row[i])) for row in (columns, *rows)) for i in range(len(columns))]
    return "\n".join(
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (columns, *rows)
    )
