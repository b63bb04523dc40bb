"""Durable output storage: retention by age and bytes, release, restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from mpc_core.errors import NotFoundError
from mpc_core.sharing import ReplicatedShare
from mpc_server.service.model import OutputInfo, StoredOutput
from mpc_server.service.output_store import DeferredWriter, FileOutputStore, OutputRetention


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _output(job_id: str, words: int) -> StoredOutput:
    first = np.arange(words, dtype=np.uint64)
    return StoredOutput(
        job_id, "model-owner", OutputInfo((words,), 32, 64), ReplicatedShare(first, first + 1), b"d" * 32
    )


def test_outputs_expire_after_the_retention_age(tmp_path: Path) -> None:
    clock = Clock()
    store = FileOutputStore(tmp_path, OutputRetention(max_age_seconds=10), clock)
    store.put(_output("a", 4))
    clock.now += 5
    store.put(_output("b", 4))
    clock.now += 7
    with pytest.raises(NotFoundError, match="expired"):
        store.get("a")
    assert store.get("b").job_id == "b"
    assert store.stored_bytes == 64
    assert not (tmp_path / "outputs" / "a.share").exists()


def test_the_byte_cap_evicts_the_oldest_first(tmp_path: Path) -> None:
    store = FileOutputStore(tmp_path, OutputRetention(max_bytes=200))
    for name in ("a", "b", "c"):
        store.put(_output(name, 5))  # 80 bytes each
    with pytest.raises(NotFoundError):
        store.get("a")
    assert [store.get(n).job_id for n in ("b", "c")] == ["b", "c"]
    assert store.stored_bytes == 160


def test_delete_is_idempotent_and_removes_the_file(tmp_path: Path) -> None:
    store = FileOutputStore(tmp_path)
    store.put(_output("a", 1))
    store.delete("a")
    store.delete("a")
    assert store.stored_bytes == 0
    assert list((tmp_path / "outputs").iterdir()) == []


def test_outputs_survive_a_restart_with_their_values(tmp_path: Path) -> None:
    clock = Clock()
    FileOutputStore(tmp_path, clock=clock).put(_output("kept", 3))
    reopened = FileOutputStore(tmp_path, clock=clock)
    output = reopened.get("kept")
    assert output.share.first.tolist() == [0, 1, 2] and output.share.second.tolist() == [1, 2, 3]
    assert output.info == OutputInfo((3,), 32, 64) and output.job_digest == b"d" * 32
    clock.now += 7200  # past the default age: dropped when next looked at
    with pytest.raises(NotFoundError):
        FileOutputStore(tmp_path, clock=clock).get("kept")


def test_half_written_files_are_cleaned_at_start(tmp_path: Path) -> None:
    (tmp_path / "tmp" / "outputs").mkdir(parents=True)
    (tmp_path / "tmp" / "outputs" / "x.part").write_bytes(b"garbage")
    FileOutputStore(tmp_path)
    assert list((tmp_path / "tmp" / "outputs").iterdir()) == []


def test_background_persistence_writes_only_kept_outputs(tmp_path: Path) -> None:
    store = FileOutputStore(tmp_path)
    store.put(_output("later", 2), durable=False)
    assert store.get("later").job_id == "later"
    assert not (tmp_path / "outputs" / "later.share").exists()
    store.persist("later")
    assert FileOutputStore(tmp_path).get("later").share.second.tolist() == [1, 2]
    store.put(_output("released", 2), durable=False)
    store.delete("released")
    store.persist("released")  # released before it was written: nothing appears
    assert not (tmp_path / "outputs" / "released.share").exists()
    assert list((tmp_path / "tmp" / "outputs").iterdir()) == []


def test_the_deferred_writer_writes_kept_outputs_and_drops_unwanted_ones(tmp_path: Path) -> None:
    store = FileOutputStore(tmp_path)

    async def main() -> tuple[bool, bool]:
        writer = DeferredWriter(store, quiet_seconds=0.01, max_delay_seconds=0.05)
        for job_id in ("kept", "returned"):
            store.put(_output(job_id, 2), durable=False)
            writer.add(job_id)
        writer.add("returned", keep=False)  # its receiver has it and wants no copy
        present_before = store.get("returned").job_id == "returned"  # retries still find it
        await writer.flush()
        return present_before, (tmp_path / "outputs" / "returned.share").exists()

    present_before, written = asyncio.run(main())
    assert present_before and not written
    assert FileOutputStore(tmp_path).get("kept").share.first.tolist() == [0, 1]
    with pytest.raises(NotFoundError):
        store.get("returned")
