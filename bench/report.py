"""The side-by-side table, the ratios, and the checks against the targets."""

from __future__ import annotations

from collections.abc import Callable, Sequence

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


def _ring(bits: int | None) -> str:
    return "-" if bits is None else f"Z_2^{bits}"


def _name(row: Row) -> str:
    return row.workload + (f" ({row.extra['variant']})" if "variant" in row.extra else "")


def table(rows: Sequence[Row]) -> str:
    """Markdown table: one line per workload and ring of ours, the peers beside it."""
    peers: dict[tuple[str, int, int], dict[str, Row]] = {}
    ours: list[Row] = []
    for row in rows:
        if row.system == "ours":
            ours.append(row)
        else:
            peers.setdefault(_key(row), {})[row.system] = row
    lines = [
        "| workload | n | d | ring | ours median s (min-max) | CrypTen | MPyC | CrypTen/ours | MPyC/ours "
        "| ours bytes between servers | ours bytes client<->servers | ours peak RSS per server MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in ours:
        others = peers.get(_key(row), {})
        lines.append(
            f"| {_name(row)} | {row.n:,} | {row.d} | {_ring(row.ring)} | {_seconds(row)} "
            f"| {_seconds(others.get('crypten'))} | {_seconds(others.get('mpyc'))} "
            f"| {_ratio(others.get('crypten'), row)} | {_ratio(others.get('mpyc'), row)} "
            f"| {_bytes(row.bytes_between_servers)} | {_bytes(row.bytes_client_server)} "
            f"| {', '.join(f'{m:.0f}' for m in row.peak_rss_mb)} |"
        )
    return "\n".join(lines)


def _bytes(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1e6:.2f} MB" if value >= 100_000 else f"{value:,} B"


def linearity(rows: Sequence[Row]) -> str:
    """Time and memory per element of ours' multiply rows, to show linear growth."""
    lines = ["| multiply n | ring | ours s per element | peak RSS MiB (max server) |", "|---|---|---|---|"]
    for row in rows:
        if row.system == "ours" and row.workload == "multiply" and row.n >= 10_000 and row.median_s:
            rss = max(row.peak_rss_mb) if row.peak_rss_mb else float("nan")
            lines.append(
                f"| {row.n:,} | {_ring(row.ring)} | {row.median_s / row.n * 1e6:.3f} us | {rss:.0f} |"
            )
    return "\n".join(lines)


PREVIOUS_Z2_64_MULTIPLY_1E6 = (0.1358, 3.6)
"""The last release's 10^6 multiplications in Z_2^64: median seconds and CrypTen/ours (README)."""


def targets(rows: Sequence[Row]) -> list[str]:
    """The issues' targets, each with the measured figure and met / missed."""
    ours = {
        (r.workload, r.n, r.d, r.ring): r for r in rows if r.system == "ours" and "variant" not in r.extra
    }
    peers = {(r.system, r.workload, r.n, r.d): r for r in rows if r.system != "ours"}
    checks = []

    def ratio(system: str, workload: str, n: int, d: int, ring: int = 128) -> float | None:
        mine, peer = ours.get((workload, n, d, ring)), peers.get((system, workload, n, d))
        if not mine or not peer or not mine.median_s or not peer.median_s:
            return None
        return peer.median_s / mine.median_s

    def check(text: str, value: float | None, ok: bool) -> None:
        shown = "not measured" if value is None else f"{value:.3g}"
        verdict = "n/a " if value is None else "MET " if ok else "MISS"
        checks.append(f"{verdict} {text}: {shown}")

    if any(r.workload in CORE for r in rows):
        _core_targets(ours, ratio, check)
    _training_targets(ours, ratio, check)
    return checks


CORE = frozenset({"multiply", "linreg", "dot", "upload"})
Ratio = Callable[..., float | None]
Check = Callable[[str, float | None, bool], None]


def _core_targets(ours: dict[tuple[str, int, int, int | None], Row], ratio: Ratio, check: Check) -> None:
    """The last releases' targets (``mpc bench``'s core suite)."""
    value = ratio("crypten", "multiply", 1_000_000, 1)
    check("10^6 multiplications in Z_2^128, CrypTen/ours >= 2.5", value, value is not None and value >= 2.5)
    value = ratio("crypten", "multiply", 1_000_000, 1, ring=64)
    before_s, before_ratio = PREVIOUS_Z2_64_MULTIPLY_1E6
    check(
        f"10^6 multiplications in Z_2^64 within 1.1x of the last release (CrypTen/ours >= "
        f"{before_ratio} / 1.1, drift-free)",
        value,
        value is not None and value >= before_ratio / 1.1,
    )
    z64 = ours.get(("multiply", 1_000_000, 1, 64))
    seconds = z64.median_s if z64 else None
    check(
        f"  the same in seconds, <= 1.1 x {before_s} s",
        seconds,
        seconds is not None and seconds <= 1.1 * before_s,
    )
    value = ratio("crypten", "linreg", 100_000, 10)
    check("linreg 10^5 x 10 end to end, CrypTen/ours >= 1", value, value is not None and value >= 1)
    value = ratio("mpyc", "linreg", 100_000, 10)
    check("linreg 10^5 x 10 end to end, MPyC/ours >= 150", value, value is not None and value >= 150)
    for ring in (128, 64):
        big = ours.get(("multiply", 1_000_000, 1, ring))
        per_mult = big.bytes_between_servers / big.n if big and big.bytes_between_servers else None
        limit = 1.05 * 3 * ring // 8
        check(
            f"bytes between servers per multiplication in Z_2^{ring} <= 1.05 x {3 * ring // 8}",
            per_mult,
            per_mult is not None and per_mult <= limit,
        )
    big = ours.get(("multiply", 1_000_000, 1, 128))
    peak = max(big.peak_rss_mb) if big and big.peak_rss_mb else None
    check(
        "10^6 multiplication job in Z_2^128, peak RSS per server < 400 MiB",
        peak,
        peak is not None and peak < 400,
    )
    one = ours.get(("multiply", 1, 1, 128))
    latency = one.median_s * 1000 if one and one.median_s else None
    check("one multiplication end to end, median < 5 ms", latency, latency is not None and latency < 5)


def _training_targets(ours: dict[tuple[str, int, int, int | None], Row], ratio: Ratio, check: Check) -> None:
    """Issue 13's targets for the training, comparison and alignment rows (only those measured)."""
    for kind in ("fit-ridge", "fit-ols"):
        if (kind, 100_000, 10, 128) in ours:
            value = ratio("crypten", kind, 100_000, 10)
            check(f"{kind} 10^5 x 10, CrypTen/ours >= 2", value, value is not None and value >= 2)
        big = ours.get((kind, 1_000_000, 10, 128))
        if big is not None:
            seconds = big.median_s
            check(f"{kind} 10^6 x 10, ours < 10 s", seconds, seconds is not None and seconds < 10)
    if ("decide", 1_000_000, 1, 128) in ours:
        value = ratio("crypten", "decide", 1_000_000, 1)
        check("10^6 comparisons (decide), CrypTen/ours >= 2", value, value is not None and value >= 2)
    if ("compare", 1_000_000, 1, 128) in ours:
        value = ratio("crypten", "compare", 1_000_000, 1)
        check("10^6 comparisons (job only), CrypTen/ours >= 2", value, value is not None and value >= 2)
    if ("logistic", 100_000, 10, 128) in ours:
        value = ratio("crypten", "logistic", 100_000, 10)
        check("logistic fit 10^5 x 10, CrypTen/ours >= 1", value, value is not None and value >= 1)
    big = ours.get(("align", 1_000_000, 3, 128))
    if big is not None:
        seconds = big.median_s
        check(
            "alignment of 2 x 10^6 ids + prediction, ours < 300 s",
            seconds,
            seconds is not None and seconds < 300,
        )
    large = ours.get(("predict-large", 10_000_000, 10, 128))
    if large is not None and large.peak_rss_mb:
        cold = max(large.extra.get("cold_peak_rss_mb", [float("nan")])) / 1024
        check("predict 10^7 x 10, peak RSS per server < 1 GiB (GiB, servers restarted)", cold, cold < 1)
        warm = max(large.peak_rss_mb) / 1024
        check("the same right after the uploads", warm, warm < 1)


def details(rows: Sequence[Row]) -> str:
    """One line per row that has workload-specific figures (training, comparison and alignment rows)."""
    lines = []
    for row in rows:
        shown = {k: v for k, v in row.extra.items() if k != "peer_options"}
        if row.workload in CORE or (row.median_s is None and not shown):
            continue
        label = f"{row.workload} n={row.n:,} d={row.d}"
        error = "-" if row.max_abs_error is None else f"{row.max_abs_error:.3g}"
        figures = "; ".join(f"{k} {_shown(v)}" for k, v in shown.items())
        lines.append(f"- {label}, {row.system}: rounds {row.rounds}, error {error}; {figures}")
        if row.note:
            lines.append(f"  ({row.note})")
    return "\n".join(lines)


def _shown(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_shown(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return str(value)
