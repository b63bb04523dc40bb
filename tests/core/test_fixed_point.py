"""Tests for mpc_core.fixed_point: enc(v) = rint(v * 2^f) mod 2^k in Z_2^64 and Z_2^128.

The oracle is exact: ``round(Fraction(v) * 2**f)`` (Python rounds a Fraction
half to even, as ``np.rint`` does), reduced modulo 2^k.
"""

from __future__ import annotations

import math
import re
import secrets
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc_core.errors import EncodingError, InvalidArgumentError
from mpc_core.fixed_point import (
    DEFAULT_FRACTIONAL_BITS,
    DEFAULT_FRACTIONAL_BITS_128,
    FixedPoint,
    default_fractional_bits,
    magnitude_bits_of,
    max_fractional_bits,
)
from mpc_core.ring import RING64, RING128, Ring

RINGS = pytest.mark.parametrize("ring", [RING64, RING128], ids=["Z2^64", "Z2^128"])
SCALES = {64: [0, 1, 8, 16, 24, 30, 40, 52, 62], 128: [0, 1, 16, 32, 48, 62, 64, 90, 126]}


def exact(value: float, fractional_bits: int) -> int:
    """rint(value * 2^f) computed exactly, halves to even."""
    return round(Fraction(value) * 2**fractional_bits)


def least_magnitude_bits(largest: int) -> int:
    """The least m >= 0 with largest <= 2^m, by search."""
    m = 0
    while 2**m < largest:
        m += 1
    return m


@st.composite
def format_and_values(draw: st.DrawFn) -> tuple[FixedPoint, list[float]]:
    """A format of either ring and values anywhere in its valid range, every magnitude equally likely."""
    ring = draw(st.sampled_from([RING64, RING128]))
    fmt = FixedPoint(draw(st.sampled_from(SCALES[ring.bits])), ring)
    bound = fmt.max_magnitude
    top = ring.bits - 1 - fmt.fractional_bits  # |v| < 2^top
    by_exponent = st.builds(
        lambda mantissa, exponent, negative: math.ldexp(mantissa, exponent) * (-1 if negative else 1),
        st.floats(min_value=0.5, max_value=1.0, exclude_max=True),
        st.integers(min_value=-fmt.fractional_bits - 4, max_value=top),
        st.booleans(),
    )
    uniform = st.floats(min_value=-bound, max_value=bound, exclude_min=True, exclude_max=True)
    small = st.floats(min_value=-4.0, max_value=4.0) | st.sampled_from([0.0, -0.0, 2.0**-1074, -(2.0**-1074)])
    inside = st.one_of(by_exponent, uniform, small).filter(lambda v: abs(v) < bound)
    values = draw(st.lists(inside, min_size=1, max_size=12))
    return fmt, values


# --- encoding against the exact oracle --------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(format_and_values())
def test_encode_is_round_half_even_of_the_exact_product(case: tuple[FixedPoint, list[float]]) -> None:
    fmt, values = case
    ring, f = fmt.ring, fmt.fractional_bits
    encoded, magnitude = fmt.encode_bounded(values)
    assert encoded.dtype == ring.dtype
    assert encoded.shape == (len(values),)
    integers = [exact(v, f) for v in values]
    assert ring.to_ints(encoded) == integers
    assert ring.to_ints(encoded, signed=False) == [i % ring.modulus for i in integers]
    assert fmt.encode(values).tobytes() == encoded.tobytes()
    assert magnitude == least_magnitude_bits(max(abs(i) for i in integers))


@settings(max_examples=300, deadline=None)
@given(format_and_values())
def test_decode_encode_within_half_an_ulp(case: tuple[FixedPoint, list[float]]) -> None:
    fmt, values = case
    decoded = fmt.decode(fmt.encode(values))
    assert decoded.dtype == np.float64
    assert decoded.shape == (len(values),)
    half_ulp = Fraction(1, 2 ** (fmt.fractional_bits + 1))
    for value, back in zip(values, decoded.tolist(), strict=True):
        assert abs(Fraction(back) - Fraction(value)) <= half_ulp, (value, back)
        # decoding an encoding of a float is exact: the integer is a float, and 2^-f is exact
        assert Fraction(back) == Fraction(exact(value, fmt.fractional_bits), 2**fmt.fractional_bits)


