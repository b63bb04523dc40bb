"""Dataset files: seed-compressed storage, reopening, damaged files, checksums, a full disk."""

from __future__ import annotations

import errno
import itertools
import json
import os
import secrets
from pathlib import Path

import numpy as np
import pytest

from mpc_core.errors import (
    AlreadyExistsError,
    DataLossError,
    InvalidArgumentError,
    NotFoundError,
    ResourceLimitError,
)
from mpc_core.prg import prg_elements
from mpc_core.ring import RING64, RING128, Ring
from mpc_server.service import share_files
from mpc_server.service.grants import Grant
from mpc_server.service.model import DatasetRef
from mpc_server.service.share_ranges import FileRows, MemoryRows, Rows
from mpc_server.service.storage_state import StorageState
from mpc_server.service.store import FileDatasetStore, PendingDataset

COUNT = 1000
REF = DatasetRef("bank-1", "income")


def _store_one(root: Path, seeds: tuple[bytes, bytes], ring: Ring = RING128) -> tuple[np.ndarray, np.ndarray]:
    """Upload one dataset whose components are given by ``seeds`` where non-empty."""
    store = FileDatasetStore(root)
    pending = store.create(
        REF,
        shape=(COUNT,),
        ring=ring,
        fractional_bits=16,
        magnitude_bits=40,
        grants=(Grant(secrets.token_bytes(16), "model-owner", "elementwise.multiply"),),
        upload_id=secrets.token_bytes(16),
        count=COUNT,
        seeds=seeds,
    )
    values = ring.mul_public(ring.from_ints([i - 500 for i in range(COUNT)]), 7 << 60)
    for seed, part in zip(seeds, (pending.first, pending.second), strict=True):
        part[:] = prg_elements(ring, seed, COUNT) if seed else values
    store.publish(pending, store.write(pending), overwrite=False)
    return pending.first.copy(), pending.second.copy()


def _file(root: Path) -> Path:
    return root / "datasets" / REF.owner / f"{REF.name}.share"


@pytest.mark.parametrize("ring", [RING64, RING128], ids=lambda r: r.name)
@pytest.mark.parametrize("seeded", [(False, False), (True, False), (False, True), (True, True)])
def test_seeded_components_are_stored_as_seeds(tmp_path: Path, seeded: tuple[bool, bool], ring: Ring) -> None:
    seeds = tuple(secrets.token_bytes(16) if flag else b"" for flag in seeded)
    first, second = _store_one(tmp_path, (seeds[0], seeds[1]), ring)
    header, offset = share_files.read_header(_file(tmp_path))
    stored = 2 - sum(seeded)
    size = offset + stored * COUNT * ring.element_bytes + share_files.TRAILER_BYTES
    assert _file(tmp_path).stat().st_size == size
    reopened = FileDatasetStore(tmp_path)  # fresh process: nothing cached
    dataset = reopened.get(REF)
    assert dataset.ring == ring
    assert dataset.magnitude_bits == 40
    assert dataset.fractional_bits == 16
    assert np.array_equal(dataset.share.first, first)
    assert np.array_equal(dataset.share.second, second)
    assert header["count"] == COUNT
    assert header["ring_bits"] == ring.bits


def test_a_version_1_file_reads_as_z2_64_without_a_bound(tmp_path: Path) -> None:
    """Files written before Z_2^128 (format 1: no ring, no bound) still load, as what they are."""
    _store_one(tmp_path, (b"", b""), RING64)
    path = _file(tmp_path)
    header, offset = share_files.read_header(path)
    data = path.read_bytes()[offset : -share_files.TRAILER_BYTES]
    for key in ("ring_bits", "magnitude_bits"):
        del header[key]
    encoded = json.dumps(header, sort_keys=True).encode()
    prefix = share_files._PREFIX.pack(share_files.MAGIC, 1, len(encoded)) + encoded
    path.write_bytes(prefix + bytes(share_files._data_offset(len(encoded)) - len(prefix)) + data)
    dataset = FileDatasetStore(tmp_path).get(REF)
    assert dataset.ring == RING64
    assert dataset.magnitude_bits is None


