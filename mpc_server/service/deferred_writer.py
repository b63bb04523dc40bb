"""Writing outputs handed over with the job's answer, later and in batches (``DeferredWriter``)."""

from __future__ import annotations

import asyncio
import logging

from mpc_server.service.store import OutputStore

_log = logging.getLogger(__name__)


class DeferredWriter:
    """Writes outputs kept with ``durable=False``, in batches, when jobs pause.

    Such outputs were already handed to their receiver with the job's
    answer; writing their server copy right away would compete with the
    next jobs for the CPU. They are written once no job has started for
    ``quiet_seconds`` (nor an output been kept or streamed out, so one
    fetched with release in the meantime is never written), and at the
    latest ``max_delay_seconds`` after the first of a batch was kept (or at
    shutdown, :meth:`flush`). Outputs their receiver wants no copy of are
    dropped at that time instead: never written, yet still there for a
    retry of the job that races the first answer.

    A write that fails (disk full, I/O error) is logged at ERROR with the
    output's key (``submitter/job id/output``) and does not stop the rest
    of the batch; the output store keeps the output in memory and records
    its loss, so that a fetch after a restart fails clearly
    (``FileOutputStore.persist``).
    """

    def __init__(
        self, store: OutputStore, quiet_seconds: float = 0.05, max_delay_seconds: float = 1.0
    ) -> None:
        """Write into ``store``."""
        self._store = store
        self._quiet = quiet_seconds
        self._max_delay = max_delay_seconds
        self._pending: dict[str, bool] = {}
        """Output keys in order, each with whether to write (True) or drop the output."""
        self._last_activity = 0.0
        self._task: asyncio.Task[None] | None = None

    def activity(self) -> None:
        """A job started: postpone writing a little."""
        self._last_activity = asyncio.get_running_loop().time()

    def add(self, key: str, *, keep: bool = True) -> None:
        """Write the output named ``key`` soon, or with ``keep=False`` drop it soon."""
        self.activity()
        self._pending[key] = keep and self._pending.get(key, True)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._write_soon())

    async def _write_soon(self) -> None:
        loop = asyncio.get_running_loop()
        first = loop.time()
        while self._pending:
            while loop.time() - self._last_activity < self._quiet and loop.time() - first < self._max_delay:
                await asyncio.sleep(self._quiet)
            batch, self._pending = self._pending, {}
            await asyncio.to_thread(self._write, batch)
            first = loop.time()

    def _write(self, batch: dict[str, bool]) -> None:
        for key, keep in batch.items():
            try:
                if keep:
                    self._store.persist(key)
                else:
                    self._store.delete(key)
            except Exception as exc:  # noqa: BLE001 - logged; one output's failure must not lose the others
                submitter, job_id, output = key.split("/")
                _log.error(
                    "background %s of output %s of job %s (submitted by %s) failed: %s; %s",
                    "write" if keep else "removal",
                    output,
                    job_id,
                    submitter,
                    exc,
                    "it stays in memory until this server restarts, after which fetching it fails"
                    if keep
                    else "its file may remain until it expires",
                )

    async def flush(self) -> None:
        """Write (or drop) everything pending now."""
        if self._task is not None:
            self._last_activity = 0.0
            self._max_delay = 0.0
            await self._task
