"""Small measuring helpers: timing statistics and per-process peak memory."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path


def summary(times: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max) of the repetitions' wall times."""
    return statistics.median(times), min(times), max(times)


def reset_peak_rss(pid: int) -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of ``pid``; False if not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of ``pid`` in MiB since the last reset."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")
