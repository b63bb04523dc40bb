"""How a server's storage is doing, for health, ``GetServerInfo`` and ``mpc status``.

The stores report here what they find: a write that failed (disk full,
I/O error), a stored share file that is damaged (checksum mismatch,
truncated, unreadable header). :meth:`StorageState.refresh` (blocking:
call it off the event loop) measures the free space of the data
directory's file system. :meth:`StorageState.problems` lists, in words an
operator can act on, what is wrong right now:

- free space below :data:`LOW_SPACE_BYTES` (or 1 % of the volume, if smaller);
- the last write of a share file failed (until a later one succeeds);
- stored share files are damaged (until each is replaced or deleted).

The problems name no dataset, output or client and give no byte counts:
every client may ask for them, and sizes would tell one client about
another's uploads. The server's log has the details (file paths, errors).
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from pathlib import Path

_log = logging.getLogger(__name__)

LOW_SPACE_BYTES = 64 << 20
"""Free space below which the storage reports a problem (or 1 % of the volume, if smaller)."""
LOW_SPACE_FRACTION = 0.01
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class StorageState:
    """Free space, failed writes and damaged files of one server's data directory (thread-safe)."""

    def __init__(
        self, root: Path, server: str = "this server", *, low_space_bytes: int = LOW_SPACE_BYTES
    ) -> None:
        """Watch the file system holding ``root`` (created if missing) of server ``server``."""
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.server = server
        self._low_space_bytes = low_space_bytes
        self._lock = threading.Lock()
        self._failed_write: str | None = None
        self._damaged: dict[Path, str] = {}
        self.free_bytes = 0
        self.total_bytes = 0
        self.refresh()

    def refresh(self) -> None:
        """Measure the free space now (blocking: a ``statvfs`` call)."""
        try:
            stats = os.statvfs(self.root)
        except OSError as exc:
            _log.error("%s: cannot measure free space of %s: %s", self.server, self.root, exc)
            return
        self.free_bytes = stats.f_bavail * stats.f_frsize
        self.total_bytes = stats.f_blocks * stats.f_frsize

    @property
    def low_space(self) -> bool:
        """Whether free space is below the threshold (as last measured)."""
        threshold = min(self._low_space_bytes, int(self.total_bytes * LOW_SPACE_FRACTION))
        return self.total_bytes > 0 and self.free_bytes < threshold

    def write_failed(self, what: str, error: OSError) -> None:
        """A write of ``what`` (e.g. ``dataset bank-1/x``) failed: logged at ERROR, shown until one works."""
        full = error.errno in DISK_FULL_ERRNOS
        kind = "disk full" if full else "write error"
        reason = os.strerror(error.errno) if error.errno else str(error)
        _log.error("%s: %s: cannot store %s: %s", self.server, kind, what, error)
        remedy = "free space on the data volume" if full else "check the data volume"
        with self._lock:
            self._failed_write = (
                f"{kind}: the last write of a share file failed "
                f"({reason}): {remedy}; uploads and outputs to keep fail until then"
            )

    def write_succeeded(self) -> None:
        """A share file was written and published: earlier write failures are over."""
        with self._lock:
            self._failed_write = None

    def damaged(self, path: Path, detail: str) -> None:
        """The stored share file ``path`` is unusable (logged at ERROR by the caller)."""
        with self._lock:
            self._damaged[path] = detail

    def repaired(self, path: Path) -> None:
        """``path`` was replaced or deleted: it is no longer damaged."""
        with self._lock:
            self._damaged.pop(path, None)

    @property
    def damaged_files(self) -> int:
        """Number of stored share files known to be damaged."""
        with self._lock:
            return len(self._damaged)

    def problems(self) -> list[str]:
        """What is wrong with this server's storage now (empty: nothing known)."""
        found = []
        with self._lock:
            failed, damaged = self._failed_write, len(self._damaged)
        if failed is not None:
            found.append(failed)
        if self.low_space:
            threshold = min(self._low_space_bytes, int(self.total_bytes * LOW_SPACE_FRACTION))
            limit = f"{threshold >> 20} MiB" if threshold >= 1 << 20 else f"{threshold >> 10} KiB"
            found.append(f"free space on the data volume is low (below {limit}): free space there")
        if damaged:
            files = "file is" if damaged == 1 else "files are"
            found.append(
                f"{damaged} stored share {files} damaged (failed checksum or unreadable): see this "
                "server's log; restore from a backup, or re-upload or delete the datasets"
            )
        return found
