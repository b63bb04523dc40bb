"""Fixed-point encoding of real numbers into Z_2^64 or Z_2^128.

``encode(v) = rint(v * 2^f) mod 2^k`` in two's complement (``rint`` rounds
halves to even) and ``decode(u) = signed(u) / 2^f``, for a ring of ``k``
bits and ``f`` fractional bits. Defaults: f = 32 in Z_2^128 (the default
ring), f = 16 in Z_2^64 (:data:`DEFAULT_FRACTIONAL_BITS`).

Valid range. An encoded value must fit the signed view: ``|rint(v * 2^f)|
< 2^(k-1)``, so ``|v| < 2^(k-1-f)`` (about 4e28 in Z_2^128 with f = 32,
1.4e14 in Z_2^64 with f = 16). Anything else, and NaN or an infinity, raises
:class:`~mpc_core.errors.EncodingError` naming the first bad element.

Magnitude bound. :meth:`FixedPoint.encode_bounded` also returns the
*magnitude bits* ``m`` of what it encoded: the least ``m >= 0`` with
``|rint(v * 2^f)| <= 2^m`` for every element. Datasets carry this public bound
so that programs can prove, before computing, that their outputs fit the
ring (``mpc_core.bounds``). ``v * 2^f`` is exact in float64 (a power of
two), so the only rounding is ``rint``; conversion to 128-bit integers is
exact too (done on exactly representable parts).

Error bound. Encoding rounds to the nearest multiple of ``2^-f``, so each
input is off by at most ``2^-(f+1)``. A linear prediction
``y = sum_k w_k x_k + c`` decoded at scale ``2^(2f)`` is then within
``2^-(f+1) * (sum_k |w_k| + sum_k |x_k| + 1) + d * 2^-(2f+2)`` of the
real-valued result: about 1.2e-10 per unit of ``sum |w| + sum |x|`` for
f = 32, 7.6e-6 for f = 16.

This module does no I/O and imports only numpy and the core.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from mpc_core.errors import EncodingError
from mpc_core.ring import RING64, RING128, U128, Ring, RingArray

DEFAULT_FRACTIONAL_BITS = 16
"""The default scale of Z_2^64."""
DEFAULT_FRACTIONAL_BITS_128 = 32
"""The default scale of Z_2^128."""


def default_fractional_bits(ring: Ring) -> int:
    """The scale a cluster uses in ``ring`` unless its cluster file says otherwise."""
    return DEFAULT_FRACTIONAL_BITS if ring.bits == 64 else DEFAULT_FRACTIONAL_BITS_128


def max_fractional_bits(ring: Ring) -> int:
    """The largest scale of ``ring``: one integer bit and the sign remain."""
    return ring.bits - 2


def magnitude_bits_of(largest: int) -> int:
    """The least ``m >= 0`` with ``largest <= 2^m`` (``largest`` a non-negative integer)."""
    return 0 if largest <= 1 else (largest - 1).bit_length()


def _locate(mask: npt.NDArray[np.bool_]) -> str:
    """Describe the first True position of ``mask`` for an error message."""
    if mask.ndim == 0:
        return "(the scalar value)"
    index = tuple(int(i) for i in np.argwhere(mask)[0])
    count = int(mask.sum())
    where = index[0] if len(index) == 1 else index
    return f"at index {where}" + (f" (and {count - 1} more)" if count > 1 else "")


def _to_u128(scaled: npt.NDArray[np.float64]) -> RingArray:
    """Integer-valued floats with |x| < 2^127 as Z_2^128 elements, exactly.

    Below 2^63 in magnitude a value is an int64, sign-extended. Larger
    values are multiples of 2^11 at least (53-bit mantissas), so both
    ``high = floor(x / 2^64)`` and ``low = x - high * 2^64`` (in [0, 2^64),
    a multiple of the same power of two) are exact in float64.
    """
    flat = scaled.reshape(-1)
    small = np.abs(flat) < 2.0**63
    signed = np.where(small, flat, 0.0).astype(np.int64)
    out = np.empty(flat.shape, dtype=U128)
    out["lo"] = signed.view(np.uint64)
    out["hi"] = (signed >> np.int64(63)).view(np.uint64)
    if not small.all():
        large = flat[~small]
        high = np.floor(large / 2.0**64)
        low = large - high * 2.0**64
        low_top = np.floor(low / 2.0**32)
        low_bottom = low - low_top * 2.0**32
        out["lo"][~small] = (low_top.astype(np.uint64) << np.uint64(32)) | low_bottom.astype(np.uint64)
        out["hi"][~small] = high.astype(np.int64).view(np.uint64)
    return out.reshape(scaled.shape)


@dataclass(frozen=True)
class FixedPoint:
    """A fixed-point format: ``fractional_bits`` bits after the point in ``ring``."""

    fractional_bits: int = DEFAULT_FRACTIONAL_BITS
    ring: Ring = field(default=RING64)

    def __post_init__(self) -> None:
        """Reject scales that leave no room for an integer part."""
        if not 0 <= self.fractional_bits <= max_fractional_bits(self.ring):
            raise EncodingError(
                f"fractional_bits must be within 0..{max_fractional_bits(self.ring)} in {self.ring.name}, "
                f"got {self.fractional_bits}"
            )

    @classmethod
    def default(cls, ring: Ring = RING128) -> FixedPoint:
        """The default format of ``ring``."""
        return cls(default_fractional_bits(ring), ring)

    @property
    def scale(self) -> float:
        """The factor ``2^f`` between real values and encoded integers."""
        return 2.0**self.fractional_bits

    @property
    def max_magnitude(self) -> float:
        """Inputs must satisfy ``|v| < max_magnitude`` (``2^(k - 1 - f)``)."""
        return 2.0 ** (self.ring.bits - 1 - self.fractional_bits)

    def encode(self, values: npt.ArrayLike) -> RingArray:
        """Encode real values (any shape) as ring elements.

        Raises:
            EncodingError: a value is NaN, infinite, not a number, or outside
                ``(-2^(k-1-f), 2^(k-1-f))``.
        """
        return self.encode_bounded(values)[0]

    def encode_bounded(self, values: npt.ArrayLike) -> tuple[RingArray, int]:
        """Encode real values and return their magnitude bits ``m`` (``|enc| <= 2^m``)."""
        scaled = self._scaled(values)
        largest = int(np.abs(scaled).max()) if scaled.size else 0
        if self.ring.bits == 64:
            encoded: RingArray = np.asarray(scaled.astype(np.int64)).view(np.uint64)
        else:
            encoded = _to_u128(scaled)
        return encoded, magnitude_bits_of(largest)

    def _scaled(self, values: npt.ArrayLike) -> npt.NDArray[np.float64]:
        try:
            real = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise EncodingError(f"values must be real numbers: {exc}") from None
        not_finite = ~np.isfinite(real)
        if not_finite.any():
            raise EncodingError(f"values must be finite; found NaN or inf {_locate(not_finite)}")
        with np.errstate(over="ignore", invalid="ignore"):  # huge values are refused just below
            scaled: npt.NDArray[np.float64] = np.asarray(np.rint(real * self.scale))
        too_large = np.abs(scaled) >= 2.0 ** (self.ring.bits - 1)
        if too_large.any():
            raise EncodingError(
                f"value out of fixed-point range {_locate(too_large)}: with "
                f"{self.fractional_bits} fractional bits in {self.ring.name} |v| must be below "
                f"{self.max_magnitude:.6g}"
            )
        return scaled

    def decode(self, encoded: RingArray) -> npt.NDArray[np.float64]:
        """Decode ring elements (two's complement) into float64 values."""
        decoded: npt.NDArray[np.float64] = self.ring.to_float(encoded) / self.scale
        return decoded

    def product_format(self, other: FixedPoint | None = None) -> FixedPoint:
        """The format of a product of values in this and ``other``'s format."""
        other_bits = (other or self).fractional_bits
        return FixedPoint(self.fractional_bits + other_bits, self.ring)
