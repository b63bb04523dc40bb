"""Small measuring helpers: timing statistics and per-process peak memory."""

from __future__ import annotations

import os
import statistics
import time
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


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) ``pid`` has used so far, from ``/proc/<pid>/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time every process on the machine has used so far (all cores), from ``/proc/stat``."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Current resident memory (VmRSS) of ``pid`` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class CpuWindow:
    """CPU used while it is open: by ``pids`` plus this process, and by everything else on the machine."""

    def __init__(self, pids: Sequence[int]) -> None:
        """Start counting (``pids``: the servers)."""
        self.pids = list(pids)
        self.own = sum(cpu_seconds(pid) for pid in self.pids) + time.process_time()
        self.busy = machine_busy_seconds()

    def close(self) -> dict[str, float]:
        """``ours_cpu_s`` (servers + this client process) and ``others_cpu_s`` (the rest, all cores)."""
        own = sum(cpu_seconds(pid) for pid in self.pids) + time.process_time() - self.own
        busy = machine_busy_seconds() - self.busy
        return {"ours_cpu_s": round(own, 2), "others_cpu_s": round(max(0.0, busy - own), 2)}
