"""The outbound half of a server-to-server connection.

A :class:`PeerLink` keeps one mutually authenticated gRPC channel to one
peer. Before each connection it checks the peer's certificate by its
identity and pins the channel to that certificate
(``transport.peer_identity``): a revoked or misissued certificate never
receives a message. It then handshakes (protocol version, party index,
cluster fingerprint) and holds a long-lived ``PeerService.Exchange``
stream on which every protocol message to that peer travels, in chunks of
at most ``chunk_words`` words. When the stream breaks (the peer died,
restarted or the network failed) the link reconnects with backoff; while
it is down, sends fail at once with :class:`ServerUnavailableError` naming
the peer, and a send that cannot be written in time fails with
:class:`ProtocolTimeoutError` naming it.

While connected, the link sends a heartbeat (a ``Handshake``) every
``heartbeat`` seconds. A peer that makes no progress on the link for
``keepalive`` seconds (no heartbeat answered, no message received from it
or written to it) is reported down: a frozen or wedged process, which TCP
and gRPC keepalive do not notice. :attr:`PeerLink.connected` is then
False (so health says NOT_SERVING), sends fail, and the jobs waiting on it
fail; it is up again as soon as it answers. The pinned certificate is
looked up in the revocation list at every heartbeat; once revoked, the
stream is cut.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from mpc_core.cluster import ServerEndpoint
from mpc_core.errors import MpcError, ProtocolTimeoutError, ServerUnavailableError, UnauthenticatedError
from mpc_core.ring import Words, words_bytes
from mpc_core.types import MessageTag
from mpc_proto.v1 import peer_service_pb2 as pb
from mpc_proto.v1 import peer_service_pb2_grpc as pb_grpc
from mpc_server.transport import exchange_codec
from mpc_server.transport.peer_identity import CheckedPeer, PeerIdentityCheck
from mpc_server.transport.tasks import cancel_and_wait

_log = logging.getLogger(__name__)

DEFAULT_CHUNK_WORDS = 1 << 18
"""Words per Exchange message: 2 MiB of payload, under gRPC's 4 MiB default limit."""
EXCHANGE_METHOD = "/mpc.v1.PeerService/Exchange"
PEER_KEEPALIVE = 5.0
"""Seconds without progress on a link after which its peer is reported down."""
HEARTBEAT_INTERVAL = 1.0

