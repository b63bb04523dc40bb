"""``logistic_regression.fit`` and ``logistic_regression.predict`` on features from any owners.

**fit.** Roles: ``features`` (1..64 blocks, columns ``(N,)`` or matrices
``(N, d_b)``, from any owners; at most 64 columns) and ``label`` (one
``(N,)`` column of 0/1 from one owner; values in [0, 1] are accepted).
Parameters: ``iterations`` (default 30) and ``l2`` (default 1e-3, > 0): the
model minimises the mean log-loss plus ``l2/2 |w|^2`` (intercept not
penalised), i.e. scikit-learn's ``LogisticRegression(C = 1 / (l2 N))``.
Outputs: ``weights`` ``(d,)`` and ``intercept`` (a scalar) at the working
scale ``2^F`` (28 at N = 569, 27 at 10^5, 25 at 10^6), or the job's scale, so both
can be kept (``keep_as``) and used by ``logistic_regression.predict``.

**Features must be standardised** (each column mean 0, variance 1; each owner
standardises its own columns before upload). The fit checks it where the
bounds need it: after the Gram block it compares ``trace(X^T X)`` with
``N d 17/16`` (one comparison) and opens that one bit to the three servers;
above it, the job fails with a refusal. Nothing else is opened.

Method: fixed-Hessian Newton (Boehning, "Multinomial logistic regression
algorithm", Ann. Inst. Stat. Math. 1992; PrivLogit, Xie et al., arXiv
1611.01170): ``H = Z^T Z / 4 + N l2 I'`` bounds the Hessian of the loss
(``Z = [X | 1]``), so ``w <- w + H^-1 grad`` descends monotonically and
``H^-1`` is computed once. Nesterov's momentum (FISTA form, Beck and
Teboulle 2009) on top: about 4x fewer iterations on breast_cancer. Steps
(scales and bounds: :mod:`.logistic_plan`):

1. Rescale the blocks to ``2^F`` (one truncation round per distinct shift)
   and append the public column ``2^F``: ``Z`` (N x (d+1)).
2. ``Z^T Z`` (``linalg.gram``: one round, (d+1)^2 elements); the
   standardisation check (``L + 2`` rounds, one opened bit);
   ``A = Z^T Z / (4 2^s) + D`` read for free, one truncation; ``V = A^-1`` by
   Newton-Schulz with ``B = I`` (``spd.solve_spd``: ``2K + 1`` rounds, K about
   15 for l2 = 1e-3).
3. Each iteration (the first skips a and b: ``v = 0`` gives ``p = 1/2``):
   a. ``u = Z v`` (one round, N elements);
   b. ``p = sigmoid(u)`` (``sigmoid.POLY13``: ``L + 18`` rounds, max error 7.6e-4);
   c. ``g = Z^T (y - p) / 2^s - D v`` (one round, d+1 elements; one truncation);
   d. ``w' = v + V g`` (one round) clipped to ``[-W, W]`` (``compare.clip``,
      ``L + 2`` rounds; ``W`` is twice the regularised optimum's bound);
   e. ``w <- w'``, ``v <- w' + beta (w' - w)`` in one truncation round.

Cost in Z_2^128 (``L = 7``): ``2L + 25 = 39`` rounds per iteration; per row
and iteration party 0 / 1 / 2 send about 17 / 22 / 13 elements (``u`` and
the sigmoid: 16k-8 / 21k-6 / 12k-6 bits), plus O(d^2) per iteration; setup
about 45 rounds. N = 10^5, d = 10, 30 iterations: 5.5 s on a local
three-process cluster. Accuracy: with the default 30 iterations the model's
AUC and accuracy on breast_cancer match scikit-learn's
(tests/e2e/test_decisions.py). Leakage: shapes, scales, bounds, the one
opened bit; the receiver learns the model, or nothing if it is kept.

**predict.** Roles as ``linear_regression.predict``. Parameters
``decisions_only`` (flag, default false) and ``threshold`` (in (0, 1),
default 0.5). Output ``predictions`` ``(N,)``: ``sigmoid(X w + c)`` by
``POLY13`` at scale ``2^F`` (the largest ``F <= 32`` whose bounds fit; error
7.51e-4 plus rounding), or, with ``decisions_only``, 1 where
``sigmoid(score) > threshold`` else 0 at scale 2^0: the exact comparison
``score > logit(threshold)`` (``decide``), no approximation. A grant fixing
``{"decisions_only": True}`` lets a bank allow decisions and not probabilities.
"""

