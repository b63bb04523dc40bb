"""Alignments: one server's part of the distributed OPRF that turns customer ids into tokens.

The one owner of an alignment's lifecycle on a server (``mpc_core.oprf`` has
the group arithmetic):

1. **Open** (all three servers, one round): the opener names the alignment,
   its participants (owners) with their quotas (the most ids each may
   evaluate) and a window. The servers confirm they hold the same description
   and set up fresh pairwise keys (``protocol.setup``), from which each derives
   its share ``(k_i, k_{i+1})`` of the OPRF key (``oprf.derive_key_share``)
   and its compact scalar. Nothing of the key is stored on disk.
2. **Evaluate** (each server on its own, any number of requests): a
   participant sends blinded points; the server checks the alignment is open,
   the caller is a participant with quota left, and every point is a canonical
   group element, then multiplies each by its compact scalar in a worker thread
   (libsodium releases the GIL).
3. **Close** at the end of the window, when every quota is spent, or by the
   opener: the key share is dropped (Python cannot wipe memory; nothing keeps
   a reference). Later evaluations are refused; datasets keyed by the
   alignment's tokens stay joinable (their tokens are stored with them).

Bounds: open alignments per opener and per server, participants per
alignment, ids per participant, points per request.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from mpc_core.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceLimitError,
)
from mpc_core.identity import validate_name
from mpc_core.prg import SecretKey
from mpc_core.types import PartyId
from mpc_core.version import PROTOCOL_VERSION
from mpc_server.protocol.channel import Channel
from mpc_server.protocol.context import PartyContext
from mpc_server.protocol.setup import agree_and_setup_keys

POINT_BYTES = 32
KEY_TAG = b"mpc.v1.alignment.key"


@dataclass(frozen=True)
class AlignmentLimits:
    """What one server lets clients hold in alignments."""

    max_open_per_opener: int = 4
    max_open: int = 64
    max_participants: int = 16
    max_ids_per_participant: int = 10_000_000
    max_points_per_request: int = 65_536
    max_window_seconds: float = 3600.0
    default_window_seconds: float = 600.0


@dataclass(eq=False, repr=False)
class _Alignment:
    name: str
    opener: str
    remaining: dict[str, int]
    closes_at: float
    scalar: bytes | None = field(default=None)
    """This server's compact OPRF scalar; None once closed."""


MAX_NAME_BYTES = 255
"""The OPRF session (the alignment's name) is at most 255 bytes (``oprf.MAX_SESSION_BYTES``)."""


def alignment_name(opener: str, alignment_id: str) -> str:
    """``opener/alignment_id``: alignments are scoped by their opener."""
    name = f"{validate_name(opener, 'opener')}/{validate_name(alignment_id, 'alignment id')}"
    if len(name.encode()) > MAX_NAME_BYTES:
        raise InvalidArgumentError(f"an alignment's name (opener/id) is at most {MAX_NAME_BYTES} bytes")
    return name


