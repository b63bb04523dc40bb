"""Plain value types of the client SDK."""

from __future__ import annotations

import enum
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mpc_core.errors import InvalidArgumentError
from mpc_core.identity import validate_name

UPLOAD_ID_BYTES = 16


@dataclass(frozen=True)
class DatasetRef:
    """A dataset on the cluster: its owner's identity, its name and perhaps a version.

    ``version`` is the hex upload id of one upload of the dataset (``upload``
    returns it). ``owner/name@version`` in a pinned grant allows exactly that
    version: re-uploading the dataset voids the grant.
    """

    owner: str
    name: str
    version: str = ""

    def __post_init__(self) -> None:
        """Validate the parts."""
        validate_name(self.owner, "dataset owner")
        validate_name(self.name, "dataset name")
        if self.version:
            try:
                raw = bytes.fromhex(self.version)
            except ValueError:
                raw = b""
            if len(raw) != UPLOAD_ID_BYTES:
                raise InvalidArgumentError(f"a dataset version is {UPLOAD_ID_BYTES} bytes in hex")

    @classmethod
    def parse(cls, text: str, default_owner: str) -> DatasetRef:
        """Parse ``owner/name`` or ``owner/name@version``, or a bare ``name`` owned by ``default_owner``."""
        text, _, version = text.partition("@")
        owner, slash, name = text.partition("/")
        if not slash:
            return cls(default_owner, text, version)
        if "/" in name:
            raise InvalidArgumentError(f"dataset reference {text!r} must be 'owner/name'")
        return cls(owner, name, version)

    @property
    def pinned(self) -> str:
        """``owner/name@version`` (``owner/name`` without a version)."""
        return f"{self}@{self.version}" if self.version else str(self)

    def __str__(self) -> str:
        """``owner/name``."""
        return f"{self.owner}/{self.name}"


def _pin_text(ref: Any) -> str:
    """A pinned input as text: ``owner/name[@version][#col,col]``, or ``"self"``."""
    if isinstance(ref, Select):
        return f"{_pin_text(ref.dataset)}#{','.join(ref.columns)}"
    if isinstance(ref, DatasetRef):
        return ref.pinned
    if isinstance(ref, str):
        return ref
    raise InvalidArgumentError(f"a pinned input is a dataset name, a DatasetRef or a Select, not {ref!r}")


ParamValue = float | int | bool
"""A job parameter's value: a number, an integer or a flag (the program says which)."""
SELF = "self"
"""In a pinned grant's inputs: the dataset the grant belongs to."""


class GrantScope(enum.Enum):
    """What the other inputs of a job under a grant may be (see :class:`Grant`)."""

    OWN_DATA = "own-data"
    PINNED = "pinned"
    ANY_INPUTS = "any-inputs"


