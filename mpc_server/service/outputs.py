"""Handing job outputs to their receiver, and to nobody else."""

from __future__ import annotations

from collections.abc import Callable

from mpc_core.errors import PermissionDeniedError
from mpc_server.service.model import StoredOutput
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

    def fetch(self, requester: str, job_id: str) -> StoredOutput:
        """This server's share of ``job_id``'s output, if ``requester`` may have it.

        Raises:
            NotFoundError: no output for ``job_id`` on this server.
            PermissionDeniedError: ``requester`` is not the job's receiver.
        """
        output = self._outputs.get(job_id)
        if output.receiver != requester:
            raise PermissionDeniedError(
                f"the output of job {job_id} is for its receiver only, not {requester}"
            )
        return output

    def release(self, requester: str, job_id: str) -> None:
        """Delete ``job_id``'s output once its receiver has it all."""
        self.fetch(requester, job_id)
        self._outputs.delete(job_id)