from __future__ import annotations

import math
from dataclasses import replace
from fractions import Fraction

import numpy as np

from mpc_core.bits import concat
from mpc_core.errors import InvalidArgumentError
from mpc_core.ring import Ring, RingArray
from mpc_core.sharing import ReplicatedShare
from mpc_server.protocol import arithmetic, compare, layout, linalg, sigmoid, spd
from mpc_server.protocol.context import PartyContext
from mpc_server.protocol.linalg import Fixed
from mpc_server.protocol.truncation import truncate
from mpc_server.service.programs.base import (
    BoundInputs,
    PlanInputs,
    ProgramPlan,
    RoleSpec,
    finish_plan,
    magnitude,
    plan_output,
    single,
    single_share,
)
from mpc_server.service.programs.decide import (
    LINEAR_ROLES,
    decide,
    encoded_threshold,
    plan_scores,
    require_comparable,
    scores,
)
from mpc_server.service.programs.linear_regression import MAX_FEATURE_BLOCKS, feature_columns
from mpc_server.service.programs.logistic_plan import (
    FitPlan,
    FitSpec,
    ProbabilityPlan,
    plan_fit,
    plan_probabilities,
)
from mpc_server.service.programs.params import Params, ParamSpec, ParamType

MAX_COLUMNS = 64
MAX_ITERATIONS = 200


# ---------------------------------------------------------------------- fit


class LogisticRegressionFit:
    """Fixed-Hessian Newton with momentum on shares: ``2L + 25`` rounds per iteration."""

    name = "logistic_regression.fit"
    summary = "logistic regression training on features from any owners"
    roles: tuple[RoleSpec, ...] = (RoleSpec("features", 1, MAX_FEATURE_BLOCKS), RoleSpec("label"))
    parameters: tuple[ParamSpec, ...] = (
        ParamSpec(
            "iterations", ParamType.INTEGER, "fixed-Hessian Newton steps (with momentum)",
            default=30, minimum=1, maximum=MAX_ITERATIONS,
        ),
        ParamSpec(
            "l2", ParamType.NUMBER, "ridge strength l2/2 |w|^2 on the mean log-loss (sklearn's C = 1/(l2 N))",
            default=1e-3, minimum=0.0,
        ),
    )  # fmt: skip
    outputs: tuple[str, ...] = ("weights", "intercept")

    def plan(self, ring: Ring, inputs: PlanInputs, params: Params, output_bits: int | None) -> ProgramPlan:
        """Check shapes and the label's bound; plan every scale (:func:`.logistic_plan.plan_fit`)."""
        blocks = inputs["features"]
        shapes = [feature_columns(block) for block in blocks]
        label = single(inputs, "label")
        rows = shapes[0][0]
        if len({r for r, _ in shapes}) != 1 or label.shape not in ((rows,), (rows, 1)):
            names = ", ".join(str(d.ref) for d in (*blocks, label))
            raise InvalidArgumentError(f"the features and the label differ in row count: {names}")
        widths = tuple(cols for _, cols in shapes)
        if sum(widths) > MAX_COLUMNS or rows <= sum(widths) + 1:
            raise InvalidArgumentError(
                f"{self.name} takes at most {MAX_COLUMNS} feature columns and needs more rows than "
                "columns plus one (fewer would let the model reveal the label)"
            )
        if magnitude(label) > 1 << label.fractional_bits:
            raise InvalidArgumentError(f"the label {label.ref} must hold 0/1 values (its bound is above 1)")
        spec = FitSpec(
            rows,
            tuple(Fixed(b.fractional_bits, magnitude(b)) for b in blocks),
            widths,
            Fixed(label.fractional_bits, magnitude(label)),
            Fraction(params["l2"]),
            int(params["iterations"]),
        )
        fit = plan_fit(ring, spec)
        what = f"the model of {self.name}"
        outputs = tuple(
            plan_output(
                ring, name, shape, fit.working_bits, fit.weight_bound, output_bits=output_bits, what=what
            )
            for name, shape in (("weights", (spec.d,)), ("intercept", ()))
        )
        return ProgramPlan(outputs, {"fit": fit})

    async def run(
        self, ctx: PartyContext, inputs: BoundInputs, plan: ProgramPlan
    ) -> dict[str, ReplicatedShare]:
        """Steps 1-3 of the module docstring; every step awaited in order (truncations allocate tags)."""
        fit: FitPlan = plan.details["fit"]
        z = await _design(ctx, inputs, fit)
        label = single_share(inputs, "label").share
        y = await linalg.rescale(
            ctx, ReplicatedShare(label.first.reshape(-1), label.second.reshape(-1)), fit.label_rescale
        )
        inverse = await _preconditioner(ctx, z, fit)
        w = await _iterate(ctx, z, y, inverse, fit)
        d = fit.spec.d
        return {"weights": _part(w, 0, d), "intercept": _part(w, d, d + 1)}


