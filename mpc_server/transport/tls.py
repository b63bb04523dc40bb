"""Mutual-TLS material: loading, checking, and gRPC credentials and options.

Every connection is mutual TLS against the cluster CA; there is no insecure
mode. Servers require client certificates (``require_client_auth=True``).
A connecting party verifies the server's certificate against the server's
*identity* (its DNS SAN ``server-N``) via ``grpc.ssl_target_name_override``,
not against whatever host name or IP the address uses, so the same
certificate works inside and outside a container network.

What gRPC's own TLS checks leave open is closed per call by
:func:`peer_verifier` (``transport.verifier``): grpcio's Python API offers
no minimum TLS version (upstream grpc/grpc#37305, #43045, #43080 are
open), so every call on a connection that did not negotiate TLS 1.3 is
refused; BoringSSL accepts client chains through an intermediate with
``CA:TRUE`` despite the CA's ``pathlen:0``, so the caller's leaf must be
signed by the CA key itself; and the revocation list named in the cluster
file is consulted on every call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from mpc_core.certificates import CertificateInfo, check_certificate
from mpc_core.cluster import ClusterConfig
from mpc_core.errors import ConfigError
from mpc_server.transport.verifier import PeerVerifier, RevocationWatcher

KEEPALIVE_OPTIONS: list[tuple[str, int]] = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
"""Detect a silently dead peer within ~15 s even when no data flows."""

SERVER_OPTIONS: list[tuple[str, int]] = [
    *KEEPALIVE_OPTIONS,
    ("grpc.so_reuseport", 0),  # a second server on a used port must fail to bind, not share it
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_ping_strikes", 0),
]

RECONNECT_OPTIONS: list[tuple[str, int]] = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]


@dataclass(frozen=True, repr=False)
class TlsMaterial:
    """PEM bytes of a certificate, its private key and the cluster CA."""

    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes
    info: CertificateInfo

    def __repr__(self) -> str:
        """Never show the key."""
        return f"TlsMaterial({self.info.principal.uri}, <key redacted>)"


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None


def load_tls(cert: Path, key: Path, ca: Path) -> TlsMaterial:
    """Read and check a certificate, its key and the CA."""
    cert_pem, key_pem, ca_pem = (
        _read(cert, "certificate"),
        _read(key, "private key"),
        _read(ca, "CA certificate"),
    )
    info = check_certificate(cert_pem, key_pem, ca_pem, what=f"certificate {cert}")
    return TlsMaterial(cert_pem, key_pem, ca_pem, info)


def peer_verifier(material: TlsMaterial, cluster: ClusterConfig) -> PeerVerifier:
    """The per-call checks for a server with ``material`` in ``cluster``.

    Reads the cluster's revocation list (if it names one) now, and refuses
    to start a server whose own certificate is on it.

    Raises:
        ConfigError: the list cannot be read or parsed, or revokes our certificate.
    """
    watcher = None
    if cluster.revoked_path is not None:
        watcher = RevocationWatcher(cluster.revoked_path, material.info.principal.name)
        if watcher.current().revokes(material.info):
            raise ConfigError(
                f"this server's certificate ({material.info.principal.uri}, serial "
                f"{material.info.serial:x}) is on the revocation list {cluster.revoked_path}"
            )
    return PeerVerifier(material.ca_pem, watcher)


def server_credentials(material: TlsMaterial) -> grpc.ServerCredentials:
    """Server credentials that demand a CA-signed client certificate."""
    return grpc.ssl_server_credentials(
        [(material.key_pem, material.cert_pem)],
        root_certificates=material.ca_pem,
        require_client_auth=True,
    )


def channel_credentials(material: TlsMaterial) -> grpc.ChannelCredentials:
    """Channel credentials presenting our certificate and trusting the CA."""
    return grpc.ssl_channel_credentials(material.ca_pem, material.key_pem, material.cert_pem)


def channel_options(server_identity: str) -> list[tuple[str, str | int]]:
    """Options for a channel to the server whose identity is ``server_identity``."""
    return [
        ("grpc.ssl_target_name_override", server_identity),
        *KEEPALIVE_OPTIONS,
        *RECONNECT_OPTIONS,
    ]
