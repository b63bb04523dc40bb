"""``linear_regression.decide``: the decisions ``score > threshold`` of ``score = X w + c``, not the scores.

A credit decision is a comparison: a bank that grants this program (and not
``linear_regression.predict``) lets the model owner learn, per customer,
whether the score exceeds the threshold and nothing else; the scores stay in
shares. A grant can fix the threshold too (``Grant(..., parameters={"threshold": 0.7})``).

Roles as ``linear_regression.predict``: ``features`` (1..64 blocks, columns
``(N,)`` or matrices ``(N, d_b)``, from any owners), ``weights`` ``(d,)``,
``intercept`` (optional scalar). Parameter ``threshold`` (number, required).
Output ``decisions`` ``(N,)``: 1 where the score is above the threshold,
else 0, at scale ``2^0`` (exact integers; a job asking another scale gets
them lifted, still exact).

Exactness. The score is computed exactly in the ring at its natural scale
``2^S`` (``S = max(f_b + f_w, f_c)``, as ``linear_regression.predict``), and
``score > threshold`` is decided as ``S_enc > floor(threshold 2^S)``, which
for integers is the same. So a decision differs from the plaintext one only
through the inputs' encoding: each input is rounded to ``2^-(f+1)``, so with
all scales ``f`` the encoded score is within
``2^-(f+1) (sum_j |w_j| + sum_j |x_j| + 1) + d 2^-(2f+2)`` of ``X w + c``
(about 1.2e-10 per unit of ``sum |w| + sum |x|`` at f = 32; 7.6e-6 at
f = 16); rows whose plaintext score is farther than that from the threshold
get exactly the plaintext decision.

Range. ``compare.greater_than_public`` reads the sign of ``t - score``; the
plan checks with exact integers that ``bound(score) + |t| < 2^(k-1)`` (in
particular, a score bound below ``2^(k-2)`` with ``|t|`` below it), so the
sign is exact. In Z_2^128 the sign is read by the 64-bit window when the
bound allows (:func:`comparison_window`): exact when ``bound + |t| < 2^62``;
otherwise encoded scores in ``(t - 2^s, t]`` may be decided as above the
threshold, and the window is used only when that band is at most
``2^-(F+1)`` (``F``: the finest input scale), so rows farther than the bound
above plus ``2^-(F+1)`` from the threshold get exactly the plaintext
decision. It costs one round and about a third of the bits less.

Cost: the score's one round and one element per row (ABY3 §5), then one
comparison (``compare``: ``L + 2`` rounds, 3.5k-4 / 3k-3 / 3k-3 bits per row
for parties 0 / 1 / 2; ``L = log2 k``).

The helpers :func:`plan_scores` and :func:`scores` are shared with
``logistic_regression.predict``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from mpc_core import bounds
from mpc_core.ring import Ring
from mpc_core.sharing import ReplicatedShare
from mpc_server.protocol import compare, sign_window
from mpc_server.protocol.context import PartyContext
from mpc_server.service.model import OutputInfo
from mpc_server.service.programs.base import (
    BoundInputs,
    OutputPlan,
    PlanInputs,
    ProgramPlan,
    RoleSpec,
    finish_plan,
)
from mpc_server.service.programs.linear_regression import LinearRegressionPredict, linear_bound
from mpc_server.service.programs.params import Params, ParamSpec, ParamType

LINEAR_ROLES: tuple[RoleSpec, ...] = LinearRegressionPredict.roles
"""The roles of ``linear_regression.predict`` (features are rows of the job's table; the model is not)."""


@dataclass(frozen=True)
class ScorePlan:
    """The checked score ``X w + c`` of a linear model: its exact bound at its natural scale."""

    plan: ProgramPlan
    """A plan ``LinearRegressionPredict.run`` computes the scores from (natural scale, block lifts)."""
    bound: int
    """``|encoded score| <= bound`` at scale ``2^natural_bits``, exactly."""
    rows: int

    @property
    def natural_bits(self) -> int:
        """The scores' scale ``S``."""
        return self.plan.first.natural_bits


def plan_scores(ring: Ring, inputs: PlanInputs, program: str) -> ScorePlan:
    """Check a linear model's inputs (as ``linear_regression.predict``) and bound its scores exactly.

    Raises:
        InvalidArgumentError: rows differ between blocks; weights of the
            wrong length; an intercept that is not a scalar; or scores that
            could leave the ring.
    """
    model = linear_bound(inputs)
    bound, natural, rows = model.bound, model.natural_bits, model.rows
    bounds.require_fits(ring, bound, natural, f"the scores of {program} from {model.sources}")
    info = OutputInfo((rows,), natural, ring.bits, bounds.bound_bits(bound), name="scores")
    return ScorePlan(ProgramPlan((OutputPlan(info, natural),), {"lifts": model.lifts}), bound, rows)


async def scores(ctx: PartyContext, inputs: BoundInputs, plan: ScorePlan) -> ReplicatedShare:
    """Shares of ``X w + c`` at the natural scale: ABY3 §5 matrix-vector product, one round."""
    result = await LinearRegressionPredict().run(ctx, inputs, plan.plan)
    return result["predictions"]


def encoded_threshold(threshold: Fraction, natural_bits: int) -> int:
    """``floor(threshold 2^S)``: for an integer score ``e``, ``e > threshold 2^S`` iff ``e`` exceeds it."""
    return math.floor(threshold * (1 << natural_bits))


def require_comparable(ring: Ring, score: ScorePlan, threshold: int, what: str) -> None:
    """Refuse unless ``|threshold - score| < 2^(k-1)`` for every possible score (exact integers).

    Raises:
        InvalidArgumentError: naming ``what`` and the ring's range.
    """
    bounds.require_fits(ring, score.bound + abs(threshold), score.natural_bits, what)


def comparison_window(ring: Ring, score: ScorePlan, threshold: int, finest_bits: int) -> int | None:
    """The bound ``m`` to read the decisions with the 64-bit window (``compare``), or None: the full adder.

    The window may decide encoded scores in ``(t - 2^s, t]`` as above ``t``
    (``s = sign_window.window_shift``); it is used only when that band,
    ``2^(s - S)``, is at most ``2^-(F+1)``, the rounding of the finest input
    (``F = finest_bits``), so it adds at most that much to the error bound of
    the module docstring.
    """
    magnitude = (score.bound + abs(threshold)).bit_length()
    shift = sign_window.window_shift(ring.bits, magnitude)
    if ring.bits <= sign_window.WINDOW_BITS or shift > score.natural_bits - finest_bits - 1:
        return None
    return magnitude


async def decide(
    ctx: PartyContext, score: ReplicatedShare, threshold: int, magnitude_bits: int | None = None
) -> ReplicatedShare:
    """Shares of ``[score > threshold]`` (0 or 1), ``threshold`` at the score's scale: ``L + 2`` rounds.

    With ``magnitude_bits`` (:func:`comparison_window`): the 64-bit window, ``L + 1`` rounds.
    """
    return await compare.greater_than_public(ctx, score, threshold, magnitude_bits=magnitude_bits)


class LinearRegressionDecide:
    """Decisions ``X w + c > threshold`` without the scores: one product round and one comparison."""

    name = "linear_regression.decide"
    summary = "decisions score > threshold for y = X w + c, without the scores"
    roles: tuple[RoleSpec, ...] = LINEAR_ROLES
    parameters: tuple[ParamSpec, ...] = (
        ParamSpec("threshold", ParamType.NUMBER, "decide 1 where the score X w + c is above this"),
    )
    outputs: tuple[str, ...] = ("decisions",)
    row_outputs: tuple[str, ...] = ("decisions",)

    def plan(self, ring: Ring, inputs: PlanInputs, params: Params, output_bits: int | None) -> ProgramPlan:
        """Bound the scores exactly; check that their comparison with the threshold is exact."""
        score = plan_scores(ring, inputs, self.name)
        threshold = encoded_threshold(Fraction(params["threshold"]), score.natural_bits)
        require_comparable(ring, score, threshold, f"the threshold minus the scores of {self.name}")
        finest = max(d.fractional_bits for datasets in inputs.values() for d in datasets)
        window = comparison_window(ring, score, threshold, finest)
        return finish_plan(
            ring,
            (score.rows,),
            0,
            1,
            output_bits=output_bits,
            what=f"the decisions of {self.name}",
            name="decisions",
            details={"scores": score, "threshold": threshold, "window": window},
        )

    async def run(
        self, ctx: PartyContext, inputs: BoundInputs, plan: ProgramPlan
    ) -> dict[str, ReplicatedShare]:
        """1. The scores (one reshare); 2. ``compare.greater_than_public`` against the encoded threshold."""
        score = await scores(ctx, inputs, plan.details["scores"])
        decisions = await decide(ctx, score, plan.details["threshold"], plan.details["window"])
        return {"decisions": decisions}
