"""Reciprocal and reciprocal square root of shared values in a public range ``[a, b]``, ``0 < a < b``.

For means, variances and correlations (``stats.summary``): ``1/x`` and
``1/sqrt(x)`` elementwise, e.g. a correlation ``cov * rsqrt(var_x var_y)``.

Method: Newton-Raphson from a public start, in two phases.

1. *Coupled phase* (Goldschmidt's form of Newton's iteration; Goldschmidt,
   MIT thesis 1964; Markstein, IBM J. R&D 1990). With the public start
   ``y_0 = 1/b`` (reciprocal) or ``1/sqrt(b)`` (rsqrt) the error
   ``e = 1 - x y`` (``1 - x y^2``) lies in ``[0, 1 - a/b]``, and it is carried
   along instead of recomputed: reciprocal ``y <- y (1 + e)``, ``e <- e^2``
   (both products need only e: one product round and one truncation round
   per iteration); rsqrt ``y <- y (1 + e/2)``, ``e <- e^2 (3 + e) / 4`` (two of
   each). The start ``1/b`` rather than the optimal ``2/(a+b)`` keeps ``e >= 0``,
   so rounding errors made for x near b are not amplified (with ``e_0`` near
   -1 they are, by ``b/a``). ``K`` is the least count with ``e_max^(2^K)``
   (resp. its rsqrt analogue) below ``2^-(f/2 + 2)``.
2. *One self-correcting Newton step* from x itself: ``y <- y (2 - x y)``
   (reciprocal, 2 products) or ``y <- y (3 - x y^2) / 2`` (rsqrt, 3 products),
   which squares the coupled phase's accumulated rounding error.

Error (for ``a <= x <= b``; tested over the range). With ``kappa = b/a`` and
``s`` the scale of y, the coupled phase ends with ``|1 - x y^p| <= eps =
e_K + 4 (2 sqrt(b)^p... 2^-s + kappa 2^-f)`` (see :func:`plan_reciprocal`), and the result
satisfies ``|y - x^-p| <= rho x^-p + 2^(1-f)`` with ``rho = eps^2 + 2^(2-f)``
(reciprocal) or ``eps^2 + (4 + 1.25/sqrt(a)) 2^-f`` (rsqrt, whose last step
rounds ``x y ~ sqrt(x)`` to a unit ``2^-f``): a relative error plus one or two
units of the output scale. Plans refuse ranges with ``eps > 1/4``.

Cost for n values: reciprocal ``2K + 5`` rounds, ``n (2K + 1)`` elements per
party in reshares and ``n (2K + 2)`` truncated (sent by party 1); rsqrt ``4K +
5`` rounds, ``n (3K + 1)`` and ``n (3K + 2)``. Bounds assume ``a <= x <= b``:
outside the range both the error and the failure bound are void.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from mpc_core.errors import InvalidArgumentError
from mpc_core.ring import Ring, RingArray
from mpc_core.sharing import ReplicatedShare
from mpc_server.protocol import arithmetic, layout, linalg
from mpc_server.protocol.context import PartyContext
from mpc_server.protocol.linalg import DEFAULT_BUDGET_LOG2, Real
from mpc_server.protocol.truncation import truncate

MARGIN = Fraction(5, 4)
"""Bounds allow ``|1 - x y^p| <= 1/4`` on top of the exact values."""


@dataclass(frozen=True)
class InversePlan:
    """A checked ``x^-1`` or ``x^-1/2`` of ``count`` values in ``[lower, upper]`` at scale ``2^f``."""

    power: int
    """1 for the reciprocal, 2 for rsqrt (``y^power x = 1``)."""
    count: int
    lower: Fraction
    upper: Fraction
    fractional_bits: int
    y_bits: int
    """The scale of y during the iteration (``<= f``, lower when ``1/a`` is large)."""
    iterations: int
    start: int
    """``y_0`` at scale ``2^y_bits``."""
    start_factor: int
    """``y_0^power`` at scale ``2^y_bits`` (reciprocal) or ``2^f`` (rsqrt), rounded down."""
    coupled_error: float
    """``eps``: the bound on ``|1 - x y^p|`` after the coupled phase."""
    relative_error: float
    """The relative part of the error bound (module docstring)."""
    failure: float

    @property
    def absolute_error(self) -> float:
        """``2^(1-f)``: the absolute part of the error bound."""
        return 2.0 ** (1 - self.fractional_bits)

    @property
    def rounds(self) -> int:
        """Communication rounds."""
        return 2 * self.iterations + 5 if self.power == 1 else 4 * self.iterations + 5

    @property
    def reshare_elements(self) -> int:
        """Elements every party sends in reshares."""
        return self.count * (2 * self.iterations + 1 if self.power == 1 else 3 * self.iterations + 1)

    @property
    def truncated_elements(self) -> int:
        """Elements party 1 sends in truncations."""
        return truncated_count(self.power, self.count, self.iterations)


def truncated_count(power: int, count: int, iterations: int) -> int:
    """Values truncated: ``n (2K + 2)`` (reciprocal) or ``n (3K + 2)`` (rsqrt)."""
    return count * ((2 if power == 1 else 3) * iterations + 2)


def _contract(power: int) -> Callable[[float], float]:
    """One coupled step's map of the error ``e``: ``e^2`` or ``e^2 (3 + e) / 4``."""
    return (lambda e: e * e) if power == 1 else (lambda e: e * e * (3 + e) / 4)


