"""The join tokens of keyed datasets, one file per dataset version, checked when read.

Layout: ``<data>/keys/<owner>/<name>.tokens``: a JSON header line (format,
the dataset version's upload id, its alignment, the row count and the
SHA-256 of the tokens) and then the tokens, 16 bytes per row. Files are
written to ``<data>/tmp/keys`` first (an upload's: prepared in
``<data>/commits``, ``service.commit_journal``), fsynced and renamed into
place (``share_files.publish``) before the dataset itself is published, so
a published keyed dataset always has its tokens. A file whose checksum, count
or version does not match is an error naming the dataset, never a wrong
join. Recently used token arrays are cached in memory within a budget.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from mpc_core.errors import DataLossError
from mpc_server.service import share_files
from mpc_server.service.join import TOKEN_BYTES, Tokens, tokens_from_bytes
from mpc_server.service.model import DatasetRef

FORMAT = 1
SUFFIX = ".tokens"
DEFAULT_CACHE_BYTES = 128 << 20


class KeyStore:
    """Token columns of keyed datasets under ``<data>/keys``."""

    def __init__(self, root: Path, cache_bytes: int = DEFAULT_CACHE_BYTES, *, subdir: str = "keys") -> None:
        """Use ``<root>/<subdir>`` (created when first written); ``output-keys`` holds keyed outputs'."""
        self._dir = root / subdir
        self._tmp = root / "tmp" / subdir
        self._cache: OrderedDict[tuple[DatasetRef, bytes], Tokens] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._cached = 0
        self._lock = threading.Lock()

    def _path(self, ref: DatasetRef) -> Path:
        return self._dir / ref.owner / f"{ref.name}{SUFFIX}"

    def write(self, ref: DatasetRef, upload_id: bytes, alignment: str, tokens: bytes) -> None:
        """Store a version's tokens durably (blocking: run in a worker thread)."""
        self._tmp.mkdir(parents=True, exist_ok=True)
        _write_file(self._tmp, self._path(ref), upload_id, alignment, tokens)

    def prepare(self, target: Path, upload_id: bytes, alignment: str, tokens: bytes) -> None:
        """Store a version's tokens durably at ``target``, not yet in use (blocking: ``commit_journal``).

        Raises:
            OSError, DiskFullError, StorageWriteError: not written; nothing of it is left.
        """
        _write_file(target.parent, target, upload_id, alignment, tokens)

    def install(self, ref: DatasetRef, prepared: Path) -> None:
        """Make tokens stored by :meth:`prepare` those of ``ref``, atomically and durably (blocking)."""
        share_files.publish(prepared, self._path(ref), what=f"the join tokens of dataset {ref}")

    def read(self, ref: DatasetRef, upload_id: bytes, count: int) -> Tokens:
        """The tokens of version ``upload_id`` of ``ref``, checked (blocking: run in a worker thread).

        Raises:
            DataLossError: the file is missing, of another version, or
                damaged (checksum or size); names the dataset.
        """
        key = (ref, upload_id)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        tokens = self._load(ref, upload_id, count)
        with self._lock:
            self._remember(key, tokens)
        return tokens

    def _load(self, ref: DatasetRef, upload_id: bytes, count: int) -> Tokens:
        try:
            data = self._path(ref).read_bytes()
        except FileNotFoundError:
            raise DataLossError(
                f"the join tokens of keyed dataset {ref} are missing on this server"
            ) from None
        line, _, tokens = data.partition(b"\n")
        try:
            header = json.loads(line)
        except ValueError:
            header = {}
        intact = (
            header.get("upload_id") == upload_id.hex()
            and header.get("count") == count
            and len(tokens) == count * TOKEN_BYTES
            and header.get("sha256") == hashlib.sha256(tokens).hexdigest()
        )
        if not intact:
            raise DataLossError(
                f"the join tokens of keyed dataset {ref} are damaged or of another version on this server; "
                "upload the dataset again"
            )
        return tokens_from_bytes(tokens)

    def _remember(self, key: tuple[DatasetRef, bytes], tokens: Tokens) -> None:
        if tokens.nbytes > self._cache_bytes:
            return
        self._cache[key] = tokens
        self._cached += tokens.nbytes
        while self._cached > self._cache_bytes:
            _, dropped = self._cache.popitem(last=False)
            self._cached -= dropped.nbytes

    def sweep(self, alive: Callable[[DatasetRef], bool]) -> int:
        """Remove the token files of every ref ``alive`` rejects; their count (blocking).

        For ``output-keys``: the tokens of jobs none of whose outputs is kept any more.
        """
        removed = 0
        for path in self._dir.glob(f"*/*{SUFFIX}") if self._dir.is_dir() else ():
            ref = DatasetRef(path.parent.name, path.name.removesuffix(SUFFIX))
            if not alive(ref):
                self.delete(ref)
                removed += 1
        return removed

    def delete(self, ref: DatasetRef) -> None:
        """Remove a dataset's tokens (with the dataset)."""
        share_files.remove(self._path(ref))
        with self._lock:
            for key in [k for k in self._cache if k[0] == ref]:
                self._cached -= self._cache.pop(key).nbytes


def _write_file(directory: Path, target: Path, upload_id: bytes, alignment: str, tokens: bytes) -> None:
    """Write a token file under ``directory``, fsync it and rename it to ``target`` (removed on failure)."""
    header = {
        "format": FORMAT,
        "upload_id": upload_id.hex(),
        "alignment": alignment,
        "count": len(tokens) // TOKEN_BYTES,
        "sha256": hashlib.sha256(tokens).hexdigest(),
    }
    temp = directory / f"{secrets.token_hex(8)}.part"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(json.dumps(header, sort_keys=True).encode() + b"\n")
            handle.write(tokens)
            handle.flush()
            os.fsync(handle.fileno())
        share_files.publish(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