@dataclass(frozen=True)
class Grant:
    """Consent: ``receiver`` may get outputs of ``program`` from jobs that use the dataset so.

    ``Grant(receiver, program)`` is the safe default: the job's other inputs
    must all be the same owner's datasets, so nobody else's data (a
    receiver's weights, say) can be combined with it. :meth:`pinned` allows
    one exact job, the inputs pinned by name and version; :meth:`read_access`
    allows any inputs: what it says, read access. ``role`` restricts the role
    the dataset plays; ``submitters`` who may submit such jobs (default: the
    receiver only); ``max_uses`` and ``expires_at`` (Unix time) limit it.
    """

    receiver: str
    program: str
    role: str = ""
    scope: GrantScope = GrantScope.OWN_DATA
    inputs: tuple[tuple[str, str], ...] = ()
    """For a pinned grant: (role, ``owner/name[@version]`` or ``"self"``) of every input, in order."""
    submitters: tuple[str, ...] = ()
    max_uses: int = 0
    expires_at: float = 0.0
    grant_id: str = field(default_factory=lambda: secrets.token_hex(16))
    """Names the grant on all three servers (for revocation and in the audit trail)."""
    parameters: Mapping[str, ParamValue] | tuple[tuple[str, ParamValue], ...] = ()
    """Public parameters the job must have exactly these values of, e.g. ``{"l2": 0.1}``
    (kept as sorted pairs: see :attr:`fixed_parameters`)."""
    keep_outputs: bool = False
    """Allow only jobs that keep every output on the servers as datasets (nobody sees them)."""

    def __post_init__(self) -> None:
        """Validate names and the scope's inputs."""
        validate_name(self.receiver, "grant receiver")
        for submitter in self.submitters:
            validate_name(submitter, "grant submitter")
        if (self.scope is GrantScope.PINNED) != bool(self.inputs):
            raise InvalidArgumentError("a pinned grant lists the job's inputs, and only a pinned grant does")
        if self.max_uses < 0 or self.expires_at < 0:
            raise InvalidArgumentError("max_uses and expires_at cannot be negative")
        pairs = self.parameters.items() if isinstance(self.parameters, Mapping) else self.parameters
        object.__setattr__(self, "parameters", tuple(sorted(pairs)))

    @property
    def fixed_parameters(self) -> dict[str, ParamValue]:
        """The parameters the grant fixes, by name."""
        pairs = self.parameters.items() if isinstance(self.parameters, Mapping) else self.parameters
        return dict(pairs)

    @classmethod
    def pinned(
        cls,
        receiver: str,
        program: str,
        inputs: Mapping[str, Any],
        **options: Any,
    ) -> Grant:
        """Allow exactly one job: its inputs by role, in order, as the job will name them.

        ``inputs`` is the job's input mapping (as for ``run``); the dataset
        the grant is given on must be among them (by name, or as ``"self"``),
        so one grant can serve every dataset of the job. Other owners'
        datasets are best given with their version (``owner/name@version``,
        what their upload returned): replacing such a dataset then voids the
        grant. ``role`` defaults to the role the dataset plays in the job.
        A :class:`Select` pins the columns the job selects too (in the input
        text as ``owner/name@version#col,col``). Options as for the constructor.
        """
        pairs: list[tuple[str, str]] = []
        for role, spec in inputs.items():
            refs = [spec] if isinstance(spec, (str, DatasetRef, Select)) else list(spec)
            pairs += [(role, _pin_text(ref)) for ref in refs]
        if not pairs:
            raise InvalidArgumentError("a pinned grant lists the job's inputs")
        return cls(receiver, program, scope=GrantScope.PINNED, inputs=tuple(pairs), **options)

    @classmethod
    def read_access(cls, receiver: str, program: str, **options: Any) -> Grant:
        """Allow ``program`` with **any** other inputs: the receiver can compute anything from the data."""
        return cls(receiver, program, scope=GrantScope.ANY_INPUTS, **options)


@dataclass(frozen=True)
class ServerJobStats:
    """One server's account of a job."""

    bytes_sent_to_peers: int
    bytes_received_from_peers: int
    rounds: int
    duration_seconds: float


@dataclass(frozen=True)
class Select:
    """Some columns of a dataset, by the names it was uploaded with, in this order (a job input)."""

    dataset: str | DatasetRef
    columns: tuple[str, ...]

    def __init__(self, dataset: str | DatasetRef, *columns: str) -> None:
        """``Select("bank-1/accounts", "income", "debt")``."""
        if not columns:
            raise InvalidArgumentError("Select names at least one column")
        object.__setattr__(self, "dataset", dataset)
        object.__setattr__(self, "columns", tuple(validate_name(c, "column name") for c in columns))


@dataclass(frozen=True)
class Keep:
    """Keep one output of a job on the servers as a new dataset of the receiver.

    Nobody sees it; later jobs use it under its ``grants``, like an upload.
    """

    dataset: str
    grants: tuple[Grant, ...] = ()
    overwrite: bool = False

    def __post_init__(self) -> None:
        """Validate the name."""
        validate_name(self.dataset, "kept dataset name")


