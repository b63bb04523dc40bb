"""Durable output storage: retention by age, per-receiver quotas, release, restart, integrity."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mpc_core.errors import DataLossError, NotFoundError, ResourceLimitError
from mpc_core.sharing import ReplicatedShare
from mpc_server.service import share_files
from mpc_server.service.deferred_writer import DeferredWriter
from mpc_server.service.model import OutputInfo, StoredOutput
from mpc_server.service.output_store import FileOutputStore, OutputRetention
from mpc_server.service.share_files import DiskFullError
from mpc_server.service.storage_state import StorageState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


RECEIVER = "model-owner"


def _output(job_id: str, words: int, receiver: str = RECEIVER, submitter: str = "") -> StoredOutput:
    first = np.arange(words, dtype=np.uint64)
    share = ReplicatedShare(first, first + 1)
    return StoredOutput(
        job_id, receiver, OutputInfo((words,), 32, 64, name="out"), share, b"d" * 32, submitter
    )


def _key(job_id: str, submitter: str = RECEIVER) -> str:
    return f"{submitter}/{job_id}/out"


def _file(root: Path, job_id: str) -> Path:
    return root / "outputs" / RECEIVER / job_id / "out.share"


def test_outputs_expire_after_the_retention_age(tmp_path: Path) -> None:
    clock = Clock()
    store = FileOutputStore(tmp_path, OutputRetention(max_age_seconds=10), clock)
    store.put(_output("a", 4))
    clock.now += 5
    store.put(_output("b", 4))
    clock.now += 7
    with pytest.raises(NotFoundError, match="expired"):
        store.get(_key("a"))
    assert store.get(_key("b")).job_id == "b"
    assert store.stored_bytes == 64
    assert not _file(tmp_path, "a").exists()


def test_a_full_server_refuses_new_outputs_and_evicts_nothing(tmp_path: Path) -> None:
    store = FileOutputStore(tmp_path, OutputRetention(max_bytes=200))
    for name in ("a", "b"):
        store.check_quota(RECEIVER, 80)
        store.put(_output(name, 5))  # 80 bytes each
    with pytest.raises(ResourceLimitError, match="at most 200 bytes"):
        store.check_quota("attacker", 80)
    assert [store.get(_key(n)).job_id for n in ("a", "b")] == ["a", "b"]
    assert store.stored_bytes == 160


def test_each_client_has_its_own_quota(tmp_path: Path) -> None:
    """One client filling its quota neither evicts nor blocks another's outputs."""
    store = FileOutputStore(tmp_path, OutputRetention(max_bytes_per_client=100, max_outputs_per_client=3))
    store.put(_output("victim", 5, receiver="bank-1"))
    store.put(_output("x", 5, receiver="attacker"))
    with pytest.raises(ResourceLimitError, match="outputs kept for attacker's jobs to 160 bytes"):
        store.check_quota("attacker", 80)
    store.check_quota("bank-1", 16)  # the victim still has room
    for name in ("y", "z"):
        store.put(_output(name, 1, receiver="attacker"))
    with pytest.raises(ResourceLimitError, match="have 3 outputs"):
        store.check_quota("attacker", 16)
    assert store.get("bank-1/victim/out").share.first.tolist() == [0, 1, 2, 3, 4]
    store.delete(_key("x", "attacker"))
    store.check_quota("attacker", 64)  # releasing frees the quota


def test_outputs_are_charged_to_the_submitter(tmp_path: Path) -> None:
    """Jobs a third party submits for a receiver spend the third party's quota, not the receiver's."""
    store = FileOutputStore(tmp_path, OutputRetention(max_outputs_per_client=2))
    for name in ("p", "q"):
        store.put(_output(name, 1, receiver=RECEIVER, submitter="outsider"))
    with pytest.raises(ResourceLimitError):
        store.check_quota("outsider", 16)
    store.check_quota(RECEIVER, 16)


def test_job_ids_are_scoped_by_submitter(tmp_path: Path) -> None:
    """Two submitters may use the same job id; each output keeps its own file."""
    store = FileOutputStore(tmp_path)
    store.put(_output("same", 2, submitter="bank-1"))
    store.put(_output("same", 3, submitter="bank-2"))
    reopened = FileOutputStore(tmp_path)
    assert reopened.get("bank-1/same/out").share.first.tolist() == [0, 1]
    assert reopened.get("bank-2/same/out").share.first.tolist() == [0, 1, 2]
    assert reopened.get("bank-2/same/out").submitter == "bank-2"
    with pytest.raises(NotFoundError):
        reopened.get(_key("same"))