_STALL_SLACK = 1.0
_RETRY_DELAY = 0.2
_MAX_RETRY_DELAY = 1.0
_SILENT_CODES = (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


@dataclass
class _Outgoing:
    """One protocol message (its chunks) waiting for the link's writer."""

    messages: list[bytes]
    """Encoded ``ExchangeRequest`` messages (``exchange_codec``)."""
    done: asyncio.Future[None] | None


@dataclass(frozen=True)
class _Pinned:
    """The channel opened to one checked certificate."""

    peer: CheckedPeer
    channel: grpc.aio.Channel
    stub: pb_grpc.PeerServiceAsyncStub
    exchange: grpc.aio.StreamUnaryMultiCallable[bytes, pb.ExchangeResponse]


@dataclass(frozen=True)
class LinkTiming:
    """How long a link waits for what."""

    connect_timeout: float = 5.0
    keepalive: float = PEER_KEEPALIVE
    heartbeat: float = HEARTBEAT_INTERVAL


class PeerLink:
    """Our connection to one peer server, kept up until :meth:`close`.

    A single writer task owns the stream: senders queue whole messages and
    wait (with a deadline) until they are written, so a job that gives up
    or is cancelled never cancels the stream shared by all jobs.
    """

    def __init__(
        self,
        peer: ServerEndpoint,
        identity: PeerIdentityCheck,
        options: list[tuple[str, str | int]],
        hello: pb.HandshakeRequest,
        *,
        timing: LinkTiming = LinkTiming(),
        chunk_words: int = DEFAULT_CHUNK_WORDS,
        activity: Callable[[], int] = lambda: 0,
        on_change: Callable[[], None] = lambda: None,
        on_lost: Callable[[str], None] = lambda reason: None,
    ) -> None:
        """Prepare (but do not start) the link to ``peer``.

        ``activity`` counts what arrived from the peer (any change is
        progress), ``on_change`` is called when the link comes up or goes
        down, ``on_lost`` when an established stream is lost or its peer
        stops making progress (with the reason).
        """
        self.peer = peer
        self._identity = identity
        self._options = options
        self._pinned: _Pinned | None = None
        self._hello = hello
        self._timing = timing
        self._chunk_words = chunk_words
        self._activity = activity
        self._on_change = on_change
        self._on_lost = on_lost
        self._call: grpc.aio.StreamUnaryCall[bytes, pb.ExchangeResponse] | None = None
        self._queue: asyncio.Queue[_Outgoing] = asyncio.Queue()
        self._closed = False
        self._responsive = True
        self._was_up = False
        self._cut_reason = ""
        self._refused = ""
        self._alive_at = 0.0
        self.last_error = "not connected yet"
        self.bytes_sent = 0
        """Bytes of serialized messages sent to the peer (before TLS)."""
        self.peer_version = ""

    @property
    def connected(self) -> bool:
        """Whether the link is up: checked, handshake done, stream open, the peer making progress."""
        return self._call is not None and self._responsive

    async def run(self) -> None:
        """Connect, and reconnect whenever the stream ends, until closed."""
        delay = _RETRY_DELAY
        while not self._closed:
            self._was_up = False
            try:
                await self._connect_once()
            except grpc.aio.AioRpcError as exc:
                self._down(f"{exc.code().name}: {exc.details()}")
            except MpcError as exc:  # the peer's certificate was refused, or it cannot be reached
                self._refuse(exc)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self._closed or (task is not None and task.cancelling()):
                    self._down("link closed")
                    raise
                self._down(self._cut_reason or "stream cancelled")  # the call, not this task, was cancelled
            delay = _RETRY_DELAY if self._was_up else min(2 * delay, _MAX_RETRY_DELAY)
            if not self._closed:
                await asyncio.sleep(delay)

    def _refuse(self, error: MpcError) -> None:
        reason = str(error)
        if isinstance(error, UnauthenticatedError) and reason != self._refused:
            _log.error(
                "refusing peer %s at %s: %s; nothing is sent to it",
                self.peer.identity,
                self.peer.address,
                reason,
            )
        self._refused = reason if isinstance(error, UnauthenticatedError) else ""
        self._down(reason.removeprefix(f"server {self.peer.identity} is unavailable: "))

    async def _pin(self, checked: CheckedPeer) -> _Pinned:
        """The channel trusting ``checked``'s certificate only (kept while the certificate is the same)."""
        old = self._pinned
        if old is not None and old.peer.info.fingerprint == checked.info.fingerprint:
            return old
        channel = grpc.aio.secure_channel(
            self.peer.address, self._identity.credentials(checked), self._options
        )
        # Exchange sends messages already encoded by exchange_codec (no serializer).
        exchange: grpc.aio.StreamUnaryMultiCallable[bytes, pb.ExchangeResponse] = channel.stream_unary(
            EXCHANGE_METHOD, request_serializer=None, response_deserializer=pb.ExchangeResponse.FromString
        )
        self._pinned = _Pinned(checked, channel, pb_grpc.PeerServiceStub(channel), exchange)
        _log.info(
            "peer %s: certificate %s checked and pinned", self.peer.identity, checked.info.fingerprint[:16]
        )
        if old is not None:
            await old.channel.close()
        return self._pinned

    async def _connect_once(self) -> None:
        timing = self._timing
        pinned = await self._pin(await self._identity.check(self.peer, timing.connect_timeout))
        self._refused = ""
        reply = await pinned.stub.Handshake(self._hello, timeout=timing.connect_timeout, wait_for_ready=True)
        self.peer_version = reply.software_version
        call: grpc.aio.StreamUnaryCall[bytes, pb.ExchangeResponse] = pinned.exchange()
        await call.wait_for_connection()
        self._call, self._responsive, self._cut_reason, self._was_up = call, True, "", True
        self.last_error = ""
        _log.info("connected to peer %s (party %d)", self.peer.identity, self.peer.party)
        self._on_change()
        tasks = [
            asyncio.create_task(self._write_loop(call)),
            asyncio.create_task(self._heartbeat(call, pinned)),
        ]
        try:
            await call
        finally:
            await cancel_and_wait(tasks)  # our own cancellation, if any, goes on
            self._down(self._cut_reason or "connection lost")

    def _progress(self) -> tuple[int, int]:
        return self.bytes_sent, self._activity()

    async def _heartbeat(
        self, call: grpc.aio.StreamUnaryCall[bytes, pb.ExchangeResponse], pinned: _Pinned
    ) -> None:
        """Notice a peer that makes no progress, and a pinned certificate revoked meanwhile.

        Every ``heartbeat`` seconds: look for traffic since the last look,
        start a ping unless one is outstanding (its answer is progress
        too), and report the peer down once ``keepalive`` seconds have
        passed without progress.
        """
        loop = asyncio.get_running_loop()
        timing = self._timing
        self._alive_at, progress = loop.time(), self._progress()
        ping: asyncio.Task[None] | None = None
        try:
            while True:
                tick = loop.time()
                await asyncio.sleep(timing.heartbeat)
                now, seen = loop.time(), self._progress()
                if now - tick > timing.heartbeat + _STALL_SLACK:
                    self._alive_at = now  # this process was stalled (stopped, say): nothing known of the peer
                if seen != progress:
                    progress = seen
                    self._answered(now)
                if ping is None or ping.done():
                    ping = asyncio.create_task(self._ping(pinned))
                if now - self._alive_at > timing.keepalive:
                    self._unresponsive(now - self._alive_at)
                if self._identity.revoked(pinned.peer.info):
                    self._cut_reason = f"the certificate of {self.peer.identity} has been revoked"
                    _log.error("peer %s: %s; link closed", self.peer.identity, self._cut_reason)
                    call.cancel()
                    return
        finally:
            if ping is not None:
                await cancel_and_wait([ping])

    async def _ping(self, pinned: _Pinned) -> None:
        try:
            await pinned.stub.Handshake(self._hello, timeout=self._timing.keepalive)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _SILENT_CODES:
                return
        self._answered(asyncio.get_running_loop().time())  # it answered, if only to refuse

    def _answered(self, at: float) -> None:
        self._alive_at = max(self._alive_at, at)
        self._alive()

    def _alive(self) -> None:
        if not self._responsive:
            self._responsive = True
            self.last_error = ""
            _log.info("peer %s makes progress again", self.peer.identity)
            self._on_change()

    def _unresponsive(self, silent: float) -> None:
        if self._responsive:
            self._responsive = False
            self.last_error = (
                f"no progress on the link for {silent:.1f} s (the peer may be frozen or overloaded)"
            )
            _log.warning("peer %s: %s", self.peer.identity, self.last_error)
            self._on_lost(self.last_error)
            self._on_change()

    async def _write_loop(self, call: grpc.aio.StreamUnaryCall[bytes, pb.ExchangeResponse]) -> None:
        while True:
            item = await self._queue.get()
            if item.done is not None and item.done.done():
                continue  # its sender gave up; do not send a stale message
            try:
                for message in item.messages:
                    await call.write(message)
                    self.bytes_sent += len(message)
            except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
                _settle(item, ServerUnavailableError(self.peer.identity, "connection lost while sending"))
                call.cancel()
                return
            _settle(item, None)

    def _down(self, reason: str) -> None:
        was_connected = self._call is not None
        self._call = None
        self.last_error = reason
        while not self._queue.empty():
            _settle(self._queue.get_nowait(), ServerUnavailableError(self.peer.identity, reason))
        if was_connected:
            _log.warning("lost peer %s: %s", self.peer.identity, reason)
            self._on_lost(reason)
            self._on_change()

    async def send(self, tag: MessageTag, words: Words, timeout: float) -> None:
        """Send one protocol message, chunked, in order with other sends.

        Raises:
            ServerUnavailableError: the link is down or broke while sending.
            ProtocolTimeoutError: not written within ``timeout`` seconds.
        """
        self._require_connected()
        total = int(words.size)
        data, step = words_bytes(words), self._chunk_words * 8
        messages = [
            exchange_codec.encode_data(tag.job_id, tag.op, start // 8, total, data[start : start + step])
            for start in range(0, max(len(data), 1), step)
        ]
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Outgoing(messages, done))
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                await asyncio.shield(done)
        except TimeoutError:
            done.cancel()
            raise ProtocolTimeoutError(
                f"could not send message {tag.op} of job {tag.job_id} to {self.peer.identity} "
                f"within {timeout:.1f} s",
                server=self.peer.identity,
            ) from None

    def send_abort(self, job_id: str, reason: str) -> None:
        """Queue a note that we gave up on ``job_id`` (best effort, never raises)."""
        if self._call is not None:
            message = exchange_codec.encode_abort(job_id, reason[:1000])
            self._queue.put_nowait(_Outgoing([message], None))

    def _require_connected(self) -> None:
        if not self.connected:
            raise ServerUnavailableError(self.peer.identity, self.last_error or "not connected")

    async def close(self) -> None:
        """Stop reconnecting and close the channel."""
        self._closed = True
        call, self._call = self._call, None
        if call is not None:
            call.cancel()
        if self._pinned is not None:
            await self._pinned.channel.close()


def _settle(item: _Outgoing, error: Exception | None) -> None:
    """Complete a queued message's future, unless nobody waits any more."""
    if item.done is None or item.done.done():
        return
    if error is None:
        item.done.set_result(None)
    else:
        item.done.set_exception(error)
