"""The benchmark workloads and the result row every system reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Workload:
    """One measured job shape.

    ``multiply``: elementwise fixed-point products of two length-``n``
    vectors. ``linreg``: ``y = X w + c`` with ``X`` of ``n x d`` split between
    two banks, ``w`` and ``c`` from the model owner, end to end including the
    owners' uploads. ``dot``: one dot product of two length-``n`` vectors.
    ``upload``: one owner secret-sharing and uploading ``n`` values (ours only).

    The training suite (``mpc bench --suite training``), shares already on
    the servers, job submission to the checked, reconstructed outputs:
    ``stats``: ``stats.summary`` of ``n x d`` in three owners' blocks;
    ``fit-ridge`` / ``fit-ols``: ``linear_regression.fit`` (``l2 = 1.0`` / 0,
    with an intercept) on two banks' halves of ``n x d`` and the model
    owner's label; ``decide``: ``linear_regression.decide``, ``n`` decisions
    ``x w > t`` (one feature column: one product and one comparison per row);
    ``compare``: the same job with ``w = 1``, only the job timed (comparisons
    per second; CrypTen times its ``x > t`` alone);
    ``logistic``: ``logistic_regression.fit`` (30 iterations, ``l2 = 1e-3``)
    on two banks' standardised halves and a 0/1 label.
    The alignment suite (``--suite alignment``): ``align``, two banks of
    ``n`` ids each (half in common) end to end through the SDK: open the
    alignment, each bank's tokens and keyed upload (``upload_table``, both
    banks in parallel processes), the prediction on the join (``run``) and
    ``fetch_table`` at bank-1; ``d`` features in all (ours only).
    The memory suite (``--suite memory``): ``predict-large``,
    ``linear_regression.predict`` over ``n x d`` from seeded uploads (one
    dataset per column), run + fetch timed, the servers' peak RSS (ours only).

    ``ring``: the ring our cluster computes in (the peers have their own).
    ``warmup``: run once untimed first (off for the long alignment rows).
    ``fractional_bits``: the owners' upload scale for the fit rows (``None``:
    the cluster's, 2^-32 in Z_2^128); a variant row, e.g. at CrypTen's 2^-16.
    """

    kind: str
    n: int
    d: int = 1
    reps: int = 5
    ring: int = 128
    warmup: bool = True
    fractional_bits: int | None = None

    @property
    def label(self) -> str:
        """Short name, e.g. ``linreg n=1e5 d=10``; ``[Z_2^64]`` when not the default ring."""
        size = f"{self.n:.0e}".replace("+0", "").replace("+", "") if self.n >= 1000 else str(self.n)
        label = f"{self.kind} n={size}" + (f" d={self.d}" if self.d > 1 else "")
        label += f" [2^-{self.fractional_bits}]" if self.fractional_bits is not None else ""
        return label + (" [Z_2^64]" if self.ring == 64 else "")

    @property
    def products(self) -> int:
        """Secure multiplications the workload performs."""
        return self.n * self.d


FULL = (
    Workload("multiply", 1, reps=30),
    Workload("multiply", 10_000, reps=10),
    Workload("multiply", 100_000, reps=7),
    Workload("multiply", 1_000_000, reps=5),
    Workload("multiply", 1_000_000, reps=5, ring=64),
    Workload("linreg", 100_000, 2, reps=5),
    Workload("linreg", 100_000, 10, reps=5),
    Workload("linreg", 100_000, 10, reps=5, ring=64),
    Workload("linreg", 1_000_000, 10, reps=3),
    Workload("dot", 1_000_000, reps=5),
    Workload("upload", 1_000_000, reps=3),
    Workload("upload", 10_000_000, reps=2),
)

QUICK = (
    Workload("multiply", 1, reps=10),
    Workload("multiply", 10_000, reps=3),
    Workload("linreg", 10_000, 10, reps=3),
    Workload("dot", 10_000, reps=3),
    Workload("upload", 100_000, reps=2),
)

TRAINING = (
    Workload("stats", 100_000, 10, reps=5),
    Workload("stats", 1_000_000, 10, reps=3),
    Workload("fit-ridge", 100_000, 10, reps=5),
    Workload("fit-ols", 100_000, 10, reps=5),
    Workload("fit-ridge", 1_000_000, 10, reps=3),
    Workload("fit-ols", 1_000_000, 10, reps=3),
    Workload("fit-ridge", 100_000, 10, reps=5, fractional_bits=16),
    Workload("fit-ridge", 1_000_000, 10, reps=3, fractional_bits=16),
    Workload("decide", 100_000, reps=5),
    Workload("decide", 1_000_000, reps=3),
    Workload("compare", 100_000, reps=5),
    Workload("compare", 1_000_000, reps=3),
    Workload("logistic", 100_000, 10, reps=3),
)

QUICK_TRAINING = (
    Workload("stats", 10_000, 10, reps=3),
    Workload("fit-ridge", 10_000, 10, reps=3),
    Workload("fit-ols", 10_000, 10, reps=3),
    Workload("fit-ridge", 10_000, 10, reps=3, fractional_bits=16),
    Workload("decide", 10_000, reps=3),
    Workload("compare", 10_000, reps=3),
    Workload("logistic", 10_000, 10, reps=2),
)

ALIGNMENT = (
    Workload("align", 100_000, 3, reps=1, warmup=False),
    Workload("align", 1_000_000, 3, reps=1, warmup=False),
)

QUICK_ALIGNMENT = (Workload("align", 10_000, 3, reps=1, warmup=False),)

MEMORY = (
    Workload("predict-large", 1_000_000, 10, reps=3),
    Workload("predict-large", 10_000_000, 10, reps=1, warmup=False),
)

QUICK_MEMORY = (Workload("predict-large", 100_000, 10, reps=2),)

SUITES: dict[str, tuple[tuple[Workload, ...], tuple[Workload, ...]]] = {
    "core": (FULL, QUICK),
    "training": (TRAINING, QUICK_TRAINING),
    "alignment": (ALIGNMENT, QUICK_ALIGNMENT),
    "memory": (MEMORY, QUICK_MEMORY),
}
"""Per suite the full and the quick workloads; ``all`` is every suite in this order."""


def select(suite: str, quick: bool, only: Sequence[str] = ()) -> tuple[Workload, ...]:
    """The workloads of ``suite`` (or ``all``); if ``only`` is given, those it names (``kind`` or ``kind:n``).

    Raises:
        ValueError: an unknown suite, or an ``only`` entry that selects nothing.
    """
    names = list(SUITES) if suite == "all" else [suite]
    if any(name not in SUITES for name in names):
        raise ValueError(f"unknown suite {suite!r} (suites: {', '.join([*SUITES, 'all'])})")
    chosen = [w for name in names for w in SUITES[name][1 if quick else 0]]
    if not only:
        return tuple(chosen)
    kept = []
    for entry in only:
        kind, _, size = entry.partition(":")
        matches = [w for w in chosen if w.kind == kind and (not size or w.n == int(float(size)))]
        if not matches:
            raise ValueError(
                f"--only {entry}: no such workload in suite {suite}{' (quick)' if quick else ''}"
            )
        kept += [w for w in matches if w not in kept]
    return tuple(w for w in chosen if w in kept)


@dataclass
class Row:
    """One system's result for one workload (the ``--json`` row)."""

    system: str
    workload: str
    n: int
    d: int
    median_s: float | None
    ring: int | None = None
    """The ring of our cluster (None for a peer, which has its own)."""
    min_s: float | None = None
    max_s: float | None = None
    reps: int = 0
    max_abs_error: float | None = None
    bytes_between_servers: int | None = None
    bytes_client_server: int | None = None
    rounds: int | None = None
    peak_rss_mb: list[float] = field(default_factory=list)
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    """Workload-specific figures (iteration counts, per-server bytes and rounds, phase times)."""

    def to_json(self) -> dict[str, Any]:
        """A plain dict for JSON output."""
        return asdict(self)
