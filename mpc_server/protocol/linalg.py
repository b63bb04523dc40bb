"""Linear algebra on replicated shares: Gram blocks, matrix products and checked rescaling.

Matrices are shared row-major as flat vectors (``mpc_core.sharing``); every
function takes the shape explicitly (local layout helpers: ``protocol.layout``).
The iterative solvers built on these
pieces live in ``protocol.spd`` (``solve_spd``) and ``protocol.reciprocal``
(``reciprocal``, ``rsqrt``).

Products (ABY3, Mohassel-Rindal, eprint 2018/403 §5 "vectorized
multiplication"). Party i forms its 3-out-of-3 term of the whole product
locally and reshares once, so a product costs **one round and one ring
element per output entry per party**, whatever the inner length:

* :func:`gram`: ``X^T Y`` for X (N x d) and Y (N x e) with the fused kernel
  ``Ring.cross_terms`` = ``X_i^T (Y_i + Y_{i+1}) + X_{i+1}^T Y_i``: one round,
  ``d*e`` elements, for any N (the building block of Gascon et al., PoPETs
  2017, and of the DASH/Bloom compression);
* :func:`matmul`: ``A B`` for A (m x k), B (k x n): one round, ``m*n`` elements.

Bounds and the failure budget. A :class:`Fixed` states what the caller knows
publicly about a shared array: its scale ``2^f`` and an exact integer bound on
its encoded entries. Each truncation (ABY3 Share Truncation I, one round, one
element per value from party 1 to party 0) of values with ``|x| < 2^l`` fails
with probability at most ``2^(l+1-k)`` per value (``mpc_core.bounds``); the
plans here add these up (union bound) and raise ``InvalidArgumentError``
before any message when the sum exceeds the caller's budget (``2^-40`` by
default: the whole job's allowance, so a job with several steps passes each a
share of it, e.g. ``-41`` twice).

Scaling the Gram matrix (the recommendation for ``linear_regression.fit``).
Features at scale ``2^fx`` over N rows give raw Gram entries up to
``N * 2^(2 fx)`` times the features' squared magnitude. Dividing by the
public N inside the ring would need a multiplication by ``~2^s / N`` that
*increases* the magnitude before the truncation, so :func:`plan_gram` divides
by the power of two ``2^s = 2^ceil(log2 N)`` instead, which is free: the raw
encoding read at scale ``2^(2 fx + s)`` *is* ``X^T Y / 2^s``, and one truncation
brings it to the working scale. The solution of ``(X^T X / 2^s + l2' I) w =
X^T y / 2^s`` equals that of ``(X^T X / N + l2 I) w = X^T y / N`` when
``l2' = l2 N / 2^s`` (public), so no secure division by N is ever needed. The
only hard constraint is the *raw* magnitude: that single truncation of ``d*e``
values below ``N 2^(2 fx)`` (standardised columns, Cauchy-Schwarz:
:func:`standardised_gram_bound`) must fit the budget. In Z_2^128, for N = 10^6
rows and ``X^T [X | y]`` with 10 features (110 values) and half the job's
budget (2^-41), this holds up to fx = 29 (2^-42.2; fx = 28: 2^-44.2; fx = 24:
2^-52.2, or 2^-44.2 with only an entrywise bound ``|x| <= 16``) but not at
fx = 30 (2^-40.2) or fx = 32 (2^-36.2). So train on features uploaded at
scale 2^24 (their rounding, ``2^-25`` per value, averages out in ``X^T X /
N``), or truncate features shared at 2^32 to 2^24 first (:func:`rescale`, one
round, ``N*d`` elements from party 1, failure ``N d 2^(fx+m+2-128)``).

Composition. Each function allocates its tags when it reaches each step, and
``truncation.truncate`` allocates its own (it takes no ``tag``), so a
multi-step function (:func:`scaled_gram`, :func:`matmul_fixed`, the solvers)
must be awaited on its own, not ``asyncio.gather``-ed with other operations of
the same job: there its later tags would follow completion order, which can
differ between the parties.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from mpc_core import bounds
from mpc_core.errors import InvalidArgumentError
from mpc_core.ring import Ring, RingArray
from mpc_core.sharing import ReplicatedShare
from mpc_server.protocol import arithmetic, layout
from mpc_server.protocol.context import PartyContext
from mpc_server.protocol.truncation import truncate

DEFAULT_BUDGET_LOG2 = -float(bounds.STATISTICAL_SECURITY_BITS)
"""log2 of the failure probability a function may spend unless told otherwise (a whole job's 2^-40)."""

Real = Fraction | int | float
"""A public real parameter; floats are converted exactly."""


@dataclass(frozen=True)
class Fixed:
    """Public facts about a shared fixed-point array: scale ``2^fractional_bits``, ``|encoded| <= bound``."""

    fractional_bits: int
    bound: int

    def __post_init__(self) -> None:
        """Scales and bounds are non-negative integers."""
        if self.fractional_bits < 0 or self.bound < 0:
            raise InvalidArgumentError(f"scale and bound must be non-negative, got {self}")

    @classmethod
    def real(cls, fractional_bits: int, magnitude: Real) -> Fixed:
        """Entries of real magnitude at most ``magnitude`` (the bound rounded up)."""
        return cls(fractional_bits, math.ceil(Fraction(magnitude) * (1 << fractional_bits)))

    @classmethod
    def from_bits(cls, fractional_bits: int, magnitude_bits: int) -> Fixed:
        """A dataset's public bound ``|encoded| <= 2^magnitude_bits`` (``StoredDataset.magnitude_bits``)."""
        return cls(fractional_bits, 1 << magnitude_bits)

    @property
    def magnitude(self) -> Fraction:
        """The bound as a real number."""
        return Fraction(self.bound, 1 << self.fractional_bits)


# ---------------------------------------------------------------------------- failure accounting


def truncation_failure(ring: Ring, count: int, bound: int) -> float:
    """Union bound on the failure probability of truncating ``count`` values with ``|x| <= bound``."""
    if count <= 0:
        return 0.0
    return float(2.0 ** bounds.truncation_failure_log2(ring, count, bound))


def require_budget(failure: float, budget_log2: float, what: str) -> None:
    """Refuse, before any communication, when ``failure`` exceeds ``2^budget_log2``.

    Raises:
        InvalidArgumentError: naming ``what``, the probability and the budget.
    """
    if failure > 2.0**budget_log2:
        raise InvalidArgumentError(
            f"{what} could fail with probability up to 2^{math.log2(failure):.1f}, above the budget of "
            f"2^{budget_log2:g}; refused before any communication. Use tighter bounds, a smaller scale "
            "(fractional_bits), fewer iterations or a larger ring"
        )


def magnitude_cap(ring: Ring, count: int, budget_log2: float) -> int:
    """The largest ``L``: ``count`` truncations of values below ``2^L`` fail w.p. at most ``2^budget``."""
    return math.floor(ring.bits - 1 + budget_log2 - math.log2(max(count, 1)))


def below(bound: int, cap: int) -> bool:
    """Whether values up to ``bound`` are below ``2^cap`` (as :func:`magnitude_cap` assumes)."""
    return bounds.bound_bits(bound + 1) <= cap


# ---------------------------------------------------------------------------- rescaling


@dataclass(frozen=True)
class Rescale:
    """A checked change of scale of ``count`` values: truncate by ``shift`` bits, or lift if negative."""

    count: int
    source: Fixed
    target: Fixed
    failure: float

    @property
    def shift(self) -> int:
        """Bits to truncate by (negative: bits to lift by, exactly)."""
        return self.source.fractional_bits - self.target.fractional_bits


def plan_rescale(
    ring: Ring,
    count: int,
    source: Fixed,
    out_bits: int,
    *,
    what: str,
    budget_log2: float = DEFAULT_BUDGET_LOG2,
) -> Rescale:
    """Plan bringing ``count`` values described by ``source`` to scale ``2^out_bits``.

    The target bound is ``floor(bound / 2^shift) + 2`` (truncation is off by at
    most one unit); a lift multiplies by ``2^-shift`` exactly.

    Raises:
        InvalidArgumentError: a value could leave the ring's signed range, or
            the truncation could fail with probability above ``2^budget_log2``.
    """
    bounds.require_fits(ring, source.bound, source.fractional_bits, what)
    shift = source.fractional_bits - out_bits
    if out_bits < 0:
        raise InvalidArgumentError(f"the target scale of {what} must be non-negative, got {out_bits}")
    if shift <= 0:
        lifted = source.bound << -shift
        bounds.require_fits(ring, lifted, out_bits, f"{what}, lifted to scale 2^{out_bits}")
        return Rescale(count, source, Fixed(out_bits, lifted), 0.0)
    failure = truncation_failure(ring, count, source.bound)
    described = bounds.describe(source.bound, source.fractional_bits)
    require_budget(
        failure, budget_log2, f"truncating {what} ({count} values up to {described}) in {ring.name}"
    )
    return Rescale(count, source, Fixed(out_bits, (source.bound >> shift) + 2), failure)


async def rescale(ctx: PartyContext, x: ReplicatedShare, plan: Rescale) -> ReplicatedShare:
    """Apply a :class:`Rescale`: one truncation round (``count`` elements, party 1 to 0) or a local lift."""
    layout.require_size(x, plan.count, "the value to rescale")
    if plan.shift > 0:
        return await truncate(ctx, x, plan.shift)
    if plan.shift < 0:
        return arithmetic.mul_public(x, 1 << -plan.shift)
    return x


# ---------------------------------------------------------------------------- Gram blocks


def gram_terms(x: ReplicatedShare, rows: int, d: int, y: ReplicatedShare, e: int) -> RingArray:
    """Party i's 3-out-of-3 term of ``X^T Y`` (d x e, flattened), by ``Ring.cross_terms``."""
    ring = x.ring
    terms = ring.cross_terms(
        x.first.reshape(rows, d),
        x.second.reshape(rows, d),
        y.first.reshape(rows, e),
        y.second.reshape(rows, e),
    )
    return terms.reshape(-1)


async def gram(  # noqa: PLR0917 - each operand followed by its shape, as in arithmetic.matvec
    ctx: PartyContext, x: ReplicatedShare, rows: int, d: int, y: ReplicatedShare, e: int
) -> ReplicatedShare:
    """Share of ``X^T Y`` (d x e, row-major) for shared X (rows x d) and Y (rows x e); exact.

    Steps: the op's tag is allocated at call time; party i computes
    ``X_i^T (Y_i + Y_{i+1}) + X_{i+1}^T Y_i`` (``ctx.compute``: a worker thread
    for large inputs) and reshares it (``arithmetic.reshare``). Cost: **one
    round, d*e elements per party**, whatever ``rows``. The result carries
    scale ``2^(f_x + f_y)``; its bound is the caller's (:func:`plan_gram`).
    """
    layout.require_size(x, rows * d, "X")
    layout.require_size(y, rows * e, "Y")
    tag = ctx.allocate_tag()
    terms = await ctx.compute(rows * (d + e), gram_terms, x, rows, d, y, e)
    return await arithmetic.reshare(ctx, terms, tag)


def gram_bound(rows: int, x: Fixed, y: Fixed) -> Fixed:
    """Entrywise bound on ``X^T Y``: ``rows * bound_x * bound_y`` at scale ``2^(f_x + f_y)``."""
    return Fixed(x.fractional_bits + y.fractional_bits, rows * x.bound * y.bound)


def standardised_gram_bound(rows: int, x_bits: int, y_bits: int) -> Fixed:
    """Cauchy-Schwarz bound on ``X^T Y`` for columns whose squares sum to at most ``rows``.

    Standardised columns (mean 0, population variance 1) have ``sum x^2 =
    rows``; encoded or truncated values are off by at most one unit each, so
    ``|sum_r x~_r y~_r| <= rows (2^f_x + 1)(2^f_y + 1)``, independent of outliers.
    """
    return Fixed(x_bits + y_bits, rows * ((1 << x_bits) + 1) * ((1 << y_bits) + 1))


@dataclass(frozen=True)
class GramPlan:
    """A checked ``X^T Y / 2^divide_bits`` at a target scale: the raw Gram block and one rescale."""

    rows: int
    d: int
    e: int
    divide_bits: int
    raw: Fixed
    rescale: Rescale

    @property
    def output(self) -> Fixed:
        """Scale and bound of the result."""
        return self.rescale.target


def plan_gram(
    ring: Ring,
    rows: int,
    d: int,
    e: int,
    *,
    x: Fixed,
    y: Fixed,
    out_bits: int,
    divide_bits: int | None = None,
    raw_bound: int | None = None,
    budget_log2: float = DEFAULT_BUDGET_LOG2,
) -> GramPlan:
    """Plan ``X^T Y / 2^s`` at scale ``2^out_bits``, ``s = ceil(log2 rows)`` unless given (module docstring).

    ``raw_bound`` replaces the entrywise bound (e.g. :func:`standardised_gram_bound`).

    Raises:
        InvalidArgumentError: the raw block could leave the ring, or its
            truncation could fail with probability above ``2^budget_log2``.
    """
    if min(rows, d, e) < 1:
        raise InvalidArgumentError(
            f"a Gram block needs positive dimensions, got {rows} x {d} and {rows} x {e}"
        )
    s = max(rows - 1, 0).bit_length() if divide_bits is None else divide_bits
    raw = Fixed(
        x.fractional_bits + y.fractional_bits,
        gram_bound(rows, x, y).bound if raw_bound is None else raw_bound,
    )
    bounds.require_fits(ring, raw.bound, raw.fractional_bits, f"the Gram block X^T Y over {rows} rows")
    scaled = Fixed(raw.fractional_bits + s, raw.bound)  # the same encoding, read as X^T Y / 2^s
    plan = plan_rescale(
        ring, d * e, scaled, out_bits, what=f"X^T Y / 2^{s} ({rows} rows)", budget_log2=budget_log2
    )
    return GramPlan(rows, d, e, s, raw, plan)


async def scaled_gram(
    ctx: PartyContext, x: ReplicatedShare, y: ReplicatedShare, plan: GramPlan
) -> ReplicatedShare:
    """Share of ``X^T Y / 2^s`` at the plan's scale: :func:`gram` and :func:`rescale`, 2 rounds of d*e."""
    raw = await gram(ctx, x, plan.rows, plan.d, y, plan.e)
    return await rescale(ctx, raw, plan.rescale)


# ---------------------------------------------------------------------------- matrix products


def matmul_terms(a: ReplicatedShare, m: int, k: int, b: ReplicatedShare, n: int) -> RingArray:
    """Party i's term ``A_i (B_i + B_{i+1}) + A_{i+1} B_i`` of ``A B`` (m x n, flattened)."""
    ring = a.ring
    a0, a1 = a.first.reshape(m, k), a.second.reshape(m, k)
    return ring.matmul_terms(a0, a1, b.first.reshape(k, n), b.second.reshape(k, n)).reshape(-1)


async def matmul(  # noqa: PLR0917 - each operand followed by its shape, as in arithmetic.matvec
    ctx: PartyContext, a: ReplicatedShare, m: int, k: int, b: ReplicatedShare, n: int
) -> ReplicatedShare:
    """Share of ``A B`` (m x n) for shared A (m x k) and B (k x n): exact, one round, m*n elements."""
    layout.require_size(a, m * k, "A")
    layout.require_size(b, k * n, "B")
    tag = ctx.allocate_tag()
    terms = await ctx.compute(m * k * n, matmul_terms, a, m, k, b, n)
    return await arithmetic.reshare(ctx, terms, tag)


@dataclass(frozen=True)
class ProductPlan:
    """A checked fixed-point product ``A B`` (m x k by k x n) and its rescale."""

    m: int
    k: int
    n: int
    raw: Fixed
    rescale: Rescale

    @property
    def output(self) -> Fixed:
        """Scale and bound of the result."""
        return self.rescale.target


def plan_matmul(
    ring: Ring,
    m: int,
    k: int,
    n: int,
    *,
    a: Fixed,
    b: Fixed,
    out_bits: int,
    raw_bound: int | None = None,
    budget_log2: float = DEFAULT_BUDGET_LOG2,
) -> ProductPlan:
    """Plan ``A B`` rescaled to ``2^out_bits``; the raw bound is ``k bound_a bound_b`` unless given.

    Raises:
        InvalidArgumentError: as :func:`plan_rescale`.
    """
    if min(m, k, n) < 1:
        raise InvalidArgumentError(f"matrix dimensions must be positive, got {m} x {k} by {k} x {n}")
    raw = Fixed(
        a.fractional_bits + b.fractional_bits, k * a.bound * b.bound if raw_bound is None else raw_bound
    )
    what = f"the product of a {m} x {k} and a {k} x {n} matrix"
    return ProductPlan(
        m, k, n, raw, plan_rescale(ring, m * n, raw, out_bits, what=what, budget_log2=budget_log2)
    )


async def matmul_fixed(
    ctx: PartyContext, a: ReplicatedShare, b: ReplicatedShare, plan: ProductPlan
) -> ReplicatedShare:
    """Share of the fixed-point product ``A B`` at the plan's scale: 2 rounds, m*n elements each."""
    raw = await matmul(ctx, a, plan.m, plan.k, b, plan.n)
    return await rescale(ctx, raw, plan.rescale)
