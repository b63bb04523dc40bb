"""Reading identities and validity out of PEM certificates (pure, pyca x509).

Servers check their own certificate at start-up and clients learn their
identity from theirs; both get actionable :class:`ConfigError` messages
(wrong CA, expired, key does not match, no identity) instead of a TLS
handshake failure later. :func:`check_leaf` is the profile every
certificate of a cluster must fit, checked by the servers on every call and
by the SDK on every server it connects to: a leaf (``CA:FALSE``) signed
directly by the cluster CA (no intermediate), current, with the extended
key usages of its role and exactly one ``urn:mpc:<role>:<name>`` URI.
:class:`RevocationList` is the parsed deny list the cluster file may name.
Bytes in, facts out: no file or network access.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import ssl
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from mpc_core.errors import ConfigError, MpcError, ServerUnavailableError, UnauthenticatedError
from mpc_core.identity import Principal, Role, parse_identity_uri

REQUIRED_USAGES: dict[Role, tuple[x509.ObjectIdentifier, ...]] = {
    Role.CLIENT: (ExtendedKeyUsageOID.CLIENT_AUTH,),
    Role.SERVER: (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
}
"""Extended key usages per role: servers also dial their peers, so they need both."""
_USAGE_NAMES = {ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth", ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth"}


@dataclass(frozen=True)
class CertificateInfo:
    """What a certificate says about its holder."""

    principal: Principal
    not_before: dt.datetime
    not_after: dt.datetime
    serial: int = 0
    fingerprint: str = ""
    """SHA-256 of the DER encoding, lowercase hex (``openssl x509 -fingerprint -sha256``)."""


def load_pem(cert_pem: bytes, what: str = "certificate") -> x509.Certificate:
    """Parse one PEM certificate, or raise :class:`ConfigError` naming ``what``."""
    try:
        return x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise ConfigError(f"{what} is not a PEM certificate") from None


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER encoding, lowercase hex."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def describe(cert: x509.Certificate, what: str = "certificate") -> CertificateInfo:
    """The identity (one ``urn:mpc:<role>:<name>`` URI SAN), validity, serial and fingerprint."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise ConfigError(f"{what} has no SubjectAltName with an mpc identity") from None
    principals = [
        p for uri in san.get_values_for_type(x509.UniformResourceIdentifier) if (p := parse_identity_uri(uri))
    ]
    if len(principals) != 1:
        raise ConfigError(f"{what} must carry exactly one urn:mpc:<role>:<name> URI, found {len(principals)}")
    return CertificateInfo(
        principals[0],
        cert.not_valid_before_utc,
        cert.not_valid_after_utc,
        cert.serial_number,
        fingerprint(cert),
    )


def inspect_certificate(cert_pem: bytes, what: str = "certificate") -> CertificateInfo:
    """Parse the identity (one ``urn:mpc:<role>:<name>`` URI SAN) and validity."""
    return describe(load_pem(cert_pem, what), what)


def load_ca(ca_pem: bytes) -> x509.Certificate:
    """The cluster CA certificate; it must be a CA (``BasicConstraints CA:TRUE``)."""
    ca = load_pem(ca_pem, "CA certificate")
    try:
        is_ca = ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise ConfigError("the CA certificate is not a CA certificate (BasicConstraints CA:TRUE)")
    return ca


def check_valid_now(info: CertificateInfo, what: str, now: dt.datetime | None = None) -> None:
    """Raise :class:`ConfigError` unless ``now`` (default: the current time) is within the validity."""
    now = dt.datetime.now(dt.UTC) if now is None else now
    if not info.not_before <= now <= info.not_after:
        raise ConfigError(
            f"{what} ({info.principal.name}) is not valid now: valid "
            f"{info.not_before:%Y-%m-%d %H:%M} to {info.not_after:%Y-%m-%d %H:%M} UTC"
        )


def check_issued_by(cert: x509.Certificate, ca: x509.Certificate, info: CertificateInfo, what: str) -> None:
    """The CA's own key signed ``cert`` (so no intermediate lies between them)."""
    if cert == ca:
        raise ConfigError(f"{what} ({info.principal.name}) is the CA certificate itself, not a leaf")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise ConfigError(f"{what} ({info.principal.name}) was not issued by the cluster CA") from None


def check_profile(cert: x509.Certificate, info: CertificateInfo, what: str) -> None:
    """``CA:FALSE``, a signing key usage, and the extended key usages of the holder's role."""
    name = f"{what} ({info.principal.name})"
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise ConfigError(
            f"{name} has no BasicConstraints: only leaf certificates (CA:FALSE) are accepted"
        ) from None
    if constraints.ca:
        raise ConfigError(
            f"{name} is a CA certificate (CA:TRUE): only leaf certificates (CA:FALSE) are accepted"
        )
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and (usage.key_cert_sign or usage.crl_sign or not usage.digital_signature):
        raise ConfigError(
            f"{name} has the key usages of a CA: a leaf needs digitalSignature, not keyCertSign"
        )
    required = REQUIRED_USAGES[info.principal.role]
    try:
        extended = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        extended = set()
    missing = [_USAGE_NAMES[oid] for oid in required if oid not in extended]
    if missing:
        wanted = "+".join(_USAGE_NAMES[oid] for oid in required)
        raise ConfigError(
            f"{name} lacks the extended key usage {', '.join(missing)}: "
            f"{info.principal.role.value} certificates need {wanted}"
        )


