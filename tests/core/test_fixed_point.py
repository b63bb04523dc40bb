"""Tests for mpc_core.fixed_point: enc(v) = round(v * 2^f) mod 2^64."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc_core.errors import EncodingError, InvalidArgumentError
from mpc_core.fixed_point import DEFAULT_FRACTIONAL_BITS, MAX_FRACTIONAL_BITS, FixedPoint

BITS = st.sampled_from([0, 1, 8, 16, 24, 30, 40, 62])


@st.composite
def format_and_values(draw: st.DrawFn) -> tuple[FixedPoint, list[float]]:
    fmt = FixedPoint(draw(BITS))
    bound = fmt.max_magnitude
    values = draw(
        st.lists(
            st.floats(min_value=-bound, max_value=bound, exclude_min=True, exclude_max=True),
            min_size=1,
            max_size=16,
        )
    )
    return fmt, values


@settings(max_examples=200, deadline=None)
@given(format_and_values())
def test_decode_encode_within_half_ulp(case: tuple[FixedPoint, list[float]]) -> None:
    fmt, values = case
    encoded = fmt.encode(values)
    assert encoded.dtype == np.uint64
    assert encoded.shape == (len(values),)
    decoded = fmt.decode(encoded)
    bound = 2.0 ** -(fmt.fractional_bits + 1)
    for value, back in zip(values, decoded.tolist(), strict=True):
        assert abs(back - value) <= bound, (value, back)


def test_default_format() -> None:
    fmt = FixedPoint()
    assert fmt.fractional_bits == DEFAULT_FRACTIONAL_BITS == 16
    assert fmt.scale == 65536.0
    assert fmt.max_magnitude == 2.0**47


def test_known_encodings() -> None:
    fmt = FixedPoint(16)
    encoded = fmt.encode([0.0, 1.0, -1.0, 0.5, 1.5, -0.25, 2.0**-17, 3 * 2.0**-17])
    assert encoded.tolist() == [
        0,
        65536,
        2**64 - 65536,
        32768,
        98304,
        2**64 - 16384,
        0,  # 0.5 ulp rounds half to even
        2,  # 1.5 ulp rounds half to even
    ]
    assert fmt.decode(encoded).tolist()[:6] == [0.0, 1.0, -1.0, 0.5, 1.5, -0.25]


def test_encode_keeps_shape_and_accepts_scalars_and_ints() -> None:
    fmt = FixedPoint(8)
    matrix = fmt.encode([[1, 2, 3], [-4, -5, -6]])
    assert matrix.shape == (2, 3)
    assert fmt.decode(matrix).tolist() == [[1.0, 2.0, 3.0], [-4.0, -5.0, -6.0]]
    scalar = fmt.encode(2.5)
    assert scalar.shape == ()
    assert int(scalar) == 640


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ([1.0, float("nan")], "at index 1"),
        ([float("inf"), 1.0], "at index 0"),
        ([0.0, 0.0, 0.0, float("-inf")], "at index 3"),
        ([[1.0, 2.0], [3.0, float("nan")]], "at index (1, 1)"),
        ([1.0, float("nan"), float("inf")], "at index 1 (and 1 more)"),
    ],
)
def test_non_finite_values_raise_naming_the_index(values: list[float], where: str) -> None:
    with pytest.raises(EncodingError) as info:
        FixedPoint().encode(values)
    message = str(info.value)
    assert "finite" in message
    assert where in message


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ([0.0, 2.0**47], "at index 1"),
        ([-(2.0**47), 0.0], "at index 0"),
        ([1.0, 2.0, 1e300], "at index 2"),
        ([1e15, 1.0, -1e15], "at index 0 (and 1 more)"),
    ],
)
def test_out_of_range_values_raise_naming_the_index_and_the_range(values: list[float], where: str) -> None:
    with pytest.raises(EncodingError) as info:
        FixedPoint(16).encode(values)
    message = str(info.value)
    assert "range" in message
    assert where in message
    assert "16 fractional bits" in message
    assert "1.40737e+14" in message


def test_encoding_error_is_an_invalid_argument() -> None:
    with pytest.raises(InvalidArgumentError):
        FixedPoint().encode([float("nan")])
    with pytest.raises(ValueError, match="finite"):
        FixedPoint().encode([float("nan")])


@pytest.mark.parametrize("values", [["abc"], [object()], [1.0, [2.0, 3.0]]])
def test_non_numbers_raise_encoding_error(values: list[object]) -> None:
    with pytest.raises(EncodingError, match="real numbers"):
        FixedPoint().encode(values)


@pytest.mark.parametrize("bits", [0, 1, 16, 30, 47, 62])
def test_range_boundary(bits: int) -> None:
    fmt = FixedPoint(bits)
    limit = 2.0 ** (63 - bits)
    assert fmt.max_magnitude == limit
    below = math.nextafter(limit, 0.0)
    encoded = fmt.encode([below, -below])
    assert fmt.decode(encoded).tolist() == [below, -below]
    assert int(encoded.view(np.int64)[0]) == int(below * 2.0**bits) < 2**63
    for bad in (limit, -limit, math.nextafter(limit, math.inf), -math.nextafter(limit, math.inf)):
        with pytest.raises(EncodingError, match="range"):
            fmt.encode([bad])


@pytest.mark.parametrize("bits", [-1, -16, MAX_FRACTIONAL_BITS + 1, 64, 100])
def test_invalid_fractional_bits(bits: int) -> None:
    with pytest.raises(EncodingError, match="fractional_bits"):
        FixedPoint(bits)


def test_extreme_valid_fractional_bits() -> None:
    assert FixedPoint(0).encode([3.0, -3.0]).tolist() == [3, 2**64 - 3]
    fmt = FixedPoint(MAX_FRACTIONAL_BITS)
    assert fmt.max_magnitude == 2.0
    assert fmt.decode(fmt.encode([1.75, -1.75])).tolist() == [1.75, -1.75]


def test_product_format() -> None:
    assert FixedPoint(16).product_format() == FixedPoint(32)
    assert FixedPoint(16).product_format(FixedPoint(8)) == FixedPoint(24)
    assert FixedPoint(31).product_format() == FixedPoint(62)
    with pytest.raises(EncodingError):
        FixedPoint(32).product_format()


VALUE = st.floats(min_value=-1000.0, max_value=1000.0, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(VALUE, VALUE), min_size=1, max_size=16))
def test_product_of_encodings_decodes_at_double_scale(pairs: list[tuple[float, float]]) -> None:
    fmt = FixedPoint(16)
    a = fmt.encode([p[0] for p in pairs])
    b = fmt.encode([p[1] for p in pairs])
    product = a * b  # ring multiplication, wraps mod 2^64
    decoded = fmt.product_format().decode(product)
    half_ulp = 2.0**-17
    for (x, y), got in zip(pairs, decoded.tolist(), strict=True):
        bound = half_ulp * (abs(x) + abs(y)) + half_ulp**2 + abs(x * y) * 2.0**-52
        assert abs(got - x * y) <= bound, (x, y, got)


def test_known_products_including_negative_values() -> None:
    fmt = FixedPoint(16)
    a = fmt.encode([1.5, -1.5, -2.0, 0.25])
    b = fmt.encode([2.0, 2.0, -3.0, -8.0])
    assert FixedPoint(32).decode(a * b).tolist() == [3.0, -3.0, 6.0, -2.0]
    # Decoding a product at the input scale is wrong by a factor 2^f.
    assert fmt.decode(a * b).tolist()[0] == 3.0 * 2**16


def test_sums_of_encodings_decode_to_sums() -> None:
    fmt = FixedPoint(16)
    a = fmt.encode([1.25, -7.5, 100.0])
    b = fmt.encode([-3.0, 7.5, -0.125])
    assert fmt.decode(a + b).tolist() == [-1.75, 0.0, 99.875]
    assert fmt.decode(a - b).tolist() == [4.25, -15.0, 100.125]
