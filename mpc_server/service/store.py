"""Durable storage of datasets and job outputs under a server's data directory.

Layout::

    <data>/datasets/<owner>/<name>.share   one file per dataset (share_files)
    <data>/outputs/<job id>.share          one file per kept job output
    <data>/tmp/                            files being written; emptied at start

Both stores keep an in-memory index of headers and read-only mapped
components, rebuilt from the files at start, so everything survives a
restart. Writes are atomic (``share_files``). Outputs are kept within an
:class:`OutputRetention` policy: released by their receiver, older than the
maximum age, or beyond the byte cap (oldest first) and they are deleted.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mpc_core.errors import AlreadyExistsError, NotFoundError
from mpc_core.ring import RingArray
from mpc_core.sharing import ReplicatedShare
from mpc_server.service import share_files
from mpc_server.service.model import DatasetRef, Grant, OutputInfo, StoredDataset, StoredOutput

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


def _clean_tmp(tmp: Path) -> Path:
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
        """Open (or create) the store and load every dataset's index entry."""
        self._dir = root / "datasets"
        self._tmp = _clean_tmp(root / "tmp" / "datasets")
        self._datasets: dict[DatasetRef, StoredDataset] = {}
        for path in sorted(self._dir.glob(f"*/*{SUFFIX}")):
            try:
                dataset = self._load(path)
            except (share_files.StorageError, KeyError, ValueError) as exc:
                _log.error("ignoring unreadable dataset file %s: %s", path, exc)
                continue
            self._datasets[dataset.ref] = dataset

    def __len__(self) -> int:
        """Number of stored datasets."""
        return len(self._datasets)

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
        """Return the dataset named ``ref``."""
        try:
            return self._datasets[ref]
        except KeyError:
            raise NotFoundError(f"dataset {ref} not found") from None

    def check_replace(self, ref: DatasetRef, upload_id: bytes, overwrite: bool) -> None:
        """Refuse a replayed upload, and replacing a dataset unless ``overwrite``."""
        existing = self._datasets.get(ref)
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
        fractional_bits: int,
        grants: frozenset[Grant],
        upload_id: bytes,
        count: int,
    ) -> PendingDataset:
        """Start writing a dataset's file (invisible until :meth:`commit`)."""
        header = {
            "owner": ref.owner,
            "name": ref.name,
            "shape": list(shape),
            "fractional_bits": fractional_bits,
            "grants": sorted([g.receiver, g.program] for g in grants),
            "upload_id": upload_id.hex(),
        }
        file = share_files.create(self._tmp, self._path(ref), header, count)
        return PendingDataset(ref, shape, fractional_bits, grants, upload_id, file)

    def commit(self, pending: PendingDataset, overwrite: bool) -> StoredDataset:
        """Publish a finished dataset atomically (blocking: call off the loop)."""
        self.check_replace(pending.ref, pending.upload_id, overwrite)
        pending.file.commit()
        dataset = self._load(pending.file.target)
        self._datasets[pending.ref] = dataset
        return dataset

    def delete(self, ref: DatasetRef) -> None:
        """Delete a dataset's file and forget it."""
        if self._datasets.pop(ref, None) is None:
            raise NotFoundError(f"dataset {ref} not found")
        share_files.remove(self._path(ref))


@dataclass(frozen=True)
class OutputRetention:
    """How long and how much output a server keeps for receivers."""

    max_age_seconds: float = 3600.0
    max_bytes: int = 2 << 30


