"""The compiled ring kernel (mpc_core._ringkernel): its argument checks and in-place use.

The kernel trusts nothing about its buffers: sizes must match, outputs must
be writable and contiguous, matrix outputs must not overlap an input, shift
counts must be in range. These tests call it directly, for both element
widths, and through :class:`~mpc_core.ring.Ring`. They also check that numpy
itself refuses arithmetic on Z_2^128 arrays, so that no code can add two
elements limb by limb by accident.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mpc_core._ringkernel as kernel
from mpc_core.ring import RING64, RING128, U128, Ring

RINGS = pytest.mark.parametrize("ring", [RING64, RING128], ids=["Z2^64", "Z2^128"])
SUFFIX = {64: "u64", 128: "u128"}

BINARY = ("add", "sub", "mul")
SCALAR = ("add_scalar", "mul_scalar")
SHIFTS = ("ashr", "lshr", "shl")
MATRIX = ("matmul_terms", "cross_terms")


def fn(ring: Ring, name: str) -> Callable[..., None]:
    function: Callable[..., None] = getattr(kernel, f"{name}_{SUFFIX[ring.bits]}")
    return function


def ints(ring: Ring, array: np.ndarray) -> list[int]:
    return ring.to_ints(array, signed=False)


def elementwise_calls(ring: Ring, out: Any, a: Any) -> dict[str, Callable[[], None]]:
    """Every elementwise kernel called with output ``out`` and every input ``a``."""
    constant = ring.element_bytes_of(3)
    calls: dict[str, Callable[[], None]] = {}
    for name in BINARY:
        calls[name] = lambda name=name: fn(ring, name)(out, a, a)
    for name in SCALAR:
        calls[name] = lambda name=name: fn(ring, name)(out, a, constant)
    for name in SHIFTS:
        calls[name] = lambda name=name: fn(ring, name)(out, a, 1)
    calls["neg"] = lambda: fn(ring, "neg")(out, a)
    calls["mul_terms"] = lambda: fn(ring, "mul_terms")(out, a, a, a, a)
    return calls


def matrix_calls(ring: Ring, out: Any, a: Any, b: Any, n: int = 2) -> dict[str, Callable[[], None]]:
    """matmul_terms with A (2 x 2) and B (2 x n), cross_terms with X (2 x 2) and Y (2 x n)."""
    return {
        "matmul_terms": lambda: fn(ring, "matmul_terms")(out, a, a, b, b, 2, 2, n),
        "cross_terms": lambda: fn(ring, "cross_terms")(out, a, a, b, b, 2, 2, n),
    }


# --- the kernel names and what they compute ---------------------------------------------------


def test_the_kernel_exports_every_function_for_both_widths() -> None:
    names = {*BINARY, *SCALAR, *SHIFTS, *MATRIX, "neg", "mul_terms"}
    exported = {name for name in dir(kernel) if not name.startswith("_")}
    assert exported >= {f"{name}_{suffix}" for name in names for suffix in ("u64", "u128")}


@RINGS
def test_direct_calls_compute_the_ring_operations(ring: Ring) -> None:
    x, y = [2**64 - 1, 5, -1, 2**127 + 9], [1, -7, -1, 3]
    a, b = ring.from_ints(x), ring.from_ints(y)
    m = ring.modulus
    out = ring.empty(4)
    fn(ring, "add")(out, a, b)
    assert ints(ring, out) == [(p + q) % m for p, q in zip(x, y, strict=True)]
    fn(ring, "mul")(out, a, b)
    assert ints(ring, out) == [(p * q) % m for p, q in zip(x, y, strict=True)]
    fn(ring, "sub")(out, a, b)
    assert ints(ring, out) == [(p - q) % m for p, q in zip(x, y, strict=True)]
    fn(ring, "neg")(out, a)
    assert ints(ring, out) == [-p % m for p in x]
    fn(ring, "mul_scalar")(out, a, ring.element_bytes_of(-2))
    assert ints(ring, out) == [-2 * p % m for p in x]
    fn(ring, "ashr")(out, b, 1)
    assert ring.to_ints(out) == [0, -4, -1, 1]


@RINGS
def test_inputs_may_be_any_contiguous_buffer(ring: Ring) -> None:
    a = ring.from_ints([1, 2, 3])
    out = ring.empty(3)
    fn(ring, "add")(out, a.tobytes(), bytearray(a.tobytes()))
    assert ints(ring, out) == [2, 4, 6]
    fn(ring, "mul")(memoryview(out), memoryview(a.tobytes()), a)
    assert ints(ring, out) == [1, 4, 9]
    target = bytearray(3 * ring.element_bytes)
    fn(ring, "shl")(target, a, 2)
    assert ints(ring, ring.from_wire(target)) == [4, 8, 12]


@RINGS
def test_empty_arrays_are_fine(ring: Ring) -> None:
    empty = ring.empty(0)
    for call in elementwise_calls(ring, empty, empty).values():
        call()
    fn(ring, "matmul_terms")(ring.empty((0, 3)), ring.empty((0, 2)), None, ring.zeros((2, 3)), None, 0, 2, 3)
    # An empty inner dimension gives zeros, whatever the output held before.
    out = ring.from_ints([9] * 6).reshape(2, 3)
    fn(ring, "matmul_terms")(out, ring.empty((2, 0)), None, ring.empty((0, 3)), None, 2, 0, 3)
    assert ints(ring, out) == [0] * 6
    out = ring.from_ints([9] * 6).reshape(2, 3)
    fn(ring, "cross_terms")(out, ring.empty((0, 2)), None, ring.empty((0, 3)), None, 0, 2, 3)
    assert ints(ring, out) == [0] * 6


# --- buffer sizes -------------------------------------------------------------------------------


@RINGS
def test_elementwise_inputs_must_match_the_output_size(ring: Ring) -> None:
    out = ring.empty(4)
    expected = 4 * ring.element_bytes
    for short in (ring.zeros(3), ring.zeros(5), b""):
        size = len(bytes(short))
        for call in elementwise_calls(ring, out, short).values():
            with pytest.raises(ValueError, match=f"holds {size} bytes, expected {expected}"):
                call()


@RINGS
def test_the_second_input_of_a_binary_function_is_checked_too(ring: Ring) -> None:
    out, a = ring.empty(4), ring.zeros(4)
    for name in BINARY:
        with pytest.raises(ValueError, match="b holds"):
            fn(ring, name)(out, a, ring.zeros(3))
    for index in range(1, 4):
        parts = [a, a, a, a]
        parts[index] = ring.zeros(2)
        with pytest.raises(ValueError, match=f"{['x0', 'x1', 'y0', 'y1'][index]} holds"):
            fn(ring, "mul_terms")(out, *parts)


@RINGS
def test_outputs_must_be_whole_elements(ring: Ring) -> None:
    out = bytearray(ring.element_bytes + 3)
    a = bytes(len(out))
    for call in elementwise_calls(ring, out, a).values():
        with pytest.raises(ValueError, match=f"not a whole number of {ring.element_bytes}-byte elements"):
            call()


@RINGS
@pytest.mark.parametrize("name", SCALAR)
def test_a_public_constant_is_exactly_one_element(ring: Ring, name: str) -> None:
    out, a = ring.empty(2), ring.zeros(2)
    for size in (0, ring.element_bytes - 1, ring.element_bytes + 1, 2 * ring.element_bytes):
        with pytest.raises(ValueError, match=f"constant holds {size} bytes, expected {ring.element_bytes}"):
            fn(ring, name)(out, a, bytes(size))


@RINGS
@pytest.mark.parametrize("name", MATRIX)
def test_matrix_buffers_must_match_the_dimensions(ring: Ring, name: str) -> None:
    w = ring.element_bytes
    good = {"out": ring.empty((2, 3)), "a0": ring.zeros((2, 2)), "b0": ring.zeros((2, 3))}
    # matmul_terms: out (m x n) from A (m x k), B (k x n); cross_terms: out (d x e) from X (rows x d),
    # Y (rows x e). With (2, 2, 3) both take 6, 4 and 6 elements.
    fn(ring, name)(good["out"], good["a0"], good["a0"], good["b0"], good["b0"], 2, 2, 3)
    for key in ("out", "a0", "a1", "b0", "b1"):
        parts = {**good, "a1": good["a0"], "b1": good["b0"]}
        parts[key] = ring.empty(1 if key != "out" else 5)
        size = len(parts[key].tobytes())
        expected = {"out": 6, "a0": 4, "a1": 4, "b0": 6, "b1": 6}[key] * w
        with pytest.raises(ValueError, match=f"{key} holds {size} bytes, expected {expected}"):
            fn(ring, name)(parts["out"], parts["a0"], parts["a1"], parts["b0"], parts["b1"], 2, 2, 3)


@RINGS
@pytest.mark.parametrize("name", MATRIX)
def test_matrix_dimensions_must_be_non_negative_and_not_overflow(ring: Ring, name: str) -> None:
    out, a = ring.empty(4), ring.zeros(4)
    for dims in ((-1, 2, 2), (2, -1, 2), (2, 2, -1)):
        with pytest.raises(ValueError, match="non-negative"):
            fn(ring, name)(out, a, None, a, None, *dims)
    huge = 2**62
    with pytest.raises(OverflowError, match="overflow"):
        fn(ring, name)(out, a, None, a, None, huge, huge, 1)


# --- writable, contiguous, non-overlapping --------------------------------------------------------


@RINGS
def test_a_read_only_output_is_refused(ring: Ring) -> None:
    a = ring.zeros(4)
    frozen = ring.zeros(4)
    frozen.flags.writeable = False
    for out in (frozen, a.tobytes(), memoryview(a.tobytes())):
        for call in {**elementwise_calls(ring, out, a), **matrix_calls(ring, out, a, a)}.values():
            with pytest.raises(TypeError, match="read-write"):
                call()
    assert ints(ring, frozen) == [0] * 4


@RINGS
def test_a_non_contiguous_output_is_refused(ring: Ring) -> None:
    out = ring.zeros(8)[::2]
    a = ring.from_ints([1, 2, 3, 4])
    for call in {**elementwise_calls(ring, out, a), **matrix_calls(ring, out, a, a)}.values():
        with pytest.raises(TypeError):
            call()
    assert ints(ring, out) == [0] * 4


@RINGS
def test_a_non_contiguous_input_is_refused(ring: Ring) -> None:
    out = ring.empty(4)
    strided = ring.from_ints(list(range(8)))[::2]
    assert not strided.flags.c_contiguous
    transposed = ring.from_ints(list(range(4))).reshape(2, 2).T
    for a in (strided, transposed):
        calls = {**elementwise_calls(ring, out, a), **matrix_calls(ring, ring.empty((2, 2)), a, a)}
        for call in calls.values():
            with pytest.raises((ValueError, BufferError), match="contiguous"):
                call()


@RINGS
def test_ring_methods_copy_non_contiguous_inputs_for_the_kernel(ring: Ring) -> None:
    strided = ring.from_ints(list(range(8)))[::2]
    assert ints(ring, ring.shl(strided, 1)) == [0, 4, 8, 12]
    assert ints(ring, ring.mul_terms(strided, strided, strided, strided)) == [3 * v * v for v in (0, 2, 4, 6)]


@RINGS
@pytest.mark.parametrize("name", MATRIX)
@pytest.mark.parametrize("operand", ["a0", "a1", "b0", "b1"])
def test_a_matrix_output_overlapping_an_input_is_refused(ring: Ring, name: str, operand: str) -> None:
    buffer = ring.from_ints(list(range(12)))
    parts = {"a0": ring.zeros(4), "a1": ring.zeros(4), "b0": ring.zeros(4), "b1": ring.zeros(4)}
    out = buffer[4:8]
    for overlapping in (buffer[4:8], buffer[2:6], buffer[7:11], buffer[5:9]):
        parts[operand] = overlapping
        with pytest.raises(ValueError, match="must not overlap an input"):
            fn(ring, name)(out, parts["a0"], parts["a1"], parts["b0"], parts["b1"], 2, 2, 2)
    # Neighbouring but disjoint slices of one buffer are fine.
    for disjoint in (buffer[0:4], buffer[8:12]):
        parts[operand] = disjoint
        fn(ring, name)(out, parts["a0"], parts["a1"], parts["b0"], parts["b1"], 2, 2, 2)
    assert ints(ring, buffer[:4]) == [0, 1, 2, 3]


@RINGS
@pytest.mark.parametrize("name", MATRIX)
def test_the_output_of_the_plain_product_must_not_overlap_either(ring: Ring, name: str) -> None:
    a = ring.from_ints([1, 2, 3, 4]).reshape(2, 2)
    with pytest.raises(ValueError, match="must not overlap"):
        fn(ring, name)(a, a, None, ring.zeros((2, 2)), None, 2, 2, 2)
    with pytest.raises(ValueError, match="must not overlap"):
        fn(ring, name)(a, ring.zeros((2, 2)), None, a, None, 2, 2, 2)
    assert ints(ring, a) == [1, 2, 3, 4]


# --- shifts and second components -----------------------------------------------------------------


@RINGS
@pytest.mark.parametrize("name", SHIFTS)
def test_shift_counts_out_of_range_are_refused(ring: Ring, name: str) -> None:
    out, a = ring.empty(2), ring.from_ints([1, -1])
    for bad in (-1, -(2**31), ring.bits, ring.bits + 1, 2**31 - 1):
        with pytest.raises(ValueError, match=re.escape(f"shift must be within 0..{ring.bits - 1}")):
            fn(ring, name)(out, a, bad)
    with pytest.raises(OverflowError):
        fn(ring, name)(out, a, 2**40)
    for fine in (0, ring.bits - 1):
        fn(ring, name)(out, a, fine)


@RINGS
@pytest.mark.parametrize("name", MATRIX)
def test_second_components_come_in_pairs(ring: Ring, name: str) -> None:
    out, a = ring.empty(4), ring.zeros(4)
    with pytest.raises(ValueError, match="give both second components or neither"):
        fn(ring, name)(out, a, a, a, None, 2, 2, 2)
    with pytest.raises(ValueError, match="give both second components or neither"):
        fn(ring, name)(out, a, None, a, a, 2, 2, 2)


@RINGS
def test_ring_methods_pass_a_lone_second_component_to_the_kernel_check(ring: Ring) -> None:
    a = ring.zeros((2, 2))
    with pytest.raises(ValueError, match="both second components"):
        ring.matmul_terms(a, a, a, None)
    with pytest.raises(ValueError, match="both second components"):
        ring.matmul_terms(a, None, a, a)
    with pytest.raises(ValueError, match="both second components"):
        ring.cross_terms(a, a, a, None)
    with pytest.raises(ValueError, match="both second components"):
        ring.cross_terms(a, None, a, a)


@RINGS
@pytest.mark.parametrize("name", SHIFTS)
def test_ring_methods_refuse_shifts_out_of_range(ring: Ring, name: str) -> None:
    with pytest.raises(ValueError, match="shift must be within"):
        getattr(ring, name)(ring.zeros(2), ring.bits)


# --- in-place elementwise use ---------------------------------------------------------------------

VALUES = st.lists(st.integers(min_value=-(2**128), max_value=2**128), min_size=1, max_size=8)


@RINGS
@settings(max_examples=50, deadline=None)
@given(x=VALUES, data=st.data())
def test_in_place_elementwise_kernels_are_correct(ring: Ring, x: list[int], data: st.DataObject) -> None:
    y = data.draw(st.lists(st.integers(-(2**128), 2**128), min_size=len(x), max_size=len(x)), label="y")
    m = ring.modulus
    oracle: dict[str, Callable[[int, int], int]] = {
        "add": operator.add,
        "sub": operator.sub,
        "mul": operator.mul,
    }
    for name, op in oracle.items():
        a, b = ring.from_ints(x), ring.from_ints(y)
        fn(ring, name)(a, a, b)  # out is a
        assert ints(ring, a) == [op(p, q) % m for p, q in zip(x, y, strict=True)]
        a, b = ring.from_ints(x), ring.from_ints(y)
        fn(ring, name)(b, a, b)  # out is b
        assert ints(ring, b) == [op(p, q) % m for p, q in zip(x, y, strict=True)]
        a = ring.from_ints(x)
        fn(ring, name)(a, a, a)  # out is both
        assert ints(ring, a) == [op(p, p) % m for p in x]
    a = ring.from_ints(x)
    fn(ring, "neg")(a, a)
    assert ints(ring, a) == [-p % m for p in x]
    a = ring.from_ints(x)
    fn(ring, "add_scalar")(a, a, ring.element_bytes_of(y[0]))
    assert ints(ring, a) == [(p + y[0]) % m for p in x]
    a = ring.from_ints(x)
    fn(ring, "mul_scalar")(a, a, ring.element_bytes_of(y[0]))
    assert ints(ring, a) == [(p * y[0]) % m for p in x]
    shift = data.draw(st.integers(0, ring.bits - 1), label="shift")
    a = ring.from_ints(x)
    fn(ring, "ashr")(a, a, shift)
    assert ring.to_ints(a) == [ring.to_ints(ring.from_ints(p))[0] >> shift for p in x]
    a = ring.from_ints(x)
    fn(ring, "shl")(a, a, shift)
    assert ints(ring, a) == [(p << shift) % m for p in x]
    x0, x1 = ring.from_ints(x), ring.from_ints(y)
    fn(ring, "mul_terms")(x0, x0, x1, x0, x1)  # out is x0: x0 (x0 + x1) + x1 x0
    assert ints(ring, x0) == [(p * (p + q) + q * p) % m for p, q in zip(x, y, strict=True)]


@RINGS
def test_ring_add_sub_mul_in_place(ring: Ring) -> None:
    a = ring.from_ints([2**64 - 1, -1, 7])
    ring.add(a, ring.from_ints([1, 1, 1]), out=a)
    assert ints(ring, a) == [2**64 % ring.modulus, 0, 8]
    ring.mul(a, a, out=a)
    assert ints(ring, a) == [2**128 % ring.modulus, 0, 64]
    ring.sub(a, ring.from_ints([1, 1, 1]), out=a)
    assert ring.to_ints(a) == [-1, -1, 63]


def test_ring128_refuses_a_read_only_output() -> None:
    a = RING128.zeros(3)
    out = RING128.zeros(3)
    out.flags.writeable = False
    for op in (RING128.add, RING128.sub, RING128.mul):
        with pytest.raises(TypeError, match="read-write"):
            op(a, a, out=out)


@RINGS
def test_ring_methods_refuse_an_output_of_the_wrong_size(ring: Ring) -> None:
    a = ring.zeros(3)
    for op in (ring.add, ring.sub, ring.mul):
        with pytest.raises(ValueError):
            op(a, a, out=ring.zeros(4))


# --- numpy refuses Z_2^128 arithmetic -------------------------------------------------------------


NUMPY_OPERATIONS: dict[str, Callable[[np.ndarray], object]] = {
    "a + a": lambda a: a + a,
    "a - a": lambda a: a - a,
    "a * a": lambda a: a * a,
    "a + 1": lambda a: a + 1,
    "2 * a": lambda a: 2 * a,
    "-a": lambda a: -a,
    "+a": lambda a: +a,
    "abs(a)": abs,
    "a >> 1": lambda a: a >> 1,
    "a << 1": lambda a: a << 1,
    "a // 2": lambda a: a // 2,
    "a ^ a": lambda a: a ^ a,
    "a @ a": lambda a: a.reshape(2, 2) @ a.reshape(2, 2),
    "np.add": lambda a: np.add(a, a),
    "np.multiply": lambda a: np.multiply(a, 3),
    "a.sum()": lambda a: a.sum(),
    "np.cumsum": np.cumsum,
    "a < a": lambda a: a < a,
    "astype(uint64)": lambda a: a.astype(np.uint64),
    "in-place +=": lambda a: operator.iadd(a, a),
}


@pytest.mark.parametrize("expression", list(NUMPY_OPERATIONS))
def test_numpy_refuses_arithmetic_on_u128_arrays(expression: str) -> None:
    a = RING128.from_ints([1, 2, 3, 2**64 - 1])
    assert a.dtype == U128
    before = a.tobytes()
    with pytest.raises(TypeError):
        NUMPY_OPERATIONS[expression](a)
    assert a.tobytes() == before
