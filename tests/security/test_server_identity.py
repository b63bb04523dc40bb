"""The Python SDK sends a server's shares only to the holder of that server's certificate.

gRPC's own check of a server certificate is a DNS name (the target-name
override) and a chain that BoringSSL accepts through a CA:TRUE
intermediate. The SDK checks each server itself (TLS 1.3, the whole chain
with OpenSSL, a leaf the CA issued directly, ``urn:mpc:server:<identity>``)
and pins the gRPC channel to the certificate it checked. Impostors here are
real gRPC servers on loopback with certificates the cluster CA (or a rogue
intermediate) signed.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from mpc_cli.local_cluster import LocalCluster
from mpc_client import MpcClient, ServerUnavailableError, UnauthenticatedError
from mpc_client._transport import ClientCredentials, ServerConnection
from mpc_core.cluster import ServerEndpoint, render_cluster
from mpc_core.types import party_id
from mpc_proto.v1 import client_service_pb2 as pb
from mpc_proto.v1 import client_service_pb2_grpc as pb_grpc

from . import pki
from .conftest import Identity, outcome_of

pytestmark = pytest.mark.e2e
SERVER_0 = ["urn:mpc:server:server-0"]
BOTH = ("server", "client")


class _Impostor(pb_grpc.ClientServiceServicer):
    def __init__(self, label: str) -> None:
        self.label = label

    def GetServerInfo(
        self, request: pb.GetServerInfoRequest, context: grpc.ServicerContext
    ) -> pb.GetServerInfoResponse:
        return pb.GetServerInfoResponse(identity=self.label)


@pytest.fixture
def serve(secure_cluster: LocalCluster) -> Iterator[Callable[[Identity, str, int], tuple[int, grpc.Server]]]:
    servers: list[grpc.Server] = []

    def start(identity: Identity, label: str = "impostor", port: int = 0) -> tuple[int, grpc.Server]:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        pb_grpc.add_ClientServiceServicer_to_server(_Impostor(label), server)
        creds = grpc.ssl_server_credentials(
            [(identity.key, identity.cert)],
            root_certificates=(secure_cluster.cert_dir / "ca.pem").read_bytes(),
            require_client_auth=True,
        )
        bound = server.add_secure_port(f"127.0.0.1:{port}", creds)
        server.start()
        servers.append(server)
        return bound, server

    yield start
    for server in servers:
        server.stop(0)


def _credentials(cluster: LocalCluster) -> ClientCredentials:
    certs = cluster.cert_dir
    return ClientCredentials(
        (certs / "bank-1.pem").read_bytes(),
        (certs / "bank-1.key").read_bytes(),
        (certs / "ca.pem").read_bytes(),
    )


def _sdk_asks(cluster: LocalCluster, port: int, connection: ServerConnection | None = None) -> str:
    """What the SDK's connection to "server-0" at ``port`` answers (raises what the SDK raises)."""
    if connection is None:
        endpoint = ServerEndpoint(party_id(0), "server-0", f"127.0.0.1:{port}")
        connection = ServerConnection(endpoint, _credentials(cluster))
    reply: pb.GetServerInfoResponse = connection.stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=5)
    return reply.identity


def _grpc_alone_asks(cluster: LocalCluster, port: int) -> grpc.StatusCode:
    """What a plain grpcio channel checking the DNS name server-0 gets (the SDK's old check)."""
    certs = cluster.cert_dir
    creds = grpc.ssl_channel_credentials(
        (certs / "ca.pem").read_bytes(),
        (certs / "bank-1.key").read_bytes(),
        (certs / "bank-1.pem").read_bytes(),
    )
    options = [("grpc.ssl_target_name_override", "server-0")]
    with grpc.secure_channel(f"127.0.0.1:{port}", creds, options=options) as channel:
        stub = pb_grpc.ClientServiceStub(channel)
        return outcome_of(0, lambda: stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=5)).code


