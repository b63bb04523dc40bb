"""Certificate tool: a cluster CA, server and client certificates (pyca x509).

Keys are ECDSA P-256, written with mode 0600; certificates are PEM. Server
certificates carry the server's identity both as the URI SAN
``urn:mpc:server:<id>`` (its role) and as a DNS SAN ``<id>`` (what peers and
clients verify the TLS connection against), plus any DNS names and IP
addresses it is reached at. Client certificates carry only
``urn:mpc:client:<id>``. Existing files are kept unless ``force`` is set, so
re-running the tool only fills in what is missing. The CA carries
``pathlen:0`` and every leaf ``CA:FALSE``; the servers and the SDK
additionally accept only leaves signed by the CA key itself.

:func:`revoke` adds a certificate to the cluster's revocation list (a deny
list of SHA-256 fingerprints and serial numbers, see
``mpc_core.certificates.RevocationList``); a revoked certificate counts as
missing, so the next run issues a new key and certificate for its identity.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mpc_core.certificates import (
    CertificateInfo,
    RevocationList,
    describe,
    parse_revocation_list,
    revocation_entry,
)
from mpc_core.errors import ConfigError
from mpc_core.identity import Principal, Role, validate_name

CA_NAME = "ca"
REVOKED_NAME = "revoked.txt"
REVOCATION_HEADER = (
    "# Certificates the cluster no longer accepts: sha256:<fingerprint> and/or serial:<hex> per line.\n"
    "# Written by `mpc certs revoke`; servers re-read it when it changes, without a restart.\n"
)
DEFAULT_DAYS = 365
CA_DAYS = 3650


@dataclass(frozen=True)
class Issued:
    """A certificate on disk and when it expires."""

    identity: str
    cert_path: Path
    key_path: Path
    not_after: dt.datetime
    created: bool


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600 from the first byte on."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)
    os.chmod(path, 0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _builder(
    subject: str, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, days: int
) -> x509.CertificateBuilder:
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def create_ca(
    name: str = "mpc cluster CA", days: int = CA_DAYS
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Create a self-signed CA that may sign leaf certificates only."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        _builder(name, subject, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _san(principal: Principal, hosts: Iterable[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(principal.uri)]
    if principal.role is Role.SERVER:
        names.append(x509.DNSName(principal.name))
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if host != principal.name:
                names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    principal: Principal,
    hosts: Sequence[str] = (),
    days: int = DEFAULT_DAYS,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Issue a leaf certificate for ``principal`` signed by the CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if principal.role is Role.SERVER:
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        _builder(principal.name, ca_cert.subject, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(_san(principal, hosts), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _save(
    directory: Path, stem: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate
) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _load_pair(directory: Path, stem: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None:
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    if not (cert_path.exists() and key_path.exists()):
        return None
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{key_path} is not an EC private key")
    return key, cert


def read_revocation_list(path: Path) -> RevocationList:
    """The list at ``path`` (empty if the file does not exist)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return RevocationList()
    except OSError as exc:
        raise ConfigError(f"cannot read revocation list {path}: {exc.strerror}") from None
    return parse_revocation_list(text, str(path))


def ensure_revocation_list(path: Path) -> bool:
    """Create an empty revocation list at ``path`` unless one exists; True if created."""
    if path.exists():
        read_revocation_list(path)  # a broken list is an error now, not when a server starts
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, REVOCATION_HEADER.encode())
    return True


def _write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` in one rename, so a server never reads half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def revoke(
    cert_path: Path, list_path: Path, ca_cert: x509.Certificate | None = None
) -> tuple[CertificateInfo, bool]:
    """Add the certificate in ``cert_path`` to the revocation list at ``list_path``.

    The list is created if missing and replaced atomically. With ``ca_cert``,
    only certificates that CA issued are accepted. Returns what the
    certificate says and whether it was added (False: already revoked).

    Raises:
        ConfigError: the certificate or the list cannot be read, or another CA issued it.
    """
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read certificate {cert_path}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(f"{cert_path} is not a PEM certificate") from None
    if ca_cert is not None and cert == ca_cert:
        raise ConfigError("the CA certificate cannot be revoked: make a new CA instead (deploy/README.md)")
    info = describe(cert, f"certificate {cert_path}")
    if ca_cert is not None:
        try:
            cert.verify_directly_issued_by(ca_cert)
        except (ValueError, TypeError, InvalidSignature):
            raise ConfigError(f"certificate {cert_path} was not issued by this CA") from None
    if read_revocation_list(list_path).revokes(info):
        return info, False
    try:
        existing = list_path.read_bytes()
    except FileNotFoundError:
        existing = REVOCATION_HEADER.encode()
    except OSError as exc:
        raise ConfigError(f"cannot read revocation list {list_path}: {exc.strerror}") from None
    if existing and not existing.endswith(b"\n"):
        existing += b"\n"
    line = revocation_entry(info, f"revoked {_now():%Y-%m-%dT%H:%MZ}, valid until {info.not_after:%Y-%m-%d}")
    list_path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(list_path, existing + line.encode() + b"\n")
    return info, True


class CertificateAuthority:
    """A CA kept in a directory (``ca.pem``, ``ca.key``), created on first use."""

    def __init__(
        self,
        directory: Path,
        *,
        force: bool = False,
        days: int = DEFAULT_DAYS,
        revoked: Path | None = None,
    ) -> None:
        """Load the CA from ``directory`` or create it (always when ``force``).

        Certificates on the revocation list ``revoked`` (if given) count as
        missing: :meth:`ensure` issues new ones.
        """
        self.directory = directory
        self.force = force
        self.days = days
        self.revoked = read_revocation_list(revoked) if revoked is not None else RevocationList()
        directory.mkdir(parents=True, exist_ok=True)
        existing = None if force else _load_pair(directory, CA_NAME)
        self.created = existing is None
        if existing is None:
            existing = create_ca()
            _save(directory, CA_NAME, *existing)
        self.key, self.cert = existing

    @property
    def cert_path(self) -> Path:
        """Path of the CA certificate (the trust anchor to distribute)."""
        return self.directory / f"{CA_NAME}.pem"

    def ensure(self, principal: Principal, hosts: Sequence[str] = ()) -> Issued:
        """Issue a certificate for ``principal`` unless a valid one exists."""
        validate_name(principal.name, "identity")
        if principal.name == CA_NAME:
            raise ConfigError(f"{CA_NAME!r} is reserved for the CA's own files")
        existing = None if self.force else _load_pair(self.directory, principal.name)
        if existing is not None and self._still_valid(existing[1], principal, hosts):
            cert = existing[1]
            return Issued(principal.name, *self._paths(principal.name), cert.not_valid_after_utc, False)
        key, cert = issue(self.key, self.cert, principal, hosts, self.days)
        cert_path, key_path = _save(self.directory, principal.name, key, cert)
        return Issued(principal.name, cert_path, key_path, cert.not_valid_after_utc, True)

    def _paths(self, stem: str) -> tuple[Path, Path]:
        return self.directory / f"{stem}.pem", self.directory / f"{stem}.key"

    def _still_valid(self, cert: x509.Certificate, principal: Principal, hosts: Sequence[str]) -> bool:
        try:
            cert.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, InvalidSignature):
            return False
        if cert.not_valid_after_utc <= _now():
            return False
        try:
            if self.revoked.revokes(describe(cert)):
                return False
        except ConfigError:  # no (or no single) identity: not one of ours, issue a new one
            return False
        wanted = {str(n.value) for n in _san(principal, hosts)}
        have = {
            str(n.value) for n in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        }
        return wanted <= have
