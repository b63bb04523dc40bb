"""Certificates with any profile, chains through rogue intermediates, and a TLS 1.2 relay.

``issue`` signs with the cluster CA (``ca.pem``/``ca.key`` in a directory) or
with any certificate it issued before, so a test can build the chain an
operator's mistake makes possible: a CA-issued "leaf" with ``CA:TRUE`` that
then signs certificates of its own. ``TlsRelay`` lets a real gRPC client
speak over a TLS connection whose version the test chooses (grpcio cannot
be told to use TLS 1.2): gRPC talks plaintext HTTP/2 to the relay on
loopback, and the relay carries it over Python ``ssl`` to the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .conftest import Identity

USAGES = {"client": ExtendedKeyUsageOID.CLIENT_AUTH, "server": ExtendedKeyUsageOID.SERVER_AUTH}


@dataclass(frozen=True)
class Issued:
    """A certificate, its key, and the PEM chain to present (the certificate, then its issuers)."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    chain: bytes

    @property
    def identity(self) -> Identity:
        key = self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return Identity(self.chain, key)


def cluster_ca(ca_dir: Path) -> Issued:
    """The cluster CA of ``ca_dir`` as an issuer."""
    key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return Issued(x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes()), key, b"")


def issue(
    issuer: Issued,
    *,
    uris: Sequence[str] = (),
    dns: Sequence[str] = (),
    ca: bool = False,
    usages: Sequence[str] | None = ("client",),
    name: str = "forged",
    not_after: dt.datetime | None = None,
) -> Issued:
    """A certificate signed by ``issuer``; ``usages=None`` leaves out the extended key usage."""
    now = dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(not_after or now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
    )
    if usages is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([USAGES[u] for u in usages]), critical=False)
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
    names += [x509.DNSName(d) for d in dns]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(issuer.key, hashes.SHA256())
    return Issued(cert, key, cert.public_bytes(serialization.Encoding.PEM) + issuer.chain)


def rogue_intermediate(
    ca_dir: Path, uri: str = "urn:mpc:client:bank-1", usages: Sequence[str] = ("client",)
) -> Issued:
    """A certificate the CA issued with ``CA:TRUE`` by mistake: it can sign others."""
    return issue(cluster_ca(ca_dir), uris=[uri], ca=True, usages=usages, name=f"{uri} (CA:TRUE)")


class TlsRelay:
    """Plain loopback port -> TLS (of a chosen maximum version, with our client certificate) -> server."""

    def __init__(self, target: str, ca_pem: Path, cert: Path, key: Path, version: ssl.TLSVersion) -> None:
        self.context = ssl.create_default_context(cafile=str(ca_pem))
        self.context.check_hostname = False
        self.context.maximum_version = version
        self.context.load_cert_chain(cert, key)
        self.context.set_alpn_protocols(["h2"])
        host, _, port = target.rpartition(":")
        self._target = (host, int(port))
        self.negotiated: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.port = 0
        self._thread = threading.Thread(target=self._run, name="tls-relay", daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "relay did not start"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            remote_reader, remote_writer = await asyncio.open_connection(
                *self._target, ssl=self.context, server_hostname="server"
            )
        except (OSError, ssl.SSLError):
            writer.close()
            return
        ssl_object = remote_writer.get_extra_info("ssl_object")
        self.negotiated.append(ssl_object.version() if ssl_object else "?")
        await asyncio.gather(_pump(reader, remote_writer), _pump(remote_reader, writer))

    def close(self) -> None:
        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        self._thread.join(10)
        self._loop.close()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError, ssl.SSLError):
            writer.close()
