"""Durable storage of datasets and job outputs under a server's data directory.

Layout::

    <data>/datasets/<owner>/<name>.share   one file per dataset (share_files)
    <data>/outputs/<job id>.share          one file per kept job output
    <data>/tmp/                            files being written; emptied at start

The stores keep an index rebuilt from the files at start, so everything
survives a restart, and a bounded cache of recently used shares in memory.
Writes are atomic (``share_files``). Outputs live in ``output_store``.
"""

from __future__ import annotations

import logging
import shutil
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mpc_core.errors import AlreadyExistsError, NotFoundError
from mpc_core.ring import Ring, RingArray
from mpc_core.sharing import ReplicatedShare
from mpc_server.service import share_files
from mpc_server.service.model import DatasetRef, Grant, StoredDataset, StoredOutput

_log = logging.getLogger(__name__)
SUFFIX = ".share"
DEFAULT_CACHE_BYTES = 512 << 20


class DatasetStore(Protocol):
    """Where a server keeps its shares of uploaded datasets."""

    def get(self, ref: DatasetRef) -> StoredDataset:
        """Return the dataset or raise :class:`NotFoundError`."""
        ...


class OutputStore(Protocol):
    """Where a server keeps its shares of job outputs until fetched."""

    def get(self, job_id: str) -> StoredOutput:
        """Return the output or raise :class:`NotFoundError`."""
        ...

    def put(self, output: StoredOutput, *, durable: bool = True) -> None:
        """Keep an output for its receiver (durably unless told otherwise)."""
        ...

    def persist(self, job_id: str) -> None:
        """Make a kept output durable (after ``put(durable=False)``)."""
        ...

    def delete(self, job_id: str) -> None:
        """Drop an output (no error if absent)."""
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

    ref: DatasetRef
    shape: tuple[int, ...]
    fractional_bits: int
    magnitude_bits: int
    grants: frozenset[Grant]
    upload_id: bytes
    first: RingArray
    second: RingArray
    seeds: tuple[bytes, bytes] = share_files.NO_SEEDS
    """Seeds the components were expanded from (stored instead of them)."""

    def dataset(self) -> StoredDataset:
        """The dataset this upload becomes."""
        share = ReplicatedShare(self.first, self.second)
        return StoredDataset(
            self.ref,
            self.shape,
            self.fractional_bits,
            self.grants,
            self.upload_id,
            share,
            self.magnitude_bits,
        )