def test_the_sdk_accepts_a_genuine_server_certificate(secure_cluster: LocalCluster, serve) -> None:
    ca = pki.cluster_ca(secure_cluster.cert_dir)
    genuine = pki.issue(ca, uris=SERVER_0, dns=["server-0"], usages=BOTH, name="server-0").identity
    port, _ = serve(genuine)
    assert _sdk_asks(secure_cluster, port) == "impostor"


@pytest.mark.parametrize(
    ("case", "grpc_alone", "message"),
    [
        ("server-1 also named server-0", "OK", "presented the certificate of urn:mpc:server:server-1"),
        ("a client certificate for server-0", "OK", "presented the certificate of urn:mpc:client:server-0"),
        ("server-0 via a CA:TRUE leaf", "OK", "fails verification against the cluster CA"),
        ("server-0 with CA:TRUE", "OK", "is a CA certificate (CA:TRUE)"),
        ("server-0 without serverAuth", "UNAVAILABLE", "fails verification against the cluster CA"),
        ("server-0 without its DNS name", "UNAVAILABLE", "lacks the DNS name 'server-0'"),
    ],
)
def test_the_sdk_refuses_a_server_that_is_not_server_0(
    secure_cluster: LocalCluster, serve, case: str, grpc_alone: str, message: str
) -> None:
    ca = pki.cluster_ca(secure_cluster.cert_dir)
    forged = {
        "server-1 also named server-0": lambda: pki.issue(
            ca, uris=["urn:mpc:server:server-1"], dns=["server-1", "server-0"], usages=BOTH
        ),
        "a client certificate for server-0": lambda: pki.issue(
            ca, uris=["urn:mpc:client:server-0"], dns=["server-0"], usages=BOTH
        ),
        "server-0 via a CA:TRUE leaf": lambda: pki.issue(
            pki.rogue_intermediate(secure_cluster.cert_dir, "urn:mpc:server:server-2", BOTH),
            uris=SERVER_0,
            dns=["server-0"],
            usages=BOTH,
        ),
        "server-0 with CA:TRUE": lambda: pki.issue(ca, uris=SERVER_0, dns=["server-0"], usages=BOTH, ca=True),
        "server-0 without serverAuth": lambda: pki.issue(
            ca, uris=SERVER_0, dns=["server-0"], usages=("client",)
        ),
        "server-0 without its DNS name": lambda: pki.issue(ca, uris=SERVER_0, dns=["localhost"], usages=BOTH),
    }[case]().identity
    port, _ = serve(forged)
    # What gRPC's own checks say: several of these would have got server 0's shares.
    assert _grpc_alone_asks(secure_cluster, port).name == grpc_alone
    with pytest.raises(UnauthenticatedError, match="server-0: ") as refused:
        _sdk_asks(secure_cluster, port)
    assert message in str(refused.value)


def test_the_sdk_channel_is_pinned_to_the_certificate_it_checked(secure_cluster: LocalCluster, serve) -> None:
    ca = pki.cluster_ca(secure_cluster.cert_dir)
    first = pki.issue(ca, uris=SERVER_0, dns=["server-0"], usages=BOTH).identity
    port, server = serve(first, "first")
    endpoint = ServerEndpoint(party_id(0), "server-0", f"127.0.0.1:{port}")
    connection = ServerConnection(endpoint, _credentials(secure_cluster))
    assert _sdk_asks(secure_cluster, port, connection) == "first"
    # The address now answers with another certificate: the pinned channel does not accept it ...
    server.stop(0).wait()
    renewed = pki.issue(ca, uris=SERVER_0, dns=["server-0"], usages=BOTH).identity
    _, server = serve(renewed, "renewed", port)
    with pytest.raises(grpc.RpcError) as failed:
        _sdk_asks(secure_cluster, port, connection)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    # ... until the SDK has checked the new one (a renewed certificate of server-0: accepted).
    assert _sdk_asks(secure_cluster, port, connection) == "renewed"
    server.stop(0).wait()
    impostor = pki.issue(ca, uris=["urn:mpc:server:server-1"], dns=["server-0"], usages=BOTH).identity
    serve(impostor, "impostor", port)
    with pytest.raises(grpc.RpcError):
        _sdk_asks(secure_cluster, port, connection)
    with pytest.raises(UnauthenticatedError, match="urn:mpc:server:server-1"):
        _sdk_asks(secure_cluster, port, connection)
    connection.channel.close()


