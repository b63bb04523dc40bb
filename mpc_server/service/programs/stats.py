"""``stats.summary``: count, sums, means, variances, covariances and correlations of columns from any owners.

Role ``columns``: 1 to 64 blocks, each a column ``(N,)`` or a matrix ``(N, d_b)``,
from any owners, with the same N; the ``d`` columns (at most 256) in block order.
Parameters: ``ddof`` (0: population, as ``numpy.var``'s default; 1: sample, as
``numpy.cov``'s) and ``min_variance`` (default 0). Outputs, in this order, all to the
receiver at scale ``2^F`` (``output_fractional_bits``, default the ring's, 2^32
in Z_2^128), each fit to be kept as a dataset (exact public bounds):
``count`` (N, public, for convenience), ``sum`` (d,), ``mean`` (d,), ``variance``
(d,; the diagonal of ``covariance``), ``covariance`` (d, d), ``correlation``
(d, d) and ``valid`` (d,): 1 where the column's correlations were computed, 0
where its variance is below ``max(min_variance, v_min)`` (``v_min`` below), whose
row and column of ``correlation`` are then exactly 0 (numpy would give NaN for
a constant column). ``valid`` is a function of ``variance`` and public
bounds: it reveals nothing the variances do not.

Method (``q = (k - 4) / 2``: 62 in Z_2^128, 30 in Z_2^64; ``2^s >= N``). Column
j's encoded values ``E_j`` (scale ``2^f_j``, ``|E_j| <= B_j <= 2^m_j``) are read at
scale ``2^m_j`` instead, so ``|x~| <= 1`` for free. Every truncation is
``stats_protocol.truncate_in_range`` (2 rounds, one public shift per element,
error below one unit, no failure probability: nothing here can fail).

1. ``S = 1^T E`` (local, exact) and the upper triangle of ``G = E^T E`` (one
   round, ``d(d+1)/2`` elements: traffic independent of N).
2. ``S'_j = S_j / 2^t_j`` with ``t_j = s + m_j - q`` (``|S'| <= 2^q``), ``S''_j = S_j
   2^(q - t_j)`` (a lift) and ``G'_ij = G_ij / 2^(t_i + t_j)``, in one batch.
3. Centring: ``T = N G' - S'_i S'_j - (S'_i L_j + L_i S'_j) / 2^q`` with the exact
   low parts ``L = S'' - 2^q S'``: one product round and one truncation give the
   outer product to two units of ``2^(2q)`` (``|T| <= 2^(2q)``), then
   ``T' = T / 2^(2q-p)`` at scale ``2^p`` (``p = k - 8 - g``: 88 in Z_2^128, 36 in
   Z_2^64) and at ``2^p_cov`` (``k - 4 - c``: 88, and 44 in Z_2^64). Read at its
   scale, ``T'`` is the covariance of ``x~`` times ``(N / 2^s)^2``.
4. Division by the public ``D = N (N - ddof)`` (``N`` for the means): one
   multiplication by ``round(2^h / D)`` (``c`` bits: 36 in Z_2^128, 16 in
   Z_2^64; the means' ``k - 4 - q``) and one truncation per entry to ``2^F``,
   batched with step 5's last one.
5. Correlation ``T'_ij / sqrt(T'_ii T'_jj)`` (ddof and every scale cancel): one
   batch of ``compare.less_than_public`` of ``T'_jj`` against the validity
   threshold and ``2^p 4^-e`` (e = 1..E_j) gives ``valid_j`` and ``4^e_j``,
   ``2^e_j`` with ``v'_j = T'_jj 4^e_j / 2^p`` in ``[1/4, 1]`` (range reduction:
   the variance has no public lower bound); ``y_j = rsqrt(v'_j)`` by
   ``stats_protocol.rsqrt_unit`` at scale ``2^g``; ``corr_ij = (T'_ij 2^(e_i + e_j))
   r_i r_j`` with ``r_j = valid_j y_j`` (exact products by integers, and an exact
   0 for every invalid column whatever its ``y``).

Error (``b_j = 2^(m_j - f_j)``, the column's public power-of-two bound, shared
by the columns of one dataset; against the uploaded values, which the owner's
SDK rounded to ``2^-f``). With ``eps(p) = (N + 4) 2^-2q + 2^-p`` the error of
``T'`` read at ``2^p``:

* sums exact when ``F >= f_j``, else within one unit of ``2^-F``;
* means within ``2^(2-q) b_j`` plus one unit (Z_2^128: ``2^-60 b_j``);
* covariances within ``8 eps(p_cov) b_i b_j + 2^-(c+1) |cov|`` plus one unit
  (Z_2^128: ``2^-85 b_i b_j + 2^-37 |cov|``; Z_2^64: ``2^-40 b_i b_j + 2^-17 |cov|``
  up to N = 2^16);
* correlations of valid columns within ``eta`` plus one unit, ``eta = 2^-21``
  (Z_2^64: ``2^-12``): ``valid_j = 1`` needs ``T'_jj >= theta_j``, with ``theta_j`` the
  larger of ``min_variance`` (in these units, ddof applied) and
  ``v_min = 2^p max(32 eps(p) / eta, 2 (16 a_j / eta)^2)``, which makes the
  perturbation of step 3 at most ``eta / 2`` in every correlation of column j
  (Z_2^128, no pre-shift: standard deviations above about ``2^-31 b_j``;
  Z_2^64: ``2^-9 b_j``, ``2^-5 b_j`` after a pre-shift).

Bounds: the plan refuses, before any message, a job whose Gram entries
``N B_i B_j`` or any intermediate could reach ``2^(k-2)``, or whose outputs
leave the ring. When only the Gram matrix would not fit (Z_2^64, or values
above ``2^(61-f)/sqrt(N)``-ish in Z_2^128), each block whose bound is too large
is first truncated by ``sigma_b`` bits (``N d_b`` elements, 2 rounds: traffic
then grows with N), which adds ``b_i b_j (a_i + a_j + a_i a_j)`` to the
covariances' error bound with ``a_j = 2^-m'_j`` (the new bound's bits).

Cost (no pre-shift, K Newton steps, 4 in Z_2^128): ``L + 6 K + 27`` rounds
(``L = log2 k``), traffic independent of N: per party about ``5 u`` elements
for ``u = d(d+1)/2`` (Gram, outer product, truncations, the division), ``8 d K``
in the rsqrt and ``d (1 + E_j)`` comparisons of ~``3.5 k`` bits
(``compare``). Measured (d = 10, Z_2^128): 52 rounds and 32-44 KB per server
for any N; local work O(N d^2) (/work/notes/stats.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from mpc_core import bounds
from mpc_core.errors import InvalidArgumentError
from mpc_core.fixed_point import default_fractional_bits, max_fractional_bits
from mpc_core.ring import Ring
from mpc_core.sharing import ReplicatedShare
from mpc_server.protocol.context import PartyContext
from mpc_server.service.model import DatasetSummary
from mpc_server.service.programs.base import (
    BoundInputs,
    PlanInputs,
    ProgramPlan,
    RoleSpec,
    magnitude,
    plan_output,
)
from mpc_server.service.programs.linear_regression import feature_columns
from mpc_server.service.programs.params import Params, ParamSpec, ParamType
from mpc_server.service.programs.stats_protocol import newton_iterations, run_summary

MAX_BLOCKS = 64
MAX_COLUMNS = 256
CORRELATION_ERROR_BITS = {128: 21, 64: 12}
RSQRT_BITS = {128: 32, 64: 20}
"""The scale of the rsqrt iteration; the centred products are kept at ``2^(k - 8 - bits)`` for it."""
DIVISOR_BITS = {128: 36, 64: 16}
"""Bits of ``round(2^h / D)``; the centred products are kept at ``2^(k - 4 - bits)`` for the covariances."""
"""``eta = 2^-bits``: the error allowed in a reported correlation (plus one unit of the output scale)."""


@dataclass(frozen=True)
class SummaryPlan:
    """Every public decision of a ``stats.summary`` job (per column, or per upper-triangle entry)."""

    rows: int
    widths: tuple[int, ...]
    input_shifts: tuple[int, ...]
    """Per block: bits to truncate the inputs by before the Gram matrix (0 unless it would not fit)."""
    q: int
    """Sums are kept at ``|S'| <= 2^q``, ``q = (k - 4) / 2``."""
    p: int
    """The centred products ``T'`` are at scale ``2^p`` (``|T'| <= 2^p`` about) for the correlations."""
    p_covariance: int
    """... and at ``2^p_covariance`` for the covariances (more bits in Z_2^64, fewer for the divisor)."""
    g: int
    """The scale of the rsqrt iteration (``p + g = k - 8``)."""
    fractional_bits: int
    """F, the outputs' scale."""
    sum_shifts: tuple[int, ...]
    """``t_j`` and ``t_j - q`` per column, ``t_i + t_j`` per upper entry, ``f_j - F`` per column (step 2)."""
    coefficients: tuple[int, ...]
    """``round(2^h / D)`` per upper entry, ``round(2^h' / N)`` per column; 0 where the result rounds to 0."""
    final_shifts: tuple[int, ...]
    """Covariance per upper entry, mean per column, correlation per upper entry (steps 4, 5)."""
    thresholds: tuple[int, ...]
    """Per column ``theta_j``, then ``2^(p - 2e)`` for e = 1..E_j: the comparisons of ``T'_jj``."""
    octaves: tuple[int, ...]
    """``E_j`` per column."""
    newton_iterations: int

    @property
    def columns(self) -> int:
        """The number of columns, d."""
        return sum(self.widths)


