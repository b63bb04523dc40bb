"""A server sends its peer messages only to the holder of that peer's certificate.

The servers' outgoing peer links used to check the peer they dial as
gRPC does: a DNS name and a chain as BoringSSL checks it, which accepts a
chain through a CA-issued certificate that carries CA:TRUE and knows
nothing of the identity URI or the revocation list. Now each link checks
the peer first (``mpc_server/transport/peer_identity.py``: TLS 1.3, the
chain with OpenSSL, a leaf the CA issued directly, ``urn:mpc:server:<id>``,
not revoked) and pins its channel to that certificate. Here server-1 is
stopped and an impostor (a real gRPC server with a certificate the CA, or a
rogue intermediate, signed) listens at server-1's address, answering the
peer API as server-1 would; server-0 and server-2 must not talk to it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from mpc_cli.certs import ensure_revocation_list
from mpc_cli.local_cluster import LocalCluster
from mpc_cli.main import main
from mpc_client import Grant, _jobs
from mpc_core.version import PROTOCOL_VERSION
from mpc_proto.v1 import client_service_pb2 as pb
from mpc_proto.v1 import client_service_pb2_grpc as pb_grpc
from mpc_proto.v1 import peer_service_pb2 as peer_pb
from mpc_proto.v1 import peer_service_pb2_grpc as peer_grpc

from . import pki
from .conftest import CLIENTS, Identity, outcome_of, wait_for

pytestmark = pytest.mark.e2e
SERVER_1 = ["urn:mpc:server:server-1"]
BOTH = ("server", "client")
MUL = "elementwise.multiply"
_REFUSED_REVOKED = "has been revoked; nothing is sent to it"
SETTLE = 20.0
"""How long the servers may take to react (reconnection backoff, revocation reload, a loaded machine)."""


def _port_free(address: str) -> bool:
    """Whether nothing listens on ``address`` any more (as the server's own start-up probe binds)."""
    host, _, port = address.rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, int(port)))
        except OSError:
            return False
    return True


class RevocableCluster(LocalCluster):
    """A local cluster whose cluster file names a revocation list (``certs/revoked.txt``)."""

    def prepare(self) -> None:
        super().prepare()
        text = self.cluster_file.read_text()
        line = 'revoked = "certs/revoked.txt"'
        self.cluster_file.write_text(text.replace('ca = "certs/ca.pem"\n', f'ca = "certs/ca.pem"\n{line}\n'))
        ensure_revocation_list(self.cert_dir / "revoked.txt")