@pytest.mark.parametrize(
    ("ring", "fractional_bits", "value"),
    [
        (RING128, 32, 2.0**31 + 0.5),  # v * 2^f = 2^63 + 2^31: just above int64
        (RING128, 32, 2.0**31),  # v * 2^f = 2^63 exactly
        (RING128, 32, -(2.0**31)),  # -2^63: the int64 minimum, on the "large" path
        (RING128, 32, -(2.0**31) - 2.0**-20),
        (RING128, 32, 2.0**94 + 2.0**42),
        (RING128, 32, -(2.0**94) - 2.0**42),
        (RING128, 32, math.nextafter(2.0**95, 0.0)),
        (RING128, 32, -math.nextafter(2.0**95, 0.0)),
        (RING128, 0, -(2.0**64) - 2.0**12),
        (RING128, 0, 2.0**64 - 2.0**11),
        (RING128, 64, -(2.0**-64)),
        (RING128, 64, -3.0),
        (RING128, 126, -1.5),
        (RING128, 126, -(2.0**-126)),
        (RING64, 16, -(2.0**-16)),
        (RING64, 16, math.nextafter(2.0**47, 0.0)),
        (RING64, 0, -(2.0**62) - 2.0**10),
    ],
)
def test_encode_large_and_small_negative_values_exactly(
    ring: Ring, fractional_bits: int, value: float
) -> None:
    fmt = FixedPoint(fractional_bits, ring)
    encoded, magnitude = fmt.encode_bounded([value, -value])
    integer = exact(value, fractional_bits)
    assert ring.to_ints(encoded) == [integer, -integer]
    assert magnitude == least_magnitude_bits(abs(integer))
    assert fmt.decode(encoded).tolist() == [value, -value]


@RINGS
@pytest.mark.parametrize("fractional_bits", [0, 1, 16, 32])
def test_exact_halves_go_to_the_even_neighbour(ring: Ring, fractional_bits: int) -> None:
    fmt = FixedPoint(fractional_bits, ring)
    ulp = 2.0**-fractional_bits
    halves = [(n + 0.5) * ulp for n in range(-6, 6)]
    expected = [n if n % 2 == 0 else n + 1 for n in range(-6, 6)]
    assert ring.to_ints(fmt.encode(halves)) == expected
    assert expected[:4] == [-6, -4, -4, -2]  # -5.5 -> -6, -4.5 -> -4, -3.5 -> -4, -2.5 -> -2
    # Just off the half, rounding goes to the nearest neighbour.
    above = [math.nextafter(v, math.inf) for v in halves]
    assert ring.to_ints(fmt.encode(above)) == [n + 1 for n in range(-6, 6)]


@RINGS
def test_known_encodings(ring: Ring) -> None:
    fmt = FixedPoint(16, ring)
    m = ring.modulus
    encoded = fmt.encode([0.0, 1.0, -1.0, 0.5, 1.5, -0.25, 2.0**-17, 3 * 2.0**-17, -(2.0**-17)])
    assert ring.to_ints(encoded, signed=False) == [
        0,
        65536,
        m - 65536,
        32768,
        98304,
        m - 16384,
        0,  # 0.5 ulp rounds half to even
        2,  # 1.5 ulp rounds half to even
        0,  # -0.5 ulp too, to 0 (not to m - 1)
    ]
    assert fmt.decode(encoded).tolist()[:6] == [0.0, 1.0, -1.0, 0.5, 1.5, -0.25]


