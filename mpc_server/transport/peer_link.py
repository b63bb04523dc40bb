"""The outbound half of a server-to-server connection.

A :class:`PeerLink` keeps one mutually authenticated gRPC channel to one
peer. It handshakes (protocol version, party index, cluster fingerprint),
then holds a long-lived ``PeerService.Exchange`` stream on which every
protocol message to that peer travels, in chunks of at most
``chunk_words`` words. When the stream breaks (the peer died, restarted or
the network failed) the link reconnects with backoff; while it is down,
sends fail at once with :class:`ServerUnavailableError` naming the peer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc

from mpc_core.cluster import ServerEndpoint
from mpc_core.errors import ServerUnavailableError
from mpc_core.ring import RingArray, to_wire
from mpc_core.types import MessageTag
from mpc_proto.v1 import peer_service_pb2 as pb
from mpc_proto.v1 import peer_service_pb2_grpc as pb_grpc

_log = logging.getLogger(__name__)

DEFAULT_CHUNK_WORDS = 1 << 18
"""Words per Exchange message: 2 MiB of payload, under gRPC's 4 MiB default limit."""

_RETRY_DELAY = 0.2


class PeerLink:
    """Our connection to one peer server, kept up until :meth:`close`."""

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
    ) -> None:
        """Prepare (but do not start) the link to ``peer``."""
        self.peer = peer
        self._channel = grpc.aio.secure_channel(peer.address, credentials, options=options)
        self._stub = pb_grpc.PeerServiceStub(self._channel)
        self._hello = hello
        self._connect_timeout = connect_timeout
        self._chunk_words = chunk_words
        self._on_change = on_change
        self._call: grpc.aio.StreamUnaryCall[pb.ExchangeRequest, pb.ExchangeResponse] | None = None
        self._lock = asyncio.Lock()
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
                self._down("link closed")
                raise
            if not self._closed:
                await asyncio.sleep(_RETRY_DELAY)

    async def _connect_once(self) -> None:
        reply = await self._stub.Handshake(self._hello, timeout=self._connect_timeout, wait_for_ready=True)
        self.peer_version = reply.software_version
        call = self._stub.Exchange()
        await call.wait_for_connection()
        self._call = call
        self.last_error = ""
        _log.info("connected to peer %s (party %d)", self.peer.identity, self.peer.party)
        self._on_change()
        try:
            await call
        finally:
            self._down("connection lost")

    def _down(self, reason: str) -> None:
        was_connected = self._call is not None
        self._call = None
        self.last_error = reason
        if was_connected:
            _log.warning("lost peer %s: %s", self.peer.identity, reason)
            self._on_change()

    async def send(self, tag: MessageTag, words: RingArray) -> None:
        """Send one protocol message, chunked, in order with other sends."""
        total = int(words.size)
        async with self._lock:
            call = self._require_call()
            for offset in range(0, max(total, 1), self._chunk_words):
                payload = to_wire(words[offset : offset + self._chunk_words])
                chunk = pb.DataChunk(offset=offset, total_words=total, payload=payload)
                message = pb.ExchangeRequest(job_id=tag.job_id, op=tag.op, data=chunk)
                await self._write(call, message)
                self.bytes_sent += message.ByteSize()

    async def send_abort(self, job_id: str, reason: str) -> None:
        """Tell the peer we gave up on ``job_id`` (best effort, never raises)."""
        if self._call is None:
            return
        message = pb.ExchangeRequest(job_id=job_id, abort=pb.JobAbort(reason=reason[:1000]))
        try:
            async with self._lock:
                await self._write(self._require_call(), message)
        except ServerUnavailableError:
            pass

    def _require_call(self) -> grpc.aio.StreamUnaryCall[pb.ExchangeRequest, pb.ExchangeResponse]:
        if self._call is None:
            raise ServerUnavailableError(self.peer.identity, self.last_error or "not connected")
        return self._call

    async def _write(
        self,
        call: grpc.aio.StreamUnaryCall[pb.ExchangeRequest, pb.ExchangeResponse],
        message: pb.ExchangeRequest,
    ) -> None:
        try:
            await call.write(message)
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError) as exc:
            self._down("connection lost while sending")
            raise ServerUnavailableError(self.peer.identity, "connection lost while sending") from exc

    async def close(self) -> None:
        """Stop reconnecting and close the channel."""
        self._closed = True
        call, self._call = self._call, None
        if call is not None:
            call.cancel()
        await self._channel.close()
