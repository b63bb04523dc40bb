"""Handing job outputs to their receiver, and to nobody else."""

from __future__ import annotations

from collections.abc import Callable

from mpc_core.errors import NotFoundError
from mpc_server.service.model import StoredOutput, output_key
from mpc_server.service.store import OutputStore


class OutputService:
    """Looks up output shares for the identity allowed to fetch them."""

    def __init__(self, outputs: OutputStore, on_activity: Callable[[], None] = lambda: None) -> None:
        """Serve outputs from ``outputs``.

        ``on_activity`` is called while an output streams out, so that
        background writes of outputs (``DeferredWriter``) wait: an output
        fetched with release is then never written at all.
        """
        self._outputs = outputs
        self.activity = on_activity

    def fetch(self, requester: str, submitter: str, job_id: str, output: str = "") -> StoredOutput:
        """This server's share of one output of ``submitter``'s job ``job_id``, for its receiver.

        ``output`` names it (empty: the first output the job delivered).

        Raises:
            NotFoundError: no such output here, or ``requester`` is not its
                receiver (the same answer: nobody learns which job ids exist).
        """
        keys = self._outputs.outputs_of(submitter, job_id)
        key = output_key(submitter, job_id, output) if output else next(iter(keys), "")
        try:
            stored = self._outputs.get(key) if key in keys else None
        except NotFoundError:
            stored = None
        if stored is None or stored.receiver != requester:
            raise NotFoundError(
                f"no output of job {job_id} for {requester} (never computed, released or expired)"
            )
        return stored

    def release(self, requester: str, submitter: str, job_id: str, output: str = "") -> None:
        """Delete the output once its receiver has it all."""
        stored = self.fetch(requester, submitter, job_id, output)
        self._outputs.delete(stored.key)