def test_known_encodings_z2_128_default_scale() -> None:
    fmt = FixedPoint.default(RING128)
    encoded = fmt.encode([1.0, -1.0, 2.0**40, -(2.0**-32)])
    assert RING128.to_ints(encoded, signed=False) == [2**32, 2**128 - 2**32, 2**72, 2**128 - 1]
    assert encoded["hi"].tolist() == [0, 2**64 - 1, 2**8, 2**64 - 1]


# --- formats --------------------------------------------------------------------------------------


def test_default_formats() -> None:
    assert DEFAULT_FRACTIONAL_BITS == 16
    assert DEFAULT_FRACTIONAL_BITS_128 == 32
    assert default_fractional_bits(RING64) == 16
    assert default_fractional_bits(RING128) == 32
    assert max_fractional_bits(RING64) == 62
    assert max_fractional_bits(RING128) == 126
    assert FixedPoint.default() == FixedPoint(32, RING128)
    assert FixedPoint.default(RING64) == FixedPoint(16, RING64)
    assert FixedPoint() == FixedPoint(16, RING64)
    fmt = FixedPoint.default(RING128)
    assert fmt.scale == 2.0**32
    assert fmt.max_magnitude == 2.0**95
    assert FixedPoint.default(RING64).max_magnitude == 2.0**47
    assert FixedPoint.default(RING64).scale == 65536.0


@RINGS
def test_invalid_fractional_bits_name_the_ring(ring: Ring) -> None:
    limit = max_fractional_bits(ring)
    for bits in (-1, -16, limit + 1, ring.bits - 1, ring.bits, ring.bits + 100):
        with pytest.raises(EncodingError, match=re.escape(f"within 0..{limit} in {ring.name}, got {bits}")):
            FixedPoint(bits, ring)
    assert FixedPoint(limit, ring).fractional_bits == limit


@RINGS
def test_extreme_valid_fractional_bits(ring: Ring) -> None:
    assert ring.to_ints(FixedPoint(0, ring).encode([3.0, -3.0]), signed=False) == [3, ring.modulus - 3]
    fmt = FixedPoint(max_fractional_bits(ring), ring)
    assert fmt.max_magnitude == 2.0
    assert fmt.decode(fmt.encode([1.75, -1.75])).tolist() == [1.75, -1.75]
    with pytest.raises(EncodingError, match="range"):
        fmt.encode([2.0])


@RINGS
def test_product_format_keeps_the_ring(ring: Ring) -> None:
    half = max_fractional_bits(ring) // 2
    assert FixedPoint(16, ring).product_format() == FixedPoint(32, ring)
    assert FixedPoint(16, ring).product_format(FixedPoint(8, ring)) == FixedPoint(24, ring)
    assert FixedPoint(half, ring).product_format() == FixedPoint(2 * half, ring)
    assert FixedPoint(half, ring).product_format().ring is ring
    with pytest.raises(EncodingError, match=re.escape(ring.name)):
        FixedPoint(half + 1, ring).product_format()


# --- shapes, scalars ------------------------------------------------------------------------------


@RINGS
def test_encode_keeps_shape_and_accepts_ints(ring: Ring) -> None:
    fmt = FixedPoint(8, ring)
    matrix = fmt.encode([[1, 2, 3], [-4, -5, -6]])
    assert matrix.shape == (2, 3)
    assert matrix.dtype == ring.dtype
    assert fmt.decode(matrix).tolist() == [[1.0, 2.0, 3.0], [-4.0, -5.0, -6.0]]
    assert fmt.encode(np.zeros((0, 4))).shape == (0, 4)
    assert fmt.encode_bounded([])[1] == 0


