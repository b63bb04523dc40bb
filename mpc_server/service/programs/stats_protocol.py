"""The protocol steps of ``stats.summary``: truncation that cannot fail, a unit-range rsqrt, Gram terms.

Everything here builds only on ``mpc_server.protocol`` and the core (it could
move to the protocol package unchanged); the program, its plan and its bound
analysis are in :mod:`.stats`.

* :func:`truncate_in_range`: ``x / 2^d`` for ``|x| < 2^(k-2)``, one public shift
  per element, error below one unit and **no failure probability** (ABY3 Share
  Truncation I fails with probability ``2^(l+1-k)`` for ``|x| < 2^l``: sums of
  squares of a million rows at ``2^64`` could not be truncated at all). The
  known-MSB truncation (Dalskov, Escudero, Keller, PoPETs 2020, eprint
  2019/131; secretflow/spu ``TruncAPr``) in the replicated layout: 2 rounds.
* :func:`rsqrt_unit`: ``1/sqrt(v)`` for ``v`` in about ``[1/4, 1]`` by
  Newton's iteration ``y <- y (3 - v y^2) / 2`` from the public affine start
  ``y_0 = 2 - v`` (``|1 - v y_0^2| <= 0.235`` on the range), every product
  truncated by :func:`truncate_in_range`: 6 rounds per iteration, no failure
  probability, in both rings.
* :func:`gram_upper_terms`, :func:`column_sums`: local parts of ``X^T X``
  (upper triangle, block pair by block pair, no copy of X) and of ``1^T X``.
* :func:`run_summary`: the steps of ``stats.summary`` in order, from its
  ``SummaryPlan`` (every public decision, made by ``StatsSummary.plan``).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from mpc_core.bits import concat
from mpc_core.errors import InvalidArgumentError
from mpc_core.prg import prf_elements
from mpc_core.ring import Ring, RingArray, ring_of
from mpc_core.sharing import ReplicatedShare
from mpc_core.types import PartyId
from mpc_server.protocol import arithmetic, compare, layout
from mpc_server.protocol.context import PartyContext

if TYPE_CHECKING:
    from mpc_server.service.programs.stats import SummaryPlan

Shifts = npt.NDArray[np.int64]
"""One public shift per element (negative: a lift by ``2^-shift``)."""


# ---------------------------------------------------------------------------- local helpers


def take(x: ReplicatedShare, index: npt.NDArray[np.intp]) -> ReplicatedShare:
    """Share of ``x[index]`` (local)."""
    return ReplicatedShare(np.ascontiguousarray(x.first[index]), np.ascontiguousarray(x.second[index]))


def mul_public_values(x: ReplicatedShare, values: RingArray) -> ReplicatedShare:
    """Share of ``x * c`` elementwise for public ring elements ``c`` (local)."""
    ring = x.ring
    return ReplicatedShare(ring.mul(x.first, values), ring.mul(x.second, values))


def powers_of_two(ring: Ring, exponents: Shifts) -> RingArray:
    """The public ``2^e`` (reduced modulo ``2^k``) for every exponent ``e >= 0``."""
    out = ring.empty(exponents.shape)
    for exponent in np.unique(exponents):
        out[exponents == exponent] = ring.from_ints([1 << int(exponent)])[0]
    return out


def _by_shift(ring: Ring, values: RingArray, shifts: Shifts, op: str) -> RingArray:
    """``values >> shift`` (logical: the floor of unsigned values, ``op = "lshr"``) or ``<<`` (``"shl"``)."""
    out = ring.empty(values.shape)
    for shift in np.unique(shifts):
        index = np.flatnonzero(shifts == shift)
        out[index] = getattr(ring, op)(values[index], int(shift))
    return out


def _ceil_shift(ring: Ring, values: RingArray, shifts: Shifts) -> RingArray:
    """``ceil(v / 2^d)`` of the unsigned values, per element: the floor plus [low bits non-zero]."""
    floor = _by_shift(ring, values, shifts, "lshr")
    low = ring.sub(values, _by_shift(ring, floor, shifts, "shl"))
    nonzero = ring.words(low).reshape(-1, ring.words_per_element).any(axis=1)
    return ring.add(floor, ring.from_signed64(np.asarray(nonzero, dtype=np.int64)))


def column_sums(ring: Ring, x: ReplicatedShare, rows: int, cols: int) -> ReplicatedShare:
    """Share of ``1^T X`` for a shared (rows x cols) X: exact and local."""
    ones = np.repeat(ring.from_ints([1]), rows).reshape(1, rows)
    first = ring.matmul(ones, x.first.reshape(rows, cols)).reshape(-1)
    return ReplicatedShare(first, ring.matmul(ones, x.second.reshape(rows, cols)).reshape(-1))


def _sums(blocks: list[ReplicatedShare], rows: int, widths: tuple[int, ...]) -> ReplicatedShare:
    return concat(*[column_sums(b.ring, b, rows, w) for b, w in zip(blocks, widths, strict=True)])


def gram_upper_terms(blocks: list[ReplicatedShare], rows: int, widths: list[int]) -> RingArray:
    """Party i's 3-out-of-3 terms of the upper triangle of ``X^T X``, X the blocks side by side.

    Each pair of blocks ``b <= c`` is one call of the fused kernel
    ``Ring.cross_terms`` on the blocks' own arrays (X is never assembled);
    the result lists ``(X^T X)[i, j]`` for ``i <= j`` in ``numpy.triu_indices`` order.
    """
    ring = blocks[0].ring
    d = sum(widths)
    full = ring.zeros((d, d))
    starts = np.cumsum([0, *widths])
    parts = [
        (b.first.reshape(rows, w), b.second.reshape(rows, w)) for b, w in zip(blocks, widths, strict=True)
    ]
    for i, (xi0, xi1) in enumerate(parts):
        for j in range(i, len(parts)):
            xj0, xj1 = parts[j]
            block = ring.cross_terms(xi0, xi1, xj0, xj1)
            full[starts[i] : starts[i + 1], starts[j] : starts[j + 1]] = block
    upper_i, upper_j = np.triu_indices(d)
    return np.ascontiguousarray(full[upper_i, upper_j])


# ---------------------------------------------------------------------------- truncation


def _check_shifts(ring: Ring, x: ReplicatedShare, shifts: Shifts) -> None:
    if shifts.shape != (x.size,):
        raise InvalidArgumentError(f"{x.size} values need as many shifts, got {shifts.shape}")
    if shifts.size and (int(shifts.min()) < 0 or int(shifts.max()) > ring.bits - 2):
        raise InvalidArgumentError(f"truncation shifts must be within 0..{ring.bits - 2}")


async def truncate_in_range(ctx: PartyContext, x: ReplicatedShare, shifts: Shifts) -> ReplicatedShare:
    """Share of ``x / 2^shift`` per element, error below one unit, for ``|x| < 2^(k-2)``.

    With ``x' = x + 2^(k-2)`` (in ``[0, 2^(k-1))``), party 0 knows ``a = x'_0 +
    x'_1`` and parties 1 and 2 know ``b = x'_2`` (unsigned, mod ``2^k``); then
    ``x' = a + b - w 2^k`` with the wrap bit ``w = msb(a) OR msb(b)`` (a sum
    below ``2^(k-1)`` wraps exactly when either addend has its top bit set).
    So ``floor(a / 2^d) + ceil(b / 2^d) - w 2^(k-d) - 2^(k-2-d)`` is within one
    unit of ``x / 2^d``, and only ``w`` needs interaction:

    1. Party 0 sends party 2 ``msb(a) - r`` with ``r = F(k_1)``, which parties
       0 and 1 hold and party 2 lacks (one element per value).
    2. ``w = u_1 + u_2`` for party 1's ``u_1 = r (1 - msb(b)) + msb(b)`` and
       party 2's ``u_2 = (msb(a) - r)(1 - msb(b))``.
    3. The 3-out-of-3 sum ``p_0 = floor(a / 2^d)``, ``p_1 = ceil(b / 2^d) -
       2^(k-2-d) - 2^(k-d) u_1``, ``p_2 = -2^(k-d) u_2`` is reshared
       (``arithmetic.reshare``: one round, every message padded by a PRF
       output its receiver lacks).

    Rounds 2; elements sent per value: 2 (party 0), 1, 1. Floor and ceiling
    make the error unbiased, as in ``protocol.truncation``; ``0`` stays ``0``
    exactly. For ``|x| >= 2^(k-2)`` the result is wrong (callers check the
    bound in their plans).
    """
    ring = ctx.ring
    _check_shifts(ring, x, shifts)
    tag, reshare_tag = ctx.allocate_tag(), ctx.allocate_tag()
    n, keys = x.size, ctx.require_keys()
    label = tag.to_bytes(b"stats.truncate.r")
    if ctx.party == 0:
        r = prf_elements(ring, keys.next, label, n)  # k_1
        message, terms = await ctx.compute(n, _party0_parts, x, shifts, r)
        ctx.stats.rounds += 1
        await ctx.send_elements(PartyId(2), tag, message)
    elif ctx.party == 1:
        r = prf_elements(ring, keys.own, label, n)  # k_1
        terms = await ctx.compute(n, _party1_terms, x.second, shifts, r)
    else:
        ctx.stats.rounds += 1
        masked = await ctx.recv_elements(PartyId(0), tag, n)
        terms = await ctx.compute(n, _party2_terms, x.first, shifts, masked)
    return await arithmetic.reshare(ctx, terms, reshare_tag)


def _party0_parts(x: ReplicatedShare, shifts: Shifts, r: RingArray) -> tuple[RingArray, RingArray]:
    """Party 0's message ``msb(a) - r`` and term ``floor(a / 2^d)``, ``a = x_0 + 2^(k-2) + x_1``."""
    ring = x.ring
    a = ring.add_public(ring.add(x.first, x.second), 1 << (ring.bits - 2))
    return ring.sub(ring.lshr(a, ring.bits - 1), r), _by_shift(ring, a, shifts, "lshr")


