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

Only then is the file (written and fsynced meanwhile) published,
atomically. An interrupted, malformed or inconsistent upload leaves nothing
behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass

from mpc_core import tags
from mpc_core.errors import (
    FailedPreconditionError,
    InconsistentSharesError,
    InvalidArgumentError,
    MpcError,
    ResourceLimitError,
    ShareFormatError,
)
from mpc_core.fixed_point import max_fractional_bits
from mpc_core.identity import NAME_PATTERN, validate_name
from mpc_core.prg import KEY_BYTES, prf_words, prg_fill
from mpc_core.ring import Ring, RingArray, element_count, ring_of
from mpc_core.version import PROTOCOL_VERSION
from mpc_server.protocol.channel import Channel
from mpc_server.protocol.consistency import check_replicas
from mpc_server.protocol.context import PartyContext
from mpc_server.protocol.setup import agree_and_setup_keys
from mpc_server.service.grant_book import GrantBook
from mpc_server.service.grants import Grant, check_grants, grant_to_json
from mpc_server.service.model import DatasetRef, StoredDataset
from mpc_server.service.store import FileDatasetStore, PendingDataset

UPLOAD_ID_BYTES = 16
MAX_DIMENSIONS = 8


@dataclass(frozen=True)
class UploadLimits:
    """Bounds on what one upload may declare and send."""

    max_elements: int = 1 << 25
    max_grants: int = 256
    max_check_seconds: float = 60.0
    """Longest wait for the peers' digests after the last chunk."""


@dataclass(frozen=True)
class ShareChunk:
    """One chunk of an upload: elements from ``offset`` of both components."""

    offset: int
    first: bytes | memoryview
    second: bytes | memoryview


@dataclass(frozen=True)
class UploadHeader:
    """The first message of an upload."""

    name: str
    shape: tuple[int, ...]
    fractional_bits: int | None
    grants: tuple[Grant, ...]
    upload_id: bytes
    overwrite: bool = False
    first_seed: bytes = b""
    second_seed: bytes = b""
    ring_bits: int = 0
    """The ring of the shares (0: not stated, which is refused)."""
    magnitude_bits: int | None = None
    """The owner's bound: every encoded element e has |e| <= 2^magnitude_bits."""


def _tag(key: bytes, seed: bytes, component: RingArray) -> bytes:
    """The tag of one component: of ``b"seed" || seed`` if it came as a seed, else of its bytes."""
    tagger = tags.Tagger(key)
    if seed:
        tagger.update(b"seed" + seed)
    else:
        tagger.update(b"data")
        tagger.update(ring_of(component).wire_bytes(component))
    return tagger.tag()


