"""Three parties in one event loop: an in-memory :class:`Channel` network.

Used by the protocol tests (and usable for local experiments). Messages are
copied on send, so parties never share arrays. Two hooks make failure paths
testable without sockets:

* ``network.record`` keeps every message as sent (sender, receiver, tag,
  words), e.g. to check that no payload equals a cleartext input;
* ``network.interceptor`` may replace a message by zero copies (drop) or
  several (duplicate) before delivery.

Imports only ``mpc_core`` and the protocol package.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mpc_core.errors import ServerUnavailableError
from mpc_core.ring import Words
from mpc_core.types import PARTIES, MessageTag, PartyId
from mpc_server.protocol.mailbox import Mailbox


@dataclass(frozen=True)
class SentMessage:
    """One message as it left its sender."""

    sender: PartyId
    receiver: PartyId
    tag: MessageTag
    words: Words


Interceptor = Callable[[SentMessage], Sequence[Words]]


class InMemoryNetwork:
    """Connects three :class:`InMemoryChannel` objects in one process."""

    def __init__(self, names: Sequence[str] = ("server-0", "server-1", "server-2")) -> None:
        """Create three connected parties named by ``names``."""
        self.names = tuple(names)
        self.mailboxes = {p: Mailbox(dict(zip(PARTIES, self.names, strict=True))) for p in PARTIES}
        self.channels = tuple(InMemoryChannel(self, p) for p in PARTIES)
        self.sent: list[SentMessage] = []
        self.record = False
        self.interceptor: Interceptor | None = None
        self.down: set[PartyId] = set()

    def disconnect(self, party: PartyId) -> None:
        """Simulate the loss of ``party``: its peers fail waits on it at once."""
        self.down.add(party)
        error = ServerUnavailableError(self.names[party], "connection lost")
        for other in PARTIES:
            if other != party:
                self.mailboxes[other].peer_lost(party, error)

    def transmit(self, message: SentMessage) -> None:
        """Deliver ``message`` (after recording and interception)."""
        if message.sender in self.down or message.receiver in self.down:
            raise ServerUnavailableError(self.names[message.receiver], "not connected")
        if self.record:
            self.sent.append(message)
        copies = [message.words] if self.interceptor is None else self.interceptor(message)
        for words in copies:
            self.mailboxes[message.receiver].deliver(message.sender, message.tag, words.copy())


class InMemoryChannel:
    """One party's end of an :class:`InMemoryNetwork`."""

    def __init__(self, network: InMemoryNetwork, party: PartyId) -> None:
        """Attach party ``party`` to ``network``."""
        self._network = network
        self._party = party

    @property
    def party(self) -> PartyId:
        """The party this channel belongs to."""
        return self._party

    def peer_name(self, party: PartyId) -> str:
        """The configured name of ``party``."""
        return self._network.names[party]

    async def send(self, to: PartyId, tag: MessageTag, words: Words, timeout: float) -> None:
        """Deliver a copy of ``words`` to ``to``'s mailbox."""
        self._network.transmit(SentMessage(self._party, to, tag, words.copy()))

    async def recv(self, frm: PartyId, tag: MessageTag, timeout: float) -> Words:
        """Wait for ``tag`` from ``frm`` in this party's mailbox."""
        return await self._network.mailboxes[self._party].receive(frm, tag, timeout)

    async def abort(self, job_id: str, reason: str) -> None:
        """Tell the two peers that this party aborted ``job_id``."""
        for other in PARTIES:
            if other != self._party and other not in self._network.down:
                self._network.mailboxes[other].deliver_abort(self._party, job_id, reason)

    def close_job(self, job_id: str) -> None:
        """Forget the job's state in this party's mailbox."""
        self._network.mailboxes[self._party].close_job(job_id)

    def refuse_job(self, job_id: str) -> None:
        """Forget a refused job's state in this party's mailbox."""
        self._network.mailboxes[self._party].refuse_job(job_id)
