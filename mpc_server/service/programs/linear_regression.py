"""``linear_regression.predict``: ``y = X w + c`` for features split across owners.

Roles (in the order the job lists them):

* ``features``: one or more blocks, each a column ``(N,)`` or a matrix
  ``(N, d_b)``, from any owners; the columns of ``X`` in block order;
* ``weights``: ``(d,)`` with ``d`` the total number of columns;
* ``intercept``: optional, a scalar.

Scales. Each block's products carry scale ``s_b = f_b + f_w`` (its own
scale plus the weights'). The natural scale of the output is
``S = max(max_b s_b, f_c)``; every block's term is lifted to ``S`` by the
public factor ``2^(S - s_b)`` and the intercept by ``2^(S - f_c)``, which is
exact. So datasets shared at different scales (e.g. before and after a
change of the cluster's ``fractional_bits``) combine correctly.

Bound. On the encoded integers,
``|Y| <= sum_b d_b 2^(m_b + m_w) 2^(S - s_b) + 2^m_c 2^(S - f_c)``; a job whose
bound leaves the ring's signed range is refused before it starts.

Cost: one round, one ring element per prediction per server, whatever the
number of features (ABY3 eprint 2018/403 §5, matrix-vector products);
above 2^20 rows the reshare travels in pipelined pieces of 2^20 rows
(``row_chunks``), and rows that do not fit the job's memory budget are
streamed from storage in chunks (``service.chunks``).
"""

from __future__ import annotations

from dataclasses import dataclass

from mpc_core.errors import InvalidArgumentError
from mpc_core.ring import Ring, RingArray
from mpc_core.sharing import ReplicatedShare
from mpc_server.protocol import arithmetic
from mpc_server.protocol.context import PartyContext
from mpc_server.service.model import DatasetSummary
from mpc_server.service.programs import row_chunks
from mpc_server.service.programs.base import (
    BoundInputs,
    PlanInputs,
    ProgramPlan,
    RoleSpec,
    finish_plan,
    magnitude,
    single,
    single_share,
)
from mpc_server.service.programs.params import Params, ParamSpec

MAX_FEATURE_BLOCKS = 64


def feature_columns(dataset: DatasetSummary) -> tuple[int, int]:
    """(rows, columns) of a feature block: a column (N,) or a matrix (N, d)."""
    if len(dataset.shape) == 1:
        return dataset.shape[0], 1
    if len(dataset.shape) == 2:
        return dataset.shape[0], dataset.shape[1]
    raise InvalidArgumentError(f"feature dataset {dataset.ref} must be a column (N,) or a matrix (N, d)")


class LinearRegressionPredict:
    """``y = X w + c`` for features split across owners; one round."""

    name = "linear_regression.predict"
    summary = "predictions y = X w + c for features split across owners"
    roles: tuple[RoleSpec, ...] = (
        RoleSpec("features", 1, MAX_FEATURE_BLOCKS),
        RoleSpec("weights", rows=False),
        RoleSpec("intercept", 0, 1, rows=False),
    )
    parameters: tuple[ParamSpec, ...] = ()
    outputs: tuple[str, ...] = ("predictions",)
    row_outputs: tuple[str, ...] = ("predictions",)
    streamed_roles: tuple[str, ...] = ("features",)
    sums_rows = False

    def plan(self, ring: Ring, inputs: PlanInputs, params: Params, output_bits: int | None) -> ProgramPlan:
        """Rows agree across blocks; weights have one entry per column; the result fits."""
        model = linear_bound(inputs)
        return finish_plan(
            ring,
            (model.rows,),
            model.natural_bits,
            model.bound,
            output_bits=output_bits,
            what=f"the predictions of linear_regression.predict from {model.sources}",
            name="predictions",
            details={"lifts": model.lifts},
        )

    async def run(
        self, ctx: PartyContext, inputs: BoundInputs, plan: ProgramPlan
    ) -> dict[str, ReplicatedShare]:
        """ABY3 §5 matrix-vector product, fused across blocks, one reshare per piece of rows.

        1. For each feature block ``X^(k)`` with weight slice ``w^(k)``, add
           the local 3-out-of-3 term ``X^(k)_i (w^(k)_i + w^(k)_{i+1}) +
           X^(k)_{i+1} w^(k)_i``, lifted by the public ``2^(S - s_k)`` (no
           communication): :meth:`chunk_terms`.
        2. Add component ``c_i`` of the intercept, lifted to scale ``2^S``.
        3. Reshare the sum (``row_chunks``: once for up to 2^20 rows, else
           in pipelined pieces; the same when the rows are streamed from
           storage in chunks).
        """
        return {"predictions": await row_chunks.run_whole(ctx, self, inputs, plan)}

    def chunk_terms(self, inputs: BoundInputs, plan: ProgramPlan) -> RingArray:
        """Steps 1 and 2 of :meth:`run` for the rows in ``inputs`` (local, blocking)."""
        return _linear_terms(inputs, plan)


