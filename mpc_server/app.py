"""The composition root: builds one server from its configuration and runs it.

This is the only module that knows every concrete class. It loads and checks
the TLS material, wires storage, services, the peer links, the channel and
the servicers together, exposes ``grpc.health.v1`` (NOT_SERVING until both
peers are connected and verified) and server reflection, and shuts down
gracefully on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import os
import signal
import socket

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from mpc_core.errors import ConfigError
from mpc_core.identity import Role
from mpc_core.types import PARTIES, PartyId
from mpc_core.version import PROTOCOL_VERSION, SOFTWARE_VERSION
from mpc_proto.v1 import alignment_service_pb2 as alignment_pb
from mpc_proto.v1 import client_service_pb2 as client_pb
from mpc_proto.v1 import peer_service_pb2 as peer_pb
from mpc_server.api import convert
from mpc_server.api.alignment_servicer import AlignmentServicer
from mpc_server.api.client_servicer import ClientServicer
from mpc_server.config import ServerConfig
from mpc_server.observability import ServerMetrics, TransportReadings
from mpc_server.protocol.mailbox import Mailbox
from mpc_server.service.alignment import AlignmentService
from mpc_server.service.audit import AuditLog
from mpc_server.service.catalog import Catalog
from mpc_server.service.commit import CommitPause
from mpc_server.service.commit_journal import CommitJournal
from mpc_server.service.grant_book import GrantBook
from mpc_server.service.job_plan import JobPlanner
from mpc_server.service.jobs import JobService, JobServices
from mpc_server.service.key_store import KeyStore
from mpc_server.service.output_store import FileOutputStore
from mpc_server.service.outputs import OutputService
from mpc_server.service.programs import default_programs
from mpc_server.service.storage_state import StorageState
from mpc_server.service.store import FileDatasetStore
from mpc_server.service.upload_commits import UploadCommits
from mpc_server.service.uploads import UploadService
from mpc_server.transport import tls
from mpc_server.transport.auth import RoleInterceptor, authenticate, require_role
from mpc_server.transport.peer_channel import DEFAULT_MAX_MESSAGE_WORDS, GrpcPeerChannel, Inbound
from mpc_server.transport.peer_identity import PeerIdentityCheck
from mpc_server.transport.peer_link import LinkTiming, PeerLink
from mpc_server.transport.peer_outcomes import PeerOutcomeClient
from mpc_server.transport.peer_servicer import PeerServicer
from mpc_server.transport.registration import add_servicer
from mpc_server.transport.tasks import cancel_and_wait

_log = logging.getLogger(__name__)
SERVICE_NAMES = (
    client_pb.DESCRIPTOR.services_by_name["ClientService"].full_name,
    peer_pb.DESCRIPTOR.services_by_name["PeerService"].full_name,
    alignment_pb.DESCRIPTOR.services_by_name["AlignmentService"].full_name,
)
_SWEEP_SECONDS = 30.0
STORAGE_HEALTH_SERVICE = "mpc.v1.Storage"
"""grpc.health.v1 name under which a server reports whether it can store shares."""
_STORAGE_POLL_SECONDS = 5.0
_STREAM_GRACE_SECONDS = 1.0


class MpcServer:
    """One party of the cluster, assembled from a :class:`ServerConfig`."""

    def __init__(self, config: ServerConfig) -> None:
        """Load credentials and build every component (nothing runs yet)."""
        self.config = config
        self.endpoint = config.endpoint
        self.material = tls.load_tls(config.cert, config.key, config.cluster.ca_path)
        principal = self.material.info.principal
        if principal.role is not Role.SERVER or principal.name != self.endpoint.identity:
            raise ConfigError(
                f"certificate {config.cert} is for {principal.uri}, but this is "
                f"server {self.endpoint.identity}"
            )
        self.verifier = tls.peer_verifier(self.material, config.cluster)
        self.fingerprint = config.cluster.fingerprint(self.material.ca_pem)
        names = {party: config.cluster.server(party).identity for party in PARTIES}
        self.peers = tuple(p for p in PARTIES if p != self.endpoint.party)
        self.mailbox = Mailbox(names)
        self.inbound = Inbound(self.mailbox, names, DEFAULT_MAX_MESSAGE_WORDS)
        self._changed = asyncio.Event()
        self.links = {peer: self._link(peer) for peer in self.peers}
        self.channel = GrpcPeerChannel(self.endpoint.party, names, self.links, self.mailbox, self.inbound)
        programs = default_programs()
        self.programs = [convert.program_info(p) for p in programs.values()]
        self.storage = StorageState(config.data_dir, self.endpoint.identity)
        datasets = FileDatasetStore(config.data_dir, storage=self.storage)
        grants = GrantBook(config.data_dir)
        self.audit = AuditLog(config.data_dir)
        self.output_store = FileOutputStore(config.data_dir, config.outputs, storage=self.storage)
        self.metrics = ServerMetrics(self._readings())
        self.keys = KeyStore(config.data_dir)
        self.output_keys = KeyStore(config.data_dir, subdir="output-keys")
        planner = JobPlanner(datasets, grants, programs, config.cluster.ring, keys=self.keys)
        self.jobs = JobService(
            self.channel,
            JobServices(planner, datasets, grants, self.output_store, self.audit, self.output_keys),
            config.jobs,
            observer=self.metrics,
            unready_peer=self.unready_peer,
        )
        self.outputs = OutputService(self.output_store, on_activity=self.jobs.activity, keys=self.output_keys)
        self.alignments = AlignmentService(self.channel)
        identity = PeerIdentityCheck(self.material, self.verifier.revocation)
        self.peer_outcomes = PeerOutcomeClient({p: config.cluster.server(p) for p in self.peers}, identity)
        journal = CommitJournal(config.data_dir, datasets, self.keys)  # MPC_TEST_PAUSE_AT: test-only
        pause = CommitPause.from_environment(os.environ)
        self.commits = UploadCommits(journal, datasets, self.channel, self.peer_outcomes, pause=pause)
        self.uploads = UploadService(
            datasets,
            self.channel,
            programs,
            config.cluster.ring,
            config.uploads,
            grants=grants,
            keys=self.keys,
            commits=self.commits,
        )
        self.catalog = Catalog(datasets, grants, self.audit, programs, config.uploads.max_grants)
        self.health = health_aio.HealthServicer()
        self.peer_servicer = PeerServicer(
            self.endpoint,
            config.cluster,
            self.fingerprint,
            authenticate=authenticate,
            inbound=self.inbound,
            on_change=self._changed.set,
            upload_outcome=self.commits.outcome,
        )
        self.server = self._grpc_server()
        self._tasks: list[asyncio.Task[None]] = []
        self.port = 0
        self.metrics_port = 0

    def _readings(self) -> TransportReadings:
        names = {party: self.config.cluster.server(party).identity for party in self.peers}
        loop = asyncio.get_running_loop()
        return TransportReadings(
            peer_bytes_sent=lambda: {link.peer.identity: link.bytes_sent for link in self.links.values()},
            peer_bytes_received=lambda: {names[p]: self.inbound.bytes_received[p] for p in self.peers},
            peers_connected=lambda: {link.peer.identity: link.connected for link in self.links.values()},
            client_bytes=lambda: (self.client_servicer.traffic.received, self.client_servicer.traffic.sent),
            uploads=lambda: (
                self.client_servicer.traffic.uploads,
                self.client_servicer.traffic.failed_uploads,
            ),
            stored_output_bytes=lambda: self.output_store.stored_bytes,
            mailbox=lambda: (self.mailbox.open_jobs, self.mailbox.buffered_bytes),
            running_jobs=lambda: self.jobs.running,
            asyncio_tasks=lambda: len(asyncio.all_tasks(loop)),
        )

    def _link(self, peer: PartyId) -> PeerLink:
        endpoint = self.config.cluster.server(peer)
        hello = peer_pb.HandshakeRequest(
            protocol_version=PROTOCOL_VERSION,
            party=self.endpoint.party,
            cluster_fingerprint=self.fingerprint,
            software_version=SOFTWARE_VERSION,
        )
        return PeerLink(
            endpoint,
            PeerIdentityCheck(self.material, self.verifier.revocation),  # checked and pinned before use
            tls.channel_options(endpoint.identity),
            hello,
            timing=LinkTiming(connect_timeout=self.config.connect_timeout),
            activity=lambda: self.inbound.bytes_received[peer],  # what arrives from the peer is progress
            on_change=self._changed.set,
            on_lost=lambda reason: self.inbound.peer_lost(peer, f"link to the peer lost: {reason}"),
        )

    def _grpc_server(self) -> grpc.aio.Server:
        policy = {
            SERVICE_NAMES[0]: require_role(Role.CLIENT),
            SERVICE_NAMES[1]: require_role(Role.SERVER, self.config.cluster.identities),
            SERVICE_NAMES[2]: require_role(Role.CLIENT),
        }
        interceptor = RoleInterceptor(policy, self.verifier)
        server = grpc.aio.server(interceptors=[interceptor], options=tls.SERVER_OPTIONS)
        self.client_servicer = ClientServicer(
            self.uploads,
            self.jobs,
            self.outputs,
            self.catalog,
            server_info=self.server_info,
            authenticate=authenticate,
        )
        add_servicer(
            server,
            self.client_servicer,
            client_pb.DESCRIPTOR.services_by_name["ClientService"],
            raw_requests={"UploadDataset"},
            raw_responses={"FetchOutput"},
        )
        add_servicer(
            server,
            self.peer_servicer,
            peer_pb.DESCRIPTOR.services_by_name["PeerService"],
            raw_requests={"Exchange"},
        )
        add_servicer(
            server,
            AlignmentServicer(self.alignments, authenticate),
            alignment_pb.DESCRIPTOR.services_by_name["AlignmentService"],
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        return server

    @property
    def ready(self) -> bool:
        """Both peers are connected in both directions."""
        return self.unready_peer() is None

    def unready_peer(self) -> str | None:
        """The identity of a peer we cannot exchange messages with, if any."""
        for peer, link in self.links.items():
            if not link.connected or not self.peer_servicer.inbound_streams[peer]:
                return link.peer.identity
        return None

    def server_info(self) -> client_pb.GetServerInfoResponse:
        """What ``GetServerInfo`` reports."""
        readiness = (
            client_pb.READINESS_STATE_READY if self.ready else client_pb.READINESS_STATE_WAITING_FOR_PEERS
        )
        return client_pb.GetServerInfoResponse(
            identity=self.endpoint.identity,
            party=self.endpoint.party,
            software_version=SOFTWARE_VERSION,
            protocol_version=PROTOCOL_VERSION,
            fractional_bits=self.config.cluster.fractional_bits,
            ring=convert.RING_ENUM[self.config.cluster.ring.bits],
            readiness=readiness,
            peers=[
                client_pb.PeerStatus(identity=link.peer.identity, connected=link.connected)
                for link in self.links.values()
            ],
            programs=self.programs,
            storage=self._storage_status(),
        )

    def _storage_status(self) -> client_pb.StorageStatus:
        problems = self.storage.problems()
        state = client_pb.STORAGE_STATE_PROBLEM if problems else client_pb.STORAGE_STATE_OK
        return client_pb.StorageStatus(state=state, problems=problems)

    async def start(self) -> int:
        """Bind the listening address, start serving and connect to the peers."""
        _check_free(self.config.listen)
        try:
            self.port = self.server.add_secure_port(self.config.listen, tls.server_credentials(self.material))
        except RuntimeError as exc:
            raise ConfigError(f"cannot listen on {self.config.listen}: {exc}") from None
        await self.commits.start()  # recover uploads left prepared or committed by a crash, before serving
        await self.server.start()
        if self.config.metrics_address:
            self.metrics_port = self.metrics.serve(self.config.metrics_address)
            _log.info("metrics on http://%s/metrics", self.config.metrics_address)
        await self._publish_health()
        self._tasks = [
            asyncio.create_task(link.run(), name=f"link to {link.peer.identity}")
            for link in self.links.values()
        ]
        self._tasks += [
            asyncio.create_task(self._watch_health(), name="health"),
            asyncio.create_task(self._sweep(), name="sweep"),
            asyncio.create_task(self._watch_storage(), name="storage"),
        ]
        _log.info(
            "%s listening on %s (party %d)", self.endpoint.identity, self.config.listen, self.endpoint.party
        )
        return self.port

    async def _publish_health(self) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if self.ready
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("", *SERVICE_NAMES):
            await self.health.set(service, status)
        await self._publish_storage()

    async def _publish_storage(self) -> bool:
        """Report the storage in grpc.health.v1 (``mpc.v1.Storage``); True if it is fine."""
        fine = not self.storage.problems()
        serving = health_pb2.HealthCheckResponse.SERVING
        await self.health.set(
            STORAGE_HEALTH_SERVICE, serving if fine else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        return fine

    async def _watch_storage(self) -> None:
        """Measure free space now and then (off the loop); log and publish every change."""
        was_fine = True
        while True:
            await asyncio.to_thread(self.storage.refresh)
            fine = await self._publish_storage()
            if fine != was_fine:
                was_fine = fine
                problems = "; ".join(self.storage.problems()) or "storage is fine again"
                (_log.info if fine else _log.error)("%s storage: %s", self.endpoint.identity, problems)
            await asyncio.sleep(_STORAGE_POLL_SECONDS)

    async def _watch_health(self) -> None:
        was_ready = None
        while True:
            await self._changed.wait()
            self._changed.clear()
            await self._publish_health()
            if self.ready != was_ready:
                was_ready = self.ready
                state = "ready: both peers connected" if self.ready else "waiting for peers"
                _log.info("%s %s", self.endpoint.identity, state)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(_SWEEP_SECONDS)
            self.mailbox.sweep(self.config.jobs.max_seconds + _SWEEP_SECONDS)
            self.output_store.expire()
            await asyncio.to_thread(self.jobs.sweep_row_tokens)  # those of expired outputs
            gc.collect()  # reference cycles may hold mapped files of replaced datasets

    async def stop(self, grace: float = 10.0) -> None:
        """Drain gracefully, then close every call and link.

        Health turns NOT_SERVING, new jobs are refused, and running jobs get up
        to ``grace`` seconds to finish.
        """
        await self.health.enter_graceful_shutdown()
        self.jobs.start_draining()
        if not await self.jobs.wait_idle(grace):
            _log.warning("%d job(s) still running after %.0f s; cancelling them", self.jobs.running, grace)
        stuck = await cancel_and_wait(self._tasks, timeout=_STREAM_GRACE_SECONDS)
        if stuck:
            _log.warning("background tasks did not stop: %s", ", ".join(sorted(t.get_name() for t in stuck)))
        # Close our streams first, so that peers shutting down too see theirs
        # end normally within the server's short grace period.
        for link in self.links.values():
            await link.close()
        await self.peer_servicer.close_streams(_STREAM_GRACE_SECONDS)
        await self.server.stop(_STREAM_GRACE_SECONDS)
        await self.commits.stop()
        await self.peer_outcomes.close()
        await self.audit.sync()
        self.audit.close()
        self.metrics.stop()


def _check_free(address: str) -> None:
    """Refuse, with words a person reads, to start on an address another process listens on."""
    host, _, port = address.rpartition(":")
    if not port.isdigit() or int(port) == 0:
        return
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # fails only on a live listener
        try:
            probe.bind((host.strip("[]") or "0.0.0.0", int(port)))  # noqa: S104 - only a probe, closed at once
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"cannot listen on {address}: address already in use") from None


async def serve(config: ServerConfig) -> None:
    """Run a server until SIGTERM or SIGINT, then shut it down gracefully."""
    server = MpcServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
    await stop.wait()
    _log.info("%s shutting down", server.endpoint.identity)
    await server.stop()
    _log.info("%s stopped", server.endpoint.identity)