class UploadSession:
    """Collects the chunks of one upload into memory.

    A component whose seed the header carries is expanded from it at once
    (seed-compressed upload); chunks then leave that component empty.
    """

    def __init__(
        self,
        pending: PendingDataset,
        header: UploadHeader,
        count: int,
        discard: Callable[[PendingDataset], None],
    ) -> None:
        """Write into ``pending``, which has room for ``count`` elements."""
        self.pending = pending
        self._discard = discard
        self.ref = pending.ref
        self.header = header
        self.count = count
        self._parts = (pending.first, pending.second)
        self._ring = ring_of(pending.first)
        self._sent = [not header.first_seed, not header.second_seed]
        self.received = count if not any(self._sent) else 0

    def expand_seeds(self) -> None:
        """Fill the components the header gave as seeds (blocking: off the loop)."""
        for seed, target in zip((self.header.first_seed, self.header.second_seed), self._parts, strict=True):
            if seed:
                prg_fill(seed, target)

    def add_chunk(self, offset: int, first: bytes | memoryview, second: bytes | memoryview) -> None:
        """Append one chunk; chunks must arrive in order and fit the header."""
        pairs = list(zip((first, second), self._parts, self._sent, strict=True))
        if not any(self._sent):
            raise ShareFormatError(
                f"upload of {self.ref}: both components come from seeds; no chunks expected"
            )
        if any(data for data, _, sent in pairs if not sent):
            raise ShareFormatError(f"upload of {self.ref}: a component expanded from a seed must be empty")
        if offset != self.received:
            raise ShareFormatError(
                f"upload of {self.ref}: chunk at element {offset}, expected {self.received}"
            )
        sent = [(data, target) for data, target, is_sent in pairs if is_sent]
        if len({len(data) for data, _ in sent}) != 1:
            raise ShareFormatError(f"upload of {self.ref}: share components differ in length")
        size = len(sent[0][0]) // self._ring.element_bytes
        if size == 0 or offset + size > self.count:
            raise ShareFormatError(
                f"upload of {self.ref}: chunk of {len(sent[0][0])} bytes at element {offset} "
                f"does not fit {self.count} elements of {self._ring.name}"
            )
        for data, target in sent:
            self._ring.assign(target, offset, self._ring.wire_view(data, size))
        self.received += size

    def require_complete(self) -> None:
        """Refuse an upload whose chunks ended before the header's element count."""
        if self.received != self.count:
            raise ShareFormatError(
                f"upload of {self.ref} ended after {self.received} of {self.count} elements"
            )

    def description_digest(self) -> bytes:
        """SHA-256 of what all three servers must have been told alike (not the seeds)."""
        header = self.header
        described = {
            "protocol_version": PROTOCOL_VERSION,
            "dataset": str(self.ref),
            "shape": list(header.shape),
            "ring_bits": header.ring_bits,
            "fractional_bits": header.fractional_bits,
            "magnitude_bits": header.magnitude_bits,
            "grants": sorted((grant_to_json(g) for g in header.grants), key=lambda g: str(g["id"])),
            "upload_id": header.upload_id.hex(),
            "overwrite": header.overwrite,
        }
        return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).digest()

    def tags(self, keys: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
        """The tags the servers compare for both components, under one-time keys (blocking).

        A component received as a seed is tagged by its seed (tagging the
        expansion would add nothing), one received in full by its bytes; both
        holders of a component must therefore receive it the same way.
        """
        seeds = (self.header.first_seed, self.header.second_seed)
        first, second = (
            _tag(key, seed, part) for key, seed, part in zip(keys, seeds, self._parts, strict=True)
        )
        return first, second

    def discard(self) -> None:
        """Drop everything received so far."""
        self._discard(self.pending)


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
    ) -> None:
        """Accept uploads in the cluster's ring for the known programs."""
        self._store = store
        self._grants = grants
        self._channel = channel
        self._programs = programs
        self._ring = ring
        self.limits = limits

    async def receive(
        self, owner: str, header: UploadHeader, chunks: AsyncIterator[ShareChunk], timeout: float
    ) -> StoredDataset:
        """Run one upload: header, chunks, consistency check, commit.

        When this server refuses the upload, its peers are told at once, so
        they stop waiting for its digests.
        """
        session_id = _session_id(owner, header)
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            session = await self.begin(owner, header)
        except MpcError as exc:
            await self._refuse(session_id, exc)
            raise
        try:
            async for chunk in chunks:
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
        check_grants(header.grants, self._programs, ref, self.limits.max_grants)
        self._store.check_replace(ref, header.upload_id, header.overwrite)
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
        )
        session = UploadSession(pending, header, count, self._store.discard)
        try:
            await asyncio.to_thread(session.expand_seeds)
        except BaseException:
            session.discard()
            raise
        return session

    async def commit(self, session: UploadSession, timeout: float) -> StoredDataset:
        """Check the copies with the peers, then publish the dataset durably.

        The file is written and fsynced while the peers compare digests; it
        becomes the dataset only if they agree. Nothing remains on failure.
        """
        job_id = _session_id(session.ref.owner, session.header) or "upload/invalid"
        try:
            session.require_complete()
        except BaseException:
            session.discard()
            raise
        writing = asyncio.ensure_future(asyncio.to_thread(self._store.write, session.pending))
        try:
            await self._check(job_id, session, timeout)
        except BaseException:
            temp = await asyncio.shield(writing)
            self._store.discard(session.pending, temp)
            raise
        temp = await writing
        overwrite = session.header.overwrite
        return await asyncio.to_thread(self._store.publish, session.pending, temp, overwrite)

    async def _check(self, job_id: str, session: UploadSession, timeout: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        ctx = PartyContext(self._channel, job_id, deadline, ring=self._ring)
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
            await self._channel.abort(job_id, str(exc))
            raise
        finally:
            self._channel.close_job(job_id)

    async def delete(self, ref: DatasetRef) -> None:
        """Delete a stored dataset: its file and its grants are removed."""
        await asyncio.to_thread(self._store.delete, ref)
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
