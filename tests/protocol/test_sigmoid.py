"""Sigmoid approximations (protocol/sigmoid.py): stated errors over all reals, results in [0, 1], costs.

The approximations' errors are checked in exact-enough plaintext (float64 on
dense grids, with the second-derivative bound between grid points); the
protocols with three parties in memory against ``1 / (1 + e^-x)``, on inputs
inside and far outside the fitted range, in the rings where their bounds fit.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from mpc_core.errors import InvalidArgumentError
from mpc_core.fixed_point import FixedPoint
from mpc_core.ring import RING64, RING128
from mpc_core.sharing import share
from mpc_server.protocol import sigmoid as sg
from mpc_server.protocol.linalg import Fixed
from mpc_server.protocol.sigmoid import SigmoidKind


def exact(x):
    return 1.0 / (1.0 + np.exp(-np.clip(x, -700.0, 700.0)))


def poly_coefficients():
    return np.array(sg.POLY_NUMERATORS, dtype=np.float64) / 2.0**sg.POLY_DENOMINATOR_BITS


def poly(x):
    t = np.clip(x, -6.5, 6.5) / 8
    return 0.5 + sum(c * t ** (2 * i + 1) for i, c in enumerate(poly_coefficients()))


def linear(kind, x):
    half = 2 ** {SigmoidKind.T1: 1, SigmoidKind.SEG3: 2}[kind]
    return 0.5 + np.clip(x, -half, half) / (2 * half)


# ---------------------------------------------------------------------- the approximations


def test_the_polynomial_error_over_all_reals_is_as_stated():
    x = np.linspace(0.0, 60.0, 3_000_001)  # odd symmetry: p(-x) - 1/2 = -(p(x) - 1/2)
    errors = np.abs(poly(x) - exact(x))
    assert errors.max() <= sg.POLY_ERROR
    assert errors.max() > 0.99 * sg.POLY_ERROR  # the statement is tight
    assert abs(poly(-x) - exact(-x)).max() <= sg.POLY_ERROR
    assert float(poly(np.array([1e30]))[0]) == pytest.approx(float(poly(np.array([6.5]))[0]))  # flat outside


def test_the_polynomial_stays_inside_its_certified_deviation():
    """Grid values plus the interpolation bound h^2/8 max|p''| cover every point of [0, 13/16]."""
    c = poly_coefficients()
    t = np.linspace(0.0, 13 / 16, 2_000_001)
    values = sum(ci * t ** (2 * i + 1) for i, ci in enumerate(c))
    second = sum(abs(ci) * (2 * i + 1) * (2 * i) * (13 / 16) ** max(2 * i - 1, 0) for i, ci in enumerate(c))
    h = t[1] - t[0]
    assert np.abs(values).max() + h * h / 8 * second <= float(sg.MAX_DEVIATION)
    assert 0.5 - float(sg.MAX_DEVIATION) > 7e-4  # the margin the rounding must stay below


def test_the_partial_sums_of_horners_rule_stay_inside_their_bounds():
    c = poly_coefficients()
    u = np.linspace(0.0, 169 / 256, 1_000_001)
    h, q, bounds = u[1] - u[0], np.full_like(u, c[-1]), []
    for j in range(len(c) - 2, -1, -1):
        q = q * u + c[j]
        second = sum(abs(ci) * (i - j) * (i - j - 1) for i, ci in enumerate(c) if i >= j)  # u <= 1
        bounds.append(np.abs(q).max() + h * h / 8 * second)
    assert all(b <= float(limit) for b, limit in zip(bounds, sg.PARTIAL_BOUNDS, strict=True))


@pytest.mark.parametrize(("kind", "worst"), [(SigmoidKind.T1, 2.0), (SigmoidKind.SEG3, 1.7627)])
def test_the_piecewise_linear_errors_are_as_stated(kind, worst):
    x = np.linspace(-40.0, 40.0, 1_600_001)
    errors = np.abs(linear(kind, x) - exact(x))
    assert errors.max() <= sg.LINEAR_ERRORS[kind]
    assert errors.max() > sg.LINEAR_ERRORS[kind] - 1e-4
    assert abs(abs(x[errors.argmax()]) - worst) < 1e-3


# ---------------------------------------------------------------------- the protocols


def inputs():
    """Typical scores, the clip points, and values far outside the range."""
    typical = np.linspace(-9.0, 9.0, 1001)
    special = [0.0, 6.5, -6.5, 4.0, -4.0, 2.0, -2.0, 6.4999, 1e6, -1e6, 123456.75, -3e5]
    return np.concatenate([typical, special])


def run_sigmoid(run_parties, net, ring, values, scale, bound_bits, kind, out_bits=None):
    fixed = FixedPoint(scale, ring)
    encoded = fixed.encode(values)
    plan = sg.plan_sigmoid(ring, values.size, Fixed(scale, 1 << bound_bits), kind, out_bits=out_bits)
    shares = share(ring, encoded)

    async def program(ctx):
        before = dataclasses.replace(ctx.stats)
        result = await sg.sigmoid(ctx, shares[ctx.party], plan)
        return result, ctx.stats.bytes_sent - before.bytes_sent, ctx.stats.rounds - before.rounds

    results = run_parties(net, program, ring=ring)
    return plan, results


def opened(ring, results, out_bits):
    from mpc_core.sharing import reconstruct_checked

    values = reconstruct_checked([r[0] for r in results], ["s0", "s1", "s2"])
    return np.asarray(FixedPoint(out_bits, ring).decode(values), dtype=np.float64)


@pytest.mark.parametrize("kind", [SigmoidKind.T1, SigmoidKind.SEG3])
def test_piecewise_linear_variants_are_exact_in_the_ring(net, run_parties, ring, kind):
    values = inputs()
    scale = 16 if ring is RING64 else 32
    plan, results = run_sigmoid(run_parties, net, ring, values, scale, scale + 21, kind)
    got = opened(ring, results, plan.out.fractional_bits)
    encoded = FixedPoint(scale, ring).decode(FixedPoint(scale, ring).encode(values))
    np.testing.assert_array_equal(got, linear(kind, encoded))  # exact: no truncation at all
    assert got.min() >= 0.0 and got.max() <= 1.0
    assert np.abs(got - exact(values)).max() <= plan.max_error
    levels = ring.bits.bit_length() - 1
    assert [r[2] for r in results][1:] == [levels + 2, levels + 2] == [plan.rounds] * 2


@pytest.mark.parametrize(("scale", "f"), [(64, 32), (32, 28), (24, 24), (20, 24)])
def test_the_polynomial_is_within_its_bound_and_in_zero_one(net, run_parties, ring, scale, f):
    """Inputs at a product's scale (2^64), at an upload's, or below the working scale (a lift)."""
    values = inputs()
    if ring is RING64:  # its truncations cannot meet the budget at a scale that keeps [0, 1]
        with pytest.raises(InvalidArgumentError):
            sg.plan_sigmoid(ring, values.size, Fixed(16, 1 << 37), SigmoidKind.POLY13, out_bits=f - 8)
        return
    plan, results = run_sigmoid(run_parties, net, ring, values, scale, scale + 21, SigmoidKind.POLY13, f)
    got = opened(ring, results, f)
    assert got.min() >= 0.0 and got.max() <= 1.0
    assert np.abs(got - exact(values)).max() <= plan.max_error
    assert plan.rounding_error <= 2.0 ** (9 - f)
    assert np.abs(got - poly(values)).max() <= plan.rounding_error + 2.0**-scale
    assert plan.failure < 2.0**-40


def test_the_polynomial_costs_its_documented_rounds_and_bits(net, run_parties, ring):
    if ring is RING64:
        pytest.skip("the polynomial needs Z_2^128")
    n, k = 640, 128  # a multiple of 64: no padding of the packed bits
    values = np.linspace(-8.0, 8.0, n)
    plan, results = run_sigmoid(run_parties, net, ring, values, 32, 53, SigmoidKind.POLY13, 28)
    sent_bits = [8 * r[1] // n for r in results]
    assert sent_bits == [16 * k - 8, 21 * k - 6, 12 * k - 6]
    assert max(r[2] for r in results) == plan.rounds == 7 + 18


def test_plans_refuse_what_they_cannot_do_exactly():
    with pytest.raises(InvalidArgumentError, match="sigmoid input minus its clip bound"):
        sg.plan_sigmoid(RING128, 10, Fixed(32, 1 << 127), SigmoidKind.SEG3)
    with pytest.raises(InvalidArgumentError, match="working scale"):
        sg.plan_sigmoid(RING128, 10, Fixed(32, 1 << 40), SigmoidKind.POLY13)
    with pytest.raises(InvalidArgumentError, match="enough to leave"):
        sg.plan_sigmoid(RING128, 10, Fixed(32, 1 << 40), SigmoidKind.POLY13, out_bits=12)
    with pytest.raises(InvalidArgumentError, match="could fail with probability"):
        sg.plan_sigmoid(RING64, 1000, Fixed(16, 1 << 20), SigmoidKind.POLY13, out_bits=20)
    with pytest.raises(InvalidArgumentError, match="could fail with probability"):
        sg.plan_sigmoid(RING128, 10**9, Fixed(64, 1 << 70), SigmoidKind.POLY13, out_bits=32)
    plan = sg.plan_sigmoid(RING128, 10**6, Fixed(56, 1 << 80), SigmoidKind.POLY13, out_bits=28)
    assert math.log2(plan.failure) < -40 and plan.rounds == 25