def test_delete_is_idempotent_and_removes_the_file(tmp_path: Path) -> None:
    store = FileOutputStore(tmp_path)
    store.put(_output("a", 1))
    store.delete(_key("a"))
    store.delete(_key("a"))
    assert store.stored_bytes == 0
    assert list((tmp_path / "outputs").glob("*/*")) == []


def test_outputs_survive_a_restart_with_their_values(tmp_path: Path) -> None:
    clock = Clock()
    FileOutputStore(tmp_path, clock=clock).put(_output("kept", 3))
    reopened = FileOutputStore(tmp_path, clock=clock)
    output = reopened.get(_key("kept"))
    assert output.share.first.tolist() == [0, 1, 2] and output.share.second.tolist() == [1, 2, 3]
    assert output.info == OutputInfo((3,), 32, 64, name="out") and output.job_digest == b"d" * 32
    clock.now += 7200  # past the default age: dropped when next looked at
    with pytest.raises(NotFoundError):
        FileOutputStore(tmp_path, clock=clock).get(_key("kept"))


def test_half_written_files_are_cleaned_at_start(tmp_path: Path) -> None:
    (tmp_path / "tmp" / "outputs").mkdir(parents=True)
    (tmp_path / "tmp" / "outputs" / "x.part").write_bytes(b"garbage")
    FileOutputStore(tmp_path)
    assert list((tmp_path / "tmp" / "outputs").iterdir()) == []


def test_background_persistence_writes_only_kept_outputs(tmp_path: Path) -> None:
    store = FileOutputStore(tmp_path)
    store.put(_output("later", 2), durable=False)
    assert store.get(_key("later")).job_id == "later"
    assert not _file(tmp_path, "later").exists()
    store.persist(_key("later"))
    assert FileOutputStore(tmp_path).get(_key("later")).share.second.tolist() == [1, 2]
    store.put(_output("released", 2), durable=False)
    store.delete(_key("released"))
    store.persist(_key("released"))  # released before it was written: nothing appears
    assert not _file(tmp_path, "released").exists()
    assert list((tmp_path / "tmp" / "outputs").iterdir()) == []


def test_the_deferred_writer_writes_kept_outputs_and_drops_unwanted_ones(tmp_path: Path) -> None:
    store = FileOutputStore(tmp_path)

    async def main() -> tuple[bool, bool]:
        writer = DeferredWriter(store, quiet_seconds=0.01, max_delay_seconds=0.05)
        for job_id in ("kept", "returned"):
            store.put(_output(job_id, 2), durable=False)
            writer.add(_key(job_id))
        writer.add(_key("returned"), keep=False)  # its receiver has it and wants no copy
        present_before = store.get(_key("returned")).job_id == "returned"  # retries still find it
        await writer.flush()
        return present_before, _file(tmp_path, "returned").exists()

    present_before, written = asyncio.run(main())
    assert present_before and not written
    assert FileOutputStore(tmp_path).get(_key("kept")).share.first.tolist() == [0, 1]
    with pytest.raises(NotFoundError):
        store.get(_key("returned"))


def test_an_output_handed_over_inline_no_longer_counts_against_the_quota(tmp_path: Path) -> None:
    store = FileOutputStore(tmp_path, OutputRetention(max_outputs_per_client=1))
    store.put(_output("inline", 2), durable=False)
    with pytest.raises(ResourceLimitError):
        store.check_quota(RECEIVER, 32)
    store.handed_over(_key("inline"))
    store.handed_over(_key("inline"))  # idempotent
    store.check_quota(RECEIVER, 32)
    assert store.get(_key("inline")).job_id == "inline"  # still there for a retry
    store.delete(_key("inline"))
    store.check_quota(RECEIVER, 32)