class FileOutputStore:
    """Job outputs as share files under ``<data>/outputs``, within a retention policy."""

    def __init__(
        self,
        root: Path,
        retention: OutputRetention = OutputRetention(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Open (or create) the store and load the kept outputs, oldest first."""
        self._dir = root / "outputs"
        self._tmp = _clean_tmp(root / "tmp" / "outputs")
        self._dir.mkdir(parents=True, exist_ok=True)
        self.retention = retention
        self._clock = clock
        self._outputs: OrderedDict[str, tuple[float, StoredOutput]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        loaded = []
        for path in self._dir.glob(f"*{SUFFIX}"):
            try:
                loaded.append(self._load(path))
            except (share_files.StorageError, KeyError, ValueError) as exc:
                _log.error("ignoring unreadable output file %s: %s", path, exc)
        for created, output in sorted(loaded, key=lambda item: item[0]):
            self._index(output, created)
        self.expire()

    @property
    def stored_bytes(self) -> int:
        """Bytes of output shares currently kept."""
        return self._bytes

    def _load(self, path: Path) -> tuple[float, StoredOutput]:
        header, first, second = share_files.open_components(path)
        info = OutputInfo(tuple(header["shape"]), header["fractional_bits"])
        output = StoredOutput(
            header["job_id"],
            header["receiver"],
            info,
            ReplicatedShare(first, second),
            bytes.fromhex(header["digest"]),
        )
        return float(header["created"]), output

    def _index(self, output: StoredOutput, created: float) -> None:
        self._outputs[output.job_id] = (created, output)
        self._bytes += _nbytes(output)

    def get(self, job_id: str) -> StoredOutput:
        """Return the output of ``job_id``."""
        self.expire()
        try:
            return self._outputs[job_id][1]
        except KeyError:
            raise NotFoundError(
                f"no output for job {job_id} (never computed here, released or expired)"
            ) from None

    def put(self, output: StoredOutput, *, durable: bool = True) -> None:
        """Keep ``output``, then evict the oldest outputs beyond the byte cap.

        The file is written before it is indexed; with ``durable=False`` it is
        kept in memory only until :meth:`persist` writes it.
        """
        created = self._clock()
        temp = (
            share_files.write_temp(self._tmp, self._header(output, created), *_components(output))
            if durable
            else None
        )
        with self._lock:
            if temp is not None:
                share_files.publish(temp, self._path(output.job_id))
            self._unindex(output.job_id)
            self._index(output, created)
        while self._bytes > self.retention.max_bytes and len(self._outputs) > 1:
            self.delete(next(iter(self._outputs)))

    def persist(self, job_id: str) -> None:
        """Write a kept output's file unless it was dropped meanwhile (blocking)."""
        with self._lock:
            entry = self._outputs.get(job_id)
        if entry is None:
            return
        temp = share_files.write_temp(self._tmp, self._header(entry[1], entry[0]), *_components(entry[1]))
        with self._lock:
            if self._outputs.get(job_id) is entry:
                share_files.publish(temp, self._path(job_id))
                return
        temp.unlink(missing_ok=True)

    def delete(self, job_id: str) -> None:
        """Drop the output of ``job_id`` and its file, if kept."""
        with self._lock:
            if self._unindex(job_id):
                share_files.remove(self._path(job_id))

    def _unindex(self, job_id: str) -> bool:
        entry = self._outputs.pop(job_id, None)
        if entry is not None:
            self._bytes -= _nbytes(entry[1])
        return entry is not None

    def _path(self, job_id: str) -> Path:
        return self._dir / f"{job_id}{SUFFIX}"

    @staticmethod
    def _header(output: StoredOutput, created: float) -> dict[str, object]:
        return {
            "job_id": output.job_id,
            "receiver": output.receiver,
            "shape": list(output.info.shape),
            "fractional_bits": output.info.fractional_bits,
            "digest": output.job_digest.hex(),
            "created": created,
        }

    def expire(self) -> int:
        """Drop outputs older than the retention age; returns how many."""
        cutoff = self._clock() - self.retention.max_age_seconds
        old = [job_id for job_id, (created, _) in self._outputs.items() if created < cutoff]
        for job_id in old:
            self.delete(job_id)
        return len(old)


def _components(output: StoredOutput) -> tuple[RingArray, RingArray]:
    return output.share.first, output.share.second


def _nbytes(output: StoredOutput) -> int:
    return int(output.share.first.nbytes + output.share.second.nbytes)
