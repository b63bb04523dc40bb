"""A dataset's share read in ranges of elements: from memory, or from its file with checksums.

A job that streams its inputs (``service.chunks``) reads every component of
a dataset in consecutive ranges, so that it never holds more than one range
of it. :class:`FileRows` reads a share file (``share_files``) that way:

* a stored component's range is one positioned read of exactly its bytes;
* a component stored as a PRG seed is expanded for that range only
  (``mpc_core.prg.prg_elements_range``: AES-CTR started at the range's
  block), never from its start;
* the checksum of each component covers the whole component, so the
  ranges must be read in order, each starting where the last one ended;
  their bytes are fed to an incremental GMAC as they are read, and
  :meth:`FileRows.verify`, once the last range is read, compares the tags
  with the file's trailer (the header's digest was checked when the file
  was opened). A mismatch is :class:`~share_files.CorruptFileError` (or
  what the store makes of it: ``DataLossError`` naming the dataset); the
  caller must not release anything computed from the ranges before
  ``verify`` has passed (``programs.row_chunks`` holds back the job's last
  message until then).

:class:`MemoryRows` gives the same interface over components already in
memory (a cached or wholly loaded dataset). Both are blocking: use them in
worker threads.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from mpc_core import tags
from mpc_core.errors import InvalidArgumentError
from mpc_core.prg import prg_elements_range
from mpc_core.ring import RingArray
from mpc_server.service import share_files


class Rows(Protocol):
    """Ranges of elements of both components of one stored share."""

    @property
    def count(self) -> int:
        """Elements per component."""
        ...

    @property
    def upload_id(self) -> bytes:
        """The version of the dataset read."""
        ...

    def read(self, start: int, stop: int) -> tuple[RingArray, RingArray]:
        """Elements ``[start, stop)`` of both components; ranges in order, each where the last ended."""
        ...

    def verify(self) -> None:
        """Check the checksums once every element was read (raises :class:`CorruptFileError`)."""
        ...

    def close(self) -> None:
        """Release the file, if any."""
        ...


class MemoryRows:
    """:class:`Rows` over components in memory (views, no copies; nothing to verify)."""

    def __init__(self, first: RingArray, second: RingArray, upload_id: bytes) -> None:
        """Read ranges of ``first`` and ``second`` (flat arrays of equal size)."""
        self._first, self._second = first.reshape(-1), second.reshape(-1)
        self._upload_id = upload_id

    @property
    def count(self) -> int:
        """Elements per component."""
        return int(self._first.size)

    @property
    def upload_id(self) -> bytes:
        """The version of the dataset."""
        return self._upload_id

    def read(self, start: int, stop: int) -> tuple[RingArray, RingArray]:
        """Views of elements ``[start, stop)``."""
        return self._first[start:stop], self._second[start:stop]

    def verify(self) -> None:
        """Nothing to check: the components were checked when they were read."""

    def close(self) -> None:
        """Nothing to release."""


def _same(error: share_files.CorruptFileError) -> Exception:
    return error


class FileRows:
    """:class:`Rows` read from a share file, checked as described in the module docstring."""

    def __init__(
        self, path: Path, damaged: Callable[[share_files.CorruptFileError], Exception] = _same
    ) -> None:
        """Open ``path`` and check its header.

        ``damaged`` turns a :class:`~share_files.CorruptFileError` (when
        opening, reading or verifying) into the error to raise, e.g. the
        store's ``DataLossError`` naming the server and the dataset.

        Raises:
            FileNotFoundError: there is no such file.
        """
        self._path = path
        self._damaged = damaged
        self._handle = path.open("rb", buffering=0)
        try:
            self.layout = share_files.inspect_open(self._handle, path)
        except share_files.CorruptFileError as exc:
            self._handle.close()
            raise damaged(exc) from None
        except BaseException:
            self._handle.close()
            raise
        layout = self.layout
        self._taggers = [tags.Tagger(key) for key in layout.checksum_keys] if layout.checked else None
        stored = [index for index, seed in enumerate(layout.seeds) if not seed]
        self._slot = {component: slot for slot, component in enumerate(stored)}
        self._position = 0
        self._intact: bool | None = None

    @property
    def count(self) -> int:
        """Elements per component."""
        return self.layout.count

    @property
    def upload_id(self) -> bytes:
        """The version the file holds (its header's upload id)."""
        return bytes.fromhex(str(self.layout.header.get("upload_id", "")))

    def read(self, start: int, stop: int) -> tuple[RingArray, RingArray]:
        """Elements ``[start, stop)`` of both components, fed to the checksums."""
        if start != self._position or not start <= stop <= self.count:
            raise InvalidArgumentError(f"share file ranges are read in order: got [{start}, {stop})")
        first, second = (self._component(j, start, stop) for j in range(2))
        self._position = stop
        return first, second

    def _component(self, component: int, start: int, stop: int) -> RingArray:
        layout, ring = self.layout, self.layout.ring
        seed = layout.seeds[component]
        if seed:
            return prg_elements_range(ring, seed, start, stop)
        words = np.empty((stop - start) * ring.words_per_element, dtype="<u8")
        where = layout.offset + (self._slot[component] * self.count + start) * ring.element_bytes
        view = words.view(np.uint8)
        self._handle.seek(where)
        done = 0
        while done < view.size:  # one read, unless the kernel returns a short one
            got = self._handle.readinto(view[done:].data)
            if not got:
                raise self._damaged(share_files.CorruptFileError(self._path, "ended early"))
            done += got
        if self._taggers is not None:
            self._taggers[component].update(view.data)
        return ring.from_words(words.astype(np.uint64, copy=False))

    def verify(self) -> None:
        """Compare the components' checksums with the trailer, after the last range."""
        if self._position != self.count:
            raise InvalidArgumentError("a share file is verified after its last range was read")
        trailer = self.layout.trailer
        if trailer is None or self._taggers is None:
            return  # formats 1 and 2: no checksums (``share_files``)
        if self._intact is None:  # a tag is taken once
            pairs = zip(self._taggers, trailer[1:], strict=True)
            self._intact = all([tags.same_tag(tagger.tag(), expected) for tagger, expected in pairs])
        if not self._intact:
            error = share_files.CorruptFileError(self._path, "failed its checksum (its shares are damaged)")
            raise self._damaged(error)

    def close(self) -> None:
        """Close the file."""
        self._handle.close()
