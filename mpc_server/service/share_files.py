"""One file per stored share: a small JSON header, then its components.

Layout (all integers little-endian)::

    b"MPCSHARE" | u32 format version | u32 header length | header (JSON, UTF-8)
    | zero padding to a multiple of 64 bytes | first component (n elements)
    | second component (n elements)

Elements are stored in their wire encoding (``mpc_core.ring``): 8 bytes in
Z_2^64, 16 in Z_2^128; the header's ``ring_bits`` says which (format
version 1, written before Z_2^128 existed, has no such key and means Z_2^64).

A component that arrived as a PRG seed (seed-compressed upload) is stored
as that seed in the header (``"seeds"``: hex, or ``""`` for a component
stored in full) and left out of the data; reading expands it again. The
seed is exactly as secret as the component it expands to, and the file is
readable by its owner only either way. This halves what an upload writes
on the servers holding a seeded component.

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

from mpc_core.errors import InvalidArgumentError, MpcError
from mpc_core.prg import KEY_BYTES, prg_elements
from mpc_core.ring import Ring, RingArray, ring_for_bits, ring_of

MAGIC = b"MPCSHARE"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
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


NO_SEEDS = (b"", b"")


def write_temp(
    tmp_dir: Path,
    header: dict[str, Any],
    first: RingArray,
    second: RingArray,
    seeds: tuple[bytes, bytes] = NO_SEEDS,
) -> Path:
    """Write a whole share file under ``tmp_dir`` and fsync it (not yet visible).

    A component with a non-empty entry in ``seeds`` is stored as that seed.
    """
    tmp_dir.mkdir(parents=True, exist_ok=True)
    ring = ring_of(first)
    full = {
        **header,
        "count": int(first.size),
        "ring_bits": ring.bits,
        "seeds": [seed.hex() for seed in seeds],
    }
    encoded = json.dumps(full, sort_keys=True).encode()
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(encoded)) + encoded
    temp = tmp_dir / f"{secrets.token_hex(8)}.part"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(prefix + bytes(_data_offset(len(encoded)) - len(prefix)))
        for component, seed in zip((first, second), seeds, strict=True):
            if not seed:
                handle.write(ring.wire_bytes(component))
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
        if magic != MAGIC or version not in READABLE_VERSIONS:
            raise StorageError(f"{path} is not a share file of version {READABLE_VERSIONS}")
        try:
            header: dict[str, Any] = json.loads(handle.read(length))
        except ValueError:
            raise StorageError(f"{path} has a corrupt header") from None
    return header, _data_offset(length)


def seeds_of(path: Path, header: dict[str, Any]) -> tuple[bytes, bytes]:
    """The two component seeds a header records (``b""``: stored in full)."""
    try:
        first, second = (bytes.fromhex(seed) for seed in header.get("seeds", ["", ""]))
    except (TypeError, ValueError):
        raise StorageError(f"{path} has malformed seeds") from None
    if any(seed and len(seed) != KEY_BYTES for seed in (first, second)):
        raise StorageError(f"{path} has seeds of the wrong length")
    return first, second


def ring_of_header(path: Path, header: dict[str, Any]) -> Ring:
    """The ring a share file's elements belong to (Z_2^64 for format version 1)."""
    try:
        return ring_for_bits(int(header.get("ring_bits", 64)))
    except (InvalidArgumentError, TypeError, ValueError):
        raise StorageError(f"{path} names an unknown ring") from None


def check(path: Path) -> dict[str, Any]:
    """The header of a share file whose size matches it (nothing is mapped)."""
    header, offset = read_header(path)
    count = int(header["count"])
    ring = ring_of_header(path, header)
    stored = sum(not seed for seed in seeds_of(path, header))
    if path.stat().st_size != offset + stored * count * ring.element_bytes:
        raise StorageError(f"{path} does not hold the {count} elements its header promises")
    return header


def read(path: Path) -> tuple[dict[str, Any], RingArray, RingArray]:
    """Header and both components of a share file, read into memory."""
    header = check(path)
    _, offset = read_header(path)
    count = int(header["count"])
    ring = ring_of_header(path, header)
    seeds = seeds_of(path, header)
    stored = sum(not seed for seed in seeds)
    words = stored * count * ring.words_per_element
    with path.open("rb") as handle:
        handle.seek(offset)
        data = np.fromfile(handle, dtype="<u8", count=words).astype(np.uint64, copy=False)
    if data.size != words:
        raise StorageError(f"{path} ended early")
    elements = ring.from_words(data)
    components = []
    for seed in seeds:
        if seed:
            components.append(prg_elements(ring, seed, count))
        else:
            components.append(elements[:count])
            elements = elements[count:]
    return header, components[0], components[1]


def remove(path: Path) -> None:
    """Delete a share file durably (no error if it is already gone)."""
    try:
        path.unlink()
    except FileNotFoundError:
        return  # nothing to make durable (e.g. an output never written)
    fsync_directory(path.parent)