def _shift_bound(bound: int, shift: int) -> int:
    """A bound on ``x / 2^shift`` (truncated: off by less than one) or ``x 2^-shift`` (lifted)."""
    return (bound >> shift) + 1 if shift > 0 else bound << -shift


def _require_in_range(ring: Ring, bound: int, what: str) -> None:
    """Refuse unless ``|x| <= bound`` keeps x below ``2^(k-2)`` (the range truncation needs)."""
    if bound >= 1 << (ring.bits - 2):
        raise InvalidArgumentError(
            f"{what} could reach 2^{bounds.bound_bits(bound)} in {ring.name}, beyond 2^{ring.bits - 2}; "
            "refused before any computation. Use inputs with tighter bounds or fewer fractional bits, "
            "or a larger ring"
        )


@dataclass(frozen=True)
class _Columns:
    rows: int
    widths: tuple[int, ...]
    shifts: tuple[int, ...]
    scales: list[int]
    bounds: list[int]
    shift_errors: list[Fraction]


def _columns(ring: Ring, blocks: tuple[DatasetSummary, ...], ddof: int) -> _Columns:
    """Rows, widths, and per column the scale and bound after any pre-shift (module docstring)."""
    shapes = [feature_columns(block) for block in blocks]
    names = ", ".join(str(block.ref) for block in blocks)
    if len({rows for rows, _ in shapes}) != 1:
        raise InvalidArgumentError(f"the column datasets differ in row count: {names}")
    rows, d = shapes[0][0], sum(cols for _, cols in shapes)
    if d > MAX_COLUMNS:
        raise InvalidArgumentError(f"stats.summary takes at most {MAX_COLUMNS} columns, got {d}")
    if rows < 1 + ddof:
        raise InvalidArgumentError(f"ddof = {ddof} needs at least {1 + ddof} rows")
    cap = (ring.bits - 3 - (rows - 1).bit_length()) // 2  # N 2^(2 cap) < 2^(k-2)
    shifts, scales, limits, errors = [], [], [], []
    for block, (_, cols) in zip(blocks, shapes, strict=True):
        bound, f = magnitude(block), block.fractional_bits
        shift = next(s for s in range(ring.bits) if bounds.bound_bits(_shift_bound(bound, s)) <= cap or s > f)
        if shift > f or cap < 1:
            raise InvalidArgumentError(
                f"the values of {block.ref} (up to {bounds.describe(bound, f)}) are too large for "
                f"{rows} rows in {ring.name}: their sums of squares would not fit; upload them scaled "
                "down (e.g. in thousands) or use Z_2^128"
            )
        if shift:
            _require_in_range(ring, bound, f"the values of {block.ref}")
        new_bound = bound if shift == 0 else _shift_bound(bound, shift)
        shifts.append(shift)
        scales += [f - shift] * cols
        limits += [new_bound] * cols
        error = Fraction(0) if shift == 0 else Fraction(1, 1 << bounds.bound_bits(new_bound))
        errors += [error] * cols
    return _Columns(rows, tuple(c for _, c in shapes), tuple(shifts), scales, limits, errors)


