"""Durable storage of datasets and job outputs under a server's data directory.

Layout::

    <data>/datasets/<owner>/<name>.share   one file per dataset (share_files)
    <data>/outputs/<job id>.share          one file per kept job output
    <data>/tmp/                            files being written; emptied at start

The stores keep an index rebuilt from the files at start, so everything
survives a restart, and map a file's components only while they are used.
Writes are atomic (``share_files``). Outputs live in ``output_store``.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mpc_core.errors import AlreadyExistsError, NotFoundError
from mpc_core.sharing import ReplicatedShare
from mpc_server.service import share_files
from mpc_server.service.model import DatasetRef, Grant, StoredDataset, StoredOutput

_log = logging.getLogger(__name__)
SUFFIX = ".share"


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


@dataclass
class PendingDataset:
    """An upload being written; its components are filled in place."""

    ref: DatasetRef
    shape: tuple[int, ...]
    fractional_bits: int
    grants: frozenset[Grant]
    upload_id: bytes
    file: share_files.PendingFile


class FileDatasetStore:
    """Datasets as share files under ``<data>/datasets``."""

    def __init__(self, root: Path) -> None:
        """Open (or create) the store and index every dataset file.

        Files are checked (header, size) but mapped only when a dataset is
        used, so a server with many datasets holds no file open for them.
        """
        self._dir = root / "datasets"
        self._tmp = clean_tmp(root / "tmp" / "datasets")
        self._upload_ids: dict[DatasetRef, bytes] = {}
        self._uploading: set[DatasetRef] = set()
        for path in sorted(self._dir.glob(f"*/*{SUFFIX}")):
            try:
                header = share_files.check(path)
                ref = DatasetRef(header["owner"], header["name"])
                self._upload_ids[ref] = bytes.fromhex(header["upload_id"])
            except (share_files.StorageError, KeyError, ValueError) as exc:
                _log.error("ignoring unreadable dataset file %s: %s", path, exc)

    def __len__(self) -> int:
        """Number of stored datasets."""
        return len(self._upload_ids)

    def _path(self, ref: DatasetRef) -> Path:
        return self._dir / ref.owner / f"{ref.name}{SUFFIX}"

    def _load(self, path: Path) -> StoredDataset:
        header, first, second = share_files.open_components(path)
        return StoredDataset(
            ref=DatasetRef(header["owner"], header["name"]),
            shape=tuple(header["shape"]),
            fractional_bits=header["fractional_bits"],
            grants=frozenset(Grant(receiver, program) for receiver, program in header["grants"]),
            upload_id=bytes.fromhex(header["upload_id"]),
            share=ReplicatedShare(first, second),
        )

    def get(self, ref: DatasetRef) -> StoredDataset:
        """The dataset named ``ref``, its components mapped read-only."""
        if ref not in self._upload_ids:
            raise NotFoundError(f"dataset {ref} not found")
        try:
            return self._load(self._path(ref))
        except FileNotFoundError:
            raise NotFoundError(f"dataset {ref} not found") from None

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
        fractional_bits: int,
        grants: frozenset[Grant],
        upload_id: bytes,
        count: int,
    ) -> PendingDataset:
        """Start writing a dataset's file (invisible until :meth:`commit`).

        One upload per dataset name at a time: a concurrent one is refused.
        """
        if ref in self._uploading:
            raise AlreadyExistsError(f"another upload of dataset {ref} is in progress")
        header = {
            "owner": ref.owner,
            "name": ref.name,
            "shape": list(shape),
            "fractional_bits": fractional_bits,
            "grants": sorted([g.receiver, g.program] for g in grants),
            "upload_id": upload_id.hex(),
        }
        file = share_files.create(self._tmp, self._path(ref), header, count)
        self._uploading.add(ref)
        return PendingDataset(ref, shape, fractional_bits, grants, upload_id, file)

    def discard(self, pending: PendingDataset) -> None:
        """Abandon an upload: its file goes, its name is free again."""
        pending.file.discard()
        self._uploading.discard(pending.ref)

    def commit(self, pending: PendingDataset, overwrite: bool) -> StoredDataset:
        """Publish a finished dataset atomically (blocking: call off the loop)."""
        try:
            self.check_replace(pending.ref, pending.upload_id, overwrite)
            pending.file.commit()
            dataset = self._load(pending.file.target)
            self._upload_ids[pending.ref] = pending.upload_id
        finally:
            self._uploading.discard(pending.ref)
        return dataset

    def delete(self, ref: DatasetRef) -> None:
        """Delete a dataset's file and forget it."""
        if self._upload_ids.pop(ref, None) is None:
            raise NotFoundError(f"dataset {ref} not found")
        share_files.remove(self._path(ref))
