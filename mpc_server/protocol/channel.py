"""The abstract channel that protocol functions talk through.

A channel belongs to one party and moves whole vectors of 64-bit words to the other
two, labelled with a :class:`~mpc_core.types.MessageTag`. Implementations:
``protocol.memory`` (three parties in one event loop) and
``transport.peer_channel`` (gRPC over mutual TLS). Imports only the core.
"""

from __future__ import annotations

from typing import Protocol

from mpc_core.ring import Words
from mpc_core.types import MessageTag, PartyId


class Channel(Protocol):
    """Point-to-point messaging between one party and its two peers."""

    @property
    def party(self) -> PartyId:
        """The party this channel belongs to."""
        ...

    def peer_name(self, party: PartyId) -> str:
        """A human-readable name of ``party`` for error messages."""
        ...

    async def send(self, to: PartyId, tag: MessageTag, words: Words, timeout: float) -> None:
        """Send ``words`` to party ``to`` under ``tag`` within ``timeout`` seconds.

        Raises:
            ServerUnavailableError: the peer cannot be reached.
            ProtocolTimeoutError: the message could not be sent in time.
        """
        ...

    async def recv(self, frm: PartyId, tag: MessageTag, timeout: float) -> Words:
        """Wait at most ``timeout`` seconds for the message ``tag`` from ``frm``.

        Raises:
            ProtocolTimeoutError: nothing arrived in time.
            ServerUnavailableError: the peer was lost while waiting.
            JobAbortedError: the peer aborted the job.
            ProtocolError: the peer sent a duplicate message.
        """
        ...

    async def abort(self, job_id: str, reason: str) -> None:
        """Tell both peers, best effort, that this party gave up on the job."""
        ...

    def close_job(self, job_id: str) -> None:
        """Forget every message and waiter of a finished job."""
        ...

    def refuse_job(self, job_id: str) -> None:
        """This party refused the job before starting it; forget its state."""
        ...
