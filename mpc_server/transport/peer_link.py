"""The outbound half of a server-to-server connection.

A :class:`PeerLink` keeps one mutually authenticated gRPC channel to one
peer. It handshakes (protocol version, party index, cluster fingerprint),
then holds a long-lived ``PeerService.Exchange`` stream on which every
protocol message to that peer travels, in chunks of at most
``chunk_words`` words. When the stream breaks (the peer died, restarted or
the network failed) the link reconnects with backoff; while it is down,
sends fail at once with :class:`ServerUnavailableError` naming the peer,
and a send that cannot be written in time fails with
:class:`ProtocolTimeoutError` naming it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from mpc_core.cluster import ServerEndpoint
from mpc_core.errors import ProtocolTimeoutError, ServerUnavailableError
from mpc_core.ring import Words, words_bytes
from mpc_core.types import MessageTag
from mpc_proto.v1 import peer_service_pb2 as pb
from mpc_proto.v1 import peer_service_pb2_grpc as pb_grpc
from mpc_server.transport import exchange_codec
from mpc_server.transport.tasks import cancel_and_wait

_log = logging.getLogger(__name__)

DEFAULT_CHUNK_WORDS = 1 << 18
"""Words per Exchange message: 2 MiB of payload, under gRPC's 4 MiB default limit."""
EXCHANGE_METHOD = "/mpc.v1.PeerService/Exchange"

_RETRY_DELAY = 0.2


@dataclass
class _Outgoing:
    """One protocol message (its chunks) waiting for the link's writer."""

    messages: list[bytes]
    """Encoded ``ExchangeRequest`` messages (``exchange_codec``)."""
    done: asyncio.Future[None] | None


class PeerLink:
    """Our connection to one peer server, kept up until :meth:`close`.

    A single writer task owns the stream: senders queue whole messages and
    wait (with a deadline) until they are written, so a job that gives up
    or is cancelled never cancels the stream shared by all jobs.
    """

    def __init__(
        self,
        peer: ServerEndpoint,
        credentials: grpc.ChannelCredentials,
        options: list[tuple[str, str | int]],
        hello: pb.HandshakeRequest,
        *,
        connect_timeout: float = 5.0,
        chunk_words: int = DEFAULT_CHUNK_WORDS,
        on_change: Callable[[], None] = lambda: None,
        on_lost: Callable[[str], None] = lambda reason: None,
    ) -> None:
        """Prepare (but do not start) the link to ``peer``.

        ``on_change`` is called when the link comes up or goes down,
        ``on_lost`` when an established stream is lost (with the reason).
        """
        self.peer = peer
        self._channel = grpc.aio.secure_channel(peer.address, credentials, options=options)
        self._stub = pb_grpc.PeerServiceStub(self._channel)
        # Exchange sends messages already encoded by exchange_codec (no serializer).
        self._exchange: grpc.aio.StreamUnaryMultiCallable[bytes, pb.ExchangeResponse]
        self._exchange = self._channel.stream_unary(
            EXCHANGE_METHOD, request_serializer=None, response_deserializer=pb.ExchangeResponse.FromString
        )
        self._hello = hello
        self._connect_timeout = connect_timeout
        self._chunk_words = chunk_words
        self._on_change = on_change
        self._on_lost = on_lost
        self._call: grpc.aio.StreamUnaryCall[bytes, pb.ExchangeResponse] | None = None
        self._queue: asyncio.Queue[_Outgoing] = asyncio.Queue()
        self._closed = False
        self.last_error = "not connected yet"
        self.bytes_sent = 0
        """Bytes of serialized messages sent to the peer (before TLS)."""
        self.peer_version = ""

    @property
    def connected(self) -> bool:
        """Whether the handshake succeeded and the stream is open."""
        return self._call is not None

    async def run(self) -> None:
        """Connect, and reconnect whenever the stream ends, until closed."""
        while not self._closed:
            try:
                await self._connect_once()
            except grpc.aio.AioRpcError as exc:
                self._down(f"{exc.code().name}: {exc.details()}")
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self._closed or (task is not None and task.cancelling()):
                    self._down("link closed")
                    raise
                self._down("stream cancelled")  # the call, not this task, was cancelled
            if not self._closed:
                await asyncio.sleep(_RETRY_DELAY)

    async def _connect_once(self) -> None:
        reply = await self._stub.Handshake(self._hello, timeout=self._connect_timeout, wait_for_ready=True)
        self.peer_version = reply.software_version
        call: grpc.aio.StreamUnaryCall[bytes, pb.ExchangeResponse] = self._exchange()
        await call.wait_for_connection()
        self._call = call
        self.last_error = ""
        _log.info("connected to peer %s (party %d)", self.peer.identity, self.peer.party)
        self._on_change()
        writer = asyncio.create_task(self._write_loop(call))
        try:
            await call
        finally:
            await cancel_and_wait([writer])  # our own cancellation, if any, goes on
            self._down("connection lost")

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
        if self._call is None:
            raise ServerUnavailableError(self.peer.identity, self.last_error or "not connected")

    async def close(self) -> None:
        """Stop reconnecting and close the channel."""
        self._closed = True
        call, self._call = self._call, None
        if call is not None:
            call.cancel()
        await self._channel.close()


def _settle(item: _Outgoing, error: Exception | None) -> None:
    """Complete a queued message's future, unless nobody waits any more."""
    if item.done is None or item.done.done():
        return
    if error is None:
        item.done.set_result(None)
    else:
        item.done.set_exception(error)
