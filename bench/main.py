"""``mpc bench``: every workload on ours and the peers, in one run, side by side."""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import kernels, report
from .ours import OursRunner
from .peers.envs import PeerUnavailableError
from .peers.runner import CRYPTEN_KINDS, MPYC_KINDS, run_crypten, run_mpyc
from .workloads import Row, Workload, select

PeerRunner = Callable[[Workload, Path, Callable[[str], None], Sequence[str]], Row]
PEERS: dict[str, PeerRunner] = {"crypten": run_crypten, "mpyc": run_mpyc}
PEER_KINDS: dict[str, frozenset[str]] = {"crypten": CRYPTEN_KINDS, "mpyc": MPYC_KINDS}
"""The workloads each peer has a script for (``upload`` and ``align`` have none)."""


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        model = next(
            (
                line.split(":", 1)[1].strip()
                for line in cpuinfo.read_text().splitlines()
                if line.startswith("model name")
            ),
            "",
        )
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": platform.platform(),
    }


def _peer_row(
    name: str, workload: Workload, scratch: Path, progress: Callable[[str], None], options: Sequence[str]
) -> Row:
    try:
        return PEERS[name](workload, scratch, progress, options)
    except PeerUnavailableError as exc:
        progress(f"  {name}: unavailable ({exc})")
        return Row(name, workload.kind, workload.n, workload.d, None, note=f"unavailable: {exc}")


def run(workloads: Sequence[Workload], systems: Sequence[str], progress: Callable[[str], None]) -> list[Row]:
    """Measure every workload on every requested system, interleaved."""
    rows: list[Row] = []
    unavailable: set[str] = set()
    measured: set[tuple[str, int, int]] = set()  # peers have one ring: measure each shape once
    with tempfile.TemporaryDirectory(prefix="mpc-bench-") as scratch:
        ours = OursRunner(Path(scratch), progress)
        for workload in workloads:
            started = time.perf_counter()
            row = ours.run(workload)
            row.extra.setdefault("load_average_1min", round(os.getloadavg()[0], 2))
            rows.append(row)
            progress(
                f"{workload.label:<24} ours    {row.median_s:.4f} s  ({time.perf_counter() - started:.0f} s)"
            )
            shape = (workload.kind, workload.n, workload.d)
            if shape in measured:
                continue
            measured.add(shape)
            options = row.extra.get("peer_options", [])
            for name in systems:
                if name not in PEERS or name in unavailable or workload.kind not in PEER_KINDS[name]:
                    continue
                started = time.perf_counter()
                peer = _peer_row(name, workload, Path(scratch), progress, options)
                peer.extra.setdefault("load_average_1min", round(os.getloadavg()[0], 2))
                rows.append(peer)
                if peer.note.startswith("unavailable"):
                    unavailable.add(name)
                shown = "skipped" if peer.median_s is None else f"{peer.median_s:.4f} s"
                progress(f"{workload.label:<24} {name:<7} {shown}  ({time.perf_counter() - started:.0f} s)")
    return rows


def main(
    quick: bool, as_json: bool, systems: Sequence[str], suite: str = "core", only: Sequence[str] = ()
) -> int:
    """Run and print: a table (default) or one JSON document (which ``render`` turns into the table)."""
    started = time.perf_counter()
    workloads = select(suite, quick, only)
    rows = run(workloads, systems, lambda text: print(text, file=sys.stderr, flush=True))
    choice: list[tuple[str, str, float]] = []
    if any(w.kind == "multiply" for w in workloads):
        print("kernel choice: timing the local product terms ...", file=sys.stderr, flush=True)
        size = 100_000 if quick else 1_000_000
        choice = kernels.measure(size, size, 10)
    document = {
        "machine": machine(),
        "suite": suite,
        "mode": "quick" if quick else "full",
        "seconds": time.perf_counter() - started,
        "load_average": os.getloadavg(),
        "rows": [r.to_json() for r in rows],
        "kernels": [{"operation": op, "implementation": how, "seconds": s} for op, how, s in choice],
        "targets": report.targets(rows),
    }
    if as_json:
        print(json.dumps(document, indent=1))
    else:
        _print_table(document, rows, choice)
    return 0


def render(path: Path) -> int:
    """Print the table of a run saved with ``--json`` (``mpc bench --render FILE``)."""
    document = json.loads(path.read_text())
    rows = [Row(**row) for row in document["rows"]]
    choice = [(k["operation"], k["implementation"], k["seconds"]) for k in document.get("kernels", [])]
    _print_table(document, rows, choice)
    return 0


def _print_table(
    document: dict[str, Any], rows: Sequence[Row], choice: Sequence[tuple[str, str, float]]
) -> None:
    info = document["machine"]
    load = ", ".join(f"{v:.2f}" for v in document["load_average"])
    print(
        f"\nmpc bench (suite {document.get('suite', 'core')}, {document.get('mode', 'full')}) on "
        f"{info['cpu']} x{info['cores']}, Python {info['python']}, {document['seconds']:.0f} s; "
        f"load average at the end {load}\n"
    )
    print(report.table(rows))
    if any(r.workload == "multiply" for r in rows):
        print("\nGrowth with n (ours, multiply):\n")
        print(report.linearity(rows))
    if choice:
        print("\nKernel choice (one server's local work, best of 5):\n")
        print(kernels.table(list(choice)))
    details = report.details(rows)
    if details:
        print("\nDetails (per row):\n")
        print(details)
    print("\nTargets:")
    for line in report.targets(rows):
        print(f"  {line}")
