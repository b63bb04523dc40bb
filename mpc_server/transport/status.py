"""Mapping domain errors onto gRPC status codes, in one place.

Servicer methods are decorated with :func:`unary_errors` (unary responses)
or :func:`streaming_errors` (streamed responses). An :class:`MpcError`
aborts the call with the code named by its ``grpc_status`` and its message;
the name of an unavailable server or an aborting peer also travels in the
trailing metadata (``mpc-server``) so clients need not parse messages.
Anything else is a bug: it is logged with its traceback and reported as
``INTERNAL`` without details (errors crossing the trust boundary stay
opaque).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from mpc_core.errors import JobAbortedError, MpcError, ProtocolTimeoutError, ServerUnavailableError

_log = logging.getLogger(__name__)

SERVER_METADATA_KEY = "mpc-server"

_Self = TypeVar("_Self")
_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")
_Context = grpc.aio.ServicerContext[Any, Any]


def _metadata(error: MpcError) -> tuple[tuple[str, str], ...]:
    if isinstance(error, ServerUnavailableError):
        return ((SERVER_METADATA_KEY, error.server),)
    if isinstance(error, JobAbortedError):
        return ((SERVER_METADATA_KEY, error.peer),)
    if isinstance(error, ProtocolTimeoutError) and error.server:
        return ((SERVER_METADATA_KEY, error.server),)
    return ()


def _forget_frames(error: BaseException) -> None:
    """Drop the tracebacks of ``error`` and its context chain.

    gRPC keeps the exception behind an aborted call for a while; its frames
    would keep the job's inputs (mapped share files) and keys alive.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.__traceback__ = None
        current = current.__cause__ or current.__context__


async def abort_with(context: _Context, error: Exception) -> None:
    """Abort the current call with the status that ``error`` maps to."""
    if isinstance(error, MpcError):
        _forget_frames(error)
        await context.abort(
            grpc.StatusCode[error.grpc_status], str(error), trailing_metadata=_metadata(error)
        )
    _log.error("internal error", exc_info=error)
    _forget_frames(error)
    await context.abort(grpc.StatusCode.INTERNAL, "internal server error; see the server log")


def unary_errors(
    method: Callable[[_Self, _Req, _Context], Awaitable[_Resp]],
) -> Callable[[_Self, _Req, _Context], Awaitable[_Resp]]:
    """Map exceptions of a servicer method with a unary response."""

    @functools.wraps(method)
    async def wrapper(self: _Self, request: _Req, context: _Context) -> _Resp:
        try:
            return await method(self, request, context)
        except Exception as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            await abort_with(context, exc)
            raise  # unreachable: abort raises

    return wrapper


def streaming_errors(
    method: Callable[[_Self, _Req, _Context], AsyncIterator[_Resp]],
) -> Callable[[_Self, _Req, _Context], AsyncIterator[_Resp]]:
    """Map exceptions of a servicer method that streams its responses."""

    @functools.wraps(method)
    async def wrapper(self: _Self, request: _Req, context: _Context) -> AsyncIterator[_Resp]:
        try:
            async for response in method(self, request, context):
                yield response
        except Exception as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            await abort_with(context, exc)

    return wrapper