def _iteration_count(power: int, e_max: float, fractional_bits: int) -> int:
    target, step, e, k = 2.0 ** -(fractional_bits / 2 + 2), _contract(power), e_max, 0
    while e > target:
        e, k = step(e), k + 1
        if k > 4 * fractional_bits:
            raise InvalidArgumentError(
                "the range is too wide for the scale: the iteration would not converge"
            )
    return max(k, 1)


def plan_reciprocal(
    ring: Ring, count: int, lower: Real, upper: Real, fractional_bits: int, *,
    iterations: int | None = None, budget_log2: float = DEFAULT_BUDGET_LOG2,
) -> InversePlan:  # fmt: skip
    """Plan ``1/x`` for ``count`` shared values at scale ``2^f`` with ``lower <= x <= upper``.

    Raises:
        InvalidArgumentError: a bad range; the coupled phase's error bound
            above 1/4; or truncations failing with probability above the budget.
    """
    return _plan(
        ring,
        1,
        count,
        Fraction(lower),
        Fraction(upper),
        f=fractional_bits,
        iterations=iterations,
        budget=budget_log2,
    )


def plan_rsqrt(
    ring: Ring, count: int, lower: Real, upper: Real, fractional_bits: int, *,
    iterations: int | None = None, budget_log2: float = DEFAULT_BUDGET_LOG2,
) -> InversePlan:  # fmt: skip
    """Plan ``1/sqrt(x)`` for ``count`` shared values at scale ``2^f`` with ``lower <= x <= upper``.

    Raises:
        InvalidArgumentError: as :func:`plan_reciprocal`.
    """
    return _plan(
        ring,
        2,
        count,
        Fraction(lower),
        Fraction(upper),
        f=fractional_bits,
        iterations=iterations,
        budget=budget_log2,
    )


def _plan(
    ring: Ring,
    power: int,
    count: int,
    a: Fraction,
    b: Fraction,
    *,
    f: int,
    iterations: int | None,
    budget: float,
) -> InversePlan:
    if not 0 < a < b or count < 1 or f < 2:
        raise InvalidArgumentError(
            f"need 0 < lower < upper, count >= 1 and f >= 2; got [{a}, {b}], {count}, {f}"
        )
    kappa = float(b / a)
    k = iterations if iterations is not None else _iteration_count(power, 1.0 - 0.999 / kappa, f)
    if k < 1:
        raise InvalidArgumentError(f"iterations must be at least 1, got {k}")
    cap = linalg.magnitude_cap(ring, truncated_count(power, count, k), budget)
    y_max = MARGIN * (1 / a if power == 1 else Fraction(1) / _sqrt_floor(a))  # y_k <= (1 + 1/4) x^(-1/p)
    x_y = MARGIN * (_sqrt_ceil(b) if power == 2 else 1)  # x y in the last step (~ sqrt(x), or ~ 1)
    top = max(2 * y_max, x_y)  # the largest value a product involving y reaches
    s = next((s for s in range(f, -1, -1) if linalg.below(math.ceil(top * (1 << (f + s))), cap)), -1)
    if s < 1:
        raise InvalidArgumentError(f"1/x^(1/{power}) up to {float(y_max):.4g} cannot be kept below 2^{cap}")
    start, factor = _start(power, b, s, f)
    eps = _coupled_error(power, a, b, factor, k=k, s=s, f=f)
    if eps > 0.25:
        raise InvalidArgumentError(
            f"[{float(a):g}, {float(b):g}] is too wide for scale 2^{f}: the iteration's error bound "
            f"is {eps:.3g}, above 1/4"
        )
    failure = _failure(ring, power, count, k, f=f, s=s, top=top, factor=factor, cap=cap)
    linalg.require_budget(failure, budget, f"{'reciprocal' if power == 1 else 'rsqrt'} of {count} values")
    # the final step rounds x y (reciprocal) or x y ~ sqrt(x) (rsqrt) to 2^-f: relative 2^-f, or 2^-f y / 2
    rounding = 4.0 if power == 1 else 4.0 + float(y_max)
    return InversePlan(power, count, a, b, f, s, k, start, factor, eps, eps**2 + rounding * 2.0**-f, failure)


