"""Solving ``(A + l2 I) W = B`` on shares for a symmetric positive semi-definite A: Newton-Schulz.

Method. Newton-Schulz iteration for the inverse (Schulz 1933; Ben-Israel and
Cohen, SIAM J. Numer. Anal. 1966), ``V <- V (2I - M V)`` for ``M = A + l2 I``,
started at ``V_0 = alpha I`` with ``alpha = floor(2^f / t) / 2^f <= 1/t`` for a
*public* ``t >= trace(M) >= lambda_max(M)`` that the caller derives from public
bounds (for ``X^T X / 2^s`` of standardised columns ``trace = d N / 2^s``).
With ``R_k = I - M V_k`` one has ``R_{k+1} = R_k^2`` and ``V_{k+1} = V_k (I +
R_k)``, so the iteration is run in its product form (the hyperpower / Euler
product form of the Neumann series, Pan and Schreiber, SIAM J. Sci. Stat.
Comput. 1991): ``W_0 = alpha B`` and, per iteration,

    [R_{k+1} | W_{k+1}] = R_k [R_k | W_k] + [0 | W_k]        (W_K = V_K B)

Both products share the left factor ``R_k``, so an iteration is **one matrix
product (one round, d(d+c) elements) and one truncation (one round)**, half
the rounds of ``V (2I - M V)`` done as two dependent products; the last
iteration skips ``R_K``. Only ``W = V B`` is carried (c right-hand sides), never
V itself unless B = I. Secure linear-regression solvers that use Newton's
iteration or fixed-iteration CG: Gascon et al. (PoPETs 2017), Blom et al.
(eprint 2019/773, who use randomised Gaussian elimination instead).

Cost (``K`` iterations, ``c`` columns). Rounds ``2K + 1`` (one truncation of
``[R_0 | W_0] = [I - alpha M | alpha B]`` first). Elements each party sends in
reshares: ``(K-1)(d^2 + dc) + dc``; party 1 also sends one element per truncated
value: ``K(d^2 + dc) + dc``. For d = 10, c = 1, K = 18: 37 rounds, 1,880 and
3,870 elements (30 KB and 62 KB in Z_2^128).

Convergence. ``||R_K|| <= (1 - alpha mu)^(2^K)`` for ``mu <= lambda_min(M)``
(``mu = l2`` plus the caller's stated ``min_eigenvalue`` of A), so ``K =
ceil(log2(kappa' ln(1/tol)))`` with ``kappa' = 1/(alpha mu) ~ t/mu`` gives a
relative residual below ``tol``. Beyond that (``mu`` overstated, i.e. A worse
conditioned than stated) W_K is the spectral filter ``sum_i (1 - (1 - alpha
lambda_i)^(2^K)) (v_i^T B / lambda_i) v_i``: components with ``lambda_i <<
2^-K / alpha`` are shrunk towards 0 (like extra ridge), never blown up.

Precision. The product form is not self-correcting: a rounding error made
while ``R_k`` is still near I in some direction is amplified with it, so the
result carries an error of about ``kappa' 2^-f`` relative to ``max(1, |w|)``
(``2^-f`` being the fixed-point unit); at f = 32 that meets 1e-4 up to
``kappa'`` about 10^5. Iterations are capped at ``f - 6 - log2 d`` (so that
``||R_k|| <= 1 + 2^-4`` in spite of rounding).

Bounds (checked before any message). They need only ``0 <= M <= tI``
(PSD, true for a Gram matrix plus ``l2 >= 0``), not the stated ``mu``:
``||R_k|| <= 1 + 2^-4``, ``||I + R_k|| <= 2 + 2^-4``, and the columns of
``W_k`` have 2-norm at most ``(2 + 2^-4)^k`` times those of ``alpha B``
(tracked exactly, with one unit of rounding per entry and truncation). Each
iterate W_k carries its own scale ``2^(s_k)``, ``s_k <= f``: as W grows, ``s_k``
drops so that every truncated value stays below ``2^L``, where ``L`` makes the
union bound over all truncations meet the budget. Rounding errors of the
late, large iterates are not amplified, so this costs no accuracy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import partial

from mpc_core.errors import InvalidArgumentError
from mpc_core.ring import Ring, RingArray
from mpc_core.sharing import ReplicatedShare
from mpc_server.protocol import arithmetic, layout, linalg
from mpc_server.protocol.context import PartyContext
from mpc_server.protocol.linalg import DEFAULT_BUDGET_LOG2, Real
from mpc_server.protocol.truncation import truncate

NORM_MARGIN_BITS = 4
"""``||R_k|| <= 1 + 2^-4``: the slack for rounding errors in the bounds."""


@dataclass(frozen=True)
class SpdSystem:
    """The public description of ``(A + l2 I) W = B``: shapes, scale and the bounds the caller vouches for.

    A (d x d) must be symmetric positive semi-definite with ``trace(A) <=
    trace_bound``; A, B (d x rhs_columns) and W share ``fractional_bits``;
    ``|encoded B| <= rhs_bound``. ``min_eigenvalue`` (a lower bound on
    ``lambda_min(A)``; ``l2`` is added) only sets the iteration count.
    """

    d: int
    fractional_bits: int
    trace_bound: Real
    rhs_bound: int
    rhs_columns: int = 1
    l2: Real = 0
    min_eigenvalue: Real = 0
    tolerance: float = 1e-6
    iterations: int | None = None
    budget_log2: float = DEFAULT_BUDGET_LOG2


@dataclass(frozen=True)
class SolvePlan:
    """A checked solver run: iteration count, start, per-iterate scales, failure probability, cost."""

    system: SpdSystem
    iterations: int
    step: int
    """``alpha * 2^f``: ``V_0 = alpha I``."""
    l2_encoded: int
    scales: tuple[int, ...]
    """``s_0 .. s_{K-1}``: the scale of ``W_k``; ``W_K`` is at ``2^f``."""
    condition: float
    """``kappa' = 1 / (alpha mu)`` that the iteration count resolves (inf without ``mu``)."""
    residual: float
    """``(1 - alpha mu)^(2^K)``: the relative residual reached if ``mu`` holds."""
    failure: float

    @property
    def rounds(self) -> int:
        """Communication rounds."""
        return 2 * self.iterations + 1

    @property
    def reshare_elements(self) -> int:
        """Elements every party sends in reshares."""
        d, c = self.system.d, self.system.rhs_columns
        return (self.iterations - 1) * (d * d + d * c) + d * c

    @property
    def truncated_elements(self) -> int:
        """Elements party 1 sends in truncations (one per truncated value)."""
        return truncated_count(self.system.d, self.system.rhs_columns, self.iterations)


