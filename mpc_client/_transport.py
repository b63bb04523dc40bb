"""Channels to the three servers, and translation of RPC failures into errors.

Each server gets one mutual-TLS channel that verifies the server's identity,
never just its address: before first use the SDK handshakes with the server
itself and checks its certificate's ``urn:mpc:server:<identity>`` URI SAN
(and that it is a current, unrevoked leaf issued directly by the cluster CA,
over TLS 1.3), then pins the gRPC channel to exactly that certificate
(``mpc_client._server_identity``). Calls fan out to the three servers
concurrently; :func:`raise_combined`
turns the per-server failures into one exception of the most telling class,
whose message names every server and what it said.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TypeVar

import grpc

from mpc_client._calls import CallCancelled, CallScope, run_in_scope
from mpc_client._server_identity import PinnedChannel, ServerChecker
from mpc_core.certificates import inspect_certificate
from mpc_core.cluster import ClusterConfig, ServerEndpoint
from mpc_core.errors import (
    AlreadyExistsError,
    ConfigError,
    DataLossError,
    FailedPreconditionError,
    InvalidArgumentError,
    JobAbortedError,
    MpcError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolTimeoutError,
    ResourceLimitError,
    ServerUnavailableError,
    UnauthenticatedError,
    error_for_status,
)
from mpc_proto.v1 import client_service_pb2 as pb
from mpc_proto.v1 import client_service_pb2_grpc as pb_grpc

SERVER_METADATA_KEY = "mpc-server"
_T = TypeVar("_T")

_PRIORITY: tuple[type[MpcError], ...] = (
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
    AlreadyExistsError,
    ResourceLimitError,
    FailedPreconditionError,
    ServerUnavailableError,
    ProtocolTimeoutError,
    DataLossError,
    JobAbortedError,
)

_KEEPALIVE = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # A server that is back is reconnected to within a second, and each server's
    # channel has a connection of its own (a fresh channel is a fresh attempt).
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1_000),
    ("grpc.use_local_subchannel_pool", 1),
]
CANCEL_GRACE = 1.0
"""How long fan_out waits for calls it cancelled to end (a blocked connect ends at its own timeout)."""
_LOCAL_CANCEL = "Locally cancelled by application!"


@dataclass(frozen=True, repr=False)
class ClientCredentials:
    """The client's certificate, key and the cluster CA (PEM bytes)."""

    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes

    def __repr__(self) -> str:
        """Never show the key."""
        return "ClientCredentials(<redacted>)"


class ServerConnection:
    """One server's channel and stub."""

    def __init__(
        self, endpoint: ServerEndpoint, credentials: ClientCredentials, checker: ServerChecker | None = None
    ) -> None:
        """Prepare a mutual-TLS channel to ``endpoint``, pinned when first used (see the module doc)."""
        self.endpoint = endpoint
        if checker is None:
            checker = ServerChecker(credentials.cert_pem, credentials.key_pem, credentials.ca_pem)
        options = [("grpc.ssl_target_name_override", endpoint.identity), *_KEEPALIVE]

        def open_channel(pinned_pem: bytes) -> grpc.Channel:
            trusted = grpc.ssl_channel_credentials(pinned_pem, credentials.key_pem, credentials.cert_pem)
            return grpc.secure_channel(endpoint.address, trusted, options=options)

        self.channel: PinnedChannel = PinnedChannel(endpoint, checker, open_channel)
        self.stub = pb_grpc.ClientServiceStub(self.channel)
        # The share-carrying methods take and give encoded bytes (mpc_core.protowire).
        self.upload_raw: grpc.StreamUnaryMultiCallable[bytes, pb.UploadDatasetResponse]
        self.upload_raw = self.channel.stream_unary(
            "/mpc.v1.ClientService/UploadDataset",
            request_serializer=None,
            response_deserializer=pb.UploadDatasetResponse.FromString,
        )
        self.fetch_raw: grpc.UnaryStreamMultiCallable[pb.FetchOutputRequest, bytes]
        self.fetch_raw = self.channel.unary_stream(
            "/mpc.v1.ClientService/FetchOutput",
            request_serializer=pb.FetchOutputRequest.SerializeToString,
            response_deserializer=None,
        )

    @property
    def name(self) -> str:
        """The server's identity."""
        return self.endpoint.identity


def error_from_rpc(server: str, error: grpc.RpcError, address: str = "") -> MpcError:
    """Translate one server's RPC failure into an :class:`MpcError`.

    A call the server did not answer itself (no ``mpc-server`` trailer: the
    connection failed, or the call was cut off, e.g. by a server shutting
    down) becomes a :class:`ServerUnavailableError` that says so.
    """
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (error.details() if isinstance(error, grpc.Call) else None) or code.name
    named, answered = server, False
    if isinstance(error, grpc.Call):
        for key, value in error.trailing_metadata() or ():
            if key == SERVER_METADATA_KEY and isinstance(value, str):
                named, answered = value, True
    if code is grpc.StatusCode.DEADLINE_EXCEEDED and details == "Deadline Exceeded":
        details = "no answer before the deadline"
    if not answered and code.name in _TRANSPORT_CODES:
        interrupted = _interruption(code, details, f" at {address}" if address else "")
        if interrupted:
            return error_for_status("UNAVAILABLE", f"{server}: {interrupted}", server=server)
    error_out = error_for_status(code.name, f"{server}: {details}", server=named)
    if isinstance(error_out, JobAbortedError):
        error_out.peer = named
        error_out.reason = details
    return error_out


