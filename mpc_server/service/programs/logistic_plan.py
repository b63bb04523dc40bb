"""The plan of ``logistic_regression.fit``: every scale and bound as exact integers, before any message.

Notation (module docstring of :mod:`.logistic`): N rows, d feature columns
plus the intercept's column of ones, working scale ``2^F`` for features,
labels, probabilities, gradients and weights, solver scale ``2^G`` for the
preconditioner ``V``, ``s = ceil(log2 N)``, momentum coefficients at
``2^MOMENTUM_BITS``. Encoded bounds below are exact Python integers.

* Features at ``2^F``: ``|x| <= X_b`` per block (the upload bound, rescaled);
  ``X^T X`` at ``2^(2F)`` is exact when ``N max X_b^2 < 2^(k-1)``.
* The run checks ``trace(X^T X) <= tau = floor(N d (17/16) 2^(2F))`` (one
  comparison, one opened bit); afterwards Cauchy-Schwarz gives
  ``|(X^T X)_ij| <= tau``, ``|sum_r x_rj| <= sqrt(N tau)`` and
  ``|sum_r x_rj r_r| <= sqrt(tau N) R`` for ``|r| <= R``.
* ``A = Z^T Z / (4 2^s) + D``: the raw block read at ``2^(2F+s+2)``, with
  ``D = l2 N / 2^s`` on the feature diagonal (encoded ``l2 N 2^(2F+2)``),
  truncated to ``2^G``. Its trace is at most ``(tau 2^-2F + N) / (4 2^s) + d
  l2 N / 2^s`` plus rounding: the solver's public ``t``. ``mu = l2 N / 2^(s+1)``
  (half the ridge term) sets its iteration count; ``B = I``.
* ``V``: entries at most ``(33/16)^K alpha + 1`` (the solver's column-norm
  growth, ``protocol.spd``).
* Weights ``|w| <= W`` (the clip), ``|v| <= 3 W`` (momentum at most 31/32);
  scores ``|u| <= (sum_b d_b X_b + 2^F) |v|`` at ``2^(2F)``: the sigmoid's input.
* Residuals ``|y - p| <= 2^F + 2``; the gradient's raw block at ``2^(2F+s)``
  is below ``max(sqrt(tau N), N 2^F) R + l2 N 2^F |v|``; one truncation to ``2^F``.
* ``w' = v + V g`` at ``2^(F+G)``: below ``|v| 2^G + (d+1) |V| |g|``; clipped to
  ``W 2^(F+G)`` (the clip's range: that plus ``W 2^(F+G)`` below ``2^(k-1)``).
* ``[w 2^h | (1 + beta) w - beta w_old]`` at ``2^(F+G+h)``: one truncation to ``2^F``.

The failure probabilities of every truncation (T iterations) and of the
solver add up to at most 2^-41, leaving the job service's output rescale its
own share of the job's 2^-40. The plan tries working scales from
``MAX_WORKING_BITS`` down and takes the first that meets every bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from fractions import Fraction

from mpc_core import bounds
from mpc_core.errors import InvalidArgumentError
from mpc_core.fixed_point import max_fractional_bits
from mpc_core.ring import Ring
from mpc_server.protocol import linalg, spd
from mpc_server.protocol.linalg import Fixed, Rescale
from mpc_server.protocol.sigmoid import SigmoidKind, SigmoidPlan, plan_sigmoid
from mpc_server.service.programs.base import PlanInputs, magnitude, single
from mpc_server.service.programs.decide import ScorePlan, plan_scores

TRACE_SLACK = Fraction(17, 16)
"""The features' mean square per column may be at most 1 + 1/16 (standardised columns have 1)."""
MOMENTUM_BITS = 5
BUDGET_LOG2 = -41.0
SOLVER_BUDGET_LOG2 = -43.0
MAX_WORKING_BITS = 28
MIN_WORKING_BITS = 18
MAX_SOLVER_BITS = 36
SOLVER_TOLERANCE = 0.01
"""V is a preconditioner: any ``0 < V <= H^-1`` converges; a 1% residual costs nothing."""
WEIGHT_DROPS = (0, 8, 16)
"""Bits ``logistic_regression.predict`` may truncate the weights by first, to lower the scores' scale."""
MIN_WEIGHT_BITS = 16