def check_leaf(
    cert: x509.Certificate, ca: x509.Certificate, what: str = "certificate", now: dt.datetime | None = None
) -> CertificateInfo:
    """Check ``cert`` against the cluster's certificate profile; return what it says.

    Raises:
        ConfigError: naming the certificate and the first check it fails
            (issuer, validity, CA:FALSE, key usages, identity).
    """
    info = describe(cert, what)
    check_issued_by(cert, ca, info, what)
    check_valid_now(info, what, now)
    check_profile(cert, info, what)
    return info


def check_certificate(
    cert_pem: bytes, key_pem: bytes, ca_pem: bytes, what: str = "certificate"
) -> CertificateInfo:
    """Check that ``cert_pem`` fits the profile (:func:`check_leaf`) and matches the key.

    Raises:
        ConfigError: naming the problem and the certificate.
    """
    cert = load_pem(cert_pem, what)
    info = check_leaf(cert, load_ca(ca_pem), what)
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


# -- revocation ------------------------------------------------------------------------------------

MAX_REVOCATION_LIST_BYTES = 1 << 20
_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class RevocationList:
    """Certificates no server accepts and no client trusts, by fingerprint or serial number.

    The text form has one or more entries per line, ``sha256:<hex>`` (the
    SHA-256 fingerprint of the certificate's DER encoding) or
    ``serial:<hex>`` (its serial number; the cluster accepts only
    certificates its one CA issued directly, so a serial names one
    certificate); hex digits may be separated by colons, as ``openssl``
    prints them; ``#`` starts a comment. ``mpc certs revoke NAME`` writes
    both entries on one line with the identity and the date as a comment.
    """

    fingerprints: frozenset[str] = frozenset()
    serials: frozenset[int] = frozenset()

    def __len__(self) -> int:
        """The number of entries."""
        return len(self.fingerprints) + len(self.serials)

    def revokes(self, info: CertificateInfo) -> bool:
        """Whether the certificate ``info`` describes is on the list."""
        return info.fingerprint in self.fingerprints or info.serial in self.serials


def _hex_value(text: str, kind: str, where: str) -> str:
    digits = text.replace(":", "").lower()
    if not digits or _HEX.fullmatch(digits) is None or (kind == "sha256" and len(digits) != 64):
        expected = "64 hex digits" if kind == "sha256" else "hex digits"
        raise ConfigError(f"{where}: {kind}: needs {expected}, got {text[:80]!r}")
    return digits


def parse_revocation_list(text: str, what: str = "revocation list") -> RevocationList:
    """Parse a revocation list (see :class:`RevocationList`); any bad line is an error.

    Raises:
        ConfigError: naming ``what`` and the line.
    """
    if len(text.encode()) > MAX_REVOCATION_LIST_BYTES:
        raise ConfigError(f"{what} is larger than {MAX_REVOCATION_LIST_BYTES} bytes")
    fingerprints: set[str] = set()
    serials: set[int] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        for token in line.split("#", 1)[0].split():
            kind, separator, value = token.partition(":")
            where = f"{what}, line {number}"
            if not separator or kind.lower() not in ("sha256", "serial"):
                raise ConfigError(f"{where}: expected sha256:<hex> or serial:<hex>, got {token[:80]!r}")
            digits = _hex_value(value, kind.lower(), where)
            if kind.lower() == "sha256":
                fingerprints.add(digits)
            else:
                serials.add(int(digits, 16))
    return RevocationList(frozenset(fingerprints), frozenset(serials))


def revocation_entry(info: CertificateInfo, note: str = "") -> str:
    """One line of a revocation list naming the certificate ``info`` describes."""
    note = " ".join(note.split())  # one line, whatever the note holds
    comment = f"  # {info.principal.uri}" + (f" {note}" if note else "")
    return f"sha256:{info.fingerprint} serial:{info.serial:x}{comment}"


def handshake_failure(name: str, address: str, exc: BaseException, *, presented: str = "") -> MpcError:
    """What a failed checking TLS handshake with ``name`` at ``address`` means, as an error.

    A certificate that fails verification, or a server without TLS 1.3, is
    UNAUTHENTICATED; anything else (refused, reset, timed out) UNAVAILABLE
    naming ``name``. ``presented`` words the certificate (default: ``the
    certificate at ADDRESS``).
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        what = presented or f"the certificate at {address}"
        return UnauthenticatedError(
            f"{what} fails verification against the cluster CA ({exc.verify_message})"
        )
    if isinstance(exc, ssl.SSLError):
        reason = str(exc.reason or exc)
        if "PROTOCOL_VERSION" in reason or "UNSUPPORTED_PROTOCOL" in reason:
            return UnauthenticatedError(f"{name}: the server at {address} does not offer TLS 1.3")
        return ServerUnavailableError(name, f"TLS handshake with {address} failed: {reason}")
    if isinstance(exc, TimeoutError):
        return ServerUnavailableError(name, f"no TLS handshake with {address} within the time allowed")
    reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or type(exc).__name__
    return ServerUnavailableError(name, f"cannot connect to {address}: {reason}")