class StatsSummary:
    """Count, sums, means, variances, covariances and correlations; traffic independent of N."""

    name = "stats.summary"
    summary = "per-column count, sum, mean, variance; covariance and correlation across all columns"
    outputs: tuple[str, ...] = ("count", "sum", "mean", "variance", "covariance", "correlation", "valid")
    roles: tuple[RoleSpec, ...] = (RoleSpec("columns", 1, MAX_BLOCKS),)
    parameters: tuple[ParamSpec, ...] = (
        ParamSpec("ddof", ParamType.INTEGER, "delta degrees of freedom: 0 population, 1 sample", 0, 0, 1),
        ParamSpec(
            "min_variance",
            ParamType.NUMBER,
            "columns with a smaller variance get valid = 0 and correlations 0",
            default=0.0,
            minimum=0.0,
        ),
    )

    def plan(self, ring: Ring, inputs: PlanInputs, params: Params, output_bits: int | None) -> ProgramPlan:
        """Check shapes and bounds, decide every shift, threshold and constant (module docstring)."""
        ddof, min_variance = int(params["ddof"]), Fraction(float(params["min_variance"]))
        out = default_fractional_bits(ring) if output_bits is None else output_bits
        if not 0 <= out <= max_fractional_bits(ring):
            raise InvalidArgumentError(
                f"output_fractional_bits must be within 0..{max_fractional_bits(ring)} in {ring.name}"
            )
        columns = _columns(ring, inputs["columns"], ddof)
        plan, output_bounds = _summary_plan(ring, columns, ddof, min_variance, out)
        names = ", ".join(str(block.ref) for block in inputs["columns"])
        d, rows = plan.columns, plan.rows
        shapes: dict[str, tuple[int, ...]] = {
            "count": (), "sum": (d,), "mean": (d,), "variance": (d,),
            "covariance": (d, d), "correlation": (d, d), "valid": (d,),
        }  # fmt: skip
        what = f"stats.summary over {names} ({rows} rows)"
        outputs = tuple(
            plan_output(
                ring,
                name,
                shapes[name],
                out,
                output_bounds[name],
                output_bits=out,
                what=f"the {name} of {what}",
            )
            for name in self.outputs
        )
        return ProgramPlan(outputs, {"summary": plan})

    async def run(
        self, ctx: PartyContext, inputs: BoundInputs, plan: ProgramPlan
    ) -> dict[str, ReplicatedShare]:
        """The protocol of the module docstring (``stats_protocol.run_summary``)."""
        summary: SummaryPlan = plan.details["summary"]
        return await run_summary(ctx, [block.share for block in inputs["columns"]], summary)