class AlignmentService:
    """The alignments one server takes part in."""

    def __init__(
        self,
        channel: Channel,
        limits: AlignmentLimits = AlignmentLimits(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Open alignments over ``channel`` (its peers must run the same service)."""
        self._channel = channel
        self.limits = limits
        self._clock = clock
        self._open: dict[str, _Alignment] = {}

    def _expire(self) -> None:
        now = self._clock()
        for name in [n for n, a in self._open.items() if a.closes_at <= now or not any(a.remaining.values())]:
            self._close(name)

    def _close(self, name: str) -> None:
        alignment = self._open.pop(name, None)
        if alignment is not None:
            alignment.scalar = None  # the key share goes with the last reference

    async def open(
        self, opener: str, alignment_id: str, participants: Mapping[str, int], window: float, timeout: float
    ) -> tuple[str, float]:
        """Open an alignment with the two peers (one round); returns its name and closing time.

        Raises:
            InvalidArgumentError: bad names, quotas or window.
            ResourceLimitError: too many open alignments.
            AlreadyExistsError: the opener has an open alignment of that id.
            FailedPreconditionError: a peer holds a different description.
        """
        name = alignment_name(opener, alignment_id)
        quotas, window = self._check(participants, window)
        _require_libsodium()
        self._expire()
        if name in self._open:
            raise AlreadyExistsError(f"alignment {name} is already open")
        if len(self._open) >= self.limits.max_open or (
            sum(a.opener == opener for a in self._open.values()) >= self.limits.max_open_per_opener
        ):
            raise ResourceLimitError(
                f"too many open alignments (at most {self.limits.max_open_per_opener} per opener, "
                f"{self.limits.max_open} per server); close one or wait for its window to end"
            )
        described = {"protocol": PROTOCOL_VERSION, "alignment": name, "participants": sorted(quotas.items()),
                     "window": window}  # fmt: skip
        digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).digest()
        session = f"align/{name}"
        ctx = PartyContext(self._channel, session, asyncio.get_running_loop().time() + timeout)
        try:
            keys = await agree_and_setup_keys(ctx, digest)
        except BaseException as exc:
            await self._channel.abort(session, str(exc))
            raise
        finally:
            self._channel.close_job(session)
        scalar = await asyncio.to_thread(_compact_scalar, keys.own, keys.next, self._channel.party, name)
        closes_at = self._clock() + window
        self._open[name] = _Alignment(name, opener, quotas, closes_at, scalar)
        return name, closes_at

    def _check(self, participants: Mapping[str, int], window: float) -> tuple[dict[str, int], float]:
        limits = self.limits
        if not 1 <= len(participants) <= limits.max_participants:
            raise InvalidArgumentError(f"an alignment has 1 to {limits.max_participants} participants")
        quotas = {}
        for owner, count in participants.items():
            validate_name(owner, "participant")
            if not 1 <= count <= limits.max_ids_per_participant:
                raise InvalidArgumentError(
                    f"participant {owner} must declare 1 to {limits.max_ids_per_participant} ids"
                )
            quotas[owner] = count
        window = window or limits.default_window_seconds
        if not 0 < window <= limits.max_window_seconds:
            raise InvalidArgumentError(f"an alignment's window is 0 to {limits.max_window_seconds:g} seconds")
        return quotas, window

    async def evaluate(self, caller: str, name: str, points: bytes) -> tuple[bytes, int]:
        """This server's compact evaluation of ``points`` for participant ``caller``; and its quota left.

        Raises:
            NotFoundError: no open alignment of that name names the caller
                (one answer for missing, closed and not a participant).
            ResourceLimitError: more points than the request limit or the caller's quota.
            InvalidArgumentError: a point is not a canonical group element (its position named).
        """
        self._expire()
        alignment = self._open.get(name)
        if alignment is None or caller not in alignment.remaining:
            raise NotFoundError(f"no open alignment {name} for {caller}")
        if len(points) % POINT_BYTES:
            raise InvalidArgumentError(f"points are {POINT_BYTES} bytes each")
        count = len(points) // POINT_BYTES
        if count > self.limits.max_points_per_request:
            raise ResourceLimitError(f"at most {self.limits.max_points_per_request} points per request")
        if count > alignment.remaining[caller]:
            raise ResourceLimitError(
                f"{caller} may evaluate {alignment.remaining[caller]} more ids in alignment {name}"
            )
        scalar = alignment.scalar
        if scalar is None:
            raise FailedPreconditionError(f"alignment {name} has closed")
        alignment.remaining[caller] -= count  # spent before computing: concurrent calls cannot overspend
        values = await asyncio.to_thread(_evaluate, scalar, points)
        return values, alignment.remaining[caller]

    def close(self, caller: str, name: str) -> None:
        """Close an alignment early (its opener only)."""
        alignment = self._open.get(name)
        if alignment is None:
            raise NotFoundError(f"no open alignment {name}")
        if alignment.opener != caller:
            raise PermissionDeniedError(f"only {alignment.opener} may close alignment {name}")
        self._close(name)

    @property
    def open_count(self) -> int:
        """Alignments open now."""
        self._expire()
        return len(self._open)


def _require_libsodium() -> None:
    """Refuse an alignment, before the peers are involved, on a server without libsodium."""
    try:
        from mpc_core import oprf  # noqa: F401, PLC0415 - only to see that libsodium loads
    except ImportError as exc:
        raise FailedPreconditionError(f"this server cannot align: {exc}") from None


def _compact_scalar(own: SecretKey, next_key: SecretKey, party: PartyId, name: str) -> bytes:
    from mpc_core import oprf  # noqa: PLC0415 - libsodium is loaded only when a server aligns

    share = oprf.derive_key_share(own, next_key, party, KEY_TAG + name.encode())
    return oprf.compact_scalar(share)


def _evaluate(scalar: bytes, points: bytes) -> bytes:
    from mpc_core import oprf  # noqa: PLC0415 - as above

    elements = [points[i : i + POINT_BYTES] for i in range(0, len(points), POINT_BYTES)]
    return b"".join(oprf.evaluate_scalar(scalar, elements))