class FileDatasetStore:
    """Datasets as share files under ``<data>/datasets``, recently used ones cached.

    The index (name to upload id) is rebuilt from the files at start; a
    dataset's shares are read when a job needs them and kept in a
    least-recently-used cache of at most ``cache_bytes``.
    """

    def __init__(self, root: Path, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        """Open (or create) the store and index every dataset file."""
        self._dir = root / "datasets"
        self._tmp = clean_tmp(root / "tmp" / "datasets")
        self._upload_ids: dict[DatasetRef, bytes] = {}
        self._uploading: set[DatasetRef] = set()
        self._cache: OrderedDict[DatasetRef, StoredDataset] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._cached = 0
        for path in sorted(self._dir.glob(f"*/*{SUFFIX}")):
            try:
                header = share_files.check(path)
                self._upload_ids[DatasetRef(header["owner"], header["name"])] = bytes.fromhex(
                    header["upload_id"]
                )
            except (share_files.StorageError, KeyError, ValueError) as exc:
                _log.error("ignoring unreadable dataset file %s: %s", path, exc)

    def __len__(self) -> int:
        """Number of stored datasets."""
        return len(self._upload_ids)

    def _path(self, ref: DatasetRef) -> Path:
        return self._dir / ref.owner / f"{ref.name}{SUFFIX}"

    def get(self, ref: DatasetRef) -> StoredDataset:
        """The dataset named ``ref`` (from the cache, else read from its file)."""
        if ref not in self._upload_ids:
            raise NotFoundError(f"dataset {ref} not found")
        cached = self._cache.get(ref)
        if cached is not None:
            self._cache.move_to_end(ref)
            return cached
        try:
            header, first, second = share_files.read(self._path(ref))
        except FileNotFoundError:
            raise NotFoundError(f"dataset {ref} not found") from None
        magnitude = header.get("magnitude_bits")
        dataset = StoredDataset(
            ref=ref,
            shape=tuple(header["shape"]),
            fractional_bits=header["fractional_bits"],
            grants=frozenset(Grant(receiver, program) for receiver, program in header["grants"]),
            upload_id=bytes.fromhex(header["upload_id"]),
            share=ReplicatedShare(first, second),
            magnitude_bits=None if magnitude is None else int(magnitude),
        )
        self._remember(dataset)
        return dataset

    def check_replace(self, ref: DatasetRef, upload_id: bytes, overwrite: bool) -> None:
        """Refuse a replayed upload, and replacing a dataset unless ``overwrite``."""
        existing = self._upload_ids.get(ref)
        if existing is None:
            return
        if existing == upload_id:
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
        grants: frozenset[Grant],
        upload_id: bytes,
        count: int,
        seeds: tuple[bytes, bytes] = share_files.NO_SEEDS,
    ) -> PendingDataset:
        """Start an upload into memory (invisible until :meth:`publish`).

        One upload per dataset name at a time: a concurrent one is refused.
        """
        if ref in self._uploading:
            raise AlreadyExistsError(f"another upload of dataset {ref} is in progress")
        first, second = ring.empty(count), ring.empty(count)
        self._uploading.add(ref)
        return PendingDataset(
            ref, shape, fractional_bits, magnitude_bits, grants, upload_id, first, second, seeds
        )

    def write(self, pending: PendingDataset) -> Path:
        """Write the upload's file under ``tmp/`` and fsync it (blocking)."""
        header = {
            "owner": pending.ref.owner,
            "name": pending.ref.name,
            "shape": list(pending.shape),
            "fractional_bits": pending.fractional_bits,
            "magnitude_bits": pending.magnitude_bits,
            "grants": sorted([g.receiver, g.program] for g in pending.grants),
            "upload_id": pending.upload_id.hex(),
        }
        return share_files.write_temp(self._tmp, header, pending.first, pending.second, pending.seeds)

    def publish(self, pending: PendingDataset, temp: Path, overwrite: bool) -> StoredDataset:
        """Make a written upload the dataset, atomically (blocking)."""
        try:
            self.check_replace(pending.ref, pending.upload_id, overwrite)
            share_files.publish(temp, self._path(pending.ref))
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        finally:
            self._uploading.discard(pending.ref)
        self._upload_ids[pending.ref] = pending.upload_id
        self._forget(pending.ref)
        dataset = pending.dataset()
        self._remember(dataset)
        return dataset

    def discard(self, pending: PendingDataset, temp: Path | None = None) -> None:
        """Abandon an upload: its name is free again."""
        if temp is not None:
            temp.unlink(missing_ok=True)
        self._uploading.discard(pending.ref)

    def delete(self, ref: DatasetRef) -> None:
        """Delete a dataset's file and forget it."""
        if self._upload_ids.pop(ref, None) is None:
            raise NotFoundError(f"dataset {ref} not found")
        self._forget(ref)
        share_files.remove(self._path(ref))

    def _remember(self, dataset: StoredDataset) -> None:
        size = dataset.share.first.nbytes + dataset.share.second.nbytes
        if size > self._cache_bytes:
            return
        self._cache[dataset.ref] = dataset
        self._cached += size
        while self._cached > self._cache_bytes:
            self._forget(next(iter(self._cache)))

    def _forget(self, ref: DatasetRef) -> None:
        dropped = self._cache.pop(ref, None)
        if dropped is not None:
            self._cached -= dropped.share.first.nbytes + dropped.share.second.nbytes
