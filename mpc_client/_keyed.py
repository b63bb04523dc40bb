"""Keyed tables: upload rows by join token in a shuffled order, get results back by one's own ids.

``upload_table`` checks the table (``_tables``), turns its ids into the
alignment's tokens (``_align``: the ids never leave this machine), shuffles
the rows with a fresh CSPRNG permutation, and uploads the values with the
tokens; the servers then join keyed datasets on tokens. The id of every
token is written to this client's **key map** on this machine (one file per
alignment under ``key_dir``, readable by the user only), so that
``fetch_table`` can index a keyed output by the owner's own ids; a receiver
without a key map (the model owner) gets the output indexed by token.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mpc_client._align import Progress
from mpc_client._fetch import FetchRequest, fetch_output
from mpc_client._jobs import delivered
from mpc_client._progress import ProgressArg, progress_bar
from mpc_client._tables import Table, table_from_frame
from mpc_client._transport import ServerConnection
from mpc_client.types import DatasetRef, Grant, JobResult
from mpc_core.errors import InvalidArgumentError
from mpc_core.prg import random_permutation

TOKEN_BYTES = 16


def default_key_dir(identity: str) -> Path:
    """``$MPC_KEY_DIR/<identity>``, or ``~/.local/share/mpc/keys/<identity>``."""
    base = os.environ.get("MPC_KEY_DIR") or str(Path.home() / ".local" / "share" / "mpc" / "keys")
    return Path(base) / identity


class KeyMap:
    """This client's tokens and the ids they stand for, one JSON-lines file per alignment."""

    def __init__(self, directory: Path) -> None:
        """Keep the files in ``directory`` (created with mode 0700 when first written)."""
        self.directory = directory

    def _path(self, alignment: str) -> Path:
        return self.directory / (alignment.replace("/", "__") + ".jsonl")

    def add(self, alignment: str, tokens: list[bytes], ids: list[str | int]) -> None:
        """Record the id of every token (appended; the file is readable by the user only)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._path(alignment)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as handle:
            for token, value in zip(tokens, ids, strict=True):
                handle.write(json.dumps([token.hex(), value]) + "\n")

    def lookup(self) -> dict[bytes, str | int]:
        """Every token this client recorded, with its id."""
        known: dict[bytes, str | int] = {}
        for path in sorted(self.directory.glob("*.jsonl")) if self.directory.exists() else []:
            for line in path.read_text().splitlines():
                token, value = json.loads(line)
                known[bytes.fromhex(token)] = value
        return known


class KeyedCalls:
    """The keyed-table calls of :class:`~mpc_client.MpcClient`."""

    identity: str
    key_map: KeyMap

    def tokens(
        self, alignment: str, ids: Any, *, progress: Progress | None = None, timeout: float | None = None
    ) -> list[bytes]:
        raise NotImplementedError

    def _send(self, *args: Any, **kwargs: Any) -> DatasetRef:
        raise NotImplementedError

    _connections: tuple[ServerConnection, ...]
    _pool: ThreadPoolExecutor

    def _deadline(self, timeout: float | None) -> float:
        raise NotImplementedError

    def _fetch_keyed(
        self, job: JobResult, output: str, release: bool, timeout: float | None
    ) -> tuple[npt.NDArray[np.float64], bytes]:
        """An output's values and its row tokens (empty for an output that is not keyed)."""
        name = output or delivered(job)[0]
        by = job.submitter or self.identity
        request = FetchRequest(job.job_id, by, name, release, self._deadline(timeout))
        return fetch_output(self._connections, self._pool, request)

    def upload_table(
        self,
        name: str,
        table: Any,
        *,
        alignment: str,
        key: str | None = None,
        grants: Iterable[Grant] = (),
        overwrite: bool = False,
        fractional_bits: int | None = None,
        bound: float | None = None,
        progress: ProgressArg = None,
        timeout: float | None = None,
    ) -> DatasetRef:
        """Upload a keyed table: a DataFrame (``key``: its id column, or None for the index) or a ``Table``.

        Every column but the key is a feature, kept with its name (a job may
        select columns by name). The ids become ``alignment``'s tokens on this
        machine; rows go up in a fresh random order, so the servers learn
        nothing from it. Refused before anything is sent: non-numeric columns,
        NaN/NA/infinities (column and row named), duplicate or malformed ids.
        """
        data = table if isinstance(table, Table) else table_from_frame(table, key)
        with progress_bar(progress, len(data.ids), f"aligning {name}", " ids") as advance:
            tokens = self.tokens(alignment, data.ids, progress=advance, timeout=timeout)
        order = random_permutation(len(tokens))
        shuffled = b"".join(tokens[i] for i in order)
        values = data.values[order] if len(data.columns) > 1 else data.values[order, 0]
        ref = self._send(
            name, values, grants, overwrite, True, fractional_bits, bound, timeout,
            (alignment, data.columns, shuffled), progress=progress,
        )  # fmt: skip
        self.key_map.add(alignment, tokens, data.ids)
        return ref

    def fetch_table(
        self, job: JobResult, *, output: str = "", release: bool = False, timeout: float | None = None
    ) -> Any:
        """A keyed output as a pandas Series (or DataFrame), indexed by this client's ids where it knows them.

        Rows whose tokens this client's key map holds are indexed by its own
        ids (index name ``id``); a receiver that uploaded no keys gets every
        row indexed by the token in hex (index name ``token``).
        """
        import pandas as pd  # noqa: PLC0415 - pandas only for tables

        values, tokens = self._fetch_keyed(job, output, release, timeout)
        if not tokens:
            raise InvalidArgumentError(f"output {output or 'of job ' + job.job_id} is not keyed: use fetch()")
        rows = [tokens[i : i + TOKEN_BYTES] for i in range(0, len(tokens), TOKEN_BYTES)]
        known = self.key_map.lookup()
        if all(row in known for row in rows):
            index = pd.Index([known[row] for row in rows], name="id")
        else:
            index = pd.Index([row.hex() for row in rows], name="token")
        if values.ndim == 1:
            return pd.Series(values, index=index, name=output or job.outputs[0].name if job.outputs else None)
        return pd.DataFrame(values, index=index)