def test_a_file_whose_size_disagrees_with_its_seeds_is_ignored_at_start(tmp_path: Path) -> None:
    _store_one(tmp_path, (secrets.token_bytes(16), b""))
    path = _file(tmp_path)
    header, offset = share_files.read_header(path)
    data = path.read_bytes()[offset:]
    header["seeds"] = ["", ""]  # now claims both components are in the file
    encoded = json.dumps(header, sort_keys=True).encode()
    prefix = share_files._PREFIX.pack(share_files.MAGIC, share_files.FORMAT_VERSION, len(encoded)) + encoded
    padded = prefix + bytes(share_files._data_offset(len(encoded)) - len(prefix))
    path.write_bytes(padded + data)
    reopened = FileDatasetStore(tmp_path)
    assert len(reopened) == 0
    with pytest.raises(NotFoundError):
        reopened.get(REF)


def test_a_malformed_seed_is_a_storage_error(tmp_path: Path) -> None:
    _store_one(tmp_path, (secrets.token_bytes(16), b""))
    path = _file(tmp_path)
    header, _ = share_files.read_header(path)
    header["seeds"] = ["zz", ""]
    with pytest.raises(share_files.StorageError, match="malformed seeds"):
        share_files.seeds_of(path, header)
    header["seeds"] = ["00" * 5, ""]
    with pytest.raises(share_files.StorageError, match="wrong length"):
        share_files.seeds_of(path, header)


# Integrity at rest: checksums, disk full.