def _divide(
    ring: Ring, value_bits: int, divisor: int, offsets: list[int], bound: int
) -> tuple[list[int], list[int], list[int]]:
    """Step 4 for ``|x| <= bound ~ 2^value_bits``: ``x 2^offset / divisor`` as ``x c / 2^(h - offset)``.

    ``c = round(2^h / divisor)`` has ``k - 4 - value_bits`` or one more bits, so
    ``x c`` stays below ``2^(k-2)``. Returns the coefficients, the shifts and the
    results' bounds per entry; an entry whose shift would exceed ``k - 2`` is
    below half a unit: coefficient 0, result exactly 0.
    """
    h = ring.bits - 4 - value_bits + divisor.bit_length()
    c = round(Fraction(1 << h, divisor))
    shifts = [h - offset for offset in offsets]
    keep = [shift <= ring.bits - 2 for shift in shifts]
    for shift, kept in zip(shifts, keep, strict=True):
        if kept:
            _require_in_range(ring, bound * c << max(0, -shift), "a scaled covariance or mean")
    coefficients = [c if kept else 0 for kept in keep]
    results = [
        _shift_bound(bound * c, shift) if kept else 0 for shift, kept in zip(shifts, keep, strict=True)
    ]
    return coefficients, [shift if kept else 0 for shift, kept in zip(shifts, keep, strict=True)], results


