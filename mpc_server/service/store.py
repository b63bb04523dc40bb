"""In-memory storage of datasets and job outputs.

The :class:`DatasetStore` and :class:`OutputStore` interfaces are what the
rest of the service uses; the in-memory implementations keep everything in
process memory (lost on restart).
"""

from __future__ import annotations

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


class MemoryOutputStore:
    """Outputs in a dict, keyed by job id."""

    def __init__(self) -> None:
        """Start empty."""
        self._outputs: dict[str, StoredOutput] = {}

    def get(self, job_id: str) -> StoredOutput:
        """Return the output of ``job_id``."""
        try:
            return self._outputs[job_id]
        except KeyError:
            raise NotFoundError(f"no output for job {job_id}") from None

    def put(self, output: StoredOutput) -> None:
        """Keep ``output``."""
        self._outputs[output.job_id] = output
