"""One file per stored share: a small JSON header, its components, and their checksums.

Layout (all integers little-endian)::

    b"MPCSHARE" | u32 format version | u32 header length | header (JSON, UTF-8)
    | zero padding to a multiple of 64 bytes | first component (n elements)
    | second component (n elements) | trailer (format 3 and later)

Elements are stored in their wire encoding (``mpc_core.ring``): 8 bytes in
Z_2^64, 16 in Z_2^128; the header's ``ring_bits`` says which (format
version 1, written before Z_2^128 existed, has no such key and means Z_2^64).

A component that arrived as a PRG seed (seed-compressed upload) is stored
as that seed in the header (``"seeds"``: hex, or ``""`` for a component
stored in full) and left out of the data; reading expands it again. The
seed is exactly as secret as the component it expands to, and the file is
readable by its owner only either way. This halves what an upload writes
on the servers holding a seeded component.

Integrity at rest (format 3): the trailer holds the SHA-256 digest of
everything before the data (magic, version, header length, the header with
its seeds, padding), then one 16-byte checksum per component over its
stored bytes (over nothing for a component stored as a seed): its GMAC
(``mpc_core.tags``: AES-128-GCM, empty plaintext, the bytes as associated
data) under a random key the header records (``"checksum_keys"``, one per
component). With the key fixed before the damage, GHASH misses a damaged
component with probability at most about n / 2^128 for n 16-byte blocks,
and it runs at memory speed (about 28 GB/s here with hardware GHASH,
15x SHA-256), so the write and read paths stay as fast as before. Every
byte but the trailer is covered, and a damaged trailer fails the check too.

The header digest is checked when a store indexes the file at start
(cheap: only the header and the trailer are read), everything whenever
the shares are read (:func:`read`); a mismatch is :class:`CorruptFileError`,
which the stores report as ``DataLossError`` naming the server and the
dataset or output, never as a value. These are checksums against bit rot,
torn or misdirected writes, not a defence against whoever can rewrite the
file: the keys are in it, and a MAC key kept on the same server would not
stop such an attacker either (a server whose shares are changed deviates
from the protocol, which is for the protocol's checks to catch). Files of
formats 1 and 2 carry no checksums: they are still read, unchecked, and
replaced by format 3 files when rewritten (an upload with overwrite).

Writes are atomic: a file is created under ``tmp/``, filled, flushed and
fsynced, then renamed into place and the directory fsynced, so a crash at
any point leaves either the old file or the new one, never a half-written
dataset. A write that fails (disk full: :class:`DiskFullError`, any other
I/O error: :class:`StorageWriteError`) removes its temporary file before
raising. Reads load both components with one read (``numpy.fromfile``);
``share_ranges`` reads them in ranges of elements instead, with the same
checks once the last range is read.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from mpc_core import tags
from mpc_core.errors import InvalidArgumentError, MpcError, ResourceLimitError
from mpc_core.prg import KEY_BYTES, prg_elements
from mpc_core.ring import Ring, RingArray, ring_for_bits, ring_of
from mpc_server.service.storage_state import DISK_FULL_ERRNOS

MAGIC = b"MPCSHARE"
FORMAT_VERSION = 3
CHECKED_SINCE = 3
"""The first format version with checksums (earlier ones are read unchecked)."""
READABLE_VERSIONS = (1, 2, 3)
_PREFIX = struct.Struct("<8sII")
_ALIGN = 64
DIGEST_BYTES = 32
TRAILER_BYTES = DIGEST_BYTES + 2 * tags.TAG_BYTES


class StorageError(MpcError):
    """A stored file is unreadable or does not match its header."""


class CorruptFileError(StorageError):
    """A share file is damaged: truncated, malformed, or a checksum does not match."""

    def __init__(self, path: Path, detail: str) -> None:
        """Record which file and what is wrong with it (``detail`` names no secret)."""
        self.path = path
        self.detail = detail
        super().__init__(f"{path} {detail}")


class StorageWriteError(StorageError):
    """A share file could not be written (an I/O error other than a full disk); nothing was kept."""

    def __init__(self, message: str, os_error: OSError) -> None:
        """Keep the operating system's error for the storage state."""
        self.os_error = os_error
        super().__init__(message)


class DiskFullError(ResourceLimitError):
    """The disk (or quota) holding the server's data is full; nothing of the write was kept."""

    def __init__(self, message: str, os_error: OSError) -> None:
        """Keep the operating system's error for the storage state."""
        self.os_error = os_error
        super().__init__(message)


WriteFailure = (DiskFullError, StorageWriteError)
"""What :func:`write_temp` and :func:`publish` raise when the disk refuses."""


