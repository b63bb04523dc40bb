"""Reading identities and validity out of PEM certificates (pure, pyca x509).

Servers check their own certificate at start-up and clients learn their
identity from theirs; both get actionable :class:`ConfigError` messages
(wrong CA, expired, key does not match, no identity) instead of a TLS
handshake failure later. Bytes in, facts out: no file or network access.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from mpc_core.errors import ConfigError
from mpc_core.identity import Principal, parse_identity_uri


@dataclass(frozen=True)
class CertificateInfo:
    """What a certificate says about its holder."""

    principal: Principal
    not_before: dt.datetime
    not_after: dt.datetime


def _load(cert_pem: bytes, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise ConfigError(f"{what} is not a PEM certificate") from None


def inspect_certificate(cert_pem: bytes, what: str = "certificate") -> CertificateInfo:
    """Parse the identity (one ``urn:mpc:<role>:<name>`` URI SAN) and validity."""
    cert = _load(cert_pem, what)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise ConfigError(f"{what} has no SubjectAltName with an mpc identity") from None
    principals = [
        p for uri in san.get_values_for_type(x509.UniformResourceIdentifier) if (p := parse_identity_uri(uri))
    ]
    if len(principals) != 1:
        raise ConfigError(f"{what} must carry exactly one urn:mpc:<role>:<name> URI, found {len(principals)}")
    return CertificateInfo(principals[0], cert.not_valid_before_utc, cert.not_valid_after_utc)


def check_certificate(
    cert_pem: bytes, key_pem: bytes, ca_pem: bytes, what: str = "certificate"
) -> CertificateInfo:
    """Check that ``cert_pem`` is current, signed by the CA and matches the key.

    Raises:
        ConfigError: naming the problem and the certificate.
    """
    info = inspect_certificate(cert_pem, what)
    cert, ca = _load(cert_pem, what), _load(ca_pem, "CA certificate")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise ConfigError(f"{what} ({info.principal.name}) was not issued by the cluster CA") from None
    now = dt.datetime.now(dt.UTC)
    if not info.not_before <= now <= info.not_after:
        raise ConfigError(
            f"{what} ({info.principal.name}) is not valid now: valid "
            f"{info.not_before:%Y-%m-%d %H:%M} to {info.not_after:%Y-%m-%d %H:%M} UTC"
        )
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"private key for {info.principal.name} is not an unencrypted PEM key") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, public) != cert.public_key().public_bytes(
        serialization.Encoding.DER, public
    ):
        raise ConfigError(f"private key does not belong to {what} ({info.principal.name})")
    return info