@RINGS
@pytest.mark.parametrize("scalar", [2.5, -2.5, np.float64(2.5), np.float32(-2.5), 3, np.array(2.5)])
def test_0d_inputs_give_0d_ring_arrays(ring: Ring, scalar: object) -> None:
    fmt = FixedPoint(8, ring)
    encoded, magnitude = fmt.encode_bounded(scalar)  # type: ignore[arg-type]
    assert isinstance(encoded, np.ndarray)
    assert not isinstance(encoded, np.generic)
    assert encoded.shape == ()
    assert encoded.dtype == ring.dtype
    assert ring.is_ring_array(encoded)
    value = float(scalar)  # type: ignore[arg-type]
    assert ring.to_ints(encoded) == [exact(value, 8)]
    assert magnitude == least_magnitude_bits(abs(exact(value, 8)))
    decoded = fmt.decode(encoded)
    assert np.shape(decoded) == ()
    assert float(decoded) == value


# --- errors ---------------------------------------------------------------------------------------


@RINGS
@pytest.mark.parametrize(
    ("values", "where"),
    [
        ([1.0, float("nan")], "at index 1"),
        ([float("inf"), 1.0], "at index 0"),
        ([0.0, 0.0, 0.0, float("-inf")], "at index 3"),
        ([[1.0, 2.0], [3.0, float("nan")]], "at index (1, 1)"),
        ([1.0, float("nan"), float("inf")], "at index 1 (and 1 more)"),
        (float("nan"), "(the scalar value)"),
    ],
)
def test_non_finite_values_raise_naming_the_index(ring: Ring, values: object, where: str) -> None:
    with pytest.raises(EncodingError) as info:
        FixedPoint.default(ring).encode(values)  # type: ignore[arg-type]
    message = str(info.value)
    assert "finite" in message
    assert where in message


@pytest.mark.parametrize(
    ("ring", "fractional_bits", "values", "where", "limit"),
    [
        (RING64, 16, [0.0, 2.0**47], "at index 1", "1.40737e+14"),
        (RING64, 16, [-(2.0**47), 0.0], "at index 0", "1.40737e+14"),
        (RING64, 16, [1.0, 2.0, 1e300], "at index 2", "1.40737e+14"),
        (RING64, 16, [1e15, 1.0, -1e15], "at index 0 (and 1 more)", "1.40737e+14"),
        (RING128, 32, [0.0, 2.0**95], "at index 1", "3.96141e+28"),
        (RING128, 32, [-(2.0**95), 0.0], "at index 0", "3.96141e+28"),
        (RING128, 32, [1.0, 1e29, 1e35, 2.0], "at index 1 (and 1 more)", "3.96141e+28"),
        (RING128, 32, [[0.0, 1.0], [-1e30, 5.0]], "at index (1, 0)", "3.96141e+28"),
        (RING128, 0, [2.0**127], "at index 0", "1.70141e+38"),
        (RING128, 32, 1e30, "(the scalar value)", "3.96141e+28"),
    ],
)
def test_out_of_range_values_raise_naming_the_index_and_the_range(
    ring: Ring, fractional_bits: int, values: object, where: str, limit: str
) -> None:
    with pytest.raises(EncodingError) as info:
        FixedPoint(fractional_bits, ring).encode(values)  # type: ignore[arg-type]
    message = str(info.value)
    assert "range" in message
    assert where in message
    assert f"{fractional_bits} fractional bits in {ring.name}" in message
    assert limit in message


@RINGS
def test_encoding_error_is_an_invalid_argument(ring: Ring) -> None:
    with pytest.raises(InvalidArgumentError):
        FixedPoint.default(ring).encode([float("nan")])
    with pytest.raises(ValueError, match="finite"):
        FixedPoint.default(ring).encode([float("nan")])


@RINGS
@pytest.mark.parametrize("values", [["abc"], [object()], [1.0, [2.0, 3.0]], [1 + 2j]])
def test_non_numbers_raise_encoding_error(ring: Ring, values: list[object]) -> None:
    with pytest.raises(EncodingError, match="real numbers"):
        FixedPoint.default(ring).encode(values)


