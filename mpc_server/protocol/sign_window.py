"""Signs of bounded values in Z_2^128 read by a 64-bit adder: half the adder, one round less.

Source: the bit extraction of Mohassel-Rindal, ABY3 (CCS 2018) §5.3, run on a
64-bit window of the addends instead of all ``k`` bits; used by
``protocol.compare``.

**The 64-bit window** (Z_2^128, ``magnitude_bits=m`` on ``greater_than_public``:
the caller's public bound ``|x| < 2^m``, ``m <= 126``). Every bit of ``x``
above ``m - 1`` is its sign, so the sign depends on the low bits of the
shares only: with
``s = max(0, m - 62)`` each addend ``a = x_0 + x_1`` and ``b = x_2`` is
replaced by its bits ``[s, s + 64)`` (local: ``(a >> s) mod 2^64``) and a
64-bit adder runs on them. Their sum is ``floor(x / 2^s) - e mod 2^64`` with
``e`` in {0, 1} (the dropped low parts' carry), a signed 64-bit value within
``2^62 + 1`` of 0, so its top bit is the sign of ``x`` except when
``0 <= x < 2^s`` and ``e = 1``, which reads as negative. Exact for
``m <= 62`` (``s = 0``, ``e = 0``). Callers use it only where that one-sided
band is below their stated error (``programs.decide``). Same protocol on
fewer bits, so the same security. Rounds ``L + 1`` = 8; bits per element
``2.5*64 - 4 + 128`` / ``2*64 - 3 + 128`` / same = 284 / 253 / 253 (the
injection stays in Z_2^128), against 444 / 381 / 381 for the full adder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpc_core.errors import InvalidArgumentError
from mpc_core.ring import Ring, Words

WINDOW_BITS = 64
"""Width of the windowed adder for bounded signs in Z_2^128."""


@dataclass(frozen=True)
class Adder:
    """The adder a sign is read with: ``width`` bits of each addend, from bit ``shift`` on."""

    width: int
    shift: int = 0

    @property
    def levels(self) -> int:
        """``log2 width``: the carry tree's levels."""
        return self.width.bit_length() - 1


def window_shift(ring_bits: int, magnitude_bits: int) -> int:
    """The low bits the 64-bit window drops for ``|x| < 2^m`` in Z_2^k (0: the sign is exact)."""
    return 0 if ring_bits <= WINDOW_BITS else max(0, magnitude_bits - (WINDOW_BITS - 2))


def adder_for(ring: Ring, magnitude_bits: int | None) -> Adder:
    """The full ``k``-bit adder, or in Z_2^128 with ``|x| < 2^m`` the 64-bit window.

    Raises:
        InvalidArgumentError: a bound the window cannot read (``m >= k - 1``).
    """
    k = ring.bits
    if magnitude_bits is None or k <= WINDOW_BITS:
        return Adder(k)
    if magnitude_bits < 1 or magnitude_bits >= k - 1:
        raise InvalidArgumentError(f"a sign in Z_2^{k} needs a bound below 2^{k - 2}, not 2^{magnitude_bits}")
    return Adder(WINDOW_BITS, window_shift(k, magnitude_bits))


def window_words(words: Words, per_element: int, shift: int) -> Words:
    """``(v >> shift) mod 2^64`` of every element given as ``per_element`` = 2 words (low first)."""
    limbs = words.reshape(-1, per_element)
    low, high = limbs[:, 0], limbs[:, 1]
    if shift == 0:
        return np.ascontiguousarray(low)
    if shift == WINDOW_BITS:
        return np.ascontiguousarray(high)
    window: Words = (low >> np.uint64(shift)) | (high << np.uint64(WINDOW_BITS - shift))
    return window
