"""Flat vectors of 64-bit words: what the transport between servers moves.

Ring vectors travel between servers as words (``mpc_core.ring.Ring.words``):
one word per element of Z_2^64, two (low word first) per element of
Z_2^128. On the wire a word is 8 bytes, little-endian. This module does no
I/O and imports only numpy and the core errors.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from mpc_core.errors import ShareFormatError

WORD_BYTES = 8
WIRE_DTYPE = np.dtype("<u8")

Words = npt.NDArray[np.uint64]
"""A flat vector of 64-bit words, as the transport between servers moves them."""


def words_view(data: bytes | bytearray | memoryview, expected: int | None = None) -> Words:
    """64-bit words from little-endian bytes without copying (read-only).

    Raises:
        ShareFormatError: not a multiple of 8 bytes, or not ``expected`` words.
    """
    size = len(data)
    if size % WORD_BYTES:
        raise ShareFormatError(f"{size} bytes are not a whole number of 8-byte words")
    count = size // WORD_BYTES
    if expected is not None and count != expected:
        raise ShareFormatError(f"expected {expected} words, got {count}")
    # No copy on little-endian hosts; a byte-swapping copy on big-endian ones.
    view: Words = np.frombuffer(data, dtype=WIRE_DTYPE).astype(np.uint64, copy=False)
    view.flags.writeable = False  # also over a bytearray: callers copy before writing
    return view


def words_bytes(words: Words) -> memoryview:
    """The little-endian bytes of 64-bit words (a view on little-endian hosts)."""
    flat = np.ascontiguousarray(words, dtype=WIRE_DTYPE).reshape(-1)
    return flat.view(np.uint8).data


def element_count(shape: tuple[int, ...]) -> int:
    """Number of elements in an array of ``shape`` (1 for a scalar)."""
    count = 1
    for dim in shape:
        count *= dim
    return count
