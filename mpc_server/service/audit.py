"""The audit trail: every job that read a dataset, kept append-only for its owner.

Each server writes, for every job it ran (after the three servers agreed on
it), one record: job id, submitter, receiver, program, every input with its
version and the grant that allowed it, start and end time, outcome. The
record goes to the audit file of every owner whose data the job read
(``<data>/audit/<owner>.jsonl``) and to the job files of its submitter and
receiver (``<data>/jobs/<identity>.jsonl``), one JSON line each, opened in
append mode. A record is written and flushed to the operating system before
the job's answer leaves the server, and fsynced within about a second (a
background batch, so that jobs do not wait for the disk): a killed process
loses nothing, a power loss at most the last second.

Owners read their datasets' records (``trail``), clients their jobs
(``jobs``); the SDK asks all three servers and reports any disagreement.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mpc_server.service.model import DatasetRef
from mpc_server.service.programs.params import ParamValue, params_from_json, params_to_json

MAX_RECORDS = 10_000
"""Most records one listing returns (the newest)."""


@dataclass(frozen=True)
class AuditInput:
    """One input of an audited job: role, dataset, version, the grant that allowed it."""

    role: str
    dataset: DatasetRef
    upload_id: bytes
    grant_id: bytes
    columns: tuple[str, ...] = ()
    """The columns the job selected (empty: all)."""


@dataclass(frozen=True)
class KeptOutput:
    """An output a job kept on the servers as a dataset, with its version."""

    output: str
    dataset: DatasetRef
    upload_id: bytes


@dataclass(frozen=True)
class JobRecord:
    """What a server did for one job."""

    job_id: str
    submitter: str
    receiver: str
    program: str
    inputs: tuple[AuditInput, ...]
    started_at: float
    finished_at: float = 0.0
    status: str = "RUNNING"
    """``OK``, ``RUNNING``, or the gRPC status name of the job's error."""
    error: str = ""
    parameters: tuple[tuple[str, ParamValue], ...] = ()
    kept: tuple[KeptOutput, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """One line of an audit or job file."""
        return {
            "job_id": self.job_id,
            "submitter": self.submitter,
            "receiver": self.receiver,
            "program": self.program,
            "inputs": [
                [
                    i.role,
                    i.dataset.owner,
                    i.dataset.name,
                    i.upload_id.hex(),
                    i.grant_id.hex(),
                    list(i.columns),
                ]
                for i in self.inputs
            ],
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "status": self.status,
            "error": self.error,
            "parameters": params_to_json(dict(self.parameters)),
            "kept": [[k.output, k.dataset.owner, k.dataset.name, k.upload_id.hex()] for k in self.kept],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobRecord:
        """The inverse of :meth:`to_json`."""
        inputs = tuple(
            AuditInput(
                item[0],
                DatasetRef(item[1], item[2]),
                bytes.fromhex(item[3]),
                bytes.fromhex(item[4]),
                tuple(item[5]) if len(item) > 5 else (),
            )
            for item in data["inputs"]
        )
        return cls(
            data["job_id"],
            data["submitter"],
            data["receiver"],
            data["program"],
            inputs,
            float(data["started_at"]),
            float(data["finished_at"]),
            data["status"],
            data["error"],
            tuple(sorted(params_from_json(data.get("parameters", [])).items())),
            tuple(
                KeptOutput(output, DatasetRef(owner, name), bytes.fromhex(version))
                for output, owner, name, version in data.get("kept", [])
            ),
        )


class AuditLog:
    """The append-only audit and job files of one server."""

    def __init__(self, root: Path, sync_delay: float = 1.0) -> None:
        """Keep files under ``<root>/audit`` and ``<root>/jobs``."""
        self._audit = root / "audit"
        self._jobs = root / "jobs"
        self._open: dict[Path, IO[str]] = {}
        self._dirty: set[Path] = set()
        self._sync_delay = sync_delay
        self._syncing: asyncio.Task[None] | None = None

    def append(self, record: JobRecord) -> None:
        """Write ``record`` to every file it belongs in, flushed (fsynced soon, :meth:`sync_soon`)."""
        line = json.dumps(record.to_json(), sort_keys=True) + "\n"
        owners = {i.dataset.owner for i in record.inputs}
        paths = [self._audit / f"{owner}.jsonl" for owner in sorted(owners)]
        paths += [self._jobs / f"{who}.jsonl" for who in sorted({record.submitter, record.receiver})]
        for path in paths:
            handle = self._handle(path)
            handle.write(line)
            handle.flush()
            self._dirty.add(path)

    def _handle(self, path: Path) -> IO[str]:
        handle = self._open.get(path)
        if handle is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            handle = self._open[path] = os.fdopen(fd, "a")
        return handle

    def sync_soon(self) -> None:
        """Fsync the files written since the last sync, in about :attr:`sync_delay` seconds."""
        if self._dirty and (self._syncing is None or self._syncing.done()):
            self._syncing = asyncio.create_task(self._sync_later())

    async def _sync_later(self) -> None:
        await asyncio.sleep(self._sync_delay)
        await self.sync()

    async def sync(self) -> None:
        """Fsync every file written since the last sync (at shutdown too)."""
        dirty, self._dirty = self._dirty, set()
        handles = [self._open[path] for path in dirty if path in self._open]
        await asyncio.to_thread(_fsync_all, handles)

    def trail(self, owner: str, name: str = "", limit: int = MAX_RECORDS) -> list[JobRecord]:
        """The newest records of jobs that read ``owner``'s datasets (one dataset if ``name``)."""
        records = _read(self._audit / f"{owner}.jsonl")
        if name:
            ref = DatasetRef(owner, name)
            records = [r for r in records if any(i.dataset == ref for i in r.inputs)]
        return records[-limit:]

    def jobs(self, identity: str, limit: int = MAX_RECORDS) -> list[JobRecord]:
        """The newest records of jobs ``identity`` submitted or receives."""
        return _read(self._jobs / f"{identity}.jsonl")[-limit:]

    def close(self) -> None:
        """Close every file (after a final :meth:`sync`); a pending background sync is cancelled."""
        if self._syncing is not None:
            self._syncing.cancel()
            self._syncing = None
        for handle in self._open.values():
            handle.close()
        self._open.clear()


def _fsync_all(handles: Iterable[IO[str]]) -> None:
    for handle in handles:
        os.fsync(handle.fileno())


def _read(path: Path) -> list[JobRecord]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    records = []
    for line in lines:
        try:
            records.append(JobRecord.from_json(json.loads(line)))
        except (ValueError, KeyError, TypeError):
            continue  # a line cut by a crash mid-write: the rest of the file is intact
    return records
