"""Durable job outputs under ``<data>/outputs``, kept within a retention policy.

One share file per output (``share_files``). An output is deleted when its
receiver releases it, when it is older than the maximum age, or (oldest
first) when keeping it would exceed the byte cap. The index holds metadata
only; a file is mapped while an output is being read. Outputs handed to
their receiver inline are kept in memory until :meth:`persist` has written
them. All index operations hold one lock: writes run in worker threads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpc_core.errors import NotFoundError
from mpc_core.sharing import ReplicatedShare
from mpc_server.service import share_files
from mpc_server.service.model import OutputInfo, StoredOutput
from mpc_server.service.store import SUFFIX, clean_tmp

_log = logging.getLogger(__name__)
_WORD_BYTES = 8


@dataclass(frozen=True)
class OutputRetention:
    """How long and how much output a server keeps for receivers."""

    max_age_seconds: float = 3600.0
    max_bytes: int = 2 << 30


@dataclass
class _Entry:
    created: float
    job_id: str
    receiver: str
    info: OutputInfo
    digest: bytes
    nbytes: int
    in_memory: StoredOutput | None = None
    """The output itself until its file is written."""


class FileOutputStore:
    """Job outputs as share files, within a retention policy."""

    def __init__(
        self,
        root: Path,
        retention: OutputRetention = OutputRetention(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Open (or create) the store and index the kept outputs, oldest first."""
        self._dir = root / "outputs"
        self._tmp = clean_tmp(root / "tmp" / "outputs")
        self._dir.mkdir(parents=True, exist_ok=True)
        self.retention = retention
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.RLock()
        loaded = []
        for path in self._dir.glob(f"*{SUFFIX}"):
            try:
                loaded.append(_entry_from_header(share_files.check(path)))
            except (share_files.StorageError, KeyError, ValueError) as exc:
                _log.error("ignoring unreadable output file %s: %s", path, exc)
        for entry in sorted(loaded, key=lambda e: e.created):
            self._index(entry)
        self.expire()

    @property
    def stored_bytes(self) -> int:
        """Bytes of output shares currently kept."""
        return self._bytes

    def get(self, job_id: str) -> StoredOutput:
        """The output of ``job_id``."""
        self.expire()
        with self._lock:
            entry = self._entries.get(job_id)
        if entry is None:
            raise NotFoundError(f"no output for job {job_id} (never computed here, released or expired)")
        if entry.in_memory is not None:
            return entry.in_memory
        try:
            _, first, second = share_files.open_components(self._path(job_id))
        except FileNotFoundError:
            raise NotFoundError(f"no output for job {job_id} (released or expired)") from None
        return StoredOutput(
            entry.job_id, entry.receiver, entry.info, ReplicatedShare(first, second), entry.digest
        )

    def put(self, output: StoredOutput, *, durable: bool = True) -> None:
        """Keep ``output``, then evict the oldest outputs beyond the byte cap.

        The file is written before it is indexed; with ``durable=False`` the
        output is kept in memory until :meth:`persist` writes it.
        """
        entry = _entry(output, self._clock())
        temp = (
            share_files.write_temp(self._tmp, _header(entry), output.share.first, output.share.second)
            if durable
            else None
        )
        with self._lock:
            if temp is not None:
                share_files.publish(temp, self._path(output.job_id))
            else:
                entry.in_memory = output
            self._unindex(output.job_id)
            self._index(entry)
        self._evict()

    def persist(self, job_id: str) -> None:
        """Write a kept output's file unless it was dropped meanwhile (blocking)."""
        with self._lock:
            entry = self._entries.get(job_id)
        if entry is None or entry.in_memory is None:
            return
        share = entry.in_memory.share
        temp = share_files.write_temp(self._tmp, _header(entry), share.first, share.second)
        with self._lock:
            if self._entries.get(job_id) is entry:
                share_files.publish(temp, self._path(job_id))
                entry.in_memory = None
                return
        temp.unlink(missing_ok=True)

    def delete(self, job_id: str) -> None:
        """Drop the output of ``job_id`` and its file, if kept."""
        with self._lock:
            if self._unindex(job_id):
                share_files.remove(self._path(job_id))

    def expire(self) -> int:
        """Drop outputs older than the retention age; returns how many."""
        cutoff = self._clock() - self.retention.max_age_seconds
        with self._lock:
            old = [job_id for job_id, entry in self._entries.items() if entry.created < cutoff]
        for job_id in old:
            self.delete(job_id)
        return len(old)

    def _evict(self) -> None:
        while True:
            with self._lock:
                if self._bytes <= self.retention.max_bytes or len(self._entries) <= 1:
                    return
                oldest = next(iter(self._entries))
            self.delete(oldest)

    def _index(self, entry: _Entry) -> None:
        self._entries[entry.job_id] = entry
        self._bytes += entry.nbytes

    def _unindex(self, job_id: str) -> bool:
        entry = self._entries.pop(job_id, None)
        if entry is not None:
            self._bytes -= entry.nbytes
        return entry is not None

    def _path(self, job_id: str) -> Path:
        return self._dir / f"{job_id}{SUFFIX}"


def _entry(output: StoredOutput, created: float) -> _Entry:
    nbytes = int(output.share.first.nbytes + output.share.second.nbytes)
    return _Entry(created, output.job_id, output.receiver, output.info, output.job_digest, nbytes)


def _entry_from_header(header: dict[str, Any]) -> _Entry:
    info = OutputInfo(tuple(header["shape"]), int(header["fractional_bits"]))
    nbytes = 2 * _WORD_BYTES * int(header["count"])
    digest = bytes.fromhex(header["digest"])
    return _Entry(float(header["created"]), header["job_id"], header["receiver"], info, digest, nbytes)


def _header(entry: _Entry) -> dict[str, object]:
    return {
        "job_id": entry.job_id,
        "receiver": entry.receiver,
        "shape": list(entry.info.shape),
        "fractional_bits": entry.info.fractional_bits,
        "digest": entry.digest.hex(),
        "created": entry.created,
    }