class _FakeServer1(peer_grpc.PeerServiceServicer):
    """Answers the peer API as server-1 would, and counts what it is sent."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.handshakes = 0
        self.streams = 0
        self.open_streams = 0
        self.messages = 0

    def Handshake(self, request: peer_pb.HandshakeRequest, context: grpc.ServicerContext) -> Any:
        with self.lock:
            self.handshakes += 1
        return peer_pb.HandshakeResponse(
            protocol_version=PROTOCOL_VERSION,
            party=1,
            cluster_fingerprint=request.cluster_fingerprint,
            software_version="impostor",
        )

    def Exchange(self, request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Any:
        with self.lock:
            self.streams += 1
            self.open_streams += 1
        try:
            for _ in request_iterator:
                with self.lock:
                    self.messages += 1
        finally:
            with self.lock:
                self.open_streams -= 1
        return peer_pb.ExchangeResponse()

    def reset(self) -> None:
        with self.lock:
            self.handshakes = self.streams = self.messages = 0

    def seen(self) -> tuple[int, int, int]:
        with self.lock:
            return self.handshakes, self.streams, self.messages


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RevocableCluster]:
    local = RevocableCluster(tmp_path_factory.mktemp("peer-identity"), clients=CLIENTS, log_level="INFO")
    local.start()
    with local.client("model-owner") as owner:
        owner.upload("v", np.arange(10.0), grants=[Grant("model-owner", MUL)])
    yield local
    local.stop()


@pytest.fixture
def at_server_1(cluster: RevocableCluster) -> Iterator[Callable[[Identity], _FakeServer1]]:
    """Stop server-1; ``serve(identity)`` starts an impostor at its address. Restores server-1 afterwards."""
    cluster.kill(1)
    servers: list[grpc.Server] = []

    def serve(identity: Identity) -> _FakeServer1:
        fake = _FakeServer1()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        peer_grpc.add_PeerServiceServicer_to_server(fake, server)
        credentials = grpc.ssl_server_credentials(
            [(identity.key, identity.cert)],
            root_certificates=(cluster.cert_dir / "ca.pem").read_bytes(),
            require_client_auth=True,
        )
        server.add_secure_port(cluster.addresses[1], credentials)
        server.start()
        servers.append(server)
        return fake

    yield serve
    for server in servers:
        server.stop(0).wait()
    # The real server-1 refuses to start on a port still held: wait until the impostor has let go.
    assert wait_for(lambda: _port_free(cluster.addresses[1]), SETTLE), "the impostor still holds the port"
    cluster.start_server(1)
    cluster.wait_ready()


def _as_server_0(cluster: LocalCluster) -> grpc.ChannelCredentials:
    certs = cluster.cert_dir
    return grpc.ssl_channel_credentials(
        (certs / "ca.pem").read_bytes(),
        (certs / "server-0.key").read_bytes(),
        (certs / "server-0.pem").read_bytes(),
    )


def _grpc_alone_handshakes(cluster: LocalCluster) -> grpc.StatusCode:
    """What a link checking as gRPC does (DNS name server-1, BoringSSL chain) gets at server-1's address."""
    options = [("grpc.ssl_target_name_override", "server-1")]
    with grpc.secure_channel(cluster.addresses[1], _as_server_0(cluster), options=options) as channel:
        request = peer_pb.HandshakeRequest(protocol_version=PROTOCOL_VERSION, party=0)
        return outcome_of(1, lambda: peer_grpc.PeerServiceStub(channel).Handshake(request, timeout=5)).code


def _client_stub(cluster: LocalCluster, index: int) -> tuple[grpc.Channel, pb_grpc.ClientServiceStub]:
    certs = cluster.cert_dir
    creds = grpc.ssl_channel_credentials(
        (certs / "ca.pem").read_bytes(),
        (certs / "model-owner.key").read_bytes(),
        (certs / "model-owner.pem").read_bytes(),
    )
    options = [("grpc.ssl_target_name_override", f"server-{index}")]
    channel = grpc.secure_channel(cluster.addresses[index], creds, options=options)
    return channel, pb_grpc.ClientServiceStub(channel)


def _log(cluster: LocalCluster, index: int, since: int = 0) -> str:
    """Server ``index``'s log from character ``since`` on."""
    return cluster.log_path(index).read_text(errors="replace")[since:]


def _marks(cluster: LocalCluster) -> dict[int, int]:
    """Where the logs of server-0 and server-2 end now (the module's tests share them)."""
    return {index: len(_log(cluster, index)) for index in (0, 2)}


def _revoke(cluster: LocalCluster, identity: Identity, directory: Path) -> None:
    cert, _ = identity.write(directory, "to-revoke")
    assert main(["certs", "revoke", "--cert", str(cert), "--cluster", str(cluster.cluster_file)]) == 0


