"""Tests for mpc_core.certificates, with real certificates made by mpc_cli.certs in tmp_path."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mpc_cli.certs import CertificateAuthority, create_ca, issue, read_revocation_list, revoke
from mpc_core.certificates import (
    CertificateInfo,
    check_certificate,
    check_leaf,
    inspect_certificate,
    load_ca,
    parse_revocation_list,
    revocation_entry,
)
from mpc_core.errors import ConfigError
from mpc_core.identity import Principal, Role

SERVER = Principal(Role.SERVER, "server-0")
CLIENT = Principal(Role.CLIENT, "bank-1")


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    uris: list[str],
    not_before: dt.datetime,
    not_after: dt.datetime,
    *,
    san: bool = True,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A leaf certificate with arbitrary validity and URI SANs (like mpc_cli.certs.issue)."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if san:
        names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("pki"))


def read(path: Path) -> bytes:
    return path.read_bytes()


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- happy path -----------------------------------------------------------------------------------


@pytest.mark.parametrize("principal", [SERVER, CLIENT, Principal(Role.SERVER, "server-2")])
def test_check_certificate_reports_principal_and_role(
    authority: CertificateAuthority, principal: Principal
) -> None:
    issued = authority.ensure(principal)
    info = check_certificate(read(issued.cert_path), read(issued.key_path), read(authority.cert_path))
    assert isinstance(info, CertificateInfo)
    assert info.principal == principal
    assert info.principal.role is principal.role
    assert info.not_before <= now() <= info.not_after
    assert info.not_after == issued.not_after
    assert inspect_certificate(read(issued.cert_path)) == info


def test_issue_and_inspect_without_files() -> None:
    ca_key, ca_cert = create_ca()
    key, cert = issue(ca_key, ca_cert, CLIENT, days=3)
    info = check_certificate(pem(cert), key_pem(key), pem(ca_cert), "client certificate")
    assert info.principal == CLIENT
    assert dt.timedelta(days=2, hours=23) < info.not_after - now() <= dt.timedelta(days=3)
    assert info.not_before.tzinfo is not None


def test_server_certificate_sans_and_usages(authority: CertificateAuthority) -> None:
    issued = authority.ensure(Principal(Role.SERVER, "server-1"), hosts=["127.0.0.1", "mpc-1.local", "::1"])
    cert = x509.load_pem_x509_certificate(read(issued.cert_path))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:mpc:server:server-1"]
    dns = san.get_values_for_type(x509.DNSName)
    assert dns[0] == "server-1"
    assert set(dns) == {"server-1", "mpc-1.local"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_client_certificate_has_no_dns_san_and_no_server_usage(authority: CertificateAuthority) -> None:
    issued = authority.ensure(Principal(Role.CLIENT, "model-owner"))
    cert = x509.load_pem_x509_certificate(read(issued.cert_path))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:mpc:client:model-owner"]
    assert san.get_values_for_type(x509.DNSName) == []
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_ca_certificate_is_a_ca(authority: CertificateAuthority) -> None:
    ca = x509.load_pem_x509_certificate(read(authority.cert_path))
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca is True
    assert constraints.path_length == 0


# --- files ----------------------------------------------------------------------------------------


def test_private_keys_are_written_with_mode_0600(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "pki")
    issued = [ca.ensure(SERVER, hosts=["127.0.0.1"]), ca.ensure(CLIENT)]
    for key_path in [tmp_path / "pki" / "ca.key", *(i.key_path for i in issued)]:
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600, key_path
    assert sorted(p.name for p in (tmp_path / "pki").iterdir()) == [
        "bank-1.key",
        "bank-1.pem",
        "ca.key",
        "ca.pem",
        "server-0.key",
        "server-0.pem",
    ]


def test_ensure_keeps_existing_files(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    ca = CertificateAuthority(directory)
    assert ca.created is True
    first = ca.ensure(SERVER, hosts=["127.0.0.1"])
    assert first.created is True
    snapshot = {p.name: p.read_bytes() for p in directory.iterdir()}

    again = CertificateAuthority(directory)
    assert again.created is False
    assert again.cert == ca.cert
    second = again.ensure(SERVER, hosts=["127.0.0.1"])
    assert second.created is False
    assert (second.cert_path, second.key_path) == (first.cert_path, first.key_path)
    assert second.not_after == first.not_after
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == snapshot

    # asking for a host the certificate lacks re-issues it
    third = again.ensure(SERVER, hosts=["127.0.0.1", "10.0.0.5"])
    assert third.created is True
    assert read(third.cert_path) != snapshot["server-0.pem"]


def test_ensure_refuses_the_ca_name(authority: CertificateAuthority) -> None:
    with pytest.raises(ConfigError, match="reserved"):
        authority.ensure(Principal(Role.CLIENT, "ca"))


# --- failures -------------------------------------------------------------------------------------


def test_certificate_from_another_ca(authority: CertificateAuthority) -> None:
    other_key, other_ca = create_ca()  # same subject name "mpc cluster CA", different key
    key, cert = issue(other_key, other_ca, SERVER)
    with pytest.raises(ConfigError) as info:
        check_certificate(pem(cert), key_pem(key), read(authority.cert_path), "server certificate")
    message = str(info.value)
    assert "server certificate (server-0)" in message
    assert "not issued by the cluster CA" in message


def test_certificate_from_a_differently_named_ca(authority: CertificateAuthority) -> None:
    other_key, other_ca = create_ca("some other CA")
    key, cert = issue(other_key, other_ca, CLIENT)
    with pytest.raises(ConfigError, match=r"bank-1.*not issued by the cluster CA"):
        check_certificate(pem(cert), key_pem(key), read(authority.cert_path))


def test_expired_certificate() -> None:
    ca_key, ca_cert = create_ca()
    start = now() - dt.timedelta(days=30)
    key, cert = leaf(ca_key, ca_cert, [SERVER.uri], start, start + dt.timedelta(days=10))
    with pytest.raises(ConfigError) as info:
        check_certificate(pem(cert), key_pem(key), pem(ca_cert), "server certificate")
    message = str(info.value)
    assert "server certificate (server-0) is not valid now" in message
    assert f"{start:%Y-%m-%d}" in message
    assert "UTC" in message


def test_not_yet_valid_certificate() -> None:
    ca_key, ca_cert = create_ca()
    start = now() + dt.timedelta(days=2)
    key, cert = leaf(ca_key, ca_cert, [CLIENT.uri], start, start + dt.timedelta(days=10))
    with pytest.raises(ConfigError, match=r"\(bank-1\) is not valid now"):
        check_certificate(pem(cert), key_pem(key), pem(ca_cert))


def test_key_mismatch(authority: CertificateAuthority) -> None:
    server = authority.ensure(SERVER)
    client = authority.ensure(CLIENT)
    with pytest.raises(ConfigError) as info:
        check_certificate(
            read(server.cert_path), read(client.key_path), read(authority.cert_path), "tls cert"
        )
    assert "private key does not belong to tls cert (server-0)" in str(info.value)


def test_key_that_is_not_pem(authority: CertificateAuthority) -> None:
    server = authority.ensure(SERVER)
    with pytest.raises(ConfigError, match="private key for server-0 is not an unencrypted PEM key"):
        check_certificate(read(server.cert_path), b"not a key", read(authority.cert_path))


def test_encrypted_key_is_refused(authority: CertificateAuthority) -> None:
    ca_key, ca_cert = authority.key, authority.cert
    key, cert = issue(ca_key, ca_cert, CLIENT)
    with pytest.raises(ConfigError, match="not an unencrypted PEM key"):
        check_certificate(pem(cert), key_pem(key, b"secret-pass"), pem(ca_cert))


def test_not_pem_certificate_or_ca(authority: CertificateAuthority) -> None:
    server = authority.ensure(SERVER)
    with pytest.raises(ConfigError, match="client certificate is not a PEM certificate"):
        inspect_certificate(b"garbage", "client certificate")
    with pytest.raises(ConfigError, match="not a PEM certificate"):
        check_certificate(b"", read(server.key_path), read(authority.cert_path))
    with pytest.raises(ConfigError, match="CA certificate is not a PEM certificate"):
        check_certificate(read(server.cert_path), read(server.key_path), b"garbage")


def test_certificate_without_san() -> None:
    ca_key, ca_cert = create_ca()
    _, cert = leaf(ca_key, ca_cert, [], now(), now() + dt.timedelta(days=1), san=False)
    with pytest.raises(ConfigError, match="server certificate has no SubjectAltName"):
        inspect_certificate(pem(cert), "server certificate")


@pytest.mark.parametrize(
    ("uris", "found"),
    [
        ([], 0),
        (["spiffe://example.org/server-0"], 0),
        (["urn:mpc:admin:root"], 0),
        (["urn:mpc:server:server-0", "urn:mpc:client:bank-1"], 2),
        (["urn:mpc:client:a", "urn:mpc:client:b"], 2),
    ],
)
def test_certificate_needs_exactly_one_identity(uris: list[str], found: int) -> None:
    ca_key, ca_cert = create_ca()
    _, cert = leaf(ca_key, ca_cert, uris or ["https://example.org"], now(), now() + dt.timedelta(days=1))
    with pytest.raises(ConfigError, match=f"exactly one urn:mpc:<role>:<name> URI, found {found}"):
        inspect_certificate(pem(cert))


def test_other_uris_are_ignored_next_to_one_identity() -> None:
    ca_key, ca_cert = create_ca()
    uris = ["spiffe://example.org/x", CLIENT.uri, "urn:mpc:bogus:y"]
    _, cert = leaf(ca_key, ca_cert, uris, now() - dt.timedelta(minutes=1), now() + dt.timedelta(days=1))
    assert inspect_certificate(pem(cert)).principal == CLIENT


# --- the certificate profile: leaves the CA issued itself (issue 12) ---------------------------------


def _leaf_with(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    uri: str,
    *,
    ca: bool | None = False,
    usages: list[x509.ObjectIdentifier] | None = None,
    key_usage: x509.KeyUsage | None = None,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now() - dt.timedelta(minutes=1))
        .not_valid_after(now() + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False)
    )
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    if usages is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    return key, builder.sign(ca_key, hashes.SHA256())


CLIENT_AUTH, SERVER_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH
SIGNING = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
CERT_SIGN = x509.KeyUsage(True, False, False, False, False, True, False, False, False)


@pytest.mark.parametrize(
    ("uri", "options", "message"),
    [
        (CLIENT.uri, {"ca": True, "usages": [CLIENT_AUTH]}, r"\(bank-1\) is a CA certificate \(CA:TRUE\)"),
        (CLIENT.uri, {"ca": None, "usages": [CLIENT_AUTH]}, "has no BasicConstraints"),
        (CLIENT.uri, {"usages": None}, "lacks the extended key usage clientAuth"),
        (CLIENT.uri, {"usages": [SERVER_AUTH]}, "lacks the extended key usage clientAuth"),
        (
            SERVER.uri,
            {"usages": [CLIENT_AUTH]},
            "lacks the extended key usage serverAuth: server certificates",
        ),
        (SERVER.uri, {"usages": [SERVER_AUTH]}, "lacks the extended key usage clientAuth"),
        (CLIENT.uri, {"usages": [CLIENT_AUTH], "key_usage": CERT_SIGN}, "has the key usages of a CA"),
    ],
)
def test_check_leaf_refuses_certificates_outside_the_profile(uri: str, options: dict, message: str) -> None:
    ca_key, ca_cert = create_ca()
    key, cert = _leaf_with(ca_key, ca_cert, uri, **options)
    with pytest.raises(ConfigError, match=message):
        check_leaf(cert, ca_cert, "the certificate")
    with pytest.raises(ConfigError, match=message):
        check_certificate(pem(cert), key_pem(key), pem(ca_cert))


def test_check_leaf_accepts_the_profile_and_reports_serial_and_fingerprint() -> None:
    ca_key, ca_cert = create_ca()
    _, cert = _leaf_with(ca_key, ca_cert, SERVER.uri, usages=[SERVER_AUTH, CLIENT_AUTH], key_usage=SIGNING)
    info = check_leaf(cert, ca_cert)
    assert info.principal == SERVER
    assert info.serial == cert.serial_number
    assert info.fingerprint == cert.fingerprint(hashes.SHA256()).hex()


def test_a_certificate_signed_by_a_ca_true_leaf_is_not_issued_by_the_ca() -> None:
    ca_key, ca_cert = create_ca()
    rogue_key, rogue = _leaf_with(ca_key, ca_cert, CLIENT.uri, ca=True, usages=[CLIENT_AUTH])
    _, cert = _leaf_with(rogue_key, rogue, "urn:mpc:client:model-owner", usages=[CLIENT_AUTH])
    with pytest.raises(ConfigError, match=r"\(model-owner\) was not issued by the cluster CA"):
        check_leaf(cert, ca_cert)


def test_the_ca_itself_is_no_leaf_and_a_non_ca_is_no_ca(authority: CertificateAuthority) -> None:
    client = authority.ensure(CLIENT)
    with pytest.raises(ConfigError, match="not a CA certificate"):
        load_ca(read(client.cert_path))
    with pytest.raises(ConfigError, match="not a CA certificate"):
        check_certificate(read(client.cert_path), read(client.key_path), read(client.cert_path))


# --- revocation lists -----------------------------------------------------------------------------


def test_revocation_list_entries_comments_and_notations(authority: CertificateAuthority) -> None:
    info = inspect_certificate(read(authority.ensure(CLIENT).cert_path))
    colons = ":".join(info.fingerprint[i : i + 2] for i in range(0, 64, 2)).upper()
    text = f"# header\n\n  sha256:{colons}   # bank-1\nserial:0A:ff serial:{info.serial:X}\n"
    parsed = parse_revocation_list(text)
    assert parsed.fingerprints == {info.fingerprint}
    assert parsed.serials == {0x0AFF, info.serial}
    assert parsed.revokes(info) and len(parsed) == 3
    assert parse_revocation_list(revocation_entry(info, "note\nserial:1")).revokes(info)
    assert parse_revocation_list(revocation_entry(info, "note\nserial:1")).serials == {info.serial}
    assert not parse_revocation_list("").revokes(info)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("deadbeef\n", "line 1: expected sha256:<hex> or serial:<hex>"),
        ("# ok\nsha1:00\n", "line 2: expected sha256:<hex> or serial:<hex>"),
        ("sha256:abcd\n", "line 1: sha256: needs 64 hex digits"),
        ("serial:xyz\n", "line 1: serial: needs hex digits"),
        ("serial:\n", "line 1: serial: needs hex digits"),
    ],
)
def test_a_bad_revocation_list_line_is_an_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_revocation_list(text, "revoked.txt")


def test_a_huge_revocation_list_is_refused() -> None:
    with pytest.raises(ConfigError, match="larger than"):
        parse_revocation_list("#" * (2 << 20))


def test_revoke_adds_once_and_a_revoked_certificate_is_issued_anew(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "pki")
    first = ca.ensure(CLIENT)
    listed = tmp_path / "pki" / "revoked.txt"
    info, added = revoke(first.cert_path, listed, ca.cert)
    assert added and info.principal == CLIENT
    assert revoke(first.cert_path, listed, ca.cert) == (info, False)
    assert read_revocation_list(listed).revokes(info)
    assert CertificateAuthority(tmp_path / "pki").ensure(CLIENT).created is False  # the list not consulted
    again = CertificateAuthority(tmp_path / "pki", revoked=listed).ensure(CLIENT)
    assert again.created is True
    assert not read_revocation_list(listed).revokes(inspect_certificate(read(again.cert_path)))


def test_revoke_refuses_the_ca_and_certificates_of_other_cas(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "pki")
    with pytest.raises(ConfigError, match="the CA certificate cannot be revoked"):
        revoke(ca.cert_path, tmp_path / "revoked.txt", ca.cert)
    other = CertificateAuthority(tmp_path / "other").ensure(CLIENT)
    with pytest.raises(ConfigError, match="was not issued by this CA"):
        revoke(other.cert_path, tmp_path / "revoked.txt", ca.cert)
    assert not (tmp_path / "revoked.txt").exists()
