"""The receive side of a party: messages buffered by (sender, tag) until read.

Peers may run ahead, so a message can arrive before the local protocol asks
for it, or after; :class:`Mailbox` accepts either order. It enforces the
protocol's hygiene rules:

* every receive has a deadline (``asyncio.timeout``);
* a second message with the same (sender, tag) is a :class:`ProtocolError`
  that fails the job, never silently overwrites the first;
* buffered bytes are bounded; beyond the bound the job fails with
  :class:`ResourceLimitError` instead of the process running out of memory;
* a lost peer or a peer's abort fails every waiting receive at once, so
  nothing waits for a message that can no longer come.

Imports only ``mpc_core`` and the standard library.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from mpc_core.errors import (
    JobAbortedError,
    MpcError,
    ProtocolError,
    ProtocolTimeoutError,
    ResourceLimitError,
)
from mpc_core.ring import Words
from mpc_core.types import MessageTag, PartyId

DEFAULT_MAX_BUFFERED_BYTES = 1 << 30
REFUSAL_MEMORY_SECONDS = 10.0
_CLOSED_JOBS_REMEMBERED = 4096

_Key = tuple[PartyId, int]


@dataclass
class _JobBox:
    """Messages, waiters and failures of one job."""

    created: float
    opened: bool = False
    ready: dict[_Key, Words] = field(default_factory=dict)
    waiting: dict[_Key, asyncio.Future[Words]] = field(default_factory=dict)
    seen: set[_Key] = field(default_factory=set)
    failed: dict[PartyId, MpcError] = field(default_factory=dict)


class Mailbox:
    """Buffers incoming protocol messages of one party, per job."""

    def __init__(
        self,
        peer_names: Mapping[PartyId, str],
        *,
        max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Create an empty mailbox; ``peer_names`` label errors."""
        self._names = dict(peer_names)
        self._max_bytes = max_buffered_bytes
        self._clock = clock
        self._boxes: dict[str, _JobBox] = {}
        self._closed: OrderedDict[str, None] = OrderedDict()
        self._refused: OrderedDict[str, float] = OrderedDict()
        self._failed_early: OrderedDict[str, tuple[float, dict[PartyId, MpcError]]] = OrderedDict()
        """Peers' failures of jobs not opened here (no state kept), for a local start soon after."""
        self._buffered = 0

    @property
    def buffered_bytes(self) -> int:
        """Bytes of messages delivered but not yet received."""
        return self._buffered

    @property
    def open_jobs(self) -> int:
        """Number of jobs with state in the mailbox."""
        return len(self._boxes)

    def _box(self, job_id: str) -> _JobBox | None:
        if job_id in self._closed:
            return None
        box = self._boxes.get(job_id)
        if box is None:
            box = self._boxes[job_id] = _JobBox(created=self._clock())
            early = self._failed_early.pop(job_id, None)
            if early is not None and self._clock() - early[0] < REFUSAL_MEMORY_SECONDS:
                box.failed.update(early[1])
        return box

    def deliver(self, sender: PartyId, tag: MessageTag, words: Words) -> None:
        """Accept a complete message from ``sender``."""
        box = self._box(tag.job_id)
        if box is None or sender in box.failed:
            return
        key = (sender, tag.op)
        if key in box.seen:
            name = self._names[sender]
            self._fail(
                box, sender, ProtocolError(f"duplicate message {tag.op} of job {tag.job_id} from {name}")
            )
            return
        box.seen.add(key)
        waiter = box.waiting.pop(key, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(words)
            return
        if self._buffered + words.nbytes > self._max_bytes:
            self._fail(
                box, sender, ResourceLimitError(f"mailbox full: more than {self._max_bytes} bytes buffered")
            )
            return
        box.ready[key] = words
        self._buffered += words.nbytes

    def deliver_abort(self, sender: PartyId, job_id: str, reason: str) -> None:
        """Record that ``sender`` aborted ``job_id``."""
        self.fail_job(sender, job_id, JobAbortedError(self._names[sender], reason))

    def fail_job(self, sender: PartyId, job_id: str, error: MpcError) -> None:
        """Fail ``job_id``'s receives from ``sender`` (now and later) with ``error``.

        Ignored for a job this party refused a moment ago: the failure
        belongs to the same failed attempt, not to a retry.
        """
        refused_at = self._refused.get(job_id)
        if refused_at is not None and self._clock() - refused_at < REFUSAL_MEMORY_SECONDS:
            return
        box = self._box(job_id)
        if box is None:
            return
        self._fail(box, sender, error)
        self._retire_unopened(job_id, box)

    def refuse_job(self, job_id: str) -> None:
        """This party refused ``job_id`` before starting it: drop its state.

        Aborts from peers refusing the same attempt may still be on their
        way; they are ignored for a while, so a retry after the problem is
        fixed starts clean. Messages are not ignored (a retry may be ahead).
        """
        box = self._boxes.pop(job_id, None)
        if box is not None:
            self._release(box)
        self._failed_early.pop(job_id, None)  # the peers' failures of the same refused attempt
        self._refused[job_id] = self._clock()
        self._refused.move_to_end(job_id)
        while len(self._refused) > _CLOSED_JOBS_REMEMBERED:
            self._refused.popitem(last=False)

    async def receive(self, sender: PartyId, tag: MessageTag, timeout: float) -> Words:
        """Return the message ``tag`` from ``sender``, waiting up to ``timeout`` s."""
        box = self._box(tag.job_id)
        if box is None:
            raise ProtocolError(f"job {tag.job_id} is already closed")
        box.opened = True
        self._refused.pop(tag.job_id, None)
        if sender in box.failed:
            raise box.failed[sender]
        key = (sender, tag.op)
        if key in box.ready:
            words = box.ready.pop(key)
            self._buffered -= words.nbytes
            return words
        if key in box.waiting:
            raise ProtocolError(f"message {tag.op} of job {tag.job_id} is already awaited")
        waiter: asyncio.Future[Words] = asyncio.get_running_loop().create_future()
        box.waiting[key] = waiter
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                return await waiter
        except TimeoutError:
            name = self._names[sender]
            raise ProtocolTimeoutError(
                f"no message {tag.op} of job {tag.job_id} from {name} within {timeout:.1f} s", server=name
            ) from None
        finally:
            box.waiting.pop(key, None)

    def peer_lost(self, sender: PartyId, error: MpcError) -> None:
        """Fail every open job's receives from ``sender`` with ``error``."""
        for job_id, box in list(self._boxes.items()):
            self._fail(box, sender, error)
            self._retire_unopened(job_id, box)

    def _retire_unopened(self, job_id: str, box: _JobBox) -> None:
        """A failed job not opened here can no longer complete: keep its failures only, not its data.

        A local start soon after still fails at once (``_box``); nothing is held meanwhile.
        """
        if box.opened or box.waiting:
            return
        self._release(self._boxes.pop(job_id))
        self._failed_early[job_id] = (self._clock(), box.failed)
        self._failed_early.move_to_end(job_id)
        while len(self._failed_early) > _CLOSED_JOBS_REMEMBERED:
            self._failed_early.popitem(last=False)

    def close_job(self, job_id: str) -> None:
        """Drop a finished job's state; later messages for it are ignored."""
        box = self._boxes.pop(job_id, None)
        if box is not None:
            self._release(box)
        self._failed_early.pop(job_id, None)
        self._closed[job_id] = None
        while len(self._closed) > _CLOSED_JOBS_REMEMBERED:
            self._closed.popitem(last=False)

    def sweep(self, max_age: float) -> int:
        """Drop jobs never opened locally and older than ``max_age`` seconds.

        Such messages belong to jobs this party was never asked to run (for
        example a client that reached only two servers). Returns the count.
        """
        cutoff = self._clock() - max_age
        stale = [job for job, box in self._boxes.items() if not box.opened and box.created < cutoff]
        for job_id in stale:
            self._release(self._boxes.pop(job_id))
        return len(stale)

    def _fail(self, box: _JobBox, sender: PartyId, error: MpcError) -> None:
        box.failed.setdefault(sender, error)
        for key in [k for k in box.ready if k[0] == sender]:
            self._buffered -= box.ready.pop(key).nbytes
        for key, waiter in list(box.waiting.items()):
            if key[0] == sender and not waiter.done():
                waiter.set_exception(box.failed[sender])

    def _release(self, box: _JobBox) -> None:
        for words in box.ready.values():
            self._buffered -= words.nbytes
        for key, waiter in box.waiting.items():
            if not waiter.done():
                waiter.set_exception(
                    ProtocolError(f"message {key[1]} is no longer awaited: the job was closed")
                )
