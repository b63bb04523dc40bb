"""Jobs within a memory budget: each job's peak memory estimated from its plan; rows streamed in chunks.

Every server has a per-job memory budget (``JobLimits.memory_bytes``,
``mpc server --job-memory-bytes``). Before the servers agree on a job, each
estimates from the plan alone (public shapes and the ring; no share is
read) what the job would hold at its peak (:func:`memory_plan`):

* **loaded whole**: every input's share as the program holds it (both
  components, plus a copy when a view picks joined rows or columns), the
  outputs' shares, and temporaries: for a row-separable program
  (``programs.row_chunks``) one piece of terms and the pieces on the wire,
  for any other program a multiple of its row inputs measured for it
  (:data:`TEMPORARIES`; a program may set ``memory_temporaries`` itself);
* **streamed**, for a row-separable program on positional rows (no join):
  its other inputs whole, the outputs, the pieces on the wire, and one chunk
  of rows of every row input (read buffers, column selections, the chunk's
  terms). The chunk's rows are what the budget leaves, at most
  :data:`CHUNK_MAX_BYTES` of working set (larger chunks are no faster).

The whole path is taken when it fits (it serves repeated jobs from the
dataset cache, as before); otherwise the row inputs are streamed from
storage (``service.share_ranges``: ranged reads, seeded components expanded
by range, checksums accumulated over the chunks and checked before the last
message leaves); a job that fits neither way is refused with
RESOURCE_EXHAUSTED naming the budget, before it is agreed on and before
anything is allocated. The estimate depends on the plan only, so servers
with equal budgets decide alike; a server with a smaller budget refuses
alone and tells its peers, and the job fails everywhere. Whether a server
streams is its own choice: the messages are the same either way.

Not counted: the dataset cache (bounded on its own, ``FileDatasetStore``),
uploads in flight (``UploadLimits.max_inflight_bytes``) and the process's
baseline (interpreter, gRPC, about 75 MiB). For the estimate to bound the
process's resident memory, freed buffers must go back to the system:
:func:`return_freed_memory` (called by ``mpc server`` at start) fixes glibc's
mmap threshold (16 MiB: a 2^20-element piece is mapped, a 10^6-row
array is not), which otherwise grows after the first large frees,
and uses one malloc arena, so that chunk buffers freed by one worker thread
no longer stay resident in that thread's arena (about 100 MiB more than the
estimate at a 256 MiB budget, measured); 16 MiB of free heap is kept for
reuse (a 1 MiB threshold, mapping every 10^6-row array afresh, made 10^6
products 1.3x slower).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from mpc_core.errors import FailedPreconditionError, ResourceLimitError
from mpc_core.ring import ring_for_bits
from mpc_core.sharing import ReplicatedShare
from mpc_server.protocol.context import PartyContext
from mpc_server.service.job_plan import JobPlan
from mpc_server.service.model import DatasetSummary, StoredDataset
from mpc_server.service.programs import BoundInputs
from mpc_server.service.programs.base import element_count
from mpc_server.service.programs.row_chunks import (
    PIECE_ELEMENTS,
    WINDOW,
    RowChunked,
    RowStream,
    Streams,
    run_streamed,
)
from mpc_server.service.row_layout import InputView, program_view, select
from mpc_server.service.store import DatasetStore

DEFAULT_JOB_MEMORY_BYTES = 2 << 30
"""The default budget: above the 1.1-1.2 GiB that ``linear_regression.fit`` and
``logistic_regression.fit`` take over 10^6 x 10 features (measured), so they still run."""
JOB_OVERHEAD_BYTES = 16 << 20
"""Per job, besides its arrays: tasks, messages' framing, the allocator's slack."""
CHUNK_MAX_BYTES = 64 << 20
"""The largest working set of one chunk of streamed rows."""
MIN_CHUNK_ROWS = 1024
"""Streaming in fewer rows at a time than this is refused rather than crawled through."""
CHUNK_TEMPORARIES = 3
"""Arrays of one chunk's output rows a row-separable program holds while computing its terms."""
TEMPORARIES = {
    "linear_regression.fit": 3.5,
    "logistic_regression.fit": 3.5,
    "logistic_regression.predict": 2.0,
    "linear_regression.decide": 1.0,
    "stats.summary": 0.25,
}
"""Peak temporaries of programs that are not row-separable, as a multiple of their row inputs'
bytes (measured at 10^5 and 10^6 rows x 10 features: 2.9, 2.7, 1.3, 0.5 and 0.03 times)."""
DEFAULT_TEMPORARIES = 4.0


_log = logging.getLogger(__name__)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # glibc's malloc.h
_MMAP_THRESHOLD_BYTES = 16 << 20
"""Buffers this large (10^7 rows' shares, big chunks) are mapped and unmapped on their own."""
_TRIM_THRESHOLD_BYTES = 16 << 20
"""Free heap memory kept for reuse: smaller buffers (a 10^6-row message is 16 MB) are not
faulted in again for every job (with a 1 MiB mmap threshold 10^6 products took 1.3x as long)."""


