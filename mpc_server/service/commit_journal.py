"""The durable half of the upload commit protocol (``service.commit``): prepared uploads on disk.

Layout::

    <data>/commits/<upload id>.json     the record: the dataset, the state ("prepared" or
                                        "committed") and when it was written
    <data>/commits/<upload id>.share    the prepared share file, until published
    <data>/commits/<upload id>.tokens   a keyed upload's prepared row tokens, until published

Every step is a rename, or a small file written, fsynced and renamed (the
directory fsynced too), so a crash leaves each file either before or after
the step, never half-way:

- **prepare**: the tokens (keyed uploads), then the share file (moved from
  ``tmp/``, where it was written and fsynced), then the record
  ``prepared``. The record is the marker and is written last: a crash
  before it leaves files without a record, which the next start removes.
  A failure (a full disk: ``DiskFullError``, another I/O error:
  ``StorageWriteError``) removes what was done and frees the name.
- **commit** (all three servers prepared): the record becomes
  ``committed`` first, then the tokens and the share file are moved into
  place (``FileDatasetStore.publish`` with ``overwrite=None``: over any
  version, and a failure keeps the prepared file and the name locked, to
  be retried). Until then the replaced version, if any, stays the one
  visible.
- **roll back**: the record is removed first, then the files.

At start (:meth:`CommitJournal.load`, before the server serves) a
``committed`` record whose files are still here is finished; a
``prepared`` one is handed to ``service.commit``, which settles it with the
peers (its name stays locked meanwhile); files without a record, and
``*.part`` files, are removed. Records of committed uploads are kept for
:data:`COMMITTED_RETENTION_SECONDS`, so that a peer that settles late
still learns the outcome even after the dataset was replaced or deleted,
and are pruned at start after that.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from mpc_core.errors import MpcError
from mpc_server.service import share_files
from mpc_server.service.key_store import KeyStore
from mpc_server.service.model import DatasetRef, StoredDataset
from mpc_server.service.store import FileDatasetStore, PendingDataset

_log = logging.getLogger(__name__)

FORMAT = 1
PREPARED = "prepared"
COMMITTED = "committed"
COMMITTED_RETENTION_SECONDS = 30 * 86400.0
"""How long the record of a committed upload is kept after the commit."""


@dataclass(frozen=True)
class Record:
    """One upload that reached the prepared state on this server."""

    upload_id: bytes
    ref: DatasetRef
    state: str
    at: float
    """When the upload was prepared (seconds since the epoch)."""


def _parse(data: bytes) -> Record:
    fields = json.loads(data)
    if fields["format"] != FORMAT or fields["state"] not in (PREPARED, COMMITTED):
        raise ValueError("unknown record format or state")
    ref = DatasetRef(str(fields["owner"]), str(fields["name"]))
    return Record(bytes.fromhex(fields["upload_id"]), ref, str(fields["state"]), float(fields["at"]))


class CommitJournal:
    """Prepared and committed uploads under ``<data>/commits`` (every method blocks: call off the loop)."""

    def __init__(
        self, root: Path, store: FileDatasetStore, keys: KeyStore, *, clock: Callable[[], float] = time.time
    ) -> None:
        """Keep records under ``root`` for datasets of ``store`` (and tokens of ``keys``)."""
        self._root = root
        self._dir = root / "commits"
        self._store = store
        self._keys = keys
        self._clock = clock
        self.committed: dict[bytes, DatasetRef] = {}
        """Uploads committed here, whose records are kept (by upload id)."""

    def share_path(self, upload_id: bytes) -> Path:
        """Where the prepared share file of ``upload_id`` waits."""
        return self._dir / f"{upload_id.hex()}.share"

    def _tokens(self, upload_id: bytes) -> Path:
        return self._dir / f"{upload_id.hex()}.tokens"

    def _record(self, upload_id: bytes) -> Path:
        return self._dir / f"{upload_id.hex()}.json"

    def _what(self, ref: DatasetRef) -> str:
        return f"dataset {ref} on {self._store.storage.server}"

    def _make_dir(self) -> None:
        if not self._dir.is_dir():
            self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            share_files.fsync_directory(self._root)

    def prepare(self, pending: PendingDataset, temp: Path, tokens: bytes | None, alignment: str) -> Record:
        """Make a written upload (its file ``temp``) durable as prepared.

        Raises:
            DiskFullError: the disk is full (names the server and the dataset).
            StorageWriteError: another I/O error. Either way nothing of the
                upload is left and its name is free again.
        """
        upload_id, ref, what = pending.summary.upload_id, pending.ref, self._what(pending.ref)
        record = Record(upload_id, ref, PREPARED, self._clock())
        try:
            try:
                self._make_dir()
                if tokens is not None:
                    self._keys.prepare(self._tokens(upload_id), upload_id, alignment, tokens)
            except OSError as exc:
                raise share_files.write_failure(what, len(tokens or b""), exc) from None
            share_files.publish(temp, self.share_path(upload_id), what=what)
            self._write(record)
        except BaseException as exc:
            for path in (temp, self.share_path(upload_id), self._tokens(upload_id)):
                path.unlink(missing_ok=True)
            self._store.discard(pending)
            if isinstance(exc, share_files.WriteFailure):
                self._store.storage.write_failed(what, exc.os_error)
            raise
        return record

    def record_commit(self, record: Record) -> None:
        """Record durably that the three servers decided to commit (once; before anything is published)."""
        if record.upload_id not in self.committed:
            self._write(replace(record, state=COMMITTED))
            self.committed[record.upload_id] = record.ref

    def publish(self, pending: PendingDataset, record: Record) -> StoredDataset:
        """Move a committed upload's tokens and share file into place (safe to repeat after a failure).

        Raises:
            DiskFullError, StorageWriteError: a move failed; the files left
                stay for the next attempt.
        """
        tokens = self._tokens(record.upload_id)
        if tokens.exists():
            try:
                self._keys.install(record.ref, tokens)
            except share_files.WriteFailure as exc:
                self._store.storage.write_failed(self._what(record.ref), exc.os_error)
                raise
        return self._store.publish(pending, self.share_path(record.upload_id), None)

    def roll_back(self, pending: PendingDataset | None, upload_id: bytes) -> None:
        """Abandon a prepared upload: the record first, then its files; its name is free again."""
        try:
            share_files.remove(self._record(upload_id))
        finally:
            for path in (self.share_path(upload_id), self._tokens(upload_id)):
                path.unlink(missing_ok=True)
            if pending is not None:
                self._store.discard(pending)

    def _write(self, record: Record) -> None:
        fields = {
            "format": FORMAT,
            "upload_id": record.upload_id.hex(),
            "owner": record.ref.owner,
            "name": record.ref.name,
            "state": record.state,
            "at": record.at,
        }
        data = json.dumps(fields, sort_keys=True).encode()
        temp = self._dir / f"{record.upload_id.hex()}.json.part"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            share_files.publish(temp, self._record(record.upload_id), what=self._what(record.ref))
        except OSError as exc:
            raise share_files.write_failure(self._what(record.ref), len(data), exc) from None
        finally:
            temp.unlink(missing_ok=True)

    def load(self) -> tuple[list[tuple[Record, PendingDataset]], list[tuple[Record, PendingDataset]]]:
        """At start: finish what was committed, prune old records, remove leftovers.

        Returns the prepared uploads (to settle with the peers) and the
        committed ones that could not be finished now (to retry), each with
        its name locked in the store.
        """
        self._make_dir()
        prepared: list[tuple[Record, PendingDataset]] = []
        unfinished: list[tuple[Record, PendingDataset]] = []
        keep: set[str] = set()
        for path in sorted(self._dir.glob("*.json")):
            keep.add(path.stem)
            try:
                record = _parse(path.read_bytes())
            except (OSError, ValueError, KeyError, TypeError) as exc:
                _log.error("%s: unreadable commit record %s left in place: %s", self._server, path, exc)
                continue
            share = self.share_path(record.upload_id)
            if record.state == COMMITTED:
                self.committed[record.upload_id] = record.ref
                if share.exists():
                    self._finish(record, share, unfinished)
                elif record.at < self._clock() - COMMITTED_RETENTION_SECONDS:
                    share_files.remove(path)
                    del self.committed[record.upload_id]
                continue
            try:
                prepared.append((record, self._store.hold(share)))
            except (OSError, share_files.StorageError) as exc:
                _log.error(
                    "%s: the prepared upload of dataset %s is unreadable (%s); rolled back here",
                    self._server, record.ref, exc,
                )  # fmt: skip
                self.roll_back(None, record.upload_id)
        for path in self._dir.iterdir():
            if path.suffix == ".part" or path.name.partition(".")[0] not in keep:
                path.unlink(missing_ok=True)
        return prepared, unfinished

    def _finish(self, record: Record, share: Path, unfinished: list[tuple[Record, PendingDataset]]) -> None:
        try:
            pending = self._store.hold(share)
        except (OSError, share_files.StorageError) as exc:
            _log.error(
                "%s: the committed upload of dataset %s is unreadable: %s", self._server, record.ref, exc
            )
            return
        try:
            self.publish(pending, record)
            _log.info("%s: finished the commit of dataset %s after a restart", self._server, record.ref)
        except (OSError, MpcError) as exc:
            _log.error("%s: cannot finish the commit of dataset %s yet: %s", self._server, record.ref, exc)
            unfinished.append((record, pending))

    @property
    def _server(self) -> str:
        return self._store.storage.server
