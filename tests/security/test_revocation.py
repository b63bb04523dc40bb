"""Revoked certificates stop working at once, also on open connections, without a restart.

The cluster file names a revocation list (``revoked = "certs/revoked.txt"``);
``mpc certs revoke`` adds a certificate to it; the servers re-read it within
about a second and refuse every call made with a revoked certificate with
UNAUTHENTICATED, on the client and the peer API, and between the messages of
a stream already open. A list that becomes unusable fails closed
(UNAVAILABLE naming the list). Real server processes throughout.
"""

from __future__ import annotations

import dataclasses
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from mpc_cli.certs import ensure_revocation_list
from mpc_cli.local_cluster import LocalCluster
from mpc_cli.main import main
from mpc_client import ConfigError, Grant, MpcClient, UnauthenticatedError
from mpc_core.cluster import parse_cluster
from mpc_core.fixed_point import FixedPoint
from mpc_core.ring import RING128
from mpc_core.sharing import share
from mpc_core.version import PROTOCOL_VERSION
from mpc_proto.v1 import client_service_pb2 as pb
from mpc_proto.v1 import peer_service_pb2 as peer_pb
from mpc_proto.v1 import types_pb2
from mpc_server.transport import tls

from . import pki
from .conftest import OK, Identity, Outcome, Raw, outcome_of

pytestmark = pytest.mark.e2e
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
REVOKED_LINE = 'revoked = "certs/revoked.txt"'
VALUES = np.array([1.0, -2.0, 3.5])
_PEM = Encoding.PEM


class RevocableCluster(LocalCluster):
    """A local cluster whose cluster file names a revocation list."""

    def prepare(self) -> None:
        super().prepare()
        text = self.cluster_file.read_text()
        self.cluster_file.write_text(
            text.replace('ca = "certs/ca.pem"\n', f'ca = "certs/ca.pem"\n{REVOKED_LINE}\n')
        )
        ensure_revocation_list(self.cert_dir / "revoked.txt")

    @property
    def revoked(self) -> Path:
        return self.cert_dir / "revoked.txt"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RevocableCluster]:
    local = RevocableCluster(
        tmp_path_factory.mktemp("revocation"), clients=("model-owner", "bank-1", "bank-2")
    )
    local.start()
    yield local
    local.stop()


@pytest.fixture(scope="module")
def raw(cluster: RevocableCluster) -> Iterator[Raw]:
    helper = Raw(cluster)
    yield helper
    helper.close()


def _revoke(cluster: RevocableCluster, *args: str) -> None:
    assert main(["certs", "revoke", *args, "--cluster", str(cluster.cluster_file)]) == 0


def _within(check: Callable[[], Outcome], expected: grpc.StatusCode, seconds: float = 5.0) -> Outcome:
    """Poll ``check()`` until it answers ``expected`` (the servers re-read the list within ~1 s)."""
    end = time.monotonic() + seconds
    while True:
        outcome = check()
        if outcome.code == expected or time.monotonic() > end:
            return outcome
        time.sleep(0.1)


def test_after_reissue_and_revocation_the_old_key_can_no_longer_upload_or_delete(
    cluster: RevocableCluster, raw: Raw, tmp_path: Path
) -> None:
    with cluster.client("bank-1") as bank:
        bank.upload("rev-a", VALUES, grants=[Grant("model-owner", "dot")])
    old_cert, old_key = tmp_path / "old-bank-1.pem", tmp_path / "old-bank-1.key"
    shutil.copy(cluster.cert_dir / "bank-1.pem", old_cert)
    shutil.copy(cluster.cert_dir / "bank-1.key", old_key)
    old = Identity(old_cert.read_bytes(), old_key.read_bytes())

    # The rotation of deploy/README.md: revoke the old certificate, issue a new one.
    _revoke(cluster, "bank-1")
    assert main(["certs", "--cluster", str(cluster.cluster_file), "--client", "bank-1"]) == 0
    assert (cluster.cert_dir / "bank-1.pem").read_bytes() != old.cert

    for server in range(3):
        outcome = _within(lambda s=server: raw.info(s, old), UNAUTHENTICATED)
        assert outcome.code == UNAUTHENTICATED, str(outcome)
        assert "the client certificate of bank-1 has been revoked" in outcome.details
    # Whoever holds the old key, with an SDK that does not read the list, gets nowhere ...
    blind = tmp_path / "cluster-without-list.toml"
    blind.write_text(
        cluster.cluster_file.read_text()
        .replace(f"{REVOKED_LINE}\n", "")
        .replace('"certs/ca.pem"', f'"{cluster.cert_dir / "ca.pem"}"')
    )
    with MpcClient.connect(blind, old_cert, old_key) as thief:
        with pytest.raises(UnauthenticatedError, match="has been revoked"):
            thief.upload("rev-b", VALUES, grants=[Grant("model-owner", "dot")])
        with pytest.raises(UnauthenticatedError, match="has been revoked"):
            thief.delete("rev-a")
    # ... and an SDK that reads it refuses to start with it.
    with pytest.raises(ConfigError, match="is on the revocation list"):
        MpcClient.connect(cluster.cluster_file, old_cert, old_key)
    # The new certificate is bank-1: its dataset is intact, and it may delete it.
    with cluster.client("model-owner") as owner:
        _, value = owner.run_and_fetch("dot", {"x": "bank-1/rev-a", "y": "bank-1/rev-a"})
        assert float(value) == pytest.approx(float(VALUES @ VALUES))
    with cluster.client("bank-1") as bank:
        bank.delete("rev-a")
        bank.upload("rev-b", VALUES)


