"""Certificates the cluster CA really signed, but that must not get in.

tests/e2e/test_refusals.py covers no certificate, a foreign CA, a client
certificate on the peer API and a server certificate on the client API.
Here: certificates outside their validity period, a client whose name is a
server's, a server identity that is not in the cluster, certificates with
no or two identities, peers lying in the handshake, chains through a
CA-issued certificate that carries CA:TRUE, certificates without the key
usages of their role, and TLS 1.2. "Refused" means at the TLS layer
(UNAVAILABLE) or by the certificate and role checks (UNAUTHENTICATED /
PERMISSION_DENIED) before any servicer code runs, and without effect: a
job run afterwards is unaffected.
"""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mpc_cli.local_cluster import LocalCluster
from mpc_client import ConfigError, Grant, MpcClient
from mpc_core.version import PROTOCOL_VERSION
from mpc_proto.v1 import client_service_pb2 as pb
from mpc_proto.v1 import client_service_pb2_grpc as pb_grpc
from mpc_proto.v1 import peer_service_pb2 as peer_pb
from mpc_proto.v1 import peer_service_pb2_grpc as peer_grpc

from . import pki
from .conftest import OK, Identity, Outcome, Raw, forge, outcome_of

pytestmark = pytest.mark.e2e
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
PD = grpc.StatusCode.PERMISSION_DENIED
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
FP = grpc.StatusCode.FAILED_PRECONDITION
NOW = dt.datetime.now(dt.UTC)


def _handshake(
    raw: Raw, server: int, who: Identity | str, party: int = 1, fingerprint: bytes = b""
) -> Outcome:
    stub = raw.peer(server, who)
    request = peer_pb.HandshakeRequest(
        protocol_version=PROTOCOL_VERSION, party=party, cluster_fingerprint=fingerprint, software_version="x"
    )
    return outcome_of(server, lambda: stub.Handshake(request, timeout=5))


def _inject(raw: Raw, server: int, who: Identity | str, job_id: str) -> Outcome:
    """Try to push protocol messages for ``job_id`` into ``server``'s mailbox."""
    stub = raw.peer(server, who)
    messages = [
        peer_pb.ExchangeRequest(job_id=job_id, op=0, abort=peer_pb.JobAbort(reason="forged abort")),
        peer_pb.ExchangeRequest(
            job_id=job_id, op=0, data=peer_pb.DataChunk(offset=0, total_words=1, payload=bytes(8))
        ),
    ]
    return outcome_of(server, lambda: stub.Exchange(iter(messages), timeout=5))


def _job_still_runs(cluster: LocalCluster, job_id: str) -> None:
    """A job under the id the attacker targeted computes the right answer."""
    values = np.array([1.5, 2.0, -3.0])
    with cluster.client("model-owner") as owner:
        owner.upload(f"cert-{job_id}", values, grants=[Grant("model-owner", "dot")])
        _, result = owner.run_and_fetch("dot", {"x": f"cert-{job_id}", "y": f"cert-{job_id}"}, job_id=job_id)
    assert float(result) == pytest.approx(float(values @ values))


@pytest.fixture(scope="module")
def expired(secure_cluster: LocalCluster) -> Identity:
    return forge(
        secure_cluster.cert_dir,
        uris=["urn:mpc:client:bank-1"],
        not_before=NOW - dt.timedelta(days=30),
        not_after=NOW - dt.timedelta(days=1),
    )


@pytest.fixture(scope="module")
def not_yet_valid(secure_cluster: LocalCluster) -> Identity:
    return forge(
        secure_cluster.cert_dir,
        uris=["urn:mpc:client:bank-1"],
        not_before=NOW + dt.timedelta(days=1),
        not_after=NOW + dt.timedelta(days=30),
    )


@pytest.mark.parametrize("which", ["expired", "not_yet_valid"])
def test_a_certificate_outside_its_validity_is_refused_at_the_tls_layer(
    raw: Raw, request: pytest.FixtureRequest, which: str
) -> None:
    identity: Identity = request.getfixturevalue(which)
    for server in range(3):
        assert raw.info(server, identity).code == UNAVAILABLE
        assert _handshake(raw, server, identity).code == UNAVAILABLE
    # The same key pair with a current certificate gets in: the dates were the reason.
    assert raw.info(0, "bank-1").code == OK


