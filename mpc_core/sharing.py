"""2-out-of-3 replicated secret sharing over Z_2^64 or Z_2^128.

A secret vector ``x`` is split into three *components* with
``x = x_0 + x_1 + x_2 (mod 2^k)``. **Party i holds the pair
``(x_i, x_{i+1})``** (indices mod 3), so component ``j`` is held by parties
``j`` and ``j - 1``. Any two parties together hold all three components; one
party alone holds two uniformly random-looking values that reveal nothing.
This is the layout of ABY3 (Mohassel-Rindal, CCS 2018, §3) and of
``secretflow/spu`` / ``draft-savage-ppm-3phm-mpc``. The ring is that of the
components' dtype (``mpc_core.ring``).

This module is pure: randomness comes from :mod:`mpc_core.prg` (OS CSPRNG
keyed AES-CTR); nothing here does I/O. Share objects redact themselves in
``repr`` so they cannot leak into logs.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mpc_core.errors import InvalidArgumentError, OutputIntegrityError
from mpc_core.prg import KEY_BYTES, prg_elements, random_elements
from mpc_core.ring import Ring, RingArray, ring_of
from mpc_core.types import PARTIES, PartyId, next_party


@dataclass(frozen=True, eq=False, repr=False)
class ReplicatedShare:
    """One party's share of a secret vector: components ``(x_i, x_{i+1})``.

    ``first`` is component ``i`` and ``second`` component ``i + 1`` for the
    holding party ``i``. Both are flat arrays of the same ring and length.
    """

    first: RingArray
    second: RingArray

    def __post_init__(self) -> None:
        """Check that both components are vectors of one ring with the same length."""
        for component in (self.first, self.second):
            if not isinstance(component, np.ndarray):
                raise InvalidArgumentError("share components must be arrays of ring elements")
            ring_of(component)
        if self.first.dtype != self.second.dtype:
            raise InvalidArgumentError("share components are elements of different rings")
        if self.first.shape != self.second.shape:
            raise InvalidArgumentError(
                f"share components differ in shape: {self.first.shape} vs {self.second.shape}"
            )

    @property
    def ring(self) -> Ring:
        """The ring of the components."""
        return ring_of(self.first)

    @property
    def size(self) -> int:
        """Number of ring elements in the shared vector."""
        return int(self.first.size)

    def __repr__(self) -> str:
        """Redact the share values; show only the size."""
        return f"ReplicatedShare({self.ring.name}, size={self.size}, <redacted>)"


def split(ring: Ring, secret: RingArray) -> tuple[RingArray, RingArray, RingArray]:
    """Split ``secret`` into three additive components (fresh randomness).

    ``x_0`` and ``x_1`` are uniformly random; ``x_2 = x - x_0 - x_1``.
    """
    flat = ring.require(secret, "the secret").reshape(-1)
    x0 = random_elements(ring, flat.size)
    x1 = random_elements(ring, flat.size)
    x2 = ring.sub(ring.sub(flat, x0), x1)
    return x0, x1, x2


@dataclass(frozen=True, eq=False, repr=False)
class SeededSplit:
    """A split whose components 0 and 1 are PRG expansions of 16-byte seeds.

    ``x_0 = prg_elements(ring, seed_0, n)``, ``x_1 = prg_elements(ring,
    seed_1, n)`` and ``x_2 = x - x_0 - x_1``. Server 0 then needs only both
    seeds, server 1 ``seed_1`` and ``x_2``, server 2 ``x_2`` and ``seed_0``:
    two vectors instead of six cross the network (DESIGN.md, "Input upload").
    """

    ring: Ring
    seed_0: bytes
    seed_1: bytes
    x_2: RingArray

    def __repr__(self) -> str:
        """Redact seeds and values."""
        return f"SeededSplit({self.ring.name}, size={self.x_2.size}, <redacted>)"

    def components(self) -> tuple[RingArray, RingArray, RingArray]:
        """All three components, expanded (for tests and small inputs)."""
        n = self.x_2.size
        return prg_elements(self.ring, self.seed_0, n), prg_elements(self.ring, self.seed_1, n), self.x_2


def split_seeded(ring: Ring, secret: RingArray) -> SeededSplit:
    """Split ``secret`` with components 0 and 1 drawn from fresh OS-random seeds."""
    flat = ring.require(secret, "the secret").reshape(-1)
    seed_0, seed_1 = secrets.token_bytes(KEY_BYTES), secrets.token_bytes(KEY_BYTES)
    x_2 = ring.sub(flat, prg_elements(ring, seed_0, flat.size))
    ring.sub(x_2, prg_elements(ring, seed_1, flat.size), out=x_2)
    return SeededSplit(ring, seed_0, seed_1, x_2)


def share_for_party(components: Sequence[RingArray], party: PartyId) -> ReplicatedShare:
    """Return party ``party``'s pair ``(x_i, x_{i+1})`` of the components."""
    return ReplicatedShare(components[party], components[next_party(party)])


def share(ring: Ring, secret: RingArray) -> tuple[ReplicatedShare, ReplicatedShare, ReplicatedShare]:
    """Secret-share ``secret`` (flattened) into the three parties' shares."""
    components = split(ring, secret)
    shares = tuple(share_for_party(components, party) for party in PARTIES)
    return shares[0], shares[1], shares[2]


def reconstruct(shares: Sequence[ReplicatedShare]) -> RingArray:
    """Sum the components of three parties' shares, without any check."""
    _require_three(shares)
    ring = shares[0].ring
    return ring.add(ring.add(shares[0].first, shares[1].first), shares[2].first)


def reconstruct_checked(
    shares: Sequence[ReplicatedShare], names: Sequence[str] = ("0", "1", "2")
) -> RingArray:
    """Reconstruct after checking that both copies of every component agree.

    Component ``j`` arrives twice: as party ``j``'s ``first`` and as party
    ``j - 1``'s ``second``. A mismatch means one of those two parties is
    faulty or malicious; the function raises rather than returning data.

    Raises:
        OutputIntegrityError: naming the two parties (by ``names``) whose
            copies of a component differ.
    """
    _require_three(shares)
    for holder in PARTIES:
        other = next_party(holder)
        copy_a = shares[holder].second
        copy_b = shares[other].first
        same = copy_a.dtype == copy_b.dtype and copy_a.shape == copy_b.shape
        if not same or not hmac.compare_digest(copy_a.tobytes(), copy_b.tobytes()):
            raise OutputIntegrityError((names[holder], names[other]), f"copies of share component {other}")
    return reconstruct(shares)


def _require_three(shares: Sequence[ReplicatedShare]) -> None:
    if len(shares) != len(PARTIES):
        raise InvalidArgumentError(f"need {len(PARTIES)} shares, got {len(shares)}")
    if len({share.first.dtype for share in shares}) != 1:
        raise InvalidArgumentError("the shares are elements of different rings")