@pytest.mark.parametrize(
    ("ring", "bits"),
    [(RING64, b) for b in (0, 1, 16, 30, 47, 62)] + [(RING128, b) for b in (0, 1, 32, 64, 95, 126)],
)
def test_range_boundary(ring: Ring, bits: int) -> None:
    fmt = FixedPoint(bits, ring)
    limit = 2.0 ** (ring.bits - 1 - bits)
    assert fmt.max_magnitude == limit
    below = math.nextafter(limit, 0.0)
    encoded = fmt.encode([below, -below])
    assert fmt.decode(encoded).tolist() == [below, -below]
    assert ring.to_ints(encoded) == [exact(below, bits), -exact(below, bits)]
    assert exact(below, bits) < 2 ** (ring.bits - 1)
    for bad in (limit, -limit, math.nextafter(limit, math.inf), -math.nextafter(limit, math.inf)):
        with pytest.raises(EncodingError, match="range"):
            fmt.encode([bad])


# --- magnitude bits -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("largest", "bits"),
    [
        (0, 0),
        (1, 0),
        (2, 1),
        (3, 2),
        (4, 2),
        (5, 3),
        (2**63 - 1, 63),
        (2**63, 63),
        (2**63 + 1, 64),
        (2**64 - 1, 64),
        (2**64, 64),
        (2**127, 127),
        (2**128 - 1, 128),
        (2**128, 128),
    ],
)
def test_magnitude_bits_of_edges(largest: int, bits: int) -> None:
    assert magnitude_bits_of(largest) == bits == least_magnitude_bits(largest)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=2**140))
def test_magnitude_bits_is_the_least_m(largest: int) -> None:
    m = magnitude_bits_of(largest)
    assert m >= 0
    assert largest <= 2**m
    assert m == 0 or 2 ** (m - 1) < largest


@RINGS
def test_encode_bounded_reports_the_least_power_of_two(ring: Ring) -> None:
    f0 = FixedPoint(0, ring)
    cases = [([0.0], 0), ([1.0], 0), ([-1.0], 0), ([2.0], 1), ([-3.0], 2), ([4.0, 1.0], 2), ([0.0, -5.0], 3)]
    for values, bits in cases:
        assert f0.encode_bounded(values)[1] == bits, values
    top = math.nextafter(2.0 ** (ring.bits - 1), 0.0)  # the largest encodable float at scale 2^0
    assert f0.encode_bounded([top])[1] == ring.bits - 1
    assert f0.encode_bounded([-(2.0 ** (ring.bits - 2))])[1] == ring.bits - 2
    f16 = FixedPoint(16, ring)
    assert f16.encode_bounded([1.0])[1] == 16
    assert f16.encode_bounded([-1.0 - 2.0**-16])[1] == 17
    assert f16.encode_bounded([2.0**-17])[1] == 0  # rounds to 0
    assert f16.encode_bounded([3 * 2.0**-17])[1] == 1  # rounds to 2


# --- to_float and arithmetic on encodings --------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=-(2**127), max_value=2**127 - 1), min_size=1, max_size=16))
def test_to_float_of_z2_128_is_within_two_ulp(values: list[int]) -> None:
    converted = RING128.to_float(RING128.from_ints(values))
    assert converted.dtype == np.float64
    for value, got in zip(values, converted.tolist(), strict=True):
        assert abs(Fraction(got) - value) <= 2 * Fraction(math.ulp(float(value))), (value, got)


_AROUND_2_63 = st.integers(min_value=-(2**66), max_value=2**66)
"""Values on both sides of the 64-bit fast path of the Z_2^128 conversion."""


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.one_of(st.integers(min_value=-(2**127), max_value=2**127 - 1), _AROUND_2_63),
        min_size=1,
        max_size=16,
    )
)
def test_to_float_and_reconstruction_of_z2_128_are_correctly_rounded(values: list[int]) -> None:
    """Python's int -> float rounds to nearest, ties to even: the kernel's result, bit for bit."""
    ring = RING128
    encoded = ring.from_ints(values)
    expected = [float(v) for v in values]
    assert ring.to_float(encoded).tolist() == expected
    masks = [ring.from_ints([secrets.randbits(128) for _ in values]) for _ in range(2)]
    third = ring.sub(ring.sub(encoded, masks[0]), masks[1])
    assert ring.sum_to_float(masks[0], masks[1], third).tolist() == expected