@pytest.mark.parametrize("which", ["expired", "not_yet_valid"])
def test_the_sdk_names_a_certificate_outside_its_validity(
    secure_cluster: LocalCluster, request: pytest.FixtureRequest, tmp_path: Path, which: str
) -> None:
    identity: Identity = request.getfixturevalue(which)
    cert, key = identity.write(tmp_path, which)
    with pytest.raises(ConfigError, match=r"bank-1\) is not valid now"):
        MpcClient.connect(secure_cluster.cluster_file, cert, key)


@pytest.fixture(scope="module")
def client_named_server_0(secure_cluster: LocalCluster) -> Identity:
    return forge(secure_cluster.cert_dir, uris=["urn:mpc:client:server-0"], common_name="server-0")


def test_a_client_named_like_a_server_is_refused_on_the_peer_api(
    secure_cluster: LocalCluster, raw: Raw, client_named_server_0: Identity
) -> None:
    for server in range(3):
        outcome = _handshake(raw, server, client_named_server_0, party=0)
        assert outcome.code == PD, str(outcome)
        assert "client certificates may not call this API" in outcome.details
        assert _inject(raw, server, client_named_server_0, "cert-a").code == PD
    _job_still_runs(secure_cluster, "cert-a")


@pytest.fixture(scope="module")
def server_9(secure_cluster: LocalCluster) -> Identity:
    return forge(
        secure_cluster.cert_dir,
        uris=["urn:mpc:server:server-9"],
        dns=["server-9", "localhost"],
        ips=["127.0.0.1"],
        server_auth=True,
        common_name="server-9",
    )


def test_a_server_outside_the_cluster_is_refused_on_both_apis(
    secure_cluster: LocalCluster, raw: Raw, server_9: Identity
) -> None:
    for server in range(3):
        outcome = _handshake(raw, server, server_9, party=1)
        assert outcome.code == PD, str(outcome)
        assert "server-9 is not a server of this cluster" in outcome.details
        assert _inject(raw, server, server_9, "cert-b").code == PD
        assert raw.info(server, server_9).code == PD  # and it is no client either
    _job_still_runs(secure_cluster, "cert-b")


@pytest.mark.parametrize(
    ("uris", "label"),
    [
        ([], "no identity at all"),
        (["urn:mpc:client:bank-1", "urn:mpc:server:server-1"], "a client and a server identity"),
        (["urn:mpc:server:server-1", "urn:mpc:server:server-2"], "two server identities"),
        (["urn:mpc:server:../server-1"], "a malformed server identity"),
        (["urn:mpc:peer:server-1"], "an unknown role"),
    ],
)
def test_a_certificate_without_exactly_one_identity_is_refused(
    secure_cluster: LocalCluster, raw: Raw, uris: list[str], label: str
) -> None:
    identity = forge(secure_cluster.cert_dir, uris=uris, dns=["server-1"], server_auth=True)
    for server in (0, 2):
        handshake = _handshake(raw, server, identity, party=1)
        assert handshake.code in (UNAUTHENTICATED, PD), f"{label}: {handshake}"
        assert _inject(raw, server, identity, "cert-c").code in (UNAUTHENTICATED, PD), label
        assert raw.info(server, identity).code in (UNAUTHENTICATED, PD), label


def test_cluster_servers_cannot_lie_in_the_handshake(secure_cluster: LocalCluster, raw: Raw) -> None:
    # server-1's genuine certificate, but claiming to be party 2: refused.
    outcome = _handshake(raw, 0, "server-1", party=2)
    assert outcome.code == FP and "claims party 2" in outcome.details, str(outcome)
    # The right party, but another cluster (fingerprint): refused.
    outcome = _handshake(raw, 0, "server-1", party=1, fingerprint=b"\x00" * 32)
    assert outcome.code == FP and "different cluster files" in outcome.details, str(outcome)
    # A server talking to itself: refused.
    outcome = _handshake(raw, 0, "server-0", party=0)
    assert outcome.code == PD, str(outcome)


