"""The ring Z_2^64 as numpy ``uint64`` arrays, and its little-endian wire codec.

numpy's unsigned 64-bit arithmetic wraps modulo 2^64, so addition,
subtraction and multiplication of ``uint64`` arrays *are* ring operations.
Two numpy pitfalls are handled here once (see reference/protocols.md §1):

* ``>>`` on ``uint64`` is a logical shift; :func:`arithmetic_shift` shifts the
  signed view instead.
* A negative Python int mixed into a ``uint64`` array raises ``OverflowError``
  (NEP 50), so public constants go through :func:`ring_constant`.

On the wire a ring vector is the little-endian encoding of its words, 8 bytes
per element. This module does no I/O and imports only numpy.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from mpc_core.errors import ShareFormatError

RING_BITS = 64
RING_MODULUS = 1 << RING_BITS
WORD_BYTES = 8
WIRE_DTYPE = np.dtype("<u8")

RingArray = npt.NDArray[np.uint64]
"""An array of ring elements (any shape, dtype ``uint64``)."""


def ring_constant(value: int) -> np.uint64:
    """Reduce a Python int (possibly negative or huge) into one ring element."""
    return np.uint64(value % RING_MODULUS)


def as_ring(values: npt.ArrayLike) -> RingArray:
    """View or convert integer values as ring elements (two's complement)."""
    array = np.asarray(values)
    if array.dtype == np.uint64:
        return array
    if array.dtype.kind not in "iu":
        raise TypeError(f"ring elements must be integers, not {array.dtype}")
    return array.astype(np.int64).view(np.uint64)


def to_signed(values: RingArray) -> npt.NDArray[np.int64]:
    """Interpret ring elements as signed 64-bit integers (no copy)."""
    return values.view(np.int64)


def arithmetic_shift(values: RingArray, bits: int) -> RingArray:
    """Shift right by ``bits``, keeping the sign of the two's-complement view."""
    return (values.view(np.int64) >> np.int64(bits)).view(np.uint64)


def to_wire(values: RingArray) -> bytes:
    """Encode ring elements as little-endian bytes (8 per element)."""
    flat = np.ascontiguousarray(values, dtype=WIRE_DTYPE).reshape(-1)
    return flat.tobytes()


def wire_bytes(values: RingArray) -> memoryview:
    """The little-endian bytes of ring elements as a flat byte view.

    No copy for a contiguous array on a little-endian host (the view shares
    the array's memory: do not modify the array while the view is in use).
    """
    flat = np.ascontiguousarray(values, dtype=WIRE_DTYPE).reshape(-1)
    return flat.view(np.uint8).data


def wire_view(data: bytes | bytearray | memoryview, expected: int | None = None) -> RingArray:
    """View little-endian bytes as ring elements without copying (read-only).

    Raises:
        ShareFormatError: the byte length is not a multiple of 8, or differs
            from ``expected`` elements.
    """
    size = len(data)
    if size % WORD_BYTES:
        raise ShareFormatError(f"ring vector of {size} bytes is not a whole number of 8-byte words")
    count = size // WORD_BYTES
    if expected is not None and count != expected:
        raise ShareFormatError(f"expected {expected} ring elements, got {count}")
    # No copy on little-endian hosts; a byte-swapping copy on big-endian ones.
    view: RingArray = np.frombuffer(data, dtype=WIRE_DTYPE).astype(np.uint64, copy=False)
    return view


def from_wire(data: bytes | bytearray | memoryview, expected: int | None = None) -> RingArray:
    """Decode little-endian bytes into a new, writable ``uint64`` vector."""
    decoded: RingArray = wire_view(data, expected).astype(np.uint64)
    return decoded


def element_count(shape: tuple[int, ...]) -> int:
    """Number of elements in an array of ``shape`` (1 for a scalar)."""
    count = 1
    for dim in shape:
        count *= dim
    return count