def truncated_count(d: int, c: int, iterations: int) -> int:
    """Values truncated in a run: ``K (d^2 + dc) + dc``."""
    return iterations * (d * d + d * c) + d * c


def iteration_count(condition: float, tolerance: float) -> int:
    """The least K with ``exp(-2^K / kappa') <= tol``: ``ceil(log2(kappa' ln(1/tol)))``, at least 1."""
    return max(1, math.ceil(math.log2(condition * math.log(1.0 / tolerance))))


def max_iterations(d: int, fractional_bits: int) -> int:
    """The most iterations whose rounding keeps ``||R_k|| <= 1 + 2^-4``: ``f - 6 - ceil(log2 d)``."""
    return fractional_bits - 6 - max(d - 1, 0).bit_length()


def plan_solve(ring: Ring, system: SpdSystem) -> SolvePlan:
    """Check ``system`` and plan the run (pure; see the module docstring).

    Raises:
        InvalidArgumentError: bad shapes or parameters; no ``mu`` and no
            iteration count; more iterations than the scale supports; a bound
            leaving the ring; or truncations failing above the budget.
    """
    f, d = system.fractional_bits, system.d
    _check_system(system)
    t = Fraction(system.trace_bound) + d * Fraction(system.l2)
    step = math.floor(Fraction(1 << f) / t)
    if step < 1:
        raise InvalidArgumentError(f"the trace bound {float(t):g} leaves no start V_0 = I/t at scale 2^{f}")
    mu = Fraction(system.min_eigenvalue) + Fraction(system.l2)
    condition = math.inf if mu == 0 else float(Fraction(1 << f) / (step * mu))
    iterations = system.iterations
    if iterations is None:
        if mu == 0:
            raise InvalidArgumentError(
                "OLS needs min_eigenvalue (a lower bound on lambda_min(A)) or iterations"
            )
        iterations = iteration_count(condition, system.tolerance)
    if not 1 <= iterations <= max_iterations(d, f):
        raise InvalidArgumentError(
            f"the solver needs {iterations} iterations for kappa' = {condition:.3g} at tolerance "
            f"{system.tolerance:g}, but at scale 2^{f} with d = {d} at most {max_iterations(d, f)} keep the "
            "rounding bounded: regularise (l2), or state a larger min_eigenvalue"
        )
    scales, failure = _schedule(ring, system, step, iterations)
    linalg.require_budget(
        failure, system.budget_log2, f"the Newton-Schulz solver ({iterations} iterations, d = {d})"
    )
    contraction = float(step * mu / (1 << f))  # alpha mu <= 1
    residual = (
        1.0 if mu == 0 else 0.0 if contraction >= 1 else math.exp(2.0**iterations * math.log1p(-contraction))
    )
    l2_encoded = round(Fraction(system.l2) * (1 << f))
    return SolvePlan(system, iterations, step, l2_encoded, scales, condition, residual, failure)


