"""``mpc bench``: side-by-side benchmarks against CrypTen and MPyC."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path
from typing import Any

SYSTEMS = ("ours", "crypten", "mpyc")
SUITES = ("core", "training", "alignment", "memory")
KINDS = (
    "multiply",
    "linreg",
    "dot",
    "upload",
    "stats",
    "fit-ridge",
    "fit-ols",
    "decide",
    "compare",
    "logistic",
    "align",
    "predict-large",
)


PARAGRAPHS = (
    "Start a real three-server cluster over mutual TLS on loopback and measure "
    "workloads on it: median and min-max over repetitions, bytes between servers and "
    "between clients and servers (the servers' own counters), rounds and peak RSS per "
    "server. The same workloads run on CrypTen and MPyC, each in a virtualenv created "
    "on first use (in $MPC_BENCH_HOME, default ~/.cache/mpc-bench), and the table shows "
    "the ratios. Progress goes to stderr.",
    "Suites (--suite). core, the default (about 10 minutes on 2 cores): multiply, "
    "linreg (end to end with uploads from three owner processes), dot and upload. "
    "training (about 5 minutes): stats.summary, linear_regression.fit (ridge l2 = 1 "
    "and OLS), linear_regression.decide, comparisons per second (compare: only the job "
    "timed) and logistic_regression.fit at 10^5 and 10^6 rows from shares already on "
    "the servers, each next to CrypTen running the same algorithm with the iteration "
    "counts our plan chose. alignment (5 to 12 minutes): two banks' customer ids, 10^5 "
    "and 10^6 per bank, tokens + keyed upload + join + prediction end to end through "
    "the SDK (ours only: no peer has the protocol). memory (about a minute): "
    "linear_regression.predict over 10^6 and 10^7 rows x 10 features from seeded "
    "uploads, with each server's peak RSS (ours only). all: the four in turn. --quick "
    "runs small sizes of the chosen suite.",
)
DESCRIPTION = "\n\n".join(textwrap.fill(paragraph, 88) for paragraph in PARAGRAPHS)
"""``mpc bench --help``: what it measures, then the suites."""


def register(commands: Any) -> None:
    """Add the ``bench`` subcommand."""
    parser = commands.add_parser(
        "bench",
        help="benchmark a local 3-server cluster side by side with CrypTen and MPyC",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes only (about a minute per suite)")
    parser.add_argument(
        "--suite",
        choices=(*SUITES, "all"),
        default="core",
        help="which rows to run: core (default), training, alignment, memory or all",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated workloads of the suite to keep, each KIND or KIND:N "
        "(e.g. fit-ols:1e6,decide); kinds: " + ", ".join(KINDS),
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument(
        "--render",
        metavar="FILE",
        type=Path,
        help="measure nothing: print the table (rows, details, targets) of a run saved with --json",
    )
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help=f"comma-separated systems to run (default {','.join(SYSTEMS)})",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark."""
    from mpc_bench.main import main, render  # noqa: PLC0415 - the benchmark is only loaded when asked for

    if args.render is not None:
        try:
            rendered: int = render(args.render)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SystemExit(f"mpc bench: cannot render {args.render}: {exc}") from None
        return rendered
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown or "ours" not in systems:
        raise SystemExit(
            f"mpc bench: --systems must include ours and only {', '.join(SYSTEMS)}; got {args.systems}"
        )
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    try:
        status: int = main(args.quick, args.json, systems, args.suite, only)
    except ValueError as exc:
        raise SystemExit(f"mpc bench: {exc}") from None
    return status
