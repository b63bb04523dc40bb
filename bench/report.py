"""The side-by-side table, the ratios, and the checks against the targets."""

from __future__ import annotations

from collections.abc import Sequence

from .workloads import Row

SYSTEMS = ("ours", "crypten", "mpyc")


def _seconds(row: Row | None) -> str:
    if row is None:
        return "-"
    if row.median_s is None:
        return "n/a"
    return f"{row.median_s:.4f} ({row.min_s:.4f}-{row.max_s:.4f})"


def _ratio(peer: Row | None, ours: Row | None) -> str:
    if peer is None or ours is None or peer.median_s is None or not ours.median_s:
        return "-"
    return f"{peer.median_s / ours.median_s:.1f}x"


def _key(row: Row) -> tuple[str, int, int]:
    return row.workload, row.n, row.d


def table(rows: Sequence[Row]) -> str:
    """Markdown table: one line per workload, systems side by side."""
    by_key: dict[tuple[str, int, int], dict[str, Row]] = {}
    for row in rows:
        by_key.setdefault(_key(row), {})[row.system] = row
    lines = [
        "| workload | n | d | ours median s (min-max) | CrypTen | MPyC | CrypTen/ours | MPyC/ours "
        "| ours bytes between servers | ours bytes client<->servers | ours peak RSS per server MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (workload, n, d), systems in by_key.items():
        ours = systems.get("ours")
        lines.append(
            f"| {workload} | {n:,} | {d} | {_seconds(ours)} | {_seconds(systems.get('crypten'))} "
            f"| {_seconds(systems.get('mpyc'))} | {_ratio(systems.get('crypten'), ours)} "
            f"| {_ratio(systems.get('mpyc'), ours)} "
            f"| {_bytes(ours.bytes_between_servers if ours else None)} "
            f"| {_bytes(ours.bytes_client_server if ours else None)} "
            f"| {', '.join(f'{m:.0f}' for m in ours.peak_rss_mb) if ours else '-'} |"
        )
    return "\n".join(lines)


def _bytes(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1e6:.2f} MB" if value >= 100_000 else f"{value:,} B"


def linearity(rows: Sequence[Row]) -> str:
    """Time and memory per element of ours' multiply rows, to show linear growth."""
    lines = ["| multiply n | ours s per element | peak RSS MiB (max server) |", "|---|---|---|"]
    for row in rows:
        if row.system == "ours" and row.workload == "multiply" and row.n >= 10_000 and row.median_s:
            rss = max(row.peak_rss_mb) if row.peak_rss_mb else float("nan")
            lines.append(f"| {row.n:,} | {row.median_s / row.n * 1e6:.3f} us | {rss:.0f} |")
    return "\n".join(lines)


def targets(rows: Sequence[Row]) -> list[str]:
    """The issue's targets, each with the measured figure and met / missed."""
    index = {(r.system, r.workload, r.n, r.d): r for r in rows}
    checks = []

    def ratio(system: str, workload: str, n: int, d: int) -> float | None:
        ours, peer = index.get(("ours", workload, n, d)), index.get((system, workload, n, d))
        if not ours or not peer or not ours.median_s or not peer.median_s:
            return None
        return peer.median_s / ours.median_s

    def check(text: str, value: float | None, ok: bool) -> None:
        shown = "not measured" if value is None else f"{value:.3g}"
        verdict = "n/a " if value is None else "MET " if ok else "MISS"
        checks.append(f"{verdict} {text}: {shown}")

    value = ratio("crypten", "multiply", 1_000_000, 1)
    check("10^6 multiplications, CrypTen/ours >= 3", value, value is not None and value >= 3)
    value = ratio("crypten", "linreg", 100_000, 10)
    check("linreg 10^5 x 10 end to end, CrypTen/ours >= 1", value, value is not None and value >= 1)
    value = ratio("mpyc", "linreg", 100_000, 10)
    check("linreg 10^5 x 10 end to end, MPyC/ours >= 150", value, value is not None and value >= 150)
    big = index.get(("ours", "multiply", 1_000_000, 1))
    per_mult = big.bytes_between_servers / big.n if big and big.bytes_between_servers else None
    check(
        "bytes between servers per multiplication <= 1.05 x 24",
        per_mult,
        per_mult is not None and per_mult <= 25.2,
    )
    peak = max(big.peak_rss_mb) if big and big.peak_rss_mb else None
    check("10^6 multiplication job, peak RSS per server < 300 MiB", peak, peak is not None and peak < 300)
    one = index.get(("ours", "multiply", 1, 1))
    latency = one.median_s * 1000 if one and one.median_s else None
    check("one multiplication end to end, median < 5 ms", latency, latency is not None and latency < 5)
    return checks
