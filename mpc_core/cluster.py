"""The cluster file: the three servers (identity, address), the CA, the ring and scale.

One TOML file describes a cluster for servers and clients alike::

    ca = "certs/ca.pem"          # relative to the cluster file
    revoked = "certs/revoked.txt"  # optional: the certificate deny list, also relative
    ring = 128                   # Z_2^128 (default) or 64 for Z_2^64
    fractional_bits = 32         # default: 32 in Z_2^128, 16 in Z_2^64

    [[servers]]
    identity = "server-0"
    address = "127.0.0.1:7100"
    # ... exactly three [[servers]] tables, in party order 0, 1, 2

Parsing is pure (text in, :class:`ClusterConfig` out); callers read files.
:attr:`ClusterConfig.fingerprint` hashes what all parties must agree on (the
server identities in order, the ring, the default scale and the CA certificate),
but not the addresses, which differ between inside and outside a container
network, nor the revocation list, which changes while the cluster runs (servers
re-read it when it changes; see ``mpc_core.certificates.RevocationList``).
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpc_core.errors import ConfigError, InvalidArgumentError
from mpc_core.fixed_point import default_fractional_bits
from mpc_core.identity import validate_name
from mpc_core.ring import RING128, Ring, ring_for_bits
from mpc_core.types import PARTY_COUNT, PartyId, party_id

DEFAULT_RING_BITS = 128


def max_cluster_fractional_bits(ring: Ring) -> int:
    """Products carry 2f bits; f <= k/2 - 2 leaves them an integer part of at least 3 bits."""
    return ring.bits // 2 - 2


@dataclass(frozen=True)
class ServerEndpoint:
    """One server of the cluster."""

    party: PartyId
    identity: str
    address: str

    @property
    def host(self) -> str:
        """The host part of ``address`` (brackets of IPv6 literals removed)."""
        host = self.address.rsplit(":", 1)[0]
        return host[1:-1] if host.startswith("[") else host


@dataclass(frozen=True)
class ClusterConfig:
    """The parsed cluster file."""

    servers: tuple[ServerEndpoint, ServerEndpoint, ServerEndpoint]
    ca_path: Path
    fractional_bits: int = default_fractional_bits(RING128)
    """The scale clients encode new datasets at unless they choose another."""
    ring: Ring = RING128
    revoked_path: Path | None = None
    """The certificate revocation list (deny list) named by ``revoked``, if any."""

    def server(self, party: PartyId) -> ServerEndpoint:
        """The endpoint of ``party``."""
        return self.servers[party]

    def by_identity(self, identity: str) -> ServerEndpoint:
        """The endpoint whose identity is ``identity``."""
        for endpoint in self.servers:
            if endpoint.identity == identity:
                return endpoint
        names = ", ".join(s.identity for s in self.servers)
        raise ConfigError(f"{identity!r} is not a server of this cluster ({names})")

    @property
    def identities(self) -> tuple[str, ...]:
        """Server identities in party order."""
        return tuple(s.identity for s in self.servers)

    def fingerprint(self, ca_pem: bytes) -> bytes:
        """SHA-256 of what every party must agree on (not the addresses)."""
        canonical = json.dumps(
            {
                "servers": list(self.identities),
                "ring_bits": self.ring.bits,
                "fractional_bits": self.fractional_bits,
                "ca_sha256": hashlib.sha256(ca_pem).hexdigest(),
            },
            sort_keys=True,
        )
        return hashlib.sha256(canonical.encode()).digest()


def _check_address(address: Any, where: str) -> str:
    if not isinstance(address, str) or ":" not in address:
        raise ConfigError(f"{where}: address must be 'host:port', got {address!r}")
    host, _, port = address.rpartition(":")
    if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}: address must be 'host:port' with port 1-65535, got {address!r}")
    return address


def _parse_server(index: int, table: Any) -> ServerEndpoint:
    where = f"servers[{index}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table with identity and address")
    unknown = set(table) - {"identity", "address"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    try:
        identity = validate_name(table.get("identity", ""), "server identity")
    except InvalidArgumentError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return ServerEndpoint(party_id(index), identity, _check_address(table.get("address"), where))


def parse_cluster(text: str, base_dir: Path) -> ClusterConfig:
    """Parse cluster-file ``text``; relative paths resolve against ``base_dir``.

    Raises:
        ConfigError: with the offending key, for any invalid content.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"cluster file is not valid TOML: {exc}") from None
    unknown = set(data) - {"ca", "revoked", "ring", "fractional_bits", "servers"}
    if unknown:
        raise ConfigError(f"cluster file: unknown keys {sorted(unknown)}")
    servers = data.get("servers")
    if not isinstance(servers, list) or len(servers) != PARTY_COUNT:
        raise ConfigError(f"cluster file must list exactly {PARTY_COUNT} [[servers]]")
    endpoints = tuple(_parse_server(i, table) for i, table in enumerate(servers))
    if len({e.identity for e in endpoints}) != PARTY_COUNT:
        raise ConfigError("cluster file: server identities must be distinct")
    ca = data.get("ca")
    if not isinstance(ca, str) or not ca:
        raise ConfigError("cluster file: 'ca' must name the CA certificate file")
    ring = _parse_ring(data.get("ring", DEFAULT_RING_BITS))
    bits = data.get("fractional_bits", default_fractional_bits(ring))
    limit = max_cluster_fractional_bits(ring)
    if isinstance(bits, bool) or not isinstance(bits, int) or not 0 < bits <= limit:
        raise ConfigError(f"cluster file: fractional_bits must be 1..{limit} in {ring.name}")
    ca_path = Path(ca) if Path(ca).is_absolute() else base_dir / ca
    revoked = data.get("revoked")
    if revoked is not None and (not isinstance(revoked, str) or not revoked):
        raise ConfigError("cluster file: 'revoked' must name the certificate revocation list file")
    revoked_path = (
        None if revoked is None else Path(revoked) if Path(revoked).is_absolute() else base_dir / revoked
    )
    return ClusterConfig((endpoints[0], endpoints[1], endpoints[2]), ca_path, bits, ring, revoked_path)


def _parse_ring(value: Any) -> Ring:
    if isinstance(value, bool) or not isinstance(value, int) or value not in (64, 128):  # not 128.0
        raise ConfigError(f"cluster file: ring must be 128 (Z_2^128) or 64 (Z_2^64), got {value!r}")
    return ring_for_bits(int(value))


def _toml_string(value: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    escaped = "".join(
        f"\\u{ord(ch):04x}" if ord(ch) < 0x20 or ord(ch) == 0x7F else "\\" + ch if ch in '"\\' else ch
        for ch in value
    )
    return f'"{escaped}"'


def render_cluster(
    servers: list[tuple[str, str]],
    ca: str,
    fractional_bits: int | None = None,
    ring_bits: int = DEFAULT_RING_BITS,
    revoked: str | None = None,
) -> str:
    """Write a cluster file for ``(identity, address)`` pairs in party order."""
    bits = default_fractional_bits(ring_for_bits(ring_bits)) if fractional_bits is None else fractional_bits
    lines = [
        "# MPC cluster file: the three servers in party order, the CA, the ring and the scale.",
        f"ca = {_toml_string(ca)}",
        *([f"revoked = {_toml_string(revoked)}"] if revoked is not None else []),
        f"ring = {ring_bits}",
        f"fractional_bits = {bits}",
    ]
    for identity, address in servers:
        lines += [
            "",
            "[[servers]]",
            f"identity = {_toml_string(identity)}",
            f"address = {_toml_string(address)}",
        ]
    return "\n".join(lines) + "\n"
