"""Entry point of the ``mpc`` command: parses arguments, dispatches subcommands."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from mpc_cli import bench_cmd, certs_cmd, data_cmds, demo_cmd, probe_cmd, server_cmd, status_cmd
from mpc_core.errors import MpcError
from mpc_core.version import SOFTWARE_VERSION

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    """The ``mpc`` parser with one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="mpc",
        description="Three-server secure multi-party computation over replicated secret shares.",
    )
    parser.add_argument("--version", action="version", version=f"mpc {SOFTWARE_VERSION}")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log verbosity (default INFO)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (server_cmd, certs_cmd, demo_cmd, bench_cmd, status_cmd, probe_cmd, data_cmds):
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``mpc`` command; returns the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        result: int = args.run(args)
        return result
    except MpcError as exc:
        print(f"mpc {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"mpc {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
