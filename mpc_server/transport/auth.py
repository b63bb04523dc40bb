"""Caller identity from the TLS handshake, and role checks per service.

The identity is the ``urn:mpc:<role>:<name>`` URI SubjectAltName of the
verified client certificate, read from ``context.auth_context()`` (gRPC's
"only reliable source of truth" for authentication). The
:class:`RoleInterceptor` enforces, before any servicer code runs, which
roles may call which service: the peer API accepts only the cluster's
server certificates and the client API only client certificates. Given a
:class:`~mpc_server.transport.verifier.PeerVerifier` it also checks, on
every call to every service (health and reflection included), that the
connection is TLS 1.3 and that the caller's certificate is a current,
unrevoked leaf issued directly by the cluster CA; on streams it re-checks
expiry and revocation at every message, so an open connection of a
certificate revoked meanwhile stops working.
"""

from __future__ import annotations

import contextlib
import inspect
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import DecodeError

from mpc_core.errors import PermissionDeniedError, ServerUnavailableError, UnauthenticatedError
from mpc_core.identity import Principal, Role, parse_identity_uri
from mpc_server.transport.verifier import PeerVerifier, Verified

_SAN_KEYS = ("peer_uri", "x509_subject_alternative_name")
WRITTEN_STREAMS_PER_CALLER = 8
"""Response streams written with ``context.write`` (the health service's ``Watch``) that one
certificate identity may hold open on a server at once; more are RESOURCE_EXHAUSTED."""


def principal_from_auth_context(auth: Mapping[str, Iterable[bytes]]) -> Principal:
    """Find our identity URI among the verified peer's SAN entries."""
    found = {
        principal
        for key in _SAN_KEYS
        for value in auth.get(key, ())
        if (principal := parse_identity_uri(value.decode(errors="replace")))
    }
    if len(found) != 1:
        raise UnauthenticatedError("the client certificate carries no (or more than one) mpc identity")
    return found.pop()


def authenticate(context: grpc.aio.ServicerContext[Any, Any]) -> Principal:
    """The caller of the current RPC, from its verified certificate."""
    return principal_from_auth_context(context.auth_context())


if TYPE_CHECKING:
    _Handler = grpc.RpcMethodHandler[Any, Any]
else:  # the runtime class is not generic
    _Handler = grpc.RpcMethodHandler


class RoleInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls whose caller's role may not use the called service.

    ``policy`` maps a service's full name (``mpc.v1.PeerService``) to a
    check of the caller; services not listed (health, reflection) are open
    to every certificate the CA signed. With a ``verifier``, every call of
    every service must also pass :meth:`PeerVerifier.verify`.
    """

    def __init__(
        self, policy: Mapping[str, Callable[[Principal], None]], verifier: PeerVerifier | None = None
    ) -> None:
        """Enforce ``policy`` (and ``verifier``'s checks) on every call."""
        self._policy = dict(policy)
        self._verifier = verifier
        self._written: Counter[str] = Counter()
        """Open ``context.write`` streams per caller identity URI."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[_Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler | None:
        """Wrap the handler of a guarded service with the caller check."""
        handler = await continuation(handler_call_details)
        service = handler_call_details.method.lstrip("/").split("/", 1)[0]
        check = self._policy.get(service)
        if handler is None or (check is None and self._verifier is None and not _writes(handler)):
            return handler
        return _guarded(handler, _Guard(check, self._verifier, self._written))


def require_role(role: Role, allowed_names: Collection[str] | None = None) -> Callable[[Principal], None]:
    """A policy check: the caller has ``role`` (and, if given, an allowed name)."""

    def check(principal: Principal) -> None:
        if principal.role is not role:
            raise PermissionDeniedError(f"{principal.role.value} certificates may not call this API")
        if allowed_names is not None and principal.name not in allowed_names:
            raise PermissionDeniedError(f"{principal.name} is not a server of this cluster")

    return check


class _Guard:
    """The checks of one guarded service: the caller's role, and the verifier's."""

    def __init__(
        self, check: Callable[[Principal], None] | None, verifier: PeerVerifier | None, written: Counter[str]
    ) -> None:
        self.check = check
        self.verifier = verifier
        self.caller = ""
        self._written = written

    async def enter(self, context: grpc.aio.ServicerContext[Any, Any]) -> Verified | None:
        """Check the caller before the handler runs; abort the call if refused."""
        verified = None
        try:
            if self.verifier is None:
                principal = authenticate(context)
            else:
                verified = self.verifier.verify(context.auth_context())
                principal = verified.principal
            if self.check is not None:
                self.check(principal)
            self.caller = principal.uri
        except (UnauthenticatedError, PermissionDeniedError, ServerUnavailableError) as exc:
            await context.abort(grpc.StatusCode[exc.grpc_status], str(exc))
        return verified

    @contextlib.asynccontextmanager
    async def written_stream(self, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
        """Hold one of the caller's :data:`WRITTEN_STREAMS_PER_CALLER` slots while the stream is open."""
        if self._written[self.caller] >= WRITTEN_STREAMS_PER_CALLER:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{self.caller} already holds {WRITTEN_STREAMS_PER_CALLER} watch streams on this server "
                "(the limit); close one first",
            )
        self._written[self.caller] += 1
        try:
            yield
        finally:
            self._written[self.caller] -= 1
            if not self._written[self.caller]:
                del self._written[self.caller]

    async def still(self, verified: Verified | None, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Between two messages of a stream: the certificate has not expired nor been revoked."""
        if self.verifier is None or verified is None:
            return
        try:
            self.verifier.recheck(verified.info)
        except (UnauthenticatedError, ServerUnavailableError) as exc:
            await context.abort(grpc.StatusCode[exc.grpc_status], str(exc))


def _guarded(handler: _Handler, guard: _Guard) -> _Handler:
    """Rebuild ``handler`` so that ``guard`` runs before its behaviour (and between messages).

    The servicers are ``grpc.aio`` coroutines and async generators (a
    response stream may also be written with ``context.write``, as the
    standard health service's ``Watch`` does: checked once, at the start);
    the type stubs describe the synchronous API, hence the ``Any`` behaviours.
    Methods registered for raw bytes (no deserializer) see the requests as
    sent: they decode, and refuse malformed messages, themselves.
    """
    decode = handler.request_deserializer
    codec: dict[str, Any] = {
        "request_deserializer": (lambda data: _tolerant_decode(decode, data)) if decode else None,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        inner_uu: Any = handler.unary_unary

        async def unary_unary(request: Any, context: Any) -> Any:
            await guard.enter(context)
            await _refuse_undecodable(request, context)
            return await inner_uu(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, **codec)
    if handler.stream_unary is not None:
        inner_su: Any = handler.stream_unary

        async def stream_unary(requests: Any, context: Any) -> Any:
            verified = await guard.enter(context)
            return await inner_su(_requests(requests, context, guard, verified, bool(decode)), context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, **codec)
    if _writes(handler):
        inner_uw: Any = handler.unary_stream  # writes its responses (``context.write``), e.g. Health.Watch

        async def unary_stream_writer(request: Any, context: Any) -> None:
            await guard.enter(context)
            await _refuse_undecodable(request, context)
            async with guard.written_stream(context):
                await inner_uw(request, context)

        return grpc.unary_stream_rpc_method_handler(unary_stream_writer, **codec)
    if handler.unary_stream is not None:
        inner_us: Any = handler.unary_stream

        async def unary_stream(request: Any, context: Any) -> AsyncIterator[Any]:
            verified = await guard.enter(context)
            await _refuse_undecodable(request, context)
            async for response in inner_us(request, context):
                await guard.still(verified, context)
                yield response

        return grpc.unary_stream_rpc_method_handler(unary_stream, **codec)
    inner_ss: Any = handler.stream_stream

    async def stream_stream(requests: Any, context: Any) -> AsyncIterator[Any]:
        verified = await guard.enter(context)
        async for response in inner_ss(_requests(requests, context, guard, verified, bool(decode)), context):
            await guard.still(verified, context)
            yield response

    return grpc.stream_stream_rpc_method_handler(stream_stream, **codec)


def _writes(handler: _Handler) -> bool:
    """Whether ``handler`` streams its responses with ``context.write`` (not as an async generator)."""
    return handler.unary_stream is not None and not inspect.isasyncgenfunction(handler.unary_stream)


class _Undecodable:
    """Stands in for a request whose bytes are not a valid message."""


def _tolerant_decode(decode: Callable[[bytes], Any], data: bytes) -> Any:
    try:
        return decode(data)
    except DecodeError:
        return _Undecodable()


async def _refuse_undecodable(request: Any, context: Any) -> None:
    if isinstance(request, _Undecodable):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the request is not a valid mpc.v1 message")


async def _requests(
    requests: AsyncIterator[Any], context: Any, guard: _Guard, verified: Verified | None, decoded: bool
) -> AsyncIterator[Any]:
    """The request stream, re-checking the caller at each message (and refusing undecodable ones)."""
    async for request in requests:
        await guard.still(verified, context)
        if decoded:
            await _refuse_undecodable(request, context)
        yield request