@dataclass(frozen=True)
class FitSpec:
    """The public facts a fit is planned from."""

    rows: int
    blocks: tuple[Fixed, ...]
    """Each feature block's scale and encoded bound."""
    widths: tuple[int, ...]
    label: Fixed
    l2: Fraction
    iterations: int

    @property
    def d(self) -> int:
        """Feature columns in all."""
        return sum(self.widths)


@dataclass(frozen=True)
class FitPlan:
    """A checked fit: scales, the per-step rescales and public constants, and the failure probability."""

    spec: FitSpec
    working_bits: int
    solver_bits: int
    divide_bits: int
    feature_rescales: tuple[Rescale, ...]
    label_rescale: Rescale
    trace_limit: int
    gram_rescale: Rescale
    ridge: int
    """``l2 N 2^(2F+2)``: the ridge term of A at the raw block's scale ``2^(2F+s+2)``."""
    system: spd.SpdSystem
    sigmoid: SigmoidPlan
    gradient_rescale: Rescale
    gradient_ridge: int
    """``l2 N 2^F``: times v (at 2^F) it is the ridge term of the gradient at ``2^(2F+s)``."""
    weight_limit: int
    """``W`` at scale ``2^(F+G)``."""
    momentum: tuple[tuple[int, int], ...]
    """``(2^h + b_t, b_t)`` with ``b_t = round(beta_t 2^h)``, per iteration."""
    update_rescale: Rescale
    solver_failure: float
    failure: float

    @property
    def weight_bound(self) -> int:
        """``|encoded weight| <= W 2^F + 2`` at the working scale."""
        return (self.weight_limit >> self.solver_bits) + 2


def weight_limit_bits(l2: Fraction) -> int:
    """``W = 2^b`` with ``W >= 2 sqrt(2 ln 2 / l2)``: twice the regularised optimum's weight bound.

    At the optimum the mean loss plus ``l2/2 |w|^2`` is at most its value at
    ``w = 0``, ``ln 2``, so every feature weight is at most ``sqrt(2 ln 2 / l2)``.
    """
    return max(0, math.ceil(math.log2(2 * math.sqrt(2 * math.log(2) / float(l2)))))


def plan_fit(ring: Ring, spec: FitSpec) -> FitPlan:
    """The plan at the largest working and solver scales that meet every bound.

    Raises:
        InvalidArgumentError: no scale works; the first (largest) scale's reason is given.
    """
    if spec.l2 <= 0:
        raise InvalidArgumentError("logistic_regression.fit needs l2 > 0 (the solver and the bounds use it)")
    first: InvalidArgumentError | None = None
    for working in range(MAX_WORKING_BITS, MIN_WORKING_BITS - 1, -1):
        for solver in range(MAX_SOLVER_BITS, working - 1, -1):
            try:
                return _plan_at(ring, spec, working, solver)
            except InvalidArgumentError as exc:
                first = first or exc
    raise InvalidArgumentError(
        f"logistic_regression.fit fits no working scale: at 2^{MAX_WORKING_BITS}, {first}"
    )


def _plan_at(ring: Ring, spec: FitSpec, f: int, g: int) -> FitPlan:
    """The plan at working scale ``2^f`` and solver scale ``2^g``, or a refusal."""
    n, t = spec.rows, spec.iterations
    s = max(n - 1, 0).bit_length()
    feature_rescales, label_rescale, tau = _plan_inputs(ring, spec, f)
    gram_rescale, ridge, system, solve = _plan_preconditioner(ring, spec, (f, g, s, tau))
    x_bounds = tuple(r.target.bound for r in feature_rescales)
    steps = _plan_steps(
        ring, spec, (f, g, s, tau), x_bounds=x_bounds, label_bound=label_rescale.target.bound, solve=solve
    )
    failure = sum(r.failure for r in feature_rescales) + label_rescale.failure + gram_rescale.failure
    failure += (t - 1) * steps.sigmoid.failure + t * (steps.gradient.failure + steps.update.failure)
    total = failure + solve.failure
    linalg.require_budget(total, BUDGET_LOG2, f"the fit's {t} iterations over {n} rows")
    return FitPlan(
        spec, f, g, s, feature_rescales, label_rescale, tau, gram_rescale, ridge, system, steps.sigmoid,
        steps.gradient, steps.gradient_ridge, steps.limit, steps.momentum, steps.update, solve.failure, total,
    )  # fmt: skip