_TRANSPORT_CODES = ("UNAVAILABLE", "CANCELLED", "INTERNAL")
_CONNECT_FAILURES = ("failed to connect", "connection refused", "handshake", "connect failed", "dns")


def _interruption(code: grpc.StatusCode, details: str, at: str) -> str:
    """What a failure that the server did not report itself means ("" if it is not one)."""
    lowered = details.lower()
    if code is grpc.StatusCode.UNAVAILABLE and any(words in lowered for words in _CONNECT_FAILURES):
        return f"cannot connect to the server{at} ({details})"
    if code is grpc.StatusCode.CANCELLED and details == "Channel closed!":
        return "the client was closed during the call"
    if code is grpc.StatusCode.INTERNAL and "RST_STREAM" not in details:
        return ""
    return (
        f"the connection to the server{at} was cut during the call ({code.name}: {details}); "
        "the server may be shutting down or restarting"
    )


def raise_combined(failures: Mapping[str, MpcError]) -> None:
    """Raise one error for the failures of several servers (if any)."""
    if not failures:
        return
    ordered = sorted(failures.items(), key=lambda item: (_rank(item[1]), item[0]))  # stable: by server
    chosen = ordered[0][1]
    if len(failures) > 1:
        said: dict[str, list[str]] = {}
        for server, error in ordered:
            said.setdefault(str(error).removeprefix(f"{server}: "), []).append(server)
        chosen.args = ("; ".join(f"{', '.join(sorted(servers))}: {text}" for text, servers in said.items()),)
    raise chosen


def _rank(error: MpcError) -> int:
    for index, cls in enumerate(_PRIORITY):
        if isinstance(error, cls):
            return index
    return len(_PRIORITY)


def _connection_failure(error: MpcError) -> bool:
    """Whether ``error`` means the operation cannot succeed on any server: one is unreachable or cut off."""
    return isinstance(error, ServerUnavailableError | UnauthenticatedError)


def _outcome(connection: ServerConnection, future: Future[_T]) -> MpcError | CallCancelled | None:
    """None if the call succeeded, else what it failed with."""
    try:
        future.result()
    except grpc.RpcError as exc:
        code = exc.code() if isinstance(exc, grpc.Call) else None
        if (
            code is grpc.StatusCode.CANCELLED
            and isinstance(exc, grpc.Call)
            and exc.details() == _LOCAL_CANCEL
        ):
            return CallCancelled("cancelled by the client")
        if code is grpc.StatusCode.UNAVAILABLE:
            connection.channel.mark_stale()  # check the server again: it may have a new certificate
        return error_from_rpc(connection.name, exc, connection.endpoint.address)
    except (CallCancelled, grpc.FutureCancelledError) as exc:
        return CallCancelled(str(exc))
    except MpcError as exc:
        return exc
    return None


def fan_out(
    connections: tuple[ServerConnection, ...],
    call: Callable[[ServerConnection], _T],
    pool: ThreadPoolExecutor,
) -> list[_T]:
    """Run ``call`` against every server concurrently; raise combined failures.

    As soon as one server cannot be reached (or its call is cut off), the
    calls to the others are cancelled (:class:`CallScope`): the operation
    fails at once with an error naming that server, not at the deadline.
    """
    scope = CallScope()
    futures = {pool.submit(run_in_scope, scope, call, connection): connection for connection in connections}
    failures: dict[str, MpcError] = {}
    pending = set(futures)
    while pending:
        done, pending = wait(pending, CANCEL_GRACE if scope.cancelled else None, FIRST_COMPLETED)
        if not done:
            break  # cancelled calls still busy (a blocked connect): not waited for
        for future in done:
            connection = futures[future]
            outcome = _outcome(connection, future)
            if outcome is None:
                continue
            if scope.cancelled and isinstance(outcome, CallCancelled):
                continue  # given up because another server failed: that failure is the news
            if isinstance(outcome, CallCancelled):
                outcome = ServerUnavailableError(connection.name, "the call was cancelled")
            failures[connection.name] = outcome
            if _connection_failure(outcome):
                scope.cancel(f"{connection.name} failed: {outcome}")
    raise_combined(failures)
    return [future.result() for future in futures]


def connect_all(cluster: ClusterConfig, credentials: ClientCredentials) -> tuple[ServerConnection, ...]:
    """One connection per server, in party order (nothing is sent before the first call).

    Raises:
        ConfigError: the revocation list the cluster file names is unusable, or revokes our certificate.
    """
    checker = ServerChecker(
        credentials.cert_pem, credentials.key_pem, credentials.ca_pem, cluster.revoked_path
    )
    own = inspect_certificate(credentials.cert_pem, "client certificate")
    if checker.revoked(own):
        raise ConfigError(
            f"the client certificate ({own.principal.uri}, serial {own.serial:x}) is on the "
            f"revocation list {cluster.revoked_path}: ask the CA operator for a new one"
        )
    return tuple(ServerConnection(endpoint, credentials, checker) for endpoint in cluster.servers)
