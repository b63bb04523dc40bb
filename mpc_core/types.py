"""Small value types shared across the packages: party ids and message tags.

Party ids are 0, 1, 2; "next" and "previous" are taken mod 3. This module
imports only the standard library and the core errors.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NewType

from mpc_core.errors import InvalidArgumentError

PartyId = NewType("PartyId", int)
"""Index of one of the three servers: 0, 1 or 2."""

PARTY_COUNT = 3
PARTIES: tuple[PartyId, PartyId, PartyId] = (PartyId(0), PartyId(1), PartyId(2))


def next_party(party: PartyId) -> PartyId:
    """Party ``i + 1 mod 3``."""
    return PartyId((party + 1) % PARTY_COUNT)


def prev_party(party: PartyId) -> PartyId:
    """Party ``i - 1 mod 3``."""
    return PartyId((party - 1) % PARTY_COUNT)


def party_id(value: int) -> PartyId:
    """Validate and convert ``value`` into a :data:`PartyId`."""
    if value not in range(PARTY_COUNT):
        raise InvalidArgumentError(f"party must be 0, 1 or 2, got {value}")
    return PartyId(value)


@dataclass(frozen=True, order=True)
class MessageTag:
    """Names one protocol step: the job and the op index within the job.

    Op indices are allocated in program order when a protocol function is
    called, never by completion order, so all three parties label the same
    step the same way (MPyC's lesson). The tag also keys the PRF, so it must
    be unique per (job, step).
    """

    job_id: str
    op: int

    def to_bytes(self, purpose: bytes = b"") -> bytes:
        """A canonical encoding of (job, op, purpose) for PRF derivation."""
        job = self.job_id.encode()
        return struct.pack(">H", len(job)) + job + struct.pack(">Q", self.op) + purpose
