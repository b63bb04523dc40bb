"""Receiving one party's shares of a dataset, checking them, storing them.

An upload is a header followed by chunks of shares in order. Everything the
header promises is checked before anything is allocated (a declared size
above the limit is :class:`ResourceLimitError`), every chunk is checked
against the header (:class:`ShareFormatError`). When the last element has
arrived, the three servers check the upload in two rounds:

1. they confirm they hold the same header (name, shape, ring, scale, bound,
   grants, upload id: a digest of it) and set up fresh pairwise keys
   (``protocol.setup``), so that a client cannot give the servers different
   grants or bounds for one dataset;
2. they compare one-time keyed tags (GMAC, ``mpc_core.tags``) of their copies
   of every component (``protocol.consistency``). The tag key of component j
   comes from the key ``k_j`` that only its two holders know, so the
   uploader cannot find inconsistent copies with equal tags.

Then the three servers commit it (``service.commit``: prepare, vote,
publish), so that it is published on all three or on none, also when one
of them fails in between. An interrupted, malformed or inconsistent upload
leaves nothing behind. Per-client quotas (``service.quotas``: datasets, and
bytes at rest) are checked, like the other limits, before anything is
allocated.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from mpc_core.errors import (
    FailedPreconditionError,
    InconsistentSharesError,
    InvalidArgumentError,
    MpcError,
    ResourceLimitError,
)
from mpc_core.fixed_point import max_fractional_bits
from mpc_core.identity import NAME_PATTERN, validate_name
from mpc_core.prg import KEY_BYTES, prf_words
from mpc_core.ring import Ring, element_count
from mpc_server.protocol.channel import Channel
from mpc_server.protocol.consistency import check_replicas
from mpc_server.protocol.context import PartyContext
from mpc_server.protocol.setup import agree_and_setup_keys
from mpc_server.service.grant_book import GrantBook
from mpc_server.service.grants import check_grants
from mpc_server.service.key_store import KeyStore
from mpc_server.service.model import DatasetRef, StoredDataset
from mpc_server.service.quotas import DatasetQuota
from mpc_server.service.store import FileDatasetStore
from mpc_server.service.upload_commits import UploadCommits
from mpc_server.service.upload_session import ShareChunk, TokenChunk, UploadHeader, UploadSession

UPLOAD_ID_BYTES = 16
MAX_DIMENSIONS = 8


@dataclass(frozen=True)
class UploadLimits:
    """Bounds on what one upload may declare and send."""

    max_elements: int = 1 << 25
    max_grants: int = 256
    max_check_seconds: float = 60.0
    """Longest wait for the peers' digests after the last chunk."""
    idle_seconds: float = 30.0
    """An upload stream that sends nothing for this long is ended (DEADLINE_EXCEEDED)."""
    max_per_client: int = 4
    """Uploads one client may have in progress on this server at once."""
    max_concurrent: int = 16
    """Uploads in progress on this server at once, from all clients."""
    max_inflight_bytes: int = 4 << 30
    """Memory all uploads in progress may take together (both components of each)."""
    max_datasets_per_client: int = 1000
    """Datasets one client may keep on this server (its dataset quota; uploads in progress count)."""
    max_bytes_per_client: int = 64 << 30
    """Bytes one client's datasets may take at rest (its quota; measured as in ``service.quotas``)."""


async def _written(writing: asyncio.Future[Path]) -> Path | None:
    """The file a write produced, or None if it failed (it then removed its file and freed the name)."""
    try:
        return await asyncio.shield(writing)
    except Exception:  # noqa: BLE001 - the error that ended the upload is the one to report
        return None


def _check_keys(ref: DatasetRef, header: UploadHeader) -> None:
    """A keyed upload is a column or a matrix, under a well-formed alignment; column names fit."""
    if header.alignment:
        opener, slash, name = header.alignment.partition("/")
        if not slash:
            raise InvalidArgumentError(f"the alignment of {ref} must be 'opener/alignment_id'")
        validate_name(opener, "alignment opener")
        validate_name(name, "alignment id")
        if len(header.shape) not in (1, 2):
            raise InvalidArgumentError(
                f"keyed dataset {ref} must be a column (rows,) or a matrix (rows, columns)"
            )
    if header.columns:
        width = header.shape[-1] if len(header.shape) == 2 else 1
        if len(header.columns) != width or len(set(header.columns)) != width:
            raise InvalidArgumentError(
                f"dataset {ref} names {len(header.columns)} columns for {width}, each once"
            )
        for column in header.columns:
            validate_name(column, "column name")


def _session_id(owner: str, header: UploadHeader) -> str | None:
    """Message tags of an upload's consistency check (None for a bad name)."""
    if NAME_PATTERN.fullmatch(header.name) is None:
        return None
    return f"upload/{owner}/{header.name}/{header.upload_id.hex()[:16]}"