def _part(x: ReplicatedShare, start: int, stop: int) -> ReplicatedShare:
    return ReplicatedShare(x.first[start:stop].copy(), x.second[start:stop].copy())


async def _design(ctx: PartyContext, inputs: BoundInputs, fit: FitPlan) -> ReplicatedShare:
    """``Z = [X | 1]`` at ``2^F`` (N x (d+1), row-major): blocks truncated in one round per distinct shift."""
    ring, n, f = ctx.ring, fit.spec.rows, fit.working_bits
    blocks = [d.share for d in inputs["features"]]
    scaled: list[ReplicatedShare | None] = [None] * len(blocks)
    for shift in sorted({r.shift for r in fit.feature_rescales}):
        group = [i for i, r in enumerate(fit.feature_rescales) if r.shift == shift]
        if shift <= 0:
            for i in group:
                scaled[i] = arithmetic.mul_public(blocks[i], 1 << -shift)
            continue
        joined = await truncate(
            ctx, ReplicatedShare(*(np.concatenate(c) for c in _components(blocks, group))), shift
        )
        offsets = np.cumsum([0, *(blocks[i].size for i in group)])
        for i, start, stop in zip(group, offsets[:-1], offsets[1:], strict=True):
            scaled[i] = ReplicatedShare(joined.first[start:stop], joined.second[start:stop])
    ones = layout.public_share(ctx.party, np.repeat(ring.from_ints([1 << f]), n))
    parts = [p for p in scaled if p is not None] + [ones]

    def join(component: int) -> RingArray:
        return np.concatenate([(p.first, p.second)[component].reshape(n, -1) for p in parts], axis=1).reshape(
            -1
        )

    return ReplicatedShare(join(0), join(1))


def _components(blocks: list[ReplicatedShare], group: list[int]) -> tuple[list[RingArray], list[RingArray]]:
    return [blocks[i].first.reshape(-1) for i in group], [blocks[i].second.reshape(-1) for i in group]


async def _preconditioner(ctx: PartyContext, z: ReplicatedShare, fit: FitPlan) -> ReplicatedShare:
    """Step 2: ``V = (Z^T Z / (4 2^s) + D)^-1`` at ``2^G``, after the standardisation check."""
    ring, n, d1 = ctx.ring, fit.spec.rows, fit.spec.d + 1
    gram = await linalg.gram(ctx, z, n, d1, z, d1)
    await _require_standardised(ctx, gram, fit)
    ridge = ring.from_ints(
        [fit.ridge if i % (d1 + 1) == 0 and i < d1 * d1 - 1 else 0 for i in range(d1 * d1)]
    )
    a = await linalg.rescale(ctx, layout.add_public_values(ctx.party, gram, ridge), fit.gram_rescale)
    identity = layout.public_share(ctx.party, layout.scaled_identity(ring, d1, 1 << fit.solver_bits))
    return await spd.solve_spd(ctx, a, identity, fit.system)


