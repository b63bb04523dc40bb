"""Row-separable programs, computed in pieces from rows in memory or streamed from storage.

A :class:`RowChunked` program's local work splits by rows: party i's
3-out-of-3 terms of rows ``[a, b)`` depend on those rows of its row inputs
(``streamed_roles``) and on its other inputs (weights, an intercept) only.
Two kinds:

* **one output row per input row** (``linear_regression.predict``,
  ``elementwise.multiply``): the output is reshared in *pieces* of at most
  :data:`PIECE_ELEMENTS` elements, each with its own tag, zero share and one
  message to party i-1 (Araki et al. CCS 2016 / ABY3 §3, applied to a range
  of rows). The pieces are a public function of the output's shape, so the
  three servers exchange the same messages whatever their memory budgets;
  how a server computes a piece's terms (from whole arrays, or from row
  chunks it reads from storage in a size its own budget sets) is local and
  invisible on the wire. Up to :data:`WINDOW` pieces are on the wire while
  the next one is computed. An output of one piece is one reshare, exactly
  as before pieces existed;
* **a sum over all rows** (``dot``): every chunk's terms are added up
  locally and the one-element sum is reshared once.

Integrity: rows streamed from a share file are checked only once its last
range is read (``service.share_ranges``). Every stream is verified before
the last piece (or the sum) is sent. A damaged file thus fails the job
(DATA_LOSS) while party i-1 still misses the last piece of ``z_i``: no
complete share computed from the damage exists anywhere, so no wrong output
can be kept or reconstructed (party i+1 needs no message of party i and may
finish, from intact shares only). Everything sent before is masked by zero
shares, like any reshare.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

from mpc_core.ring import Ring, RingArray
from mpc_core.sharing import ReplicatedShare
from mpc_core.types import MessageTag
from mpc_server.protocol import arithmetic
from mpc_server.protocol.context import PartyContext
from mpc_server.protocol.randomness import add_zero_share
from mpc_server.service.model import DatasetSummary, StoredDataset
from mpc_server.service.programs.base import BoundInputs, ProgramPlan, element_count
from mpc_server.service.share_ranges import MemoryRows, Rows

PIECE_ELEMENTS = 1 << 20
"""Output elements per reshare message (16 MiB in Z_2^128): public, the same on every server."""
WINDOW = 2
"""Pieces on the wire while the next one is computed."""

_T = TypeVar("_T")


@runtime_checkable
class RowChunked(Protocol):
    """A program whose work splits by rows of its ``streamed_roles`` (see the module docstring)."""

    name: str
    streamed_roles: tuple[str, ...]
    """The roles whose datasets are the rows (all of one row count), read in row chunks."""
    sums_rows: bool
    """True: the output is one sum over all rows; False: one output row per input row."""

    def chunk_terms(self, inputs: BoundInputs, plan: ProgramPlan) -> RingArray:
        """This party's 3-out-of-3 terms of the rows in ``inputs`` (local, blocking).

        ``inputs`` holds the streamed roles' datasets cut to the chunk's rows
        and the other roles' datasets whole.
        """
        ...


@dataclass(frozen=True, eq=False)
class RowStream:
    """One row input read by row ranges: the dataset as the program sees it, and where its rows are."""

    summary: DatasetSummary
    """The input as the program sees it (its view: selected columns)."""
    rows: Rows
    stored_columns: int
    """Elements per stored row (all columns, before any selection)."""
    columns: tuple[int, ...] | None = None
    """The selected columns' positions; None: all."""

    def read(self, start: int, stop: int) -> StoredDataset:
        """Rows ``[start, stop)``, in the next range after the last one read (blocking)."""
        width = self.stored_columns
        first, second = self.rows.read(start * width, stop * width)
        if self.columns is not None:
            chosen = list(self.columns)
            first = first.reshape(stop - start, width)[:, chosen].reshape(-1)
            second = second.reshape(stop - start, width)[:, chosen].reshape(-1)
        shape = (stop - start, *self.summary.shape[1:])
        return StoredDataset(
            **{**vars(self.summary), "shape": shape, "share": ReplicatedShare(first, second)}
        )


Streams = Mapping[str, Sequence[RowStream]]
"""The streamed roles' inputs, by role, in job order."""


def in_memory(program: RowChunked, inputs: BoundInputs) -> tuple[BoundInputs, Streams]:
    """Split wholly loaded inputs into the other roles' and streams over the row roles' (no copies)."""
    streams: dict[str, tuple[RowStream, ...]] = {}
    for role in program.streamed_roles:
        streams[role] = tuple(
            RowStream(d, MemoryRows(d.share.first, d.share.second, d.upload_id), _width(d))
            for d in inputs.get(role, ())
        )
    fixed = {role: datasets for role, datasets in inputs.items() if role not in streams}
    return fixed, streams


def _width(dataset: DatasetSummary) -> int:
    return element_count(dataset.shape[1:])


async def run_whole(
    ctx: PartyContext, program: RowChunked, inputs: BoundInputs, plan: ProgramPlan
) -> ReplicatedShare:
    """Run ``program`` on inputs loaded whole: the same messages as :func:`run_streamed`."""
    fixed, streams = in_memory(program, inputs)
    return await run_streamed(ctx, program, fixed, streams, plan, 0, offload=False)


