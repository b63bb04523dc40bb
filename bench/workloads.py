"""The benchmark workloads and the result row every system reports."""

from __future__ import annotations

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
    ``ring``: the ring our cluster computes in (the peers have their own).
    """

    kind: str
    n: int
    d: int = 1
    reps: int = 5
    ring: int = 128

    @property
    def label(self) -> str:
        """Short name, e.g. ``linreg n=1e5 d=10``; ``[Z_2^64]`` when not the default ring."""
        size = f"{self.n:.0e}".replace("+0", "").replace("+", "") if self.n >= 1000 else str(self.n)
        label = f"{self.kind} n={size}" + (f" d={self.d}" if self.kind == "linreg" else "")
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

    def to_json(self) -> dict[str, Any]:
        """A plain dict for JSON output."""
        return asdict(self)