async def _require_standardised(ctx: PartyContext, gram: ReplicatedShare, fit: FitPlan) -> None:
    """Refuse unless ``trace(X^T X) <= N d 17/16`` (at ``2^(2F)``): one comparison, one bit opened."""
    ring, d = ctx.ring, fit.spec.d
    diagonal = [j * (d + 2) for j in range(d)]  # (j, j) in the (d+1) x (d+1) block
    ones = ring.from_ints([1] * d).reshape(1, d)
    trace = ReplicatedShare(*(ring.matmul(ones, c[diagonal]) for c in (gram.first, gram.second)))
    above = await compare.greater_than_public(ctx, trace, fit.trace_limit)
    if await open_to_servers(ctx, above) != 0:
        raise InvalidArgumentError(
            "logistic_regression.fit needs standardised features (each column mean 0, variance 1, "
            "standardised by its owner before upload): their mean square exceeds 17/16"
        )


async def open_to_servers(ctx: PartyContext, x: ReplicatedShare) -> int:
    """The value of a one-element share at every server: each sends its first component on (one round)."""
    tag = ctx.allocate_tag()
    missing = await ctx.exchange(ctx.next, x.first, ctx.prev, tag)
    ring = ctx.ring
    return ring.to_ints(ring.add(ring.add(x.first, x.second), missing))[0]


async def _iterate(
    ctx: PartyContext, z: ReplicatedShare, y: ReplicatedShare, inverse: ReplicatedShare, fit: FitPlan
) -> ReplicatedShare:
    """Step 3, ``fit.spec.iterations`` times; returns ``w`` (d+1) at ``2^F``."""
    ring, n, d1, f = ctx.ring, fit.spec.rows, fit.spec.d + 1, fit.working_bits
    w = v = ReplicatedShare(ring.zeros(d1), ring.zeros(d1))
    for t in range(fit.spec.iterations):
        if t == 0:
            residual = arithmetic.add_public(ctx.party, y, -(1 << (f - 1)))  # p = 1/2 at v = 0
        else:
            tag = ctx.allocate_tag()
            terms = await ctx.compute(n * d1, _matvec_terms, z, n, v)
            u = await arithmetic.reshare(ctx, terms, tag)
            residual = arithmetic.sub(y, await sigmoid.sigmoid(ctx, u, fit.sigmoid))
        gradient = await _gradient(ctx, z, residual, v, fit)
        tag = ctx.allocate_tag()
        terms = ring.add(_matvec_terms(inverse, d1, gradient), ring.shl(v.first, fit.solver_bits))
        step = await arithmetic.reshare(ctx, terms, tag)
        clipped = await compare.clip(ctx, step, -fit.weight_limit, fit.weight_limit)
        w, v = await _momentum(ctx, clipped, w, fit, t)
    return w


def _matvec_terms(matrix: ReplicatedShare, rows: int, vector: ReplicatedShare) -> RingArray:
    first, second = matrix.first.reshape(rows, -1), matrix.second.reshape(rows, -1)
    return arithmetic.matvec_terms(first, second, vector)


async def _gradient(
    ctx: PartyContext, z: ReplicatedShare, residual: ReplicatedShare, v: ReplicatedShare, fit: FitPlan
) -> ReplicatedShare:
    """``Z^T r / 2^s - D v`` at ``2^F``: the raw block read at ``2^(2F+s)``, one reshare, one truncation."""
    ring, n, d = ctx.ring, fit.spec.rows, fit.spec.d
    tag = ctx.allocate_tag()
    terms = await ctx.compute(n * (d + 1), linalg.gram_terms, z, n, d + 1, residual, 1)
    ridge = np.concatenate([ring.mul_public(v.first[:d], fit.gradient_ridge), ring.zeros(1)])
    raw = await arithmetic.reshare(ctx, ring.sub(terms, ridge), tag)
    return await linalg.rescale(ctx, raw, fit.gradient_rescale)


