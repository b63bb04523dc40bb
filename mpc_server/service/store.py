"""In-memory storage of datasets and job outputs.

The :class:`DatasetStore` and :class:`OutputStore` interfaces are what the
rest of the service uses; the in-memory implementations keep everything in
process memory (lost on restart).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from mpc_core.errors import AlreadyExistsError, NotFoundError
from mpc_server.service.model import DatasetRef, StoredDataset, StoredOutput


class DatasetStore(Protocol):
    """Where a server keeps its shares of uploaded datasets."""

    def get(self, ref: DatasetRef) -> StoredDataset:
        """Return the dataset or raise :class:`NotFoundError`."""
        ...

    def put(self, dataset: StoredDataset, overwrite: bool) -> None:
        """Store a complete dataset (all or nothing)."""
        ...


class OutputStore(Protocol):
    """Where a server keeps its shares of job outputs until fetched."""

    def get(self, job_id: str) -> StoredOutput:
        """Return the output or raise :class:`NotFoundError`."""
        ...

    def put(self, output: StoredOutput) -> None:
        """Keep an output for its receiver."""
        ...

    def delete(self, job_id: str) -> None:
        """Drop an output (no error if absent)."""
        ...


class MemoryDatasetStore:
    """Datasets in a dict, keyed by owner and name."""

    def __init__(self) -> None:
        """Start empty."""
        self._datasets: dict[DatasetRef, StoredDataset] = {}

    def get(self, ref: DatasetRef) -> StoredDataset:
        """Return the dataset named ``ref``."""
        try:
            return self._datasets[ref]
        except KeyError:
            raise NotFoundError(f"dataset {ref} not found") from None

    def put(self, dataset: StoredDataset, overwrite: bool) -> None:
        """Store ``dataset``; refuse to replace one unless ``overwrite``."""
        existing = self._datasets.get(dataset.ref)
        if existing is not None and not overwrite and existing.upload_id != dataset.upload_id:
            raise AlreadyExistsError(
                f"dataset {dataset.ref} already exists; upload with overwrite to replace it"
            )
        self._datasets[dataset.ref] = dataset

    def __len__(self) -> int:
        """Number of stored datasets."""
        return len(self._datasets)


@dataclass(frozen=True)
class OutputRetention:
    """How long and how much output a server keeps for receivers."""

    max_age_seconds: float = 3600.0
    max_bytes: int = 2 << 30


class MemoryOutputStore:
    """Outputs in insertion order, keyed by job id, within a retention policy.

    An output is dropped when its receiver releases it, when it is older
    than ``max_age_seconds``, or (oldest first) when keeping it would exceed
    ``max_bytes`` in all; a later fetch then gets NOT_FOUND.
    """

    def __init__(
        self, retention: OutputRetention = OutputRetention(), clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Start empty."""
        self.retention = retention
        self._clock = clock
        self._outputs: OrderedDict[str, tuple[float, StoredOutput]] = OrderedDict()
        self._bytes = 0

    @property
    def stored_bytes(self) -> int:
        """Bytes of output shares currently kept."""
        return self._bytes

    def get(self, job_id: str) -> StoredOutput:
        """Return the output of ``job_id``."""
        self.expire()
        try:
            return self._outputs[job_id][1]
        except KeyError:
            raise NotFoundError(
                f"no output for job {job_id} (never computed here, released or expired)"
            ) from None

    def put(self, output: StoredOutput) -> None:
        """Keep ``output``, evicting the oldest outputs beyond the byte limit."""
        self.delete(output.job_id)
        self._outputs[output.job_id] = (self._clock(), output)
        self._bytes += _nbytes(output)
        while self._bytes > self.retention.max_bytes and len(self._outputs) > 1:
            self.delete(next(iter(self._outputs)))

    def delete(self, job_id: str) -> None:
        """Drop the output of ``job_id`` if kept."""
        entry = self._outputs.pop(job_id, None)
        if entry is not None:
            self._bytes -= _nbytes(entry[1])

    def expire(self) -> int:
        """Drop outputs older than the retention age; returns how many."""
        cutoff = self._clock() - self.retention.max_age_seconds
        old = [job_id for job_id, (created, _) in self._outputs.items() if created < cutoff]
        for job_id in old:
            self.delete(job_id)
        return len(old)


def _nbytes(output: StoredOutput) -> int:
    return int(output.share.first.nbytes + output.share.second.nbytes)