class UploadService:
    """Validates headers, checks consistency with the peers, commits uploads."""

    def __init__(
        self,
        store: FileDatasetStore,
        channel: Channel,
        programs: Collection[str],
        ring: Ring,
        limits: UploadLimits = UploadLimits(),
        *,
        grants: GrantBook,
        keys: KeyStore,
        commits: UploadCommits,
    ) -> None:
        """Accept uploads in the cluster's ring for the known programs; commit them through ``commits``."""
        self._store = store
        self._grants = grants
        self._keys = keys
        self._commits = commits
        self._channel = channel
        self._programs = programs
        self._ring = ring
        self.limits = limits
        self._active: dict[str, int] = {}
        self._inflight = 0

    async def receive(
        self, owner: str, header: UploadHeader, chunks: AsyncIterator[ShareChunk | TokenChunk], timeout: float
    ) -> StoredDataset:
        """Run one upload: header, chunks, consistency check, commit.

        When this server refuses the upload, its peers are told at once, so
        they stop waiting for its digests.
        """
        session_id = _session_id(owner, header)
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            nbytes = self._admit(owner, header)
            upload = self._commits.open(DatasetRef(owner, header.name), header.upload_id, nbytes)
        except MpcError as exc:
            await self._refuse(session_id, exc)
            raise
        self._active[owner] = self._active.get(owner, 0) + 1
        self._inflight += nbytes
        try:
            return await self._receive(owner, header, chunks, session_id, deadline)
        finally:
            self._active[owner] -= 1
            self._inflight -= nbytes
            self._commits.release(upload)

    def _admit(self, owner: str, header: UploadHeader) -> int:
        """Check the upload against the limits and quotas before anything is allocated; its size."""
        limits = self.limits
        nbytes = 2 * self._check_shape(header.shape) * self._ring.element_bytes
        name = validate_name(header.name, "dataset name")
        if len(header.upload_id) != UPLOAD_ID_BYTES:
            raise InvalidArgumentError(f"upload_id must be {UPLOAD_ID_BYTES} bytes")
        if (
            self._active.get(owner, 0) >= limits.max_per_client
            or sum(self._active.values()) >= limits.max_concurrent
        ):
            raise ResourceLimitError(
                f"too many uploads in progress (at most {limits.max_per_client} per client, "
                f"{limits.max_concurrent} per server); retry when one has finished"
            )
        if self._inflight + nbytes > limits.max_inflight_bytes:
            raise ResourceLimitError(
                f"this server is receiving {self._inflight} bytes of uploads; {nbytes} more would exceed "
                f"its budget of {limits.max_inflight_bytes}: retry later"
            )
        server = self._channel.peer_name(self._channel.party)
        quota = DatasetQuota(limits.max_datasets_per_client, limits.max_bytes_per_client, server)
        quota.check(owner, name, nbytes, self._store.owned_by(owner), self._commits.reserved(owner))
        return nbytes

    async def _receive(
        self,
        owner: str,
        header: UploadHeader,
        chunks: AsyncIterator[ShareChunk | TokenChunk],
        session_id: str | None,
        deadline: float,
    ) -> StoredDataset:
        try:
            session = await self.begin(owner, header)
        except MpcError as exc:
            await self._refuse(session_id, exc)
            raise
        try:
            async for chunk in chunks:
                if isinstance(chunk, TokenChunk):
                    session.add_tokens(chunk.data)
                else:
                    session.add_chunk(chunk.offset, chunk.first, chunk.second)
        except BaseException as exc:
            session.discard()
            if isinstance(exc, MpcError):
                await self._refuse(session_id, exc)
            raise
        remaining = max(0.0, deadline - asyncio.get_running_loop().time())  # the caller's deadline holds
        return await self.commit(session, min(remaining, self.limits.max_check_seconds))

    async def _refuse(self, session_id: str | None, error: MpcError) -> None:
        if session_id is not None:
            await self._channel.abort(session_id, str(error))
            self._channel.refuse_job(session_id)

    async def begin(self, owner: str, header: UploadHeader) -> UploadSession:
        """Check ``header`` from ``owner`` and start a session for it."""
        ref = DatasetRef(owner, validate_name(header.name, "dataset name"))
        count = self._check_shape(header.shape)
        self._check_encoding(ref, header)
        if len(header.upload_id) != UPLOAD_ID_BYTES:
            raise InvalidArgumentError(f"upload_id must be {UPLOAD_ID_BYTES} bytes")
        for seed in (header.first_seed, header.second_seed):
            if seed and len(seed) != KEY_BYTES:
                raise InvalidArgumentError(f"share seeds must be {KEY_BYTES} bytes, got {len(seed)}")
        party = self._channel.party  # component 2 travels as data: no upload is all seeds
        if (party == 1 and header.second_seed) or (party == 2 and header.first_seed):
            raise InvalidArgumentError(
                "share component 2 must be sent in full, not as a seed (seeds are for components 0 and 1)"
            )
        check_grants(header.grants, self._programs, ref, self.limits.max_grants)
        _check_keys(ref, header)
        self._store.check_replace(ref, header.upload_id, header.overwrite)
        self._commits.check_fresh(ref, header.upload_id)
        pending = self._store.create(
            ref,
            shape=header.shape,
            ring=self._ring,
            fractional_bits=header.fractional_bits or 0,
            magnitude_bits=header.magnitude_bits or 0,
            grants=tuple(header.grants),
            upload_id=header.upload_id,
            count=count,
            seeds=(header.first_seed, header.second_seed),
            alignment=header.alignment,
            columns=header.columns,
        )
        session = UploadSession(pending, header, count, self._store.discard)
        try:
            await asyncio.to_thread(session.expand_seeds)
        except BaseException:
            session.discard()
            raise
        return session

    async def commit(self, session: UploadSession, timeout: float) -> StoredDataset:
        """Check the copies with the peers, then commit the dataset on all three servers or none.

        The file is written and fsynced while the peers compare digests; it
        is prepared, voted on and published only if they agree
        (``service.commit``). Nothing remains on failure.
        """
        job_id = _session_id(session.ref.owner, session.header) or "upload/invalid"
        try:
            session.require_complete()
        except BaseException:
            session.discard()
            raise
        writing = asyncio.ensure_future(asyncio.to_thread(self._store.write, session.pending))
        deadline = asyncio.get_running_loop().time() + timeout
        ctx = PartyContext(self._channel, job_id, deadline, ring=self._ring)
        try:
            await self._check(ctx, session)
        except BaseException:
            self._channel.close_job(job_id)
            self._store.discard(session.pending, await _written(writing))
            raise
        return await self._commits.settle(ctx, session, writing)

    async def _check(self, ctx: PartyContext, session: UploadSession) -> None:
        what = f"dataset {session.ref}"
        try:
            try:
                keys = await agree_and_setup_keys(ctx, session.description_digest())
            except FailedPreconditionError:
                raise InconsistentSharesError(
                    f"the uploader sent the servers different headers of {what} (shape, ring, scale, "
                    "bound, grants or upload id); the upload was rejected"
                ) from None
            label = ctx.allocate_tag().to_bytes(b"upload-tags")
            tag_keys = (prf_words(keys.own, label, 2).tobytes(), prf_words(keys.next, label, 2).tobytes())
            first, second = await asyncio.to_thread(session.tags, tag_keys)
            await check_replicas(ctx, what, first, second)
        except InconsistentSharesError:
            raise  # every server reaches this verdict from the same digests and tags
        except MpcError as exc:
            await self._channel.abort(ctx.job_id, str(exc))
            raise

    async def delete(self, ref: DatasetRef) -> None:
        """Delete a stored dataset: its file, its tokens and its grants are removed."""
        await asyncio.to_thread(self._store.delete, ref)
        await asyncio.to_thread(self._keys.delete, ref)
        self._grants.forget(ref)
        await asyncio.to_thread(self._grants.save_durably, ref, None)

    def _check_encoding(self, ref: DatasetRef, header: UploadHeader) -> None:
        """The ring, scale and bound an upload declares: required, and in range."""
        ring = self._ring
        if header.ring_bits != ring.bits:
            stated = f"is shared in Z_2^{header.ring_bits}" if header.ring_bits else "names no ring"
            raise InvalidArgumentError(
                f"the upload of dataset {ref} {stated}; this cluster computes in {ring.name}"
            )
        limit = max_fractional_bits(ring)
        if header.fractional_bits is None or not 0 <= header.fractional_bits <= limit:
            raise InvalidArgumentError(
                f"the upload of dataset {ref} must state fractional_bits within 0..{limit} in {ring.name}"
            )
        if header.magnitude_bits is None or not 0 <= header.magnitude_bits <= ring.bits - 1:
            raise InvalidArgumentError(
                f"the upload of dataset {ref} must state magnitude_bits (its public bound) within "
                f"0..{ring.bits - 1} in {ring.name}"
            )

    def _check_shape(self, shape: Sequence[int]) -> int:
        if len(shape) > MAX_DIMENSIONS:
            raise InvalidArgumentError(f"arrays may have at most {MAX_DIMENSIONS} dimensions")
        if any(dim <= 0 for dim in shape):
            raise InvalidArgumentError(f"every dimension must be positive, got shape {tuple(shape)}")
        if any(dim > self.limits.max_elements for dim in shape):
            raise ResourceLimitError(f"shape {tuple(shape)} exceeds {self.limits.max_elements} elements")
        count = element_count(tuple(shape))
        if count > self.limits.max_elements:
            raise ResourceLimitError(
                f"{count} elements exceed this server's limit of {self.limits.max_elements}"
            )
        return count
