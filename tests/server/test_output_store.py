"""Durable output storage: retention by age, per-receiver quotas, release, restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from mpc_core.errors import NotFoundError, ResourceLimitError
from mpc_core.sharing import ReplicatedShare
from mpc_server.service.deferred_writer import DeferredWriter
from mpc_server.service.model import OutputInfo, StoredOutput
from mpc_server.service.output_store import FileOutputStore, OutputRetention


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
