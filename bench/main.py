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
from .peers.runner import run_crypten, run_mpyc
from .workloads import FULL, QUICK, Row, Workload

PeerRunner = Callable[[Workload, Path, Callable[[str], None]], Row]
PEERS: dict[str, PeerRunner] = {"crypten": run_crypten, "mpyc": run_mpyc}


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


def _peer_row(name: str, workload: Workload, scratch: Path, progress: Callable[[str], None]) -> Row:
    try:
        return PEERS[name](workload, scratch, progress)
    except PeerUnavailableError as exc:
        progress(f"  {name}: unavailable ({exc})")
        return Row(name, workload.kind, workload.n, workload.d, None, note=f"unavailable: {exc}")


def run(quick: bool, systems: Sequence[str], progress: Callable[[str], None]) -> list[Row]:
    """Measure every workload on every requested system, interleaved."""
    workloads = QUICK if quick else FULL
    rows: list[Row] = []
    unavailable: set[str] = set()
    measured: set[tuple[str, int, int]] = set()  # peers have one ring: measure each shape once
    with tempfile.TemporaryDirectory(prefix="mpc-bench-") as scratch:
        ours = OursRunner(Path(scratch), progress)
        for workload in workloads:
            started = time.perf_counter()
            row = ours.run(workload)
            rows.append(row)
            progress(
                f"{workload.label:<24} ours    {row.median_s:.4f} s  ({time.perf_counter() - started:.0f} s)"
            )
            shape = (workload.kind, workload.n, workload.d)
            if workload.kind == "upload" or shape in measured:
                continue
            measured.add(shape)
            for name in (s for s in systems if s in PEERS and s not in unavailable):
                started = time.perf_counter()
                peer = _peer_row(name, workload, Path(scratch), progress)
                rows.append(peer)
                if peer.note.startswith("unavailable"):
                    unavailable.add(name)
                shown = "skipped" if peer.median_s is None else f"{peer.median_s:.4f} s"
                progress(f"{workload.label:<24} {name:<7} {shown}  ({time.perf_counter() - started:.0f} s)")
    return rows


def main(quick: bool, as_json: bool, systems: Sequence[str]) -> int:
    """Run and print: a table (default) or one JSON document."""
    started = time.perf_counter()
    rows = run(quick, systems, lambda text: print(text, file=sys.stderr, flush=True))
    print("kernel choice: timing the local product terms ...", file=sys.stderr, flush=True)
    size = 100_000 if quick else 1_000_000
    choice = kernels.measure(size, size, 10)
    elapsed = time.perf_counter() - started
    if as_json:
        print(
            json.dumps(
                {
                    "machine": machine(),
                    "seconds": elapsed,
                    "rows": [r.to_json() for r in rows],
                    "kernels": [
                        {"operation": op, "implementation": how, "seconds": s} for op, how, s in choice
                    ],
                    "targets": report.targets(rows),
                },
                indent=1,
            )
        )
        return 0
    info = machine()
    mode = "quick" if quick else "full"
    print(
        f"\nmpc bench ({mode}) on {info['cpu']} x{info['cores']}, Python {info['python']}, {elapsed:.0f} s\n"
    )
    print(report.table(rows))
    print("\nGrowth with n (ours, multiply):\n")
    print(report.linearity(rows))
    print("\nKernel choice (one server's local work, best of 5):\n")
    print(kernels.table(choice))
    print("\nTargets:")
    for line in report.targets(rows):
        print(f"  {line}")
    return 0
