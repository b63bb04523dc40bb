"""Handing job outputs to their receiver, and to nobody else."""

from __future__ import annotations

from collections.abc import Callable

from mpc_core.errors import FailedPreconditionError, NotFoundError
from mpc_server.service.key_store import KeyStore
from mpc_server.service.model import DatasetRef, StoredOutput, output_key
from mpc_server.service.store import OutputStore


class OutputService:
    """Looks up output shares for the identity allowed to fetch them."""

    def __init__(
        self,
        outputs: OutputStore,
        on_activity: Callable[[], None] = lambda: None,
        *,
        keys: KeyStore | None = None,
    ) -> None:
        """Serve outputs from ``outputs``.

        ``on_activity`` is called while an output streams out, so that
        background writes of outputs (``DeferredWriter``) wait: an output
        fetched with release is then never written at all.
        """
        self._outputs = outputs
        self.activity = on_activity
        self._keys = keys

    def fetch(self, requester: str, submitter: str, job_id: str, output: str = "") -> StoredOutput:
        """This server's share of one output of ``submitter``'s job ``job_id``, for its receiver.

        ``output`` names it (empty: the first output the job delivered).

        Raises:
            NotFoundError: no such output here, or ``requester`` is not its
                receiver (the same answer: nobody learns which job ids exist).
        """
        keys = self._outputs.outputs_of(submitter, job_id)
        key = output_key(submitter, job_id, output) if output else next(iter(keys), "")
        stored = None
        if key in keys and self._outputs.receiver_of(key) == requester:  # before reading: no DATA_LOSS
            try:  # for strangers either
                stored = self._outputs.get(key)
            except NotFoundError:
                stored = None
        if stored is None or stored.receiver != requester:
            raise NotFoundError(
                f"no output of job {job_id} for {requester} (never computed, released or expired)"
            )
        return stored

    def row_tokens(self, output: StoredOutput) -> bytes:
        """A keyed output's row tokens, 16 bytes per row (blocking: run in a worker thread)."""
        if self._keys is None:
            raise FailedPreconditionError("this server keeps no row tokens")
        rows = output.info.shape[0] if output.info.shape else 1
        ref = DatasetRef(output.submitter or output.receiver, output.job_id)
        return self._keys.read(ref, output.job_digest[:16], rows).tobytes()

    def release(self, requester: str, submitter: str, job_id: str, output: str = "") -> None:
        """Delete the output once its receiver has it all."""
        stored = self.fetch(requester, submitter, job_id, output)
        self._outputs.delete(stored.key)
