"""Per-call checks of the caller's certificate and connection, beyond what gRPC checks.

gRPC (BoringSSL) verifies the chain of a client certificate up to the
cluster CA, but accepts chains through a CA-issued leaf that carries
``CA:TRUE`` (it does not enforce the CA's ``pathlen:0``), and grpcio's
Python API cannot require TLS 1.3 nor consult a revocation list. The
:class:`PeerVerifier` therefore checks, on every call, from the call's
``auth_context()``:

* the connection negotiated TLS 1.3 (``ssl_tls_version``);
* the presented leaf certificate (``x509_pem_cert``) fits the cluster's
  profile (:func:`mpc_core.certificates.check_leaf`): signed by the CA's own
  key (no intermediate), ``CA:FALSE``, the extended key usages of its role,
  exactly one identity, and valid *now* (a connection outlives the
  handshake, a certificate may expire in between);
* it is not on the revocation list named in the cluster file, which a
  :class:`RevocationWatcher` re-reads when it changes, without a restart.

Parsing and the signature check are cached per certificate (bounded); the
per-call work is a dictionary lookup, a clock read and two set lookups.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from mpc_core.certificates import (
    CertificateInfo,
    RevocationList,
    check_issued_by,
    check_profile,
    check_valid_now,
    describe,
    load_ca,
    load_pem,
    parse_revocation_list,
)
from mpc_core.errors import ConfigError, ServerUnavailableError, UnauthenticatedError
from mpc_core.identity import Principal

_log = logging.getLogger(__name__)

REQUIRED_TLS_VERSION = b"TLSv1.3"
RELOAD_INTERVAL = 1.0
"""Seconds between two looks at the revocation list's modification time."""
CACHE_SIZE = 1024
_WHAT = "the client certificate"


class RevocationWatcher:
    """A revocation list file, re-read whenever it changes (checked at most every ``interval`` s).

    A list that cannot be read or parsed fails closed: at start-up it is a
    :class:`ConfigError`; later, every check raises
    :class:`ServerUnavailableError` until the file is fixed (the last good
    list is *not* used, since it may lack a revocation just made).
    """

    def __init__(
        self,
        path: Path,
        server: str,
        *,
        interval: float = RELOAD_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Read ``path`` now; ``server`` names this server in errors."""
        self.path = path
        self._server = server
        self._interval = interval
        self._clock = clock
        self._stamp: tuple[int, int, int] | None = None
        self._checked_at = clock()
        self._error = ""
        self.generation = 0
        """Incremented whenever the list (or its readability) changes."""
        try:
            self._list, self._stamp = self._read()
        except ConfigError as exc:
            raise ConfigError(f"certificate revocation list: {exc}") from None

    def _read(self) -> tuple[RevocationList, tuple[int, int, int]]:
        try:
            with self.path.open("rb") as handle:
                status = os.fstat(handle.fileno())
                data = handle.read(1 << 21)
        except OSError as exc:
            raise ConfigError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            text = data.decode()
        except UnicodeDecodeError:
            raise ConfigError(f"{self.path} is not UTF-8 text") from None
        parsed = parse_revocation_list(text, str(self.path))
        return parsed, (status.st_mtime_ns, status.st_size, status.st_ino)

    def _refresh(self) -> None:
        try:
            status = os.stat(self.path)
            stamp = (status.st_mtime_ns, status.st_size, status.st_ino)
            if stamp == self._stamp and not self._error:
                return
            parsed, stamp = self._read()
        except (OSError, ConfigError) as exc:
            reason = (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)
            if reason != self._error:
                _log.error("certificate revocation list unusable, refusing every call: %s", reason)
                self._error = reason
                self._stamp = None
                self.generation += 1
            return
        self._list, self._stamp, self._error = parsed, stamp, ""
        self.generation += 1
        _log.info("certificate revocation list %s reloaded: %d entries", self.path, len(parsed))

    def current(self) -> RevocationList:
        """The list as of at most ``interval`` seconds ago.

        Raises:
            ServerUnavailableError: the file can no longer be read or parsed.
        """
        now = self._clock()
        if now - self._checked_at >= self._interval:
            self._checked_at = now
            self._refresh()
        if self._error:
            raise ServerUnavailableError(
                self._server, f"its certificate revocation list is unusable ({self._error})"
            )
        return self._list


@dataclass(frozen=True)
class Verified:
    """A caller whose certificate passed every check."""

    principal: Principal
    info: CertificateInfo


class PeerVerifier:
    """Checks each call's TLS version and client certificate (see the module docstring)."""

    def __init__(
        self,
        ca_pem: bytes,
        revocation: RevocationWatcher | None = None,
        *,
        cache_size: int = CACHE_SIZE,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        """Trust the CA in ``ca_pem``; deny what ``revocation`` lists (none if None)."""
        self._ca = load_ca(ca_pem)
        self._revocation = revocation
        self._cache: OrderedDict[bytes, CertificateInfo | str] = OrderedDict()
        self._cache_size = cache_size
        self._now = now

    @property
    def revocation(self) -> RevocationWatcher | None:
        """The revocation list this verifier consults (None without one)."""
        return self._revocation

    @property
    def generation(self) -> int:
        """Changes whenever the revocation list does (0 without one)."""
        return 0 if self._revocation is None else self._revocation.generation

    def _leaf(self, pem: bytes) -> CertificateInfo:
        cached = self._cache.get(pem)
        if cached is None:
            try:
                cert: x509.Certificate = load_pem(pem, _WHAT)
                cached = describe(cert, _WHAT)
                check_issued_by(cert, self._ca, cached, _WHAT)
                check_profile(cert, cached, _WHAT)  # the validity is checked on every call
            except ConfigError as exc:
                cached = str(exc)
            except ValueError as exc:  # a malformed extension, for example
                cached = f"the client certificate cannot be parsed: {exc}"
            self._cache[pem] = cached
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        if isinstance(cached, str):
            raise UnauthenticatedError(cached)
        return cached

    def recheck(self, info: CertificateInfo) -> None:
        """What can change during a connection: the time and the revocation list.

        Raises:
            UnauthenticatedError: the certificate expired or was revoked.
            ServerUnavailableError: the revocation list is unusable.
        """
        try:
            check_valid_now(info, _WHAT, self._now())
        except ConfigError as exc:
            raise UnauthenticatedError(str(exc)) from None
        if self._revocation is not None and self._revocation.current().revokes(info):
            raise UnauthenticatedError(f"the client certificate of {info.principal.name} has been revoked")

    def verify(self, auth: Mapping[str, Iterable[bytes]]) -> Verified:
        """Check the connection and certificate of a call from its ``auth_context()``.

        Raises:
            UnauthenticatedError: not TLS 1.3, or a certificate outside the profile, expired or revoked.
            ServerUnavailableError: the revocation list is unusable.
        """
        versions = list(auth.get("ssl_tls_version", ()))
        if versions != [REQUIRED_TLS_VERSION]:
            shown = b",".join(versions).decode(errors="replace") or "an unknown version"
            raise UnauthenticatedError(f"TLS 1.3 is required; this connection uses {shown}")
        leaves = list(auth.get("x509_pem_cert", ()))
        if len(leaves) != 1:
            raise UnauthenticatedError("no client certificate on this connection")
        info = self._leaf(leaves[0])
        self.recheck(info)
        return Verified(info.principal, info)
