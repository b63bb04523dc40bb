"""The kernel choice for Z_2^128, measured: compiled ``unsigned __int128`` loops vs numpy limbs.

numpy has no 128-bit integers. The obvious alternative to a compiled kernel
is two 64-bit limbs per element, with the 64 x 64 -> 128-bit product of the
low limbs built from 32-bit halves. This module times, on whole arrays of
10^6 elements, a server's local work for one product (``x0 (y0 + y1) +
x1 y0``) four ways: numpy in Z_2^64 (the old code path), the compiled kernel
in Z_2^64 and in Z_2^128 (``mpc_core._ringkernel``, what the servers use),
and numpy limbs in Z_2^128 (the naive alternative, checked to give the same
result); and the terms of a 10^6 x 10 matrix-vector product the first three
ways. The data is uniformly random words from the OS CSPRNG.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from mpc_core.ring import RING64, RING128, RingArray

Words = npt.NDArray[np.uint64]
_LOW = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(32)


def _words(n: int) -> Words:
    return np.frombuffer(os.urandom(8 * n), dtype=np.uint64).copy()


def _best(fn: Callable[[], object], reps: int = 5) -> float:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def _mul_limbs(a: tuple[Words, Words], b: tuple[Words, Words]) -> tuple[Words, Words]:
    """(a * b) mod 2^128 on (low, high) limbs, the low product from 32-bit halves."""
    (a_lo, a_hi), (b_lo, b_hi) = a, b
    a0, a1, b0, b1 = a_lo & _LOW, a_lo >> _SHIFT, b_lo & _LOW, b_lo >> _SHIFT
    low, cross_1, cross_2, high = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    middle = (low >> _SHIFT) + (cross_1 & _LOW) + (cross_2 & _LOW)
    result_lo = (low & _LOW) | (middle << _SHIFT)
    result_hi = high + (cross_1 >> _SHIFT) + (cross_2 >> _SHIFT) + (middle >> _SHIFT)
    return result_lo, result_hi + a_lo * b_hi + a_hi * b_lo


def _add_limbs(a: tuple[Words, Words], b: tuple[Words, Words]) -> tuple[Words, Words]:
    low = a[0] + b[0]
    return low, a[1] + b[1] + (low < a[0]).astype(np.uint64)


def _limbs(values: RingArray) -> tuple[Words, Words]:
    return np.ascontiguousarray(values["lo"]), np.ascontiguousarray(values["hi"])


def measure(n: int = 1_000_000, rows: int = 1_000_000, cols: int = 10) -> list[tuple[str, str, float]]:
    """(operation, implementation, best seconds of 5) for each way; checks the limbs agree."""
    x0, x1, y0, y1 = (_words(n) for _ in range(4))
    z0, z1, w0, w1 = (RING128.from_words(_words(2 * n)) for _ in range(4))
    limbs = [_limbs(v) for v in (z0, z1, w0, w1)]

    def numpy_terms() -> Words:
        terms: Words = (y0 + y1) * x0 + x1 * y0
        return terms

    def limb_terms() -> tuple[Words, Words]:
        a0, a1, b0, b1 = limbs
        return _add_limbs(_mul_limbs(a0, _add_limbs(b0, b1)), _mul_limbs(a1, b0))

    compiled = RING128.mul_terms(z0, z1, w0, w1)
    if not all(np.array_equal(c, d) for c, d in zip(_limbs(compiled), limb_terms(), strict=True)):
        raise AssertionError("numpy limbs and the compiled kernel disagree")
    m0, m1 = _words(rows * cols).reshape(rows, cols), _words(rows * cols).reshape(rows, cols)
    v0, v1 = _words(cols), _words(cols)
    q0, q1 = (RING128.from_words(_words(2 * rows * cols)).reshape(rows, cols) for _ in range(2))
    u0, u1 = RING128.from_words(_words(2 * cols)), RING128.from_words(_words(2 * cols))
    terms = f"product terms, n = {n:,}"
    matvec = f"matrix-vector terms, {rows:,} x {cols}"
    return [
        (terms, "numpy, Z_2^64", _best(numpy_terms)),
        (terms, "compiled, Z_2^64", _best(lambda: RING64.mul_terms(x0, x1, y0, y1))),
        (terms, "compiled, Z_2^128", _best(lambda: RING128.mul_terms(z0, z1, w0, w1))),
        (terms, "numpy limbs, Z_2^128", _best(limb_terms, 3)),
        (matvec, "numpy, Z_2^64", _best(lambda: m0 @ (v0 + v1) + m1 @ v0)),
        (matvec, "compiled, Z_2^64", _best(lambda: RING64.matmul_terms(m0, m1, v0, v1))),
        (matvec, "compiled, Z_2^128", _best(lambda: RING128.matmul_terms(q0, q1, u0, u1))),
    ]


def table(results: list[tuple[str, str, float]]) -> str:
    """Markdown table with times relative to numpy in Z_2^64 for each operation."""
    baseline = {op: s for op, how, s in results if how == "numpy, Z_2^64"}
    lines = ["| local work of one server | implementation | ms | vs numpy Z_2^64 |", "|---|---|---|---|"]
    lines += [f"| {op} | {how} | {s * 1e3:.2f} | {s / baseline[op]:.1f}x |" for op, how, s in results]
    return "\n".join(lines)