def test_a_jobs_outputs_are_listed_in_the_programs_order(tmp_path: Path) -> None:
    store = FileOutputStore(tmp_path)
    share = ReplicatedShare(np.zeros(1, dtype=np.uint64), np.zeros(1, dtype=np.uint64))
    for index, name in ((1, "intercept"), (0, "weights")):
        info = OutputInfo((1,), 32, 64, name=name)
        store.put(StoredOutput("fit", RECEIVER, info, share, b"d" * 32, RECEIVER, index))
    expected = [f"{RECEIVER}/fit/weights", f"{RECEIVER}/fit/intercept"]
    assert store.outputs_of(RECEIVER, "fit") == expected
    assert FileOutputStore(tmp_path).outputs_of(RECEIVER, "fit") == expected  # after a restart
    store.delete(expected[0])
    store.delete(expected[1])
    assert store.outputs_of(RECEIVER, "fit") == []
    assert not (tmp_path / "outputs" / RECEIVER / "fit").exists()


# Integrity at rest and failed writes.


def _full_disk(monkeypatch: pytest.MonkeyPatch, room: int = 0) -> None:
    """Writes of files larger than ``room`` bytes fail as on a full disk (at their fsync)."""
    fsync = os.fsync

    def full(fd: int) -> None:
        if os.fstat(fd).st_size > room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(fd)

    monkeypatch.setattr(share_files.os, "fsync", full)


def test_a_flipped_bit_in_a_stored_output_is_data_loss(tmp_path: Path) -> None:
    FileOutputStore(tmp_path).put(_output("rotten", 64))
    store = FileOutputStore(tmp_path, storage=StorageState(tmp_path, "server-2"))  # nothing in memory
    path = _file(tmp_path, "rotten")
    data = bytearray(path.read_bytes())
    data[share_files.inspect(path).offset + 100] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(DataLossError, match="output out of job rotten on server-2 is damaged"):
        store.get(_key("rotten"))
    assert store.storage.damaged_files == 1
    store.delete(_key("rotten"))
    assert store.storage.problems() == []


def test_a_full_disk_refuses_a_durable_output_and_keeps_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileOutputStore(tmp_path, storage=StorageState(tmp_path, "server-1"))
    with monkeypatch.context() as patched:
        _full_disk(patched)
        with pytest.raises(DiskFullError, match="disk full: cannot store output out of job big"):
            store.put(_output("big", 8))
    assert not store.has(_key("big")) and store.stored_bytes == 0
    assert list((tmp_path / "tmp" / "outputs").iterdir()) == []
    assert store.storage.problems()[0].startswith("disk full")


def test_a_failed_background_write_is_logged_and_a_fetch_after_a_restart_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = FileOutputStore(tmp_path, storage=StorageState(tmp_path, "server-1"))

    async def main() -> None:
        writer = DeferredWriter(store, quiet_seconds=0.01, max_delay_seconds=0.05)
        for job_id in ("lost-job", "other"):
            store.put(_output(job_id, 1024), durable=False)
            writer.add(_key(job_id))
        with monkeypatch.context() as patched:
            patched.setattr(store, "persist", _failing_once(store.persist))
            await writer.flush()

    with caplog.at_level("ERROR"):
        asyncio.run(main())
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("lost-job" in message and "disk full" in message for message in errors), errors
    assert store.get(_key("lost-job")).share.first.tolist() == list(range(1024))  # still in memory
    assert FileOutputStore(tmp_path).get(_key("other")).job_id == "other"  # the rest of the batch
    reopened = FileOutputStore(tmp_path, storage=StorageState(tmp_path, "server-1"))
    assert reopened.outputs_of(RECEIVER, "lost-job") == [_key("lost-job")]
    with pytest.raises(DataLossError, match="output out of job lost-job on server-1 was lost") as caught:
        reopened.get(_key("lost-job"))
    assert "No space left on device" in str(caught.value) and "run the job again" in str(caught.value)
    assert reopened.receiver_of(_key("lost-job")) == RECEIVER
    reopened.check_quota(RECEIVER, 16)  # a lost output takes no quota
    reopened.delete(_key("lost-job"))
    assert not list((tmp_path / "outputs").glob("*/lost-job/*"))
    with pytest.raises(NotFoundError):
        FileOutputStore(tmp_path).get(_key("lost-job"))


def _failing_once(persist: Callable[[str], None]) -> Callable[[str], None]:
    """``persist`` that meets an almost full disk for the output of job ``lost-job``."""

    def attempt(key: str) -> None:
        if "lost-job" not in key:
            persist(key)
            return
        with pytest.MonkeyPatch.context() as patched:
            _full_disk(patched, room=4096)  # the output does not fit; its small loss record does
            persist(key)

    return attempt
