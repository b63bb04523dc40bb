"""What a client may see and change of its own data: datasets, grants, jobs, audit trail.

Every call acts on the caller's own datasets only (the owner is the caller's
certificate identity), so no client learns anything here about another's
data. Grant changes are made on each server separately (the client sends
them to all three); the servers then compare the grants a job uses in their
job agreement, so a change that reached only some servers makes jobs under
it fail rather than run under two different consents.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from mpc_core.errors import AlreadyExistsError
from mpc_server.service.audit import MAX_RECORDS, AuditLog, JobRecord
from mpc_server.service.grant_book import GrantBook
from mpc_server.service.grants import Grant, check_grants
from mpc_server.service.model import DatasetRef, DatasetSummary
from mpc_server.service.store import FileDatasetStore


class Catalog:
    """The owner-facing views and grant changes of one server."""

    def __init__(
        self,
        datasets: FileDatasetStore,
        grants: GrantBook,
        audit: AuditLog,
        programs: Collection[str],
        max_grants: int = 256,
    ) -> None:
        """Serve from the dataset store, the grant book and the audit log."""
        self._datasets = datasets
        self._grants = grants
        self._audit = audit
        self._programs = programs
        self._max_grants = max_grants

    def datasets(self, owner: str) -> list[tuple[DatasetSummary, list[tuple[Grant, int]]]]:
        """The owner's datasets, each with its current grants and their spent uses."""
        listing = []
        for summary in self._datasets.owned_by(owner):
            grants = self._grants.grants(summary)
            listing.append((summary, [(g, self._grants.spent(summary, g.grant_id)) for g in grants]))
        return listing

    async def add_grant(self, owner: str, name: str, grant: Grant) -> None:
        """Add ``grant`` to the owner's dataset ``name`` (durably before answering).

        Raises:
            NotFoundError: the owner has no such dataset.
            AlreadyExistsError: another grant has this id.
            InvalidArgumentError: the grant names an unknown program or is malformed.
        """
        summary = self._datasets.summary(DatasetRef(owner, name))
        current = {g.grant_id: g for g in self._grants.grants(summary)}
        existing = current.get(grant.grant_id)
        if existing is not None and existing != grant:
            raise AlreadyExistsError(f"{grant.label} of {summary.ref} exists with other terms")
        check_grants([*current.values(), grant] if existing is None else list(current.values()),
                     self._programs, summary.ref, self._max_grants)  # fmt: skip
        self._grants.add(summary, grant)
        await self._save(summary.ref)

    async def revoke_grant(self, owner: str, name: str, grant_id: bytes) -> None:
        """Revoke a grant of the owner's dataset ``name``: no later job may use it."""
        summary = self._datasets.summary(DatasetRef(owner, name))
        self._grants.revoke(summary, grant_id)
        await self._save(summary.ref)

    async def _save(self, ref: DatasetRef) -> None:
        state = self._grants.snapshot(ref)
        await asyncio.to_thread(self._grants.save_durably, ref, state)

    def audit_trail(self, owner: str, name: str = "", limit: int = 0) -> list[JobRecord]:
        """Every job that read the owner's datasets (one dataset if ``name``), newest last.

        Records stay after a dataset is deleted: they are the owner's history.
        """
        return self._audit.trail(owner, name, _limit(limit))

    def jobs(self, identity: str, running: list[JobRecord], limit: int = 0) -> list[JobRecord]:
        """The jobs ``identity`` submitted or receives: finished ones, then those running now."""
        return [*self._audit.jobs(identity, _limit(limit)), *running][-_limit(limit) :]


def _limit(limit: int) -> int:
    return min(limit, MAX_RECORDS) if limit > 0 else MAX_RECORDS
