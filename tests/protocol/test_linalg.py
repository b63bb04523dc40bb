"""Linear algebra on shares (protocol/linalg.py, spd.py, reciprocal.py): Gram, products, solver, inverses.

Oracles: Python integers modulo 2^k for exact products, exact fractions for
truncated ones (within one unit), ``numpy.linalg.solve`` and scikit-learn for
the solver (1e-4 relative to ``max(1, |w|)``), and the documented error bound
over the whole range for ``reciprocal`` and ``rsqrt``. Truncated operations
run in Z_2^128 (f = 32); in Z_2^64 the tests check what works there (exact
products, a small fixed-point product) and that the rest is refused before any
message is sent.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np
import pytest
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LinearRegression, Ridge

from mpc_core.errors import InvalidArgumentError
from mpc_core.fixed_point import FixedPoint
from mpc_core.ring import RING64, RING128
from mpc_core.sharing import share
from mpc_server.protocol import layout, linalg, reciprocal, spd
from mpc_server.protocol.linalg import Fixed

F = 32
FP = FixedPoint(F, RING128)
ELEMENT_BYTES = {64: 8, 128: 16}
ONLY_128 = pytest.mark.parametrize("ring", [RING128], ids=["ring128"])
ONLY_64 = pytest.mark.parametrize("ring", [RING64], ids=["ring64"])


def measured(operation):
    """A program returning ``(result, traffic)`` of ``operation(ctx)`` (a stats delta)."""

    async def program(ctx):
        before = dataclasses.replace(ctx.stats)
        result = await operation(ctx)
        sent, rounds = ctx.stats.bytes_sent - before.bytes_sent, ctx.stats.rounds - before.rounds
        return result, {"sent": sent, "rounds": rounds}

    return program


def program_messages(net):
    return [m for m in net.sent if m.tag.op >= 1]  # op 0 is the job agreement


def int_matrix(values, rows, cols):
    return [values[r * cols : (r + 1) * cols] for r in range(rows)]


# ---------------------------------------------------------------------------- Gram blocks


@pytest.mark.parametrize(("rows", "d", "e"), [(1, 1, 1), (1, 4, 3), (5, 3, 2), (300, 4, 1), (100_000, 2, 2)])
def test_gram_is_exact_against_python_ints(net, run_parties, open_shares, ring_data, rows, d, e):
    x, x_ints = ring_data.vector(rows * d)
    y, y_ints = ring_data.vector(rows * e)
    xs, ys = share(ring_data.ring, x), share(ring_data.ring, y)

    opened = open_shares(
        run_parties(net, lambda ctx: linalg.gram(ctx, xs[ctx.party], rows, d, ys[ctx.party], e))
    )

    xm, ym = int_matrix(x_ints, rows, d), int_matrix(y_ints, rows, e)
    expected = [sum(xm[r][i] * ym[r][j] for r in range(rows)) for i in range(d) for j in range(e)]
    assert ring_data.ints(opened) == ring_data.reduce(expected)


@pytest.mark.parametrize("rows", [1, 50_000])
def test_gram_costs_one_round_and_d_times_e_elements_whatever_the_rows(
    net, run_parties, ring, ring_data, rows
):
    d, e = 3, 4
    xs, ys = share(ring, ring_data.vector(rows * d)[0]), share(ring, ring_data.vector(rows * e)[0])
    net.record = True

    results = run_parties(
        net, measured(lambda ctx: linalg.gram(ctx, xs[ctx.party], rows, d, ys[ctx.party], e))
    )

    assert all(cost == {"sent": d * e * ELEMENT_BYTES[ring.bits], "rounds": 1} for _, cost in results)
    assert len(program_messages(net)) == 3


@ONLY_128
def test_scaled_gram_of_standardised_features_is_within_one_unit(net, run_parties, open_shares, ring, rng):
    rows, d = 700, 3
    x = rng.standard_normal((rows, d))
    x = (x - x.mean(0)) / x.std(0)
    encoded = FP.encode(x)
    entries = Fixed.from_bits(F, FP.encode_bounded(x)[1])
    bound = linalg.standardised_gram_bound(rows, F, F).bound
    plan = linalg.plan_gram(ring, rows, d, d, x=entries, y=entries, out_bits=F, raw_bound=bound)
    xs = share(ring, encoded)

    opened = open_shares(
        run_parties(net, lambda ctx: linalg.scaled_gram(ctx, xs[ctx.party], xs[ctx.party], plan))
    )

    ints = np.array(ring.to_ints(encoded), dtype=object).reshape(rows, d)
    exact = [Fraction(int(v), 1 << plan.rescale.shift) for v in (ints.T @ ints).reshape(-1)]
    assert plan.divide_bits == 10 and plan.rescale.shift == 2 * F + 10 - F
    assert all(abs(v - q) <= 1 for v, q in zip(ring.to_ints(opened), exact, strict=True))


def test_gram_scaling_for_a_million_rows_fits_only_at_a_reduced_feature_scale():
    """N = 10^6 rows, 10 features and a label: X^T [X | y] (110 values) truncated once (linalg docstring)."""
    rows, d, e = 10**6, 10, 11
    plans = {}
    for bits in (24, 28, 32):
        bound = linalg.standardised_gram_bound(rows, bits, bits).bound
        try:
            plans[bits] = linalg.plan_gram(
                RING128,
                rows,
                d,
                e,
                x=Fixed(bits, 0),
                y=Fixed(bits, 0),
                out_bits=F,
                raw_bound=bound,
                budget_log2=-41,
            )
        except InvalidArgumentError as exc:
            plans[bits] = exc
    assert isinstance(plans[32], InvalidArgumentError) and "2^-36" in str(plans[32])
    assert math.log2(plans[28].rescale.failure) < -44 and math.log2(plans[24].rescale.failure) < -52
    assert plans[24].divide_bits == 20 and plans[24].output.fractional_bits == F
    # entrywise bound |x| <= 16 at scale 2^24 (no standardisation claim): still below 2^-44
    entrywise = linalg.plan_gram(
        RING128, rows, d, e, x=Fixed.real(24, 16), y=Fixed.real(24, 16), out_bits=F, budget_log2=-41
    )
    assert math.log2(entrywise.rescale.failure) < -44
    with pytest.raises(InvalidArgumentError, match="budget"):
        linalg.plan_gram(RING128, rows, d, e, x=Fixed.real(32, 16), y=Fixed.real(32, 16), out_bits=F)


# ---------------------------------------------------------------------------- matrix products


@pytest.mark.parametrize(("m", "k", "n"), [(4, 4, 4), (4, 4, 1), (1, 1, 1), (10, 10, 10)])
def test_matmul_is_exact_against_python_ints(net, run_parties, open_shares, ring_data, m, k, n):
    a, a_ints = ring_data.vector(m * k)
    b, b_ints = ring_data.vector(k * n)
    as_, bs = share(ring_data.ring, a), share(ring_data.ring, b)

    results = run_parties(
        net, measured(lambda ctx: linalg.matmul(ctx, as_[ctx.party], m, k, bs[ctx.party], n))
    )

    am, bm = int_matrix(a_ints, m, k), int_matrix(b_ints, k, n)
    expected = [sum(am[i][t] * bm[t][j] for t in range(k)) for i in range(m) for j in range(n)]
    assert ring_data.ints(open_shares([r for r, _ in results])) == ring_data.reduce(expected)
    assert all(
        cost == {"sent": m * n * ELEMENT_BYTES[ring_data.ring.bits], "rounds": 1} for _, cost in results
    )


@pytest.mark.parametrize(
    ("ring", "bits", "magnitude", "n"), [(RING128, 32, 8, 10), (RING128, 32, 8, 1), (RING64, 6, 1, 1)]
)
def test_fixed_point_product_is_within_one_unit_of_the_exact_fraction(
    net, run_parties, open_shares, ring, rng, bits, magnitude, n
):
    d = 10 if ring.bits == 128 else 2
    fmt = FixedPoint(bits, ring)
    a = fmt.encode(rng.uniform(-magnitude, magnitude, (d, d)))
    b = fmt.encode(rng.uniform(-magnitude, magnitude, (d, n)))
    plan = linalg.plan_matmul(
        ring, d, d, n, a=Fixed.real(bits, magnitude), b=Fixed.real(bits, magnitude), out_bits=bits
    )
    as_, bs = share(ring, a), share(ring, b)

    results = run_parties(
        net, measured(lambda ctx: linalg.matmul_fixed(ctx, as_[ctx.party], bs[ctx.party], plan))
    )

    am = np.array(ring.to_ints(a), dtype=object).reshape(d, d)
    exact = [
        Fraction(int(v), 1 << bits)
        for v in (am @ np.array(ring.to_ints(b), dtype=object).reshape(d, n)).reshape(-1)
    ]
    assert all(
        abs(v - q) <= 1
        for v, q in zip(ring.to_ints(open_shares([r for r, _ in results])), exact, strict=True)
    )
    assert [cost["rounds"] for _, cost in results] == [2, 2, 1]  # party 2 only receives nothing in truncation
    assert results[1][1]["sent"] == 2 * d * n * ELEMENT_BYTES[ring.bits]  # reshare + truncation message


def refused_before_any_message(net, run_parties, program):
    net.record = True
    results = run_parties(net, program, return_exceptions=True)
    assert all(isinstance(r, InvalidArgumentError) for r in results), results
    assert program_messages(net) == []
    return results[0]


@ONLY_64
def test_fixed_point_products_at_scale_16_are_refused_in_z64_before_any_message(
    net, run_parties, ring, ring_data
):
    xs = share(ring, ring_data.vector(4)[0])

    def program(ctx):
        plan = linalg.plan_matmul(ring, 2, 2, 1, a=Fixed.real(16, 1), b=Fixed.real(16, 1), out_bits=16)
        return linalg.matmul_fixed(ctx, xs[ctx.party], xs[ctx.party], plan)

    error = refused_before_any_message(net, run_parties, program)
    assert "2^-28.0" in str(error) and "budget" in str(error)


# ---------------------------------------------------------------------------- the SPD solver


def spd_matrix(rng, d, kappa):
    """A random symmetric matrix with eigenvalues spread geometrically over [1/kappa, 1]."""
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    eigenvalues = np.logspace(0, -np.log10(kappa), d)
    m = (q * eigenvalues) @ q.T
    return (m + m.T) / 2, q[:, 0]


def solve(net, run_parties, open_shares, m, b, system):
    ms, bs = share(RING128, FP.encode(m)), share(RING128, FP.encode(b))
    results = run_parties(net, measured(lambda ctx: spd.solve_spd(ctx, ms[ctx.party], bs[ctx.party], system)))
    return FP.decode(open_shares([r for r, _ in results])).reshape(b.shape), [c for _, c in results]


def system_for(m, b, **options):
    d = m.shape[0]
    columns = 1 if b.ndim == 1 else b.shape[1]
    trace = float(np.trace(m)) + d * 2.0**-30  # what a caller derives from public bounds
    return spd.SpdSystem(d, F, trace, 1 << FP.encode_bounded(b)[1], columns, **options)


@ONLY_128
@pytest.mark.parametrize("kappa", [1, 10, 1e3, 1e4])
@pytest.mark.parametrize("d", [2, 3, 6, 10])
def test_solver_matches_numpy_on_random_spd_systems(net, run_parties, open_shares, ring, rng, d, kappa):
    m, top = spd_matrix(rng, d, kappa)
    b = np.stack(
        [rng.uniform(-1, 1, d), top], axis=1
    )  # a random column, and the worst case (largest eigenvector)
    lowest = float(np.linalg.eigvalsh(m).min())
    system = system_for(m, b, min_eigenvalue=0.99 * lowest)

    got, _ = solve(net, run_parties, open_shares, m, b, system)

    expected = np.linalg.solve(m, b)
    errors = np.abs(got - expected).max(axis=0) / np.maximum(1, np.abs(expected).max(axis=0))
    assert errors.max() < 1e-4, errors
    plan = spd.plan_solve(ring, system)
    assert plan.iterations == spd.iteration_count(plan.condition, system.tolerance)
    assert plan.residual < system.tolerance


@ONLY_128
def test_solver_cost_for_d_10_is_2k_plus_1_rounds_and_the_documented_elements(
    net, run_parties, open_shares, ring, rng
):
    m, _ = spd_matrix(rng, 10, 1e4)
    b = rng.uniform(-1, 1, 10)
    system = system_for(m, b, min_eigenvalue=0.99e-4)
    plan = spd.plan_solve(ring, system)
    net.record = True

    _, costs = solve(net, run_parties, open_shares, m, b, system)

    assert plan.iterations == 18 and plan.rounds == 37
    assert (plan.reshare_elements, plan.truncated_elements) == (1880, 1990)
    element = ELEMENT_BYTES[128]
    sent = [c["sent"] // element for c in costs]
    assert sent == [
        plan.reshare_elements,
        plan.reshare_elements + plan.truncated_elements,
        plan.reshare_elements,
    ]
    assert costs[0]["rounds"] == plan.rounds  # party 0 takes part in every round
    assert math.log2(plan.failure) < -43


@ONLY_128
@pytest.mark.parametrize("l2", [0, 0.1])
def test_ridge_on_diabetes_matches_scikit_learn(net, run_parties, open_shares, ring, l2):
    """Standardised diabetes: X^T [X | y] / 2^s, then solve (X^T X / 2^s + l2 N / 2^s) w = X^T y / 2^s."""
    x, y = load_diabetes(return_X_y=True)
    x, y = (x - x.mean(0)) / x.std(0), (y - y.mean()) / y.std()
    rows, d = x.shape
    xy = np.concatenate([x, y[:, None]], axis=1)
    bound = linalg.standardised_gram_bound(rows, F, F).bound
    gram_plan = linalg.plan_gram(
        ring, rows, d, d + 1, x=Fixed(F, 0), y=Fixed(F, 0), out_bits=F, raw_bound=bound, budget_log2=-41
    )
    scale = Fraction(rows, 1 << gram_plan.divide_bits)  # X^T X / 2^s = (X^T X / N) * scale
    system = spd.SpdSystem(
        d, F, trace_bound=d * scale * (1 + Fraction(1, 1 << 20)), rhs_bound=gram_plan.output.bound,
        l2=Fraction(l2) * scale, min_eigenvalue=Fraction(1, 1000) * scale if l2 == 0 else 0, budget_log2=-41,
    )  # fmt: skip
    xs, xys = share(ring, FP.encode(x)), share(ring, FP.encode(xy))

    async def program(ctx):
        block = await linalg.scaled_gram(ctx, xs[ctx.party], xys[ctx.party], gram_plan)
        a, b = layout.split_columns(block, d, d)
        return await spd.solve_spd(ctx, a, b, system)

    got = FP.decode(open_shares(run_parties(net, program)))

    model = LinearRegression() if l2 == 0 else Ridge(alpha=l2 * rows)
    expected = model.fit(x, y).coef_
    assert np.abs(got - expected).max() / max(1.0, np.abs(expected).max()) < 1e-4
    assert gram_plan.rescale.failure + spd.plan_solve(ring, system).failure < 2.0**-40


@ONLY_128
def test_solver_beyond_the_stated_conditioning_returns_the_spectral_filter(
    net, run_parties, open_shares, ring, rng
):
    """kappa = 10^6, mu stated for 10^3: small-eigenvalue components shrink (like ridge), none blows up."""
    d = 6
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    eigenvalues = np.array([1.0, 0.5, 0.1, 1e-2, 1e-3, 1e-6])
    m = (q * eigenvalues) @ q.T
    b = q @ np.full(d, 0.4)
    system = system_for(m, b, min_eigenvalue=1e-3)
    plan = spd.plan_solve(ring, system)

    got, _ = solve(net, run_parties, open_shares, m, b, system)

    alpha = plan.step / 2.0**F
    kept = 1 - (1 - alpha * eigenvalues) ** (2.0**plan.iterations)  # the filter factors
    filtered = q @ (kept * 0.4 / eigenvalues)
    assert np.abs(got - filtered).max() < 1e-3 * max(1.0, np.abs(filtered).max())
    assert kept[-1] < 0.05 and np.abs(got).max() < 2.0**plan.iterations * np.abs(b).max()


def test_solver_plans_refuse_what_they_cannot_bound_or_resolve():
    ring = RING128
    base = spd.SpdSystem(2, F, trace_bound=2, rhs_bound=1 << F)
    with pytest.raises(InvalidArgumentError, match="min_eigenvalue"):
        spd.plan_solve(ring, base)  # OLS without a stated lower bound
    with pytest.raises(InvalidArgumentError, match="iterations"):
        spd.plan_solve(ring, dataclasses.replace(base, min_eigenvalue=1e-9))  # kappa' ~ 2e9: beyond f = 32
    with pytest.raises(InvalidArgumentError, match="budget"):
        spd.plan_solve(ring, dataclasses.replace(base, min_eigenvalue=1e-3, budget_log2=-80))
    with pytest.raises(InvalidArgumentError, match="trace_bound"):
        spd.plan_solve(ring, dataclasses.replace(base, trace_bound=0, l2=1))


@ONLY_64
def test_solver_is_refused_in_z64_before_any_message(net, run_parties, ring):
    a, b = share(ring, ring.zeros(4)), share(ring, ring.zeros(2))
    system = spd.SpdSystem(2, 16, trace_bound=2, rhs_bound=1 << 16, l2=0.5)

    error = refused_before_any_message(
        net, run_parties, lambda ctx: spd.solve_spd(ctx, a[ctx.party], b[ctx.party], system)
    )

    assert "budget" in str(error)


# ---------------------------------------------------------------------------- reciprocal and rsqrt

RANGES = [(1, 2), (0.5, 3), (2.0**-4, 2.0**4), (2.0**-10, 2.0**10), (2.0**-12, 1), (1, 2.0**20)]


@ONLY_128
@pytest.mark.parametrize("power", [1, 2], ids=["reciprocal", "rsqrt"])
@pytest.mark.parametrize(("lower", "upper"), RANGES)
def test_inverse_error_is_within_the_documented_bound_over_the_range(
    net, run_parties, open_shares, ring, lower, upper, power
):
    x = np.exp(np.linspace(np.log(lower), np.log(upper), 2001))
    encoded = FP.encode(x)
    exact = FP.decode(encoded) ** (-1.0 / power)  # of the values actually shared
    planner, function = (
        (reciprocal.plan_reciprocal, reciprocal.reciprocal)
        if power == 1
        else (reciprocal.plan_rsqrt, reciprocal.rsqrt)
    )
    plan = planner(ring, x.size, lower, upper, F)
    xs = share(ring, encoded)

    results = run_parties(net, measured(lambda ctx: function(ctx, xs[ctx.party], plan)))

    got = FP.decode(open_shares([r for r, _ in results]))
    assert np.all(np.abs(got - exact) <= plan.relative_error * exact + plan.absolute_error)
    element = ELEMENT_BYTES[128]
    assert [c["sent"] // element for _, c in results[::2]] == [plan.reshare_elements] * 2
    assert results[1][1]["sent"] // element == plan.reshare_elements + plan.truncated_elements
    assert results[0][1]["rounds"] == plan.rounds and plan.failure < 2.0**-40


def test_inverse_plans_refuse_unsafe_ranges_and_rings():
    with pytest.raises(InvalidArgumentError, match="too wide"):
        reciprocal.plan_reciprocal(RING128, 100, 2.0**-30, 2.0**30, F)
    with pytest.raises(InvalidArgumentError, match="below 2"):
        reciprocal.plan_rsqrt(RING64, 100, 0.5, 2, 16)
    with pytest.raises(InvalidArgumentError, match="below 2"):
        reciprocal.plan_reciprocal(RING128, 10**6, 2.0**-40, 2.0**-20, F)
    with pytest.raises(InvalidArgumentError):
        reciprocal.plan_reciprocal(RING128, 1, 2, 1, F)


@ONLY_64
def test_reciprocal_is_refused_in_z64_before_any_message(net, run_parties, ring):
    xs = share(ring, ring.zeros(3))

    def program(ctx):
        return reciprocal.reciprocal(ctx, xs[ctx.party], reciprocal.plan_reciprocal(RING64, 3, 1, 2, 16))

    refused_before_any_message(net, run_parties, program)