def _flip(path: Path, position: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 1 << bit
    path.write_bytes(bytes(data))


def _positions(path: Path) -> dict[str, int]:
    """Byte positions inside each part of a stored file (both components stored in full)."""
    layout = share_files.inspect(path)
    component = COUNT * layout.ring.element_bytes
    size = path.stat().st_size
    return {
        "first component": layout.offset + 12_345 % component,
        "second component": layout.offset + component + 7,
        "last byte of data": size - share_files.TRAILER_BYTES - 1,
        "trailer": size - 5,
    }


@pytest.mark.parametrize("part", ["first component", "second component", "last byte of data", "trailer"])
def test_one_flipped_bit_in_a_stored_share_is_data_loss_not_a_value(tmp_path: Path, part: str) -> None:
    _store_one(tmp_path, (b"", b""))
    store = FileDatasetStore(tmp_path)  # indexed before the damage: only the read can tell
    _flip(_file(tmp_path), _positions(_file(tmp_path))[part], bit=3)
    with pytest.raises(DataLossError, match=r"dataset bank-1/income on this server is damaged") as caught:
        store.get(REF)
    assert "failed its checksum" in str(caught.value)
    assert caught.value.grpc_status == "DATA_LOSS"
    assert store.storage.damaged_files == 1
    assert any("1 stored share file is damaged" in p for p in store.storage.problems())


def test_a_flipped_bit_in_a_header_or_its_seeds_is_caught_too(tmp_path: Path) -> None:
    _store_one(tmp_path, (secrets.token_bytes(16), b""))
    path = _file(tmp_path)
    store = FileDatasetStore(tmp_path)
    text = path.read_bytes()
    _flip(path, text.index(b'"seeds": ["') + 12)  # inside the hex of the first seed
    with pytest.raises(DataLossError, match="its header is damaged"):
        store.get(REF)
    reopened = FileDatasetStore(tmp_path)  # at start the header digest is checked: not indexed
    assert len(reopened) == 0 and reopened.storage.damaged_files == 1
    with pytest.raises(NotFoundError):
        reopened.get(REF)


def test_a_damaged_file_stops_counting_once_replaced(tmp_path: Path) -> None:
    _store_one(tmp_path, (b"", b""))
    _flip(_file(tmp_path), _positions(_file(tmp_path))["first component"])
    store = FileDatasetStore(tmp_path)
    with pytest.raises(DataLossError):
        store.get(REF)
    pending = store.create(
        REF,
        shape=(COUNT,),
        ring=RING128,
        fractional_bits=16,
        magnitude_bits=40,
        grants=(),
        upload_id=secrets.token_bytes(16),
        count=COUNT,
    )
    pending.first[:] = RING128.from_ints(range(COUNT))
    pending.second[:] = RING128.from_ints(range(COUNT))
    store.publish(pending, store.write(pending), overwrite=True)
    assert store.storage.problems() == []
    assert np.array_equal(FileDatasetStore(tmp_path).get(REF).share.first, pending.first)


def test_files_of_format_2_without_checksums_still_load_unchecked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = _store_one(tmp_path, (secrets.token_bytes(16), b""))
    path = _file(tmp_path)
    layout = share_files.inspect(path)
    old = bytearray(path.read_bytes()[: -share_files.TRAILER_BYTES])
    old[8:12] = (2).to_bytes(4, "little")  # format 2: the same layout without the trailer
    path.write_bytes(bytes(old))
    assert not share_files.inspect(path).checked and layout.checked
    with caplog.at_level("WARNING"):
        store = FileDatasetStore(tmp_path)
    assert "1 dataset file(s) predate checksums" in caplog.text
    dataset = store.get(REF)
    assert np.array_equal(dataset.share.first, first) and np.array_equal(dataset.share.second, second)


def test_a_format_3_file_read_as_an_older_format_is_refused(tmp_path: Path) -> None:
    """A flipped bit in the version field (3 -> 2) does not make a checked file unchecked."""
    _store_one(tmp_path, (b"", b""))
    _flip(_file(tmp_path), 8, bit=0)
    reopened = FileDatasetStore(tmp_path)
    assert len(reopened) == 0 and reopened.storage.damaged_files == 1


def _disk_full(monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(share_files.os, "fsync", full)


def test_a_full_disk_leaves_no_file_and_no_locked_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileDatasetStore(tmp_path, storage=StorageState(tmp_path, "server-1"))
    with monkeypatch.context() as patched:
        _disk_full(patched)
        with pytest.raises(share_files.DiskFullError) as caught:
            _upload_into(store)
    assert isinstance(caught.value, ResourceLimitError) and caught.value.grpc_status == "RESOURCE_EXHAUSTED"
    assert str(caught.value).startswith("disk full: cannot store dataset bank-1/income on server-1")
    assert list((tmp_path / "tmp" / "datasets").iterdir()) == []
    assert any(
        p.startswith("disk full: the last write of a share file failed") for p in store.storage.problems()
    )
    _upload_into(store)  # the name is free again, and space is back
    assert store.storage.problems() == []
    assert len(FileDatasetStore(tmp_path)) == 1


def test_a_stale_discard_does_not_free_a_later_upload_of_the_name(tmp_path: Path) -> None:
    store = FileDatasetStore(tmp_path)
    first = _pending(store)
    store.discard(first)
    second = _pending(store)
    store.discard(first)  # the first upload's late clean-up
    with pytest.raises(AlreadyExistsError, match="in progress"):
        _pending(store)
    store.discard(second)
    _pending(store)


def _pending(store: FileDatasetStore) -> PendingDataset:
    return store.create(
        REF,
        shape=(COUNT,),
        ring=RING128,
        fractional_bits=16,
        magnitude_bits=40,
        grants=(),
        upload_id=secrets.token_bytes(16),
        count=COUNT,
    )


def _upload_into(store: FileDatasetStore) -> None:
    pending = _pending(store)
    pending.first[:] = RING128.from_ints(range(COUNT))
    pending.second[:] = RING128.from_ints(range(COUNT))
    store.publish(pending, store.write(pending), overwrite=True)


@pytest.mark.parametrize("seeded", [(False, False), (True, False)], ids=["full", "one seed"])
def test_no_single_bit_flip_anywhere_in_a_file_goes_unnoticed(
    tmp_path: Path, seeded: tuple[bool, bool]
) -> None:
    """Every byte of a small file, one flipped bit each: the read fails, it never returns other shares."""
    store = FileDatasetStore(tmp_path)
    pending = store.create(
        REF,
        shape=(3,),
        ring=RING64,
        fractional_bits=16,
        magnitude_bits=40,
        grants=(),
        upload_id=secrets.token_bytes(16),
        count=3,
        seeds=(secrets.token_bytes(16) if seeded[0] else b"", b""),
    )
    pending.first[:] = prg_elements(RING64, pending.seeds[0], 3) if seeded[0] else RING64.from_ints([1, 2, 3])
    pending.second[:] = RING64.from_ints([4, 5, 6])
    store.publish(pending, store.write(pending), overwrite=False)
    path = _file(tmp_path)
    original = path.read_bytes()
    for position in range(len(original)):
        damaged = bytearray(original)
        damaged[position] ^= 1 << (position * 5 % 8)
        path.write_bytes(bytes(damaged))
        with pytest.raises(share_files.StorageError):
            share_files.read(path)


def test_low_free_space_is_a_storage_problem(tmp_path: Path) -> None:
    state = StorageState(tmp_path, "server-0")
    assert state.total_bytes > 0
    state.total_bytes, state.free_bytes = 10 << 30, 50 << 20  # as if measured: 50 MiB of 10 GiB free
    assert state.problems() == ["free space on the data volume is low (below 64 MiB): free space there"]
    state.total_bytes = 1 << 30  # on a small volume the threshold is 1 % of it
    assert state.problems() == []
    state.free_bytes = 5 << 20
    assert state.problems() == ["free space on the data volume is low (below 10 MiB): free space there"]


# Ranged reads (``share_ranges``): a dataset read in row chunks, checked once its last chunk is read.


def _read_in_ranges(rows: Rows, edges: list[int]) -> tuple[np.ndarray, np.ndarray]:
    parts = [rows.read(a, b) for a, b in itertools.pairwise(edges)]
    rows.verify()
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


EDGES = [0, 1, 2, 333, 334, 900, COUNT]


@pytest.mark.parametrize("ring", [RING64, RING128], ids=lambda r: r.name)
@pytest.mark.parametrize("seeded", [(False, False), (True, False), (False, True), (True, True)])
def test_ranges_read_from_the_file_are_the_components(
    tmp_path: Path, seeded: tuple[bool, bool], ring: Ring
) -> None:
    seeds = tuple(secrets.token_bytes(16) if flag else b"" for flag in seeded)
    first, second = _store_one(tmp_path, (seeds[0], seeds[1]), ring)
    rows = FileDatasetStore(tmp_path).open_rows(REF)  # fresh process: nothing cached, the file is read
    assert isinstance(rows, FileRows)
    assert rows.count == COUNT
    got_first, got_second = _read_in_ranges(rows, EDGES)
    rows.close()
    assert got_first.dtype == ring.dtype
    assert got_first.tobytes() == first.tobytes() and got_second.tobytes() == second.tobytes()


def test_ranges_of_a_cached_dataset_come_from_memory(tmp_path: Path) -> None:
    store = FileDatasetStore(tmp_path)
    pending = store.create(
        REF, shape=(COUNT,), ring=RING128, fractional_bits=16, magnitude_bits=40, grants=(),
        upload_id=secrets.token_bytes(16), count=COUNT,
    )  # fmt: skip
    pending.first[:] = RING128.from_ints(range(COUNT))
    pending.second[:] = RING128.from_ints(range(COUNT, 2 * COUNT))
    store.publish(pending, store.write(pending), overwrite=False)  # small: cached as published
    _file(tmp_path).unlink()  # the cache alone serves it
    rows = store.open_rows(REF)
    assert isinstance(rows, MemoryRows) and rows.upload_id == pending.summary.upload_id
    got_first, got_second = _read_in_ranges(rows, EDGES)
    assert np.array_equal(got_first, pending.first) and np.array_equal(got_second, pending.second)


def test_an_upload_over_half_the_cache_is_read_from_its_file_until_a_job_reads_it(tmp_path: Path) -> None:
    share_bytes = 2 * COUNT * RING128.dtype.itemsize
    store = FileDatasetStore(tmp_path, cache_bytes=2 * share_bytes - 1)
    pending = store.create(
        REF, shape=(COUNT,), ring=RING128, fractional_bits=16, magnitude_bits=40, grants=(),
        upload_id=secrets.token_bytes(16), count=COUNT,
    )  # fmt: skip
    pending.first[:] = RING128.from_ints(range(COUNT))
    store.publish(pending, store.write(pending), overwrite=False)
    rows = store.open_rows(REF)
    assert isinstance(rows, FileRows)  # not cached by the upload
    rows.close()
    store.get(REF)  # a job read it whole: now it is cached
    assert isinstance(store.open_rows(REF), MemoryRows)


@pytest.mark.parametrize("part", ["first component", "second component", "last byte of data", "trailer"])
def test_a_flipped_bit_is_found_when_the_last_range_is_verified(tmp_path: Path, part: str) -> None:
    """The ranges themselves come back (a job cannot tell), ``verify`` is the check: DATA_LOSS."""
    _store_one(tmp_path, (b"", b""))
    store = FileDatasetStore(tmp_path)
    _flip(_file(tmp_path), _positions(_file(tmp_path))[part], bit=5)
    rows = store.open_rows(REF)
    for a, b in itertools.pairwise(EDGES):
        rows.read(a, b)
    with pytest.raises(DataLossError, match="dataset bank-1/income on this server is damaged") as caught:
        rows.verify()
    assert "failed its checksum" in str(caught.value) and caught.value.grpc_status == "DATA_LOSS"
    with pytest.raises(DataLossError):  # and it stays damaged
        rows.verify()
    rows.close()
    assert store.storage.damaged_files == 1


def test_a_damaged_header_is_data_loss_when_the_ranges_are_opened(tmp_path: Path) -> None:
    _store_one(tmp_path, (secrets.token_bytes(16), b""))
    store = FileDatasetStore(tmp_path)
    path = _file(tmp_path)
    _flip(path, path.read_bytes().index(b'"seeds": ["') + 12)
    with pytest.raises(DataLossError, match="its header is damaged"):
        store.open_rows(REF)
    path.unlink()
    with pytest.raises(NotFoundError):
        store.open_rows(REF)


def test_ranges_are_read_in_order_and_verified_at_the_end(tmp_path: Path) -> None:
    _store_one(tmp_path, (b"", secrets.token_bytes(16)))
    rows = FileDatasetStore(tmp_path).open_rows(REF)
    rows.read(0, 10)
    with pytest.raises(InvalidArgumentError, match="in order"):
        rows.read(20, 30)  # a gap would leave bytes out of the checksum
    with pytest.raises(InvalidArgumentError, match="in order"):
        rows.read(0, 10)
    with pytest.raises(InvalidArgumentError, match="after its last range"):
        rows.verify()
    rows.read(10, COUNT)
    rows.verify()
    rows.close()


def test_an_open_range_reader_keeps_reading_the_version_it_opened(tmp_path: Path) -> None:
    """A replacement (atomic rename) does not mix two versions into one job's chunks."""
    first, _ = _store_one(tmp_path, (b"", b""))
    rows = FileDatasetStore(tmp_path).open_rows(REF)
    old_version = rows.upload_id
    head = rows.read(0, 100)[0].copy()
    _store_one(tmp_path / "other", (b"", b""))  # a different file, then moved over ours
    os.replace(_file(tmp_path / "other"), _file(tmp_path))
    tail = rows.read(100, COUNT)[0]
    rows.verify()
    rows.close()
    assert rows.upload_id == old_version
    assert np.concatenate([head, tail]).tobytes() == first.tobytes()
