"""Asking a peer what it knows of an upload (``PeerService.UploadOutcome``), for ``service.commit``.

A server settling an upload's commit after a failure asks both peers; this
client keeps one mutually authenticated channel per peer for that (apart
from the peer links' streams, which carry protocol messages). As for the
peer links, the peer's certificate is checked and pinned first
(:class:`PeerIdentityCheck`), again whenever a call failed. Every call has a deadline; a peer that cannot
be asked is :class:`ServerUnavailableError` naming it, and the caller asks
again later.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc

from mpc_core.cluster import ServerEndpoint
from mpc_core.errors import ProtocolError, ServerUnavailableError
from mpc_core.types import PartyId
from mpc_proto.v1 import peer_service_pb2 as pb
from mpc_proto.v1 import peer_service_pb2_grpc as pb_grpc
from mpc_server.transport import tls
from mpc_server.transport.peer_identity import PeerIdentityCheck
from mpc_server.transport.peer_servicer import OUTCOMES

_NAMES = {number: name for name, number in OUTCOMES.items()}


class PeerOutcomeClient:
    """Asks the peers about uploads over the peer API."""

    def __init__(self, peers: Mapping[PartyId, ServerEndpoint], identity: PeerIdentityCheck) -> None:
        """Ask ``peers``, checked by ``identity``; a channel to each is opened on first use."""
        self._peers = dict(peers)
        self._identity = identity
        self._channels: dict[PartyId, grpc.aio.Channel] = {}

    async def _stub(self, party: PartyId, timeout: float) -> pb_grpc.PeerServiceAsyncStub:
        channel = self._channels.get(party)
        if channel is None:
            peer = self._peers[party]
            credentials = self._identity.credentials(await self._identity.check(peer, timeout))
            channel = grpc.aio.secure_channel(
                peer.address, credentials, options=tls.channel_options(peer.identity)
            )
            self._channels[party] = channel
        return pb_grpc.PeerServiceStub(channel)

    async def ask(self, party: PartyId, owner: str, name: str, upload_id: bytes, timeout: float) -> str:
        """The peer's outcome of the upload ("unknown", "pending", "prepared" or "committed").

        Raises:
            ServerUnavailableError: the peer did not answer within ``timeout`` seconds.
            ProtocolError: the peer answered without an outcome.
        """
        identity = self._peers[party].identity
        request = pb.UploadOutcomeRequest(owner=owner, name=name, upload_id=upload_id)
        stub = await self._stub(party, timeout)
        try:
            reply = await stub.UploadOutcome(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            channel = self._channels.pop(party, None)
            if channel is not None:
                await channel.close()
            raise ServerUnavailableError(identity, f"{exc.code().name}: {exc.details()}") from None
        outcome = _NAMES.get(reply.outcome)
        if outcome is None:
            raise ProtocolError(f"{identity} answered an upload outcome of {reply.outcome}")
        return outcome

    async def close(self) -> None:
        """Close the channels."""
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
