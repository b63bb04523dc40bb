"""Each server checked by its identity URI, and its channel pinned to the certificate checked.

A grpcio (Python) channel checks a server's chain (BoringSSL, which accepts
a chain through a CA-issued leaf with ``CA:TRUE`` despite the CA's
``pathlen:0``) and a DNS name (``grpc.ssl_target_name_override``), but can
neither check the ``urn:mpc:server:<identity>`` URI SAN nor show the
certificate. So before a server's channel is first used the SDK handshakes
with the server itself (TLS 1.3 only, Python ``ssl``: OpenSSL checks the
whole chain, path length included) and checks the leaf: signed by the CA
key itself, ``CA:FALSE``, ``serverAuth``, exactly one identity, the right
one, not revoked. Then it opens the gRPC channel with *that certificate as
its only trust anchor*: BoringSSL accepts it as a partial chain, so the
channel accepts exactly this certificate, on every later (re)connection.

When a server changes its certificate, its pinned channel fails with
``UNAVAILABLE`` and is marked stale; the next call checks the server again
and re-pins if the new certificate passes. The revocation list the cluster
file names is re-read when it changes (looked at at most once a second); a
pinned certificate revoked meanwhile is dropped before the next call.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mpc_client._calls import CONNECT_WAIT, CallScope, ConnectionWatch, ScopedCallable, Waited, current_scope
from mpc_core.certificates import (
    CertificateInfo,
    RevocationList,
    check_leaf,
    handshake_failure,
    load_ca,
    parse_revocation_list,
)
from mpc_core.cluster import ServerEndpoint
from mpc_core.errors import ConfigError, ServerUnavailableError, UnauthenticatedError
from mpc_core.identity import Principal, Role

PREFLIGHT_TIMEOUT = 10.0
"""Longest wait for the checking handshake (shorter if the call's deadline is)."""
_RELOAD_INTERVAL = 1.0


class _RevocationFile:
    """The cluster's revocation list, re-read when its file changes (fails closed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._list = RevocationList()
        self._checked_at = -_RELOAD_INTERVAL
        self._lock = threading.Lock()
        self.current()

    def current(self) -> RevocationList:
        """The list as of at most a second ago.

        Raises:
            ConfigError: the file cannot be read or parsed.
        """
        with self._lock:
            now = time.monotonic()
            if now - self._checked_at < _RELOAD_INTERVAL and self._stamp is not None:
                return self._list
            self._checked_at = now
            try:
                status = os.stat(self.path)
                stamp = (status.st_mtime_ns, status.st_size, status.st_ino)
                if stamp != self._stamp:
                    text = self.path.read_text()
                    self._list, self._stamp = parse_revocation_list(text, str(self.path)), stamp
            except OSError as exc:
                self._stamp = None
                raise ConfigError(f"cannot read the revocation list {self.path}: {exc.strerror}") from None
            except (ConfigError, UnicodeDecodeError) as exc:
                self._stamp = None
                raise ConfigError(f"the revocation list is unusable: {exc}") from None
            return self._list


def _load_identity(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """Give ``context`` our certificate and key; ``ssl`` reads them from a file only.

    On Linux the file is an anonymous memory file (``memfd``) that never
    touches a disk; elsewhere a file of mode 0600 in a private temporary
    directory, removed at once.
    """
    data = cert_pem.rstrip(b"\n") + b"\n" + key_pem
    try:
        if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
            descriptor = os.memfd_create("mpc-client-identity", os.MFD_CLOEXEC)
            try:
                os.write(descriptor, data)
                context.load_cert_chain(f"/proc/self/fd/{descriptor}")
            finally:
                os.close(descriptor)
            return
        with tempfile.TemporaryDirectory(prefix="mpc-client-") as directory:
            path = Path(directory) / "identity.pem"
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
            context.load_cert_chain(path)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the client certificate and key for TLS: {exc}") from None


class _Unblock:
    """Ends a blocked handshake when its operation is cancelled (``CallScope``)."""

    def __init__(self, raw: socket.socket) -> None:
        self._raw = raw

    def cancel(self) -> None:
        with contextlib.suppress(OSError):
            self._raw.shutdown(socket.SHUT_RDWR)


@dataclass(frozen=True)
class CheckedServer:
    """A server certificate that passed every check, as PEM, and what it says."""

    cert_pem: bytes
    info: CertificateInfo


class ServerChecker:
    """Checks servers' certificates by handshaking with them (see the module docstring)."""

    def __init__(self, cert_pem: bytes, key_pem: bytes, ca_pem: bytes, revoked: Path | None = None) -> None:
        """Present ``cert_pem``/``key_pem``, trust ``ca_pem``, deny what ``revoked`` lists.

        Raises:
            ConfigError: the CA or the revocation list is unusable.
        """
        self._ca = load_ca(ca_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.check_hostname = False  # the identity URI is checked instead, below
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=ca_pem.decode(errors="replace"))
        context.set_alpn_protocols(["h2"])
        _load_identity(context, cert_pem, key_pem)
        self._context = context
        self.revocation = _RevocationFile(revoked) if revoked is not None else None

    def revoked(self, info: CertificateInfo) -> bool:
        """Whether the revocation list (as of now) names the certificate ``info`` describes."""
        return self.revocation is not None and self.revocation.current().revokes(info)

    def _handshake(self, endpoint: ServerEndpoint, timeout: float) -> bytes:
        server, address = endpoint.identity, endpoint.address
        host, _, port = address.rpartition(":")
        host = host[1:-1] if host.startswith("[") else host
        scope = current_scope()
        try:
            with socket.create_connection((host, int(port)), timeout=timeout) as raw:
                if scope is not None:
                    scope.add(_Unblock(raw))  # a cancelled operation does not wait for this handshake
                with self._context.wrap_socket(raw, server_hostname=server) as tls:
                    der = tls.getpeercert(binary_form=True)
        except OSError as exc:  # ssl.SSLError included
            if scope is not None:
                scope.check()
            raise handshake_failure(
                server, address, exc, presented=f"{server}: the certificate at {address}"
            ) from None
        if der is None:
            raise UnauthenticatedError(f"{server}: the server at {address} presented no certificate")
        return der

    def check(self, endpoint: ServerEndpoint, timeout: float | None) -> CheckedServer:
        """Handshake with ``endpoint`` and check that it is the server it should be.

        Raises:
            UnauthenticatedError: the certificate is not that server's, or is revoked.
            ServerUnavailableError: the server cannot be reached.
        """
        server, address = endpoint.identity, endpoint.address
        wait = PREFLIGHT_TIMEOUT if timeout is None else max(0.1, min(timeout, PREFLIGHT_TIMEOUT))
        cert = x509.load_der_x509_certificate(self._handshake(endpoint, wait))
        try:
            info = check_leaf(cert, self._ca, f"the certificate {server} presented at {address}")
        except ConfigError as exc:
            raise UnauthenticatedError(f"{server}: {exc}") from None
        if info.principal != Principal(Role.SERVER, server):
            raise UnauthenticatedError(
                f"{server}: the server at {address} presented the certificate of {info.principal.uri}, "
                f"not urn:mpc:server:{server}; nothing is sent to it"
            )
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        if server not in names.get_values_for_type(x509.DNSName):
            raise UnauthenticatedError(
                f"{server}: its certificate lacks the DNS name {server!r}, which gRPC verifies "
                "(issue server certificates with `mpc certs`, or add DNS:<identity>)"
            )
        if self.revoked(info):
            raise UnauthenticatedError(f"{server}: the certificate at {address} has been revoked")
        return CheckedServer(cert.public_bytes(serialization.Encoding.PEM), info)


@dataclass(frozen=True)
class _Pin:
    channel: grpc.Channel
    info: CertificateInfo
    watch: ConnectionWatch


class PinnedChannel(grpc.Channel):
    """A channel to one server, opened only to the certificate :class:`ServerChecker` accepted.

    Multicallables made from it look the pinned channel up at each call, so
    stubs built once keep working across a re-pin. A call on a channel that
    is not connected waits for the connection at most ``CONNECT_WAIT``
    seconds; when a connection attempt fails meanwhile, the server is
    checked again at once (so "connection refused" fails the call at once,
    and a server that is back is reached on a fresh channel, without
    waiting for gRPC's reconnection backoff).
    """

    def __init__(
        self,
        endpoint: ServerEndpoint,
        checker: ServerChecker,
        open_channel: Callable[[bytes], grpc.Channel],
    ) -> None:
        """Pin lazily: ``open_channel(cert_pem)`` opens a channel trusting ``cert_pem`` only."""
        self.endpoint = endpoint
        self._checker = checker
        self._open = open_channel
        self._lock = threading.Lock()
        self._pin: _Pin | None = None
        self._stale = False
        self._closed = False

    def mark_stale(self) -> None:
        """Check the server again before the next call (its channel failed to connect)."""
        self._stale = True

    def current(self, timeout: float | None = None) -> grpc.Channel:
        """The pinned channel, connected, checking (or re-checking) the server first if needed.

        Raises:
            UnauthenticatedError: the server is not who it should be, or its certificate is revoked.
            ServerUnavailableError: the server cannot be reached, or the client is closed.
            CallCancelled: the operation was cancelled meanwhile (``CallScope``).
        """
        server = self.endpoint.identity
        with self._lock:
            if self._closed:
                raise ServerUnavailableError(server, "the client is closed")
            pin = self._pin
            if pin is not None and self._checker.revoked(pin.info):
                self._pin = None
                pin.channel.close()
                raise UnauthenticatedError(f"{server}: its certificate has been revoked")
            if pin is None or self._stale:
                pin = self._check(pin, timeout)
            if not pin.watch.ready:
                pin = self._connect(pin, timeout)
            return pin.channel

    def _check(self, pin: _Pin | None, timeout: float | None) -> _Pin:
        """Check the server; keep ``pin`` if it is connected to the same certificate."""
        checked = self._checker.check(self.endpoint, timeout)
        self._stale = False
        if pin is not None and pin.watch.ready and checked.info.fingerprint == pin.info.fingerprint:
            return pin
        return self._open_pin(checked, pin)

    def _open_pin(self, checked: CheckedServer, old: _Pin | None) -> _Pin:
        channel = self._open(checked.cert_pem)
        opened = _Pin(channel, checked.info, ConnectionWatch(channel))
        self._pin = opened
        if old is not None:
            old.channel.close()
        if self._closed:  # closed while the server was being checked
            self._pin = None
            channel.close()
            raise ServerUnavailableError(self.endpoint.identity, "the client is closed")
        return opened

    def _connect(self, pin: _Pin, timeout: float | None) -> _Pin:
        """Wait (bounded) until ``pin``'s channel is connected.

        When a connection attempt fails, the server is checked at once:
        unreachable fails the call now, saying why; the same certificate
        gets a fresh channel (no reconnection backoff). A server with
        another certificate is left to this call's failure and checked
        again at the next call, as after any ``UNAVAILABLE``.
        """
        wait = CONNECT_WAIT if timeout is None else max(0.05, min(CONNECT_WAIT, timeout))
        end = time.monotonic() + wait
        scope: CallScope | None = current_scope()
        rechecked = False
        while True:
            waited = pin.watch.wait(end, scope, stop_on_failure=not rechecked)
            if waited is Waited.READY:
                return pin
            if waited is Waited.TIMEOUT:
                address = self.endpoint.address
                raise ServerUnavailableError(
                    self.endpoint.identity, f"no connection to {address} within {wait:.1f} s"
                )
            rechecked = True
            try:
                checked = self._checker.check(self.endpoint, max(0.05, end - time.monotonic()))
            except UnauthenticatedError:
                checked = None
            if checked is None or checked.info.fingerprint != pin.info.fingerprint:
                self._stale = True
                return pin  # this call fails on the pinned channel; the next one reports or re-pins
            pin = self._open_pin(checked, pin)

    def close(self) -> None:
        """Close the pinned channel (if one was opened); does not wait for a check under way."""
        self._closed = True
        pin, self._pin = self._pin, None
        if pin is not None:
            pin.channel.close()

    # The generated stubs pass (method, request_serializer, response_deserializer, _registered_method).
    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """A unary-unary multicallable on the pinned channel."""
        return ScopedCallable(self, "unary_unary", method, args, kwargs)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """A unary-stream multicallable on the pinned channel."""
        return ScopedCallable(self, "unary_stream", method, args, kwargs)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """A stream-unary multicallable on the pinned channel."""
        return ScopedCallable(self, "stream_unary", method, args, kwargs)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """A stream-stream multicallable on the pinned channel."""
        return ScopedCallable(self, "stream_stream", method, args, kwargs)

    def subscribe(
        self, callback: Callable[[grpc.ChannelConnectivity], None], try_to_connect: bool = False
    ) -> None:
        """Subscribe to the pinned channel's connectivity (checks the server first)."""
        self.current().subscribe(callback, try_to_connect)

    def unsubscribe(self, callback: Callable[[grpc.ChannelConnectivity], None]) -> None:
        """Undo :meth:`subscribe`."""
        pin = self._pin
        if pin is not None:
            pin.channel.unsubscribe(callback)
