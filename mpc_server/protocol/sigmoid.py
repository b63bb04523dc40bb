"""Sigmoid ``1 / (1 + e^-x)`` on shares: two piecewise-linear variants and a clipped polynomial.

Every variant returns values in ``[0, 1]`` for *every* input (never negative,
never above 1) and has a stated error over all reals. Planning
(:func:`plan_sigmoid`) checks, before any message, that the clip's
differences fit the ring (``compare``'s range condition) and that every
truncation fits the failure budget; :attr:`SigmoidPlan.max_error` is the
approximation error plus the fixed-point rounding, ``|result - sigmoid(x)|``
for every ``x``. Costs in Z_2^k (``L = log2 k``), rounds and bits sent per
element by party 0 / 1 / 2:

=========  ==================================  =======  ==================================
variant    approximation, max error            rounds   bits per element
=========  ==================================  =======  ==================================
``T1``     ``0.5 + x/4`` clipped to [0, 1];     L + 2    9k-8 / 5k-6 / 5k-6 (one ``clip``)
           0.1192 (at x = +-2)
``SEG3``   ``0.5 + x/8`` clipped to [0, 1];     L + 2    9k-8 / 5k-6 / 5k-6
           0.1332 (at x = +-1.763)
``POLY13`` odd minimax polynomial of degree     L + 18   16k-8 / 21k-6 / 12k-6
           13 on [-6.5, 6.5], input clipped;
           7.51e-4 plus rounding
=========  ==================================  =======  ==================================

(``POLY13``'s first truncation is a lift, one round fewer and party 1 sends
k bits fewer, when the input's scale is at most ``f - 3``.)

``T1`` is SecretFlow's ``t1`` (``secretflow/utils/sigmoid.py``: a first-order
Taylor polynomial, clipped), ``SEG3`` SPU's ``SIGMOID_SEG3``
(``libspu/kernel/hal/fxp_approx.cc``). Both are exact in the ring, with
``j = 1`` (T1) or 2 (SEG3) and the input at scale ``2^s``:

1. ``c = compare.clip(x, -2^j, 2^j)`` (ABY3 bit extraction, both signs in one batch);
2. ``c + 2^j`` (local), *read* at scale ``2^(s + j + 1)``, is ``0.5 + c / 2^(j+1)``:
   no truncation; the result is in ``[0, 1]`` exactly, at the input's scale
   plus ``j + 1`` bits. Outside ``[-2^j, 2^j]`` it is exactly 0 or 1.

``POLY13`` (the polynomial variant; as SecretFlow's ``ls7`` and ``mix``, a
polynomial fit on an interval with the outside clipped, after the
piecewise-polynomial approach of MP-SPDZ's ``approx_sigmoid`` and Hong et
al., arXiv 2002.04344). ``p(t) = 0.5 + t Q(t^2)`` with ``t = x / 8`` and
``Q`` of degree 6, the minimax fit of ``sigmoid(8t) - 0.5`` on
``[0, 13/16]`` together with the limit ``x -> inf`` (Lawson's iteratively
reweighted least squares, 30000 steps; coefficients rounded to 2^-48), so
``p(clip(x, -6.5, 6.5) / 8)`` is within 7.51e-4 of ``sigmoid(x)`` for all
``x``. It is not exactly monotone (wiggles below its error). Steps:

1. ``c = compare.clip(x, -6.5, 6.5)`` at the input's scale ``2^s`` (exact);
2. ``t = c / 8``: ``c`` read at ``2^(s+3)``, truncated (or lifted) to ``2^f``;
3. ``u = t^2`` (product, truncation);
4. Horner in ``u``: ``q_5 = c_6 u + c_5`` (local product by a public
   coefficient, truncation), then ``q_j = q_{j+1} u + c_j`` (product,
   truncation) for j = 4 .. 0;
5. ``p = 0.5 + t q_0`` (product, truncation; 0.5 added locally).

Five products and six truncations of step 4 dominate: 7 reshared and 9
truncated elements per input. Range: on ``[-13/16, 13/16]``,
``|p - 0.5| <= MAX_DEVIATION = 0.4992495``, so the result stays in
``[0, 1]`` whenever the rounding error is below ``0.5 - MAX_DEVIATION``
(7.5e-4); the plan bounds it (one unit per truncation, half a unit per
coefficient, propagated through Horner's rule with certified bounds on the
partial sums, :data:`PARTIAL_BOUNDS`) and refuses a scale ``f`` too small
for that: about 450 units of ``2^-f`` (2.6e-5 at f = 24, 1.7e-6 at f = 28).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from fractions import Fraction

from mpc_core import bounds
from mpc_core.errors import InvalidArgumentError
from mpc_core.ring import Ring
from mpc_core.sharing import ReplicatedShare
from mpc_server.protocol import arithmetic, compare, linalg
from mpc_server.protocol.context import PartyContext
from mpc_server.protocol.linalg import DEFAULT_BUDGET_LOG2, Fixed, Rescale
from mpc_server.protocol.truncation import truncate


class SigmoidKind(enum.Enum):
    """The approximations (module docstring)."""

    T1 = "t1"
    SEG3 = "seg3"
    POLY13 = "poly13"


POLY_CLIP = Fraction(13, 2)
"""``POLY13`` clips its input to ``[-6.5, 6.5]``."""
POLY_NUMERATORS = (
    558938443306326,
    -2692964352526440,
    11895655780379732,
    -35087348492265672,
    62180010456539936,
    -59269624943719616,
    23243287570663560,
)
"""``c_0 .. c_6`` of ``p(t) = 0.5 + sum_i c_i t^(2i+1)``, over ``2^POLY_DENOMINATOR_BITS``."""
POLY_DENOMINATOR_BITS = 48
POLY_ERROR = 7.51e-4
"""``max_x |p(clip(x, -6.5, 6.5) / 8) - sigmoid(x)|`` (tested on a grid)."""
MAX_DEVIATION = Fraction(4992495, 10**7)
"""``max |p(t) - 0.5|`` on ``|t| <= 13/16``, rounded up (tested)."""
PARTIAL_BOUNDS = tuple(Fraction(b) for b in (211, 221, 125, 43, 10, 2))
"""``Q_5 .. Q_0``: bounds on ``|q_j(u)|``, ``q_j = sum_{i>=j} c_i u^(i-j)``, for ``0 <= u <= 169/256``."""
LINEAR_ERRORS = {SigmoidKind.T1: 0.1193, SigmoidKind.SEG3: 0.1333}
"""``max_x |approximation - sigmoid(x)|`` of the piecewise-linear variants (tested)."""
_HALF_WIDTH_BITS = {SigmoidKind.T1: 1, SigmoidKind.SEG3: 2}


@dataclass(frozen=True)
class SigmoidPlan:
    """A checked sigmoid of ``count`` values described by ``x``; the result is described by ``out``."""

    kind: SigmoidKind
    count: int
    x: Fixed
    clip: int
    """The clip bound at the input's scale (``2^j 2^s``, or ``6.5 2^s``)."""
    out: Fixed
    """Scale and bound of the result (in [0, 1], so the bound is ``2^scale``)."""
    ring_bits: int
    t_rescale: Rescale | None = None
    coefficients: tuple[int, ...] = ()
    """``POLY13``: ``c_i`` at scale ``2^f``."""
    rounding_error: float = 0.0
    failure: float = 0.0

    @property
    def approximation_error(self) -> float:
        """The variant's error in exact arithmetic, over all reals."""
        return POLY_ERROR if self.kind is SigmoidKind.POLY13 else LINEAR_ERRORS[self.kind]

    @property
    def max_error(self) -> float:
        """``|result - sigmoid(x)|`` for every ``x``: approximation plus rounding."""
        return self.approximation_error + self.rounding_error

    @property
    def rounds(self) -> int:
        """Communication rounds: ``L + 2`` for the clip, 16 more for the polynomial (15 with a lift)."""
        clip_rounds = self.ring_bits.bit_length() - 1 + 2
        if self.kind is not SigmoidKind.POLY13:
            return clip_rounds
        lifted = self.t_rescale is not None and self.t_rescale.shift <= 0
        return clip_rounds + (15 if lifted else 16)