def test_to_float_of_z2_128_at_the_edges_of_64_bits() -> None:
    edges = [2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 2**53 + 1, -(2**53) - 1, 0, -1]
    assert RING128.to_float(RING128.from_ints(edges)).tolist() == [float(v) for v in edges]


@RINGS
@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=-(2**53), max_value=2**53), min_size=1, max_size=16))
def test_to_float_is_exact_below_2_53(ring: Ring, values: list[int]) -> None:
    assert ring.to_float(ring.from_ints(values)).tolist() == [float(v) for v in values]


@RINGS
def test_to_float_of_small_negative_values_is_exact(ring: Ring) -> None:
    values = [-1, -2, -3, -(2**52) - 1, -(2**53), -(2**31), -7]
    assert ring.to_float(ring.from_ints(values)).tolist() == [float(v) for v in values]
    assert ring.to_float(ring.from_ints([-(2 ** (ring.bits - 1))])).tolist() == [-(2.0 ** (ring.bits - 1))]
    assert ring.to_float(ring.from_ints(-5)).shape == ()
    matrix = ring.from_ints([1, -2, 3, -4]).reshape(2, 2)
    assert ring.to_float(matrix).tolist() == [[1.0, -2.0], [3.0, -4.0]]


VALUE = st.floats(min_value=-1000.0, max_value=1000.0, allow_nan=False, allow_infinity=False)


@RINGS
@settings(max_examples=100, deadline=None)
@given(pairs=st.lists(st.tuples(VALUE, VALUE), min_size=1, max_size=16))
def test_product_of_encodings_decodes_at_double_scale(ring: Ring, pairs: list[tuple[float, float]]) -> None:
    fmt = FixedPoint.default(ring)
    a = fmt.encode([p[0] for p in pairs])
    b = fmt.encode([p[1] for p in pairs])
    product = ring.mul(a, b)  # wraps mod 2^k
    decoded = fmt.product_format().decode(product)
    half_ulp = 2.0 ** -(fmt.fractional_bits + 1)
    for (x, y), got in zip(pairs, decoded.tolist(), strict=True):
        bound = half_ulp * (abs(x) + abs(y)) + half_ulp**2 + abs(x * y) * 2.0**-52
        assert abs(got - x * y) <= bound, (x, y, got)


@RINGS
def test_known_products_including_negative_values(ring: Ring) -> None:
    fmt = FixedPoint(16, ring)
    a = fmt.encode([1.5, -1.5, -2.0, 0.25])
    b = fmt.encode([2.0, 2.0, -3.0, -8.0])
    assert FixedPoint(32, ring).decode(ring.mul(a, b)).tolist() == [3.0, -3.0, 6.0, -2.0]
    # Decoding a product at the input scale is wrong by a factor 2^f.
    assert fmt.decode(ring.mul(a, b)).tolist()[0] == 3.0 * 2**16
    # An arithmetic shift by f brings it back to the input scale.
    assert fmt.decode(ring.ashr(ring.mul(a, b), 16)).tolist() == [3.0, -3.0, 6.0, -2.0]


@RINGS
def test_sums_of_encodings_decode_to_sums(ring: Ring) -> None:
    fmt = FixedPoint(16, ring)
    a = fmt.encode([1.25, -7.5, 100.0])
    b = fmt.encode([-3.0, 7.5, -0.125])
    assert fmt.decode(ring.add(a, b)).tolist() == [-1.75, 0.0, 99.875]
    assert fmt.decode(ring.sub(a, b)).tolist() == [4.25, -15.0, 100.125]
