"""The rings Z_2^64 and Z_2^128 on whole numpy arrays, and their wire codec.

A :class:`Ring` names one of the two rings a cluster computes in (the
``ring`` of the cluster file) and does all arithmetic on arrays of its
elements:

* **Z_2^64**: numpy ``uint64`` arrays; numpy's unsigned arithmetic wraps
  modulo 2^64, so ``+ - *`` of such arrays are ring operations.
* **Z_2^128**: arrays of the structured dtype :data:`U128` (two little-endian
  64-bit words per element, the low word first, which is the memory layout
  of a native little-endian 128-bit integer). numpy has no 128-bit integers;
  the arithmetic runs in the compiled kernel ``mpc_core._ringkernel``, and
  numpy's own operators *refuse* this dtype (``UFuncTypeError``), so no code
  can silently add two elements limb by limb.

Fused kernels (a product's cross terms, matrix products, Gram blocks) run
compiled for both rings, with the GIL released. On the wire an element is
its little-endian encoding: 8 bytes in Z_2^64, 16 bytes in Z_2^128 (the
128-bit integer, least significant byte first; equivalently its low 64-bit
word then its high word, each little-endian). A vector is its elements'
encodings back to back. Between servers travel plain 64-bit words
(:data:`Words`): 2n words for n elements of Z_2^128.

Public constants are Python ints of any sign, reduced here; :meth:`Ring.ashr`
shifts the signed value (numpy's ``>>`` is logical). This module does no I/O.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mpc_core.errors import InvalidArgumentError, ShareFormatError
from mpc_core.words import WIRE_DTYPE, WORD_BYTES, Words, element_count, words_bytes, words_view

try:
    import mpc_core._ringkernel as _kernel
except ImportError as exc:  # pragma: no cover - only without a compiled build
    raise ImportError(
        "mpc_core._ringkernel is not built; reinstall the package with a C compiler available "
        "(pip install .), which compiles it"
    ) from exc

U128 = np.dtype([("lo", "<u8"), ("hi", "<u8")])
"""One Z_2^128 element: low and high 64-bit words, little-endian."""

RingArray = npt.NDArray[Any]
"""An array of ring elements: dtype ``uint64`` (Z_2^64) or :data:`U128` (Z_2^128)."""

_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class Ring:
    """The ring Z_2^bits for ``bits`` in {64, 128}; see the module docstring."""

    bits: int

    def __post_init__(self) -> None:
        """Only the two rings of the product exist."""
        if self.bits not in (64, 128):
            raise InvalidArgumentError(f"the ring must be Z_2^64 or Z_2^128, not Z_2^{self.bits}")
        if self.bits == 128 and sys.byteorder != "little":
            raise InvalidArgumentError("Z_2^128 needs a little-endian host")

    @property
    def name(self) -> str:
        """``Z_2^64`` or ``Z_2^128``."""
        return f"Z_2^{self.bits}"

    @property
    def dtype(self) -> np.dtype[Any]:
        """The numpy dtype of one element."""
        return np.dtype(np.uint64) if self.bits == 64 else U128

    @property
    def element_bytes(self) -> int:
        """Bytes of one element on the wire and in memory: 8 or 16."""
        return self.bits // 8

    @property
    def words_per_element(self) -> int:
        """64-bit words per element: 1 or 2."""
        return self.bits // 64

    @property
    def modulus(self) -> int:
        """``2^bits``."""
        return 1 << self.bits

    @property
    def max_signed(self) -> int:
        """The largest value of the signed view, ``2^(bits-1) - 1``."""
        return (1 << (self.bits - 1)) - 1

    @property
    def _suffix(self) -> str:
        return "u64" if self.bits == 64 else "u128"

    def _fn(self, name: str) -> Any:
        return getattr(_kernel, f"{name}_{self._suffix}")

    def __repr__(self) -> str:
        """``Ring(Z_2^128)``."""
        return f"Ring({self.name})"

    # ------------------------------------------------------------------ making arrays

    def empty(self, shape: int | tuple[int, ...]) -> RingArray:
        """An uninitialised array of ``shape``."""
        return np.empty(shape, dtype=self.dtype)

    def zeros(self, shape: int | tuple[int, ...]) -> RingArray:
        """An array of zeros of ``shape``."""
        return np.zeros(shape, dtype=self.dtype)

    def is_ring_array(self, values: object) -> bool:
        """Whether ``values`` is an array of this ring's elements."""
        return isinstance(values, np.ndarray) and values.dtype == self.dtype

    def require(self, values: object, what: str = "value") -> RingArray:
        """``values`` if it is an array of this ring's elements, else an error."""
        if not self.is_ring_array(values):
            found = getattr(values, "dtype", type(values).__name__)
            raise InvalidArgumentError(f"{what} must hold elements of {self.name}, not {found}")
        array: RingArray = values  # type: ignore[assignment]
        return array

    def element_bytes_of(self, value: int) -> bytes:
        """The little-endian bytes of ``value mod 2^bits`` (for public constants)."""
        return (value % self.modulus).to_bytes(self.element_bytes, "little")

    def from_ints(self, values: int | list[int] | tuple[int, ...]) -> RingArray:
        """Python ints (any sign or size), reduced modulo ``2^bits``; a list gives a vector."""
        items = [values] if isinstance(values, int) else list(values)
        data = b"".join(self.element_bytes_of(int(v)) for v in items)
        array = np.frombuffer(data, dtype=self.dtype).copy()
        return array.reshape(()) if isinstance(values, int) else array

    def from_signed64(self, values: npt.NDArray[np.int64]) -> RingArray:
        """int64 values as ring elements (sign-extended in Z_2^128)."""
        signed = np.ascontiguousarray(values, dtype=np.int64)
        if self.bits == 64:
            return signed.view(np.uint64)
        out = np.empty(signed.shape, dtype=U128)
        out["lo"] = signed.view(np.uint64)
        out["hi"] = (signed >> np.int64(63)).view(np.uint64)
        return out

    def to_ints(self, values: RingArray, *, signed: bool = True) -> list[int]:
        """Elements as Python ints, in the signed view by default (small arrays: tests, checks)."""
        flat = np.ascontiguousarray(self.require(values)).reshape(-1)
        raw = flat.tobytes()
        size = self.element_bytes
        ints = [int.from_bytes(raw[i : i + size], "little") for i in range(0, len(raw), size)]
        if signed:
            ints = [v - self.modulus if v > self.max_signed else v for v in ints]
        return ints

    def to_float(self, values: RingArray) -> npt.NDArray[np.float64]:
        """The signed value of every element as float64, correctly rounded (same shape)."""
        array = self._contiguous(values)
        out = np.empty(array.shape, dtype=np.float64)
        self._fn("to_double")(out, array)
        return out

    def sum_to_float(
        self, a: RingArray, b: RingArray, c: RingArray, out: npt.NDArray[np.float64] | None = None
    ) -> npt.NDArray[np.float64]:
        """``a + b + c`` in the ring as correctly rounded float64, in one pass (into ``out``: its size)."""
        parts = [self._contiguous(v) for v in (a, b, c)]
        if len({p.shape for p in parts}) != 1 or (out is not None and out.dtype != np.float64):
            raise InvalidArgumentError("the three components differ in shape (or out is not float64)")
        out = np.empty(parts[0].shape, dtype=np.float64) if out is None else out
        self._fn("sum3_to_double")(out, *parts)  # checks the size of out
        return out

    def assign(self, target: RingArray, start: int, values: RingArray) -> None:
        """``target[start : start + len(values)] = values`` as a word copy (10x numpy's for U128)."""
        words, width = self.words(target), self.words_per_element
        if not np.shares_memory(words, target):
            raise InvalidArgumentError("assign needs a contiguous target")
        source = self.words(values)
        words[start * width : start * width + source.size] = source

    # ------------------------------------------------------------------ elementwise arithmetic

    def _binary(self, name: str, a: RingArray, b: RingArray, out: RingArray | None) -> RingArray:
        a, b = self._contiguous(a), self._contiguous(b)
        if a.shape != b.shape:
            raise InvalidArgumentError(f"ring operands differ in shape: {a.shape} vs {b.shape}")
        target = self.empty(a.shape) if out is None else out
        self._fn(name)(target, a, b)
        return target

    def _contiguous(self, values: RingArray) -> RingArray:
        array = self.require(values)
        return np.ascontiguousarray(array).reshape(array.shape)  # ascontiguousarray makes 0-d arrays 1-d

    def _numpy(self, ufunc: Any, a: RingArray, b: RingArray, out: RingArray | None) -> RingArray:
        a, b = self.require(a), self.require(b)
        if a.shape != b.shape:
            raise InvalidArgumentError(f"ring operands differ in shape: {a.shape} vs {b.shape}")
        result: RingArray = np.asarray(ufunc(a, b, out=out))  # an array, not a numpy scalar, for 0-d
        return result

    def add(self, a: RingArray, b: RingArray, out: RingArray | None = None) -> RingArray:
        """``a + b`` elementwise, equal shapes (``out`` may be ``a`` or ``b``: in place)."""
        if self.bits == 64:
            return self._numpy(np.add, a, b, out)
        return self._binary("add", a, b, out)

    def sub(self, a: RingArray, b: RingArray, out: RingArray | None = None) -> RingArray:
        """``a - b`` elementwise, equal shapes."""
        if self.bits == 64:
            return self._numpy(np.subtract, a, b, out)
        return self._binary("sub", a, b, out)

    def mul(self, a: RingArray, b: RingArray, out: RingArray | None = None) -> RingArray:
        """``a * b`` elementwise, equal shapes."""
        if self.bits == 64:
            return self._numpy(np.multiply, a, b, out)
        return self._binary("mul", a, b, out)

    def neg(self, a: RingArray) -> RingArray:
        """``-a`` elementwise."""
        if self.bits == 64:
            return np.asarray(np.negative(self.require(a)))
        a = self._contiguous(a)
        out = self.empty(a.shape)
        self._fn("neg")(out, a)
        return out

    def add_public(self, a: RingArray, constant: int) -> RingArray:
        """``a + c`` for a public integer ``c`` (reduced modulo ``2^bits``)."""
        return self._scalar("add_scalar", a, constant)

    def mul_public(self, a: RingArray, constant: int) -> RingArray:
        """``a * c`` for a public integer ``c`` (reduced modulo ``2^bits``)."""
        return self._scalar("mul_scalar", a, constant)

    def _scalar(self, name: str, a: RingArray, constant: int) -> RingArray:
        a = self._contiguous(a)
        out = self.empty(a.shape)
        self._fn(name)(out, a, self.element_bytes_of(constant))
        return out

    def _shift(self, name: str, a: RingArray, bits: int) -> RingArray:
        a = self._contiguous(a)
        out = self.empty(a.shape)
        self._fn(name)(out, a, bits)
        return out

    def ashr(self, a: RingArray, bits: int) -> RingArray:
        """Arithmetic right shift by ``bits`` (floor division of the signed value by 2^bits)."""
        return self._shift("ashr", a, bits)

    def lshr(self, a: RingArray, bits: int) -> RingArray:
        """Logical right shift by ``bits``."""
        return self._shift("lshr", a, bits)

    def shl(self, a: RingArray, bits: int) -> RingArray:
        """Left shift by ``bits`` (multiplication by 2^bits)."""
        return self._shift("shl", a, bits)

    # ------------------------------------------------------------------ fused kernels

    def mul_terms(self, x0: RingArray, x1: RingArray, y0: RingArray, y1: RingArray) -> RingArray:
        """``x0 (y0 + y1) + x1 y0`` elementwise: party i's term of a replicated product."""
        parts = [self._contiguous(v) for v in (x0, x1, y0, y1)]
        if len({p.shape for p in parts}) != 1:
            raise InvalidArgumentError("product operands differ in shape")
        out = self.empty(parts[0].shape)
        self._fn("mul_terms")(out, *parts)
        return out

    def matmul_terms(
        self, a0: RingArray, a1: RingArray | None, b0: RingArray, b1: RingArray | None
    ) -> RingArray:
        """``A0 (B0 + B1) + A1 B0`` for A (m x k) and B (k,) or (k x n); ``A0 B0`` without A1, B1."""
        m, k = _matrix(a0, "A")
        vector = b0.ndim == 1
        n = 1 if vector else _matrix(b0, "B")[1]
        if b0.shape[0] != k:
            raise InvalidArgumentError(f"cannot multiply a {m} x {k} matrix by shape {b0.shape}")
        for other, like in ((a1, a0), (b1, b0)):
            if other is not None and other.shape != like.shape:
                raise InvalidArgumentError("the two components of a matrix differ in shape")
        out = self.empty((m,) if vector else (m, n))
        self._fn("matmul_terms")(out, *self._pair(a0, a1), *self._pair(b0, b1), m, k, n)
        return out

    def matmul(self, a: RingArray, b: RingArray) -> RingArray:
        """``A B`` for A (m x k) and B (k,) or (k x n)."""
        return self.matmul_terms(a, None, b, None)

    def cross_terms(
        self, x0: RingArray, x1: RingArray | None, y0: RingArray, y1: RingArray | None
    ) -> RingArray:
        """``X0^T (Y0 + Y1) + X1^T Y0`` for X (rows x d), Y (rows x e): a (d x e) Gram block."""
        rows, d = _matrix(x0, "X")
        rows_y, e = _matrix(y0, "Y")
        if rows != rows_y:
            raise InvalidArgumentError(f"Gram blocks need equal row counts, got {rows} and {rows_y}")
        for other, like in ((x1, x0), (y1, y0)):
            if other is not None and other.shape != like.shape:
                raise InvalidArgumentError("the two components of a matrix differ in shape")
        out = self.empty((d, e))
        self._fn("cross_terms")(out, *self._pair(x0, x1), *self._pair(y0, y1), rows, d, e)
        return out

    def _pair(self, first: RingArray, second: RingArray | None) -> tuple[RingArray, RingArray | None]:
        return self._contiguous(first), None if second is None else self._contiguous(second)

    # ------------------------------------------------------------------ words and wire

    def words(self, values: RingArray) -> Words:
        """The elements as a flat vector of 64-bit words (a view when contiguous)."""
        array = self._contiguous(values).reshape(-1)
        words: Words = array.view(np.uint64)
        return words

    def from_words(self, words: Words, expected: int | None = None) -> RingArray:
        """Elements from 64-bit words (a view when possible).

        Raises:
            ShareFormatError: the word count is not a whole number of
                elements, or differs from ``expected`` elements.
        """
        count, rest = divmod(int(words.size), self.words_per_element)
        if rest:
            raise ShareFormatError(f"{words.size} words are not a whole number of {self.name} elements")
        if expected is not None and count != expected:
            raise ShareFormatError(f"expected {expected} elements of {self.name}, got {count}")
        flat = np.ascontiguousarray(words, dtype=np.uint64).reshape(-1)
        return flat if self.bits == 64 else flat.view(U128)

    def wire_bytes(self, values: RingArray) -> memoryview:
        """The little-endian bytes of the elements (a view on little-endian hosts)."""
        return np.ascontiguousarray(self.words(values), dtype=WIRE_DTYPE).view(np.uint8).data

    def to_wire(self, values: RingArray) -> bytes:
        """The little-endian bytes of the elements, as ``bytes``."""
        return bytes(self.wire_bytes(values))

    def wire_view(self, data: bytes | bytearray | memoryview, expected: int | None = None) -> RingArray:
        """Elements from little-endian bytes without copying (read-only).

        Raises:
            ShareFormatError: not a whole number of elements, or not ``expected`` of them.
        """
        size = len(data)
        if size % self.element_bytes:
            raise ShareFormatError(
                f"{size} bytes are not a whole number of {self.element_bytes}-byte elements of {self.name}"
            )
        return self.from_words(words_view(data), expected)

    def from_wire(self, data: bytes | bytearray | memoryview, expected: int | None = None) -> RingArray:
        """Elements from little-endian bytes, as a new writable array."""
        return self.wire_view(data, expected).copy()


