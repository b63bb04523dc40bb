"""Atomic uploads across the three servers, with real server processes.

A dataset is published on all three servers or on none (``mpc_server.service.commit``),
also when one server is killed (SIGKILL) at any step of the commit or its disk fills
there; recovery at restart finishes or rolls back. Servers pause at a named step through
the test-only environment variable ``MPC_TEST_PAUSE_AT`` of the server process, so that
the kill lands there deterministically. Quotas on datasets at rest are refused with
RESOURCE_EXHAUSTED naming the quota.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from mpc_cli.local_cluster import LocalCluster
from mpc_client import Grant, MpcError, ResourceLimitError
from mpc_core.errors import AlreadyExistsError, ConfigError, NotFoundError
from mpc_core.ring import RING128
from mpc_server.service import share_files
from mpc_server.service.commit import CommitPause, Outcome, decide
from mpc_server.service.commit_journal import CommitJournal, Record
from mpc_server.service.key_store import KeyStore
from mpc_server.service.model import DatasetRef
from mpc_server.service.store import FileDatasetStore, PendingDataset

pytestmark = pytest.mark.e2e
MUL = "elementwise.multiply"
CLIENTS = ("model-owner", "bank-1")
PAUSED = 1  # the server that pauses and is killed: server-1 (its next party is server-2)
GRANTS = [Grant("model-owner", MUL)]


class Clusters:
    """Starts clusters whose server ``PAUSED`` pauses at a commit step; stops them all at the end."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self._tmp = tmp_path
        self._env = monkeypatch
        self.started: list[LocalCluster] = []

    def start(self, step: str, *, resume: Path | None = None, args: Sequence[str] = ()) -> LocalCluster:
        """A cluster in ``<tmp>/c`` whose server-1 pauses at ``step`` (none for "")."""
        cluster = LocalCluster(self._tmp / "c", clients=CLIENTS, log_level="INFO", server_args=args)
        cluster.prepare()
        self.started.append(cluster)
        for index in range(3):
            if index == PAUSED and step:
                self._env.setenv("MPC_TEST_PAUSE_AT", step)
                if resume is not None:
                    self._env.setenv("MPC_TEST_RESUME_FILE", str(resume))
            cluster.start_server(index)
            self._env.delenv("MPC_TEST_PAUSE_AT", raising=False)
            self._env.delenv("MPC_TEST_RESUME_FILE", raising=False)
        cluster.wait_ready(30)
        return cluster

    def restart_with_hook(self, cluster: LocalCluster, step: str) -> None:
        cluster.kill(PAUSED)
        self._env.setenv("MPC_TEST_PAUSE_AT", step)
        cluster.start_server(PAUSED)
        self._env.delenv("MPC_TEST_PAUSE_AT")
        cluster.wait_ready(30)


@pytest.fixture
def clusters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Clusters]:
    made = Clusters(tmp_path, monkeypatch)
    yield made
    for cluster in made.started:
        cluster.stop()