@dataclass(frozen=True)
class OutputDescription:
    """One output of a job: its name, shape, scale and bound, or the dataset it was kept as."""

    name: str
    shape: tuple[int, ...]
    fractional_bits: int
    magnitude_bits: int
    truncation_failure_log2: float | None = None
    kept_as: DatasetRef | None = None
    """With ``version``: the dataset the output became (nothing of it can be fetched)."""
    keyed: bool = False
    """Its rows carry join tokens: fetch it with ``fetch_table``."""


@dataclass(frozen=True)
class JobResult:
    """A finished job: where its outputs are and what it cost (the top-level fields: the first output)."""

    job_id: str
    receiver: str
    shape: tuple[int, ...]
    fractional_bits: int
    stats: dict[str, ServerJobStats] = field(default_factory=dict)
    submitter: str = ""
    """Who submitted the job (job ids are scoped by submitter); empty: the caller."""
    ring_bits: int = 128
    magnitude_bits: int = 0
    """The servers' bound on the output: every encoded element e has |e| <= 2^magnitude_bits."""
    truncation_failure_log2: float | None = None
    """log2 of the bound on the probability that a truncation gave a wrong element; None: none ran."""
    outputs: tuple[OutputDescription, ...] = ()
    """Every output, in the program's order."""

    def output(self, name: str) -> OutputDescription:
        """The output named ``name``."""
        for output in self.outputs:
            if output.name == name:
                return output
        raise KeyError(
            f"job {self.job_id} has no output {name!r} (outputs: {[o.name for o in self.outputs]})"
        )


@dataclass(frozen=True)
class ProgramDescription:
    """A program a server offers: roles (name, min, max), parameters and outputs."""

    name: str
    summary: str
    roles: tuple[tuple[str, int, int], ...]
    parameters: tuple[tuple[str, str, str], ...]
    """(name, type, summary with default and range)."""
    outputs: tuple[str, ...]


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
    client_bytes_received: int = 0
    """Bytes of serialized messages this server received from the caller, since it started."""
    client_bytes_sent: int = 0
    """Bytes this server sent to the caller, since it started."""
    ring_bits: int = 0
    """The ring the cluster computes in (64 or 128)."""
    programs: tuple[ProgramDescription, ...] = ()


@dataclass(frozen=True)
class GrantState:
    """A grant as a server holds it, with the jobs it ran under it."""

    grant: Grant
    uses: int


@dataclass(frozen=True)
class DatasetInfo:
    """One of the caller's datasets, as the three servers agree it is."""

    ref: DatasetRef
    """With ``version``: the upload id of the version stored."""
    shape: tuple[int, ...]
    created_at: float
    ring_bits: int
    fractional_bits: int
    magnitude_bits: int | None
    grants: tuple[GrantState, ...]
    alignment: str = ""
    """For a keyed table: the alignment of its row tokens."""
    columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuditInput:
    """One input of an audited job: role, dataset (with the version read), the grant that allowed it."""

    role: str
    dataset: DatasetRef
    grant_id: str
    columns: tuple[str, ...] = ()
    """The columns the job selected (empty: all)."""


@dataclass(frozen=True)
class JobRecord:
    """What the servers recorded for one job."""

    job_id: str
    submitter: str
    receiver: str
    program: str
    inputs: tuple[AuditInput, ...]
    started_at: float
    finished_at: float
    status: str
    """``OK``, ``RUNNING``, or the gRPC status name of the job's error."""
    error: str
    parameters: tuple[tuple[str, ParamValue], ...] = ()
    kept: tuple[tuple[str, DatasetRef], ...] = ()
    """(output, dataset with version) of the outputs kept on the servers."""


@dataclass(frozen=True)
class Listing:
    """What the three servers returned, where they agree, and where they do not."""

    items: tuple[Any, ...]
    disagreements: tuple[str, ...] = ()
    """One line per item the servers do not agree on, naming the servers (empty: all agree)."""
