"""Tests for mpc_core.errors: the hierarchy and its mapping to and from gRPC status codes."""

from __future__ import annotations

import grpc
import pytest

from mpc_core import errors
from mpc_core.errors import (
    AlreadyExistsError,
    ConfigError,
    DataLossError,
    EncodingError,
    FailedPreconditionError,
    InvalidArgumentError,
    JobAbortedError,
    MpcError,
    NotFoundError,
    OutputIntegrityError,
    PermissionDeniedError,
    ProtocolError,
    ProtocolTimeoutError,
    ResourceLimitError,
    ServerUnavailableError,
    ShareFormatError,
    UnauthenticatedError,
    error_for_status,
)


def all_error_classes() -> list[type[MpcError]]:
    found: list[type[MpcError]] = []
    pending: list[type[MpcError]] = [MpcError]
    while pending:
        cls = pending.pop()
        if cls.__module__ == errors.__name__:
            found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


EXPECTED = {
    "INTERNAL": MpcError,
    "INVALID_ARGUMENT": InvalidArgumentError,
    "NOT_FOUND": NotFoundError,
    "ALREADY_EXISTS": AlreadyExistsError,
    "UNAUTHENTICATED": UnauthenticatedError,
    "PERMISSION_DENIED": PermissionDeniedError,
    "RESOURCE_EXHAUSTED": ResourceLimitError,
    "FAILED_PRECONDITION": FailedPreconditionError,
    "UNAVAILABLE": ServerUnavailableError,
    "DEADLINE_EXCEEDED": ProtocolTimeoutError,
    "ABORTED": JobAbortedError,
    "DATA_LOSS": DataLossError,
}


def test_documented_classes_are_found() -> None:
    names = {cls.__name__ for cls in all_error_classes()}
    assert names >= {
        "MpcError",
        "InvalidArgumentError",
        "EncodingError",
        "ShareFormatError",
        "NotFoundError",
        "AlreadyExistsError",
        "UnauthenticatedError",
        "PermissionDeniedError",
        "ResourceLimitError",
        "FailedPreconditionError",
        "ServerUnavailableError",
        "ProtocolTimeoutError",
        "ProtocolError",
        "JobAbortedError",
        "OutputIntegrityError",
        "ConfigError",
    }


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_grpc_status_is_a_grpc_status_code_name(cls: type[MpcError]) -> None:
    assert isinstance(cls.grpc_status, str)
    assert cls.grpc_status in grpc.StatusCode.__members__
    assert cls.grpc_status != "OK"
    assert issubclass(cls, Exception)


@pytest.mark.parametrize(("status", "cls"), sorted(EXPECTED.items()), ids=sorted(EXPECTED))
def test_error_for_status_rebuilds_the_class(status: str, cls: type[MpcError]) -> None:
    error = error_for_status(status, "server said: no")
    assert type(error) is cls
    assert error.grpc_status == status
    assert str(error) == "server said: no"
    assert error.args == ("server said: no",)
    with pytest.raises(cls):
        raise error


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_every_class_round_trips_to_a_class_with_the_same_status(cls: type[MpcError]) -> None:
    error = error_for_status(cls.grpc_status, "m")
    assert isinstance(error, MpcError)
    assert error.grpc_status == cls.grpc_status


@pytest.mark.parametrize("status", ["UNKNOWN", "CANCELLED", "UNIMPLEMENTED", "OK", "", "not-a-status"])
def test_unknown_status_gives_the_base_class(status: str) -> None:
    error = error_for_status(status, "something odd")
    assert type(error) is MpcError
    assert str(error) == "something odd"


def test_error_for_status_sets_attributes() -> None:
    error = error_for_status("UNAVAILABLE", "server server-2 is unavailable: gone", server="server-2")
    assert isinstance(error, ServerUnavailableError)
    assert error.server == "server-2"
    assert str(error) == "server server-2 is unavailable: gone"

    aborted = error_for_status("ABORTED", "server server-1 aborted the job: x", peer="server-1", reason="x")
    assert isinstance(aborted, JobAbortedError)
    assert (aborted.peer, aborted.reason) == ("server-1", "x")

    damaged = error_for_status("DATA_LOSS", "dataset bank-1/x on server-1 is damaged", server="server-1")
    assert isinstance(damaged, DataLossError) and damaged.server == "server-1"  # type: ignore[attr-defined]
    assert issubclass(OutputIntegrityError, DataLossError)  # a client's mismatch is data loss too

    plain = error_for_status("NOT_FOUND", "missing", dataset="x", job="j")
    assert (plain.dataset, plain.job) == ("x", "j")  # type: ignore[attr-defined]


def test_rebuilt_errors_keep_builtin_bases() -> None:
    assert isinstance(error_for_status("INVALID_ARGUMENT", "m"), ValueError)
    assert isinstance(error_for_status("NOT_FOUND", "m"), LookupError)
    assert isinstance(error_for_status("DEADLINE_EXCEEDED", "m"), TimeoutError)


def test_subclass_relations_and_statuses() -> None:
    assert issubclass(EncodingError, InvalidArgumentError)
    assert issubclass(ShareFormatError, InvalidArgumentError)
    assert EncodingError.grpc_status == ShareFormatError.grpc_status == "INVALID_ARGUMENT"
    assert ConfigError.grpc_status == "FAILED_PRECONDITION"
    assert ProtocolError.grpc_status == "ABORTED"
    assert MpcError.grpc_status == "INTERNAL"
    for cls in all_error_classes():
        assert issubclass(cls, MpcError)


def test_constructors_record_their_attributes() -> None:
    unavailable = ServerUnavailableError("server-1", "connection refused")
    assert unavailable.server == "server-1"
    assert str(unavailable) == "server server-1 is unavailable: connection refused"
    assert str(ServerUnavailableError("server-2")) == "server server-2 is unavailable"

    aborted = JobAbortedError("server-0", "input mismatch")
    assert (aborted.peer, aborted.reason) == ("server-0", "input mismatch")
    assert str(aborted) == "server server-0 aborted the job: input mismatch"

    integrity = OutputIntegrityError(("a", "b"), "copies of share component 1")
    assert integrity.servers == ("a", "b")
    assert "servers a and b returned different copies of share component 1" in str(integrity)
