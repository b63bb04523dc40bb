"""The gRPC implementation of the protocol :class:`Channel`.

Outgoing messages go through the :class:`PeerLink` to the receiver;
incoming ``Exchange`` chunks from each peer are reassembled by
:class:`Inbound` and delivered whole to the :class:`Mailbox`, with the
declared size checked against a limit before anything is allocated.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mpc_core.errors import ProtocolError, ResourceLimitError, ServerUnavailableError
from mpc_core.ring import Words, words_view
from mpc_core.types import MessageTag, PartyId
from mpc_server.protocol.mailbox import Mailbox
from mpc_server.transport.exchange_codec import ExchangeFrame
from mpc_server.transport.peer_link import PeerLink

DEFAULT_MAX_MESSAGE_WORDS = 1 << 28


class _Partial:
    """A message whose chunks are still arriving."""

    def __init__(self, total: int) -> None:
        self.words = np.empty(total, dtype=np.uint64)
        self.filled = 0


class Inbound:
    """Reassembles chunked messages from the peers into the mailbox."""

    def __init__(self, mailbox: Mailbox, names: Mapping[PartyId, str], max_message_words: int) -> None:
        """Deliver into ``mailbox``; refuse messages above ``max_message_words``."""
        self._mailbox = mailbox
        self._names = dict(names)
        self._max_words = max_message_words
        self._partial: dict[tuple[PartyId, str, int], _Partial] = {}
        self.bytes_received: dict[PartyId, int] = dict.fromkeys(names, 0)

    def accept(self, sender: PartyId, frame: ExchangeFrame) -> None:
        """Handle one decoded ``ExchangeRequest`` from ``sender``."""
        self.bytes_received[sender] += frame.wire_bytes
        if frame.is_abort:
            self._mailbox.deliver_abort(sender, frame.job_id, frame.reason)
        else:
            self._accept_chunk(sender, frame)

    def _accept_chunk(self, sender: PartyId, frame: ExchangeFrame) -> None:
        tag = MessageTag(frame.job_id, frame.op)
        try:
            words = self._assemble(sender, tag, frame)
        except (ProtocolError, ResourceLimitError) as exc:
            self._partial.pop((sender, frame.job_id, frame.op), None)
            self._mailbox.fail_job(sender, frame.job_id, exc)
            return
        if words is not None:
            self._mailbox.deliver(sender, tag, words)

    def _assemble(self, sender: PartyId, tag: MessageTag, chunk: ExchangeFrame) -> Words | None:
        total = chunk.total_words
        if total > self._max_words:
            raise ResourceLimitError(f"message of {total} words from {self._names[sender]} exceeds the limit")
        piece = words_view(chunk.payload)  # read-only view of the received bytes, no copy
        if chunk.offset == 0 and piece.size == total:
            return piece
        key = (sender, tag.job_id, tag.op)
        partial = self._partial.get(key)
        if partial is None:
            partial = self._partial[key] = _Partial(total)
        if (
            chunk.offset != partial.filled
            or partial.filled + piece.size > total
            or partial.words.size != total
        ):
            raise ProtocolError(f"out-of-order chunk of message {tag.op} from {self._names[sender]}")
        partial.words[partial.filled : partial.filled + piece.size] = piece
        partial.filled += piece.size
        if partial.filled < total:
            return None
        del self._partial[key]
        return partial.words

    def peer_lost(self, sender: PartyId, reason: str = "connection lost") -> None:
        """Drop ``sender``'s partial messages and fail open jobs waiting on it."""
        for key in [k for k in self._partial if k[0] == sender]:
            del self._partial[key]
        self._mailbox.peer_lost(sender, ServerUnavailableError(self._names[sender], reason))

    def discard_job(self, job_id: str) -> None:
        """Drop partial messages of a finished job."""
        for key in [k for k in self._partial if k[1] == job_id]:
            del self._partial[key]


class GrpcPeerChannel:
    """One server's :class:`Channel` to its two peers over gRPC."""

    def __init__(
        self,
        party: PartyId,
        names: Mapping[PartyId, str],
        links: Mapping[PartyId, PeerLink],
        mailbox: Mailbox,
        inbound: Inbound,
    ) -> None:
        """Send through ``links``; receive from ``mailbox`` (fed by ``inbound``)."""
        self._party = party
        self._names = dict(names)
        self._links = dict(links)
        self._mailbox = mailbox
        self._inbound = inbound

    @property
    def party(self) -> PartyId:
        """This server's party index."""
        return self._party

    def peer_name(self, party: PartyId) -> str:
        """The identity of ``party``."""
        return self._names[party]

    async def send(self, to: PartyId, tag: MessageTag, words: Words, timeout: float) -> None:
        """Send ``words`` to ``to`` over its link within ``timeout`` seconds."""
        await self._links[to].send(tag, words, timeout)

    async def recv(self, frm: PartyId, tag: MessageTag, timeout: float) -> Words:
        """Wait for ``tag`` from ``frm``."""
        return await self._mailbox.receive(frm, tag, timeout)

    async def abort(self, job_id: str, reason: str) -> None:
        """Tell both peers we gave up on ``job_id``."""
        for link in self._links.values():
            link.send_abort(job_id, reason)

    def close_job(self, job_id: str) -> None:
        """Forget ``job_id``'s messages."""
        self._mailbox.close_job(job_id)
        self._inbound.discard_job(job_id)

    def refuse_job(self, job_id: str) -> None:
        """Forget a job refused before it started."""
        self._mailbox.refuse_job(job_id)
        self._inbound.discard_job(job_id)