def _check_system(system: SpdSystem) -> None:
    if system.d < 1 or system.rhs_columns < 1:
        raise InvalidArgumentError(
            f"need d >= 1 and rhs_columns >= 1, got {system.d} and {system.rhs_columns}"
        )
    if Fraction(system.l2) < 0 or Fraction(system.min_eigenvalue) < 0 or Fraction(system.trace_bound) <= 0:
        raise InvalidArgumentError("l2 and min_eigenvalue must be >= 0 and trace_bound > 0")
    if not 0 < system.tolerance < 1 or system.rhs_bound < 0:
        raise InvalidArgumentError("tolerance must be in (0, 1) and rhs_bound >= 0")


def _schedule(ring: Ring, system: SpdSystem, step: int, iterations: int) -> tuple[tuple[int, ...], float]:
    """Per-iterate scales and the summed failure probability (all bounds exact integers)."""
    f, d, c = system.fractional_bits, system.d, system.rhs_columns
    cap = linalg.magnitude_cap(ring, truncated_count(d, c, iterations), system.budget_log2)
    root = math.isqrt(d - 1) + 1  # >= sqrt(d): column 2-norms from entry bounds
    slack = 1 << (f - NORM_MARGIN_BITS)
    r_start = (1 << (2 * f)) + (slack << f)  # R_0 = I - alpha M at scale 2^(2f)
    r_square = ((1 << f) + slack) ** 2  # R_k R_k at scale 2^(2f)
    growth = (1 << (f + 1)) + slack  # ||I + R_k|| at scale 2^f
    w_start = step * system.rhs_bound  # alpha B at scale 2^(2f)
    tracker = _Bounds(cap, growth, root)
    scale, norm = tracker.next_scale(w_start * root, 2 * f, f, r_start, 0)
    failure = _part(ring, d * d, r_start << (f - scale), cap, "I - alpha M")
    failure += _part(ring, d * c, w_start, cap, "alpha B")
    scales = [scale]
    for k in range(iterations):
        product = growth * norm  # (I + R_k) W_k at scale 2^(f + s_k): entries <= column norms
        failure += _part(ring, d * c, product, cap, f"(I + R_{k}) W_{k}")
        if k == iterations - 1:
            break
        scale, norm = tracker.next_scale(product, f + scales[-1], scales[-1], r_square, k + 1)
        failure += _part(ring, d * d, r_square << (scales[-1] - scale), cap, f"R_{k}^2")
        scales.append(scale)
    return tuple(scales), failure


@dataclass(frozen=True)
class _Bounds:
    cap: int
    growth: int
    root: int

    def next_scale(self, norm_in: int, bits_in: int, limit: int, lifted: int, k: int) -> tuple[int, int]:
        """The largest scale ``s <= limit`` for W_k: its product and ``lifted << (limit - s)`` below 2^cap.

        ``norm_in`` bounds W_k's columns at scale ``2^bits_in`` before the
        truncation to ``s``, which adds at most one unit per entry (two, for
        the floor of the bound).
        """
        for scale in range(limit, -1, -1):
            norm = (norm_in >> (bits_in - scale)) + 2 * self.root
            if linalg.below(self.growth * norm, self.cap) and linalg.below(
                lifted << (limit - scale), self.cap
            ):
                return scale, norm
        raise InvalidArgumentError(
            f"iterate W_{k} cannot be kept below 2^{self.cap} at any scale: raise the budget"
        )


