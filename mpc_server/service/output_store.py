"""Durable job outputs under ``<data>/outputs``, kept within a retention policy and quotas.

One share file per output (``share_files``), named by the job's submitter,
its id and the output's name (``outputs/<submitter>/<job id>/<output>.share``:
job ids are scoped by submitter, and a program may have several outputs).
An output is deleted when its receiver releases it or when it is older
than the maximum age; nothing else evicts it. Storage is accounted
per client, charged to the client that submitted the job (by default its
receiver: a third party submitting jobs for a receiver spends its own quota,
so it cannot fill the receiver's). A job whose output would take its
submitter over its quota (bytes or count), or the server over its total, is
refused before it runs (:meth:`FileOutputStore.check_quota`,
RESOURCE_EXHAUSTED), so no client can push out another's outputs. The
index holds metadata; fresh outputs are also kept in memory within a
budget (always until their file is written, for outputs handed to their
receiver inline and written right after by :meth:`persist`). All index
operations hold one lock, since files are written in worker threads.

Files carry checksums (``share_files``): one that fails its check when
read is ``DataLossError`` naming the server, the job and the output. A
write refused for a full disk is ``DiskFullError`` (RESOURCE_EXHAUSTED).
When the background write of an output fails (:meth:`persist`), the
output stays in memory, so its receiver can still fetch it while this
server runs, and a loss record is written in its place
(``output_files``): after a restart a fetch fails with ``DataLossError``
saying so, rather than "not found". Write failures and damaged files are
reported to the server's ``StorageState`` (health, ``mpc status``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from mpc_core.errors import DataLossError, NotFoundError, ResourceLimitError
from mpc_core.sharing import ReplicatedShare
from mpc_server.service import share_files
from mpc_server.service.model import StoredOutput, job_key
from mpc_server.service.output_files import (
    LOST_SUFFIX,
    Entry,
    entry_from_header,
    entry_of,
    header_of,
    read_loss_record,
    write_loss_record,
)
from mpc_server.service.storage_state import StorageState
from mpc_server.service.store import SUFFIX, clean_tmp

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutputRetention:
    """How long and how much output a server keeps for receivers."""

    max_age_seconds: float = 3600.0
    max_bytes: int = 2 << 30
    """All outputs together; a job that would exceed it is refused."""
    max_bytes_per_client: int = 512 << 20
    """Kept outputs of the jobs one client submitted, together (its quota in bytes)."""
    max_outputs_per_client: int = 1000
    """Number of kept outputs of the jobs one client submitted (its quota in outputs)."""
    memory_bytes: int = 256 << 20
    """Outputs also kept in memory (the rest are read from their files)."""


class FileOutputStore:
    """Job outputs as share files, within a retention policy."""

    def __init__(
        self,
        root: Path,
        retention: OutputRetention = OutputRetention(),
        clock: Callable[[], float] = time.time,
        *,
        storage: StorageState | None = None,
    ) -> None:
        """Open (or create) the store and index the kept outputs, oldest first (reporting to ``storage``)."""
        self._dir = root / "outputs"
        self._tmp = clean_tmp(root / "tmp" / "outputs")
        self._dir.mkdir(parents=True, exist_ok=True)
        self.storage = storage or StorageState(root)
        self.retention = retention
        self._clock = clock
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._bytes = 0
        self._resident: OrderedDict[str, None] = OrderedDict()
        """Entries whose output is in memory, oldest first."""
        self._resident_bytes = 0
        self._accounts: dict[str, tuple[int, int]] = {}
        """Bytes and number of outputs kept per submitter."""
        self._by_job: dict[str, dict[str, int]] = {}
        """The kept outputs of each job (``submitter/job_id``): key -> position in the program."""
        self._lock = threading.RLock()
        loaded = []
        for path in self._dir.glob(f"*/*/*{SUFFIX}"):
            try:
                loaded.append(entry_from_header(share_files.check(path)))
            except (share_files.StorageError, KeyError, ValueError, TypeError) as exc:
                _log.error("%s: ignoring unreadable output file %s: %s", self.storage.server, path, exc)
                self.storage.damaged(path, str(exc))
        for path in self._dir.glob(f"*/*/*{LOST_SUFFIX}"):
            try:
                if path.with_suffix(SUFFIX).exists():  # written after all (a later attempt)
                    path.unlink()
                    continue
                loaded.append(read_loss_record(path))
            except (OSError, KeyError, ValueError, TypeError) as exc:
                _log.error("%s: ignoring unreadable loss record %s: %s", self.storage.server, path, exc)
        for entry in sorted(loaded, key=lambda e: e.created):
            self._index(entry)
        self.expire()

    @property
    def stored_bytes(self) -> int:
        """Bytes of output shares currently kept."""
        return self._bytes

    def check_quota(self, submitter: str, nbytes: int) -> None:
        """Refuse a job whose output of ``nbytes`` would exceed its submitter's quota or the total.

        Raises:
            ResourceLimitError: naming the quota.
        """
        self.expire()
        retention = self.retention
        with self._lock:
            used, count = self._accounts.get(submitter, (0, 0))
            total = self._bytes
        if count + 1 > retention.max_outputs_per_client:
            raise ResourceLimitError(
                f"the jobs {submitter} submitted have {count} outputs kept on this server, its quota of "
                f"{retention.max_outputs_per_client}: fetch them with release first"
            )
        if used + nbytes > retention.max_bytes_per_client:
            raise ResourceLimitError(
                f"this output would take the outputs kept for {submitter}'s jobs to {used + nbytes} "
                f"bytes, beyond its quota of {retention.max_bytes_per_client}: "
                "fetch earlier outputs with release first"
            )
        if total + nbytes > retention.max_bytes:
            raise ResourceLimitError(
                f"this server keeps at most {retention.max_bytes} bytes of outputs and is full; "
                "try again when outputs have been fetched or have expired"
            )

    def has(self, key: str) -> bool:
        """Whether an output named ``key`` is kept (and not expired)."""
        self.expire()
        with self._lock:
            return key in self._entries

    def outputs_of(self, submitter: str, job_id: str) -> list[str]:
        """The keys of a job's kept outputs, in the program's order."""
        self.expire()
        with self._lock:
            kept = self._by_job.get(job_key(submitter, job_id), {})
            return sorted(kept, key=kept.__getitem__)

    def get(self, key: str) -> StoredOutput:
        """The output named ``key`` (``submitter/job_id``)."""
        self.expire()
        with self._lock:
            entry = self._entries.get(key)
        if entry is None:
            raise NotFoundError(f"no output {key} (never computed, released or expired)")
        if entry.in_memory is not None:
            return entry.in_memory
        what = f"output {entry.info.name} of job {entry.job_id} on {self.storage.server}"
        if entry.lost is not None:
            raise DataLossError(
                f"{what} was lost: the server could not write it ({entry.lost}) and has restarted "
                "since; run the job again under a new job id"
            )
        path = self._path(key)
        try:
            _, first, second = share_files.read(path)
        except FileNotFoundError:
            raise NotFoundError(f"no output for job {entry.job_id} (released or expired)") from None
        except share_files.CorruptFileError as exc:
            _log.error("%s: %s is damaged: %s", self.storage.server, what, exc)
            self.storage.damaged(path, exc.detail)
            raise DataLossError(
                f"{what} is damaged: its stored share file {exc.detail}; it cannot be returned. "
                "Run the job again under a new job id"
            ) from None
        return StoredOutput(
            entry.job_id,
            entry.receiver,
            entry.info,
            ReplicatedShare(first, second),
            entry.digest,
            entry.submitter,
            entry.index,
        )

    def put(self, output: StoredOutput, *, durable: bool = True) -> None:
        """Keep ``output`` (its quota was checked when the job was planned).

        The file is written before it is indexed; with ``durable=False`` the
        output is kept in memory until :meth:`persist` writes it.
        """
        entry = entry_of(output, self._clock())
        temp = self._write(entry, output) if durable else None
        with self._lock:
            if temp is not None:
                self._publish(entry, temp)
            entry.in_memory = output  # fresh outputs are usually fetched soon
            entry.written = temp is not None
            self._unindex(output.key)
            self._index(entry)
            self._trim_memory()

    def persist(self, key: str) -> None:
        """Write a kept output's file unless it was dropped meanwhile (blocking).

        Raises:
            DiskFullError, StorageWriteError: it could not be written. The
                output stays in memory (and fetchable) while the server runs;
                a loss record makes later fetches fail clearly after a restart.
        """
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or entry.written or entry.lost is not None or entry.in_memory is None:
            return
        try:
            temp = self._write(entry, entry.in_memory)
            with self._lock:
                if self._entries.get(key) is entry:
                    self._publish(entry, temp)
                    entry.written = True
                    self._trim_memory()
                    return
            temp.unlink(missing_ok=True)
        except share_files.WriteFailure as exc:
            entry.lost = str(exc.os_error.strerror or exc.os_error)
            self._record_loss(entry)
            raise

    def _write(self, entry: Entry, output: StoredOutput) -> Path:
        what = f"output {entry.info.name} of job {entry.job_id} (submitted by {entry.submitter})"
        share, named = output.share, f"{what} on {self.storage.server}"
        try:
            return share_files.write_temp(self._tmp, header_of(entry), share.first, share.second, what=named)
        except share_files.WriteFailure as exc:
            self.storage.write_failed(what, exc.os_error)
            raise

    def _publish(self, entry: Entry, temp: Path) -> None:
        """Move a written output file into place (holding the lock)."""
        try:
            share_files.publish(temp, self._path(entry.key), what=f"output of job {entry.job_id}")
        except share_files.WriteFailure as exc:
            temp.unlink(missing_ok=True)
            self.storage.write_failed(f"output of job {entry.job_id}", exc.os_error)
            raise
        self.storage.write_succeeded()

    def _record_loss(self, entry: Entry) -> None:
        """Leave a loss record for an output that could not be written (best effort)."""
        target = self._path(entry.key).with_suffix(LOST_SUFFIX)
        try:
            write_loss_record(self._tmp, target, entry, entry.lost or "write failed")
        except OSError as exc:
            _log.error(
                "%s: cannot record the loss of output %s of job %s either (%s): after a restart, "
                "fetching it will answer not found",
                self.storage.server,
                entry.info.name,
                entry.job_id,
                exc,
            )

    def handed_over(self, key: str) -> None:
        """The receiver has the output and wants no copy: stop charging it to the submitter.

        It stays (uncharged) until it is dropped, for retries racing the answer.
        """
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.charged:
                self._charge(entry, -1)
                entry.charged = False

    def delete(self, key: str) -> None:
        """Drop the output named ``key`` and its file, if kept."""
        with self._lock:
            if self._unindex(key):
                path = self._path(key)
                share_files.remove(path)
                share_files.remove(path.with_suffix(LOST_SUFFIX))
                self.storage.repaired(path)
                with suppress(OSError):
                    path.parent.rmdir()  # the job's directory, once its last output is gone

    def expire(self) -> int:
        """Drop outputs older than the retention age; returns how many."""
        cutoff = self._clock() - self.retention.max_age_seconds
        dropped = 0
        while True:  # entries are kept oldest first
            with self._lock:
                oldest = next(iter(self._entries.values()), None)
                if oldest is None or oldest.created >= cutoff:
                    return dropped
            self.delete(oldest.key)
            dropped += 1

    def _trim_memory(self) -> None:
        """Keep in-memory copies of written outputs within the memory budget."""
        for job_id in list(self._resident):
            if self._resident_bytes <= self.retention.memory_bytes:
                return
            entry = self._entries[job_id]
            if entry.written:
                entry.in_memory = None
                del self._resident[job_id]
                self._resident_bytes -= entry.nbytes

    def _index(self, entry: Entry) -> None:
        self._entries[entry.key] = entry
        self._bytes += entry.nbytes
        if entry.charged:
            self._charge(entry, 1)
        self._by_job.setdefault(job_key(entry.submitter, entry.job_id), {})[entry.key] = entry.index
        if entry.in_memory is not None:
            self._resident[entry.key] = None
            self._resident_bytes += entry.nbytes

    def _unindex(self, key: str) -> bool:
        entry = self._entries.pop(key, None)
        if entry is None:
            return False
        self._bytes -= entry.nbytes
        if entry.charged:
            self._charge(entry, -1)
        outputs = self._by_job.get(job_key(entry.submitter, entry.job_id), {})
        outputs.pop(key, None)
        if not outputs:
            self._by_job.pop(job_key(entry.submitter, entry.job_id), None)
        if self._resident.pop(key, False) is None:
            self._resident_bytes -= entry.nbytes
        return True

    def _charge(self, entry: Entry, sign: int) -> None:
        used, count = self._accounts.get(entry.submitter, (0, 0))
        used, count = used + sign * entry.nbytes, count + sign
        if count:
            self._accounts[entry.submitter] = (used, count)
        else:
            self._accounts.pop(entry.submitter, None)

    def receiver_of(self, key: str) -> str | None:
        """The receiver of the output named ``key``, if kept (nothing is read)."""
        with self._lock:
            entry = self._entries.get(key)
        return None if entry is None else entry.receiver

    def _path(self, key: str) -> Path:
        submitter, job_id, output = key.split("/")
        return self._dir / submitter / job_id / f"{output}{SUFFIX}"