def plan_sigmoid(
    ring: Ring,
    count: int,
    x: Fixed,
    kind: SigmoidKind = SigmoidKind.POLY13,
    *,
    out_bits: int | None = None,
    budget_log2: float = DEFAULT_BUDGET_LOG2,
) -> SigmoidPlan:
    """Plan the sigmoid of ``count`` shared values at scale ``2^s`` (``x``: ``s`` and the encoded bound).

    ``out_bits`` is ``POLY13``'s working scale ``f`` (required there); the
    piecewise-linear variants ignore it and return their exact natural scale.

    Raises:
        InvalidArgumentError: the clip's differences could leave the ring's
            signed range; the truncations could fail with probability above
            ``2^budget_log2``; or the scale is too small to keep the result in [0, 1].
    """
    if count < 1:
        raise InvalidArgumentError(f"the sigmoid needs at least one value, got {count}")
    s = x.fractional_bits
    if kind is not SigmoidKind.POLY13:
        j = _HALF_WIDTH_BITS[kind]
        clip = 1 << (j + s)
        _require_clip_range(ring, x, clip)
        return SigmoidPlan(kind, count, x, clip, Fixed(s + j + 1, 1 << (s + j + 1)), ring.bits)
    if out_bits is None or out_bits < 2:
        raise InvalidArgumentError("the polynomial sigmoid needs a working scale f >= 2 (out_bits)")
    return _plan_polynomial(ring, count, x, out_bits, budget_log2)


