"""The checked plan of ``linear_regression.fit``: scales, bounds and the failure budget, exactly.

Pure, and exact (Python ints and ``Fraction``): every server derives the
same plan from the datasets' public summaries before any message. The steps
are those of :mod:`.linear_fit`; this module fixes their scales and proves
their bounds. Imports only the core and the protocol layer's planners.

Budget. A job's truncations may fail with probability at most 2^-40 in all
(union bound, ``mpc_core.bounds``). The steps get fixed shares: the features
2^-43, the means 2^-47, the Gram block 2^-43, the solver 2^-40.75, the
solution's rescale 2^-47 and the intercept 2^-43, which sum to 0.985 *
2^-40; :attr:`FitPlan.failure` adds up what they actually spend.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import TypeVar

from mpc_core import bounds
from mpc_core.errors import InvalidArgumentError
from mpc_core.ring import Ring
from mpc_server.protocol import linalg, spd
from mpc_server.protocol.linalg import Fixed, Rescale

FEATURES_BUDGET, MEANS_BUDGET, GRAM_BUDGET, SOLVER_BUDGET = -43.0, -47.0, -43.0, -40.75
TAIL_BUDGET, INTERCEPT_BUDGET = -47.0, -43.0
MIN_WORK_BITS = 12
"""The columns' working scale ``2^p`` is at least this (below: too many rows for the ring)."""
SOLVER_BITS = (32, 31, 33, 34, 35, 36)
"""The solver's scales ``2^F`` in order of preference; the first reaching the most of the count wins
(measured: a unit above 2^-31 costs ill-conditioned systems, a finer one leaves the iterates fewer bits)."""
MIN_LAST_ITERATE_BITS = 24
"""The default count keeps the solver's last iterate at ``2^24`` or finer (measured: 2^21 loses 1e-4)."""
SINGLE_RANGE_BITS, BLOCK_RANGE_BITS = 10, 14
"""The equilibration scales a column by up to 2^10 (a block of one column) or 2^14 (of several)."""
MEANS_BIAS_BITS = 6
"""The intercept's dot product gives the means 2^6 more resolution than ``w~`` (``|mu~| <= 1``, measured)."""
RIDGE_TOLERANCE = 1e-9
"""With ``l2 > 0`` the default count converges to this relative residual (as far as the scale allows)."""

_T = TypeVar("_T")


@dataclass(frozen=True)
class Column:
    """A block (or the label): ``x~ = x / 2^exponent`` is its encodings read at ``2^read_bits``.

    ``lift = p - read_bits`` lifts them to ``2^p`` (negative: truncates them).
    """

    columns: int
    magnitude_bits: int
    fractional_bits: int
    shrink: int = 0
    range_bits: int = SINGLE_RANGE_BITS
    lift: int = 0
    bound: int = 0
    """Bound on ``|x~|`` encoded at ``2^p``."""

    @property
    def read_bits(self) -> int:
        """``m + shrink``."""
        return self.magnitude_bits + self.shrink

    @property
    def exponent(self) -> int:
        """``e``: ``x = 2^e x~``."""
        return self.magnitude_bits - self.fractional_bits + self.shrink


@dataclass(frozen=True)
class Group:
    """Elements truncated together: lifted by ``lifts`` first, then truncated by ``shift``."""

    indices: tuple[int, ...]
    lifts: tuple[int, ...]
    shift: int
    failure: float


@dataclass(frozen=True)
class VectorRescale:
    """Elements from their own scales to their own targets: ``lifts`` (local), then the groups."""

    lifts: tuple[int, ...]
    groups: tuple[Group, ...]
    bounds: tuple[int, ...]
    """Per element, its bound at its target scale."""
    failure: float


@dataclass(frozen=True)
class Intercept:
    """``c = 2^e_y (mu~_y - w~ . mu~_x)`` from ``w~`` at ``2^r`` and the means at ``2^q``."""

    r: int
    q: int
    final: Rescale | None
    """The truncation to the output scale; None: a lift by ``lift`` bits (exact)."""
    lift: int
    bound: int


@dataclass(frozen=True)
class Front:
    """The steps before the solver, at the working scale ``2^p``."""

    work_bits: int
    columns: tuple[Column, ...]
    """The feature blocks, then the label."""
    shrink: Rescale | None
    shrink_bits: int
    mean_factor: int
    mean: Rescale | None
    mean_bounds: tuple[int, ...]
    ridge: tuple[int, ...]
    """Per feature column: ``l2 4^-e_j`` at the raw scale ``2^(2p)``, added to the Gram diagonal."""
    diagonal: tuple[int, ...]
    """Per feature column: the bound on its raw diagonal entry, ridge included."""
    thresholds: tuple[int, ...]
    """Per feature column: ``diagonal_j / 4^k`` for k = 1..L (0 beyond the column's range)."""
    gram_raw: Fixed

    @property
    def range_bits(self) -> tuple[int, ...]:
        """Per feature column: ``r_j <= 2^range_bits``."""
        return tuple(c.range_bits for c in self.columns[:-1] for _ in range(c.columns))


