"""Domain types of the service layer: datasets, jobs, outputs (grants: ``service.grants``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mpc_core.identity import validate_name
from mpc_core.ring import Ring, ring_for_bits
from mpc_core.sharing import ReplicatedShare

if TYPE_CHECKING:
    from mpc_server.service.grants import Grant


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


@dataclass(frozen=True, eq=False)
class DatasetSummary:
    """What a server knows about a stored dataset without reading its shares.

    ``magnitude_bits`` is the owner's public bound (every encoded element
    ``e`` has ``|e| <= 2^magnitude_bits``), or None for a dataset stored
    before bounds existed; programs refuse such datasets.
    ``initial_grants`` are the grants its upload carried (the grant book
    holds the current ones).
    """

    ref: DatasetRef
    shape: tuple[int, ...]
    ring_bits: int
    fractional_bits: int
    magnitude_bits: int | None
    upload_id: bytes
    created_at: float
    initial_grants: tuple[Grant, ...]
    alignment: str = field(default="", kw_only=True)
    """For a keyed dataset: the alignment whose tokens key its rows (``service.key_store``)."""
    columns: tuple[str, ...] = field(default=(), kw_only=True)
    """The owner's names of its columns (a keyed table's features); empty: unnamed."""

    @property
    def keyed(self) -> bool:
        """Whether the rows carry join tokens."""
        return bool(self.alignment)

    @property
    def rows(self) -> int:
        """The first dimension (1 for a scalar)."""
        return self.shape[0] if self.shape else 1

    @property
    def ring(self) -> Ring:
        """The ring the dataset was shared in."""
        return ring_for_bits(self.ring_bits)

    @property
    def size(self) -> int:
        """Number of elements."""
        count = 1
        for dim in self.shape:
            count *= dim
        return count


@dataclass(frozen=True, eq=False)
class StoredDataset(DatasetSummary):
    """A dataset with this server's share of it, read from storage."""

    share: ReplicatedShare

    @property
    def nbytes(self) -> int:
        """Bytes of this server's two components in memory."""
        return self.share.first.nbytes + self.share.second.nbytes


@dataclass(frozen=True)
class JobInput:
    """A dataset playing a role in a job, e.g. ``("features", bank-1/income)``."""

    role: str
    dataset: DatasetRef
    columns: tuple[str, ...] = ()
    """Only these columns, by name, in this order (empty: all)."""


@dataclass(frozen=True)
class KeepRequest:
    """Keep one output of a job on the servers as a dataset of the receiver."""

    output: str
    dataset: str
    grants: tuple[Grant, ...] = ()
    overwrite: bool = False

    def __post_init__(self) -> None:
        """Validate the dataset name."""
        validate_name(self.dataset, "kept dataset name")


@dataclass(frozen=True)
class JobSpec:
    """What a client asked for: program, inputs, parameters, the receiver, outputs to keep."""

    job_id: str
    program: str
    inputs: tuple[JobInput, ...]
    receiver: str
    output_fractional_bits: int | None = None
    """The scale the receiver wants the outputs at; None: the program's natural scale."""
    parameters: tuple[tuple[str, float | int | bool], ...] = ()
    """The public parameters as given (the program checks them and fills in defaults)."""
    keep: tuple[KeepRequest, ...] = ()
    """Outputs kept as datasets of the receiver instead of delivered."""

    def __post_init__(self) -> None:
        """Validate the names (programs are checked by the registry)."""
        validate_name(self.job_id, "job id")
        validate_name(self.receiver, "receiver")


@dataclass(frozen=True)
class OutputInfo:
    """Name, shape, ring, fixed-point scale and public bound of a job output.

    ``truncation_failure_log2`` bounds (log2) the probability that a
    probabilistic truncation gave a wrong element; None when none ran.
    ``kept_as`` and ``kept_version`` name the dataset an output kept on the
    servers became.
    """

    shape: tuple[int, ...]
    fractional_bits: int
    ring_bits: int
    magnitude_bits: int = 0
    truncation_failure_log2: float | None = None
    name: str = ""
    kept_as: DatasetRef | None = None
    kept_version: bytes = b""
    keyed: bool = False
    """Its rows carry the job's join tokens (a keyed job's row-wise output)."""


@dataclass(frozen=True)
class JobStats:
    """Traffic and timing of one server's part of a job."""

    bytes_sent: int
    bytes_received: int
    rounds: int
    duration_seconds: float


@dataclass(frozen=True)
class JobResult:
    """A finished job, as reported to the submitter: every output, in the program's order."""

    job_id: str
    outputs: tuple[OutputInfo, ...]
    stats: JobStats

    @property
    def output(self) -> OutputInfo:
        """The program's first output."""
        return self.outputs[0]

    @property
    def delivered(self) -> tuple[OutputInfo, ...]:
        """The outputs kept for the receiver to fetch (not kept as datasets)."""
        return tuple(o for o in self.outputs if o.kept_as is None)


@dataclass(frozen=True, eq=False)
class StoredOutput:
    """This server's share of a job output, kept for the receiver only."""

    job_id: str
    receiver: str
    info: OutputInfo
    share: ReplicatedShare
    job_digest: bytes = b""
    """The job description's digest, to recognise a replayed job id."""
    submitter: str = ""
    """Who submitted the job: job ids are scoped by submitter (empty: the receiver)."""
    index: int = 0
    """The output's position among the program's outputs (0: the first)."""

    @property
    def key(self) -> str:
        """The output's name on this server: ``submitter/job_id/output``."""
        return output_key(self.submitter or self.receiver, self.job_id, self.info.name)


def output_key(submitter: str, job_id: str, output: str) -> str:
    """The name of one output of a job: ``submitter/job_id/output`` (names hold no ``/``)."""
    return f"{submitter}/{job_id}/{output}"


def job_key(submitter: str, job_id: str) -> str:
    """The prefix of every output key of a job: ``submitter/job_id``."""
    return f"{submitter}/{job_id}"