def _eventually(check: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, f"not reached within {timeout:.0f} s: {what}"
        time.sleep(0.05)


def _paused(cluster: LocalCluster, step: str) -> bool:
    return f"pausing at commit step {step}" in cluster.log_path(PAUSED).read_text(errors="replace")


def _data(cluster: LocalCluster, index: int) -> Path:
    return cluster.directory / "data" / f"server-{index}"


def _versions(cluster: LocalCluster, name: str) -> list[str | None]:
    """The upload id of each server's published copy of bank-1/``name`` (None: no copy)."""
    found: list[str | None] = []
    for index in range(3):
        path = _data(cluster, index) / "datasets" / "bank-1" / f"{name}.share"
        found.append(str(share_files.read_header(path)[0]["upload_id"]) if path.exists() else None)
    return found


def _settled(cluster: LocalCluster) -> bool:
    """No server holds an upload prepared but not settled, or committed but not published."""
    for index in range(3):
        commits = _data(cluster, index) / "commits"
        if any(commits.glob("*.share")):
            return False
        for record in commits.glob("*.json"):
            if json.loads(record.read_text())["state"] != "committed":
                return False
    return True


class Upload(threading.Thread):
    """bank-1 uploads a dataset in the background; ``errors`` has what the SDK raised."""

    def __init__(self, cluster: LocalCluster, name: str, values: np.ndarray, overwrite: bool = False) -> None:
        super().__init__()
        self.cluster, self.name, self.values, self.overwrite = cluster, name, values, overwrite
        self.errors: list[MpcError] = []
        self.start()

    def run(self) -> None:
        with self.cluster.client("bank-1") as bank:
            try:
                bank.upload(self.name, self.values, grants=GRANTS, overwrite=self.overwrite, timeout=40)
            except MpcError as exc:
                self.errors.append(exc)


def _restart_paused(cluster: LocalCluster) -> None:
    cluster.kill(PAUSED)
    cluster.start_server(PAUSED)  # without the hook
    cluster.wait_ready(30)


def _product(cluster: LocalCluster, name: str) -> np.ndarray:
    with cluster.client("model-owner") as owner:
        _, product = owner.run_and_fetch(MUL, {"x": f"bank-1/{name}", "y": f"bank-1/{name}"})
    return np.asarray(product)


# step, whether the dataset ends up on all three servers (else on none), who must have
# published it before server-1 is killed (so that the kill lands after their commit)
CRASH_POINTS = [
    ("checked", False, ()),
    ("prepared", False, ()),
    ("half-voted", True, (2,)),  # server-1's vote reached server-2 only
    ("voted", True, (0, 2)),
    ("committed", True, (0, 2)),
    ("published", True, (0, 2)),
]


@pytest.mark.parametrize(("step", "everywhere", "published_first"), CRASH_POINTS)
def test_a_server_killed_at_any_commit_step_leaves_the_dataset_on_all_three_or_on_none(
    clusters: Clusters, step: str, everywhere: bool, published_first: tuple[int, ...]
) -> None:
    cluster = clusters.start(step)
    values = np.arange(1000) / 8.0
    worker = Upload(cluster, "x", values)
    _eventually(lambda: _paused(cluster, step), f"server-1 pauses at {step}")
    _eventually(lambda: all(_versions(cluster, "x")[i] for i in published_first), "the others publish")
    cluster.kill(PAUSED)
    worker.join(60)
    assert not worker.is_alive()
    assert worker.errors, "the upload cannot complete on server-1"
    message = str(worker.errors[0])
    assert "server-1" in message, message
    _restart_paused(cluster)
    _eventually(lambda: _settled(cluster), "every server settles the upload")
    versions = _versions(cluster, "x")
    if everywhere:
        assert versions[0] is not None and versions == [versions[0]] * 3, versions
        assert np.allclose(_product(cluster, "x"), values * values)
    else:
        assert versions == [None, None, None], versions
        with cluster.client("bank-1") as bank:  # the name is free: a retry (a fresh upload id) works
            bank.upload("x", values, grants=GRANTS)
        assert len(set(_versions(cluster, "x"))) == 1
        assert np.allclose(_product(cluster, "x"), values * values)


def test_an_overwritten_dataset_stays_in_its_old_version_until_the_new_one_is_committed(
    clusters: Clusters,
) -> None:
    cluster = clusters.start("")
    old, new = np.arange(50) / 2.0, np.arange(50) / 4.0
    with cluster.client("bank-1") as bank:
        bank.upload("w", old, grants=GRANTS)
    first = _versions(cluster, "w")
    clusters.restart_with_hook(cluster, "prepared")
    worker = Upload(cluster, "w", new, overwrite=True)
    _eventually(lambda: _paused(cluster, "prepared"), "server-1 pauses with the new version prepared")
    assert _versions(cluster, "w") == first
    assert np.allclose(_product(cluster, "w"), old * old)  # jobs still see the old version
    cluster.kill(PAUSED)
    worker.join(60)
    assert worker.errors
    _restart_paused(cluster)
    _eventually(lambda: _settled(cluster), "every server settles the upload")
    assert _versions(cluster, "w") == first  # rolled back everywhere: the old version stays
    assert np.allclose(_product(cluster, "w"), old * old)
    with cluster.client("bank-1") as bank:  # a retry with overwrite replaces it everywhere
        bank.upload("w", new, grants=GRANTS, overwrite=True)
    assert len(set(_versions(cluster, "w"))) == 1 and _versions(cluster, "w") != first
    assert np.allclose(_product(cluster, "w"), new * new)


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(bytes(1 << 16))
        except OSError:
            pass
    return filler


def test_a_disk_filling_up_in_the_commit_window_leaves_no_dataset_and_frees_the_name(
    clusters: Clusters, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    data = tmp_path / "c" / "data" / "server-1"
    data.mkdir(parents=True)
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(data)], check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("cannot mount a tmpfs here")
    try:
        resume = tmp_path / "resume"
        cluster = clusters.start("checked", resume=resume)
        values = np.arange(2000) / 8.0
        worker = Upload(cluster, "full", values)
        _eventually(lambda: _paused(cluster, "checked"), "server-1 pauses after the checks")
        filler = _fill(data)  # the disk fills between the checks and the prepare
        resume.touch()
        worker.join(60)
        [error] = worker.errors
        assert isinstance(error, ResourceLimitError), error
        message = str(error)
        assert "server-1: disk full: cannot store dataset bank-1/full on server-1" in message, message
        assert "rolled back on every server: server-1 did not prepare it" in message, message
        assert _versions(cluster, "full") == [None, None, None]
        assert _settled(cluster) and not any((data / "tmp" / "datasets").iterdir())
        assert not list((data / "commits").iterdir())
        filler.unlink()
        with cluster.client("bank-1") as bank:  # the name is free, on every server
            bank.upload("full", values, grants=GRANTS)
        assert len(set(_versions(cluster, "full"))) == 1
    finally:
        for cluster in clusters.started:
            cluster.stop()
        subprocess.run(["umount", str(data)], check=False)


def test_quotas_on_datasets_at_rest_refuse_with_resource_exhausted_and_deleting_frees_them(
    clusters: Clusters,
) -> None:
    element = 16 * 2  # bytes per element, both components of Z_2^128 shares
    cluster = clusters.start(
        "", args=["--client-datasets", "2", "--client-dataset-bytes", str(300 * element)]
    )
    with cluster.client("bank-1") as bank:
        bank.upload("a", np.ones(100), grants=GRANTS)
        bank.upload("b", np.ones(100), grants=GRANTS)
        with pytest.raises(ResourceLimitError) as caught:  # RESOURCE_EXHAUSTED on the wire
            bank.upload("c", np.ones(10), grants=GRANTS)
        assert "dataset quota exceeded: client bank-1 may keep at most 2 datasets" in str(caught.value)
        bank.upload("b", np.ones(200), grants=GRANTS, overwrite=True)  # a replaced version is not counted
        with pytest.raises(ResourceLimitError) as caught:
            bank.upload("a", np.ones(101), grants=GRANTS, overwrite=True)
        assert "quota of bytes at rest exceeded: the datasets of client bank-1 would take 9632 bytes" in str(
            caught.value
        )
        bank.delete("b")  # deleting frees both quotas
        bank.upload("c", np.ones(200), grants=GRANTS)
    assert _versions(cluster, "b") == [None, None, None]
    with cluster.client("model-owner") as owner:  # quotas are per client
        owner.upload("m", np.ones(10), grants=[Grant("model-owner", MUL)])


def test_the_settling_rule_commits_only_what_someone_committed() -> None:
    committed, unknown, prepared, pending = (
        Outcome.COMMITTED,
        Outcome.UNKNOWN,
        Outcome.PREPARED,
        Outcome.PENDING,
    )
    assert decide([committed, None]) is True
    assert decide([prepared, committed]) is True
    assert decide([unknown, None]) is False  # it never prepared, or rolled back: nobody commits
    assert decide([prepared, prepared]) is False  # all three uncertain: nobody committed, nobody can
    assert decide([prepared, None]) is None  # the unreachable one may have committed: wait
    assert decide([prepared, pending]) is None
    assert decide([None, None]) is None


def test_the_pause_hook_is_read_from_the_server_environment_only() -> None:
    assert CommitPause.from_environment({}) is None
    assert CommitPause.from_environment({"MPC_TEST_PAUSE_AT": "voted"}) == CommitPause("voted")
    with pytest.raises(ConfigError):
        CommitPause.from_environment({"MPC_TEST_PAUSE_AT": "anything"})


# The journal's recovery at start, in one process (each "crash" is a fresh store and journal).

REF = DatasetRef("bank-1", "j")


def _prepared(root: Path, tokens: bytes | None = None) -> tuple[CommitJournal, PendingDataset, Record]:
    store = FileDatasetStore(root)
    journal = CommitJournal(root, store, KeyStore(root))
    pending = store.create(
        REF, shape=(4,), ring=RING128, fractional_bits=16, magnitude_bits=40, grants=(),
        upload_id=secrets.token_bytes(16), count=4, alignment="bank-1/a" if tokens else "",
    )  # fmt: skip
    pending.first[:] = RING128.from_ints([1, 2, 3, 4])
    pending.second[:] = RING128.from_ints([5, 6, 7, 8])
    record = journal.prepare(pending, store.write(pending), tokens, "bank-1/a" if tokens else "")
    return journal, pending, record


def _reopen(root: Path, clock: Callable[[], float] = time.time) -> tuple[CommitJournal, FileDatasetStore]:
    store = FileDatasetStore(root)
    return CommitJournal(root, store, KeyStore(root), clock=clock), store


def test_a_prepared_upload_survives_a_crash_unpublished_with_its_name_locked(tmp_path: Path) -> None:
    _prepared(tmp_path)
    journal, store = _reopen(tmp_path)
    prepared, unfinished = journal.load()
    assert [record.ref for record, _ in prepared] == [REF] and unfinished == []
    with pytest.raises(NotFoundError):
        store.summary(REF)  # not visible
    with pytest.raises(AlreadyExistsError, match="in progress"):
        store.create(REF, shape=(1,), ring=RING128, fractional_bits=16, magnitude_bits=1, grants=(),
                     upload_id=secrets.token_bytes(16), count=1)  # fmt: skip
    record, pending = prepared[0]
    journal.roll_back(pending, record.upload_id)
    assert not list((tmp_path / "commits").iterdir())
    assert _reopen(tmp_path)[0].load() == ([], [])


def test_a_committed_upload_is_finished_at_start_with_its_tokens(tmp_path: Path) -> None:
    tokens = secrets.token_bytes(16 * 4)
    journal, _, record = _prepared(tmp_path, tokens)
    journal.record_commit(record)  # then the crash, before anything is published
    journal, store = _reopen(tmp_path)
    assert journal.load() == ([], [])
    assert store.summary(REF).upload_id == record.upload_id
    assert RING128.to_ints(store.get(REF).share.second) == [5, 6, 7, 8]
    assert KeyStore(tmp_path).read(REF, record.upload_id, 4).nbytes == len(tokens)
    assert journal.committed == {record.upload_id: REF}  # kept to answer peers that settle late
    assert [p.name for p in (tmp_path / "commits").iterdir()] == [f"{record.upload_id.hex()}.json"]
    later = _reopen(tmp_path, clock=lambda: time.time() + 31 * 86400)[0]
    later.load()  # pruned after its retention
    assert later.committed == {} and not list((tmp_path / "commits").iterdir())


def test_leftovers_of_an_interrupted_prepare_are_removed_at_start(tmp_path: Path) -> None:
    journal, _, record = _prepared(tmp_path)
    (tmp_path / "commits" / f"{record.upload_id.hex()}.json").unlink()  # the record never made it
    (tmp_path / "commits" / "0123.json.part").write_bytes(b"{")
    journal, store = _reopen(tmp_path)
    assert journal.load() == ([], [])
    assert not list((tmp_path / "commits").iterdir())
    store.create(REF, shape=(1,), ring=RING128, fractional_bits=16, magnitude_bits=1, grants=(),
                 upload_id=secrets.token_bytes(16), count=1)  # fmt: skip  # the name is free
