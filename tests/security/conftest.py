"""A real cluster for the security tests, and tools to act as a hostile party.

``forge`` issues certificates the cluster CA really signed, but with the
validity, identities or key usages a test chooses (expired, a client named
like a server, a server outside the cluster, ...). ``Raw`` calls the client
and peer APIs over mutual TLS with any such certificate, bypassing the SDK's
own checks, and returns every answer as an :class:`Outcome`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mpc_cli.local_cluster import LocalCluster
from mpc_proto.v1 import client_service_pb2 as pb
from mpc_proto.v1 import client_service_pb2_grpc as pb_grpc
from mpc_proto.v1 import peer_service_pb2_grpc as peer_grpc

CLIENTS = ("model-owner", "bank-1", "bank-2", "outsider")
OK = grpc.StatusCode.OK


@dataclass(frozen=True)
class Identity:
    """PEM bytes of a certificate and its key."""

    cert: bytes
    key: bytes

    def write(self, directory: Path, stem: str) -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        cert, key = directory / f"{stem}.pem", directory / f"{stem}.key"
        cert.write_bytes(self.cert)
        key.write_bytes(self.key)
        key.chmod(0o600)
        return cert, key


def forge(
    ca_dir: Path,
    *,
    uris: Sequence[str] = (),
    dns: Sequence[str] = (),
    ips: Sequence[str] = (),
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    server_auth: bool = False,
    common_name: str = "forged",
) -> Identity:
    """A leaf certificate signed by the CA in ``ca_dir`` (``ca.pem``, ``ca.key``)."""
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    now = dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
    names += [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if server_auth else [])
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - dt.timedelta(minutes=5))
        .not_valid_after(not_after or now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return Identity(
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


@dataclass(frozen=True)
class Outcome:
    """What one server answered."""

    server: int
    code: grpc.StatusCode
    details: str = ""
    response: Any = None
    metadata: tuple[tuple[str, str], ...] = ()

    @property
    def named(self) -> str:
        """The server named in the ``mpc-server`` trailer, if any."""
        return next((v for k, v in self.metadata if k == "mpc-server"), "")

    def __str__(self) -> str:
        return f"server-{self.server}: {self.code.name} {self.details[:300]!r}"


def outcome_of(server: int, call: Callable[[], Any]) -> Outcome:
    try:
        response = call()
    except grpc.RpcError as exc:
        assert isinstance(exc, grpc.Call)
        metadata = tuple((k, v) for k, v in (exc.trailing_metadata() or ()) if isinstance(v, str))
        return Outcome(server, exc.code(), exc.details() or "", metadata=metadata)
    return Outcome(server, OK, response=response)


def describe(outcomes: Sequence[Outcome]) -> str:
    return "; ".join(str(o) for o in outcomes)


class Raw:
    """gRPC stubs for the cluster's servers under any certificate."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self._channels: dict[tuple[int, Identity], grpc.Channel] = {}
        self._pool = ThreadPoolExecutor(max_workers=6, thread_name_prefix="security-raw")

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._pool.shutdown(wait=False)

    def identity(self, name: str) -> Identity:
        certs = self.cluster.cert_dir
        return Identity((certs / f"{name}.pem").read_bytes(), (certs / f"{name}.key").read_bytes())

    def channel(self, server: int, who: Identity | str) -> grpc.Channel:
        identity = self.identity(who) if isinstance(who, str) else who
        if (server, identity) not in self._channels:
            creds = grpc.ssl_channel_credentials(
                (self.cluster.cert_dir / "ca.pem").read_bytes(), identity.key, identity.cert
            )
            self._channels[server, identity] = grpc.secure_channel(
                self.cluster.addresses[server],
                creds,
                options=[("grpc.ssl_target_name_override", f"server-{server}")],
            )
        return self._channels[server, identity]

    def client(self, server: int, who: Identity | str) -> pb_grpc.ClientServiceStub:
        return pb_grpc.ClientServiceStub(self.channel(server, who))

    def peer(self, server: int, who: Identity | str) -> peer_grpc.PeerServiceStub:
        return peer_grpc.PeerServiceStub(self.channel(server, who))

    def info(self, server: int, who: Identity | str) -> Outcome:
        stub = self.client(server, who)
        return outcome_of(server, lambda: stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=5))

    def run_jobs(
        self, requests: Sequence[pb.RunJobRequest], who: str, timeout: float = 20.0
    ) -> list[Outcome]:
        """``requests[i]`` to server ``i``, all at once (as the SDK would, but per server)."""
        stubs = [self.client(i, who) for i in range(3)]

        def call(i: int) -> Outcome:
            return outcome_of(i, lambda: stubs[i].RunJob(requests[i], timeout=timeout))

        return list(self._pool.map(call, range(3)))

    def fetch(self, server: int, job_id: str, who: str) -> Outcome:
        stub = self.client(server, who)
        request = pb.FetchOutputRequest(job_id=job_id, second_as_digest=True)
        return outcome_of(server, lambda: list(stub.FetchOutput(request, timeout=5)))

    def upload_all(self, streams: Sequence[Sequence[pb.UploadDatasetRequest]], who: str) -> list[Outcome]:
        stubs = [self.client(i, who) for i in range(3)]

        def call(i: int) -> Outcome:
            return outcome_of(i, lambda: stubs[i].UploadDataset(iter(list(streams[i])), timeout=20))

        return list(self._pool.map(call, range(3)))


def scrape(cluster: LocalCluster, server: int) -> str:
    url = f"http://127.0.0.1:{cluster.metrics_ports[server]}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        text: str = reply.read().decode()
    return text


def metric(text: str, name: str, **labels: str) -> float:
    """One sample's value (0 when the sample does not exist yet)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = "^" + re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def wait_for(predicate: Callable[[], bool], timeout: float, poll: float = 0.1) -> bool:
    end = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(poll)


@pytest.fixture(scope="session")
def secure_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One real cluster (three processes, mutual TLS, metrics) for the security tests."""
    local = LocalCluster(tmp_path_factory.mktemp("security-cluster"), clients=CLIENTS, metrics=True)
    local.start()
    yield local
    local.stop()


@pytest.fixture(scope="session")
def raw(secure_cluster: LocalCluster) -> Iterator[Raw]:
    helper = Raw(secure_cluster)
    yield helper
    helper.close()