@dataclass(frozen=True)
class FitPlan:
    """Every decision of a fit, made once in ``plan`` (see :mod:`.linear_fit`)."""

    rows: int
    d: int
    front: Front
    gram: Rescale
    system: spd.SpdSystem
    solve: spd.SolvePlan
    tail: VectorRescale
    """``[w~ to the weights' scale | w~ to 2^r | means to 2^q]`` (the last two with an intercept)."""
    intercept: Intercept | None
    output_bits: int

    @property
    def weights_bound(self) -> int:
        """Bound on the weights at the output scale."""
        return max(self.tail.bounds[: self.d])

    @property
    def failure(self) -> float:
        """The job's summed truncation failure probability."""
        parts = [self.gram, self.front.shrink, self.front.mean, self.intercept and self.intercept.final]
        return self.solve.failure + self.tail.failure + sum(p.failure for p in parts if p)


def plan_fit(  # noqa: PLR0917 - the fit's inputs, all public
    ring: Ring, rows: int, blocks: Sequence[Column], label: Column, l2: Fraction, intercept: bool,
    iterations: int, output_bits: int,
) -> FitPlan:  # fmt: skip
    """The checked plan: the largest working scale ``2^p``, then the best solver scale ``2^F``.

    ``iterations`` 0 picks the count: with ``l2 > 0`` the least that converges
    to :data:`RIDGE_TOLERANCE` on the public bounds, without (OLS) the most
    that keep the last iterate at ``2^24`` or finer; at most that either way.

    Raises:
        InvalidArgumentError: no scale meets the bounds and the budget (the
            message names the step that fails).
    """
    d = sum(block.columns for block in blocks)
    work = range((ring.bits - 2) // 2, MIN_WORK_BITS - 1, -1)
    (front,) = _attempts(lambda p: plan_front(ring, rows, d, (*blocks, label), p, intercept, l2), work, True)
    plans = _attempts(lambda f: _plan_from(ring, rows, d, front, iterations, output_bits, f), SOLVER_BITS)
    return max(plans, key=lambda pair: min(pair[0].solve.iterations, pair[1]))[0]  # the first of the best


def _attempts(plan: Callable[[int], _T], options: Sequence[int], first: bool = False) -> list[_T]:
    """The options' plans (only the first with ``first``); none: the preferred's refusal.

    The preferred refusal is the first option's, or with ``first`` the last's (the most permissive).
    """
    planned: list[_T] = []
    errors: list[InvalidArgumentError] = []
    for option in options:
        try:
            planned.append(plan(option))
        except InvalidArgumentError as exc:
            errors.append(exc)
            continue
        if first:
            break
    if not planned:
        raise errors[-1 if first else 0]
    return planned


def plan_front(  # noqa: PLR0917 - the shapes and columns of the fit
    ring: Ring, rows: int, d: int, columns: Sequence[Column], p: int, intercept: bool, l2: Fraction
) -> Front:
    """Working columns at ``2^p``, their means, the raw centred Gram block's bound, the thresholds."""
    placed, shrink, top = _place(ring, rows, columns, p)
    column_bounds = [c.bound for c in placed for _ in range(c.columns)]
    largest = max(column_bounds)
    delta, factor, mean, mean_bounds = 0, 0, None, tuple[int, ...]()
    if intercept:  # mu' = sum * K / 2^T: within delta units of the exact means
        shift = max(0, (rows * largest).bit_length() - 1)
        factor = ((1 << (shift + 1)) + rows) // (2 * rows)
        source = Fixed(p + shift, rows * largest * factor)
        mean = linalg.plan_rescale(ring, d + 1, source, p, what="the column means", budget_log2=MEANS_BUDGET)
        off = Fraction(largest * abs(factor * rows - (1 << shift)), 1 << shift)
        delta = 1 + -(-off.numerator // off.denominator)
        mean_bounds = tuple(((rows * b * factor) >> shift) + 2 for b in column_bounds)
    # Centred at mu': sum (x - mu')^2 <= sum x^2 + N delta^2; off the diagonal, Cauchy-Schwarz.
    squares = [rows * (b * b + delta * delta) for b in column_bounds]
    exponents = [c.exponent for c in placed[:-1] for _ in range(c.columns)]
    ridge = tuple(round(l2 * Fraction(2) ** (2 * p - 2 * e)) for e in exponents)
    diagonal = tuple(square + extra for square, extra in zip(squares, ridge, strict=False))
    raw = Fixed(2 * p + (rows - 1).bit_length(), max(*diagonal, squares[-1]))
    bounds.require_fits(ring, raw.bound, raw.fractional_bits, f"the Gram block over {rows} rows")
    count = d * (d + 1)
    linalg.require_budget(
        linalg.truncation_failure(ring, count, raw.bound), GRAM_BUDGET,
        f"truncating the Gram block ({count} values up to {bounds.describe(raw.bound, raw.fractional_bits)})",
    )  # fmt: skip
    ranges = [c.range_bits for c in placed[:-1] for _ in range(c.columns)]
    thresholds = tuple(
        x >> (2 * k) if k <= bits else 0
        for x, bits in zip(diagonal, ranges, strict=True)
        for k in range(1, max(ranges) + 1)
    )
    return Front(p, tuple(placed), shrink, top, factor, mean, mean_bounds, ridge, diagonal, thresholds, raw)


def _place(
    ring: Ring, rows: int, columns: Sequence[Column], p: int
) -> tuple[list[Column], Rescale | None, int]:
    """Lift every block to ``2^p``, or truncate those read above it in one group (lifted to ``2^top``)."""
    big = [c for c in columns if c.read_bits > p]
    top = max((c.read_bits for c in big), default=p)
    shrink = None
    if big:
        source = Fixed(top, max(1 << (top - c.shrink) for c in big))
        shrink = linalg.plan_rescale(
            ring, rows * sum(c.columns for c in big), source, p, what="the scaled feature columns",
            budget_log2=FEATURES_BUDGET,
        )  # fmt: skip
    placed = []
    for c in columns:
        lift = p - c.read_bits
        bound = ((1 << (top - c.shrink)) >> (top - p)) + 2 if lift < 0 else 1 << (c.magnitude_bits + lift)
        placed.append(replace(c, lift=lift, bound=bound))
    return placed, shrink, top


def at_scale(bound: int, source: int, target: int) -> int:
    """A bound at ``2^source`` brought to ``2^target``: truncated (floor, off by one) or lifted."""
    return (bound >> (source - target)) + 2 if source > target else bound << (target - source)


def _plan_from(  # noqa: PLR0917 - one solver scale, everything it needs
    ring: Ring, rows: int, d: int, front: Front, iterations: int, output_bits: int, f: int
) -> tuple[FitPlan, int]:
    """The plan at solver scale ``2^f``, and the count it wanted (see :func:`plan_fit`)."""
    raw = front.gram_raw
    gram = linalg.plan_rescale(ring, d * (d + 1), raw, f, what="the Gram block", budget_log2=GRAM_BUDGET)
    trace = sum(at_scale(b, raw.fractional_bits, f) for b in front.diagonal)
    # D (G + ridge) D >= ridge (r_j >= 1); truncated, within one unit per entry: -d units at most.
    lowest = max(Fraction(min(front.ridge), 1 << raw.fractional_bits) - Fraction(d + 1, 1 << f), Fraction(0))
    system = spd.SpdSystem(
        d, f, Fraction(trace, 1 << f), gram.target.bound, min_eigenvalue=lowest, tolerance=RIDGE_TOLERANCE,
        budget_log2=SOLVER_BUDGET,
    )  # fmt: skip
    solve, wanted = plan_solver(ring, system, iterations)
    cap = linalg.magnitude_cap(ring, spd.truncated_count(d, 1, solve.iterations), SOLVER_BUDGET)
    scaled = (1 << (cap - solve.scales[-1])) + 2  # the last product is below 2^cap at 2^(f + s_(K-1))
    label, natural = front.columns[-1], f
    solution = [scaled << bits for bits in front.range_bits]  # w~ = D v
    exponents = [c.exponent for c in front.columns[:-1] for _ in range(c.columns)]
    elements = [
        (natural - label.exponent + e, b, output_bits) for e, b in zip(exponents, solution, strict=True)
    ]
    part = None
    if front.mean is not None:
        part = plan_intercept(ring, front, natural, solution, label.exponent, output_bits)
        elements += [(natural, b, part.r) for b in solution] + [
            (front.work_bits, b, part.q) for b in front.mean_bounds
        ]
    tail = plan_vector(ring, elements, TAIL_BUDGET, "the solution")
    return FitPlan(rows, d, front, gram, solve.system, solve, tail, part, output_bits), wanted


def plan_solver(ring: Ring, system: spd.SpdSystem, iterations: int) -> tuple[spd.SolvePlan, int]:
    """The solver's plan with ``iterations`` (0: the default of :func:`plan_fit`), and the count wanted.

    Raises:
        InvalidArgumentError: the count is beyond what the scale supports.
    """
    if iterations:
        return spd.plan_solve(ring, replace(system, iterations=iterations)), iterations
    wanted = spd.max_iterations(system.d, system.fractional_bits)
    if system.min_eigenvalue > 0:
        step = (1 << system.fractional_bits) // Fraction(system.trace_bound)
        condition = float(Fraction(1 << system.fractional_bits) / (step * Fraction(system.min_eigenvalue)))
        wanted = min(wanted, spd.iteration_count(condition, system.tolerance))
    for count in range(wanted, 0, -1):
        try:
            plan = spd.plan_solve(ring, replace(system, iterations=count))
        except InvalidArgumentError:
            continue
        if plan.scales[-1] >= MIN_LAST_ITERATE_BITS:
            return plan, wanted
    raise InvalidArgumentError(
        f"the solver cannot keep its iterates at scale 2^{MIN_LAST_ITERATE_BITS} with d = {system.d}"
    )


def plan_intercept(  # noqa: PLR0917 - the solution's and the means' scales and bounds
    ring: Ring, front: Front, natural: int, solution: Sequence[int], label_exponent: int, output_bits: int
) -> Intercept:
    """The finest ``2^r`` (solution) and ``2^q`` (means) whose dot product meets the budget."""
    cap, p = linalg.magnitude_cap(ring, 1, INTERCEPT_BUDGET), front.work_bits
    best: tuple[int, int, int, int] | None = None  # (min(r, q - bias), r, q, raw bound)
    for r in range(natural, -1, -1):
        if best is not None and r < best[0]:
            break
        solution_r = [at_scale(b, natural, r) for b in solution]
        for q in range(p, -1, -1):
            means = [at_scale(b, p, q) for b in front.mean_bounds]
            raw = (means[-1] << r) + sum(w * m for w, m in zip(solution_r, means, strict=False))
            if linalg.below(raw, cap):
                if best is None or min(r, q - MEANS_BIAS_BITS) > best[0]:
                    best = (min(r, q - MEANS_BIAS_BITS), r, q, raw)
                break
    if best is None:
        raise InvalidArgumentError("the intercept cannot be bounded within the budget")
    _, r, q, raw = best
    scale = r + q - label_exponent  # c = 2^e_y c~: the same encoding
    if scale > output_bits:
        final = linalg.plan_rescale(
            ring, 1, Fixed(scale, raw), output_bits, what="the intercept", budget_log2=INTERCEPT_BUDGET
        )
        return Intercept(r, q, final, 0, final.target.bound)
    lifted = raw << (output_bits - scale)
    bounds.require_fits(ring, lifted, output_bits, "the intercept")
    return Intercept(r, q, None, output_bits - scale, lifted)


def plan_vector(
    ring: Ring, elements: Sequence[tuple[int, int, int]], budget_log2: float, what: str
) -> VectorRescale:
    """Bring ``(scale, bound, target)`` elements to their targets with as few truncations as fit.

    Elements to truncate are taken by shift, largest first; each joins the
    current group (lifted to its shift) while the lifted bound stays below
    :func:`linalg.magnitude_cap`, else opens a new group (one more round).

    Raises:
        InvalidArgumentError: an element is too large to truncate within the
            budget, or a result leaves the ring.
    """
    cut = sorted(((s - t, i) for i, (s, _, t) in enumerate(elements) if s > t), reverse=True)
    cap = linalg.magnitude_cap(ring, len(cut), budget_log2)
    lifts = [max(0, t - s) for s, _, t in elements]
    finals = [b << lift for (_, b, _), lift in zip(elements, lifts, strict=True)]
    groups: list[tuple[int, list[int], list[int]]] = []
    for shift, i in cut:
        bound = elements[i][1]
        if not linalg.below(bound, cap):
            raise InvalidArgumentError(
                f"{what} could reach 2^{bound.bit_length()}, beyond 2^{cap} for truncation"
            )
        if not groups or not linalg.below(bound << (groups[-1][0] - shift), cap):
            groups.append((shift, [], []))
        top, indices, pre = groups[-1]
        indices.append(i)
        pre.append(top - shift)
        finals[i] = ((bound << (top - shift)) >> top) + 2
    for bound in finals:
        bounds.require_fits(ring, bound, 0, what)
    planned = []
    for top, indices, pre in groups:
        largest = max(elements[i][1] << lift for i, lift in zip(indices, pre, strict=True))
        planned.append(
            Group(tuple(indices), tuple(pre), top, linalg.truncation_failure(ring, len(indices), largest))
        )
    failure = sum(g.failure for g in planned)
    linalg.require_budget(failure, budget_log2, f"truncating {what}")
    return VectorRescale(tuple(lifts), tuple(planned), tuple(finals), failure)
