"""Plain value types of the client SDK."""

from __future__ import annotations

from dataclasses import dataclass, field

from mpc_core.errors import InvalidArgumentError
from mpc_core.identity import validate_name


@dataclass(frozen=True)
class DatasetRef:
    """A dataset on the cluster: its owner's identity and its name."""

    owner: str
    name: str

    def __post_init__(self) -> None:
        """Validate both parts."""
        validate_name(self.owner, "dataset owner")
        validate_name(self.name, "dataset name")

    @classmethod
    def parse(cls, text: str, default_owner: str) -> DatasetRef:
        """Parse ``owner/name``, or a bare ``name`` owned by ``default_owner``."""
        owner, slash, name = text.partition("/")
        if not slash:
            return cls(default_owner, text)
        if "/" in name:
            raise InvalidArgumentError(f"dataset reference {text!r} must be 'owner/name'")
        return cls(owner, name)

    def __str__(self) -> str:
        """``owner/name``."""
        return f"{self.owner}/{self.name}"


@dataclass(frozen=True)
class Grant:
    """Consent given at upload: ``receiver`` may get outputs of ``program``."""

    receiver: str
    program: str

    def __post_init__(self) -> None:
        """Validate the receiver's name."""
        validate_name(self.receiver, "grant receiver")


@dataclass(frozen=True)
class ServerJobStats:
    """One server's account of a job."""

    bytes_sent_to_peers: int
    bytes_received_from_peers: int
    rounds: int
    duration_seconds: float


@dataclass(frozen=True)
class JobResult:
    """A finished job: where its output is and what it cost."""

    job_id: str
    receiver: str
    shape: tuple[int, ...]
    fractional_bits: int
    stats: dict[str, ServerJobStats] = field(default_factory=dict)
    ring_bits: int = 128
    magnitude_bits: int = 0
    """The servers' bound on the output: every encoded element e has |e| <= 2^magnitude_bits."""
    truncation_failure_log2: float | None = None
    """log2 of the bound on the probability that a truncation gave a wrong element; None: none ran."""


@dataclass(frozen=True)
class ServerInfo:
    """What a server reports about itself."""

    identity: str
    party: int
    software_version: str
    protocol_version: int
    fractional_bits: int
    ready: bool
    peers: dict[str, bool]
    peer_bytes_sent: int = 0
    """Bytes of serialized messages this server sent to its peers, since start."""
    peer_bytes_received: int = 0
    client_bytes_received: int = 0
    client_bytes_sent: int = 0
    peak_rss_bytes: int = 0
    ring_bits: int = 0
    """The ring the cluster computes in (64 or 128)."""