def _upload_streams(name: str) -> list[list[pb.UploadDatasetRequest]]:
    encoded, magnitude = FixedPoint.default().encode_bounded(VALUES)
    shares = share(RING128, encoded)
    header = pb.UploadHeader(
        name=name,
        shape=[len(VALUES)],
        fractional_bits=32,
        ring=types_pb2.RING_Z2_128,
        magnitude_bits=magnitude,
        upload_id=secrets.token_bytes(16),
    )
    return [
        [
            pb.UploadDatasetRequest(header=header),
            pb.UploadDatasetRequest(
                chunk=types_pb2.ShareChunk(
                    offset=0, first=RING128.to_wire(pair.first), second=RING128.to_wire(pair.second)
                )
            ),
        ]
        for pair in shares
    ]


def test_an_open_stream_of_a_certificate_revoked_meanwhile_is_cut(
    cluster: RevocableCluster, raw: Raw, tmp_path: Path
) -> None:
    issued = pki.issue(pki.cluster_ca(cluster.cert_dir), uris=["urn:mpc:client:bank-2"], name="bank-2")
    identity = issued.identity
    cert_file, _ = identity.write(tmp_path, "bank-2-extra")
    assert all(raw.info(server, identity).code == OK for server in range(3))
    release, started = threading.Event(), threading.Barrier(4, timeout=10)

    def stalled(requests: list[pb.UploadDatasetRequest]) -> Iterator[pb.UploadDatasetRequest]:
        yield requests[0]
        started.wait()
        release.wait(10)
        yield from requests[1:]

    streams = _upload_streams("rev-stream")
    stubs = [raw.client(server, identity) for server in range(3)]
    with ThreadPoolExecutor(3) as pool:
        uploads = [
            pool.submit(
                outcome_of, server, lambda s=server: stubs[s].UploadDataset(stalled(streams[s]), timeout=20)
            )
            for server in range(3)
        ]
        started.wait()  # every stream is open and its header sent
        _revoke(cluster, "--cert", str(cert_file))
        time.sleep(1.5)  # the servers' next look at the list
        release.set()
        outcomes = [upload.result(timeout=30) for upload in uploads]
    for outcome in outcomes:
        assert outcome.code == UNAUTHENTICATED, str(outcome)
        assert "has been revoked" in outcome.details
    # The same channels (their connections stay open) get no further call through either.
    assert all(raw.info(server, identity).code == UNAUTHENTICATED for server in range(3))


def test_a_revoked_server_certificate_is_refused_on_the_peer_api(
    cluster: RevocableCluster, raw: Raw, tmp_path: Path
) -> None:
    issued = pki.issue(
        pki.cluster_ca(cluster.cert_dir),
        uris=["urn:mpc:server:server-1"],
        dns=["server-1"],
        usages=("server", "client"),
    )
    cert_file, _ = issued.identity.write(tmp_path, "server-1-extra")

    def handshake(server: int) -> Outcome:
        stub = raw.peer(server, issued.identity)
        request = peer_pb.HandshakeRequest(protocol_version=PROTOCOL_VERSION, party=2, software_version="x")
        return outcome_of(server, lambda: stub.Handshake(request, timeout=5))

    for server in (0, 2):  # past the certificate checks: refused for the lie about its party
        outcome = handshake(server)
        assert outcome.code == grpc.StatusCode.FAILED_PRECONDITION and "claims party 2" in outcome.details
    _revoke(cluster, "--cert", str(cert_file))
    for server in (0, 2):
        outcome = _within(lambda s=server: handshake(s), UNAUTHENTICATED)
        assert outcome.code == UNAUTHENTICATED and "server-1 has been revoked" in outcome.details, str(
            outcome
        )
    with cluster.client("model-owner") as owner:  # the genuine server-1 is unaffected
        assert all(info.ready for info in owner.server_info())


def test_a_server_whose_own_certificate_is_revoked_does_not_start(
    cluster: RevocableCluster, tmp_path: Path
) -> None:
    certs = cluster.cert_dir
    material = tls.load_tls(certs / "server-0.pem", certs / "server-0.key", certs / "ca.pem")
    listed = tmp_path / "revoked.txt"
    shutil.copy(cluster.revoked, listed)
    config = dataclasses.replace(
        parse_cluster(cluster.cluster_file.read_text(), cluster.directory), revoked_path=listed
    )
    tls.peer_verifier(material, config)  # not listed: fine
    assert (
        main(
            [
                "certs",
                "revoke",
                "--cert",
                str(certs / "server-0.pem"),
                "--out",
                str(certs),
                "--list",
                str(listed),
            ]
        )
        == 0
    )
    with pytest.raises(ConfigError, match=r"this server's certificate .* is on the revocation list"):
        tls.peer_verifier(material, config)


