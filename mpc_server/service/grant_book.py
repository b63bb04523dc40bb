"""The grants a server holds now: initial grants, added and revoked ones, uses spent.

The one owner of the grant lifecycle on a server. A dataset's upload carries
its initial grants (in the share file's header, immutable); owners then add
and revoke grants without re-uploading, and jobs spend uses of limited
grants. The book keeps, per dataset, the version (upload id) its state
belongs to, the grants and the uses, in ``<data>/grants/<owner>/<name>.json``,
written atomically (temporary file, fsync, rename). A new version of a
dataset starts from its upload's grants again: grants apply to one version
of the data.

Uses are reserved when a job is planned (so that concurrent jobs cannot
overspend a limit) and either committed once the servers agreed to run it
or released. Committed uses of limited grants are durable before the job
computes. All methods run on the event loop's thread except the ``*_durably``
writes, which callers run in a worker thread.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mpc_core.errors import NotFoundError
from mpc_server.service import share_files
from mpc_server.service.grants import Grant, grant_from_json, grant_to_json
from mpc_server.service.model import DatasetRef, DatasetSummary

FORMAT_VERSION = 1


@dataclass
class _Entry:
    upload_id: bytes
    grants: dict[bytes, Grant]
    uses: dict[bytes, int] = field(default_factory=dict)
    reserved: dict[bytes, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Reservation:
    """Uses reserved for one job (released or committed exactly once)."""

    spent: tuple[tuple[DatasetRef, bytes], ...]


class GrantBook:
    """Grants and uses of every dataset on one server."""

    def __init__(self, root: Path) -> None:
        """Load the saved grant states under ``<root>/grants``."""
        self._dir = root / "grants"
        self._tmp = root / "tmp" / "grants"
        self._entries: dict[DatasetRef, _Entry] = {}
        for path in sorted(self._dir.glob("*/*.json")):
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text())
            upload_id = bytes.fromhex(data["upload_id"])
            ref = DatasetRef(path.parent.name, path.stem)
            grants = [grant_from_json(item, upload_id) for item in data["grants"]]
            uses = {bytes.fromhex(k): int(v) for k, v in data["uses"].items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise share_files.StorageError(f"unreadable grant file {path}: {exc}") from None
        self._entries[ref] = _Entry(upload_id, {g.grant_id: g for g in grants}, uses)

    def _entry(self, dataset: DatasetSummary) -> _Entry:
        entry = self._entries.get(dataset.ref)
        if entry is None or entry.upload_id != dataset.upload_id:  # a new version: its upload's grants
            grants = {g.grant_id: g for g in dataset.initial_grants}
            entry = self._entries[dataset.ref] = _Entry(dataset.upload_id, grants)
        return entry

    def grants(self, dataset: DatasetSummary) -> tuple[Grant, ...]:
        """The grants the dataset's current version holds, in a stable order."""
        entry = self._entry(dataset)
        return tuple(sorted(entry.grants.values(), key=lambda g: g.grant_id))

    def uses(self, dataset: DatasetSummary, grant_id: bytes) -> int:
        """Uses spent or reserved under ``grant_id``."""
        entry = self._entry(dataset)
        return entry.uses.get(grant_id, 0) + entry.reserved.get(grant_id, 0)

    def spent(self, dataset: DatasetSummary, grant_id: bytes) -> int:
        """Uses spent (committed) under ``grant_id``."""
        return self._entry(dataset).uses.get(grant_id, 0)

    def add(self, dataset: DatasetSummary, grant: Grant) -> None:
        """Add a grant (in memory; then :meth:`save_durably`). Re-adding the same grant is a no-op."""
        self._entry(dataset).grants[grant.grant_id] = grant

    def revoke(self, dataset: DatasetSummary, grant_id: bytes) -> None:
        """Revoke a grant: no job may use it from now on.

        Raises:
            NotFoundError: the dataset has no such grant.
        """
        if self._entry(dataset).grants.pop(grant_id, None) is None:
            raise NotFoundError(f"dataset {dataset.ref} has no grant {grant_id.hex()}")

    def reserve(self, uses: Sequence[tuple[DatasetSummary, Grant]]) -> Reservation:
        """Reserve one use of each (dataset, grant) for a job being planned."""
        for dataset, grant in uses:
            entry = self._entry(dataset)
            entry.reserved[grant.grant_id] = entry.reserved.get(grant.grant_id, 0) + 1
        return Reservation(tuple((dataset.ref, grant.grant_id) for dataset, grant in uses))

    def release(self, reservation: Reservation) -> None:
        """Give back a reservation's uses (the job did not run)."""
        for ref, grant_id in reservation.spent:
            entry = self._entries.get(ref)
            if entry is not None and entry.reserved.get(grant_id, 0) > 0:
                entry.reserved[grant_id] -= 1

    def commit(self, reservation: Reservation) -> list[DatasetRef]:
        """Turn a reservation into spent uses; returns the datasets whose file must be saved."""
        changed = []
        for ref, grant_id in reservation.spent:
            entry = self._entries.get(ref)
            if entry is None or entry.reserved.get(grant_id, 0) <= 0:
                continue
            entry.reserved[grant_id] -= 1
            entry.uses[grant_id] = entry.uses.get(grant_id, 0) + 1
            grant = entry.grants.get(grant_id)
            if grant is not None and grant.max_uses:
                changed.append(ref)
        return changed

    def snapshot(self, ref: DatasetRef) -> dict[str, object] | None:
        """The JSON state of ``ref`` to save, taken on the event loop's thread."""
        entry = self._entries.get(ref)
        if entry is None:
            return None
        return {
            "version": FORMAT_VERSION,
            "upload_id": entry.upload_id.hex(),
            "grants": [grant_to_json(g) for g in sorted(entry.grants.values(), key=lambda g: g.grant_id)],
            "uses": {k.hex(): v for k, v in sorted(entry.uses.items())},
        }

    def save_durably(self, ref: DatasetRef, state: dict[str, object] | None) -> None:
        """Write a snapshot atomically and fsync it (blocking: run in a worker thread)."""
        target = self._dir / ref.owner / f"{ref.name}.json"
        if state is None:
            share_files.remove(target)
            return
        self._tmp.mkdir(parents=True, exist_ok=True)
        temp = self._tmp / f"{secrets.token_hex(8)}.part"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(state, handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        share_files.publish(temp, target)

    def forget(self, ref: DatasetRef) -> None:
        """Drop a deleted dataset's grants (then save ``None`` durably)."""
        self._entries.pop(ref, None)