def _not_top(ring: Ring, b: RingArray) -> RingArray:
    return ring.sub(np.repeat(ring.from_ints([1]), b.size), ring.lshr(b, ring.bits - 1))


def _party1_terms(b: RingArray, shifts: Shifts, r: RingArray) -> RingArray:
    """``ceil(b / 2^d) - 2^(k-2-d) - 2^(k-d) u_1`` with ``u_1 = r (1 - msb(b)) + msb(b)``."""
    ring, k = ring_of(b), ring_of(b).bits
    u = ring.add(ring.mul(r, _not_top(ring, b)), ring.lshr(b, k - 1))
    terms = ring.sub(_ceil_shift(ring, b, shifts), powers_of_two(ring, k - 2 - shifts))
    return ring.sub(terms, ring.mul(u, powers_of_two(ring, k - shifts)))


def _party2_terms(b: RingArray, shifts: Shifts, masked: RingArray) -> RingArray:
    """``-2^(k-d) u_2`` with ``u_2 = (msb(a) - r)(1 - msb(b))``."""
    ring = ring_of(b)
    u = ring.mul(masked, _not_top(ring, b))
    return ring.neg(ring.mul(u, powers_of_two(ring, ring.bits - shifts)))


async def shift(ctx: PartyContext, x: ReplicatedShare, shifts: Shifts) -> ReplicatedShare:
    """Share of ``x / 2^shift`` per element: lifts (``shift < 0``) exact and local, then one truncation.

    Every value, lifted, must satisfy ``|x| < 2^(k-2)``; 2 rounds unless no shift is positive.
    """
    lifts = np.maximum(-shifts, 0)
    if lifts.any():
        x = mul_public_values(x, powers_of_two(ctx.ring, lifts))
    if not (shifts > 0).any():
        return x
    return await truncate_in_range(ctx, x, np.maximum(shifts, 0))


