"""Durable storage of datasets and job outputs under a server's data directory.

Layout::

    <data>/datasets/<owner>/<name>.share   one file per dataset (share_files)
    <data>/outputs/<submitter>/<job id>/<output>.share   one file per kept job output
    <data>/tmp/                            files being written; emptied at start

The stores keep an index rebuilt from the files at start (everything survives
a restart) and a bounded cache of shares in memory. Writes are atomic and
files carry checksums (``share_files``): a file that fails its checksum when
read is ``DataLossError`` naming the server and the dataset, a full disk
``DiskFullError`` (RESOURCE_EXHAUSTED) naming them; both are reported to the
server's :class:`StorageState` (health, ``mpc status``). Outputs live in
``output_store``.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mpc_core.errors import AlreadyExistsError, DataLossError, NotFoundError
from mpc_core.ring import Ring, RingArray, ring_for_bits
from mpc_core.sharing import ReplicatedShare
from mpc_server.service import share_files
from mpc_server.service.grants import Grant, grant_from_json, grant_to_json
from mpc_server.service.model import DatasetRef, DatasetSummary, StoredDataset, StoredOutput
from mpc_server.service.share_ranges import FileRows, MemoryRows, Rows
from mpc_server.service.storage_state import StorageState

_log = logging.getLogger(__name__)
SUFFIX = ".share"
DEFAULT_CACHE_BYTES = 512 << 20


class DatasetStore(Protocol):
    """Where a server keeps its shares of uploaded datasets (and of job outputs kept as datasets)."""

    def summary(self, ref: DatasetRef) -> DatasetSummary:
        """What is known of the dataset without its shares, or :class:`NotFoundError`."""
        ...

    def get(self, ref: DatasetRef) -> StoredDataset:
        """The dataset with its shares (may read a file: call off the event loop)."""
        ...

    def keep(self, summary: DatasetSummary, share: ReplicatedShare, overwrite: bool) -> StoredDataset:
        """Store a job output as a dataset (blocking: call off the event loop)."""
        ...

    def open_rows(self, ref: DatasetRef) -> Rows:
        """The dataset's shares to read in ranges (blocking: call off the event loop)."""


class OutputStore(Protocol):
    """Where a server keeps its shares of job outputs until fetched (keys: ``submitter/job_id``)."""

    def get(self, key: str) -> StoredOutput:
        """Return the output or raise :class:`NotFoundError`."""
        ...

    def put(self, output: StoredOutput, *, durable: bool = True) -> None:
        """Keep an output for its receiver (durably unless told otherwise)."""
        ...

    def persist(self, key: str) -> None:
        """Make a kept output durable (after ``put(durable=False)``)."""
        ...

    def delete(self, key: str) -> None:
        """Drop an output (no error if absent)."""
        ...

    def has(self, key: str) -> bool:
        """Whether an output named ``key`` is kept (no file is read)."""
        ...

    def receiver_of(self, key: str) -> str | None:
        """The receiver of the output named ``key``, if kept (no file is read)."""
        ...

    def outputs_of(self, submitter: str, job_id: str) -> list[str]:
        """The keys of a job's kept outputs, in the program's order."""
        ...

    def handed_over(self, key: str) -> None:
        """The receiver has the output for good: it no longer counts against any quota."""
        ...

    def check_quota(self, submitter: str, nbytes: int) -> None:
        """Refuse (RESOURCE_EXHAUSTED) an output that would exceed the submitter's quota."""
        ...


def clean_tmp(tmp: Path) -> Path:
    """Remove what a crash left half-written; return the (empty) directory."""
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


@dataclass(eq=False)
class PendingDataset:
    """An upload being received into memory; :class:`FileDatasetStore` stores it."""

    summary: DatasetSummary
    first: RingArray
    second: RingArray
    seeds: tuple[bytes, bytes] = share_files.NO_SEEDS
    """Seeds the components were expanded from (stored instead of them)."""

    @property
    def ref(self) -> DatasetRef:
        """The dataset's name."""
        return self.summary.ref

    def dataset(self) -> StoredDataset:
        """The dataset this upload becomes."""
        return StoredDataset(**vars(self.summary), share=ReplicatedShare(self.first, self.second))