def _summary_plan(
    ring: Ring, columns: _Columns, ddof: int, min_variance: Fraction, out: int
) -> tuple[SummaryPlan, dict[str, int]]:
    """The shifts and constants of steps 2-5 and the outputs' bounds, all checked in exact integers."""
    k, rows, q = ring.bits, columns.rows, (ring.bits - 4) // 2
    g = RSQRT_BITS[k]
    p = k - 8 - g
    p_cov = k - 4 - DIVISOR_BITS[k]
    f, limit = columns.scales, columns.bounds
    t = [(rows - 1).bit_length() + bounds.bound_bits(b) - q for b in limit]  # |S / 2^t| <= 2^q
    d = len(f)
    pairs = list(zip(*(index.tolist() for index in np.triu_indices(d)), strict=True))
    sum_shifts = [*t, *(t_j - q for t_j in t), *(t[i] + t[j] for i, j in pairs), *(f_j - out for f_j in f)]
    _require_in_range(ring, rows * max(limit) ** 2, "a sum of squares (the Gram matrix)")
    sum_bounds = [_shift_bound(rows * b, f_j - out) for b, f_j in zip(limit, f, strict=True)]
    for b, f_j, t_j in zip(limit, f, t, strict=True):
        _require_in_range(ring, rows * b << max(0, out - f_j, q - t_j), "a column sum")
    t_bound = _shift_bound((1 << 2 * q) + rows + 4, 2 * q - p_cov)  # T' for covariances (step 3)
    offsets = [2 * q - p_cov + t[i] + t[j] + out - f[i] - f[j] for i, j in pairs]
    cov = _divide(ring, p_cov, rows * (rows - ddof), offsets, t_bound)
    mean = _divide(ring, q, rows, [t[j] + out - f[j] for j in range(d)], (1 << q) + 1)
    thresholds, octaves = _thresholds(
        ring, columns, p, t, divisor=rows * (rows - ddof), min_variance=min_variance
    )
    eta = Fraction(1, 1 << CORRELATION_ERROR_BITS[k])
    finals = (*cov[1], *mean[1], *[p + g - out] * len(pairs))  # corr: W at 2^p times 2^g
    plan = SummaryPlan(
        rows, columns.widths, columns.shifts, q, p, p_cov, g, out, tuple(sum_shifts), (*cov[0], *mean[0]),
        finals, tuple(thresholds), tuple(octaves), newton_iterations(float(eta) / 64),
    )  # fmt: skip
    output_bounds = {
        "count": rows << out,
        "sum": max(sum_bounds),
        "mean": max(mean[2]),
        "variance": max(cov[2][e] for e, (i, j) in enumerate(pairs) if i == j),
        "covariance": max(cov[2]),
        "correlation": 2 << out,
        "valid": 1 << out,
    }
    return plan, output_bounds


def _thresholds(
    ring: Ring, columns: _Columns, p: int, t: list[int], *, divisor: int, min_variance: Fraction
) -> tuple[list[int], list[int]]:
    """Per column the validity threshold on ``T'_jj`` (scale 2^p) and the octaves below 1 to compare.

    ``theta_j`` is the larger of ``min_variance`` in T' units and ``v_min`` (module docstring).
    """
    k, rows, q = ring.bits, columns.rows, (ring.bits - 4) // 2
    eta = Fraction(1, 1 << CORRELATION_ERROR_BITS[k])
    eps = Fraction(rows + 4, 1 << (2 * q)) + Fraction(1, 1 << p)  # the error of T' (step 3)
    thresholds: list[int] = []
    octaves: list[int] = []
    for j, f_j in enumerate(columns.scales):
        floor = max(32 * eps / eta, 2 * (16 * columns.shift_errors[j] / eta) ** 2)
        exponent = 2 * f_j - 2 * t[j] - (2 * q - p)
        from_parameter = min_variance * divisor * (Fraction(2) ** exponent)
        theta = min(max(math.ceil(floor * (1 << p)), math.ceil(from_parameter), 1), 1 << (p + 1))
        count = next(e for e in range(p + 2) if (1 << max(p - 2 * e, 0)) <= theta)
        thresholds += [theta, *(1 << max(p - 2 * e, 0) for e in range(1, count + 1))]
        octaves.append(count)
    return thresholds, octaves
