"""Tests for mpc_core.bounds: public magnitude bounds, ring fit and truncation failure probability."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc_core.bounds import (
    STATISTICAL_SECURITY_BITS,
    bound_bits,
    describe,
    require_fits,
    require_truncation_safe,
    truncation_failure_log2,
)
from mpc_core.errors import InvalidArgumentError
from mpc_core.fixed_point import magnitude_bits_of
from mpc_core.ring import RING64, RING128, Ring

RINGS = pytest.mark.parametrize("ring", [RING64, RING128], ids=["Z2^64", "Z2^128"])
BOUNDS = st.one_of(
    st.integers(min_value=0, max_value=2**140),
    st.integers(min_value=0, max_value=2**20),
    st.sampled_from([2**63 - 1, 2**63, 2**64, 2**127 - 1, 2**127, 2**128]),
)


def failure_oracle(ring: Ring, count: int, bound: int) -> float:
    """log2(count) + l + 1 - k for the least l with bound < 2^l (the element magnitudes are below 2^l)."""
    return math.log2(max(count, 1)) + bound.bit_length() + 1 - ring.bits


def test_statistical_security_is_40_bits() -> None:
    assert STATISTICAL_SECURITY_BITS == 40


@settings(max_examples=200, deadline=None)
@given(BOUNDS)
def test_bound_bits_is_the_least_power_of_two_at_or_above(bound: int) -> None:
    m = bound_bits(bound)
    assert m == magnitude_bits_of(bound)
    assert bound <= 2**m
    assert m == 0 or bound > 2 ** (m - 1)


@pytest.mark.parametrize(
    ("bound", "fractional_bits", "text"),
    [
        (2**20, 16, "2^20 (|value| up to 16)"),
        (3, 0, "2^2 (|value| up to 3)"),
        (0, 16, "2^0 (|value| up to 0)"),
        (2**95, 32, "2^95 (|value| up to 9.223e+18)"),
        (2**1000, 0, "2^1000 (|value| up to inf)"),
    ],
)
def test_describe(bound: int, fractional_bits: int, text: str) -> None:
    assert describe(bound, fractional_bits) == text


# --- require_fits ---------------------------------------------------------------------------------


@RINGS
def test_require_fits_accepts_exactly_up_to_the_signed_maximum(ring: Ring) -> None:
    k = ring.bits
    for bound in (0, 1, 2**62, 2 ** (k - 2), 2 ** (k - 1) - 1):
        assert require_fits(ring, bound, 16, "the output") is None
    for bound in (2 ** (k - 1), 2 ** (k - 1) + 1, 2**k, 2 ** (k + 50)):
        with pytest.raises(InvalidArgumentError):
            require_fits(ring, bound, 16, "the output")


@RINGS
@settings(max_examples=200, deadline=None)
@given(bound=BOUNDS, fractional_bits=st.integers(min_value=0, max_value=62))
def test_require_fits_refuses_iff_the_bound_leaves_the_signed_range(
    ring: Ring, bound: int, fractional_bits: int
) -> None:
    fits = bound <= 2 ** (ring.bits - 1) - 1
    try:
        require_fits(ring, bound, fractional_bits, "x")
    except InvalidArgumentError:
        assert not fits
    else:
        assert fits


@RINGS
def test_a_refusal_names_what_the_ring_and_the_limit(ring: Ring) -> None:
    k = ring.bits
    with pytest.raises(InvalidArgumentError) as info:
        require_fits(ring, 2 ** (k - 1), 20, "the product of x and w")
    message = str(info.value)
    assert message.startswith("the product of x and w could reach")
    assert f"2^{k - 1} (|value| up to {math.ldexp(1.0, k - 21):.4g})" in message
    assert "at scale 2^20" in message
    assert ring.name in message
    assert f"below 2^{k - 1}, |value| below {math.ldexp(1.0, k - 21):.4g}" in message
    assert "refused before any computation" in message


def test_require_fits_messages_per_ring() -> None:
    in_64 = "signed range of Z_2^64 (below 2^63, |value| below 1.407e+14)"
    with pytest.raises(InvalidArgumentError, match=re.escape(in_64)):
        require_fits(RING64, 2**63, 16, "y")
    in_128 = "signed range of Z_2^128 (below 2^127, |value| below 3.961e+28)"
    with pytest.raises(InvalidArgumentError, match=re.escape(in_128)):
        require_fits(RING128, 2**127, 32, "y")
    require_fits(RING128, 2**63, 16, "y")  # too large for Z_2^64, fine in Z_2^128


# --- truncation -----------------------------------------------------------------------------------


@RINGS
@settings(max_examples=200, deadline=None)
@given(count=st.integers(min_value=0, max_value=2**40), bound=BOUNDS)
def test_truncation_failure_log2_matches_the_formula(ring: Ring, count: int, bound: int) -> None:
    failure = truncation_failure_log2(ring, count, bound)
    assert failure == failure_oracle(ring, count, bound)
    assert failure == math.log2(max(count, 1)) + bound_bits(bound + 1) + 1 - ring.bits


@pytest.mark.parametrize(
    ("ring", "count", "bound", "expected"),
    [
        (RING64, 1, 0, -63.0),
        (RING64, 0, 0, -63.0),  # no elements count as one for the bound
        (RING64, 1, 1, -62.0),
        (RING64, 1, 2**20 - 1, -43.0),
        (RING64, 1, 2**20, -42.0),
        (RING64, 1024, 2**20, -32.0),
        (RING128, 1, 2**20, -106.0),
        (RING128, 2**30, 2**64, -32.0),
        (RING128, 1, 2**127 - 1, 0.0),
    ],
)
def test_truncation_failure_log2_known_values(ring: Ring, count: int, bound: int, expected: float) -> None:
    assert truncation_failure_log2(ring, count, bound) == expected


@RINGS
def test_require_truncation_safe_at_the_2_to_the_minus_40_limit(ring: Ring) -> None:
    k = ring.bits
    # One element below 2^l fails with probability 2^(l + 1 - k); l = k - 41 is exactly 2^-40.
    at_limit = 2 ** (k - 41) - 1
    assert require_truncation_safe(ring, 1, at_limit, 16, "w") == -40.0
    assert require_truncation_safe(ring, 1, at_limit // 2, 16, "w") == -41.0
    assert require_truncation_safe(ring, 2, 2 ** (k - 42) - 1, 16, "w") == -40.0
    with pytest.raises(InvalidArgumentError):
        require_truncation_safe(ring, 1, at_limit + 1, 16, "w")
    with pytest.raises(InvalidArgumentError):
        require_truncation_safe(ring, 3, 2 ** (k - 42) - 1, 16, "w")


@RINGS
@settings(max_examples=200, deadline=None)
@given(count=st.integers(min_value=0, max_value=2**40), bound=BOUNDS)
def test_require_truncation_safe_refuses_iff_above_the_limit(ring: Ring, count: int, bound: int) -> None:
    failure = failure_oracle(ring, count, bound)
    try:
        returned = require_truncation_safe(ring, count, bound, 16, "x")
    except InvalidArgumentError:
        assert failure > -STATISTICAL_SECURITY_BITS
    else:
        assert failure <= -STATISTICAL_SECURITY_BITS
        assert returned == failure


@RINGS
def test_a_truncation_refusal_names_what_the_count_the_ring_and_the_limit(ring: Ring) -> None:
    bound = 2 ** (ring.bits - 30)
    with pytest.raises(InvalidArgumentError) as info:
        require_truncation_safe(ring, 1000, bound, 32, "the weighted sum")
    message = str(info.value)
    failure = failure_oracle(ring, 1000, bound)
    assert message.startswith("truncating the weighted sum (1000 values up to 2^")
    assert describe(bound, 32) in message
    assert ring.name in message
    assert f"2^{failure:.1f}" in message
    assert "2^-40" in message