def write_failure(what: str, nbytes: int, error: OSError) -> DiskFullError | StorageWriteError:
    """The error to raise for an ``OSError`` while storing ``what`` (e.g. ``dataset x on server-1``)."""
    reason = os.strerror(error.errno) if error.errno else str(error)
    if error.errno in DISK_FULL_ERRNOS:
        return DiskFullError(
            f"disk full: cannot store {what} ({nbytes} bytes: {reason}); nothing of it was kept: "
            "free space on that server's data volume and retry",
            error,
        )
    return StorageWriteError(f"cannot store {what}: {reason}; nothing of it was kept", error)


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


_BLOCK_BYTES = 1 << 20


def _blocks(data: memoryview | None) -> list[memoryview]:
    """``data`` in pieces of a MiB (none for ``None``)."""
    if data is None:
        return []
    return [data[start : start + _BLOCK_BYTES] for start in range(0, data.nbytes, _BLOCK_BYTES)]


def write_temp(
    tmp_dir: Path,
    header: dict[str, Any],
    first: RingArray,
    second: RingArray,
    seeds: tuple[bytes, bytes] = NO_SEEDS,
    *,
    what: str = "a share file",
) -> Path:
    """Write a whole share file with its checksums under ``tmp_dir`` and fsync it (not yet visible).

    A component with a non-empty entry in ``seeds`` is stored as that seed.

    Raises:
        DiskFullError: the disk is full (``what`` names the file in the message).
        StorageWriteError: another I/O error. Either way the temporary file is gone.
    """
    ring = ring_of(first)
    keys = (secrets.token_bytes(tags.MAC_KEY_BYTES), secrets.token_bytes(tags.MAC_KEY_BYTES))
    full = {
        **header,
        "count": int(first.size),
        "ring_bits": ring.bits,
        "seeds": [seed.hex() for seed in seeds],
        "checksum_keys": [key.hex() for key in keys],
    }
    encoded = json.dumps(full, sort_keys=True).encode()
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(encoded)) + encoded
    start = prefix + bytes(_data_offset(len(encoded)) - len(prefix))
    parts = [
        None if seed else ring.wire_bytes(component)
        for component, seed in zip((first, second), seeds, strict=True)
    ]
    size = len(start) + sum(part.nbytes for part in parts if part is not None) + TRAILER_BYTES
    temp = tmp_dir / f"{secrets.token_hex(8)}.part"
    try:
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(start)
            checksums = [hashlib.sha256(start).digest()]
            for part, key in zip(parts, keys, strict=True):
                tagger = tags.Tagger(key)
                for block in _blocks(part):  # each block checksummed while in the cache
                    tagger.update(block)
                    handle.write(block)
                checksums.append(tagger.tag())
            handle.write(b"".join(checksums))
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise write_failure(what, size, exc) from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def publish(temp: Path, target: Path, *, what: str = "a share file") -> None:
    """Atomically move a finished file into place and make that durable.

    Raises:
        DiskFullError, StorageWriteError: the rename could not be made (the
            caller removes ``temp``); the old file, if any, is unchanged.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, target)
        fsync_directory(target.parent)
    except OSError as exc:
        raise write_failure(what, 0, exc) from None


@dataclass(frozen=True)
class Layout:
    """What a share file's header and trailer say (checked against its size)."""

    header: dict[str, Any]
    version: int
    offset: int
    """Where the data begins."""
    ring: Ring
    seeds: tuple[bytes, bytes]
    trailer: tuple[bytes, bytes, bytes] | None
    """The header's digest and the components' checksums; None before format 3: unchecked."""
    checksum_keys: tuple[bytes, bytes] = (b"", b"")

    @property
    def count(self) -> int:
        """Elements per component."""
        return int(self.header["count"])

    @property
    def stored(self) -> int:
        """Components stored in full (the others as seeds)."""
        return sum(not seed for seed in self.seeds)

    @property
    def checked(self) -> bool:
        """Whether the file carries checksums."""
        return self.trailer is not None


