"""The upload commit protocol's state on one server: uploads in progress, unsettled, and recovery.

:class:`UploadCommits` runs ``service.commit``'s protocol for each upload
whose checks passed (prepare, vote, decide), settles uncertain and
recovered uploads in the background by asking the peers, answers the
peers' questions (``PeerService.UploadOutcome``), and keeps the names of
unsettled uploads locked. It also knows, for the quotas, what each owner's
uploads in progress and unsettled take.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpc_core.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    JobAbortedError,
    MpcError,
    NotFoundError,
    ProtocolError,
    ServerUnavailableError,
)
from mpc_core.types import PartyId, next_party, prev_party
from mpc_server.protocol.channel import Channel
from mpc_server.protocol.context import PartyContext
from mpc_server.service.commit import (
    ASK_SECONDS,
    RETRY_SECONDS,
    CommitPause,
    Outcome,
    PeerOutcomes,
    decide,
    vote,
)
from mpc_server.service.commit_journal import CommitJournal, Record
from mpc_server.service.model import DatasetRef, StoredDataset
from mpc_server.service.quotas import dataset_bytes
from mpc_server.service.store import FileDatasetStore, PendingDataset
from mpc_server.service.upload_session import UploadSession

_log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Upload:
    """One upload this server knows of and has not settled."""

    ref: DatasetRef
    upload_id: bytes
    nbytes: int
    state: Outcome = Outcome.PENDING
    settling: bool = False
    """The commit protocol owns it (from the prepare on)."""
    pending: PendingDataset | None = None
    record: Record | None = None
    waiting_for: str = "its peers"

    def prepared(self) -> tuple[Record, PendingDataset]:
        """Its journal record and its prepared shares (both exist once it was prepared here)."""
        if self.record is None or self.pending is None:
            raise ProtocolError(f"the upload of dataset {self.ref} was decided before it was prepared")
        return self.record, self.pending


class UploadCommits:
    """The commit protocol of one server: votes, decisions, settling, and answers to the peers."""

    def __init__(
        self,
        journal: CommitJournal,
        store: FileDatasetStore,
        channel: Channel,
        peers: PeerOutcomes,
        *,
        pause: CommitPause | None = None,
    ) -> None:
        """Commit into ``journal``/``store``; vote over ``channel``; settle by asking ``peers``."""
        self._journal = journal
        self._store = store
        self._channel = channel
        self._peers = peers
        self._pause = pause or CommitPause("")
        self._uploads: dict[bytes, _Upload] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._me = channel.peer_name(channel.party)

    async def start(self) -> None:
        """Recover before serving: finish local commits, settle prepared uploads in the background."""
        prepared, unfinished = await asyncio.to_thread(self._journal.load)
        for record, pending in prepared + unfinished:
            state = Outcome.COMMITTED if record.upload_id in self._journal.committed else Outcome.PREPARED
            upload = _Upload(
                record.ref,
                record.upload_id,
                dataset_bytes(pending.summary.shape, pending.summary.ring_bits),
                state,
                True,
                pending,
                record,
            )
            self._uploads[record.upload_id] = upload
            _log.warning("%s: settling the %s upload of dataset %s", self._me, state, record.ref)
            self._spawn(self._settle_later(upload))

    async def stop(self) -> None:
        """Stop settling (a restart resumes it from the records)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def open(self, ref: DatasetRef, upload_id: bytes, nbytes: int) -> _Upload:
        """Register an upload as it starts (answers ``pending`` from now on).

        Raises:
            AlreadyExistsError: the upload id is in use here.
        """
        if upload_id in self._uploads:
            raise AlreadyExistsError(f"upload {upload_id.hex()} is already in progress on {self._me}")
        upload = self._uploads[upload_id] = _Upload(ref, upload_id, nbytes)
        return upload

    def release(self, upload: _Upload) -> None:
        """The upload ended before the commit protocol took it over: forget it."""
        if not upload.settling and self._uploads.get(upload.upload_id) is upload:
            del self._uploads[upload.upload_id]

    def check_fresh(self, ref: DatasetRef, upload_id: bytes) -> None:
        """Refuse a reused upload id, and a name another upload holds (committing now, or unsettled)."""
        if upload_id in self._journal.committed:
            raise AlreadyExistsError(
                f"upload {upload_id.hex()} of dataset {ref} was already committed; upload again "
                "(a fresh upload id)"
            )
        for upload in self._uploads.values():
            if upload.ref != ref or not upload.settling or upload.upload_id == upload_id:
                continue
            if upload.state is not Outcome.PREPARED:  # voting or publishing now: just in progress
                raise AlreadyExistsError(f"another upload of dataset {ref} is in progress")
            raise FailedPreconditionError(
                f"an earlier upload of dataset {ref} is prepared on {self._me} but not settled yet: "
                f"it waits for {upload.waiting_for}, then it is committed on all three servers or "
                "rolled back on all three; retry after that"
            )

    def reserved(self, owner: str) -> list[tuple[str, int]]:
        """Names and sizes of ``owner``'s uploads in progress or unsettled (for the quotas)."""
        return [(u.ref.name, u.nbytes) for u in self._uploads.values() if u.ref.owner == owner]

    def outcome(self, owner: str, name: str, upload_id: bytes) -> Outcome:
        """What this server knows of an upload, for a peer that settles it."""
        upload = self._uploads.get(upload_id)
        if upload is not None:
            return upload.state
        if upload_id in self._journal.committed:
            return Outcome.COMMITTED
        try:
            if self._store.summary(DatasetRef(owner, name)).upload_id == upload_id:
                return Outcome.COMMITTED
        except NotFoundError:
            pass
        return Outcome.UNKNOWN

    async def settle(
        self, ctx: PartyContext, session: UploadSession, written: asyncio.Future[Path]
    ) -> StoredDataset:
        """Prepare, vote and decide for an upload whose checks passed (runs on if the caller is cancelled)."""
        upload = self._uploads[session.header.upload_id]
        upload.settling = True
        task = asyncio.create_task(self._commit(ctx, upload, session, written))
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return await asyncio.shield(task)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: the caller reports it, or it was logged

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    async def _commit(
        self, ctx: PartyContext, upload: _Upload, session: UploadSession, written: asyncio.Future[Path]
    ) -> StoredDataset:
        try:
            return await self._prepare_and_vote(ctx, upload, session, written)
        finally:
            self._channel.close_job(ctx.job_id)

    async def _prepare_and_vote(
        self, ctx: PartyContext, upload: _Upload, session: UploadSession, written: asyncio.Future[Path]
    ) -> StoredDataset:
        pending, ref = session.pending, upload.ref
        try:
            temp = await written  # a failed write removed its file and freed the name
            await self._pause.at("checked")
            tokens = bytes(session.tokens) if session.header.alignment else None
            upload.record = await asyncio.to_thread(
                self._journal.prepare, pending, temp, tokens, session.header.alignment
            )
        except BaseException as exc:
            del self._uploads[upload.upload_id]
            reason = (
                str(exc) if isinstance(exc, MpcError) else f"an internal error (see the log of {self._me})"
            )
            await self._channel.abort(ctx.job_id, reason)  # "no": the peers roll back at once
            raise
        await self._pause.at("prepared")
        verdict, error = await vote(ctx, self._pause)
        if verdict is True:
            upload.state, upload.pending = Outcome.COMMITTED, pending
            return await self._decided(upload)
        if verdict is False:
            if not isinstance(error, JobAbortedError):
                raise ProtocolError(f"a vote on the upload of dataset {ref} said no without a reason")
            await self._roll_back(upload, pending)
            message = f"the upload of dataset {ref} was rolled back on every server: {error.peer} did not "
            error.args = (message + f"prepare it: {error.reason}",)
            raise error
        upload.waiting_for = getattr(error, "server", None) or "its peers"
        upload.state, upload.pending = Outcome.PREPARED, pending
        try:  # keep the name locked, but not the shares in memory
            upload.pending = await asyncio.to_thread(
                self._store.hold, self._journal.share_path(upload.upload_id)
            )
        except (OSError, MpcError) as exc:
            _log.warning("%s: keeping upload of %s in memory: %s", self._me, ref, exc)
        self._spawn(self._settle_later(upload))
        raise ServerUnavailableError(
            upload.waiting_for,
            f"it did not confirm the upload of dataset {ref} ({error}); the upload is prepared on {self._me} "
            f"and is committed on all three servers or rolled back on all three once {upload.waiting_for} "
            "is reachable; until then it is not visible and its name stays reserved",
        )

    async def _decided(self, upload: _Upload) -> StoredDataset:
        """All three prepared: record it, then publish (retried in the background on failure)."""
        record, pending = upload.prepared()
        try:
            await asyncio.to_thread(self._journal.record_commit, record)
            await self._pause.at("committed")
            dataset = await asyncio.to_thread(self._journal.publish, pending, record)
        except (OSError, MpcError) as exc:
            self._spawn(self._settle_later(upload))
            raise FailedPreconditionError(
                f"dataset {upload.ref} was committed on the three servers, but {self._me} could not publish "
                f"its copy yet ({exc}); it retries until it can"
            ) from None
        self._uploads.pop(upload.upload_id, None)
        await self._pause.at("published")
        return dataset

    async def _roll_back(self, upload: _Upload, pending: PendingDataset | None) -> None:
        try:
            await asyncio.to_thread(self._journal.roll_back, pending, upload.upload_id)
        except (OSError, MpcError) as exc:  # the record may stay: the next start asks again
            _log.error("%s: rolling back the upload of %s: %s", self._me, upload.ref, exc)
        self._uploads.pop(upload.upload_id, None)

    async def _settle_later(self, upload: _Upload) -> None:
        """Ask the peers (with backoff) until the upload can be committed or rolled back here."""
        delay = RETRY_SECONDS[0]
        while True:
            try:
                if upload.state is not Outcome.COMMITTED:
                    verdict = decide(await self._ask(upload))
                    if verdict is False:
                        await self._roll_back(upload, upload.pending)
                        _log.warning("%s: rolled back the upload of dataset %s", self._me, upload.ref)
                        return
                    if verdict is True:
                        upload.state = Outcome.COMMITTED
                if upload.state is Outcome.COMMITTED:
                    record, pending = upload.prepared()
                    await asyncio.to_thread(self._journal.record_commit, record)
                    await asyncio.to_thread(self._journal.publish, pending, record)
                    self._uploads.pop(upload.upload_id, None)
                    _log.warning("%s: committed the upload of dataset %s", self._me, upload.ref)
                    return
            except (OSError, MpcError) as exc:
                _log.warning("%s: cannot settle the upload of %s yet: %s", self._me, upload.ref, exc)
            await asyncio.sleep(delay)
            delay = min(2 * delay, RETRY_SECONDS[1])

    async def _ask(self, upload: _Upload) -> list[Outcome | None]:
        me = self._channel.party

        async def one(party: PartyId) -> Outcome | None:
            try:
                answer = await self._peers.ask(
                    party, upload.ref.owner, upload.ref.name, upload.upload_id, ASK_SECONDS
                )
                return Outcome(answer)
            except (MpcError, ValueError):
                return None

        peers = (next_party(me), prev_party(me))
        answers = list(await asyncio.gather(*(one(peer) for peer in peers)))
        silent = [
            self._channel.peer_name(p) for p, answer in zip(peers, answers, strict=True) if answer is None
        ]
        upload.waiting_for = " and ".join(silent) or "its peers"
        return answers
