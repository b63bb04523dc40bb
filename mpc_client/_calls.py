"""Calls to the three servers that fail together, and a bounded wait for a channel's connection.

An operation of the SDK (an upload, a job, a fetch) calls all three servers
and needs all three answers. When one server cannot be reached, waiting for
the other two until the deadline only delays the failure (and keeps the
other servers waiting for their missing peer). ``fan_out`` therefore runs
the three calls inside one :class:`CallScope`: every gRPC call (and every
checking handshake) made while the scope is current registers with it, and
``CallScope.cancel`` cancels them all at once.

:class:`ConnectionWatch` reads a gRPC channel's connectivity, so that a call on a
channel that is not connected waits for the connection a bounded time
(``CONNECT_WAIT``), not until its deadline, and learns at once when a
connection attempt fails.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from enum import Enum
from typing import Any, Protocol, TypeVar

import grpc

CONNECT_WAIT = 2.0
"""Longest wait for a channel to connect before a call fails with ``ServerUnavailableError``."""
_POLL = 0.05
_T = TypeVar("_T")
_A = TypeVar("_A")


class Cancellable(Protocol):
    """A gRPC call or future, or anything else that can be given up."""

    def cancel(self) -> object:
        """Give it up (must not block)."""
        ...


class CallCancelled(Exception):  # noqa: N818 - not an error of the caller's: a call given up on purpose
    """A call given up because the same operation failed on another server (never leaves the SDK)."""


class CallScope:
    """The calls of one operation on the three servers, cancelled together."""

    def __init__(self) -> None:
        """An empty scope, not cancelled."""
        self._lock = threading.Lock()
        self._calls: list[Cancellable] = []
        self.reason: str | None = None

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self.reason is not None

    def add(self, call: Cancellable) -> None:
        """Cancel ``call`` with the others (at once if the scope is cancelled already)."""
        with self._lock:
            if self.reason is None:
                self._calls.append(call)
                return
        call.cancel()

    def cancel(self, reason: str) -> None:
        """Cancel every call registered (and every one registered later)."""
        with self._lock:
            if self.reason is not None:
                return
            self.reason = reason
            calls, self._calls = self._calls, []
        for call in calls:
            call.cancel()

    def check(self) -> None:
        """Raise :class:`CallCancelled` if the scope was cancelled."""
        if self.reason is not None:
            raise CallCancelled(self.reason)


_SCOPE: ContextVar[CallScope | None] = ContextVar("mpc_client_call_scope", default=None)


def current_scope() -> CallScope | None:
    """The scope of the operation this thread works on, if any."""
    return _SCOPE.get()


def run_in_scope(scope: CallScope, function: Callable[[_A], _T], argument: _A) -> _T:
    """``function(argument)`` with ``scope`` current (in a pool thread)."""
    token = _SCOPE.set(scope)
    try:
        return function(argument)
    finally:
        _SCOPE.reset(token)


class Waited(Enum):
    """How :meth:`ConnectionWatch.wait` ended."""

    READY = "ready"
    FAILED = "failed"
    """A connection attempt failed (the channel is in TRANSIENT_FAILURE)."""
    TIMEOUT = "timeout"


_STATES = {state.value[0]: state for state in grpc.ChannelConnectivity}


class ConnectionWatch:
    """A gRPC channel's connectivity, read when needed (no thread, no subscription).

    grpcio's public connectivity API (``subscribe``) runs a polling thread
    per channel that races with ``close``; the channel's own state check is
    used instead, where grpcio has it (otherwise a channel counts as ready
    and calls behave as gRPC's do).
    """

    def __init__(self, channel: grpc.Channel) -> None:
        """Watch ``channel``."""
        self.channel = channel
        core = getattr(channel, "_channel", None)
        self._check: Callable[[bool], int] | None = getattr(core, "check_connectivity_state", None)

    def state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        """The channel's state now; with ``try_to_connect`` an IDLE channel starts connecting."""
        if self._check is None:
            return grpc.ChannelConnectivity.READY
        try:
            return _STATES.get(self._check(try_to_connect), grpc.ChannelConnectivity.IDLE)
        except ValueError:  # closed
            return grpc.ChannelConnectivity.SHUTDOWN

    @property
    def ready(self) -> bool:
        """Whether the channel is connected."""
        return self.state() is grpc.ChannelConnectivity.READY

    def wait(self, end: float, scope: CallScope | None, *, stop_on_failure: bool) -> Waited:
        """Have the channel connect and wait until it is READY, at most until ``end`` (monotonic).

        With ``stop_on_failure``, return as soon as a connection attempt fails.

        Raises:
            CallCancelled: ``scope`` was cancelled meanwhile.
        """
        while True:
            state = self.state(try_to_connect=True)
            if state is grpc.ChannelConnectivity.READY:
                return Waited.READY
            if scope is not None:
                scope.check()
            failed = state in (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN)
            if failed and stop_on_failure:
                return Waited.FAILED
            remaining = end - time.monotonic()
            if remaining <= 0:
                return Waited.TIMEOUT
            time.sleep(min(remaining, _POLL))


class ChannelSource(Protocol):
    """Where a :class:`ScopedCallable` gets its channel (``PinnedChannel``)."""

    def current(self, timeout: float | None = None) -> grpc.Channel:
        """The channel to call on, connected."""
        ...

    def mark_stale(self) -> None:
        """The channel failed to connect: check the server again before the next call."""
        ...


_CALL_KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


class ScopedCallable:
    """A multicallable that resolves its channel at each call and registers the call with the scope.

    Inside a :class:`CallScope`, calls with a single response are made as
    futures (so that they can be cancelled), and streamed responses are
    registered as they are; outside one, calls are made as asked. The time
    spent waiting for the channel counts against the call's ``timeout``.
    """

    def __init__(
        self, source: ChannelSource, kind: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        """``kind`` is the name of the grpc.Channel method that makes the multicallable."""
        if kind not in _CALL_KINDS:
            raise ValueError(f"unknown kind of call {kind!r}")
        self._source = source
        self._kind = kind
        self._method = method
        self._args = args
        self._kwargs = kwargs
        self._made: tuple[grpc.Channel, Any] | None = None

    def _target(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        timeout = kwargs.get("timeout", args[1] if len(args) > 1 else None)
        started = time.monotonic()
        channel = self._source.current(timeout)
        made = self._made
        if made is None or made[0] is not channel:
            made = (channel, getattr(channel, self._kind)(self._method, *self._args, **self._kwargs))
            self._made = made
        if isinstance(kwargs.get("timeout"), int | float):
            spent = time.monotonic() - started
            kwargs = {**kwargs, "timeout": max(0.001, kwargs["timeout"] - spent)}
        return made[1], kwargs

    def _invoke(self, attribute: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        scope = current_scope()
        target, kwargs = self._target(args, kwargs)
        try:
            if scope is None:
                call = target if attribute is None else getattr(target, attribute)
                return call(*args, **kwargs)
            if self._kind.endswith("_stream"):  # a streamed response: the call is its iterator
                streamed = (target if attribute is None else getattr(target, attribute))(*args, **kwargs)
                scope.add(streamed)
                return streamed
            future = target.future(*args, **kwargs)
            scope.add(future)
            if attribute == "future":
                return future
            try:
                result = future.result()
            except grpc.FutureCancelledError:
                raise CallCancelled(scope.reason or "cancelled") from None
            return (result, future) if attribute == "with_call" else result
        except grpc.RpcError as exc:
            if isinstance(exc, grpc.Call) and exc.code() is grpc.StatusCode.UNAVAILABLE:
                self._source.mark_stale()
            raise

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Make the call on the pinned channel."""
        return self._invoke(None, args, kwargs)

    def with_call(self, *args: Any, **kwargs: Any) -> Any:
        """``with_call`` on the pinned channel."""
        return self._invoke("with_call", args, kwargs)

    def future(self, *args: Any, **kwargs: Any) -> Any:
        """``future`` on the pinned channel."""
        return self._invoke("future", args, kwargs)
