"""Tests for mpc_core.identity (SAN identities, names) and mpc_core.cluster (the cluster file, its ring)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc_core.cluster import (
    DEFAULT_RING_BITS,
    ClusterConfig,
    ServerEndpoint,
    max_cluster_fractional_bits,
    parse_cluster,
    render_cluster,
)
from mpc_core.errors import ConfigError, InvalidArgumentError
from mpc_core.identity import NAME_PATTERN, Principal, Role, parse_identity_uri, shown, validate_name
from mpc_core.ring import RING64, RING128, Ring
from mpc_core.types import PartyId

RINGS = pytest.mark.parametrize("ring", [RING64, RING128], ids=["Z2^64", "Z2^128"])

# --- identity -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "role", "name"),
    [
        ("urn:mpc:server:server-0", Role.SERVER, "server-0"),
        ("urn:mpc:server:x", Role.SERVER, "x"),
        ("urn:mpc:client:x", Role.CLIENT, "x"),
        ("urn:mpc:client:bank-1", Role.CLIENT, "bank-1"),
        ("urn:mpc:client:model_owner.v2", Role.CLIENT, "model_owner.v2"),
        ("urn:mpc:client:" + "a" * 128, Role.CLIENT, "a" * 128),
    ],
)
def test_parse_identity_uri_accepts_ours(uri: str, role: Role, name: str) -> None:
    principal = parse_identity_uri(uri)
    assert principal == Principal(role, name)
    assert principal is not None
    assert principal.uri == uri
    assert str(principal) == name


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "server-0",
        "urn:mpc:",
        "urn:mpc:server",
        "urn:mpc:server:",
        "urn:mpc:admin:x",
        "urn:mpc::x",
        "urn:mpc:Server:x",
        "URN:MPC:server:x",
        "urn:other:server:x",
        " urn:mpc:server:x",
        "urn:mpc:server:x ",
        "urn:mpc:server:x\n",
        "urn:mpc:server:a:b",
        "urn:mpc:server:-x",
        "urn:mpc:server:a/b",
        "urn:mpc:client:" + "a" * 129,
        "https://example.com/urn:mpc:server:x",
        "spiffe://cluster/server-0",
    ],
)
def test_parse_identity_uri_rejects_others(uri: str) -> None:
    assert parse_identity_uri(uri) is None


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(list(Role)), st.from_regex(NAME_PATTERN, fullmatch=True))
def test_principal_uri_round_trip(role: Role, name: str) -> None:
    principal = Principal(role, name)
    assert parse_identity_uri(principal.uri) == principal


@pytest.mark.parametrize("name", ["a", "0", "server-0", "bank_1", "a.b-c_d", "A" * 128, "9lives"])
def test_validate_name_accepts(name: str) -> None:
    assert validate_name(name, "dataset") == name


@pytest.mark.parametrize(
    "name",
    ["", "-a", ".a", "_a", "a b", "a/b", "a:b", "a" * 129, "é", "a\n", "a\x00", "ü-bank", "a+b", "a@b"],
)
def test_validate_name_rejects(name: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        validate_name(name, "dataset name")
    message = str(info.value)
    assert "invalid dataset name" in message
    assert shown(name) in message  # the value, cut short when long
    assert "1-128 characters" in message


def test_long_client_input_is_cut_short_in_messages() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        validate_name("x" * 20_000, "job id")
    assert len(str(info.value)) < 200
    assert "(20002 chars)" in str(info.value)


@pytest.mark.parametrize("value", [None, 7, b"abc", ["a"]])
def test_validate_name_rejects_non_strings(value: object) -> None:
    with pytest.raises(InvalidArgumentError, match="invalid job id"):
        validate_name(value, "job id")  # type: ignore[arg-type]


# --- cluster --------------------------------------------------------------------------------------

SERVERS = [("server-0", "10.0.0.1:7100"), ("server-1", "10.0.0.2:7101"), ("server-2", "[::1]:7102")]


def cluster_text(
    servers: list[dict[str, object]] | None = None, top: str = 'ca = "certs/ca.pem"\nfractional_bits = 20\n'
) -> str:
    if servers is None:
        servers = [{"identity": i, "address": a} for i, a in SERVERS]
    lines = [top]
    for table in servers:
        lines.append("[[servers]]")
        for key, value in table.items():
            lines.append(f"{key} = {value!r}" if not isinstance(value, str) else f'{key} = "{value}"')
    return "\n".join(lines) + "\n"


def parse(text: str) -> ClusterConfig:
    return parse_cluster(text, Path("/etc/mpc"))


def test_parse_cluster_happy_path() -> None:
    config = parse(cluster_text())
    assert config.identities == ("server-0", "server-1", "server-2")
    assert [s.party for s in config.servers] == [0, 1, 2]
    assert [s.address for s in config.servers] == [a for _, a in SERVERS]
    assert config.ca_path == Path("/etc/mpc/certs/ca.pem")
    assert config.fractional_bits == 20
    assert config.ring is RING128
    assert config.server(PartyId(1)).identity == "server-1"
    assert config.by_identity("server-2").party == 2
    assert config.servers[0].host == "10.0.0.1"
    assert config.servers[2].host == "::1"


def test_parse_cluster_defaults_and_absolute_ca(tmp_path: Path) -> None:
    text = cluster_text(top=f'ca = "{tmp_path / "ca.pem"}"\n')
    config = parse_cluster(text, Path("/somewhere/else"))
    assert config.ring is RING128
    assert config.fractional_bits == 32
    assert config.ca_path == tmp_path / "ca.pem"


def test_parse_cluster_relative_ca_resolves_against_base_dir(tmp_path: Path) -> None:
    config = parse_cluster(cluster_text(top='ca = "../pki/ca.pem"\n'), tmp_path / "conf")
    assert config.ca_path == tmp_path / "conf" / ".." / "pki" / "ca.pem"
    config = parse_cluster(cluster_text(top='ca = "ca.pem"\n'), tmp_path)
    assert config.ca_path == tmp_path / "ca.pem"


@RINGS
def test_parse_cluster_valid_fractional_bits(ring: Ring) -> None:
    for bits in (1, 16, 30, max_cluster_fractional_bits(ring)):
        config = parse(cluster_text(top=f'ca = "ca.pem"\nring = {ring.bits}\nfractional_bits = {bits}\n'))
        assert config.fractional_bits == bits
        assert config.ring is ring


def test_cluster_fractional_bit_limits_per_ring() -> None:
    # Products carry 2f bits: f <= k/2 - 2 leaves them at least 3 integer bits.
    assert max_cluster_fractional_bits(RING64) == 30
    assert max_cluster_fractional_bits(RING128) == 62
    assert DEFAULT_RING_BITS == 128


@pytest.mark.parametrize(
    ("ring_line", "ring", "bits"),
    [("", RING128, 32), ("ring = 128\n", RING128, 32), ("ring = 64\n", RING64, 16)],
)
def test_the_ring_key_and_its_default_scale(ring_line: str, ring: Ring, bits: int) -> None:
    config = parse(cluster_text(top=f'ca = "ca.pem"\n{ring_line}'))
    assert config.ring is ring
    assert config.fractional_bits == bits
    explicit = parse(cluster_text(top=f'ca = "ca.pem"\n{ring_line}fractional_bits = 20\n'))
    assert (explicit.ring, explicit.fractional_bits) == (ring, 20)


@pytest.mark.parametrize(
    "value",
    [
        "32",
        "0",
        "-64",
        "-128",
        "256",
        "65",
        "127",
        '"128"',
        '"64"',
        "true",
        "false",
        "128.0",
        "64.0",
        "[128]",
        "{}",
    ],
)
def test_bad_ring(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(cluster_text(top=f'ca = "ca.pem"\nring = {value}\n'))
    message = str(info.value)
    assert "ring must be 128 (Z_2^128) or 64 (Z_2^64)" in message
    assert "got" in message


def test_a_bad_ring_is_reported_before_its_scale() -> None:
    with pytest.raises(ConfigError, match="ring must be"):
        parse(cluster_text(top='ca = "ca.pem"\nring = 32\nfractional_bits = 99\n'))


def test_by_identity_unknown_names_the_servers() -> None:
    with pytest.raises(ConfigError) as info:
        parse(cluster_text()).by_identity("server-9")
    message = str(info.value)
    assert "'server-9'" in message
    assert "server-0, server-1, server-2" in message


def test_endpoint_host() -> None:
    assert ServerEndpoint(PartyId(0), "s", "localhost:1").host == "localhost"
    assert ServerEndpoint(PartyId(0), "s", "[fe80::1]:443").host == "fe80::1"
    assert ServerEndpoint(PartyId(0), "s", "mpc.example.com:7100").host == "mpc.example.com"


def servers_with(index: int, **changes: object) -> list[dict[str, object]]:
    servers: list[dict[str, object]] = [{"identity": i, "address": a} for i, a in SERVERS]
    for key, value in changes.items():
        if value is None:
            del servers[index][key]
        else:
            servers[index][key] = value
    return servers


@pytest.mark.parametrize("count", [0, 1, 2, 4])
def test_wrong_server_count(count: int) -> None:
    servers = [{"identity": f"server-{i}", "address": f"h:{7100 + i}"} for i in range(count)]
    with pytest.raises(ConfigError, match=r"exactly 3 \[\[servers\]\]"):
        parse(cluster_text(servers))


@pytest.mark.parametrize("top", ['ca = "ca.pem"\nservers = "a,b,c"\n', 'ca = "ca.pem"\nservers = {}\n'])
def test_servers_must_be_a_list(top: str) -> None:
    with pytest.raises(ConfigError, match="exactly 3"):
        parse(cluster_text([], top=top))


def test_server_entries_must_be_tables() -> None:
    with pytest.raises(ConfigError, match=r"servers\[0\] must be a table"):
        parse('ca = "ca.pem"\nservers = [1, 2, 3]\n')


def test_duplicate_identities() -> None:
    servers = servers_with(2, identity="server-0")
    with pytest.raises(ConfigError, match="server identities must be distinct"):
        parse(cluster_text(servers))


@pytest.mark.parametrize("identity", ["", "-x", "a b", "server/0", "x" * 129, 7, None])
def test_bad_identity(identity: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse(cluster_text(servers_with(1, identity=identity)))
    message = str(info.value)
    assert "servers[1]" in message
    assert "server identity" in message


@pytest.mark.parametrize(
    "address",
    [
        "nocolon",
        ":7100",
        "host:",
        "host:0",
        "host:65536",
        "host:99999",
        "host:-1",
        "host:+80",
        "host:http",
        "host:71 00",
        "",
        7100,
        None,
    ],
)
def test_bad_address(address: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse(cluster_text(servers_with(2, address=address)))
    message = str(info.value)
    assert "servers[2]" in message
    assert "host:port" in message


@pytest.mark.parametrize(
    "address",
    [
        "host:\u00b2",  # SUPERSCRIPT TWO: str.isdigit() is True but int() raises ValueError
        "host:\u0667\u0661\u0660\u0660",  # ARABIC-INDIC DIGITS "7100": isdigit() and int() accept them
    ],
)
def test_non_ascii_digit_ports_are_config_errors(address: str) -> None:
    with pytest.raises(ConfigError, match="host:port"):
        parse(cluster_text(servers_with(0, address=address)))


@pytest.mark.parametrize("port", ["1", "65535", "07100"])
def test_port_limits(port: str) -> None:
    config = parse(cluster_text(servers_with(0, address=f"h:{port}")))
    assert config.servers[0].address == f"h:{port}"


def test_unknown_top_level_keys() -> None:
    with pytest.raises(ConfigError, match=r"cluster file: unknown keys \['cas', 'port'\]"):
        parse(cluster_text(top='ca = "ca.pem"\ncas = "x"\nport = 1\n'))


def test_unknown_server_keys() -> None:
    with pytest.raises(ConfigError, match=r"servers\[1\]: unknown keys \['port'\]"):
        parse(cluster_text(servers_with(1, port=7100)))


@pytest.mark.parametrize(
    "text", ["ca = ", "[[servers]\nidentity = 1", 'ca = "a"\nca = "b"\n', "= 3", "ca = 'unterminated\n"]
)
def test_bad_toml(text: str) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse(text)


@pytest.mark.parametrize("top", ["", 'ca = ""\n', "ca = 3\n", 'ca = ["a"]\n'])
def test_missing_or_bad_ca(top: str) -> None:
    with pytest.raises(ConfigError, match="'ca' must name the CA certificate file"):
        parse(cluster_text(top=top))


@pytest.mark.parametrize("value", ["0", "-1", "31", "62", "64", '"16"', "16.0", "true", "false", "[16]"])
def test_bad_fractional_bits_in_z2_64(value: str) -> None:
    with pytest.raises(ConfigError, match=re.escape("fractional_bits must be 1..30 in Z_2^64")):
        parse(cluster_text(top=f'ca = "ca.pem"\nring = 64\nfractional_bits = {value}\n'))


@pytest.mark.parametrize("ring_line", ["", "ring = 128\n"])
@pytest.mark.parametrize("value", ["0", "-1", "63", "64", "126", '"32"', "32.0", "true", "false", "[32]"])
def test_bad_fractional_bits_in_z2_128(ring_line: str, value: str) -> None:
    with pytest.raises(ConfigError, match=re.escape("fractional_bits must be 1..62 in Z_2^128")):
        parse(cluster_text(top=f'ca = "ca.pem"\n{ring_line}fractional_bits = {value}\n'))


def test_a_scale_valid_in_z2_128_is_refused_in_z2_64() -> None:
    assert parse(cluster_text(top='ca = "ca.pem"\nring = 128\nfractional_bits = 40\n')).fractional_bits == 40
    with pytest.raises(ConfigError, match=re.escape("1..30")):
        parse(cluster_text(top='ca = "ca.pem"\nring = 64\nfractional_bits = 40\n'))


# --- render_cluster -------------------------------------------------------------------------------

NAMES = st.from_regex(NAME_PATTERN, fullmatch=True)
HOSTS = st.sampled_from(["127.0.0.1", "localhost", "[::1]", "mpc-0.example.org", "10.1.2.3"])
PORTS = st.integers(min_value=1, max_value=65535)
# Basic Multilingual Plane only: astral characters are covered by the explicit test below.
CA = st.text(st.characters(exclude_categories=("Cs",), max_codepoint=0xFFFF), min_size=1, max_size=30)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(NAMES, min_size=3, max_size=3, unique=True),
    st.lists(st.tuples(HOSTS, PORTS), min_size=3, max_size=3),
    CA,
    st.sampled_from([RING64, RING128]),
    st.data(),
)
def test_render_cluster_parses_back(
    identities: list[str], endpoints: list[tuple[str, int]], ca: str, ring: Ring, data: st.DataObject
) -> None:
    bits = data.draw(st.integers(min_value=1, max_value=max_cluster_fractional_bits(ring)), label="bits")
    servers = [(i, f"{h}:{p}") for i, (h, p) in zip(identities, endpoints, strict=True)]
    base = Path("/base")
    config = parse_cluster(render_cluster(servers, ca, bits, ring_bits=ring.bits), base)
    assert config.identities == tuple(identities)
    assert [s.address for s in config.servers] == [a for _, a in servers]
    assert config.fractional_bits == bits
    assert config.ring is ring
    assert config.ca_path == (Path(ca) if Path(ca).is_absolute() else base / ca)


@pytest.mark.parametrize("ca", ["certs/caf\u00e9/ca.pem", "certs/\U0001f511/ca.pem", "\U00010000.pem"])
def test_render_cluster_parses_back_non_ascii_ca_paths(ca: str) -> None:
    # json.dumps writes astral characters as UTF-16 surrogate pairs (\ud83d\udd11),
    # which TOML rejects: "Escaped character is not a Unicode scalar value".
    config = parse(render_cluster(SERVERS, ca))
    assert config.ca_path == Path("/etc/mpc") / ca


def test_render_cluster_default_and_layout() -> None:
    text = render_cluster(SERVERS, "certs/ca.pem")
    assert text.startswith("#")
    assert text.endswith("\n")
    assert text.count("[[servers]]") == 3
    assert "\nring = 128\n" in text
    assert "\nfractional_bits = 32\n" in text
    config = parse(text)
    assert config.ring is RING128
    assert config.fractional_bits == 32
    assert config.ca_path == Path("/etc/mpc/certs/ca.pem")


def test_render_cluster_in_z2_64_defaults_to_its_scale() -> None:
    text = render_cluster(SERVERS, "ca.pem", ring_bits=64)
    assert "\nring = 64\n" in text
    assert "\nfractional_bits = 16\n" in text
    config = parse(text)
    assert (config.ring, config.fractional_bits) == (RING64, 16)
    assert parse(render_cluster(SERVERS, "ca.pem", 24, ring_bits=64)).fractional_bits == 24


@pytest.mark.parametrize("bits", [32, 96])
def test_render_cluster_refuses_other_rings(bits: int) -> None:
    with pytest.raises(InvalidArgumentError, match=f"not Z_2\\^{bits}"):
        render_cluster(SERVERS, "ca.pem", ring_bits=bits)


def test_cluster_config_defaults() -> None:
    config = ClusterConfig(parse(cluster_text()).servers, Path("ca.pem"))
    assert config.ring is RING128
    assert config.fractional_bits == 32


# --- fingerprint ----------------------------------------------------------------------------------

CA_PEM = b"-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n"


def config_for(
    identities: tuple[str, str, str] = ("server-0", "server-1", "server-2"),
    addresses: tuple[str, str, str] = ("a:1", "b:2", "c:3"),
    bits: int = 16,
    ca: str = "ca.pem",
    ring_bits: int = 128,
) -> ClusterConfig:
    return parse(render_cluster(list(zip(identities, addresses, strict=True)), ca, bits, ring_bits))


def test_fingerprint_ignores_addresses_and_ca_path() -> None:
    reference = config_for().fingerprint(CA_PEM)
    assert len(reference) == 32
    assert config_for(addresses=("x:7", "y:8", "[::1]:9")).fingerprint(CA_PEM) == reference
    assert config_for(ca="/other/place/ca.pem").fingerprint(CA_PEM) == reference
    assert config_for().fingerprint(CA_PEM) == reference


def test_fingerprint_changes_with_identities_scale_and_ca() -> None:
    reference = config_for().fingerprint(CA_PEM)
    variants = [
        config_for(identities=("server-0", "server-1", "server-3")).fingerprint(CA_PEM),
        config_for(identities=("server-1", "server-0", "server-2")).fingerprint(CA_PEM),  # order matters
        config_for(bits=17).fingerprint(CA_PEM),
        config_for(ring_bits=64).fingerprint(CA_PEM),
        config_for().fingerprint(CA_PEM + b"\n"),
        config_for().fingerprint(b""),
    ]
    assert reference not in variants
    assert len(set(variants)) == len(variants)


def test_fingerprint_differs_between_rings_at_the_same_scale() -> None:
    for bits in (1, 16, 30):
        in_64 = config_for(bits=bits, ring_bits=64)
        in_128 = config_for(bits=bits, ring_bits=128)
        assert (in_64.ring, in_128.ring) == (RING64, RING128)
        assert in_64.fingerprint(CA_PEM) != in_128.fingerprint(CA_PEM)
        assert in_64.fingerprint(CA_PEM) == config_for(bits=bits, ring_bits=64).fingerprint(CA_PEM)
    # The default ring and an explicit ring = 128 are the same cluster.
    default = parse(cluster_text(top='ca = "ca.pem"\nfractional_bits = 16\n'))
    explicit = parse(cluster_text(top='ca = "ca.pem"\nring = 128\nfractional_bits = 16\n'))
    assert default.fingerprint(CA_PEM) == explicit.fingerprint(CA_PEM)