def _forged(cluster: LocalCluster, case: str, tmp_path: Path) -> Identity:
    ca = pki.cluster_ca(cluster.cert_dir)
    names = ["server-1", "localhost"]
    if case == "a server-1 certificate signed by a CA-issued CA:TRUE leaf":
        rogue = pki.rogue_intermediate(cluster.cert_dir, "urn:mpc:server:server-2", BOTH)
        return pki.issue(rogue, uris=SERVER_1, dns=names, usages=BOTH, name="server-1").identity
    if case == "server-1's DNS name on a certificate of server-2":
        return pki.issue(ca, uris=["urn:mpc:server:server-2"], dns=names, usages=BOTH).identity
    if case == "a server-1 certificate that is a CA (CA:TRUE)":
        return pki.issue(ca, uris=SERVER_1, dns=names, usages=BOTH, ca=True).identity
    assert case == "a revoked server-1 certificate"
    revoked = pki.issue(ca, uris=SERVER_1, dns=names, usages=BOTH, name="server-1").identity
    _revoke(cluster, revoked, tmp_path)
    time.sleep(1.2)  # the servers look at the list at most once a second
    return revoked


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        (
            "a server-1 certificate signed by a CA-issued CA:TRUE leaf",
            "fails verification against the cluster CA",
        ),
        (
            "server-1's DNS name on a certificate of server-2",
            "presented the certificate of urn:mpc:server:server-2",
        ),
        ("a server-1 certificate that is a CA (CA:TRUE)", "CA"),
        ("a revoked server-1 certificate", "has been revoked"),
    ],
)
def test_a_misissued_or_revoked_server_1_certificate_gets_no_peer_messages(
    cluster: RevocableCluster,
    at_server_1: Callable[[Identity], _FakeServer1],
    tmp_path: Path,
    case: str,
    reason: str,
) -> None:
    marks = _marks(cluster)
    fake = at_server_1(_forged(cluster, case, tmp_path))
    # What gRPC's own checks say: a link that relied on them would talk to this impostor.
    assert _grpc_alone_handshakes(cluster) == grpc.StatusCode.OK, case
    fake.reset()
    refusal = f"refusing peer server-1 at {cluster.addresses[1]}: "
    for index in (0, 2):
        refused = wait_for(lambda i=index: refusal in _log(cluster, i, marks[i]), SETTLE)
        assert refused, f"{case}: server-{index} did not refuse"
        line = next(line for line in _log(cluster, index, marks[index]).splitlines() if refusal in line)
        assert reason in line and "nothing is sent to it" in line, line
    # A job submitted meanwhile is refused at once, naming server-1; the impostor gets nothing.
    channel, stub = _client_stub(cluster, 0)
    with channel:
        spec = _jobs.job_spec(
            "model-owner", MUL, {"x": "v", "y": "v"}, receiver=None, job_id=None,
            output_fractional_bits=None, parameters=None, keep=None,
        )  # fmt: skip
        outcome = outcome_of(0, lambda: stub.RunJob(pb.RunJobRequest(job=spec), timeout=10))
        assert outcome.code == grpc.StatusCode.UNAVAILABLE and outcome.named == "server-1", str(outcome)
        time.sleep(2.0)
        info = stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=5)
    assert info.readiness == pb.READINESS_STATE_WAITING_FOR_PEERS
    assert {p.identity: p.connected for p in info.peers}["server-1"] is False
    assert fake.seen() == (0, 0, 0), (
        f"{case}: the impostor was sent (handshakes, streams, messages) {fake.seen()}"
    )


def test_a_genuine_certificate_is_accepted_and_the_link_cut_once_it_is_revoked(
    cluster: RevocableCluster, at_server_1: Callable[[Identity], _FakeServer1], tmp_path: Path
) -> None:
    ca = pki.cluster_ca(cluster.cert_dir)
    renewed = pki.issue(
        ca, uris=SERVER_1, dns=["server-1", "localhost"], usages=BOTH, name="server-1"
    ).identity
    marks = _marks(cluster)
    fake = at_server_1(renewed)
    # A certificate the CA issued to server-1 as it should: the links check it, pin it and open streams.
    assert wait_for(lambda: fake.open_streams == 2, SETTLE), fake.seen()
    _revoke(cluster, renewed, tmp_path)
    closed = "the certificate of server-1 has been revoked; link closed"
    assert wait_for(lambda: fake.open_streams == 0, SETTLE), "the links to a revoked certificate stayed open"
    for index in (0, 2):
        assert wait_for(lambda i=index: closed in _log(cluster, i, marks[i]), SETTLE), f"server-{index}"
        assert wait_for(lambda i=index: _REFUSED_REVOKED in _log(cluster, i, marks[i]), SETTLE)
    before = fake.seen()
    time.sleep(2.0)  # no heartbeat, no reconnection, no message
    assert fake.seen() == before
