"""Durable storage of datasets and job outputs under a server's data directory.

Layout::

    <data>/datasets/<owner>/<name>.share   one file per dataset (share_files)
    <data>/outputs/<submitter>/<job id>/<output>.share   one file per kept job output
    <data>/tmp/                            files being written; emptied at start

The stores keep an index rebuilt from the files at start, so everything
survives a restart, and a bounded cache of recently used shares in memory.
Writes are atomic (``share_files``). Outputs live in ``output_store``.
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

from mpc_core.errors import AlreadyExistsError, NotFoundError
from mpc_core.ring import Ring, RingArray
from mpc_core.sharing import ReplicatedShare
from mpc_server.service import share_files
from mpc_server.service.grants import Grant, grant_from_json, grant_to_json
from mpc_server.service.model import DatasetRef, DatasetSummary, StoredDataset, StoredOutput

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
    )


class FileDatasetStore:
    """Datasets as share files under ``<data>/datasets``, recently used ones cached.

    The index (each dataset's summary) is rebuilt from the files' headers at
    start; a dataset's shares are read when a job needs them and kept in a
    least-recently-used cache of at most ``cache_bytes``. Reads may run in
    worker threads (one lock guards the cache).
    """

    def __init__(self, root: Path, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        """Open (or create) the store and index every dataset file."""
        self._dir = root / "datasets"
        self._tmp = clean_tmp(root / "tmp" / "datasets")
        self._index: dict[DatasetRef, DatasetSummary] = {}
        self._uploading: set[DatasetRef] = set()
        self._cache: OrderedDict[DatasetRef, StoredDataset] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._cached = 0
        self._lock = threading.Lock()
        for path in sorted(self._dir.glob(f"*/*{SUFFIX}")):
            try:
                summary = _summary(share_files.check(path))
                self._index[summary.ref] = summary
            except (share_files.StorageError, KeyError, ValueError, TypeError) as exc:
                _log.error("ignoring unreadable dataset file %s: %s", path, exc)

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
        try:
            header, first, second = share_files.read(self._path(ref))
        except FileNotFoundError:
            raise NotFoundError(f"dataset {ref} not found") from None
        dataset = StoredDataset(**vars(_summary(header)), share=ReplicatedShare(first, second))
        with self._lock:
            self._remember(dataset)
        return dataset

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
    ) -> PendingDataset:
        """Start an upload into memory (invisible until :meth:`publish`).

        One upload per dataset name at a time: a concurrent one is refused.
        """
        if ref in self._uploading:
            raise AlreadyExistsError(f"another upload of dataset {ref} is in progress")
        summary = DatasetSummary(
            ref, shape, ring.bits, fractional_bits, magnitude_bits, upload_id, time.time(), grants
        )
        self._uploading.add(ref)
        return PendingDataset(summary, ring.empty(count), ring.empty(count), seeds)

    def write(self, pending: PendingDataset) -> Path:
        """Write the upload's file under ``tmp/`` and fsync it (blocking)."""
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
        return share_files.write_temp(self._tmp, header, pending.first, pending.second, pending.seeds)

    def publish(self, pending: PendingDataset, temp: Path, overwrite: bool) -> StoredDataset:
        """Make a written upload the dataset, atomically (blocking)."""
        try:
            self.check_replace(pending.ref, pending.summary.upload_id, overwrite)
            share_files.publish(temp, self._path(pending.ref))
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        finally:
            self._uploading.discard(pending.ref)
        self._index[pending.ref] = pending.summary
        dataset = pending.dataset()
        with self._lock:
            self._forget(pending.ref)
            self._remember(dataset)
        return dataset

    def keep(self, summary: DatasetSummary, share: ReplicatedShare, overwrite: bool) -> StoredDataset:
        """Store a job's output as a dataset (blocking): written, fsynced, published atomically."""
        if summary.ref in self._uploading:
            raise AlreadyExistsError(f"an upload of dataset {summary.ref} is in progress")
        self._uploading.add(summary.ref)
        pending = PendingDataset(summary, share.first.reshape(-1), share.second.reshape(-1))
        try:
            temp = self.write(pending)
        except BaseException:
            self._uploading.discard(summary.ref)
            raise
        return self.publish(pending, temp, overwrite)

    def discard(self, pending: PendingDataset, temp: Path | None = None) -> None:
        """Abandon an upload: its name is free again."""
        if temp is not None:
            temp.unlink(missing_ok=True)
        self._uploading.discard(pending.ref)

    def delete(self, ref: DatasetRef) -> None:
        """Delete a dataset's file and forget it."""
        if self._index.pop(ref, None) is None:
            raise NotFoundError(f"dataset {ref} not found")
        with self._lock:
            self._forget(ref)
        share_files.remove(self._path(ref))

    def _remember(self, dataset: StoredDataset) -> None:
        size = dataset.share.first.nbytes + dataset.share.second.nbytes
        if size > self._cache_bytes:
            return
        self._forget(dataset.ref)
        self._cache[dataset.ref] = dataset
        self._cached += size
        while self._cached > self._cache_bytes:
            self._forget(next(iter(self._cache)))

    def _forget(self, ref: DatasetRef) -> None:
        dropped = self._cache.pop(ref, None)
        if dropped is not None:
            self._cached -= dropped.share.first.nbytes + dropped.share.second.nbytes