def test_an_unusable_list_fails_closed_until_it_is_fixed(cluster: RevocableCluster, raw: Raw) -> None:
    good = cluster.revoked.read_text()
    cluster.revoked.write_text(good + "this is not an entry\n")
    try:
        outcome = _within(lambda: raw.info(1, "bank-2"), grpc.StatusCode.UNAVAILABLE)
        assert outcome.code == grpc.StatusCode.UNAVAILABLE, str(outcome)
        assert "server-1 is unavailable: its certificate revocation list is unusable" in outcome.details
        assert "line" in outcome.details
    finally:
        cluster.revoked.write_text(good)
    assert _within(lambda: raw.info(1, "bank-2"), OK).code == OK
    cluster.wait_ready(30)  # the peer links, refused meanwhile, are back


# -- the verifier's pieces, without processes --------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_watcher_rereads_a_changed_list_at_most_once_per_interval(tmp_path: Path) -> None:
    from mpc_core.certificates import inspect_certificate, revocation_entry
    from mpc_core.errors import ServerUnavailableError
    from mpc_server.transport.verifier import RevocationWatcher

    listed = tmp_path / "revoked.txt"
    listed.write_text("# empty\n")
    clock = _Clock()
    watcher = RevocationWatcher(listed, "server-0", interval=1.0, clock=clock)
    info = inspect_certificate(pki.issue(pki.cluster_ca(_ca_dir(tmp_path)), uris=["urn:mpc:client:x"]).chain)
    listed.write_text(revocation_entry(info) + "\n")
    assert not watcher.current().revokes(info)  # not looked at yet
    clock.now = 1.0
    assert watcher.current().revokes(info)
    generation = watcher.generation
    listed.write_text("garbage\n")
    clock.now = 2.0
    with pytest.raises(ServerUnavailableError, match="its certificate revocation list is unusable"):
        watcher.current()
    listed.unlink()
    clock.now = 3.0
    with pytest.raises(ServerUnavailableError, match="No such file"):
        watcher.current()
    listed.write_text("")
    clock.now = 4.0
    assert not watcher.current().revokes(info) and watcher.generation > generation


def test_a_broken_list_at_start_is_a_config_error(tmp_path: Path) -> None:
    from mpc_server.transport.verifier import RevocationWatcher

    with pytest.raises(ConfigError, match="certificate revocation list: cannot read"):
        RevocationWatcher(tmp_path / "missing.txt", "server-0")
    (tmp_path / "bad.txt").write_text("sha256:00\n")
    with pytest.raises(ConfigError, match="line 1: sha256: needs 64 hex digits"):
        RevocationWatcher(tmp_path / "bad.txt", "server-0")


def _ca_dir(tmp_path: Path) -> Path:
    from mpc_cli.certs import CertificateAuthority

    return CertificateAuthority(tmp_path / "pki").directory


def test_the_verifier_checks_version_leaf_and_expiry_from_the_auth_context(tmp_path: Path) -> None:
    import datetime as dt

    from mpc_core.errors import UnauthenticatedError
    from mpc_server.transport.verifier import PeerVerifier

    ca_dir = _ca_dir(tmp_path)
    ca = pki.cluster_ca(ca_dir)
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    good = pki.issue(ca, uris=["urn:mpc:client:bank-1"], not_after=soon)
    clock = [dt.datetime.now(dt.UTC)]
    verifier = PeerVerifier((ca_dir / "ca.pem").read_bytes(), now=lambda: clock[0])

    def auth(cert: bytes, version: bytes = b"TLSv1.3") -> dict[str, list[bytes]]:
        return {"ssl_tls_version": [version], "x509_pem_cert": [cert]}

    assert verifier.verify(auth(good.chain)).principal.name == "bank-1"
    with pytest.raises(UnauthenticatedError, match=r"TLS 1\.3 is required; this connection uses TLSv1\.2"):
        verifier.verify(auth(good.chain, b"TLSv1.2"))
    with pytest.raises(UnauthenticatedError, match="uses an unknown version"):
        verifier.verify({"x509_pem_cert": [good.chain]})
    with pytest.raises(UnauthenticatedError, match="no client certificate"):
        verifier.verify({"ssl_tls_version": [b"TLSv1.3"]})
    rogue = pki.rogue_intermediate(ca_dir)
    for _ in range(2):  # the second time from the cache
        with pytest.raises(UnauthenticatedError, match="was not issued by the cluster CA"):
            verifier.verify(auth(pki.issue(rogue, uris=["urn:mpc:client:bank-1"]).cert.public_bytes(_PEM)))
    clock[0] += dt.timedelta(hours=2)  # a connection that outlives its certificate
    with pytest.raises(UnauthenticatedError, match=r"\(bank-1\) is not valid now"):
        verifier.verify(auth(good.chain))
