"""``linear_regression.fit``: least squares and ridge on features from any owners, on shares.

Roles (in job order): ``features``, 1..64 blocks, each a column ``(N,)`` or a
matrix ``(N, d_b)``, from any owners, the columns of ``X`` in block order (as
for ``linear_regression.predict``), at most 64 columns in all; ``label``, one
column ``(N,)`` from one owner.

Parameters: ``l2`` (>= 0, default 0: ordinary least squares) is scikit-learn's
``Ridge(alpha=l2)``: ``l2 ||w||^2`` against the *raw* sum of squares (not
divided by N), on the original columns; ``fit_intercept`` (default true) fits
an unpenalised ``c`` by centring, as scikit-learn does; ``iterations`` (0:
automatic, see :func:`.linear_fit_plan.plan_fit`) sets the solver's count.

Outputs: ``weights`` ``(d,)`` and ``intercept`` (a scalar; 0 without an
intercept) at ``output_fractional_bits``, by default the ring's working scale
(2^32 in Z_2^128), so both can be kept (``keep_as``) and fed to
``linear_regression.predict`` as they are. Refused: Z_2^64 (no precision is
left there under the failure budget), datasets without bounds, and N <= d (+1
with an intercept), where the fit interpolates and the model reveals the label.

Steps (scales and bounds: :mod:`.linear_fit_plan`, exact, before any message):

0. *Scaling, free*: a block with bound ``2^m`` at scale ``2^f`` read at ``2^m``
   is ``x~ = x / 2^e`` (``e = m - f``), ``|x~| <= 1``; likewise the label. With
   ``l2 > 0`` a block whose ridge term ``l2 4^-e / 2^s`` exceeds 1 is read at
   ``2^(m+k)`` (a public diagonal preconditioning).
1. *Working columns* ``Z = [X~ | y~]`` at the largest scale ``2^p`` the Gram
   block's budget allows (p = 33 for 442 rows, 28 for 10^6): lifted (exact), or
   lifted to a common scale and truncated once (ABY3 Share Truncation I,
   eprint 2018/403 §5.1: one round, ``N d_big`` elements, party 1 to 0).
2. *Means* (with an intercept): local column sums; ``mu' = sum round(2^T / N)
   / 2^T``, one truncation of ``d + 1`` values, within two units of the means.
3. *Centred Gram block*: party i's terms of ``Z^T Z`` minus those of ``u mu'^T
   + mu' sum^T`` (``u = sum - N mu'``) are those of the exact Gram of ``Z``
   centred at ``mu'`` (no cancellation: the ring is exact); its first d rows
   are reshared once: one round, ``d (d + 1)`` elements whatever N (ABY3 §5;
   Gascon et al., PoPETs 2017). Plus the ridge ``l2 4^-e_j`` on the diagonal
   (public, local).
4. *Equilibration* (Jacobi by secret powers of two): one batched comparison
   (``compare.less_than_public``, ``log2 k + 2`` rounds) of each diagonal entry
   with ``bound / 4^k`` gives ``r_j = 2^m_j`` (up to 2^10 for a one-column
   block, 2^14 in a block of several) as a linear function of the bits, with
   ``r_j^2 G_jj < bound_j``; then ``D (G + ridge) D`` and ``D b`` (two rounds):
   every bound is unchanged (Cauchy-Schwarz) and the diagonal is within a
   factor 4 of its bound, whatever the columns' spreads.
5. *One truncation* reads the block as ``/ 2^s`` (``s = ceil(log2 N)``, free)
   at the solver's scale ``2^F``.
6. *Newton-Schulz* (``protocol.spd``) on the public trace bound ``t <= d``:
   ``2K + 1`` rounds of ``d (d + 1)`` elements; then ``w~ = D v`` (one round).
7. *Unscale*: ``w_j = w~_j 2^(e_y - e_j)`` is the same encoding read at another
   scale; lifts and grouped truncations bring the weights to the output
   scale, ``w~`` and ``mu'`` to the intercept's (usually one round).
8. *Intercept*: ``c = 2^e_y (mu~'_y - w~ . mu~'_x)``: one dot product round and
   one truncation.

Conditioning. With ``l2 > 0`` the ridge term bounds ``lambda_min`` and the
default count is the one that converges (at most the OLS count). For OLS the
default is the most iterations that keep the solver's last iterate at
``2^24`` (measured: at 2^21 diabetes loses 1e-4): K = 20 at F = 31 for d = 10
(59 to 61 rounds per server in all), 23 for d = 1, 17 for d = 64. It
resolves the equilibrated system to a relative residual of 1e-4 when the
correlation matrix of the (centred) columns has ``lambda_min >= 4 d ln(1e4)
/ 2^K`` (3.5e-4 for d = 10, 0.018 for d = 64; diabetes has 8.6e-3).
Components along smaller eigenvalues are shrunk towards 0 like extra ridge
(the spectral filter of ``protocol.spd``), never blown up: a documented
loss of accuracy, not a wrong model. An exactly collinear column still
gives the right predictions, but the split of the coefficient between the
collinear columns is arbitrary (rounding along the null direction is kept,
times at most ``2^K / t``). Columns whose spread is below 2^-10 (2^-14 in a
block) of their bound are equilibrated only that far.

Leakage: the servers learn shapes, scales and bounds (as for every job),
nothing else: every message is a reshare masked by a zero sharing, a
truncation message masked by a PRF, or a comparison's masked bits. The
receiver learns the model, or nothing if it is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from fractions import Fraction

import numpy as np

from mpc_core.errors import InvalidArgumentError
from mpc_core.fixed_point import default_fractional_bits, max_fractional_bits
from mpc_core.ring import Ring, RingArray
from mpc_core.sharing import ReplicatedShare
from mpc_server.protocol import arithmetic, compare, layout, linalg, spd
from mpc_server.protocol.context import PartyContext
from mpc_server.protocol.truncation import truncate
from mpc_server.service.model import DatasetSummary, StoredDataset
from mpc_server.service.programs.base import (
    BoundInputs,
    PlanInputs,
    ProgramPlan,
    RoleSpec,
    magnitude,
    plan_output,
    single,
    single_share,
)
from mpc_server.service.programs.linear_fit_plan import (
    BLOCK_RANGE_BITS,
    SINGLE_RANGE_BITS,
    Column,
    FitPlan,
    VectorRescale,
    plan_fit,
)
from mpc_server.service.programs.linear_regression import MAX_FEATURE_BLOCKS, feature_columns
from mpc_server.service.programs.params import Params, ParamSpec, ParamType

MAX_COLUMNS = 64
"""Feature columns in all (the solver's local work grows as ``K d^3``)."""


class LinearRegressionFit:
    """Least squares / ridge via the centred, equilibrated Gram block and Newton-Schulz, on shares."""

    name = "linear_regression.fit"
    summary = "ordinary least squares and ridge regression on features from any owners"
    roles: tuple[RoleSpec, ...] = (RoleSpec("features", 1, MAX_FEATURE_BLOCKS), RoleSpec("label"))
    parameters: tuple[ParamSpec, ...] = (
        ParamSpec(
            "l2", ParamType.NUMBER, "ridge strength on the raw sum of squares (sklearn's alpha)",
            default=0.0, minimum=0.0,
        ),
        ParamSpec("fit_intercept", ParamType.FLAG, "fit an unpenalised intercept", default=True),
        ParamSpec(
            "iterations", ParamType.INTEGER,
            "Newton-Schulz iterations (0: automatic: the most that keep 2^-24 resolution for OLS)",
            default=0, minimum=0, maximum=40,
        ),
    )  # fmt: skip
    outputs: tuple[str, ...] = ("weights", "intercept")

    def plan(self, ring: Ring, inputs: PlanInputs, params: Params, output_bits: int | None) -> ProgramPlan:
        """Shapes, then the checked plan of every step (:func:`.linear_fit_plan.plan_fit`)."""
        blocks, label = inputs["features"], single(inputs, "label")
        rows, widths = _shapes(blocks, label)
        intercept = bool(params["fit_intercept"])
        if rows <= sum(widths) + int(intercept):
            raise InvalidArgumentError(
                "linear_regression.fit needs more rows than feature columns (one more with an intercept): "
                "with fewer the fit interpolates the label, which the model would then reveal"
            )
        _require_ring(ring)
        target = default_fractional_bits(ring) if output_bits is None else output_bits
        if not 0 <= target <= max_fractional_bits(ring):
            raise InvalidArgumentError(
                f"output_fractional_bits must be within 0..{max_fractional_bits(ring)}"
            )
        l2, s = Fraction(float(params["l2"])), (rows - 1).bit_length()
        columns = [
            block_column(w, _bits(b), b.fractional_bits, l2, s) for b, w in zip(blocks, widths, strict=True)
        ]
        y = Column(1, _bits(label), label.fractional_bits)
        fit = plan_fit(ring, rows, columns, y, l2, intercept, int(params["iterations"]), target)
        what = "the model of linear_regression.fit"
        weights = plan_output(
            ring, "weights", (fit.d,), target, fit.weights_bound, output_bits=target, what=what
        )
        bound = 0 if fit.intercept is None else fit.intercept.bound
        constant = plan_output(ring, "intercept", (), target, bound, output_bits=target, what=what)
        return ProgramPlan((weights, constant), {"fit": fit})

    async def run(
        self, ctx: PartyContext, inputs: BoundInputs, plan: ProgramPlan
    ) -> dict[str, ReplicatedShare]:
        """Steps 1-8 of the module docstring, each awaited in turn (tags follow program order)."""
        fit: FitPlan = plan.details["fit"]
        z = await _working_columns(ctx, [*inputs["features"], single_share(inputs, "label")], fit)
        sums = await ctx.compute(z.size, _column_sums, z, fit.rows)
        means = None
        if fit.front.mean is not None:
            means = await linalg.rescale(
                ctx, arithmetic.mul_public(sums, fit.front.mean_factor), fit.front.mean
            )
        tag = ctx.allocate_tag()
        terms = await ctx.compute(z.size * (fit.d + 1), _gram_terms, z, sums, means, fit)
        scaled, factors = await _equilibrate(ctx, await arithmetic.reshare(ctx, terms, tag), fit)
        a, b = layout.split_columns(await linalg.rescale(ctx, scaled, fit.gram), fit.d, fit.d)
        solution = await arithmetic.mul(ctx, factors, await spd.solve_spd(ctx, a, b, fit.system))
        return await _model(ctx, solution, means, fit)


def _shapes(blocks: Sequence[DatasetSummary], label: DatasetSummary) -> tuple[int, list[int]]:
    """Row count and the blocks' widths; refuses other shapes, and blocks or a label of other lengths."""
    shapes = [feature_columns(block) for block in blocks]
    if label.shape not in ((label.shape[0],), (label.shape[0], 1)) if label.shape else True:
        raise InvalidArgumentError(f"label {label.ref} must be one column (N,)")
    if len({rows for rows, _ in shapes} | {label.shape[0]}) != 1:
        names = ", ".join(str(d.ref) for d in (*blocks, label))
        raise InvalidArgumentError(f"the features and the label differ in row count: {names}")
    widths = [cols for _, cols in shapes]
    if sum(widths) > MAX_COLUMNS:
        raise InvalidArgumentError(
            f"linear_regression.fit takes at most {MAX_COLUMNS} feature columns in all"
        )
    return label.shape[0], widths


def block_column(
    columns: int, magnitude_bits: int, fractional_bits: int, l2: Fraction, divide_bits: int
) -> Column:
    """A feature block, its exponent raised until its ridge term ``l2 4^-e / 2^s`` is at most 1.

    Raising the exponent by one halves the block's ``x~`` and quarters its
    ridge term: a public diagonal preconditioning, exact and free, so that a
    strong ``l2`` on small columns does not swamp the trace bound.
    """
    width = SINGLE_RANGE_BITS if columns == 1 else BLOCK_RANGE_BITS
    column = Column(columns, magnitude_bits, fractional_bits, range_bits=width)
    while l2 > Fraction(4) ** column.exponent * (1 << divide_bits):
        column = replace(column, shrink=column.shrink + 1)
    return column


def _bits(dataset: DatasetSummary) -> int:
    """The dataset's magnitude bits (refusing a dataset without a bound)."""
    return magnitude(dataset).bit_length() - 1


def _require_ring(ring: Ring) -> None:
    if ring.bits < 128:
        raise InvalidArgumentError(
            f"linear_regression.fit is not available in {ring.name}: the Gram block and the solver's "
            "products at scale 2^(2F) must stay below 2^(k - 41 - log2 count) to keep the job's "
            "truncations within the 2^-40 failure budget, which leaves no usable precision in 64 bits; "
            "run the cluster in Z_2^128 (the default ring)"
        )


async def _working_columns(ctx: PartyContext, datasets: list[StoredDataset], fit: FitPlan) -> ReplicatedShare:
    """Step 1: ``Z = [X~ | y~]`` at ``2^p``, row-major ``N x (d + 1)``."""
    columns = fit.front.columns
    big = [(d.share, c) for d, c in zip(datasets, columns, strict=True) if c.lift < 0]
    shrunk = None
    if big and fit.front.shrink is not None:
        width = sum(c.columns for _, c in big)
        lifted = await ctx.compute(fit.rows * width, _join_lifted, big, fit.rows, fit.front.shrink_bits)
        shrunk = await linalg.rescale(ctx, lifted, fit.front.shrink)
    shares = [d.share for d in datasets]
    return await ctx.compute(fit.rows * (fit.d + 1), _assemble, shares, columns, shrunk, fit.rows)


def _join_lifted(parts: list[tuple[ReplicatedShare, Column]], rows: int, top: int) -> ReplicatedShare:
    """The blocks to truncate side by side, each lifted to ``2^top``."""
    ring = parts[0][0].ring

    def component(pick: int) -> RingArray:
        pieces = [_lift(ring, _parts(x)[pick], rows, c.columns, top - c.read_bits) for x, c in parts]
        return np.concatenate(pieces, axis=1).reshape(-1)

    return ReplicatedShare(component(0), component(1))


def _lift(ring: Ring, values: RingArray, rows: int, columns: int, bits: int) -> RingArray:
    matrix = values.reshape(rows, columns)
    return ring.shl(matrix, bits) if bits else matrix


def _assemble(
    shares: list[ReplicatedShare], columns: Sequence[Column], shrunk: ReplicatedShare | None, rows: int
) -> ReplicatedShare:
    """Place every block's columns in ``Z``: lifted ones directly, truncated ones from ``shrunk``."""
    ring = shares[0].ring
    width = sum(c.columns for c in columns)
    out = [ring.empty((rows, width)), ring.empty((rows, width))]
    offset, taken = 0, 0
    for share, column in zip(shares, columns, strict=True):
        for pick, target in enumerate(out):
            if column.lift >= 0:
                source = _lift(ring, _parts(share)[pick], rows, column.columns, column.lift)
            elif shrunk is not None:
                source = _parts(shrunk)[pick].reshape(rows, -1)[:, taken : taken + column.columns]
            target[:, offset : offset + column.columns] = source
        taken += column.columns if column.lift < 0 else 0
        offset += column.columns
    return ReplicatedShare(out[0].reshape(-1), out[1].reshape(-1))


def _column_sums(z: ReplicatedShare, rows: int) -> ReplicatedShare:
    """Step 2's local part: ``1^T Z`` (each component summed: a linear map)."""
    ring = z.ring
    ones = ring.add_public(ring.zeros(rows), 1).reshape(1, rows)
    return ReplicatedShare(*(ring.matmul(ones, c.reshape(rows, -1)).reshape(-1) for c in _parts(z)))


def _gram_terms(
    z: ReplicatedShare, sums: ReplicatedShare, means: ReplicatedShare | None, fit: FitPlan
) -> RingArray:
    """Step 3: party i's terms of the first ``d`` rows of ``(Z - 1 mu'^T)^T (Z - 1 mu'^T)``."""
    width = fit.d + 1
    terms = linalg.gram_terms(z, fit.rows, width, z, width)
    if means is not None:
        ring = z.ring
        u = arithmetic.sub(sums, arithmetic.mul_public(means, fit.rows))
        left = layout.join_columns(u, means, width)  # [u | mu'], width x 2
        right = ReplicatedShare(
            *(np.concatenate(pair) for pair in zip(_parts(means), _parts(sums), strict=True))
        )
        terms = ring.sub(terms, linalg.matmul_terms(left, width, 2, right, width))
    return terms[: fit.d * width]


async def _equilibrate(
    ctx: PartyContext, gram: ReplicatedShare, fit: FitPlan
) -> tuple[ReplicatedShare, ReplicatedShare]:
    """Step 4: ``[D (G + ridge) D | D b]`` and ``r`` for secret ``D = diag(r)``, ``r_j = 2^m_j``.

    ``m_j`` counts the public thresholds ``bound_j / 4^k`` (k = 1..L_j) above
    the column's diagonal entry (one batched ``compare.less_than_public``), so
    ``r_j = 1 + sum_k [G_jj < bound_j / 4^k] 2^(k-1)`` is linear in the bits
    and ``r_j^2 G_jj < bound_j``. Then ``r r^T`` (one round) and the entrywise
    product with ``[r r^T | r]`` (one round).
    """
    ring, d, front = ctx.ring, fit.d, fit.front
    width = d + 1
    ridge = [front.ridge[i // width] if i % (width + 1) == 0 else 0 for i in range(d * width)]
    gram = layout.add_public_values(ctx.party, gram, ring.from_ints(ridge))
    most = len(front.thresholds) // d
    index = np.repeat(np.arange(d) * (width + 1), most)
    diagonal = ReplicatedShare(gram.first[index], gram.second[index])
    below = await compare.less_than_public(ctx, diagonal, ring.from_ints(list(front.thresholds)))
    powers = ring.from_ints([1 << k for k in range(most)])
    factors = ReplicatedShare(*(ring.matmul(c.reshape(d, most), powers) for c in _parts(below)))
    factors = arithmetic.add_public(ctx.party, factors, 1)
    outer = await linalg.matmul(ctx, factors, d, 1, factors, d)
    return await arithmetic.mul(ctx, layout.join_columns(outer, factors, d), gram), factors


async def _rescale_vector(ctx: PartyContext, x: ReplicatedShare, plan: VectorRescale) -> ReplicatedShare:
    """Apply a :class:`.linear_fit_plan.VectorRescale`: local lifts, then one truncation per group."""
    ring = ctx.ring
    if any(plan.lifts):
        x = _times(ring, x, plan.lifts)
    for group in plan.groups:
        index = np.array(group.indices)
        part = _times(ring, ReplicatedShare(x.first[index], x.second[index]), group.lifts)
        part = await truncate(ctx, part, group.shift)
        first, second = x.first.copy(), x.second.copy()
        first[index], second[index] = part.first, part.second
        x = ReplicatedShare(first, second)
    return x


def _times(ring: Ring, x: ReplicatedShare, lifts: Sequence[int]) -> ReplicatedShare:
    """``x * 2^lifts`` elementwise (public factors, local)."""
    factors = ring.from_ints([1 << lift for lift in lifts])
    return ReplicatedShare(ring.mul(x.first, factors), ring.mul(x.second, factors))


async def _model(
    ctx: PartyContext, solution: ReplicatedShare, means: ReplicatedShare | None, fit: FitPlan
) -> dict[str, ReplicatedShare]:
    """Steps 6 and 7: the weights at the output scale, and the intercept."""
    ring, d = ctx.ring, fit.d
    if means is None or fit.intercept is None:
        weights = await _rescale_vector(ctx, solution, fit.tail)
        return {"weights": weights, "intercept": ReplicatedShare(ring.zeros(1), ring.zeros(1))}
    joined = ReplicatedShare(
        *(np.concatenate([s, s, m]) for s, m in zip(_parts(solution), _parts(means), strict=True))
    )
    scaled = await _rescale_vector(ctx, joined, fit.tail)
    weights, w, mu_x, mu_y = (
        _slice(scaled, a, b) for a, b in ((0, d), (d, 2 * d), (2 * d, 3 * d), (3 * d, 3 * d + 1))
    )
    tag = ctx.allocate_tag()
    terms = ring.sub(ring.shl(mu_y.first, fit.intercept.r), arithmetic.dot_terms(w, mu_x))
    constant = await arithmetic.reshare(ctx, terms, tag)
    if fit.intercept.final is not None:
        constant = await linalg.rescale(ctx, constant, fit.intercept.final)
    else:
        constant = arithmetic.mul_public(constant, 1 << fit.intercept.lift)
    return {"weights": weights, "intercept": constant}


def _parts(x: ReplicatedShare) -> tuple[RingArray, RingArray]:
    return x.first, x.second


def _slice(x: ReplicatedShare, start: int, stop: int) -> ReplicatedShare:
    return ReplicatedShare(x.first[start:stop], x.second[start:stop])
