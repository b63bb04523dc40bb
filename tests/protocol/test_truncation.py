"""ABY3 Share Truncation I with unbiased rounding (protocols.md §7.1; protocol/truncation.py).

Errors are measured against the exact rational ``x' / 2^d``: with
``q = floor(x' / 2^d)`` and ``r = x' mod 2^d``, the error of an opened value
``v`` in ulps is ``(v - q) - r / 2^d``, computed without rounding.
"""

from __future__ import annotations

import numpy as np
import pytest

from mpc_core.fixed_point import FixedPoint
from mpc_core.sharing import share
from mpc_server.protocol import arithmetic, truncation

D = 16
ULP = 1 << D


def signed_values(rng, bits, n):
    """``n`` uniform int64 values with ``|x'| < 2^bits``."""
    return rng.integers(-(2**bits) + 1, 2**bits, size=n, dtype=np.int64)


def truncate_values(run_parties, net, open_shares, values, bits=D):
    xs = share(values.view(np.uint64))
    shares = run_parties(net, lambda ctx: truncation.truncate(ctx, xs[ctx.party], bits))
    return open_shares(shares).view(np.int64)


def errors_in_ulps(opened, values):
    """Exact error ``opened - values / 2^D`` in ulps as float64, and whether it is within 1 ulp."""
    q = values >> D  # floor division (arithmetic shift)
    r = values & (ULP - 1)
    delta = opened - q  # a garbage result is ~2^48 away: still no int64 overflow
    close = np.abs(delta) <= 2
    scaled = np.where(close, delta, 0) * ULP - r  # exact integer error * 2^D
    within = close & (np.abs(scaled) <= ULP)
    return scaled / ULP, within


def test_truncation_is_within_one_ulp_and_unbiased_for_40_bit_values(net, run_parties, open_shares, rng):
    values = signed_values(rng, 40, 100_000)
    values[:6] = [0, 1, -1, ULP, -ULP, 2**40 - 1]

    opened = truncate_values(run_parties, net, open_shares, values)

    errors, within = errors_in_ulps(opened, values)
    assert within.all(), f"{np.count_nonzero(~within)} elements off by more than 1 ulp"
    # Unbiased: the mean error over 1e5 values is ~N(0, 0.0016^2) for the floor/ceil
    # split, while flooring both halves would give about -1 ulp and plain floor -0.5.
    assert abs(errors.mean()) < 0.01, errors.mean()
    assert 0.1 < np.abs(errors).mean() < 0.5


@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.75])
def test_truncation_rounds_each_value_stochastically_without_bias(net, run_parties, open_shares, fraction):
    """A fixed value k + fraction (ulps) opens to k or k+1 with mean k + fraction."""
    k = -123_457
    value = k * ULP + int(fraction * ULP)
    values = np.full(100_000, value, dtype=np.int64)

    opened = truncate_values(run_parties, net, open_shares, values)

    assert set(np.unique(opened).tolist()) == {k, k + 1}
    # Standard deviation of the mean is at most 0.5 / sqrt(1e5) = 0.0016.
    assert abs(opened.mean() - (k + fraction)) < 0.01


def test_truncation_of_exact_multiples_has_error_below_one_ulp(net, run_parties, open_shares, rng):
    values = (rng.integers(-(2**23), 2**23, size=10_000, dtype=np.int64)) * ULP

    opened = truncate_values(run_parties, net, open_shares, values)

    assert np.all(np.abs(opened - (values >> D)) <= 1)


def test_truncation_shares_are_consistent_replicated_shares(net, run_parties, open_shares, rng):
    xs = share(signed_values(rng, 30, 100).view(np.uint64))

    shares = run_parties(net, lambda ctx: truncation.truncate(ctx, xs[ctx.party], D))

    open_shares(shares)  # raises OutputIntegrityError if two copies of a component differ


def test_fixed_point_product_then_truncation(net, run_parties, open_shares, rng):
    # |a*b| * 2^32 < 2^39: each element fails (garbage) with probability about
    # 2^(39+1-64) = 2^-24 (the documented truncation failure), so at most one of
    # 5000 may be off; two or more would happen by chance less than once in 10^8.
    fmt = FixedPoint(D)
    a = rng.uniform(-10, 10, 5000)
    b = rng.uniform(-10, 10, 5000)
    xs, ys = share(fmt.encode(a)), share(fmt.encode(b))

    async def program(ctx):
        product = await arithmetic.mul(ctx, xs[ctx.party], ys[ctx.party])
        return await truncation.truncate(ctx, product, D)

    got = fmt.decode(open_shares(run_parties(net, program)))

    bound = (np.abs(a) + np.abs(b)) * 2.0**-17 + 2.0**-34 + 2.0**-D
    assert np.count_nonzero(np.abs(got - a * b) > bound) <= 1


def test_failure_rate_for_60_bit_values_matches_the_documented_probability(
    net, run_parties, open_shares, rng
):
    """|x'| < 2^60: a large error with probability ~E|x'|/2^64 (~3.1e-2), <= 2^(lx+1-64)."""
    lx = 60
    values = signed_values(rng, lx, 100_000)

    opened = truncate_values(run_parties, net, open_shares, values)

    errors, within = errors_in_ulps(opened, values)
    failures = ~within
    rate = failures.mean()
    expected = np.abs(values.astype(np.float64)).mean() / 2.0**64
    assert 0.25 * expected <= rate <= 4 * expected, (rate, expected)
    assert rate <= 2.0 ** (lx + 1 - 64)
    # A failure is garbage (about 2^(64-d) away), not an off-by-a-few error.
    garbage = np.abs(opened[failures].astype(np.float64) - values[failures] / ULP)
    assert np.all(garbage > 2.0 ** (64 - D - 2))
    # The successes are still unbiased.
    assert abs(errors[within].mean()) < 0.02