def _part(ring: Ring, count: int, bound: int, cap: int, what: str) -> float:
    if not linalg.below(bound, cap):
        raise InvalidArgumentError(
            f"the truncation of {what} could reach 2^{bound.bit_length()}, above 2^{cap}"
        )
    return linalg.truncation_failure(ring, count, bound)


async def solve_spd(
    ctx: PartyContext, a: ReplicatedShare, b: ReplicatedShare, system: SpdSystem
) -> ReplicatedShare:
    """Share of W with ``(A + l2 I) W = B`` at scale ``2^f`` (d x c, row-major); see the module docstring.

    Plans first (:func:`plan_solve`), so a refusal happens before any
    message. Then: one truncation of ``[I - alpha M | alpha B]``; K
    iterations of one product and one truncation. ``2K + 1`` rounds.
    """
    plan = plan_solve(ctx.ring, system)
    d, c = system.d, system.rhs_columns
    layout.require_size(a, d * d, "A")
    layout.require_size(b, d * c, "B")
    state = await _start(ctx, a, b, plan)
    for k in range(plan.iterations):
        state = await _iterate(ctx, state, plan, k)
    return state


async def _start(
    ctx: PartyContext, a: ReplicatedShare, b: ReplicatedShare, plan: SolvePlan
) -> ReplicatedShare:
    """``[R_0 | W_0]``: ``R_0 = I - alpha (A + l2 I)`` lifted to share W_0's shift; one truncation."""
    f, d, ring = plan.system.fractional_bits, plan.system.d, ctx.ring
    diagonal = (1 << (2 * f)) - plan.step * plan.l2_encoded
    r0 = layout.add_public_values(
        ctx.party, arithmetic.mul_public(a, -plan.step), layout.scaled_identity(ring, d, diagonal)
    )
    r0 = arithmetic.mul_public(r0, 1 << (f - plan.scales[0]))
    w0 = arithmetic.mul_public(b, plan.step)
    return await truncate(ctx, layout.join_columns(r0, w0, d), 2 * f - plan.scales[0])


async def _iterate(ctx: PartyContext, state: ReplicatedShare, plan: SolvePlan, k: int) -> ReplicatedShare:
    """``[R_{k+1} | W_{k+1}] = R_k [R_k | W_k] + [0 | W_k]``: one reshare, one truncation (last: W only)."""
    f, d = plan.system.fractional_bits, plan.system.d
    last = k == plan.iterations - 1
    scale, next_scale = plan.scales[k], f if last else plan.scales[k + 1]
    r, w = layout.split_columns(state, d, d)
    tag = ctx.allocate_tag()
    right = w if last else state
    terms_of = partial(_iteration_terms, d=d, f=f, lift=scale - next_scale, last=last)
    terms = await ctx.compute(d * right.size, terms_of, r, right, w)
    product = await arithmetic.reshare(ctx, terms, tag)
    return await truncate(ctx, product, f + scale - next_scale)


def _iteration_terms(
    r: ReplicatedShare, right: ReplicatedShare, w: ReplicatedShare, *, d: int, f: int, lift: int, last: bool
) -> RingArray:
    """Party i's terms of ``R [R | W] + [0 | 2^f W]`` (last: ``R W + 2^f W``), R's columns times ``2^lift``.

    Adding ``2^f`` times this party's *first* component of W adds ``2^f W`` in
    all: the three first components sum to W.
    """
    ring = r.ring
    terms = linalg.matmul_terms(r, d, d, right, right.size // d)
    plus_w = ring.mul_public(w.first, 1 << f)
    if last:
        return ring.add(terms, plus_w)
    r_part, w_part = layout.split_array_columns(terms, d, d)
    return layout.join_array_columns(ring.mul_public(r_part, 1 << lift), ring.add(w_part, plus_w), d)
