"""Per-job protocol state of one party: identity, keys, tags, deadline, stats.

A :class:`PartyContext` is created for every job and passed explicitly to
every protocol function (no runtime singleton). It allocates message tags in
program order, enforces the job deadline on every receive, counts traffic
and rounds, and moves large numpy work off the event loop.

Imports only ``mpc_core`` and the protocol package.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from mpc_core.errors import FailedPreconditionError, ProtocolError, ProtocolTimeoutError, ShareFormatError
from mpc_core.prg import SecretKey
from mpc_core.ring import RING128, Ring, RingArray, Words
from mpc_core.types import MessageTag, PartyId, next_party, prev_party
from mpc_server.protocol.channel import Channel

OFFLOAD_MIN_ELEMENTS = 1 << 15
"""Local numpy work on at least this many elements runs in a worker thread."""

_T = TypeVar("_T")


@dataclass(frozen=True, repr=False)
class PairwiseKeys:
    """Party i's PRF keys: ``own`` = k_i (shared with i-1), ``next`` = k_{i+1}."""

    own: SecretKey
    next: SecretKey

    def __repr__(self) -> str:
        """Redact both keys."""
        return "PairwiseKeys(<redacted>)"


@dataclass
class TrafficStats:
    """Protocol traffic of one party in one job."""

    bytes_sent: int = 0
    bytes_received: int = 0
    rounds: int = 0


@dataclass
class PartyContext:
    """Everything a protocol function needs to act as one party in one job."""

    channel: Channel
    job_id: str
    deadline: float
    """Absolute deadline on the event loop's clock (``loop.time()``)."""
    ring: Ring = RING128
    """The ring the job computes in."""
    keys: PairwiseKeys | None = None
    stats: TrafficStats = field(default_factory=TrafficStats)
    _next_op: int = 0

    @property
    def party(self) -> PartyId:
        """This party's index."""
        return self.channel.party

    @property
    def next(self) -> PartyId:
        """Party i + 1."""
        return next_party(self.party)

    @property
    def prev(self) -> PartyId:
        """Party i - 1."""
        return prev_party(self.party)

    def allocate_tag(self) -> MessageTag:
        """Reserve the next op index of this job (call order, not finish order)."""
        tag = MessageTag(self.job_id, self._next_op)
        self._next_op += 1
        return tag

    def require_keys(self) -> PairwiseKeys:
        """The job's PRF keys; raises if key setup has not run."""
        if self.keys is None:
            raise FailedPreconditionError("pairwise keys are not set up for this job")
        return self.keys

    def remaining(self) -> float:
        """Seconds left before the job deadline; raises once it has passed."""
        left = self.deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise ProtocolTimeoutError(f"job {self.job_id} exceeded its deadline")
        return left

    async def send(self, to: PartyId, tag: MessageTag, words: Words) -> None:
        """Send ``words`` to ``to`` and count the bytes."""
        await self.channel.send(to, tag, words, self.remaining())
        self.stats.bytes_sent += words.nbytes

    async def recv(self, frm: PartyId, tag: MessageTag) -> Words:
        """Receive ``tag`` from ``frm`` within the job deadline."""
        words = await self.channel.recv(frm, tag, self.remaining())
        self.stats.bytes_received += words.nbytes
        return words

    async def send_elements(self, to: PartyId, tag: MessageTag, values: RingArray) -> None:
        """Send ring elements (as their words) to ``to``."""
        await self.send(to, tag, self.ring.words(values))

    async def recv_elements(self, frm: PartyId, tag: MessageTag, expected: int) -> RingArray:
        """Receive ``expected`` ring elements from ``frm``.

        Raises:
            ProtocolError: the peer sent another number of elements.
        """
        words = await self.recv(frm, tag)
        try:
            return self.ring.from_words(words, expected)
        except ShareFormatError as exc:
            raise ProtocolError(
                f"malformed message {tag.op} from {self.channel.peer_name(frm)}: {exc}"
            ) from None

    async def exchange(self, to: PartyId, outgoing: RingArray, frm: PartyId, tag: MessageTag) -> RingArray:
        """One round: send ring elements to ``to``, then receive as many from ``frm``.

        Sending never waits for the peer's protocol code (its transport
        buffers incoming messages), so send-then-receive cannot deadlock.
        """
        self.stats.rounds += 1
        await self.send_elements(to, tag, outgoing)
        return await self.recv_elements(frm, tag, int(outgoing.size))

    async def compute(self, size: int, fn: Callable[..., _T], *args: object) -> _T:
        """Run local work ``fn(*args)``; in a thread when ``size`` is large."""
        if size < OFFLOAD_MIN_ELEMENTS:
            return fn(*args)
        return await asyncio.to_thread(fn, *args)