def _coupled_error(power: int, a: Fraction, b: Fraction, factor: int, *, k: int, s: int, f: int) -> float:
    """``eps``: ``e_max^(2^K)`` (or its rsqrt analogue) plus the rounding term (module docstring)."""
    e_k = 1.0 - float(Fraction(factor, 1 << (s if power == 1 else f)) * a)  # e_max from the actual start
    for _ in range(k):
        e_k = _contract(power)(e_k)
    root_b = float(_sqrt_ceil(b)) if power == 2 else float(b)
    return e_k + 4 * (power * root_b * 2.0**-s + (float(b / a) + (power - 1) * float(b)) * 2.0**-f)


def _sqrt_floor(value: Fraction) -> Fraction:
    """A lower bound on ``sqrt(value)`` (60 bits)."""
    return Fraction(math.isqrt(math.floor(value * (1 << 120))), 1 << 60)


def _sqrt_ceil(value: Fraction) -> Fraction:
    """An upper bound on ``sqrt(value)``."""
    return _sqrt_floor(value) + Fraction(1, 1 << 59)


def _start(power: int, b: Fraction, s: int, f: int) -> tuple[int, int]:
    """``y_0 <= b^(-1/p)`` at scale ``2^s`` and ``y_0^p`` rounded down (scale ``2^s``, rsqrt ``2^f``)."""
    if power == 1:
        y0 = math.floor(Fraction(1 << s) / b)
        return y0, y0
    y0 = math.isqrt(math.floor(Fraction(1 << (2 * s)) / b))
    return y0, (y0 * y0 << f) >> (2 * s)


def _failure(
    ring: Ring, power: int, n: int, k: int, *, f: int, s: int, top: Fraction, factor: int, cap: int
) -> float:
    """Union bound over every truncation (each input below ``2^cap`` by construction, checked again)."""
    e_square = ((1 << f) + (1 << (f - 4))) ** 2  # e^2 at 2^(2f), |e| <= 1 + 2^-4
    e_bound = 2 * e_square * (5 if power == 2 else 1)  # rsqrt: 2 e^2 (lifted) and e^2 (3 + e) < 5 e^2
    y_bound = math.ceil(top * (1 << (f + s)))
    start_bound = ((1 << (f + s)) + factor) if power == 1 else ((1 << (2 * f)) + factor)
    parts = [
        (n, start_bound),
        (n * (k - 1) * power, e_bound),
        (n * k, y_bound),
        (n * (power + 1), y_bound),
    ]
    for _, bound in parts:
        if not linalg.below(bound, cap):
            raise InvalidArgumentError(f"a truncated value could reach 2^{bound.bit_length()}, above 2^{cap}")
    return sum(linalg.truncation_failure(ring, count, bound) for count, bound in parts)