def _inspect(handle: IO[bytes], path: Path) -> Layout:
    start = handle.read(_PREFIX.size)
    if len(start) != _PREFIX.size:
        raise CorruptFileError(path, "is truncated")
    magic, version, length = _PREFIX.unpack(start)
    if magic != MAGIC or version not in READABLE_VERSIONS:
        raise CorruptFileError(path, f"is not a share file of version {READABLE_VERSIONS}")
    raw = handle.read(length)
    offset = _data_offset(length)
    trailer = None
    if version >= CHECKED_SINCE:
        raw_start = start + raw + handle.read(offset - _PREFIX.size - length)
        handle.seek(0, os.SEEK_END)
        if handle.tell() < offset + TRAILER_BYTES:
            raise CorruptFileError(path, "is truncated")
        handle.seek(-TRAILER_BYTES, os.SEEK_END)
        ends = handle.read(TRAILER_BYTES)
        middle = DIGEST_BYTES + tags.TAG_BYTES
        trailer = (ends[:DIGEST_BYTES], ends[DIGEST_BYTES:middle], ends[middle:])
        if hashlib.sha256(raw_start).digest() != trailer[0]:
            raise CorruptFileError(path, "failed its checksum (its header is damaged)")
    try:
        header: dict[str, Any] = json.loads(raw)
        int(header["count"])
    except (ValueError, KeyError, TypeError):
        raise CorruptFileError(path, "has a corrupt header") from None
    keys = _checksum_keys(path, header) if trailer is not None else (b"", b"")
    layout = Layout(
        header, version, offset, ring_of_header(path, header), seeds_of(path, header), trailer, keys
    )
    size = offset + layout.stored * layout.count * layout.ring.element_bytes
    size += TRAILER_BYTES if layout.checked else 0
    if os.fstat(handle.fileno()).st_size != size:
        raise CorruptFileError(path, f"does not hold the {layout.count} elements its header promises")
    return layout


def inspect(path: Path) -> Layout:
    """The header of a share file, checked against its size and (format 3) its header digest.

    Raises:
        CorruptFileError: the file is damaged.
        FileNotFoundError: there is no such file.
    """
    with path.open("rb") as handle:
        return _inspect(handle, path)


def inspect_open(handle: IO[bytes], path: Path) -> Layout:
    """:func:`inspect` on a file opened for reading, left open (``share_ranges`` reads it in ranges)."""
    return _inspect(handle, path)


def read_header(path: Path) -> tuple[dict[str, Any], int]:
    """The header of a share file and the byte offset of its data."""
    layout = inspect(path)
    return layout.header, layout.offset


def seeds_of(path: Path, header: dict[str, Any]) -> tuple[bytes, bytes]:
    """The two component seeds a header records (``b""``: stored in full)."""
    try:
        first, second = (bytes.fromhex(seed) for seed in header.get("seeds", ["", ""]))
    except (TypeError, ValueError):
        raise CorruptFileError(path, "has malformed seeds") from None
    if any(seed and len(seed) != KEY_BYTES for seed in (first, second)):
        raise CorruptFileError(path, "has seeds of the wrong length")
    return first, second


def _checksum_keys(path: Path, header: dict[str, Any]) -> tuple[bytes, bytes]:
    try:
        first, second = (bytes.fromhex(key) for key in header["checksum_keys"])
    except (KeyError, TypeError, ValueError):
        raise CorruptFileError(path, "has malformed checksum keys") from None
    if len(first) != tags.MAC_KEY_BYTES or len(second) != tags.MAC_KEY_BYTES:
        raise CorruptFileError(path, "has checksum keys of the wrong length")
    return first, second


def ring_of_header(path: Path, header: dict[str, Any]) -> Ring:
    """The ring a share file's elements belong to (Z_2^64 for format version 1)."""
    try:
        return ring_for_bits(int(header.get("ring_bits", 64)))
    except (InvalidArgumentError, TypeError, ValueError):
        raise CorruptFileError(path, "names an unknown ring") from None


def check(path: Path) -> dict[str, Any]:
    """The header of a share file whose size (and header digest) matches it (no data is read)."""
    return inspect(path).header


def read(path: Path) -> tuple[dict[str, Any], RingArray, RingArray]:
    """Header and both components of a share file, read into memory and checked.

    Raises:
        CorruptFileError: the file is damaged (a checksum does not match).
    """
    with path.open("rb") as handle:
        layout = _inspect(handle, path)
        count, ring = layout.count, layout.ring
        words = layout.stored * count * ring.words_per_element
        handle.seek(layout.offset)
        data = np.fromfile(handle, dtype="<u8", count=words)
    if data.size != words:
        raise CorruptFileError(path, "ended early")
    if layout.trailer is not None:
        per_component = count * ring.words_per_element
        stored = iter(range(layout.stored))
        checks = zip(layout.seeds, layout.checksum_keys, layout.trailer[1:], strict=True)
        for seed, key, expected in checks:
            part = data[0:0] if seed else data[next(stored) * per_component :][:per_component]
            if not tags.same_tag(tags.tag(key, part.view(np.uint8).data), expected):
                raise CorruptFileError(path, "failed its checksum (its shares are damaged)")
    elements = ring.from_words(data.astype(np.uint64, copy=False))
    components = []
    for seed in layout.seeds:
        if seed:
            components.append(prg_elements(ring, seed, count))
        else:
            components.append(elements[:count])
            elements = elements[count:]
    return layout.header, components[0], components[1]


def remove(path: Path) -> None:
    """Delete a share file durably (no error if it is already gone)."""
    try:
        path.unlink()
    except FileNotFoundError:
        return  # nothing to make durable (e.g. an output never written)
    fsync_directory(path.parent)