async def run_streamed(  # noqa: PLR0917 - the job's parts, passed through
    ctx: PartyContext,
    program: RowChunked,
    fixed: BoundInputs,
    streams: Streams,
    plan: ProgramPlan,
    chunk_rows: int,
    *,
    offload: bool = True,
) -> ReplicatedShare:
    """The program's one output, computed ``chunk_rows`` rows at a time (0: a piece at a time).

    With ``offload`` every local step runs in a worker thread (it reads
    files); otherwise as ``ctx.compute`` decides. Every stream is read to its
    end and verified; the caller closes them.
    """
    rows = next(s.summary.rows for group in streams.values() for s in group)
    work = _Work(ctx, program, fixed, streams, plan, chunk_rows or rows, offload)
    return await (_sum(work, rows) if program.sums_rows else _rows(work, rows))


@dataclass(frozen=True, eq=False)
class _Work:
    ctx: PartyContext
    program: RowChunked
    fixed: BoundInputs
    streams: Streams
    plan: ProgramPlan
    chunk_rows: int
    offload: bool

    @property
    def ring(self) -> Ring:
        return self.ctx.ring

    async def run(self, size: int, fn: Callable[..., _T], *args: object) -> _T:
        if self.offload:
            return await asyncio.to_thread(fn, *args)
        return await self.ctx.compute(size, fn, *args)

    def width(self) -> int:
        """Input elements per row, over every stream (a measure of a row's work)."""
        return max(1, sum(s.stored_columns for group in self.streams.values() for s in group))

    def terms(self, start: int, stop: int) -> RingArray:
        """The program's terms of rows ``[start, stop)``: the streams' next ranges (blocking)."""
        chunk = {role: tuple(s.read(start, stop) for s in group) for role, group in self.streams.items()}
        return self.program.chunk_terms({**self.fixed, **chunk}, self.plan)

    def verify(self) -> None:
        """Every stream's checksums, once all its rows were read."""
        for group in self.streams.values():
            for stream in group:
                stream.rows.verify()


async def _rows(work: _Work, rows: int) -> ReplicatedShare:
    """One output row per input row, reshared piece by piece (module docstring)."""
    ctx, ring = work.ctx, work.ring
    per_row = max(1, element_count(work.plan.first.info.shape) // rows)
    piece_rows = max(1, PIECE_ELEMENTS // per_row)
    spans = [(start, min(start + piece_rows, rows)) for start in range(0, rows, piece_rows)]
    tags = [ctx.allocate_tag() for _ in spans]
    if len(spans) == 1:  # one reshare, as before pieces existed (no copy unless chunked)
        out = None if work.chunk_rows >= rows else ring.empty(rows * per_row)
        terms = await work.run(rows * work.width(), _piece, work, 0, rows, out, tags[0], True)
        return ReplicatedShare(terms, await ctx.exchange(ctx.prev, terms, ctx.next, tags[0]))
    first, second = ring.empty(rows * per_row), ring.empty(rows * per_row)
    sending: list[asyncio.Task[None]] = []
    try:
        for index, ((start, stop), tag) in enumerate(zip(spans, tags, strict=True)):
            z = first[start * per_row : stop * per_row]
            last = index == len(spans) - 1
            await work.run((stop - start) * work.width(), _piece, work, start, stop, z, tag, last)
            into = second[start * per_row : stop * per_row]
            sending.append(asyncio.ensure_future(_exchange(ctx, tag, z, into)))
            if len(sending) >= WINDOW:
                await sending.pop(0)
        while sending:
            await sending.pop(0)
    finally:
        for task in sending:
            task.cancel()
        await asyncio.gather(*sending, return_exceptions=True)
    return ReplicatedShare(first, second)


def _piece(  # noqa: PLR0917 - one piece's parts
    work: _Work, start: int, stop: int, out: RingArray | None, tag: MessageTag, last: bool
) -> RingArray:
    """``z_i`` of rows ``[start, stop)``: their terms plus this party's zero share (blocking).

    Into ``out`` chunk by chunk, or (``out`` None) as the one chunk's terms.
    After the last piece's rows every stream is verified, before the piece
    can be sent.
    """
    if out is None:
        out = work.terms(start, stop).reshape(-1)
    else:
        per_row, step = out.size // (stop - start), work.chunk_rows
        for begin in range(start, stop, step):
            end = min(begin + step, stop)
            work.ring.assign(out, (begin - start) * per_row, work.terms(begin, end).reshape(-1))
    if last:
        work.verify()
    return add_zero_share(work.ctx, tag, out)


async def _exchange(ctx: PartyContext, tag: MessageTag, z: RingArray, into: RingArray) -> None:
    """Send a piece's ``z_i`` to party i-1, receive ``z_{i+1}`` of the same rows into ``into``."""
    received = await ctx.exchange(ctx.prev, z, ctx.next, tag)
    ctx.ring.assign(into, 0, received)


async def _sum(work: _Work, rows: int) -> ReplicatedShare:
    """The sum of every row's terms, reshared once (after every stream was verified)."""
    tag = work.ctx.allocate_tag()
    total = await work.run(rows * work.width(), _sum_terms, work, rows)
    return await arithmetic.reshare(work.ctx, total, tag)


def _sum_terms(work: _Work, rows: int) -> RingArray:
    ring, step = work.ring, work.chunk_rows
    total = work.terms(0, min(step, rows)).reshape(-1)
    for begin in range(step, rows, step):
        ring.add(total, work.terms(begin, min(begin + step, rows)).reshape(-1), out=total)
    work.verify()
    return total
