"""The error hierarchy shared by the core, the servers and the client SDK.

Every error the product raises on purpose derives from :class:`MpcError`.
Each class names its gRPC status code in ``grpc_status`` (a string, so this
module needs no gRPC): the servers abort calls with that code, and the
client SDK maps codes back to these classes, so callers catch the same
exceptions whichever side detected the problem.

Messages never contain secret values (shares, keys, plaintext inputs): they
name datasets, jobs, servers and sizes only. This module imports only the standard library.
"""

from __future__ import annotations

from typing import ClassVar


class MpcError(Exception):
    """Base class of every error raised by the MPC service."""

    grpc_status: ClassVar[str] = "INTERNAL"


class InvalidArgumentError(MpcError, ValueError):
    """A request or value is malformed: wrong shape, name, size or range."""

    grpc_status: ClassVar[str] = "INVALID_ARGUMENT"


class EncodingError(InvalidArgumentError):
    """A value cannot be encoded in fixed point (NaN, infinite, out of range)."""


class ShareFormatError(InvalidArgumentError):
    """Share bytes do not have the length or structure the header promised."""


class InconsistentSharesError(InvalidArgumentError):
    """A client gave two servers different copies of the same share component."""


class NotFoundError(MpcError, LookupError):
    """A dataset, job or output does not exist (on the server that said so)."""

    grpc_status: ClassVar[str] = "NOT_FOUND"


class AlreadyExistsError(MpcError):
    """A dataset or job with this name already exists with different content."""

    grpc_status: ClassVar[str] = "ALREADY_EXISTS"


class UnauthenticatedError(MpcError):
    """The caller presented no usable identity."""

    grpc_status: ClassVar[str] = "UNAUTHENTICATED"


class PermissionDeniedError(MpcError):
    """The caller is known but not allowed to do this (no grant, wrong role)."""

    grpc_status: ClassVar[str] = "PERMISSION_DENIED"


class ResourceLimitError(MpcError):
    """A request exceeds a configured size limit; refused before allocating."""

    grpc_status: ClassVar[str] = "RESOURCE_EXHAUSTED"


class FailedPreconditionError(MpcError):
    """The servers cannot proceed in their current state (e.g. jobs disagree)."""

    grpc_status: ClassVar[str] = "FAILED_PRECONDITION"


class ServerUnavailableError(MpcError):
    """A server could not be reached, or was lost during a job.

    ``server`` names the unreachable server: the peer a server lost, or the
    server a client could not reach.
    """

    grpc_status: ClassVar[str] = "UNAVAILABLE"

    def __init__(self, server: str, detail: str = "") -> None:
        """Record which server is unavailable, with an optional detail."""
        self.server = server
        message = f"server {server} is unavailable"
        super().__init__(f"{message}: {detail}" if detail else message)


class ProtocolTimeoutError(MpcError, TimeoutError):
    """A protocol step did not complete before its deadline.

    ``server`` names the server that was waited for, when one was.
    """

    grpc_status: ClassVar[str] = "DEADLINE_EXCEEDED"

    def __init__(self, message: str, server: str | None = None) -> None:
        """Record what timed out and, if known, whom it waited for."""
        super().__init__(message)
        self.server = server


class ProtocolError(MpcError):
    """Peers broke the protocol: duplicate or malformed messages."""

    grpc_status: ClassVar[str] = "ABORTED"


class JobAbortedError(MpcError):
    """A peer server aborted the job; the reason is the peer's."""

    grpc_status: ClassVar[str] = "ABORTED"

    def __init__(self, peer: str, reason: str) -> None:
        """Record which peer aborted and why."""
        self.peer = peer
        self.reason = reason
        super().__init__(f"server {peer} aborted the job: {reason}")


class DataLossError(MpcError):
    """Shares are damaged or lost, so no result is computed from them.

    A server raises it when a stored share file fails its checksum or cannot
    be read, or when an output it was to keep could not be written; the
    message names that server and the dataset or output. The client raises
    its subclass :class:`OutputIntegrityError` when servers' output shares
    disagree.
    """

    grpc_status: ClassVar[str] = "DATA_LOSS"


class OutputIntegrityError(DataLossError):
    """Servers returned output shares that do not fit together.

    Most often two servers sent different copies of the same share
    component: at least one of the named servers is faulty or malicious, and
    the output is not reconstructed.
    """

    grpc_status: ClassVar[str] = "DATA_LOSS"

    def __init__(self, servers: tuple[str, str], what: str) -> None:
        """Record the two servers whose answers disagree about ``what``."""
        self.servers = servers
        super().__init__(
            f"output integrity check failed: servers {servers[0]} and {servers[1]} returned different {what}"
        )


class ConfigError(MpcError):
    """A cluster file, certificate or command-line setting is unusable."""

    grpc_status: ClassVar[str] = "FAILED_PRECONDITION"


_BY_STATUS: dict[str, type[MpcError]] = {
    cls.grpc_status: cls
    for cls in (
        MpcError,
        InvalidArgumentError,
        NotFoundError,
        AlreadyExistsError,
        UnauthenticatedError,
        PermissionDeniedError,
        ResourceLimitError,
        FailedPreconditionError,
        ServerUnavailableError,
        ProtocolTimeoutError,
        JobAbortedError,
        OutputIntegrityError,
        DataLossError,  # what a server reports as DATA_LOSS (OutputIntegrityError is the client's own)
    )
}


def error_for_status(status: str, message: str, **attributes: object) -> MpcError:
    """Rebuild the error a server reported as ``status`` with ``message``.

    Used by clients: the class is the one whose ``grpc_status`` is
    ``status`` (:class:`MpcError` for codes without one), the message is
    kept verbatim and ``attributes`` (e.g. ``server``) are set on it.
    """
    cls = _BY_STATUS.get(status, MpcError)
    error = cls.__new__(cls)
    error.args = (message,)
    for name, value in attributes.items():
        setattr(error, name, value)
    return error
