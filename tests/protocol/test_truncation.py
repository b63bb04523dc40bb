"""ABY3 Share Truncation I with unbiased rounding (protocols.md §7.1; protocol/truncation.py).

Errors are measured exactly, with Python integers, against the rational
``x' / 2^d``: the error of an opened value ``v`` is ``v - x' / 2^d`` ulps,
i.e. the integer ``v * 2^d - x'`` divided by ``2^d``. A result is *within one
ulp* when that integer is at most ``2^d`` in magnitude. In a ring of ``k``
bits a truncation of ``|x'| < 2^l`` fails (is garbage) with probability at
most ``2^(l + 1 - k)`` per element; tests in Z_2^64 that could hit that
allow the expected handful of failures and say so.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpc_core.fixed_point import FixedPoint
from mpc_core.ring import RING128
from mpc_core.sharing import share
from mpc_server.protocol import arithmetic, truncation
from mpc_server.protocol.memory import InMemoryNetwork

D = 16
ULP = 1 << D


def truncate_values(run_parties, net, open_shares, data, values, bits=D):
    """Share the integers ``values``, truncate them by ``bits`` and open the result (signed ints)."""
    xs = share(data.ring, data.array(values))
    shares = run_parties(net, lambda ctx: truncation.truncate(ctx, xs[ctx.party], bits))
    return data.signed_ints(open_shares(shares))


def scaled_errors(opened, values, bits=D):
    """Exact errors ``v * 2^bits - x'`` (ulps times 2^bits), and whether each is within one ulp."""
    scaled = [v * 2**bits - x for v, x in zip(opened, values, strict=True)]
    return scaled, [abs(e) <= 2**bits for e in scaled]


def mean_ulps(scaled, bits=D):
    return float(Fraction(sum(scaled), len(scaled) * 2**bits)) if scaled else 0.0


def test_truncation_is_within_one_ulp_and_unbiased_for_40_bit_values(
    net, run_parties, open_shares, ring, ring_data
):
    values = ring_data.signed(100_000, 40)
    values[:6] = [0, 1, -1, ULP, -ULP, 2**40 - 1]

    opened = truncate_values(run_parties, net, open_shares, ring_data, values)

    scaled, within = scaled_errors(opened, values)
    # In Z_2^64 each element fails with probability ~|x'|/2^64 (mean 2^39/2^64): ~0.003 failures
    # expected in 1e5, so two or more happen by chance about once in 2e5 runs. In Z_2^128 never.
    allowed = 1 if ring.bits == 64 else 0
    assert within.count(False) <= allowed, f"{within.count(False)} elements off by more than 1 ulp"
    good = [e for e, ok in zip(scaled, within, strict=True) if ok]
    # Unbiased: the mean error over 1e5 values is ~N(0, 0.0016^2) for the floor/ceil
    # split, while flooring both halves would give about -1 ulp and plain floor -0.5.
    assert abs(mean_ulps(good)) < 0.01, mean_ulps(good)
    mean_abs = float(Fraction(sum(abs(e) for e in good), len(good) * ULP))
    assert 0.1 < mean_abs < 0.5


@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.75])
def test_truncation_rounds_each_value_stochastically_without_bias(
    net, run_parties, open_shares, ring_data, fraction
):
    """A fixed value k + fraction (ulps) opens to k or k+1 with mean k + fraction."""
    k = -123_457
    value = k * ULP + int(fraction * ULP)
    values = [value] * 100_000

    opened = truncate_values(run_parties, net, open_shares, ring_data, values)

    assert set(opened) == {k, k + 1}
    # Standard deviation of the mean is at most 0.5 / sqrt(1e5) = 0.0016.
    assert abs(Fraction(sum(opened), len(opened)) - k - Fraction(fraction)) < 0.01


def test_truncation_of_exact_multiples_has_error_below_one_ulp(net, run_parties, open_shares, ring_data):
    quotients = ring_data.signed(10_000, 23)
    values = [q * ULP for q in quotients]

    opened = truncate_values(run_parties, net, open_shares, ring_data, values)

    assert all(abs(v - q) <= 1 for v, q in zip(opened, quotients, strict=True))