async def _momentum(
    ctx: PartyContext, clipped: ReplicatedShare, w: ReplicatedShare, fit: FitPlan, t: int
) -> tuple[ReplicatedShare, ReplicatedShare]:
    """``w' = clipped`` and ``v = (1 + beta) w' - beta w``, both at ``2^F``, in one truncation round."""
    b1, b0 = fit.momentum[t]
    h, g = fit.update_rescale.source.fractional_bits - fit.working_bits - fit.solver_bits, fit.solver_bits
    ahead = arithmetic.sub(arithmetic.mul_public(clipped, b1), arithmetic.mul_public(w, b0 << g))
    both = concat(arithmetic.mul_public(clipped, 1 << h), ahead)
    updated = await linalg.rescale(ctx, both, fit.update_rescale)
    size = clipped.size
    return _part(updated, 0, size), _part(updated, size, 2 * size)


# ---------------------------------------------------------------------- predict


class LogisticRegressionPredict:
    """``sigmoid(X w + c)`` by the clipped polynomial, or the exact decisions ``score > logit(threshold)``."""

    name = "logistic_regression.predict"
    summary = "probabilities (or decisions only) of a logistic regression model"
    roles: tuple[RoleSpec, ...] = LINEAR_ROLES
    parameters: tuple[ParamSpec, ...] = (
        ParamSpec(
            "decisions_only", ParamType.FLAG,
            "return 1 where the probability is above threshold, else 0 (no probabilities)", default=False,
        ),
        ParamSpec(
            "threshold", ParamType.NUMBER, "the probability a decision must exceed (decisions_only)",
            default=0.5, minimum=0.0, maximum=1.0,
        ),
    )  # fmt: skip
    outputs: tuple[str, ...] = ("predictions",)
    row_outputs: tuple[str, ...] = ("predictions",)

    def plan(self, ring: Ring, inputs: PlanInputs, params: Params, output_bits: int | None) -> ProgramPlan:
        """Bound the scores; plan the exact comparison or the sigmoid at the largest scale that fits."""
        score = plan_scores(ring, inputs, self.name)
        shape, what = (score.rows,), f"the predictions of {self.name}"
        if params["decisions_only"]:
            probability = float(params["threshold"])
            if not 0.0 < probability < 1.0:
                raise InvalidArgumentError(f"the threshold of {self.name} must be strictly between 0 and 1")
            logit = Fraction(math.log(probability / (1.0 - probability)))
            threshold = encoded_threshold(logit, score.natural_bits)
            require_comparable(ring, score, threshold, f"the threshold minus the scores of {self.name}")
            details = {"scores": score, "threshold": threshold}
            return finish_plan(
                ring, shape, 0, 1, output_bits=output_bits, what=what, name="predictions", details=details
            )
        probabilities = plan_probabilities(ring, inputs, self.name)
        out, details = probabilities.sigmoid.out, {"probabilities": probabilities}
        return finish_plan(
            ring, shape, out.fractional_bits, out.bound, output_bits=output_bits, what=what,
            name="predictions", details=details,
        )  # fmt: skip

    async def run(
        self, ctx: PartyContext, inputs: BoundInputs, plan: ProgramPlan
    ) -> dict[str, ReplicatedShare]:
        """1. The scores (one reshare); 2. ``decide`` against ``logit(threshold)``, or ``sigmoid.POLY13``."""
        if "threshold" in plan.details:
            score = await scores(ctx, inputs, plan.details["scores"])
            return {"predictions": await decide(ctx, score, plan.details["threshold"])}
        probabilities: ProbabilityPlan = plan.details["probabilities"]
        if probabilities.weights is not None:  # the weights at a lower scale first: one truncation round
            stored = single_share(inputs, "weights")
            share = await linalg.rescale(ctx, stored.share, probabilities.weights)
            target = probabilities.weights.target
            lowered = replace(stored, share=share, fractional_bits=target.fractional_bits)
            inputs = {**inputs, "weights": (lowered,)}
        score = await scores(ctx, inputs, probabilities.scores)
        return {"predictions": await sigmoid.sigmoid(ctx, score, probabilities.sigmoid)}