async def shift_all(ctx: PartyContext, x: ReplicatedShare, bits: int) -> ReplicatedShare:
    """:func:`shift` with the same shift for every element."""
    return await shift(ctx, x, np.full(x.size, bits, dtype=np.int64))


# ---------------------------------------------------------------------------- rsqrt on [1/4, 1]


START_ERROR = 0.2366
"""``max |1 - v (2 - v)^2|`` over ``v`` in ``[1/4 - 2^-20, 1 + 2^-20]`` (0.2344 at 1/4, rounded up)."""


def newton_iterations(target: float) -> int:
    """Iterations of :func:`rsqrt_unit` until ``|1 - v y^2|`` is below ``target`` (rounding aside).

    One Newton step maps the error ``e = 1 - v y^2`` to ``e^2 (3 + e) / 4``.
    """
    error, count = START_ERROR, 0
    while error > target:
        error, count = error * error * (3 + error) / 4, count + 1
    return count


async def rsqrt_unit(ctx: PartyContext, v: ReplicatedShare, bits: int, iterations: int) -> ReplicatedShare:
    """Share of ``1/sqrt(v)`` at scale ``2^(bits+1)`` for ``v`` at scale ``2^bits`` in about [1/4, 1].

    Newton's iteration for ``v^(-1/2)`` (e.g. Markstein, IBM J. R&D 1990),
    ``y <- (3 y - v y^3) / 2``, from ``y_0 = 2 - v``. One iteration:

    1. ``[v y | y y]`` in one product round, truncated with ``y`` itself to
       scale ``2^bits`` (:func:`truncate_in_range`, 2 rounds);
    2. ``z = (v y)(y y)`` (one round), truncated to scale ``2^bits`` (2 rounds);
    3. ``3 y - z`` is ``y_next`` at scale ``2^(bits+1)`` (local: the halving is
       the change of scale).

    Rounds ``6 K``; elements per party ``n (3K)`` in products and ``n (4K)``
    truncated. Needs ``|values| * 2^(2 bits + 4) < 2^(k-2)``; the error after
    ``K`` iterations is that of :func:`newton_iterations` plus a few units of
    ``2^-bits`` (Newton's step corrects earlier rounding). Outside the range
    the result is meaningless (the caller discards it).
    """
    n = v.size
    y = arithmetic.add_public(ctx.party, arithmetic.mul_public(v, -1), 2 << bits)
    y_bits = bits
    for _ in range(iterations):
        products = await arithmetic.mul(ctx, concat(v, y), concat(y, y))
        shifts = np.repeat(np.array([y_bits, 2 * y_bits - bits, y_bits - bits], dtype=np.int64), n)
        parts = await shift(ctx, concat(products, y), shifts)
        vy, yy, y_now = (take(parts, np.arange(j * n, (j + 1) * n)) for j in range(3))
        z = await shift_all(ctx, await arithmetic.mul(ctx, vy, yy), bits)
        y, y_bits = arithmetic.sub(arithmetic.mul_public(y_now, 3), z), bits + 1
    if y_bits == bits:  # no iteration: bring y_0 to the documented scale
        y = arithmetic.mul_public(y, 2)
    return y


