"""``mpc bench``: side-by-side benchmarks against CrypTen and MPyC."""

from __future__ import annotations

import argparse
from typing import Any

SYSTEMS = ("ours", "crypten", "mpyc")


def register(commands: Any) -> None:
    """Add the ``bench`` subcommand."""
    parser = commands.add_parser(
        "bench",
        help="benchmark a local 3-server cluster side by side with CrypTen and MPyC",
        description=(
            "Start a real three-server cluster over mutual TLS on loopback and measure "
            "multiply, linreg (end to end with uploads from three owner processes), dot and "
            "upload workloads: median and min-max over repetitions, bytes between servers and "
            "between clients and servers (the servers' own counters), rounds and peak RSS per "
            "server. The same workloads run on CrypTen and MPyC, each in a virtualenv created "
            "on first use (in $MPC_BENCH_HOME, default ~/.cache/mpc-bench), and the table shows "
            "the ratios. Progress goes to stderr. The full run takes about 10 minutes on 2 cores."
        ),
    )
    parser.add_argument("--quick", action="store_true", help="small sizes only (about a minute)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help=f"comma-separated systems to run (default {','.join(SYSTEMS)})",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark."""
    from mpc_bench.main import main  # noqa: PLC0415 - the benchmark is only loaded when asked for

    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown or "ours" not in systems:
        raise SystemExit(
            f"mpc bench: --systems must include ours and only {', '.join(SYSTEMS)}; got {args.systems}"
        )
    status: int = main(args.quick, args.json, systems)
    return status
