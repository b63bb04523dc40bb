"""One upload as it arrives: the header's types, the chunks in order, the digest and tags to compare.

:class:`UploadSession` collects one party's shares of a dataset (and, for a
keyed dataset, its row tokens) into memory, refusing anything that does not
fit the header; ``service.uploads`` runs the check with the peers and commits.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from mpc_core import tags
from mpc_core.errors import ShareFormatError
from mpc_core.prg import prg_fill
from mpc_core.ring import RingArray, ring_of
from mpc_core.version import PROTOCOL_VERSION
from mpc_server.service.grants import Grant, grant_to_json
from mpc_server.service.store import PendingDataset

TOKEN_BYTES = 16


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
    alignment: str = ""
    """For a keyed dataset: the alignment of its row tokens (which follow as :class:`TokenChunk`)."""
    columns: tuple[str, ...] = ()
    """Names of the columns (the last dimension); empty: unnamed."""


@dataclass(frozen=True)
class TokenChunk:
    """Row tokens of a keyed upload, 16 bytes each, continuing where the last chunk ended."""

    data: bytes | memoryview


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
        self.rows = (header.shape[0] if header.shape else 1) if header.alignment else 0
        self.tokens = bytearray()

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

    def add_tokens(self, data: bytes | memoryview) -> None:
        """Append row tokens of a keyed upload (refused for a positional one, or beyond the rows)."""
        if not self.rows:
            raise ShareFormatError(f"upload of {self.ref}: tokens sent for a dataset without alignment")
        if len(data) % TOKEN_BYTES or len(self.tokens) + len(data) > self.rows * TOKEN_BYTES:
            raise ShareFormatError(
                f"upload of {self.ref}: tokens are {TOKEN_BYTES} bytes per row, {self.rows} rows in all"
            )
        self.tokens += data

    def require_complete(self) -> None:
        """Refuse an upload whose chunks ended before the header's element count (or row tokens)."""
        if self.received != self.count:
            raise ShareFormatError(
                f"upload of {self.ref} ended after {self.received} of {self.count} elements"
            )
        if len(self.tokens) != self.rows * TOKEN_BYTES:
            raise ShareFormatError(
                f"upload of {self.ref} ended after the tokens of {len(self.tokens) // TOKEN_BYTES} "
                f"of {self.rows} rows"
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
            "alignment": header.alignment,
            "columns": list(header.columns),
            "tokens": hashlib.sha256(self.tokens).hexdigest(),
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