def _matrix(values: RingArray, what: str) -> tuple[int, int]:
    if values.ndim != 2:
        raise InvalidArgumentError(f"{what} must be a matrix, not shape {values.shape}")
    return int(values.shape[0]), int(values.shape[1])


RING64 = Ring(64)
RING128 = Ring(128)
RINGS = {64: RING64, 128: RING128}


def ring_for_bits(bits: int) -> Ring:
    """The ring Z_2^bits (64 or 128)."""
    ring = RINGS.get(bits)
    if ring is None:
        raise InvalidArgumentError(f"the ring must be Z_2^64 or Z_2^128, not Z_2^{bits}")
    return ring


def ring_of(values: RingArray) -> Ring:
    """The ring whose elements ``values`` holds (by dtype)."""
    if isinstance(values, np.ndarray):
        if values.dtype == np.uint64:
            return RING64
        if values.dtype == U128:
            return RING128
    raise InvalidArgumentError(f"not an array of ring elements: {getattr(values, 'dtype', type(values))}")


__all__ = [  # noqa: RUF022 - grouped: this module's names, then the word helpers it re-exports
    "RING64", "RING128", "RINGS", "U128", "Ring", "RingArray", "ring_for_bits", "ring_of",
    "WORD_BYTES", "Words", "element_count", "words_bytes", "words_view",
]  # fmt: skip
