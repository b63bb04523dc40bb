"""One file per stored share: a small JSON header, then both components.

Layout (all integers little-endian)::

    b"MPCSHARE" | u32 format version | u32 header length | header (JSON, UTF-8)
    | zero padding to a multiple of 64 bytes | first component (n x u64)
    | second component (n x u64)

Writes are atomic: a file is created under ``tmp/``, filled, flushed and
fsynced, then renamed into place and the directory fsynced, so a crash at
any point leaves either the old file or the new one, never a half-written
dataset. Reads load both components with one read (``numpy.fromfile``).
"""

from __future__ import annotations

import json
import os
import secrets
import struct
from pathlib import Path
from typing import Any

import numpy as np

from mpc_core.errors import MpcError
from mpc_core.ring import WORD_BYTES, RingArray

MAGIC = b"MPCSHARE"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sII")
_ALIGN = 64


class StorageError(MpcError):
    """A stored file is unreadable or does not match its header."""


def _data_offset(header_bytes: int) -> int:
    end = _PREFIX.size + header_bytes
    return (end + _ALIGN - 1) // _ALIGN * _ALIGN


def fsync_directory(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_temp(tmp_dir: Path, header: dict[str, Any], first: RingArray, second: RingArray) -> Path:
    """Write a whole share file under ``tmp_dir`` and fsync it (not yet visible)."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    encoded = json.dumps({**header, "count": int(first.size)}, sort_keys=True).encode()
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(encoded)) + encoded
    temp = tmp_dir / f"{secrets.token_hex(8)}.part"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(prefix + bytes(_data_offset(len(encoded)) - len(prefix)))
        for component in (first, second):
            handle.write(component.astype("<u8", copy=False).data)
        handle.flush()
        os.fsync(handle.fileno())
    return temp


def publish(temp: Path, target: Path) -> None:
    """Atomically move a finished file into place and make that durable."""
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(temp, target)
    fsync_directory(target.parent)


def read_header(path: Path) -> tuple[dict[str, Any], int]:
    """The header of a share file and the byte offset of its data."""
    with path.open("rb") as handle:
        prefix = handle.read(_PREFIX.size)
        if len(prefix) != _PREFIX.size:
            raise StorageError(f"{path} is truncated")
        magic, version, length = _PREFIX.unpack(prefix)
        if magic != MAGIC or version != FORMAT_VERSION:
            raise StorageError(f"{path} is not a version-{FORMAT_VERSION} share file")
        try:
            header: dict[str, Any] = json.loads(handle.read(length))
        except ValueError:
            raise StorageError(f"{path} has a corrupt header") from None
    return header, _data_offset(length)


def check(path: Path) -> dict[str, Any]:
    """The header of a share file whose size matches it (nothing is mapped)."""
    header, offset = read_header(path)
    count = int(header["count"])
    if path.stat().st_size != offset + 2 * count * WORD_BYTES:
        raise StorageError(f"{path} does not hold the {count} elements its header promises")
    return header


def read(path: Path) -> tuple[dict[str, Any], RingArray, RingArray]:
    """Header and both components of a share file, read into memory."""
    header = check(path)
    _, offset = read_header(path)
    count = int(header["count"])
    with path.open("rb") as handle:
        handle.seek(offset)
        data = np.fromfile(handle, dtype="<u8", count=2 * count).astype(np.uint64, copy=False)
    if data.size != 2 * count:
        raise StorageError(f"{path} ended early")
    return header, data[:count], data[count:]


def remove(path: Path) -> None:
    """Delete a share file durably (no error if it is already gone)."""
    path.unlink(missing_ok=True)
    if path.parent.exists():
        fsync_directory(path.parent)
