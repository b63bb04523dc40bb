"""Receiving one party's shares of a dataset, chunk by chunk, within limits.

An upload is a header followed by chunks of shares in order. Everything the
header promises is checked before memory is allocated (a declared size above
the limit is :class:`ResourceLimitError`), every chunk is checked against the
header (:class:`ShareFormatError`), and the dataset becomes visible only when
the last element has arrived: an interrupted upload leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from mpc_core.errors import InvalidArgumentError, ResourceLimitError, ShareFormatError
from mpc_core.identity import validate_name
from mpc_core.prg import KEY_BYTES, prg_words
from mpc_core.ring import WORD_BYTES, element_count, wire_view
from mpc_core.sharing import ReplicatedShare
from mpc_server.service.model import DatasetRef, Grant, StoredDataset
from mpc_server.service.store import DatasetStore

UPLOAD_ID_BYTES = 16
MAX_DIMENSIONS = 8


@dataclass(frozen=True)
class UploadLimits:
    """Bounds on what one upload may declare and send."""

    max_elements: int = 1 << 27
    max_grants: int = 256


@dataclass(frozen=True)
class UploadHeader:
    """The first message of an upload."""

    name: str
    shape: tuple[int, ...]
    fractional_bits: int
    grants: tuple[Grant, ...]
    upload_id: bytes
    overwrite: bool = False
    first_seed: bytes = b""
    second_seed: bytes = b""


class UploadSession:
    """Collects the chunks of one upload into preallocated share arrays.

    A component whose seed the header carries is expanded from it at once
    (seed-compressed upload); chunks then leave that component empty.
    """

    def __init__(self, ref: DatasetRef, header: UploadHeader, count: int) -> None:
        """Allocate room for ``count`` elements of both share components."""
        self.ref = ref
        self.header = header
        self.count = count
        self._first = prg_words(header.first_seed, count) if header.first_seed else np.empty(count, np.uint64)
        self._second = (
            prg_words(header.second_seed, count) if header.second_seed else np.empty(count, np.uint64)
        )
        self._sent = [not header.first_seed, not header.second_seed]
        self.received = count if not any(self._sent) else 0

    def add_chunk(self, offset: int, first: bytes, second: bytes) -> None:
        """Append one chunk; chunks must arrive in order and fit the header."""
        pairs = list(zip((first, second), (self._first, self._second), self._sent, strict=True))
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
        size = len(sent[0][0]) // WORD_BYTES
        if size == 0 or offset + size > self.count:
            raise ShareFormatError(
                f"upload of {self.ref}: chunk of {len(sent[0][0])} bytes at element {offset} "
                f"does not fit {self.count} elements"
            )
        for data, target in sent:
            target[offset : offset + size] = wire_view(data, size)
        self.received += size

    def finish(self) -> StoredDataset:
        """The complete dataset; raises if elements are missing."""
        if self.received != self.count:
            raise ShareFormatError(
                f"upload of {self.ref} ended after {self.received} of {self.count} elements"
            )
        return StoredDataset(
            ref=self.ref,
            shape=self.header.shape,
            fractional_bits=self.header.fractional_bits,
            grants=frozenset(self.header.grants),
            upload_id=self.header.upload_id,
            share=ReplicatedShare(self._first, self._second),
        )


class UploadService:
    """Validates upload headers and commits finished uploads to the store."""

    def __init__(
        self,
        store: DatasetStore,
        programs: Collection[str],
        fractional_bits: int,
        limits: UploadLimits = UploadLimits(),
    ) -> None:
        """Accept uploads at the cluster's scale for the known programs."""
        self._store = store
        self._programs = programs
        self._fractional_bits = fractional_bits
        self.limits = limits

    def begin(self, owner: str, header: UploadHeader) -> UploadSession:
        """Check ``header`` from ``owner`` and start a session for it."""
        ref = DatasetRef(owner, validate_name(header.name, "dataset name"))
        count = self._check_shape(header.shape)
        if header.fractional_bits != self._fractional_bits:
            raise InvalidArgumentError(
                f"dataset {ref} is encoded with {header.fractional_bits} fractional bits; "
                f"this cluster uses {self._fractional_bits}"
            )
        if len(header.upload_id) != UPLOAD_ID_BYTES:
            raise InvalidArgumentError(f"upload_id must be {UPLOAD_ID_BYTES} bytes")
        for seed in (header.first_seed, header.second_seed):
            if seed and len(seed) != KEY_BYTES:
                raise InvalidArgumentError(f"share seeds must be {KEY_BYTES} bytes, got {len(seed)}")
        self._check_grants(header.grants)
        return UploadSession(ref, header, count)

    def commit(self, session: UploadSession) -> StoredDataset:
        """Store the finished upload, all at once."""
        dataset = session.finish()
        self._store.put(dataset, overwrite=session.header.overwrite)
        return dataset

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

    def _check_grants(self, grants: Sequence[Grant]) -> None:
        if len(grants) > self.limits.max_grants:
            raise ResourceLimitError(f"at most {self.limits.max_grants} grants per dataset")
        for grant in grants:
            validate_name(grant.receiver, "grant receiver")
            if grant.program not in self._programs:
                known = ", ".join(sorted(self._programs))
                raise InvalidArgumentError(f"grant names unknown program {grant.program!r} (known: {known})")