def test_truncation_shares_are_consistent_replicated_shares(net, run_parties, open_shares, ring, ring_data):
    xs = share(ring, ring_data.array(ring_data.signed(100, 30)))

    shares = run_parties(net, lambda ctx: truncation.truncate(ctx, xs[ctx.party], D))

    assert all(s.ring == ring for s in shares)
    open_shares(shares)  # raises OutputIntegrityError if two copies of a component differ


def fixed_point_products(run_parties, net, open_shares, data, fmt, a, b, bits):
    """Encode ``a`` and ``b`` in ``fmt``, multiply, truncate by ``bits``; opened ints and exact products."""
    enc_a, enc_b = fmt.encode(np.asarray(a)), fmt.encode(np.asarray(b))
    xs, ys = share(data.ring, enc_a), share(data.ring, enc_b)

    async def program(ctx):
        product = await arithmetic.mul(ctx, xs[ctx.party], ys[ctx.party])
        return await truncation.truncate(ctx, product, bits)

    opened = data.signed_ints(open_shares(run_parties(net, program)))
    exact = [p * q for p, q in zip(data.signed_ints(enc_a), data.signed_ints(enc_b), strict=True)]
    return opened, exact


def test_fixed_point_product_then_truncation(net, run_parties, open_shares, ring, ring_data, rng):
    # f = 16 in Z_2^64: |a*b| * 2^32 < 2^39, so each element fails (garbage) with probability
    # about 2^(39+1-64) = 2^-24 (the documented truncation failure) and at most one of 5000
    # may be off; two or more would happen by chance less than once in 10^8. f = 32 in Z_2^128:
    # |a*b| * 2^64 < 2^71, failure probability 2^-56 per element, so none may be off.
    fmt = FixedPoint.default(ring)
    f = fmt.fractional_bits
    a = rng.uniform(-10, 10, 5000)
    b = rng.uniform(-10, 10, 5000)

    opened, _ = fixed_point_products(run_parties, net, open_shares, ring_data, fmt, a, b, f)

    off = 0
    for va, vb, v in zip(a, b, opened, strict=True):
        real = Fraction(va) * Fraction(vb)
        # encoding error (|a| + |b|) 2^-(f+1) + 2^-(2f+2), plus one ulp of truncation
        bound = (abs(Fraction(va)) + abs(Fraction(vb))) / 2 ** (f + 1) + Fraction(1, 2 ** (2 * f + 2))
        bound += Fraction(1, 2**f)
        off += abs(Fraction(v, 2**f) - real) > bound
    assert off <= (1 if ring.bits == 64 else 0)


def test_failure_rate_for_values_near_the_top_matches_the_documented_probability(
    net, run_parties, open_shares, ring, ring_data
):
    """|x'| < 2^(k-4): a large error with probability ~E|x'|/2^k (~3.1e-2), <= 2^(l+1-k)."""
    lx = ring.bits - 4
    values = ring_data.signed(100_000, lx)

    opened = truncate_values(run_parties, net, open_shares, ring_data, values)

    scaled, within = scaled_errors(opened, values)
    failures = [i for i, ok in enumerate(within) if not ok]
    rate = len(failures) / len(values)
    expected = float(Fraction(sum(abs(v) for v in values), len(values) * ring.modulus))
    assert 0.25 * expected <= rate <= 4 * expected, (rate, expected)
    assert rate <= 2.0 ** (lx + 1 - ring.bits)
    # A failure is garbage (about 2^(k-d) away), not an off-by-a-few error.
    assert all(abs(scaled[i]) > 2 ** (ring.bits - 2) for i in failures)
    # The successes are still unbiased.
    assert abs(mean_ulps([e for e, ok in zip(scaled, within, strict=True) if ok])) < 0.02


# ---------------------------------------------------------------- Z_2^128 at the default f = 32

F128 = FixedPoint(32, RING128)
"""The default format of Z_2^128; a product carries scale 2^64 and is truncated by 32 bits."""


def check_within_one_ulp(opened, exact, bits=32):
    """``opened * 2^bits`` is within ``2^bits`` of the exact product (at scale 2^(2f))."""
    scaled, within = scaled_errors(opened, exact, bits)
    bad = [(e, x) for e, x, ok in zip(scaled, exact, within, strict=True) if not ok]
    assert not bad, f"{len(bad)} products off by more than 2^-32, e.g. {bad[:3]}"
    return scaled