def _plan_polynomial(ring: Ring, count: int, x: Fixed, f: int, budget_log2: float) -> SigmoidPlan:
    """``POLY13`` at working scale ``2^f``: clip range, truncation budget, rounding inside the margin."""
    clip = math.floor(POLY_CLIP * (1 << x.fractional_bits))
    _require_clip_range(ring, x, clip)
    t_plan = linalg.plan_rescale(
        ring,
        count,
        Fixed(x.fractional_bits + 3, clip),
        f,
        what="the clipped sigmoid input",
        budget_log2=budget_log2,
    )
    coefficients = tuple(round(Fraction(n, 1 << POLY_DENOMINATOR_BITS) * (1 << f)) for n in POLY_NUMERATORS)
    errors = _rounding_errors(f, exact_t=t_plan.shift <= 0)
    raws = _horner_raw_bounds(t_plan.target.bound, coefficients, f, errors)
    failure = t_plan.failure + sum(linalg.truncation_failure(ring, count, raw) for raw in raws)
    for raw in raws:
        bounds.require_fits(ring, raw, 2 * f, "a product in the polynomial sigmoid")
    linalg.require_budget(failure, budget_log2, f"the polynomial sigmoid of {count} values")
    rounding = errors[-1] * 2.0**-f
    if rounding >= float(Fraction(1, 2) - MAX_DEVIATION):
        raise InvalidArgumentError(
            f"the polynomial sigmoid at scale 2^{f} could round by {rounding:.2g}, enough to leave [0, 1]; "
            "use a larger scale"
        )
    kind = SigmoidKind.POLY13
    return SigmoidPlan(
        kind, count, x, clip, Fixed(f, 1 << f), ring.bits, t_plan, coefficients, rounding, failure
    )


def _require_clip_range(ring: Ring, x: Fixed, clip: int) -> None:
    """``compare.clip`` needs ``|x -+ clip| < 2^(k-1)``: checked on the exact bounds."""
    bounds.require_fits(ring, x.bound + clip, x.fractional_bits, "the sigmoid input minus its clip bound")