async def reciprocal(ctx: PartyContext, x: ReplicatedShare, plan: InversePlan) -> ReplicatedShare:
    """Share of ``1/x`` at scale ``2^f`` for x in the plan's range (module docstring): ``2K + 5`` rounds."""
    _require(plan, x, 1)
    f, s = plan.fractional_bits, plan.y_bits
    e = await truncate(ctx, _start_error(ctx, x, plan, f + s), s)  # e_0 = 1 - y_0 x at 2^(f+s) -> 2^f
    y = layout.public_share(ctx.party, np.repeat(ctx.ring.from_ints([plan.start]), plan.count))
    for k in range(plan.iterations):
        last = k == plan.iterations - 1
        e, y = await _coupled_step(ctx, e, y, lift_e=0, shift=f, y_factor=1 << f, last=last)
    p = await truncate(ctx, await arithmetic.mul(ctx, x, y), s)  # x y at 2^f
    two_minus_p = arithmetic.add_public(ctx.party, arithmetic.mul_public(p, -1), 2 << f)
    return await truncate(ctx, await arithmetic.mul(ctx, y, two_minus_p), s)


async def rsqrt(ctx: PartyContext, x: ReplicatedShare, plan: InversePlan) -> ReplicatedShare:
    """Share of ``1/sqrt(x)`` at scale ``2^f`` for x in the plan's range; ``4K + 5`` rounds."""
    _require(plan, x, 2)
    f, s = plan.fractional_bits, plan.y_bits
    e = await truncate(ctx, _start_error(ctx, x, plan, 2 * f), f)  # e_0 = 1 - y_0^2 x at 2^(2f) -> 2^f
    y = layout.public_share(ctx.party, np.repeat(ctx.ring.from_ints([plan.start]), plan.count))
    for k in range(plan.iterations):
        last = k == plan.iterations - 1
        e2, y = await _coupled_step(ctx, e, y, lift_e=1, shift=f + 1, y_factor=2 << f, last=last)
        if not last:  # e <- e^2 (3 + e) / 4: the product at 2^(2f) read at 2^(2f+2)
            e = await truncate(
                ctx, await arithmetic.mul(ctx, e2, arithmetic.add_public(ctx.party, e, 3 << f)), f + 2
            )
    u = await truncate(ctx, await arithmetic.mul(ctx, x, y), s)  # x y at 2^f
    p = await truncate(ctx, await arithmetic.mul(ctx, u, y), s)  # x y^2 at 2^f
    three_minus_p = arithmetic.add_public(ctx.party, arithmetic.mul_public(p, -1), 3 << f)
    return await truncate(ctx, await arithmetic.mul(ctx, y, three_minus_p), s + 1)


def _require(plan: InversePlan, x: ReplicatedShare, power: int) -> None:
    if plan.power != power:
        raise InvalidArgumentError("the plan is for the other function (plan_reciprocal vs plan_rsqrt)")
    layout.require_size(x, plan.count, "x")


def _start_error(ctx: PartyContext, x: ReplicatedShare, plan: InversePlan, bits: int) -> ReplicatedShare:
    """``1 - y_0^p x`` at scale ``2^bits``: ``2^bits - factor * x`` (local)."""
    return arithmetic.add_public(ctx.party, arithmetic.mul_public(x, -plan.start_factor), 1 << bits)


async def _coupled_step(
    ctx: PartyContext,
    e: ReplicatedShare,
    y: ReplicatedShare,
    *,
    lift_e: int,
    shift: int,
    y_factor: int,
    last: bool,
) -> tuple[ReplicatedShare, ReplicatedShare]:
    """``[e^2 | e y + y_factor y]`` (one product, one truncation by ``shift``); the last step only y."""
    tag = ctx.allocate_tag()
    n = e.size
    terms = await ctx.compute(2 * n, _step_terms, e, y, lift_e, y_factor, last)
    product = await truncate(ctx, await arithmetic.reshare(ctx, terms, tag), shift)
    if last:
        return e, product
    halves = [np.split(component, 2) for component in (product.first, product.second)]
    return ReplicatedShare(halves[0][0], halves[1][0]), ReplicatedShare(halves[0][1], halves[1][1])


def _step_terms(e: ReplicatedShare, y: ReplicatedShare, lift_e: int, y_factor: int, last: bool) -> RingArray:
    """Party i's terms of ``[2^lift_e e^2 | e y + y_factor y]`` (or only the second half)."""
    ring = e.ring
    y_terms = ring.add(arithmetic.mul_terms(e, y), ring.mul_public(y.first, y_factor))
    if last:
        return y_terms
    e_terms = ring.mul_public(arithmetic.mul_terms(e, e), 1 << lift_e)
    return np.concatenate([e_terms, y_terms])