# ---------------------------------------------------------------------------- the program's steps


def _split(x: ReplicatedShare, sizes: list[int]) -> list[ReplicatedShare]:
    ends = np.cumsum([0, *sizes])
    return [take(x, np.arange(a, b)) for a, b in itertools.pairwise(ends)]


def _upper(d: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Upper-triangle rows and columns, and for every (i, j) of the full matrix its upper entry."""
    rows, cols = np.triu_indices(d)
    full = np.zeros((d, d), dtype=np.intp)
    full[rows, cols] = full[cols, rows] = np.arange(rows.size)
    return rows, cols, full.reshape(-1)


async def run_summary(
    ctx: PartyContext, blocks: list[ReplicatedShare], plan: SummaryPlan
) -> dict[str, ReplicatedShare]:
    """Steps 1-5 of ``stats.summary`` (its module docstring); every output at scale ``2^F``."""
    ring, rows, d, out = ctx.ring, plan.rows, plan.columns, plan.fractional_bits
    for index, bits in enumerate(plan.input_shifts):
        if bits:
            blocks[index] = await shift_all(ctx, blocks[index], bits)
    upper_i, _, full = _upper(d)
    sums = await ctx.compute(rows * d, _sums, blocks, rows, plan.widths)
    tag = ctx.allocate_tag()
    terms = await ctx.compute(rows * d * d, gram_upper_terms, blocks, rows, list(plan.widths))
    gram = await arithmetic.reshare(ctx, terms, tag)
    scaled = await shift(ctx, concat(sums, sums, gram, sums), np.array(plan.sum_shifts, dtype=np.int64))
    s1, lifted, g1, total = _split(scaled, [d, d, upper_i.size, d])
    centred, for_covariance = await _centre(ctx, s1, lifted, g1, plan)
    correlation, valid = await _correlation(ctx, centred, plan)
    coefficients = ring.from_ints(list(plan.coefficients))
    divided = mul_public_values(concat(for_covariance, s1), coefficients)
    final = await shift(ctx, concat(divided, correlation), np.array(plan.final_shifts, dtype=np.int64))
    covariance, mean, corr = _split(final, [upper_i.size, d, upper_i.size])
    return {
        "count": layout.public_share(ctx.party, ring.from_ints([rows << out])),
        "sum": total,
        "mean": mean,
        "variance": take(covariance, full[:: d + 1]),
        "covariance": take(covariance, full),
        "correlation": take(corr, full),
        "valid": arithmetic.mul_public(valid, 1 << out),
    }


async def _centre(
    ctx: PartyContext, s1: ReplicatedShare, lifted: ReplicatedShare, g1: ReplicatedShare, plan: SummaryPlan
) -> tuple[ReplicatedShare, ReplicatedShare]:
    """Step 3: ``T' = (N G' - S' S'^T) / 2^(2q - p)``, and at ``2^p_covariance`` (two units).

    With ``S'' = S / 2^(t - q)`` (a lift, exact) and ``L = S'' - 2^q S'`` (exact,
    ``|L| < 2^q``), ``S_i S_j / 2^(t_i + t_j) = S'_i S'_j + (S'_i L_j + L_i S'_j) / 2^q
    + L_i L_j / 2^(2q)``: one product round for the first two (the cross term
    summed before its reshare), one truncation for the second; the last is
    below one unit and dropped. So ``T`` is within ``N + 4`` units (``N + 2`` when ``S''`` is a lift).
    """
    rows, q = plan.rows, plan.q
    upper_i, upper_j, _ = _upper(plan.columns)
    low = arithmetic.sub(lifted, arithmetic.mul_public(s1, 1 << q))
    high_i, high_j, low_i, low_j = (
        take(s1, upper_i),
        take(s1, upper_j),
        take(low, upper_i),
        take(low, upper_j),
    )
    tag = ctx.allocate_tag()
    cross = ctx.ring.add(arithmetic.mul_terms(high_i, low_j), arithmetic.mul_terms(low_i, high_j))
    terms = np.concatenate([arithmetic.mul_terms(high_i, high_j), cross])
    high, mixed = _split(await arithmetic.reshare(ctx, terms, tag), [upper_i.size, upper_i.size])
    outer = arithmetic.add(high, await shift_all(ctx, mixed, q))
    centred = arithmetic.sub(arithmetic.mul_public(g1, rows), outer)
    if plan.p_covariance == plan.p:
        reduced = await shift_all(ctx, centred, 2 * q - plan.p)
        return reduced, reduced
    shifts = np.repeat(np.array([2 * q - plan.p, 2 * q - plan.p_covariance], dtype=np.int64), upper_i.size)
    for_correlation, for_covariance = _split(
        await shift(ctx, concat(centred, centred), shifts), [upper_i.size] * 2
    )
    return for_correlation, for_covariance


def _power_of(ring: Ring, below: RingArray, octaves: tuple[int, ...], base: int) -> RingArray:
    """``base^(e_j) - 1 = sum_e (base - 1) base^(e-1) [T'_jj < 2^p 4^-e]`` per column, on one component."""
    weights = ring.from_ints(
        [(base - 1) * base ** (e - 1) if e else 0 for n in octaves for e in range(n + 1)]
    )
    weighted, ends = ring.mul(below, weights), np.cumsum([0, *(n + 1 for n in octaves)])
    one = ring.from_ints([1])
    sums = [
        ring.matmul(np.repeat(one, b - a).reshape(1, -1), weighted[a:b]) for a, b in itertools.pairwise(ends)
    ]
    return np.concatenate(sums)


async def _correlation(
    ctx: PartyContext, centred: ReplicatedShare, plan: SummaryPlan
) -> tuple[ReplicatedShare, ReplicatedShare]:
    """Step 5: ``corr`` per upper entry at scale ``2^(p + g)`` and the 0/1 ``valid`` per column."""
    ring, d, party, g = ctx.ring, plan.columns, ctx.party, plan.g
    upper_i, upper_j, full = _upper(d)
    variances = take(centred, full[:: d + 1])
    owner = np.repeat(np.arange(d), np.array(plan.octaves) + 1)
    below = await compare.less_than_public(ctx, take(variances, owner), ring.from_ints(list(plan.thresholds)))
    first = np.flatnonzero(np.diff(np.concatenate([[-1], owner])))
    ones = np.repeat(ring.from_ints([1]), d)
    valid = layout.add_public_values(party, arithmetic.mul_public(take(below, first), -1), ones)
    two, four = (
        layout.add_public_values(
            party,
            ReplicatedShare(
                *(_power_of(ring, part, plan.octaves, base) for part in (below.first, below.second))
            ),
            ones,
        )
        for base in (2, 4)
    )  # 2^(e_j), 4^(e_j)
    products = await arithmetic.mul(
        ctx, concat(variances, take(two, upper_i)), concat(four, take(two, upper_j))
    )
    reduced, powers = _split(products, [d, upper_i.size])  # T'_jj 4^(e_j) at 2^p; 2^(e_i + e_j)
    y = await rsqrt_unit(ctx, await shift_all(ctx, reduced, plan.p - g), g, plan.newton_iterations)
    masked = await arithmetic.mul(ctx, concat(valid, centred), concat(y, powers))
    r, w = _split(masked, [d, upper_i.size])  # valid_j / sqrt(v'_j) at 2^(g+1); W at 2^p
    outer = await shift_all(ctx, await arithmetic.mul(ctx, take(r, upper_i), take(r, upper_j)), g + 2)
    return await arithmetic.mul(ctx, w, outer), valid