def test_the_sdk_refuses_a_server_without_tls_1_3(secure_cluster: LocalCluster) -> None:
    certs = secure_cluster.cert_dir
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certs / "server-0.pem", certs / "server-0.key")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer() -> None:
        connection, _ = listener.accept()
        try:
            with context.wrap_socket(connection, server_side=True):
                pass
        except (OSError, ssl.SSLError):
            pass

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        with pytest.raises(UnauthenticatedError, match=r"server-0: the server at .* does not offer TLS 1\.3"):
            _sdk_asks(secure_cluster, port)
    finally:
        thread.join(5)
        listener.close()


def test_the_sdk_refuses_a_revoked_server_certificate(
    secure_cluster: LocalCluster, serve, tmp_path: Path
) -> None:
    from mpc_client._server_identity import ServerChecker
    from mpc_core.certificates import inspect_certificate, revocation_entry

    ca = pki.cluster_ca(secure_cluster.cert_dir)
    issued = pki.issue(ca, uris=SERVER_0, dns=["server-0"], usages=BOTH)
    port, _ = serve(issued.identity)
    revoked = tmp_path / "revoked.txt"
    revoked.write_text("# nothing yet\n")
    creds = _credentials(secure_cluster)
    checker = ServerChecker(creds.cert_pem, creds.key_pem, creds.ca_pem, revoked)
    connection = ServerConnection(
        ServerEndpoint(party_id(0), "server-0", f"127.0.0.1:{port}"), creds, checker
    )
    assert _sdk_asks(secure_cluster, port, connection) == "impostor"
    revoked.write_text(revocation_entry(inspect_certificate(issued.identity.cert)) + "\n")
    deadline = time.monotonic() + 5
    with pytest.raises(UnauthenticatedError, match="server-0: its certificate has been revoked"):
        while time.monotonic() < deadline:
            _sdk_asks(secure_cluster, port, connection)
            time.sleep(0.1)


def test_the_sdk_refuses_a_cluster_server_under_another_identity(
    secure_cluster: LocalCluster, tmp_path: Path
) -> None:
    """server-1's real address listed as server-0's: the SDK names what it found."""
    addresses = [secure_cluster.addresses[1], secure_cluster.addresses[1], secure_cluster.addresses[2]]
    ca = (secure_cluster.cert_dir / "ca.pem").resolve()
    cluster_file = tmp_path / "swapped.toml"
    cluster_file.write_text(render_cluster([(f"server-{i}", a) for i, a in enumerate(addresses)], str(ca)))
    certs = secure_cluster.cert_dir
    with MpcClient.connect(cluster_file, certs / "bank-1.pem", certs / "bank-1.key") as client:
        with pytest.raises(UnauthenticatedError) as refused:
            client.server_info(timeout=5)
        assert "server-0: the server at" in str(refused.value)
        assert "presented the certificate of urn:mpc:server:server-1, not urn:mpc:server:server-0" in str(
            refused.value
        )
    # An address nobody listens at is "unavailable", not "unauthenticated".
    endpoint = ServerEndpoint(party_id(0), "server-0", "127.0.0.1:1")
    with pytest.raises(ServerUnavailableError, match=r"cannot connect to 127\.0\.0\.1:1"):
        ServerConnection(endpoint, _credentials(secure_cluster)).stub.GetServerInfo(
            pb.GetServerInfoRequest(), timeout=5
        )