def _horner_raw_bounds(t_bound: int, coefficients: tuple[int, ...], f: int, errors: list[float]) -> list[int]:
    """Bounds on the values truncated in steps 3-5 (before each truncation), encoded, in order.

    A partial sum ``q_j`` computed with an error of ``E_j`` units is below
    ``(Q_j + E_j 2^-f) 2^f``; the truncated product that produced it is that
    times ``2^f``.
    """
    ulp = Fraction(1, 1 << f)
    raws = [t_bound * t_bound]
    partials = (*PARTIAL_BOUNDS, Fraction(1, 2))  # q_5 .. q_0, then t q_0 = p - 1/2
    for bound, error in zip(partials, errors, strict=True):
        raws.append(math.ceil((bound + Fraction(error) * ulp) * (1 << (2 * f))))
    return raws


def _rounding_errors(f: int, *, exact_t: bool) -> list[float]:
    """Bounds, in units of ``2^-f``, on the errors of ``q_5 .. q_0`` and of the result.

    ``E_t <= 1`` (0 when lifted), ``E_u <= 2 |t| E_t + E_t^2 2^-f + 1``,
    ``E_5 <= |c_6| E_u + 0.5 u + 1.5`` (``c_6``, ``c_5`` rounded by half a
    unit; one unit of truncation), Horner ``E_j <= E_{j+1} u + Q_{j+1} E_u +
    E_{j+1} E_u 2^-f + 1.5``, and the last product ``|t| E_0 + Q_0 E_t + E_0
    E_t 2^-f + 1``, with ``|t| <= 13/16``, ``u <= 169/256`` and ``Q_j`` the
    certified bounds on the partial sums (:data:`PARTIAL_BOUNDS`). 1% is added
    for the float arithmetic of the bound itself.
    """
    ulp = 2.0**-f
    t_max, u_max = 13 / 16, 169 / 256
    e_t = 0.0 if exact_t else 1.0
    e_u = 2 * t_max * e_t + e_t * e_t * ulp + 1
    c_6 = abs(POLY_NUMERATORS[-1]) / 2.0**POLY_DENOMINATOR_BITS
    e_q = c_6 * e_u + 0.5 * u_max + 1.5
    errors = [e_q]
    for q_bound in PARTIAL_BOUNDS[:-1]:
        e_q = e_q * u_max + float(q_bound) * e_u + e_q * e_u * ulp + 1.5
        errors.append(e_q)
    errors.append(t_max * e_q + float(PARTIAL_BOUNDS[-1]) * e_t + e_q * e_t * ulp + 1)
    return [1.01 * e for e in errors]


async def sigmoid(ctx: PartyContext, x: ReplicatedShare, plan: SigmoidPlan) -> ReplicatedShare:
    """Shares of the approximate sigmoid of ``x`` at scale ``2^plan.out.fractional_bits`` (module docstring).

    Steps are awaited one after another (truncations allocate their own
    tags), so the call must not be gathered with other operations of the job.
    """
    if x.size != plan.count:
        raise InvalidArgumentError(f"the sigmoid plan is for {plan.count} values, got {x.size}")
    clipped = await compare.clip(ctx, x, -plan.clip, plan.clip)
    if plan.kind is not SigmoidKind.POLY13:
        return arithmetic.add_public(ctx.party, clipped, plan.clip)  # (c + 2^j) read at 2^(s + j + 1)
    if plan.t_rescale is None:
        raise InvalidArgumentError("a polynomial sigmoid plan needs its rescale")
    f, coefficients = plan.out.fractional_bits, plan.coefficients
    t = await linalg.rescale(ctx, clipped, plan.t_rescale)
    u = await truncate(ctx, await arithmetic.mul(ctx, t, t), f)
    q = arithmetic.add_public(ctx.party, arithmetic.mul_public(u, coefficients[-1]), coefficients[-2] << f)
    q = await truncate(ctx, q, f)
    for c in reversed(coefficients[:-2]):
        q = arithmetic.add_public(ctx.party, await arithmetic.mul(ctx, q, u), c << f)
        q = await truncate(ctx, q, f)
    p = await truncate(ctx, await arithmetic.mul(ctx, t, q), f)
    return arithmetic.add_public(ctx.party, p, 1 << (f - 1))
