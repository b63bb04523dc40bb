"""Domain types of the service layer: datasets, grants, jobs, outputs."""

from __future__ import annotations

from dataclasses import dataclass

from mpc_core.identity import validate_name
from mpc_core.ring import Ring
from mpc_core.sharing import ReplicatedShare


@dataclass(frozen=True, order=True)
class DatasetRef:
    """A dataset named by its owner's identity and the owner's name for it."""

    owner: str
    name: str

    def __post_init__(self) -> None:
        """Validate both parts."""
        validate_name(self.owner, "dataset owner")
        validate_name(self.name, "dataset name")

    def __str__(self) -> str:
        """``owner/name``."""
        return f"{self.owner}/{self.name}"


@dataclass(frozen=True, order=True)
class Grant:
    """Consent: ``receiver`` may get outputs of ``program`` from a dataset."""

    receiver: str
    program: str


@dataclass(frozen=True, eq=False)
class StoredDataset:
    """One server's share of an uploaded array, with its metadata.

    ``magnitude_bits`` is the owner's public bound (every encoded element
    ``e`` has ``|e| <= 2^magnitude_bits``), or None for a dataset stored
    before bounds existed; programs refuse such datasets.
    """

    ref: DatasetRef
    shape: tuple[int, ...]
    fractional_bits: int
    grants: frozenset[Grant]
    upload_id: bytes
    share: ReplicatedShare
    magnitude_bits: int | None = None

    @property
    def ring(self) -> Ring:
        """The ring the dataset was shared in."""
        return self.share.ring

    def allows(self, receiver: str, program: str) -> bool:
        """Whether the owner granted ``receiver`` outputs of ``program``."""
        return Grant(receiver, program) in self.grants


@dataclass(frozen=True)
class JobInput:
    """A dataset playing a role in a job, e.g. ``("features", bank-1/income)``."""

    role: str
    dataset: DatasetRef


@dataclass(frozen=True)
class JobSpec:
    """What a client asked for: program, inputs and the one output receiver."""

    job_id: str
    program: str
    inputs: tuple[JobInput, ...]
    receiver: str
    output_fractional_bits: int | None = None
    """The scale the receiver wants the output at; None: the program's natural scale."""

    def __post_init__(self) -> None:
        """Validate the names (programs are checked by the registry)."""
        validate_name(self.job_id, "job id")
        validate_name(self.receiver, "receiver")


@dataclass(frozen=True)
class OutputInfo:
    """Shape, ring, fixed-point scale and public bound of a job output.

    ``truncation_failure_log2`` bounds (log2) the probability that a
    probabilistic truncation gave a wrong element; None when none ran.
    """

    shape: tuple[int, ...]
    fractional_bits: int
    ring_bits: int
    magnitude_bits: int = 0
    truncation_failure_log2: float | None = None


@dataclass(frozen=True)
class JobStats:
    """Traffic and timing of one server's part of a job."""

    bytes_sent: int
    bytes_received: int
    rounds: int
    duration_seconds: float


@dataclass(frozen=True)
class JobResult:
    """A finished job, as reported to the submitter."""

    job_id: str
    output: OutputInfo
    stats: JobStats


@dataclass(frozen=True, eq=False)
class StoredOutput:
    """This server's share of a job output, kept for the receiver only."""

    job_id: str
    receiver: str
    info: OutputInfo
    share: ReplicatedShare
    job_digest: bytes = b""
    """The job description's digest, to recognise a replayed job id."""
