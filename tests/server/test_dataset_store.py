"""Dataset files: seed-compressed storage, reopening, damaged files."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import numpy as np
import pytest

from mpc_core.errors import NotFoundError
from mpc_core.prg import prg_elements
from mpc_core.ring import RING64, RING128, Ring
from mpc_server.service import share_files
from mpc_server.service.grants import Grant
from mpc_server.service.model import DatasetRef
from mpc_server.service.store import FileDatasetStore

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
    assert _file(tmp_path).stat().st_size == offset + stored * COUNT * ring.element_bytes
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
    data = path.read_bytes()[offset:]
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