def _summary(header: dict[str, Any]) -> DatasetSummary:
    upload_id = bytes.fromhex(header["upload_id"])
    magnitude = header.get("magnitude_bits")
    return DatasetSummary(
        ref=DatasetRef(header["owner"], header["name"]),
        shape=tuple(header["shape"]),
        ring_bits=int(header.get("ring_bits", 64)),
        fractional_bits=int(header["fractional_bits"]),
        magnitude_bits=None if magnitude is None else int(magnitude),
        upload_id=upload_id,
        created_at=float(header.get("created_at", 0.0)),
        initial_grants=tuple(grant_from_json(g, upload_id) for g in header["grants"]),
        alignment=str(header.get("alignment", "")),
        columns=tuple(str(c) for c in header.get("columns", ())),
    )


class FileDatasetStore:
    """Datasets as share files under ``<data>/datasets``, recently used ones cached.

    The index (each dataset's summary) is rebuilt from the files' headers at
    start; a dataset's shares are read when a job needs them and kept in a
    least-recently-used cache of at most ``cache_bytes``; an upload of at most
    half that is cached as it is published (larger ones are not: uploads alone
    must not fill a server's memory). Reads may run in worker threads (locked).
    """

    def __init__(
        self, root: Path, cache_bytes: int = DEFAULT_CACHE_BYTES, *, storage: StorageState | None = None
    ) -> None:
        """Open (or create) the store and index every dataset file (reporting to ``storage``)."""
        self._dir = root / "datasets"
        self._tmp = clean_tmp(root / "tmp" / "datasets")
        self.storage = storage or StorageState(root)
        self._index: dict[DatasetRef, DatasetSummary] = {}
        self._uploading: dict[DatasetRef, PendingDataset] = {}
        """Names being written, each with the upload that holds it."""
        self._cache: OrderedDict[DatasetRef, StoredDataset] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._cached = 0
        self._lock = threading.Lock()
        unchecked = 0
        for path in sorted(self._dir.glob(f"*/*{SUFFIX}")):
            try:
                layout = share_files.inspect(path)
                summary = _summary(layout.header)
                self._index[summary.ref] = summary
                unchecked += not layout.checked
            except (share_files.StorageError, KeyError, ValueError, TypeError) as exc:
                _log.error("%s: ignoring unreadable dataset file %s: %s", self.storage.server, path, exc)
                self.storage.damaged(path, str(exc))
        if unchecked:
            _log.warning(
                "%s: %d dataset file(s) predate checksums (share file format < %d) and are read "
                "unchecked until their owners upload them again",
                self.storage.server,
                unchecked,
                share_files.CHECKED_SINCE,
            )

    def __len__(self) -> int:
        """Number of stored datasets."""
        return len(self._index)

    def _path(self, ref: DatasetRef) -> Path:
        return self._dir / ref.owner / f"{ref.name}{SUFFIX}"

    def summary(self, ref: DatasetRef) -> DatasetSummary:
        """The dataset's summary (no file is read)."""
        summary = self._index.get(ref)
        if summary is None:
            raise NotFoundError(f"dataset {ref} not found")
        return summary

    def owned_by(self, owner: str) -> list[DatasetSummary]:
        """Summaries of ``owner``'s datasets, by name."""
        return sorted((s for s in self._index.values() if s.ref.owner == owner), key=lambda s: s.ref.name)

    def get(self, ref: DatasetRef) -> StoredDataset:
        """The dataset named ``ref`` (from the cache, else read from its file: blocking)."""
        summary = self.summary(ref)
        with self._lock:
            cached = self._cache.get(ref)
            if cached is not None and cached.upload_id == summary.upload_id:
                self._cache.move_to_end(ref)
                return cached
        path = self._path(ref)
        try:
            header, first, second = share_files.read(path)
        except FileNotFoundError:
            raise NotFoundError(f"dataset {ref} not found") from None
        except share_files.CorruptFileError as exc:
            raise self._damaged(f"dataset {ref}", path, exc) from None
        dataset = StoredDataset(**vars(_summary(header)), share=ReplicatedShare(first, second))
        with self._lock:
            self._remember(dataset)
        return dataset

    def open_rows(self, ref: DatasetRef) -> Rows:
        """The dataset in element ranges (``share_ranges``): its cached copy, else its file (blocking)."""
        summary, path = self.summary(ref), self._path(ref)
        with self._lock:
            cached = self._cache.get(ref)
        if cached is not None and cached.upload_id == summary.upload_id:
            return MemoryRows(cached.share.first, cached.share.second, cached.upload_id)
        try:
            return FileRows(path, lambda exc: self._damaged(f"dataset {ref}", path, exc))
        except FileNotFoundError:
            raise NotFoundError(f"dataset {ref} not found") from None

    def _damaged(self, what: str, path: Path, error: share_files.CorruptFileError) -> DataLossError:
        """Report a damaged file: logged, shown in the storage state, and the error for the caller."""
        server = self.storage.server
        _log.error("%s: %s is damaged: %s", server, what, error)
        self.storage.damaged(path, error.detail)
        return DataLossError(
            f"{what} on {server} is damaged: its stored share file {error.detail}; no result was computed "
            "from it. Restore the file from a backup, or upload the dataset again with overwrite"
        )

    def check_replace(self, ref: DatasetRef, upload_id: bytes, overwrite: bool) -> None:
        """Refuse a replayed upload, and replacing a dataset unless ``overwrite``."""
        existing = self._index.get(ref)
        if existing is None:
            return
        if existing.upload_id == upload_id:
            raise AlreadyExistsError(f"upload {upload_id.hex()} of dataset {ref} was already stored")
        if not overwrite:
            raise AlreadyExistsError(f"dataset {ref} already exists; upload with overwrite to replace it")

    def create(
        self,
        ref: DatasetRef,
        *,
        shape: tuple[int, ...],
        ring: Ring,
        fractional_bits: int,
        magnitude_bits: int,
        grants: tuple[Grant, ...],
        upload_id: bytes,
        count: int,
        seeds: tuple[bytes, bytes] = share_files.NO_SEEDS,
        alignment: str = "",
        columns: tuple[str, ...] = (),
    ) -> PendingDataset:
        """Start an upload into memory (invisible until :meth:`publish`).

        One upload per dataset name at a time: a concurrent one is refused.
        """
        if ref in self._uploading:
            raise AlreadyExistsError(f"another upload of dataset {ref} is in progress")
        summary = DatasetSummary(
            ref, shape, ring.bits, fractional_bits, magnitude_bits, upload_id, time.time(), grants,
            alignment=alignment, columns=columns,
        )  # fmt: skip
        pending = PendingDataset(summary, ring.empty(count), ring.empty(count), seeds)
        self._uploading[ref] = pending
        return pending

    def _release(self, pending: PendingDataset) -> None:
        """Free ``pending``'s name (not a later upload's that holds it now)."""
        if self._uploading.get(pending.ref) is pending:
            del self._uploading[pending.ref]

    def _what(self, ref: DatasetRef) -> str:
        return f"dataset {ref} on {self.storage.server}"

    def write(self, pending: PendingDataset) -> Path:
        """Write the upload's file under ``tmp/`` and fsync it (blocking).

        Raises:
            DiskFullError: the disk is full (RESOURCE_EXHAUSTED naming the server).
            StorageWriteError: another I/O error. On any failure nothing is
                left under ``tmp/`` and the name is free again.
        """
        try:
            return self._write(pending)
        except BaseException as exc:
            self._release(pending)
            if isinstance(exc, share_files.WriteFailure):
                self.storage.write_failed(self._what(pending.ref), exc.os_error)
            raise

    def _write(self, pending: PendingDataset) -> Path:
        summary = pending.summary
        header = {
            "owner": summary.ref.owner,
            "name": summary.ref.name,
            "shape": list(summary.shape),
            "fractional_bits": summary.fractional_bits,
            "magnitude_bits": summary.magnitude_bits,
            "grants": [grant_to_json(g) for g in summary.initial_grants],
            "upload_id": summary.upload_id.hex(),
            "created_at": summary.created_at,
        }
        if summary.alignment:
            header["alignment"] = summary.alignment
        if summary.columns:
            header["columns"] = list(summary.columns)
        first, second, what = pending.first, pending.second, self._what(pending.ref)
        return share_files.write_temp(self._tmp, header, first, second, pending.seeds, what=what)

    def publish(self, pending: PendingDataset, temp: Path, overwrite: bool | None) -> StoredDataset:
        """Make a written upload the dataset, atomically (blocking); ``None``: see ``commit_journal``."""
        path = self._path(pending.ref)
        try:
            if overwrite is not None:
                self.check_replace(pending.ref, pending.summary.upload_id, overwrite)
            if overwrite is not None or temp.exists():
                share_files.publish(temp, path, what=self._what(pending.ref))
        except BaseException as exc:
            if overwrite is not None:
                self.discard(pending, temp)
            if isinstance(exc, share_files.WriteFailure):
                self.storage.write_failed(self._what(pending.ref), exc.os_error)
            raise
        self._release(pending)
        self.storage.write_succeeded()
        self.storage.repaired(path)
        self._index[pending.ref] = pending.summary
        dataset = pending.dataset()
        with self._lock:
            self._forget(pending.ref)
            if 0 < dataset.nbytes <= self._cache_bytes // 2:
                self._remember(dataset)  # its next job reads it from memory
        return dataset

    def hold(self, prepared: Path) -> PendingDataset:
        """Lock the name of the upload prepared in file ``prepared``, without its shares (blocking)."""
        summary = _summary(share_files.inspect(prepared).header)
        empty = ring_for_bits(summary.ring_bits).empty(0)
        self._uploading[summary.ref] = held = PendingDataset(summary, empty, empty)
        return held

    def keep(self, summary: DatasetSummary, share: ReplicatedShare, overwrite: bool) -> StoredDataset:
        """Store a job's output as a dataset (blocking): written, fsynced, published atomically."""
        if summary.ref in self._uploading:
            raise AlreadyExistsError(f"an upload of dataset {summary.ref} is in progress")
        pending = PendingDataset(summary, share.first.reshape(-1), share.second.reshape(-1))
        self._uploading[summary.ref] = pending
        temp = self.write(pending)  # frees the name if it fails
        return self.publish(pending, temp, overwrite)

    def discard(self, pending: PendingDataset, temp: Path | None = None) -> None:
        """Abandon an upload: its name is free again."""
        if temp is not None:
            temp.unlink(missing_ok=True)
        self._release(pending)

    def delete(self, ref: DatasetRef) -> None:
        """Delete a dataset's file and forget it."""
        if self._index.pop(ref, None) is None:
            raise NotFoundError(f"dataset {ref} not found")
        with self._lock:
            self._forget(ref)
        share_files.remove(self._path(ref))
        self.storage.repaired(self._path(ref))

    def _remember(self, dataset: StoredDataset) -> None:
        if (size := dataset.nbytes) > self._cache_bytes:
            return
        self._forget(dataset.ref)
        self._cache[dataset.ref] = dataset
        self._cached += size
        while self._cached > self._cache_bytes:
            self._forget(next(iter(self._cache)))

    def _forget(self, ref: DatasetRef) -> None:
        dropped = self._cache.pop(ref, None)
        if dropped is not None:
            self._cached -= dropped.nbytes