def _plan_inputs(ring: Ring, spec: FitSpec, f: int) -> tuple[tuple[Rescale, ...], Rescale, int]:
    """Features and label at ``2^f``; the exact Gram block and its trace check fit the ring."""
    n, d = spec.rows, spec.d
    feature_rescales = tuple(
        linalg.plan_rescale(ring, n * w, block, f, what="a feature block", budget_log2=BUDGET_LOG2)
        for block, w in zip(spec.blocks, spec.widths, strict=True)
    )
    label_rescale = linalg.plan_rescale(ring, n, spec.label, f, what="the label", budget_log2=BUDGET_LOG2)
    x_bounds = [r.target.bound for r in feature_rescales]
    bounds.require_fits(ring, n * max(x_bounds) ** 2, 2 * f, "the Gram block of the features")
    tau = math.floor(n * d * TRACE_SLACK * (1 << (2 * f)))
    trace_max = sum(n * w * x * x for w, x in zip(spec.widths, x_bounds, strict=True))
    bounds.require_fits(ring, trace_max + tau, 2 * f, "the trace of the Gram block minus its limit")
    return feature_rescales, label_rescale, tau


def _plan_preconditioner(
    ring: Ring, spec: FitSpec, scales: tuple[int, int, int, int]
) -> tuple[Rescale, int, spd.SpdSystem, spd.SolvePlan]:
    """``A = Z^T Z / (4 2^s) + D`` truncated to ``2^g`` and the Newton-Schulz plan for ``A V = I``."""
    (f, g, s, tau), n, d = scales, spec.rows, spec.d
    ridge = math.floor(spec.l2 * n * (1 << (2 * f + 2)))
    a_raw = max(tau, (math.isqrt(n * tau) + 1) << f, n << (2 * f)) + ridge
    source = Fixed(2 * f + s + 2, a_raw)
    what = "the Boehning matrix"
    gram_rescale = linalg.plan_rescale(ring, (d + 1) ** 2, source, g, what=what, budget_log2=BUDGET_LOG2)
    system = _system(spec, f, g, s, tau)
    return gram_rescale, ridge, system, spd.plan_solve(ring, system)


@dataclass(frozen=True)
class _Steps:
    sigmoid: SigmoidPlan
    gradient: Rescale
    gradient_ridge: int
    limit: int
    momentum: tuple[tuple[int, int], ...]
    update: Rescale


def _plan_steps(
    ring: Ring,
    spec: FitSpec,
    scales: tuple[int, int, int, int],
    *,
    x_bounds: tuple[int, ...],
    label_bound: int,
    solve: spd.SolvePlan,
) -> _Steps:
    """One iteration's bounds (module docstring): sigmoid input, gradient, update, clip, momentum."""
    (f, g, s, tau), n, d, h = scales, spec.rows, spec.d, MOMENTUM_BITS
    w_bits = weight_limit_bits(spec.l2)
    v = (3 << (w_bits + f)) + 4
    u = (sum(w * x for w, x in zip(spec.widths, x_bounds, strict=True)) + (1 << f)) * v
    sigmoid = plan_sigmoid(ring, n, Fixed(2 * f, u), SigmoidKind.POLY13, out_bits=f, budget_log2=BUDGET_LOG2)
    residual = label_bound + (1 << f)  # |y - p| with 0 <= p <= 2^F
    gradient_ridge = math.floor(spec.l2 * n * (1 << f))
    g_raw = max(math.isqrt(n * tau) + 1, n << f) * residual + gradient_ridge * v
    gradient = linalg.plan_rescale(
        ring, d + 1, Fixed(2 * f + s, g_raw), f, what="the gradient", budget_log2=BUDGET_LOG2
    )
    v_entry = math.ceil(((Fraction(33, 16) ** solve.iterations) * solve.step / (1 << g) + 1) * (1 << g))
    step = v * (1 << g) + (d + 1) * v_entry * gradient.target.bound
    limit = 1 << (w_bits + f + g)
    bounds.require_fits(ring, step + limit, f + g, "the weight update minus its clip bound")
    momentum = tuple(_momentum(t, h) for t in range(spec.iterations))
    w_old = ((limit >> g) + 2) << g  # the previous weights (at 2^F) lifted to 2^(F+G)
    combined = max(limit << h, *(b1 * limit + b0 * w_old for b1, b0 in momentum))
    update = linalg.plan_rescale(
        ring, 2 * (d + 1), Fixed(f + g + h, combined), f, what="the weight update", budget_log2=BUDGET_LOG2
    )
    return _Steps(sigmoid, gradient, gradient_ridge, limit, momentum, update)


