"""Outgoing peer links check the peer they dial by its identity, and pin its certificate.

A grpc.aio channel checks the certificate of the server it dials only by a
DNS name (``grpc.ssl_target_name_override``) and a chain as BoringSSL
checks it, which accepts a chain through a CA-issued certificate that
carries ``CA:TRUE`` despite the CA's ``pathlen:0``; it neither sees the
``urn:mpc:server:<identity>`` URI nor consults the revocation list. So
before a :class:`~mpc_server.transport.peer_link.PeerLink` opens (or
re-opens) its channel, :class:`PeerIdentityCheck` handshakes with the peer
itself (TLS 1.3 only, Python ``ssl``: OpenSSL verifies the whole chain,
path length included), presenting this server's certificate, and checks
the leaf as the SDK checks servers (``mpc_client._server_identity``):
issued by the CA key itself, ``CA:FALSE``, the key usages of a server,
exactly the identity ``urn:mpc:server:<peer>``, the DNS name ``<peer>``,
current, and not on the cluster's revocation list. The link's channel then
trusts *that certificate only* (BoringSSL accepts it as a partial chain),
so no other certificate can receive the link's messages, on any later
reconnection either.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mpc_core.certificates import CertificateInfo, check_leaf, handshake_failure, load_ca
from mpc_core.cluster import ServerEndpoint
from mpc_core.errors import ConfigError, ServerUnavailableError, UnauthenticatedError
from mpc_core.identity import Principal, Role
from mpc_server.transport.tls import TlsMaterial
from mpc_server.transport.verifier import RevocationWatcher


@dataclass(frozen=True, repr=False)
class CheckedPeer:
    """A peer's certificate that passed every check (PEM), and what it says."""

    cert_pem: bytes
    info: CertificateInfo

    def __repr__(self) -> str:
        """Identity and fingerprint."""
        return f"CheckedPeer({self.info.principal.uri}, {self.info.fingerprint[:16]})"


def _context(material: TlsMaterial) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False  # the identity URI (and the DNS name) are checked instead
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=material.ca_pem.decode(errors="replace"))
    context.set_alpn_protocols(["h2"])
    data = material.cert_pem.rstrip(b"\n") + b"\n" + material.key_pem
    try:  # ``ssl`` reads a key from a file only: an anonymous memory file where there is one
        if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
            descriptor = os.memfd_create("mpc-server-identity", os.MFD_CLOEXEC)
            try:
                os.write(descriptor, data)
                context.load_cert_chain(f"/proc/self/fd/{descriptor}")
            finally:
                os.close(descriptor)
        else:
            with tempfile.TemporaryDirectory(prefix="mpc-server-") as directory:
                path = Path(directory) / "identity.pem"
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(descriptor, "wb") as handle:
                    handle.write(data)
                context.load_cert_chain(path)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load this server's certificate and key for TLS: {exc}") from None
    return context


class PeerIdentityCheck:
    """Checks the peers this server dials (see the module docstring)."""

    def __init__(self, material: TlsMaterial, revocation: RevocationWatcher | None = None) -> None:
        """Present ``material``'s certificate, trust its CA, deny what ``revocation`` lists."""
        self._material = material
        self._ca = load_ca(material.ca_pem)
        self._context = _context(material)
        self._revocation = revocation

    def revoked(self, info: CertificateInfo) -> bool:
        """Whether the revocation list names ``info``'s certificate (fails closed: unusable list = True)."""
        if self._revocation is None:
            return False
        try:
            return self._revocation.current().revokes(info)
        except ServerUnavailableError:
            return True

    async def _peer_certificate(self, peer: ServerEndpoint, timeout: float) -> bytes:
        host, _, port = peer.address.rpartition(":")
        host = host[1:-1] if host.startswith("[") else host
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(timeout):
                _, writer = await asyncio.open_connection(
                    host, int(port), ssl=self._context, server_hostname=peer.identity
                )
        except (OSError, TimeoutError) as exc:
            presented = f"the certificate {peer.identity} presented at {peer.address}"
            raise handshake_failure(peer.identity, peer.address, exc, presented=presented) from None
        try:
            tls = writer.get_extra_info("ssl_object")
            der = tls.getpeercert(binary_form=True) if isinstance(tls, ssl.SSLObject) else None
        finally:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()
        if not der:
            raise UnauthenticatedError(f"{peer.identity} at {peer.address} presented no certificate")
        return bytes(der)

    async def check(self, peer: ServerEndpoint, timeout: float) -> CheckedPeer:
        """Handshake with ``peer`` and check that it is who it should be, within ``timeout`` s.

        Raises:
            UnauthenticatedError: its certificate is not ``peer``'s, is outside the profile, or is revoked.
            ServerUnavailableError: it cannot be reached, or the handshake fails for another reason.
        """
        name, address = peer.identity, peer.address
        cert = x509.load_der_x509_certificate(await self._peer_certificate(peer, timeout))
        try:
            info = check_leaf(cert, self._ca, f"the certificate {name} presented at {address}")
        except ConfigError as exc:
            raise UnauthenticatedError(str(exc)) from None
        except ValueError as exc:  # a malformed extension
            raise UnauthenticatedError(f"the certificate at {address} cannot be parsed: {exc}") from None
        if info.principal != Principal(Role.SERVER, name):
            raise UnauthenticatedError(
                f"{address} presented the certificate of {info.principal.uri}, not urn:mpc:server:{name}"
            )
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        if name not in names.get_values_for_type(x509.DNSName):
            raise UnauthenticatedError(f"the certificate of {name} lacks the DNS name {name!r}")
        if self.revoked(info):
            raise UnauthenticatedError(
                f"the certificate {name} presented at {address} (serial {info.serial:x}) has been revoked"
            )
        return CheckedPeer(cert.public_bytes(serialization.Encoding.PEM), info)

    def credentials(self, checked: CheckedPeer) -> grpc.ChannelCredentials:
        """Channel credentials presenting our certificate and trusting ``checked``'s certificate only."""
        material = self._material
        return grpc.ssl_channel_credentials(checked.cert_pem, material.key_pem, material.cert_pem)
