"""The peer API: handshakes and the inbound half of server-to-server streams.

Only the cluster's other servers get here (``RoleInterceptor``). The
handshake refuses a peer whose party index, protocol version or cluster
fingerprint differs, with a message saying which. ``Exchange`` feeds the
caller's stream into :class:`Inbound`; the sender is the identity of the
caller's certificate, never a field of the message. ``UploadOutcome``
answers a peer that settles an upload's commit after a failure with what
this server knows of it (``service.commit``).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from mpc_core.cluster import ClusterConfig, ServerEndpoint
from mpc_core.errors import FailedPreconditionError, InvalidArgumentError, PermissionDeniedError
from mpc_core.identity import Principal, validate_name
from mpc_core.types import PartyId
from mpc_core.version import PROTOCOL_VERSION, SOFTWARE_VERSION
from mpc_proto.v1 import peer_service_pb2 as pb
from mpc_proto.v1 import peer_service_pb2_grpc as pb_grpc
from mpc_server.transport import exchange_codec
from mpc_server.transport.peer_channel import Inbound
from mpc_server.transport.status import unary_errors

_log = logging.getLogger(__name__)
_Context = grpc.aio.ServicerContext[Any, Any]
UPLOAD_ID_BYTES = 16
UploadOutcomeQuery = Callable[[str, str, bytes], str]
"""``(owner, name, upload id) -> outcome`` ("unknown", "pending", "prepared" or "committed")."""
OUTCOMES = {
    "unknown": pb.UPLOAD_OUTCOME_UNKNOWN,
    "pending": pb.UPLOAD_OUTCOME_PENDING,
    "prepared": pb.UPLOAD_OUTCOME_PREPARED,
    "committed": pb.UPLOAD_OUTCOME_COMMITTED,
}


def _pending(owner: str, name: str, upload_id: bytes) -> str:
    """Without a commit service nothing is known: the asker must ask again (never decide on it)."""
    return "pending"


class PeerServicer(pb_grpc.PeerServiceServicer):
    """Serves the peer API of one server."""

    def __init__(
        self,
        local: ServerEndpoint,
        cluster: ClusterConfig,
        fingerprint: bytes,
        *,
        authenticate: Callable[[_Context], Principal],
        inbound: Inbound,
        on_change: Callable[[], None] = lambda: None,
        upload_outcome: UploadOutcomeQuery = _pending,
    ) -> None:
        """Serve as ``local`` of ``cluster``; deliver streams into ``inbound``; answer ``upload_outcome``."""
        self._local = local
        self._cluster = cluster
        self._fingerprint = fingerprint
        self._authenticate = authenticate
        self._inbound = inbound
        self._on_change = on_change
        self._upload_outcome = upload_outcome
        self.inbound_streams: dict[PartyId, int] = {s.party: 0 for s in cluster.servers if s != local}
        self._streams: set[asyncio.Task[Any]] = set()
        self._closing = False

    def _caller(self, context: _Context) -> ServerEndpoint:
        endpoint = self._cluster.by_identity(self._authenticate(context).name)
        if endpoint.party == self._local.party:
            raise PermissionDeniedError("a server cannot be its own peer")
        return endpoint

    @unary_errors
    async def Handshake(self, request: pb.HandshakeRequest, context: _Context) -> pb.HandshakeResponse:
        """Check the caller's versions and cluster, and answer with ours."""
        caller = self._caller(context)
        if request.party != caller.party:
            raise FailedPreconditionError(
                f"{caller.identity} claims party {request.party}, but is party {caller.party}"
            )
        if request.protocol_version != PROTOCOL_VERSION:
            raise FailedPreconditionError(
                f"{caller.identity} speaks protocol version {request.protocol_version}, "
                f"{self._local.identity} speaks {PROTOCOL_VERSION}"
            )
        if not hmac.compare_digest(request.cluster_fingerprint, self._fingerprint):
            raise FailedPreconditionError(
                f"{caller.identity} and {self._local.identity} use different cluster files "
                "(server list, ring, fractional_bits or CA differ)"
            )
        return pb.HandshakeResponse(
            protocol_version=PROTOCOL_VERSION,
            party=self._local.party,
            cluster_fingerprint=self._fingerprint,
            software_version=SOFTWARE_VERSION,
        )

    @unary_errors
    async def UploadOutcome(
        self, request: pb.UploadOutcomeRequest, context: _Context
    ) -> pb.UploadOutcomeResponse:
        """What this server knows of an upload (for a peer settling its commit)."""
        self._caller(context)
        if len(request.upload_id) != UPLOAD_ID_BYTES:
            raise InvalidArgumentError(f"upload_id must be {UPLOAD_ID_BYTES} bytes")
        owner = validate_name(request.owner, "dataset owner")
        name = validate_name(request.name, "dataset name")
        outcome = self._upload_outcome(owner, name, bytes(request.upload_id))
        return pb.UploadOutcomeResponse(outcome=OUTCOMES[outcome])

    @unary_errors
    async def Exchange(  # type: ignore[override]  # raw bytes: see transport.registration
        self, request_iterator: AsyncIterator[bytes], context: _Context
    ) -> pb.ExchangeResponse:
        """Deliver every message of the caller's stream until it ends.

        Messages arrive as bytes and are decoded by ``exchange_codec``; a
        malformed one ends the stream with ``INVALID_ARGUMENT``.
        """
        sender = self._caller(context).party
        task = asyncio.current_task()
        if task is not None:
            self._streams.add(task)
        # Messages of jobs already open may have been lost with an earlier
        # stream from this peer: fail those jobs now rather than at their deadline.
        self._inbound.peer_lost(sender, "the peer reconnected; messages of earlier jobs may be lost")
        self.inbound_streams[sender] += 1
        self._on_change()
        try:
            async for message in request_iterator:
                self._inbound.accept(sender, exchange_codec.decode(message))
        except asyncio.CancelledError:
            if task is None or not self._closing:
                raise
            task.uncancel()  # ended by close_streams: answer normally
        finally:
            self._streams.discard(task)
            self.inbound_streams[sender] -= 1
            if not self.inbound_streams[sender]:
                self._inbound.peer_lost(sender)
            self._on_change()
        return pb.ExchangeResponse()

    async def close_streams(self, timeout: float) -> None:
        """End every inbound stream normally (at shutdown), waiting up to ``timeout`` s."""
        self._closing = True
        for task in list(self._streams):
            task.cancel()
        deadline = asyncio.get_running_loop().time() + timeout
        while self._streams and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
