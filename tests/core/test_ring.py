"""Tests for mpc_core.ring: Z_2^64 and Z_2^128 on numpy arrays, and their little-endian wire codec.

Every operation is checked against the exact oracle: Python ints reduced
modulo 2^k. Values are drawn from the whole of both rings plus the edges
where limbs carry (2^64 - 1, 2^64, 2^127, ...).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc_core.errors import InvalidArgumentError, ShareFormatError
from mpc_core.ring import (
    RING64,
    RING128,
    U128,
    WORD_BYTES,
    Ring,
    element_count,
    ring_for_bits,
    ring_of,
    words_bytes,
    words_view,
)

RINGS = pytest.mark.parametrize("ring", [RING64, RING128], ids=["Z2^64", "Z2^128"])

_EDGE_MAGNITUDES = [0, 1, 2, 3, 2**32, 2**63 - 1, 2**63, 2**63 + 1, 2**64 - 1, 2**64, 2**64 + 1]
_EDGE_MAGNITUDES += [2**65, 2**96 + 2**64 - 1, 2**127 - 1, 2**127, 2**127 + 1, 2**128 - 1, 2**128]
EDGES = sorted({sign * v for v in _EDGE_MAGNITUDES for sign in (1, -1)})
INTS = st.one_of(
    st.sampled_from(EDGES),
    st.integers(min_value=-(2**129), max_value=2**129),
    st.integers(min_value=2**64 - 2**20, max_value=2**64 + 2**20),  # around the limb boundary
    st.integers(min_value=-16, max_value=16),
)
VECTORS = st.lists(INTS, max_size=12)


def unsigned(ring: Ring, values: object) -> list[int]:
    return ring.to_ints(values, signed=False)  # type: ignore[arg-type]


def reduced(ring: Ring, values: list[int]) -> list[int]:
    return [v % ring.modulus for v in values]


def signed_of(ring: Ring, value: int) -> int:
    value %= ring.modulus
    return value - ring.modulus if value > ring.max_signed else value


def shifts(ring: Ring) -> st.SearchStrategy[int]:
    edges = [s for s in (0, 1, 32, 63, 64, 65, 127) if s < ring.bits]
    return st.one_of(st.sampled_from(edges), st.integers(min_value=0, max_value=ring.bits - 1))


# --- the rings themselves -------------------------------------------------------------------------


def test_ring_properties() -> None:
    assert (RING64.bits, RING64.name, RING64.dtype, RING64.element_bytes) == (64, "Z_2^64", np.uint64, 8)
    assert (RING128.bits, RING128.name, RING128.dtype, RING128.element_bytes) == (128, "Z_2^128", U128, 16)
    assert (RING64.words_per_element, RING128.words_per_element) == (1, 2)
    assert (RING64.modulus, RING128.modulus) == (2**64, 2**128)
    assert (RING64.max_signed, RING128.max_signed) == (2**63 - 1, 2**127 - 1)
    assert (repr(RING64), repr(RING128)) == ("Ring(Z_2^64)", "Ring(Z_2^128)")
    assert U128.itemsize == 16
    assert U128.names == ("lo", "hi")
    assert WORD_BYTES == 8


def test_ring_lookup() -> None:
    assert ring_for_bits(64) is RING64
    assert ring_for_bits(128) is RING128
    assert Ring(64) == RING64
    assert Ring(128) == RING128
    assert ring_of(np.zeros(3, dtype=np.uint64)) is RING64
    assert ring_of(np.zeros((2, 2), dtype=U128)) is RING128


@pytest.mark.parametrize("bits", [0, 1, 32, 63, 65, 96, 127, 129, 256])
def test_other_rings_do_not_exist(bits: int) -> None:
    with pytest.raises(InvalidArgumentError, match=f"Z_2\\^64 or Z_2\\^128, not Z_2\\^{bits}"):
        Ring(bits)
    with pytest.raises(InvalidArgumentError, match=f"not Z_2\\^{bits}"):
        ring_for_bits(bits)


@pytest.mark.parametrize(
    "values",
    [np.zeros(2, dtype=np.int64), np.zeros(2, dtype=np.uint32), np.zeros(2, dtype=">u8"), [1, 2], 5, None],
)
def test_ring_of_refuses_non_ring_arrays(values: object) -> None:
    with pytest.raises(InvalidArgumentError, match="not an array of ring elements"):
        ring_of(values)  # type: ignore[arg-type]


@RINGS
def test_require_names_the_ring_and_what(ring: Ring) -> None:
    other = RING128 if ring is RING64 else RING64
    wrong = other.zeros(3)
    assert not ring.is_ring_array(wrong)
    assert ring.is_ring_array(ring.zeros(3))
    assert not ring.is_ring_array([0, 0, 0])
    assert ring.require(ring.zeros(2)).shape == (2,)
    with pytest.raises(
        InvalidArgumentError, match=re.escape(f"the weights must hold elements of {ring.name}")
    ):
        ring.require(wrong, "the weights")
    for op in (ring.add, ring.sub, ring.mul):
        with pytest.raises(InvalidArgumentError, match=re.escape(ring.name)):
            op(wrong, wrong)
    for unary in (ring.neg, lambda a: ring.add_public(a, 1), lambda a: ring.ashr(a, 1), ring.words):
        with pytest.raises(InvalidArgumentError, match=re.escape(ring.name)):
            unary(wrong)


def test_big_endian_words_are_not_z2_64_elements() -> None:
    # A '>u8' array would otherwise be written to the wire in the wrong byte order.
    with pytest.raises(InvalidArgumentError, match="Z_2\\^64"):
        RING64.to_wire(np.array([1], dtype=">u8"))


@RINGS
def test_zeros_empty_and_shapes(ring: Ring) -> None:
    zeros = ring.zeros((2, 3))
    assert zeros.dtype == ring.dtype
    assert zeros.shape == (2, 3)
    assert unsigned(ring, zeros) == [0] * 6
    assert ring.empty(4).shape == (4,)
    assert ring.empty(4).dtype == ring.dtype
    assert ring.zeros(0).size == 0


@RINGS
@settings(max_examples=100, deadline=None)
@given(values=VECTORS)
def test_from_ints_reduces_and_to_ints_inverts(ring: Ring, values: list[int]) -> None:
    array = ring.from_ints(values)
    assert array.dtype == ring.dtype
    assert array.shape == (len(values),)
    assert unsigned(ring, array) == reduced(ring, values)
    assert ring.to_ints(array) == [signed_of(ring, v) for v in values]
    assert ring.from_ints(tuple(values)).tobytes() == array.tobytes()


@RINGS
def test_from_ints_of_one_int_is_a_0d_array(ring: Ring) -> None:
    scalar = ring.from_ints(-5)
    assert isinstance(scalar, np.ndarray)
    assert scalar.shape == ()
    assert scalar.dtype == ring.dtype
    assert ring.to_ints(scalar) == [-5]


def test_z2_128_limb_layout() -> None:
    values = RING128.from_ints([1, 2**64, -1, 0x0102030405060708090A0B0C0D0E0F10])
    assert values["lo"].tolist() == [1, 0, 2**64 - 1, 0x090A0B0C0D0E0F10]
    assert values["hi"].tolist() == [0, 1, 2**64 - 1, 0x0102030405060708]


@RINGS
@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0), (1, 1), (-1, -1), (2**64, 2**64), (-(2**64) - 1, -(2**64) - 1), (2**200 + 7, 7)],
)
def test_element_bytes_of_public_constants(ring: Ring, value: int, expected: int) -> None:
    data = ring.element_bytes_of(value)
    assert len(data) == ring.element_bytes
    assert int.from_bytes(data, "little") == expected % ring.modulus


@RINGS
@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=12))
def test_from_signed64_sign_extends(ring: Ring, values: list[int]) -> None:
    array = ring.from_signed64(np.array(values, dtype=np.int64))
    assert array.dtype == ring.dtype
    assert ring.to_ints(array) == values
    assert unsigned(ring, array) == reduced(ring, values)


@RINGS
def test_from_signed64_keeps_shape(ring: Ring) -> None:
    array = ring.from_signed64(np.array([[-1, 2], [3, -(2**63)]], dtype=np.int64))
    assert array.shape == (2, 2)
    assert ring.to_ints(array) == [-1, 2, 3, -(2**63)]


# --- elementwise arithmetic -----------------------------------------------------------------------


@RINGS
@settings(max_examples=150, deadline=None)
@given(pairs=st.lists(st.tuples(INTS, INTS), max_size=12))
def test_elementwise_arithmetic_is_arithmetic_mod_2_k(ring: Ring, pairs: list[tuple[int, int]]) -> None:
    a = ring.from_ints([x for x, _ in pairs])
    b = ring.from_ints([y for _, y in pairs])
    m = ring.modulus
    assert unsigned(ring, ring.add(a, b)) == [(x + y) % m for x, y in pairs]
    assert unsigned(ring, ring.sub(a, b)) == [(x - y) % m for x, y in pairs]
    assert unsigned(ring, ring.mul(a, b)) == [(x * y) % m for x, y in pairs]
    assert unsigned(ring, ring.neg(a)) == [-x % m for x, _ in pairs]
    for result in (ring.add(a, b), ring.sub(a, b), ring.mul(a, b), ring.neg(a)):
        assert result.dtype == ring.dtype
        assert result.shape == (len(pairs),)


@RINGS
@settings(max_examples=150, deadline=None)
@given(values=VECTORS, constant=INTS)
def test_public_constants_any_sign_or_size(ring: Ring, values: list[int], constant: int) -> None:
    a = ring.from_ints(values)
    m = ring.modulus
    assert unsigned(ring, ring.add_public(a, constant)) == [(v + constant) % m for v in values]
    assert unsigned(ring, ring.mul_public(a, constant)) == [(v * constant) % m for v in values]


@RINGS
def test_negative_public_constants(ring: Ring) -> None:
    a = ring.from_ints([0, 1, 10, -3])
    m = ring.modulus
    assert unsigned(ring, ring.add_public(a, -1)) == [m - 1, 0, 9, m - 4]
    assert ring.to_ints(ring.mul_public(a, -1)) == [0, -1, -10, 3]
    assert ring.to_ints(ring.mul_public(a, -(2**40))) == [0, -(2**40), -10 * 2**40, 3 * 2**40]
    assert unsigned(ring, ring.add_public(a, -m)) == unsigned(ring, a)
    assert unsigned(ring, ring.mul_public(a, m + 1)) == unsigned(ring, a)


def test_wraparound_at_2_64() -> None:
    r = RING64
    top = 2**64 - 1
    assert unsigned(r, r.add(r.from_ints([top]), r.from_ints([1]))) == [0]
    assert unsigned(r, r.sub(r.from_ints([0]), r.from_ints([1]))) == [top]
    assert unsigned(r, r.mul(r.from_ints([2**32]), r.from_ints([2**32]))) == [0]
    assert unsigned(r, r.mul(r.from_ints([2**63]), r.from_ints([2]))) == [0]
    assert unsigned(r, r.neg(r.from_ints([2**63]))) == [2**63]


@pytest.mark.parametrize(
    ("op", "x", "y", "expected"),
    [
        ("add", 2**64 - 1, 1, 2**64),  # carry from the low limb into the high one
        ("add", 2**128 - 1, 1, 0),
        ("add", 2**127 - 1, 1, 2**127),
        ("add", 2**64 + 2**63, 2**63, 2**65),
        ("sub", 2**64, 1, 2**64 - 1),  # borrow from the high limb
        ("sub", 0, 1, 2**128 - 1),
        ("sub", 2**64 + 5, 2**64 + 6, 2**128 - 1),
        ("mul", 2**64, 2**64, 0),
        ("mul", 2**63, 2, 2**64),
        ("mul", 2**64 - 1, 2**64 - 1, 2**128 - 2**65 + 1),  # the low halves' product carries
        ("mul", 2**64 + 1, 2**64 - 1, 2**128 - 1),
        ("mul", 2**127, 2, 0),
        ("mul", 0xFFFF_FFFF_FFFF_FFFF_0000_0000_0000_0001, 3, 0xFFFF_FFFF_FFFF_FFFD_0000_0000_0000_0003),
        ("mul", 2**128 - 1, 2**128 - 1, 1),
    ],
)
def test_z2_128_carries_between_limbs(op: str, x: int, y: int, expected: int) -> None:
    r = RING128
    result = getattr(r, op)(r.from_ints([x]), r.from_ints([y]))
    assert unsigned(r, result) == [expected]
    assert expected == {"add": x + y, "sub": x - y, "mul": x * y}[op] % 2**128
    # The same through the public-constant kernels.
    if op == "add":
        assert unsigned(r, r.add_public(r.from_ints([x]), y)) == [expected]
    if op == "mul":
        assert unsigned(r, r.mul_public(r.from_ints([x]), y)) == [expected]


def test_z2_128_negation_across_limbs() -> None:
    r = RING128
    values = r.from_ints([0, 1, 2**64, 2**127, 2**64 - 1])
    assert unsigned(r, r.neg(values)) == [0, 2**128 - 1, 2**128 - 2**64, 2**127, 2**128 - 2**64 + 1]


@RINGS
def test_in_place_elementwise_operations(ring: Ring) -> None:
    x, y = [5, -7, 2**64 - 1, 2**127], [3, 9, 1, 2**127]
    m = ring.modulus
    for name, oracle in (("add", int.__add__), ("sub", int.__sub__), ("mul", int.__mul__)):
        a, b = ring.from_ints(x), ring.from_ints(y)
        result = getattr(ring, name)(a, b, out=a)
        assert result is a
        assert unsigned(ring, a) == [oracle(p, q) % m for p, q in zip(x, y, strict=True)]
        a, b = ring.from_ints(x), ring.from_ints(y)
        assert getattr(ring, name)(a, b, out=b) is b
        assert unsigned(ring, b) == [oracle(p, q) % m for p, q in zip(x, y, strict=True)]
        assert unsigned(ring, a) == reduced(ring, x)  # the other operand is untouched


@RINGS
def test_elementwise_results_keep_the_shape(ring: Ring) -> None:
    a = ring.from_ints(list(range(6))).reshape(2, 3)
    b = ring.from_ints(list(range(6, 12))).reshape(2, 3)
    for result in (ring.add(a, b), ring.mul(a, b), ring.neg(a), ring.shl(a, 1), ring.add_public(a, 2)):
        assert result.shape == (2, 3)
    assert unsigned(ring, ring.mul(a, b)) == [i * (i + 6) for i in range(6)]


@RINGS
def test_0d_operands_give_0d_ring_arrays(ring: Ring) -> None:
    a, b = ring.from_ints(7), ring.from_ints(-3)
    results = {
        "add": ring.add(a, b),
        "sub": ring.sub(a, b),
        "mul": ring.mul(a, b),
        "neg": ring.neg(a),
        "add_public": ring.add_public(a, 1),
        "mul_public": ring.mul_public(a, 2),
        "ashr": ring.ashr(b, 1),
        "lshr": ring.lshr(a, 1),
        "shl": ring.shl(a, 1),
        "mul_terms": ring.mul_terms(a, a, b, b),
    }
    for name, result in results.items():
        assert isinstance(result, np.ndarray), name
        assert ring.is_ring_array(result), name
        assert result.shape == (), name
    assert [ring.to_ints(results[name])[0] for name in ("add", "sub", "mul", "neg")] == [4, 10, -21, -7]
    assert ring.to_ints(results["ashr"]) == [-2]
    assert ring.to_ints(results["mul_terms"]) == [7 * -6 + 7 * -3]
    # and the results chain into further operations
    assert ring.to_ints(ring.neg(ring.add(a, b))) == [-4]


@RINGS
def test_non_contiguous_operands_are_accepted(ring: Ring) -> None:
    a = ring.from_ints(list(range(12))).reshape(3, 4)
    b = ring.from_ints([10 * v for v in range(12)]).reshape(4, 3)
    total = ring.add(a.T, b)
    assert total.shape == (4, 3)
    assert ring.to_ints(total) == [x + y for x, y in zip(ring.to_ints(a.T), ring.to_ints(b), strict=True)]
    assert ring.to_ints(a.T)[:4] == [0, 4, 8, 1]
    assert ring.to_ints(ring.neg(a[:, ::2])) == [-v for v in (0, 2, 4, 6, 8, 10)]


@RINGS
def test_shape_mismatches_are_refused(ring: Ring) -> None:
    a, b = ring.zeros(3), ring.zeros(4)
    for op in (ring.add, ring.sub, ring.mul):
        with pytest.raises(InvalidArgumentError, match="differ in shape"):
            op(a, b)
    with pytest.raises(InvalidArgumentError, match="differ in shape"):
        ring.mul_terms(a, a, a, b)


# --- shifts ---------------------------------------------------------------------------------------


@RINGS
@settings(max_examples=200, deadline=None)
@given(values=VECTORS, data=st.data())
def test_shifts_match_python_ints(ring: Ring, values: list[int], data: st.DataObject) -> None:
    shift = data.draw(shifts(ring), label="shift")
    a = ring.from_ints(values)
    m = ring.modulus
    # ashr is floor division of the signed value, i.e. Python's >> on negative ints.
    assert ring.to_ints(ring.ashr(a, shift)) == [signed_of(ring, v) // 2**shift for v in values]
    assert ring.to_ints(ring.ashr(a, shift)) == [signed_of(ring, v) >> shift for v in values]
    assert unsigned(ring, ring.lshr(a, shift)) == [(v % m) >> shift for v in values]
    assert unsigned(ring, ring.shl(a, shift)) == [(v << shift) % m for v in values]


@RINGS
def test_shift_edges(ring: Ring) -> None:
    k = ring.bits
    a = ring.from_ints([0, 1, -1, -2, ring.max_signed, -(2 ** (k - 1)), -5, 5])
    assert unsigned(ring, ring.ashr(a, 0)) == unsigned(ring, a)
    assert unsigned(ring, ring.lshr(a, 0)) == unsigned(ring, a)
    assert unsigned(ring, ring.shl(a, 0)) == unsigned(ring, a)
    assert ring.to_ints(ring.ashr(a, k - 1)) == [0, 0, -1, -1, 0, -1, -1, 0]
    assert ring.to_ints(ring.ashr(a, 1)) == [0, 0, -1, -1, 2 ** (k - 2) - 1, -(2 ** (k - 2)), -3, 2]
    assert unsigned(ring, ring.lshr(a, k - 1)) == [0, 0, 1, 1, 0, 1, 1, 0]
    assert unsigned(ring, ring.shl(a, k - 1)) == [
        0,
        2 ** (k - 1),
        2 ** (k - 1),
        0,
        2 ** (k - 1),
        0,
        2 ** (k - 1),
        2 ** (k - 1),
    ]
    # A logical shift of a negative value is a huge positive number, not the signed result.
    assert unsigned(ring, ring.lshr(ring.from_ints([-8]), 2)) == [(ring.modulus - 8) >> 2]
    assert ring.to_ints(ring.ashr(ring.from_ints([-8]), 2)) == [-2]


def test_z2_128_shifts_cross_the_limbs() -> None:
    r = RING128
    assert unsigned(r, r.shl(r.from_ints([1, 2**63, 3]), 64)) == [2**64, 2**127, 3 * 2**64]
    assert unsigned(r, r.shl(r.from_ints([2**63]), 1)) == [2**64]
    assert unsigned(r, r.lshr(r.from_ints([2**64, 2**127, 2**64 + 2**63]), 1)) == [
        2**63,
        2**126,
        2**63 + 2**62,
    ]
    assert unsigned(r, r.lshr(r.from_ints([2**128 - 1]), 64)) == [2**64 - 1]
    assert r.to_ints(r.ashr(r.from_ints([-(2**64)]), 64)) == [-1]
    assert r.to_ints(r.ashr(r.from_ints([-(2**64) - 1]), 64)) == [-2]
    assert r.to_ints(r.ashr(r.from_ints([2**126]), 63)) == [2**63]


@RINGS
@pytest.mark.parametrize("name", ["ashr", "lshr", "shl"])
def test_shifts_out_of_range_are_refused(ring: Ring, name: str) -> None:
    a = ring.zeros(2)
    for bad in (-1, ring.bits, ring.bits + 1, 1000):
        with pytest.raises(ValueError, match=f"shift must be within 0..{ring.bits - 1}"):
            getattr(ring, name)(a, bad)


# --- fused kernels --------------------------------------------------------------------------------


@RINGS
@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.tuples(INTS, INTS, INTS, INTS), max_size=10))
def test_mul_terms_is_x0_y0_plus_y1_plus_x1_y0(ring: Ring, rows: list[tuple[int, int, int, int]]) -> None:
    x0, x1, y0, y1 = (ring.from_ints([row[i] for row in rows]) for i in range(4))
    expected = [(a * (c + d) + b * c) % ring.modulus for a, b, c, d in rows]
    result = ring.mul_terms(x0, x1, y0, y1)
    assert result.shape == (len(rows),)
    assert unsigned(ring, result) == expected


def mat(ring: Ring, values: list[int], rows: int, cols: int) -> np.ndarray:
    return ring.from_ints(values).reshape(rows, cols)


@st.composite
def matmul_cases(draw: st.DrawFn) -> tuple[int, int, int, bool, bool, list[list[int]]]:
    m, k, n = (draw(st.integers(min_value=0, max_value=4)) for _ in range(3))
    vector = draw(st.booleans())
    second = draw(st.booleans())
    b_size = k if vector else k * n
    parts = [draw(st.lists(INTS, min_size=size, max_size=size)) for size in (m * k, m * k, b_size, b_size)]
    return m, k, n, vector, second, parts


@RINGS
@settings(max_examples=150, deadline=None)
@given(case=matmul_cases())
def test_matmul_terms_matches_python_ints(
    ring: Ring, case: tuple[int, int, int, bool, bool, list[list[int]]]
) -> None:
    m, k, n, vector, second, (a0, a1, b0, b1) = case
    cols = 1 if vector else n
    a0_m, a1_m = mat(ring, a0, m, k), mat(ring, a1, m, k)
    b0_m, b1_m = (ring.from_ints(v) if vector else mat(ring, v, k, n) for v in (b0, b1))

    def b(values: list[int], p: int, j: int) -> int:
        return values[p * cols + j]

    if second:
        result = ring.matmul_terms(a0_m, a1_m, b0_m, b1_m)
        expected = [
            sum(a0[i * k + p] * (b(b0, p, j) + b(b1, p, j)) + a1[i * k + p] * b(b0, p, j) for p in range(k))
            for i in range(m)
            for j in range(cols)
        ]
    else:
        result = ring.matmul_terms(a0_m, None, b0_m, None)
        assert unsigned(ring, ring.matmul(a0_m, b0_m)) == unsigned(ring, result)
        expected = [sum(a0[i * k + p] * b(b0, p, j) for p in range(k)) for i in range(m) for j in range(cols)]
    assert result.dtype == ring.dtype
    assert result.shape == ((m,) if vector else (m, n))
    assert unsigned(ring, result) == reduced(ring, expected)


@st.composite
def cross_cases(draw: st.DrawFn) -> tuple[int, int, int, bool, list[list[int]]]:
    rows, d, e = (draw(st.integers(min_value=0, max_value=4)) for _ in range(3))
    second = draw(st.booleans())
    sizes = (rows * d, rows * d, rows * e, rows * e)
    parts = [draw(st.lists(INTS, min_size=size, max_size=size)) for size in sizes]
    return rows, d, e, second, parts


@RINGS
@settings(max_examples=150, deadline=None)
@given(case=cross_cases())
def test_cross_terms_matches_python_ints(
    ring: Ring, case: tuple[int, int, int, bool, list[list[int]]]
) -> None:
    rows, d, e, second, (x0, x1, y0, y1) = case
    x0_m, x1_m = mat(ring, x0, rows, d), mat(ring, x1, rows, d)
    y0_m, y1_m = mat(ring, y0, rows, e), mat(ring, y1, rows, e)
    if second:
        result = ring.cross_terms(x0_m, x1_m, y0_m, y1_m)
        expected = [
            sum(
                x0[r * d + a] * (y0[r * e + j] + y1[r * e + j]) + x1[r * d + a] * y0[r * e + j]
                for r in range(rows)
            )
            for a in range(d)
            for j in range(e)
        ]
    else:
        result = ring.cross_terms(x0_m, None, y0_m, None)
        expected = [
            sum(x0[r * d + a] * y0[r * e + j] for r in range(rows)) for a in range(d) for j in range(e)
        ]
    assert result.dtype == ring.dtype
    assert result.shape == (d, e)
    assert unsigned(ring, result) == reduced(ring, expected)


@RINGS
def test_larger_matrix_products_match_python_ints(ring: Ring) -> None:
    m, k, n = 9, 23, 7
    rng = np.random.default_rng(7)  # test data only; the product never uses numpy's generators
    a = [int(v) for v in rng.integers(0, 2**63, size=m * k)]
    b = [int(v) * (2**64 + 3) for v in rng.integers(-(2**62), 2**62, size=k * n)]
    a_m, b_m = mat(ring, a, m, k), mat(ring, b, k, n)
    expected = [sum(a[i * k + p] * b[p * n + j] for p in range(k)) for i in range(m) for j in range(n)]
    assert unsigned(ring, ring.matmul(a_m, b_m)) == reduced(ring, expected)
    vector = ring.from_ints(b[:k])
    by_vector = [sum(a[i * k + p] * b[p] for p in range(k)) for i in range(m)]
    assert unsigned(ring, ring.matmul(a_m, vector)) == reduced(ring, by_vector)
    # The Gram block X^T Y of X (k x m) and Y = b_m (k x n).
    x_m = mat(ring, a, k, m)
    gram = [sum(a[r * m + i] * b[r * n + j] for r in range(k)) for i in range(m) for j in range(n)]
    assert unsigned(ring, ring.cross_terms(x_m, None, b_m, None)) == reduced(ring, gram)


@RINGS
def test_matrix_kernels_accept_non_contiguous_inputs(ring: Ring) -> None:
    a_m = mat(ring, [1, -2, 3, 4, 5, -6], 3, 2)  # its transpose is 2 x 3 and not C-contiguous
    b_m = mat(ring, [1, 2, 3, 4, 5, 6], 3, 2)
    assert not a_m.T.flags.c_contiguous
    # rows of A^T: (1, 3, 5), (-2, 4, -6); columns of B: (1, 3, 5), (2, 4, 6)
    expected = [1 + 9 + 25, 2 + 12 + 30, -2 + 12 - 30, -4 + 16 - 36]
    assert ring.to_ints(ring.matmul(a_m.T, b_m)) == expected
    assert ring.to_ints(ring.cross_terms(a_m, None, b_m, None)) == expected
    # X0^T (Y0 + Y1) + X1^T Y0 with X0 = X1 = A and Y0 = Y1 = B is 3 A^T B
    assert ring.to_ints(ring.cross_terms(a_m, a_m, b_m, b_m)) == [3 * v for v in expected]


@RINGS
def test_matrix_shape_errors(ring: Ring) -> None:
    a_m, b_m = ring.zeros((2, 3)), ring.zeros((3, 4))
    with pytest.raises(InvalidArgumentError, match="A must be a matrix"):
        ring.matmul(ring.zeros(3), b_m)
    with pytest.raises(InvalidArgumentError, match="B must be a matrix"):
        ring.matmul(a_m, ring.zeros((3, 4, 1)))
    with pytest.raises(
        InvalidArgumentError, match=re.escape("cannot multiply a 2 x 3 matrix by shape (4, 4)")
    ):
        ring.matmul(a_m, ring.zeros((4, 4)))
    with pytest.raises(InvalidArgumentError, match=re.escape("cannot multiply a 2 x 3 matrix by shape (2,)")):
        ring.matmul(a_m, ring.zeros(2))
    with pytest.raises(InvalidArgumentError, match="components of a matrix differ in shape"):
        ring.matmul_terms(a_m, ring.zeros((3, 2)), b_m, b_m)
    with pytest.raises(InvalidArgumentError, match="components of a matrix differ in shape"):
        ring.matmul_terms(a_m, a_m, b_m, ring.zeros((3, 5)))
    with pytest.raises(InvalidArgumentError, match="equal row counts, got 2 and 3"):
        ring.cross_terms(a_m, None, b_m, None)
    with pytest.raises(InvalidArgumentError, match="Y must be a matrix"):
        ring.cross_terms(a_m, None, ring.zeros(2), None)
    with pytest.raises(InvalidArgumentError, match=re.escape(ring.name)):
        ring.matmul(a_m, (RING128 if ring is RING64 else RING64).zeros((3, 4)))


# --- wire codec -----------------------------------------------------------------------------------


@RINGS
@settings(max_examples=100, deadline=None)
@given(values=st.lists(INTS, max_size=24))
def test_wire_round_trip_and_little_endian_bytes(ring: Ring, values: list[int]) -> None:
    array = ring.from_ints(values)
    data = ring.to_wire(array)
    assert isinstance(data, bytes)
    assert data == b"".join((v % ring.modulus).to_bytes(ring.element_bytes, "little") for v in values)
    assert bytes(ring.wire_bytes(array)) == data
    decoded = ring.from_wire(data, expected=len(values))
    assert decoded.dtype == ring.dtype
    assert unsigned(ring, decoded) == reduced(ring, values)
    assert unsigned(ring, ring.wire_view(data, expected=len(values))) == reduced(ring, values)


def test_wire_known_bytes_z2_64() -> None:
    data = RING64.to_wire(RING64.from_ints([1, 0x0102030405060708, 2**64 - 1, 0]))
    assert data == (
        b"\x01\x00\x00\x00\x00\x00\x00\x00"
        b"\x08\x07\x06\x05\x04\x03\x02\x01"
        b"\xff\xff\xff\xff\xff\xff\xff\xff"
        b"\x00\x00\x00\x00\x00\x00\x00\x00"
    )
    assert unsigned(RING64, RING64.from_wire(data)) == [1, 0x0102030405060708, 2**64 - 1, 0]


def test_wire_known_bytes_z2_128() -> None:
    values = [1, 2**64, 2**128 - 1, 0x0102030405060708090A0B0C0D0E0F10, 2**127]
    data = RING128.to_wire(RING128.from_ints(values))
    assert data == bytes.fromhex(
        "01000000000000000000000000000000"
        "00000000000000000100000000000000"
        "ffffffffffffffffffffffffffffffff"
        "100f0e0d0c0b0a090807060504030201"
        "00000000000000000000000000000080"
    )
    assert unsigned(RING128, RING128.from_wire(data)) == values
    assert RING128.to_wire(RING128.from_ints([-1])) == b"\xff" * 16
    assert RING128.to_wire(RING128.from_ints([-2])) == b"\xfe" + b"\xff" * 15


@RINGS
def test_to_wire_flattens_in_c_order_and_handles_non_contiguous_views(ring: Ring) -> None:
    matrix = ring.from_ints(list(range(6))).reshape(2, 3)
    assert unsigned(ring, ring.from_wire(ring.to_wire(matrix))) == [0, 1, 2, 3, 4, 5]
    assert not matrix.T.flags.c_contiguous
    assert unsigned(ring, ring.from_wire(ring.to_wire(matrix.T))) == [0, 3, 1, 4, 2, 5]
    assert ring.to_wire(ring.from_ints(7)) == (7).to_bytes(ring.element_bytes, "little")


@RINGS
def test_from_wire_empty(ring: Ring) -> None:
    decoded = ring.from_wire(b"")
    assert decoded.dtype == ring.dtype
    assert decoded.size == 0
    assert ring.from_wire(b"", expected=0).size == 0
    assert ring.to_wire(ring.zeros(0)) == b""


@RINGS
@pytest.mark.parametrize("size", [1, 7, 8, 9, 15, 17, 24, 33])
def test_from_wire_rejects_partial_elements(ring: Ring, size: int) -> None:
    if size % ring.element_bytes == 0:
        assert ring.from_wire(bytes(size)).size == size // ring.element_bytes
        return
    message = f"{size} bytes are not a whole number of {ring.element_bytes}-byte elements of {ring.name}"
    with pytest.raises(ShareFormatError, match=re.escape(message)):
        ring.from_wire(bytes(size))
    with pytest.raises(ShareFormatError, match=f"{size} bytes"):
        ring.wire_view(bytes(size))


@RINGS
@pytest.mark.parametrize(("count", "expected"), [(0, 1), (2, 1), (2, 3), (3, 0)])
def test_from_wire_rejects_unexpected_count(ring: Ring, count: int, expected: int) -> None:
    data = bytes(ring.element_bytes * count)
    message = re.escape(f"expected {expected} elements of {ring.name}, got {count}")
    with pytest.raises(ShareFormatError, match=message):
        ring.from_wire(data, expected=expected)
    with pytest.raises(ShareFormatError, match=message):
        ring.wire_view(data, expected=expected)


@RINGS
def test_share_format_error_is_an_invalid_argument(ring: Ring) -> None:
    with pytest.raises(InvalidArgumentError):
        ring.from_wire(b"abc")
    with pytest.raises(ValueError, match="3 bytes"):
        ring.from_wire(b"abc")


@RINGS
@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_from_wire_accepts_buffers_and_returns_a_writable_copy(ring: Ring, kind: type) -> None:
    source = bytearray(ring.to_wire(ring.from_ints([5, 6])))
    decoded = ring.from_wire(kind(source))
    assert decoded.flags.writeable
    decoded[0] = ring.from_ints(99)
    assert unsigned(ring, ring.from_wire(bytes(source))) == [5, 6]
    source[0] = 7
    assert unsigned(ring, decoded) == [99, 6]


@RINGS
def test_wire_view_of_bytes_is_read_only_and_from_wire_is_a_writable_copy(ring: Ring) -> None:
    data = ring.to_wire(ring.from_ints([5, 6]))
    view = ring.wire_view(data)
    assert view.dtype == ring.dtype
    assert not view.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        view[0] = ring.from_ints(1)
    copy = ring.from_wire(data)
    assert copy.flags.writeable
    copy[0] = ring.from_ints(1)
    assert unsigned(ring, copy) == [1, 6]
    assert unsigned(ring, view) == [5, 6]


@RINGS
def test_wire_view_does_not_copy(ring: Ring) -> None:
    source = bytearray(ring.to_wire(ring.from_ints([5, 6])))
    view = ring.wire_view(source)
    copy = ring.from_wire(source)
    source[0] = 9  # the view sees the buffer change, the copy does not
    assert unsigned(ring, view) == [9, 6]
    assert unsigned(ring, copy) == [5, 6]


@RINGS
def test_wire_bytes_share_the_arrays_memory(ring: Ring) -> None:
    values = ring.from_ints([1, 2, 3])
    view = ring.wire_bytes(values)
    assert len(view) == 3 * ring.element_bytes
    values[0] = ring.from_ints(9)
    assert view[0] == 9


# --- words ----------------------------------------------------------------------------------------


@RINGS
@settings(max_examples=100, deadline=None)
@given(values=st.lists(INTS, max_size=16))
def test_words_round_trip(ring: Ring, values: list[int]) -> None:
    array = ring.from_ints(values)
    words = ring.words(array)
    assert words.dtype == np.uint64
    assert words.shape == (len(values) * ring.words_per_element,)
    expected = [
        ((v % ring.modulus) >> (64 * w)) % 2**64 for v in values for w in range(ring.words_per_element)
    ]
    assert words.tolist() == expected  # low word first
    back = ring.from_words(words, expected=len(values))
    assert back.dtype == ring.dtype
    assert unsigned(ring, back) == reduced(ring, values)
    assert bytes(words_bytes(words)) == ring.to_wire(array)


@RINGS
def test_words_and_from_words_are_views(ring: Ring) -> None:
    array = ring.from_ints([1, 2]).reshape(1, 2)
    words = ring.words(array)
    words[0] = 5
    assert ring.to_ints(array)[0] == 5
    elements = ring.from_words(words)
    words[0] = 6
    assert ring.to_ints(elements)[0] == 6


def test_from_words_refuses_an_odd_number_of_words_in_z2_128() -> None:
    for count in (1, 3, 5):
        with pytest.raises(ShareFormatError, match=f"{count} words are not a whole number of Z_2\\^128"):
            RING128.from_words(np.zeros(count, dtype=np.uint64))
    assert RING64.from_words(np.zeros(3, dtype=np.uint64)).size == 3
    assert RING128.from_words(np.zeros(4, dtype=np.uint64)).size == 2


@RINGS
def test_from_words_checks_the_expected_count(ring: Ring) -> None:
    words = np.zeros(4, dtype=np.uint64)
    count = 4 // ring.words_per_element
    assert ring.from_words(words, expected=count).size == count
    with pytest.raises(
        ShareFormatError,
        match=re.escape(f"expected {count + 1} elements of {ring.name}, got {count}"),
    ):
        ring.from_words(words, expected=count + 1)


def test_words_view_and_words_bytes() -> None:
    data = (1).to_bytes(8, "little") + (2**64 - 1).to_bytes(8, "little")
    words = words_view(data, expected=2)
    assert words.dtype == np.uint64
    assert words.tolist() == [1, 2**64 - 1]
    assert not words.flags.writeable
    assert bytes(words_bytes(words)) == data
    assert bytes(words_bytes(np.zeros((2, 2), dtype=np.uint64))) == bytes(32)
    with pytest.raises(ShareFormatError, match="12 bytes are not a whole number of 8-byte words"):
        words_view(bytes(12))
    with pytest.raises(ShareFormatError, match="expected 3 words, got 2"):
        words_view(data, expected=3)


def test_element_count() -> None:
    assert element_count(()) == 1
    assert element_count((2, 3)) == 6
    assert element_count((0, 5)) == 0
    assert element_count((7,)) == 7
