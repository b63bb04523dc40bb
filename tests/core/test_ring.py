"""Tests for mpc_core.ring: the ring Z_2^64 and its little-endian wire codec."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc_core import ring
from mpc_core.errors import InvalidArgumentError, ShareFormatError

U64 = st.integers(min_value=0, max_value=2**64 - 1)
I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
MAX = 2**64 - 1


def u64(values: list[int]) -> ring.RingArray:
    return np.array(values, dtype=np.uint64)


# --- wire codec -----------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.lists(U64, max_size=64))
def test_wire_round_trip(values: list[int]) -> None:
    array = u64(values)
    data = ring.to_wire(array)
    assert len(data) == 8 * len(values)
    decoded = ring.from_wire(data, expected=len(values))
    assert decoded.dtype == np.uint64
    assert decoded.tolist() == values


@settings(max_examples=100, deadline=None)
@given(st.lists(U64, max_size=32))
def test_wire_bytes_are_little_endian_words(values: list[int]) -> None:
    expected = b"".join(v.to_bytes(8, "little") for v in values)
    assert ring.to_wire(u64(values)) == expected


def test_wire_known_bytes() -> None:
    data = ring.to_wire(u64([1, 0x0102030405060708, MAX, 0]))
    assert data == (
        b"\x01\x00\x00\x00\x00\x00\x00\x00"
        b"\x08\x07\x06\x05\x04\x03\x02\x01"
        b"\xff\xff\xff\xff\xff\xff\xff\xff"
        b"\x00\x00\x00\x00\x00\x00\x00\x00"
    )
    assert ring.from_wire(data).tolist() == [1, 0x0102030405060708, MAX, 0]


def test_wire_is_little_endian_even_for_big_endian_input() -> None:
    big = np.array([0x0102030405060708], dtype=">u8")
    assert ring.to_wire(big) == bytes.fromhex("0807060504030201")


def test_to_wire_flattens_in_c_order_and_handles_non_contiguous_views() -> None:
    matrix = np.arange(6, dtype=np.uint64).reshape(2, 3)
    assert ring.from_wire(ring.to_wire(matrix)).tolist() == [0, 1, 2, 3, 4, 5]
    transposed = matrix.T  # not C-contiguous
    assert ring.from_wire(ring.to_wire(transposed)).tolist() == [0, 3, 1, 4, 2, 5]


def test_from_wire_empty() -> None:
    decoded = ring.from_wire(b"")
    assert decoded.dtype == np.uint64
    assert decoded.size == 0
    assert ring.from_wire(b"", expected=0).size == 0


@pytest.mark.parametrize("size", [1, 7, 9, 15, 17])
def test_from_wire_rejects_partial_words(size: int) -> None:
    with pytest.raises(ShareFormatError, match=f"{size} bytes"):
        ring.from_wire(bytes(size))


@pytest.mark.parametrize(("count", "expected"), [(0, 1), (2, 1), (2, 3), (3, 0)])
def test_from_wire_rejects_unexpected_count(count: int, expected: int) -> None:
    with pytest.raises(ShareFormatError, match=f"expected {expected} ring elements, got {count}"):
        ring.from_wire(bytes(8 * count), expected=expected)


def test_share_format_error_is_an_invalid_argument() -> None:
    with pytest.raises(InvalidArgumentError):
        ring.from_wire(b"abc")
    with pytest.raises(ValueError, match="8-byte words"):
        ring.from_wire(b"abc")


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_from_wire_accepts_buffers_and_returns_a_writable_copy(kind: type) -> None:
    source = bytearray(ring.to_wire(u64([5, 6])))
    decoded = ring.from_wire(kind(source))
    assert decoded.flags.writeable
    decoded[0] = 99
    assert ring.from_wire(bytes(source)).tolist() == [5, 6]
    source[0] = 7
    assert decoded.tolist() == [99, 6]


# --- arithmetic -----------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(I64, st.integers(min_value=0, max_value=63))
def test_arithmetic_shift_matches_python_signed_shift(value: int, bits: int) -> None:
    shifted = ring.arithmetic_shift(ring.as_ring(np.array([value], dtype=np.int64)), bits)
    assert shifted.dtype == np.uint64
    assert int(shifted.view(np.int64)[0]) == value >> bits


def test_arithmetic_shift_of_negative_values_keeps_sign() -> None:
    values = ring.as_ring(np.array([-1, -2, -(2**63), -5, 5], dtype=np.int64))
    assert ring.to_signed(ring.arithmetic_shift(values, 1)).tolist() == [-1, -1, -(2**62), -3, 2]
    # A logical shift of the unsigned view would give a huge positive number instead.
    assert int(ring.arithmetic_shift(ring.as_ring(np.array([-8])), 2)[0]) == MAX - 1


def test_arithmetic_shift_by_zero_is_identity() -> None:
    values = u64([0, 1, MAX, 2**63])
    assert ring.arithmetic_shift(values, 0).tolist() == values.tolist()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (1, 1),
        (-1, MAX),
        (-2, MAX - 1),
        (-(2**63), 2**63),
        (2**64, 0),
        (2**64 + 5, 5),
        (-(2**64), 0),
        (-(2**64) - 1, MAX),
        (3 * 2**64 + 7, 7),
    ],
)
def test_ring_constant(value: int, expected: int) -> None:
    constant = ring.ring_constant(value)
    assert isinstance(constant, np.uint64)
    assert int(constant) == expected


def test_ring_constant_mixes_with_uint64_arrays() -> None:
    values = u64([0, 1, 10])
    assert (values + ring.ring_constant(-1)).tolist() == [MAX, 0, 9]
    assert (values * ring.ring_constant(-1)).tolist() == [0, MAX, 2**64 - 10]


def test_wraparound_at_2_64() -> None:
    assert (u64([MAX]) + u64([1])).tolist() == [0]
    assert (u64([0]) - u64([1])).tolist() == [MAX]
    assert (u64([2**32]) * u64([2**32])).tolist() == [0]
    assert (u64([2**63]) * u64([2])).tolist() == [0]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(U64, U64), min_size=1, max_size=16))
def test_uint64_arithmetic_is_arithmetic_mod_2_64(pairs: list[tuple[int, int]]) -> None:
    a = u64([p[0] for p in pairs])
    b = u64([p[1] for p in pairs])
    assert (a + b).tolist() == [(x + y) % 2**64 for x, y in pairs]
    assert (a - b).tolist() == [(x - y) % 2**64 for x, y in pairs]
    assert (a * b).tolist() == [(x * y) % 2**64 for x, y in pairs]


@settings(max_examples=100, deadline=None)
@given(st.lists(I64, max_size=16))
def test_as_ring_is_twos_complement_and_to_signed_inverts_it(values: list[int]) -> None:
    as_ring = ring.as_ring(np.array(values, dtype=np.int64))
    assert as_ring.dtype == np.uint64
    assert as_ring.tolist() == [v % 2**64 for v in values]
    assert ring.to_signed(as_ring).tolist() == values


def test_as_ring_accepts_small_integer_dtypes_and_keeps_uint64() -> None:
    assert ring.as_ring(np.array([-1], dtype=np.int8)).tolist() == [MAX]
    assert ring.as_ring(np.array([200], dtype=np.uint8)).tolist() == [200]
    values = u64([1, 2])
    assert ring.as_ring(values).tolist() == [1, 2]


@pytest.mark.parametrize("values", [[1.5], np.array([1.0]), np.array([True]), ["a"]])
def test_as_ring_rejects_non_integers(values: object) -> None:
    with pytest.raises(TypeError, match="must be integers"):
        ring.as_ring(values)  # type: ignore[arg-type]


def test_helpers() -> None:
    assert ring.element_count(()) == 1
    assert ring.element_count((2, 3)) == 6
    assert ring.element_count((0, 5)) == 0
    assert ring.RING_MODULUS == 2**64
    assert ring.WORD_BYTES == 8