@pytest.mark.parametrize("ring", [RING128], ids=["ring128"])
def test_z128_fixed_point_product_truncated_by_32_is_within_one_ulp(
    net, run_parties, open_shares, ring, ring_data, rng
):
    """|a|, |b| < 2^8: products below 2^16 * 2^64 = 2^80, far below 2^(128-40) = 2^88.

    Failure probability 2^(81-128) = 2^-47 per element, so every one of ~20000 must be right.
    """
    magnitudes = 2.0 ** rng.uniform(-30, 8, 10_000)  # wide dynamic range, down to 2^-30
    a = np.concatenate([rng.uniform(-256, 256, 10_000), magnitudes * rng.choice([-1, 1], 10_000)])
    b = np.concatenate([rng.uniform(-256, 256, 10_000), rng.uniform(-256, 256, 10_000)])
    edges = [0.0, 2.0**-32, -(2.0**-32), 1.0, -1.0, 255.99, -255.99, 2.0**-16, 3.0, -(2.0**-31)]
    a[: len(edges)] = edges
    b[: len(edges)] = edges[::-1]

    opened, exact = fixed_point_products(run_parties, net, open_shares, ring_data, F128, a, b, 32)

    assert max(abs(x) for x in exact) < 2**80
    check_within_one_ulp(opened, exact)
    # Decoded at f = 32: within 2^-32 of the exact product of the encoded values (plus float rounding).
    decoded = F128.decode(ring_data.array(opened))
    exact_real = np.array([float(Fraction(x, 2**64)) for x in exact])
    assert np.all(np.abs(decoded - exact_real) <= 2.0**-32 * (1 + 2.0**-20) + np.abs(exact_real) * 2.0**-52)


@pytest.mark.parametrize("ring", [RING128], ids=["ring128"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pairs=st.lists(
        st.tuples(
            st.floats(-256, 256, allow_nan=False, allow_infinity=False),
            st.floats(-256, 256, allow_nan=False, allow_infinity=False),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_z128_truncated_product_within_one_ulp_property(run_parties, open_shares, ring, ring_data, pairs):
    a, b = [p for p, _ in pairs], [q for _, q in pairs]

    opened, exact = fixed_point_products(
        run_parties, InMemoryNetwork(), open_shares, ring_data, F128, a, b, 32
    )

    check_within_one_ulp(opened, exact)


@pytest.mark.parametrize("ring", [RING128], ids=["ring128"])
def test_z128_truncation_of_products_near_zero_is_unbiased(
    net, run_parties, open_shares, ring, ring_data, rng
):
    """Products of values in (-2^-14, 2^-14): at most 16 ulps (2^-28), of both signs.

    Each error is -r or 1-r ulps for the fractional part r of the exact value, with
    mean 0 when rounding up has probability r, and variance r(1-r) <= 1/4. So the mean
    over n values has standard deviation at most 0.5/sqrt(n): 0.0016 ulps for n = 1e5
    and 0.0023 for either half (~5e4 values of one sign). The tolerances 0.01 and
    0.012 ulps are > 5 standard deviations (a chance failure below 1e-7 per run),
    while floor rounding is biased by -0.5 ulps, and rounding towards zero by -0.5
    for positive and +0.5 for negative products (which the per-sign means catch even
    though the two would cancel in the overall mean).
    """
    n = 100_000
    a = rng.uniform(-(2.0**-14), 2.0**-14, n)
    b = rng.uniform(-(2.0**-14), 2.0**-14, n)

    opened, exact = fixed_point_products(run_parties, net, open_shares, ring_data, F128, a, b, 32)

    scaled = check_within_one_ulp(opened, exact)
    assert max(abs(x) for x in exact) <= 2**36  # |product| <= 2^-28, i.e. 16 ulps
    positive = [e for e, x in zip(scaled, exact, strict=True) if x > 0]
    negative = [e for e, x in zip(scaled, exact, strict=True) if x < 0]
    assert min(len(positive), len(negative)) > 0.45 * n
    assert abs(mean_ulps(scaled, 32)) < 0.01, mean_ulps(scaled, 32)
    assert abs(mean_ulps(positive, 32)) < 0.012, mean_ulps(positive, 32)
    assert abs(mean_ulps(negative, 32)) < 0.012, mean_ulps(negative, 32)
    # Stochastic, not deterministic, rounding: both neighbours occur for non-integral values.
    assert 0.2 < float(Fraction(sum(abs(e) for e in scaled), n * 2**32)) < 0.5