def _linear_terms(inputs: BoundInputs, plan: ProgramPlan) -> RingArray:
    weights = single_share(inputs, "weights").share
    ring = weights.ring
    lifts: list[int] = plan.details["lifts"]
    terms: RingArray | None = None
    offset = 0
    for block, lift in zip(inputs["features"], lifts, strict=True):
        rows, cols = feature_columns(block)
        w = ReplicatedShare(weights.first[offset : offset + cols], weights.second[offset : offset + cols])
        term = arithmetic.matvec_terms(
            block.share.first.reshape(rows, cols), block.share.second.reshape(rows, cols), w
        )
        if lift:
            term = ring.shl(term, lift)
        terms = term if terms is None else ring.add(terms, term, out=terms)
        offset += cols
    if terms is None:
        raise InvalidArgumentError("linear regression needs at least one feature block")
    for intercept in inputs.get("intercept", ()):
        natural = plan.first.natural_bits
        lifted = ring.shl(intercept.share.first.reshape(1), natural - intercept.fractional_bits)
        terms = ring.add(terms, _broadcast(ring, lifted, terms.size), out=terms)
    return terms


def _broadcast(ring: Ring, element: RingArray, size: int) -> RingArray:
    """One element repeated ``size`` times."""
    out = ring.empty(size)
    out[...] = element[0]
    return out


@dataclass(frozen=True)
class LinearBound:
    """The checked inputs of ``X w + c``: rows, natural scale ``2^S``, exact bound and block lifts."""

    rows: int
    natural_bits: int
    bound: int
    """``|encoded X w + c| <= bound`` at scale ``2^natural_bits``, exactly."""
    lifts: list[int]
    sources: str
    """The feature datasets, for messages."""


def linear_bound(inputs: PlanInputs) -> LinearBound:
    """Check a linear model's inputs and bound ``X w + c`` exactly (``predict`` and ``decide``).

    Raises:
        InvalidArgumentError: rows differ between blocks; weights of the
            wrong length; an intercept that is not a scalar.
    """
    blocks = inputs["features"]
    shapes = [feature_columns(block) for block in blocks]
    sources = ", ".join(str(b.ref) for b in blocks)
    if len({rows for rows, _ in shapes}) != 1:
        raise InvalidArgumentError(f"the feature datasets differ in row count: {sources}")
    weights = single(inputs, "weights")
    if weights.shape != (sum(cols for _, cols in shapes),):
        raise InvalidArgumentError(
            f"weights {weights.ref} must be a vector with one entry per feature column"
        )
    intercepts = inputs.get("intercept", ())
    for intercept in intercepts:
        if intercept.shape not in ((), (1,)):
            raise InvalidArgumentError(f"intercept {intercept.ref} must be a scalar")
    scales = [block.fractional_bits + weights.fractional_bits for block in blocks]
    natural = max([*scales, *(c.fractional_bits for c in intercepts)])
    lifts = [natural - scale for scale in scales]
    bound = sum(
        cols * magnitude(block) * magnitude(weights) << lift
        for (_, cols), block, lift in zip(shapes, blocks, lifts, strict=True)
    )
    bound += sum(magnitude(c) << (natural - c.fractional_bits) for c in intercepts)
    return LinearBound(shapes[0][0], natural, bound, lifts, sources)