def _system(spec: FitSpec, f: int, g: int, s: int, tau: int) -> spd.SpdSystem:
    """``(A + 0 I) V = I`` at ``2^G``: the public trace bound and the ridge term's eigenvalue bound."""
    n, d = spec.rows, spec.d
    ridge = spec.l2 * n / (1 << s)
    trace = (Fraction(tau, 1 << (2 * f)) + n) / (4 << s) + d * ridge + Fraction(4 * (d + 1), 1 << g)
    return spd.SpdSystem(
        d + 1,
        g,
        trace,
        1 << g,
        rhs_columns=d + 1,
        min_eigenvalue=ridge / 2,
        tolerance=SOLVER_TOLERANCE,
        budget_log2=SOLVER_BUDGET_LOG2,
    )


def _momentum(t: int, h: int) -> tuple[int, int]:
    """Nesterov's ``beta = (k - 1) / (k + 2)`` for step ``k = t + 1``, rounded to ``2^-h``."""
    b = round(Fraction(t, t + 3) * (1 << h))
    return (1 << h) + b, b


@dataclass(frozen=True)
class ProbabilityPlan:
    """``sigmoid(X w + c)``: the scores, optionally after truncating the weights, and the sigmoid."""

    scores: ScorePlan
    weights: Rescale | None
    """Truncate the weights first (``d`` values, one round), or not."""
    sigmoid: SigmoidPlan


def plan_probabilities(ring: Ring, inputs: PlanInputs, program: str) -> ProbabilityPlan:
    """The polynomial sigmoid of the scores at the largest working scale (up to 32) that fits.

    The sigmoid truncates ``6.5 2^S`` values, ``S`` the scores' scale, which
    for millions of rows at ``S = 64`` exceeds the budget at any working
    scale; truncating the weights first by 8 or 16 bits (exact bounds, a
    rounding of ``2^-(f_w - 8)``) lowers ``S``.

    Raises:
        InvalidArgumentError: nothing fits; the first reason is given.
    """
    weights, first = single(inputs, "weights"), None
    for drop in WEIGHT_DROPS:
        rescale, adjusted = None, inputs
        if drop:
            if weights.fractional_bits - drop < MIN_WEIGHT_BITS:
                break
            source = Fixed(weights.fractional_bits, magnitude(weights))
            rescale = linalg.plan_rescale(
                ring, weights.size, source, source.fractional_bits - drop, what="weights"
            )
            target = rescale.target
            lowered = replace(
                weights,
                fractional_bits=target.fractional_bits,
                magnitude_bits=bounds.bound_bits(target.bound),
            )
            adjusted = {**inputs, "weights": (lowered,)}
        score = plan_scores(ring, adjusted, program)
        for scale in range(min(32, max_fractional_bits(ring)), MIN_WORKING_BITS - 3, -1):
            try:
                plan = plan_sigmoid(
                    ring,
                    score.rows,
                    Fixed(score.natural_bits, score.bound),
                    out_bits=scale,
                    budget_log2=BUDGET_LOG2 - 0.1,
                )
                return ProbabilityPlan(score, rescale, plan)
            except InvalidArgumentError as exc:
                first = first or exc
    raise InvalidArgumentError(f"the probabilities of {program} cannot be computed: {first}")
