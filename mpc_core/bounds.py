"""Public magnitude bounds: proving, before any communication, that results fit the ring.

The servers never see a value, so a result that leaves the ring's signed
range would wrap around unnoticed. Instead every dataset carries a public
bound, its *magnitude bits* ``m``: every encoded element ``e`` (the integer
``rint(v * 2^f)``) satisfies ``|e| <= 2^m``. The SDK computes ``m`` from the
values at upload (the owner may declare a looser bound); servers learn it,
as they learn shapes. Programs combine the bounds of their inputs with exact
integer arithmetic (Python ints, no rounding) into a bound on their output
and refuse a job whose output could leave ``(-2^(k-1), 2^(k-1))``.

Probabilistic truncation (ABY3 Share Truncation I, ``protocol.truncation``)
fails with probability at most ``2^(l+1-k)`` per element whose magnitude is
below ``2^l`` (SecureML's two-party truncation theorem, which ABY3 reuses).
A job's truncations are refused unless their summed failure probability is
at most ``2^-STATISTICAL_SECURITY_BITS``, the statistical security of the
product (40 bits, as MP-SPDZ's default).

This module does no I/O and imports only the core.
"""

from __future__ import annotations

import math

from mpc_core.errors import InvalidArgumentError
from mpc_core.fixed_point import magnitude_bits_of
from mpc_core.ring import Ring

STATISTICAL_SECURITY_BITS = 40
"""A job's truncations may fail with probability at most 2^-40 in all."""


def bound_bits(bound: int) -> int:
    """The least ``m >= 0`` with ``bound <= 2^m``."""
    return magnitude_bits_of(bound)


def describe(bound: int, fractional_bits: int) -> str:
    """``2^m`` and the real value it stands for at ``fractional_bits``, for messages."""
    real = math.ldexp(float(bound), -fractional_bits) if bound < 1 << 1000 else math.inf
    return f"2^{bound_bits(bound)} (|value| up to {real:.4g})"


def require_fits(ring: Ring, bound: int, fractional_bits: int, what: str) -> None:
    """Refuse unless integers up to ``bound`` in magnitude fit the signed view of ``ring``.

    Raises:
        InvalidArgumentError: naming ``what``, its bound and the ring's range.
    """
    if bound > ring.max_signed:
        limit = math.ldexp(1.0, ring.bits - 1 - fractional_bits)
        raise InvalidArgumentError(
            f"{what} could reach {describe(bound, fractional_bits)} at scale 2^{fractional_bits}, "
            f"beyond the signed range of {ring.name} (below 2^{ring.bits - 1}, |value| below {limit:.4g}); "
            "the job was refused before any computation. Use data with tighter bounds, a smaller scale "
            "(fractional_bits), or a larger ring"
        )


def truncation_failure_log2(ring: Ring, count: int, bound: int) -> float:
    """log2 of the failure probability of truncating ``count`` values up to ``bound``.

    Each element fails with probability at most ``2^(l + 1 - k)`` where
    ``|x| < 2^l``; the union bound over ``count`` elements adds ``log2(count)``.
    """
    magnitude = bound_bits(bound + 1)
    return math.log2(max(count, 1)) + magnitude + 1 - ring.bits


def require_truncation_safe(ring: Ring, count: int, bound: int, fractional_bits: int, what: str) -> float:
    """The failure log2 of a truncation, or a refusal when it exceeds 2^-40.

    Raises:
        InvalidArgumentError: naming ``what``, the probability and the limit.
    """
    failure = truncation_failure_log2(ring, count, bound)
    if failure > -STATISTICAL_SECURITY_BITS:
        raise InvalidArgumentError(
            f"truncating {what} ({count} values up to {describe(bound, fractional_bits)}) in {ring.name} "
            f"could fail with probability up to 2^{failure:.1f}, above the limit of "
            f"2^-{STATISTICAL_SECURITY_BITS}; ask for the output at its natural scale, or use inputs "
            "with tighter bounds"
        )
    return failure