def return_freed_memory() -> bool:
    """Have glibc map allocations of 16 MiB or more, so that freeing them returns them; keep 16 MiB.

    Setting the thresholds also stops glibc from raising them on its own. A
    no-op (False) where there is no glibc ``mallopt``. Call once, at start.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    trimmed = mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES) and mallopt(_M_ARENA_MAX, 1)
    return bool(trimmed and mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES))


@dataclass(frozen=True)
class MemoryPlan:
    """How one server runs a job within its budget (see the module docstring)."""

    budget: int
    whole_bytes: int
    """The estimated peak with every input loaded whole."""
    streamed_bytes: int = 0
    """The estimated peak when streaming (0: not streamed)."""
    chunk_rows: int = 0
    """Rows of every row input read at a time (0: loaded whole)."""

    @property
    def streamed(self) -> bool:
        """Whether the row inputs are streamed in chunks."""
        return self.chunk_rows > 0

    @property
    def estimate(self) -> int:
        """The estimated peak of the way the job runs."""
        return self.streamed_bytes if self.streamed else self.whole_bytes


def _mib(size: int) -> str:
    return f"{size / (1 << 20):,.0f} MiB"


def memory_plan(plan: JobPlan, budget: int, server: str = "this server") -> MemoryPlan:
    """Decide how the job fits ``budget`` bytes; refuse it if it cannot (no data is read).

    Raises:
        ResourceLimitError: the job needs more than the budget either way
            (RESOURCE_EXHAUSTED, naming the budget, the server and the estimate).
    """
    sizes = _Sizes(plan)
    whole = sizes.whole()
    if whole <= budget:
        return MemoryPlan(budget, whole)
    program = plan.program
    streamable = isinstance(program, RowChunked) and not plan.layout.keyed
    how = "loaded whole"
    if streamable:
        fixed, per_row, rows, limit = sizes.streamed()
        most = min(limit, max(1, CHUNK_MAX_BYTES // per_row), (budget - fixed) // per_row)
        if most >= min(rows, MIN_CHUNK_ROWS):
            return MemoryPlan(budget, whole, fixed + most * per_row, most)
        whole = fixed + min(rows, MIN_CHUNK_ROWS) * per_row
        how = f"streamed in chunks of {min(rows, MIN_CHUNK_ROWS)} rows"
    raise ResourceLimitError(
        f"job {plan.spec.job_id} ({plan.spec.program}) needs about {_mib(whole)} of memory on {server} "
        f"({how}), more than its per-job memory budget of {_mib(budget)} (mpc server --job-memory-bytes); "
        + (
            "its outputs alone are too large for it: ask for fewer rows"
            if streamable
            else "this program cannot stream its inputs: run it on fewer rows or columns"
        )
    )


class _Sizes:
    """Byte counts of a job's parts, from its plan."""

    def __init__(self, plan: JobPlan) -> None:
        self.plan = plan
        self.element = ring_for_bits(plan.program_plan.first.info.ring_bits).element_bytes
        self.views = program_view(plan.inputs, plan.layout)
        program = plan.program
        self.row_roles = set(program.streamed_roles) if isinstance(program, RowChunked) else set()

    def _held(self, dataset: DatasetSummary, view: InputView, shown: DatasetSummary) -> int:
        """Both components as loaded, and the view's copy if it makes one (``row_layout.select``)."""
        copied = view.rows is not None or view.columns is not None
        return 2 * self.element * (dataset.size + (shown.size if copied else 0))

    def _inputs(self, roles: set[str] | None = None) -> int:
        total = 0
        for role, datasets in self.plan.inputs.items():
            if roles is None or role in roles:
                views, shown = self.plan.layout.views[role], self.views[role]
                total += sum(map(self._held, datasets, views, shown))
        return total

    def _outputs(self) -> tuple[int, int]:
        """Bytes of every output's shares, with their rescales' temporaries; the largest output's elements."""
        total, largest = 0, 0
        for output in self.plan.program_plan.outputs:
            count = element_count(output.info.shape)
            rescale = 4 if output.truncate_bits else 2 if output.lift_bits else 0
            total += (2 + rescale) * count * self.element
            largest = max(largest, count)
        return total, largest

    def _wire(self, elements: int) -> int:
        """The pieces of ``elements`` outputs on the wire: a send copy and a receive buffer each."""
        piece = min(elements, PIECE_ELEMENTS)
        return 2 * min(WINDOW, -(-elements // piece)) * piece * self.element

    def whole(self) -> int:
        """The peak with every input loaded whole."""
        outputs, largest = self._outputs()
        base = JOB_OVERHEAD_BYTES + self._inputs() + outputs
        if self.row_roles:  # a piece's terms at a time (``row_chunks``)
            return (
                base + self._wire(largest) + CHUNK_TEMPORARIES * min(largest, PIECE_ELEMENTS) * self.element
            )
        factor = getattr(self.plan.program, "memory_temporaries", None)
        if factor is None:
            factor = TEMPORARIES.get(self.plan.spec.program, DEFAULT_TEMPORARIES)
        roles = {role.name for role in self.plan.program.roles if getattr(role, "rows", True)}
        rows = sum(2 * self.element * d.size for r, group in self.views.items() if r in roles for d in group)
        return base + int(float(factor) * rows)

    def streamed(self) -> tuple[int, int, int, int]:
        """(fixed bytes, bytes per chunk row, rows, most rows per chunk) when streaming."""
        outputs, largest = self._outputs()
        other = set(self.plan.inputs) - self.row_roles
        fixed = JOB_OVERHEAD_BYTES + self._inputs(other) + outputs + self._wire(largest)
        rows, per_row = 1, 0
        for role in self.row_roles:
            for dataset, view in zip(self.plan.inputs[role], self.views[role], strict=True):
                rows = dataset.rows
                width, chosen = element_count(dataset.shape[1:]), element_count(view.shape[1:])
                per_row += 2 * self.element * (width + (chosen if chosen != width else 0))
        output_rows = 1 if isinstance(self.plan.program, RowChunked) and self.plan.program.sums_rows else rows
        per_row += CHUNK_TEMPORARIES * self.element * max(1, largest // max(1, output_rows))
        limit = rows
        if output_rows == rows:  # chunks never span pieces
            limit = min(rows, max(1, PIECE_ELEMENTS // max(1, largest // rows)))
        return fixed, per_row, rows, limit


@dataclass(frozen=True, eq=False)
class LoadedInputs:
    """A job's inputs as a server holds them: loaded whole, and (when streamed) the row inputs' streams."""

    whole: BoundInputs
    memory: MemoryPlan
    streams: Streams | None = None

    def close(self) -> None:
        """Close the streams' files (also when the job never ran)."""
        for group in (self.streams or {}).values():
            for stream in group:
                stream.rows.close()


async def load_inputs(store: DatasetStore, plan: JobPlan, budget: int, server: str) -> LoadedInputs:
    """The job's inputs of the versions agreed on, read off the event loop: whole, or streamed by rows.

    The memory plan decides which: the same decision as at admission (it
    depends on the plan and the budget only).

    Raises:
        FailedPreconditionError: a dataset was replaced since the job was planned.
    """
    memory = memory_plan(plan, budget, server)
    program = plan.program
    streamed = set(program.streamed_roles) if memory.streamed and isinstance(program, RowChunked) else set()
    loaded: dict[str, tuple[StoredDataset, ...]] = {}
    for role, summaries in plan.inputs.items():
        if role in streamed:
            continue
        datasets = []
        for summary, view in zip(summaries, plan.layout.views[role], strict=True):
            dataset = await asyncio.to_thread(store.get, summary.ref)
            if dataset.upload_id != summary.upload_id:
                raise FailedPreconditionError(f"dataset {summary.ref} was replaced while the job started")
            datasets.append(await asyncio.to_thread(select, dataset, view))  # joined rows, chosen columns
        loaded[role] = tuple(datasets)
    if not streamed:
        return LoadedInputs(loaded, memory)
    _log.info(
        "job %s streams its rows in chunks of %d: about %s of its budget of %s (%s if loaded whole)",
        plan.spec.job_id, memory.chunk_rows, _mib(memory.estimate), _mib(budget), _mib(memory.whole_bytes),
    )  # fmt: skip
    return LoadedInputs(loaded, memory, await asyncio.to_thread(open_streams, store, plan))


def open_streams(store: DatasetStore, plan: JobPlan) -> Streams:
    """The row inputs of a streamed job, opened at the versions agreed on (blocking: off the loop).

    Raises:
        FailedPreconditionError: a dataset was replaced since the job was planned.
        DataLossError: a file's header is damaged.
    """
    program = plan.program
    roles = program.streamed_roles if isinstance(program, RowChunked) else ()
    views = program_view(plan.inputs, plan.layout)
    streams: dict[str, tuple[RowStream, ...]] = {}
    opened = []
    try:
        for role in roles:
            group = []
            for summary, view, shown in zip(
                plan.inputs[role], plan.layout.views[role], views[role], strict=True
            ):
                rows = store.open_rows(summary.ref)
                opened.append(rows)
                if rows.upload_id != summary.upload_id or rows.count != summary.size:
                    raise FailedPreconditionError(f"dataset {summary.ref} was replaced while the job started")
                group.append(RowStream(shown, rows, element_count(summary.shape[1:]), view.columns))
            streams[role] = tuple(group)
    except BaseException:
        for rows in opened:
            rows.close()
        raise
    return streams


async def run_program(
    ctx: PartyContext, plan: JobPlan, inputs: LoadedInputs
) -> Mapping[str, ReplicatedShare]:
    """The program's outputs at their natural scale: its own ``run``, or streamed row by row."""
    program = plan.program
    if inputs.streams is None or not isinstance(program, RowChunked):
        return await program.run(ctx, inputs.whole, plan.program_plan)
    chunk = inputs.memory.chunk_rows
    share = await run_streamed(ctx, program, inputs.whole, inputs.streams, plan.program_plan, chunk)
    return {plan.program_plan.first.name: share}
