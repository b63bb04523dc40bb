"""Output retention: expiry by age, a byte cap evicting the oldest, release."""

from __future__ import annotations

import numpy as np
import pytest

from mpc_core.errors import NotFoundError
from mpc_core.sharing import ReplicatedShare
from mpc_server.service.model import OutputInfo, StoredOutput
from mpc_server.service.store import MemoryOutputStore, OutputRetention


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _output(job_id: str, words: int) -> StoredOutput:
    zeros = np.zeros(words, dtype=np.uint64)
    return StoredOutput(job_id, "model-owner", OutputInfo((words,), 32), ReplicatedShare(zeros, zeros.copy()))


def test_outputs_expire_after_the_retention_age() -> None:
    clock = Clock()
    store = MemoryOutputStore(OutputRetention(max_age_seconds=10), clock)
    store.put(_output("a", 4))
    clock.now = 5
    store.put(_output("b", 4))
    clock.now = 12
    with pytest.raises(NotFoundError, match="expired"):
        store.get("a")
    assert store.get("b").job_id == "b"
    assert store.stored_bytes == 64


def test_the_byte_cap_evicts_the_oldest_first() -> None:
    store = MemoryOutputStore(OutputRetention(max_bytes=200))
    for name in ("a", "b", "c"):
        store.put(_output(name, 5))  # 80 bytes each
    with pytest.raises(NotFoundError):
        store.get("a")
    assert [store.get(n).job_id for n in ("b", "c")] == ["b", "c"]
    assert store.stored_bytes == 160


def test_delete_is_idempotent() -> None:
    store = MemoryOutputStore()
    store.put(_output("a", 1))
    store.delete("a")
    store.delete("a")
    assert store.stored_bytes == 0
