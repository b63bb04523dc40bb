"""Fixed-point encoding of real numbers into Z_2^64.

``encode(v) = round(v * 2^f) mod 2^64`` in two's complement, and
``decode(u) = int64(u) / 2^f``. The default is ``f = 16`` fractional bits.

Valid range. An encoded input must fit the signed 64-bit view, so
``|v| < 2^(63 - f)`` (about 1.4e14 for f = 16); anything else (and NaN or an
infinity) raises :class:`~mpc_core.errors.EncodingError` naming the first bad
element. A product of two encoded values carries scale ``2^(2f)`` and is
decoded with ``fractional_bits = 2f``; it is correct only while the true
result satisfies ``|y| < 2^(63 - 2f)`` (about 2.1e9 for f = 16). Results
outside that range wrap around silently: the servers never see the value,
so only the data owners can keep their data inside it.

Error bound. Encoding rounds to the nearest multiple of ``2^-f``, so each
input is off by at most ``2^-(f+1)``. A linear prediction
``y = sum_k w_k x_k + c`` over ``d`` features decoded at scale ``2^(2f)``
is then within ``2^-(f+1) * (sum_k |w_k| + sum_k |x_k| + 1) + d * 2^-(2f+2)``
of the real-valued result: about 7.6e-6 per unit of ``sum |w| + sum |x|``
for f = 16.

This module does no I/O and imports only numpy and the core errors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mpc_core.errors import EncodingError
from mpc_core.ring import RingArray

DEFAULT_FRACTIONAL_BITS = 16
MAX_FRACTIONAL_BITS = 62


def _locate(mask: npt.NDArray[np.bool_]) -> str:
    """Describe the first True position of ``mask`` for an error message."""
    if mask.ndim == 0:
        return "(the scalar value)"
    index = tuple(int(i) for i in np.argwhere(mask)[0])
    count = int(mask.sum())
    where = index[0] if len(index) == 1 else index
    return f"at index {where}" + (f" (and {count - 1} more)" if count > 1 else "")


@dataclass(frozen=True)
class FixedPoint:
    """A fixed-point format with ``fractional_bits`` bits after the point."""

    fractional_bits: int = DEFAULT_FRACTIONAL_BITS

    def __post_init__(self) -> None:
        """Reject scales that leave no room for an integer part."""
        if not 0 <= self.fractional_bits <= MAX_FRACTIONAL_BITS:
            raise EncodingError(
                f"fractional_bits must be within 0..{MAX_FRACTIONAL_BITS}, got {self.fractional_bits}"
            )

    @property
    def scale(self) -> float:
        """The factor ``2^f`` between real values and encoded integers."""
        return float(1 << self.fractional_bits)

    @property
    def max_magnitude(self) -> float:
        """Inputs must satisfy ``|v| < max_magnitude`` (``2^(63 - f)``)."""
        return float(2 ** (63 - self.fractional_bits))

    def encode(self, values: npt.ArrayLike) -> RingArray:
        """Encode real values (any shape) as ring elements.

        Raises:
            EncodingError: a value is NaN, infinite, not a number, or outside
                ``(-2^(63-f), 2^(63-f))``.
        """
        try:
            real = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise EncodingError(f"values must be real numbers: {exc}") from None
        not_finite = ~np.isfinite(real)
        if not_finite.any():
            raise EncodingError(f"values must be finite; found NaN or inf {_locate(not_finite)}")
        scaled = np.rint(real * self.scale)
        too_large = np.abs(scaled) >= 2.0**63
        if too_large.any():
            raise EncodingError(
                f"value out of fixed-point range {_locate(too_large)}: with "
                f"{self.fractional_bits} fractional bits |v| must be below "
                f"{self.max_magnitude:.6g}"
            )
        encoded: RingArray = scaled.astype(np.int64).view(np.uint64)
        return encoded

    def decode(self, encoded: RingArray) -> npt.NDArray[np.float64]:
        """Decode ring elements (two's complement) into float64 values."""
        decoded: npt.NDArray[np.float64] = encoded.view(np.int64) / self.scale
        return decoded

    def product_format(self, other: FixedPoint | None = None) -> FixedPoint:
        """The format of a product of values in this and ``other``'s format."""
        other_bits = (other or self).fractional_bits
        return FixedPoint(self.fractional_bits + other_bits)