# -- who may *serve* as server-0 -------------------------------------------------


class _Impostor(pb_grpc.ClientServiceServicer):
    def GetServerInfo(
        self, request: pb.GetServerInfoRequest, context: grpc.ServicerContext
    ) -> pb.GetServerInfoResponse:
        return pb.GetServerInfoResponse(identity="impostor")


@pytest.fixture
def impostor(secure_cluster: LocalCluster) -> Iterator[tuple[Callable[[Identity], int], LocalCluster]]:
    servers: list[grpc.Server] = []

    def serve(identity: Identity) -> int:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        pb_grpc.add_ClientServiceServicer_to_server(_Impostor(), server)
        creds = grpc.ssl_server_credentials(
            [(identity.key, identity.cert)],
            root_certificates=(secure_cluster.cert_dir / "ca.pem").read_bytes(),
            require_client_auth=True,
        )
        port = server.add_secure_port("127.0.0.1:0", creds)
        server.start()
        servers.append(server)
        return port

    yield serve, secure_cluster
    for server in servers:
        server.stop(0)


def _ask_as_server_0(cluster: LocalCluster, port: int) -> Outcome:
    """What a client (or a peer: same TLS options) gets from whoever answers as server-0."""
    certs = cluster.cert_dir
    creds = grpc.ssl_channel_credentials(
        (certs / "ca.pem").read_bytes(),
        (certs / "bank-1.key").read_bytes(),
        (certs / "bank-1.pem").read_bytes(),
    )
    options = [("grpc.ssl_target_name_override", "server-0")]
    with grpc.secure_channel(f"127.0.0.1:{port}", creds, options=options) as channel:
        stub = pb_grpc.ClientServiceStub(channel)
        return outcome_of(0, lambda: stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=5))


def test_only_a_server_0_certificate_can_answer_as_server_0(
    impostor: tuple[Callable[[Identity], int], LocalCluster],
    client_named_server_0: Identity,
    server_9: Identity,
) -> None:
    serve, cluster = impostor
    # Control: a genuine server-0 certificate from the CA is accepted by the client.
    genuine = forge(
        cluster.cert_dir,
        uris=["urn:mpc:server:server-0"],
        dns=["server-0"],
        server_auth=True,
        common_name="server-0",
    )
    outcome = _ask_as_server_0(cluster, serve(genuine))
    assert outcome.code == OK and outcome.response.identity == "impostor", str(outcome)
    # A client certificate whose name (CN and URI) is server-0: refused by the client.
    assert _ask_as_server_0(cluster, serve(client_named_server_0)).code == UNAVAILABLE
    # A server certificate of the same CA for another identity: refused by the client.
    assert _ask_as_server_0(cluster, serve(server_9)).code == UNAVAILABLE


# -- only leaves the CA issued itself, over TLS 1.3 (issue 12) ---------------------------------------


def _fetch_as(raw: Raw, server: int, who: Identity, job_id: str) -> Outcome:
    stub = raw.client(server, who)
    request = pb.FetchOutputRequest(job_id=job_id, second_as_digest=True)
    return outcome_of(server, lambda: list(stub.FetchOutput(request, timeout=5)))


def test_a_chain_through_a_ca_true_leaf_is_refused_on_both_apis(
    secure_cluster: LocalCluster, raw: Raw
) -> None:
    values = np.array([2.0, -1.0, 0.5])
    with secure_cluster.client("model-owner") as owner:
        owner.upload("cert-chain", values, grants=[Grant("model-owner", "dot")], overwrite=True)
        job = owner.run("dot", {"x": "cert-chain", "y": "cert-chain"})
        rogue = pki.rogue_intermediate(secure_cluster.cert_dir)
        as_owner = pki.issue(rogue, uris=["urn:mpc:client:model-owner"], name="model-owner").identity
        as_server_1 = pki.issue(
            rogue, uris=["urn:mpc:server:server-1"], dns=["server-1"], usages=("server", "client")
        ).identity
        for server in range(3):
            fetched = _fetch_as(raw, server, as_owner, job.job_id)
            assert fetched.code == UNAUTHENTICATED, str(fetched)
            assert "(model-owner) was not issued by the cluster CA" in fetched.details
            handshake = _handshake(raw, server, as_server_1, party=1)
            assert handshake.code == UNAUTHENTICATED, str(handshake)
            assert "(server-1) was not issued by the cluster CA" in handshake.details
            # The CA:TRUE certificate itself is no client either.
            itself = raw.info(server, rogue.identity)
            assert itself.code == UNAUTHENTICATED and "CA:TRUE" in itself.details, str(itself)
        # The output is still there, for its receiver only.
        assert float(owner.fetch(job, release=True)) == pytest.approx(float(values @ values))


@pytest.mark.parametrize(
    ("uris", "usages", "message"),
    [
        (["urn:mpc:server:server-1"], ("client",), "lacks the extended key usage serverAuth"),
        (["urn:mpc:server:server-1"], None, "lacks the extended key usage serverAuth, clientAuth"),
        (["urn:mpc:client:bank-1"], None, "lacks the extended key usage clientAuth"),
    ],
)
def test_a_certificate_without_its_roles_key_usages_is_refused(
    secure_cluster: LocalCluster, raw: Raw, uris: list[str], usages: tuple[str, ...] | None, message: str
) -> None:
    ca = pki.cluster_ca(secure_cluster.cert_dir)
    identity = pki.issue(ca, uris=uris, dns=["server-1"], usages=usages).identity
    for server in (0, 2):
        for outcome in (_handshake(raw, server, identity, party=1), raw.info(server, identity)):
            assert outcome.code == UNAUTHENTICATED and message in outcome.details, str(outcome)


def test_tls_1_2_is_refused_on_every_service(secure_cluster: LocalCluster) -> None:
    """grpcio cannot set a minimum TLS version: the handshake completes, but no call is served."""
    certs = secure_cluster.cert_dir
    for who in ("bank-1", "server-1"):
        relay = pki.TlsRelay(
            secure_cluster.addresses[0],
            certs / "ca.pem",
            certs / f"{who}.pem",
            certs / f"{who}.key",
            ssl.TLSVersion.TLSv1_2,
        )
        try:
            with grpc.insecure_channel(relay.address) as channel:
                calls = {
                    "client API": lambda c=channel: pb_grpc.ClientServiceStub(c).GetServerInfo(
                        pb.GetServerInfoRequest(), timeout=5
                    ),
                    "peer API": lambda c=channel: peer_grpc.PeerServiceStub(c).Handshake(
                        peer_pb.HandshakeRequest(protocol_version=PROTOCOL_VERSION, party=1), timeout=5
                    ),
                    "health": lambda c=channel: health_pb2_grpc.HealthStub(c).Check(
                        health_pb2.HealthCheckRequest(), timeout=5
                    ),
                }
                for label, call in calls.items():
                    outcome = outcome_of(0, call)
                    assert outcome.code == UNAUTHENTICATED, f"{who}, {label}: {outcome}"
                    assert "TLS 1.3 is required; this connection uses TLSv1.2" in outcome.details
            assert relay.negotiated and set(relay.negotiated) == {"TLSv1.2"}
        finally:
            relay.close()
    # Control: the same relay with TLS 1.3 gets an answer, so the version was the reason.
    relay = pki.TlsRelay(
        secure_cluster.addresses[0],
        certs / "ca.pem",
        certs / "bank-1.pem",
        certs / "bank-1.key",
        ssl.TLSVersion.TLSv1_3,
    )
    try:
        with grpc.insecure_channel(relay.address) as channel:
            stub = pb_grpc.ClientServiceStub(channel)
            assert stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=5).identity == "server-0"
        assert set(relay.negotiated) == {"TLSv1.3"}
    finally:
        relay.close()
