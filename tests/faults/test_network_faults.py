"""Network faults against three real servers in three network namespaces.

Each test gets the shared cluster healthy, with fresh inputs x and y, and
runs ``elementwise.multiply`` (two rounds: job agreement and key setup,
then one resharing) as the model owner from the host. To break a link or a
server *mid-job*, the third server is frozen (SIGSTOP) so the job cannot
finish; once the two others have started it, the fault is applied and the
third server is resumed. Fixtures in ``conftest.py`` undo every fault, also
when a test fails.

1. SIGKILL of a server mid-job; its restart under the same identity and port.
2. A link cut mid-job, fail-fast (prohibit route) and silent (iptables DROP),
   with small and with large messages; and a half-open link (one end dropped
   the connection, the other was not told), which short silent cuts leave behind.
3. 20 % random packet loss on a link.
4. A 20 ms link (a delay proxy between two servers).
5. Tasks, mailbox, file descriptors and memory before and after a series of
   failures and recoveries.
"""

from __future__ import annotations

import statistics
import time

import pytest

from mpc_client import ProtocolTimeoutError, ServerUnavailableError

pytestmark = pytest.mark.e2e

FAIL_TIMEOUT = 5.0
"""Deadline of jobs that are expected to fail (the servers give up 0.5 s earlier)."""
KEEPALIVE_BOUND = 25.0
"""A silently dead link is noticed by gRPC keepalive: ping after 10 s, 5 s for the answer."""
RECONNECT_BOUND = 10.0
"""Links retry with a backoff of at most 2 s, so a healed link is back well within this."""
NO_ANSWER = "no answer before the deadline"
"""What the SDK says when a server let the client's own deadline expire instead of answering."""
SMALL, LARGE = 1_000, 1_000_000
"""Elements per input: 8 kB messages, and 8 MB messages that outgrow the HTTP/2 flow-control window."""
DELAY_MS = 20.0
LOSS = 0.2
LOSSY_SIZE = 100_000
"""800 kB messages: hundreds of TCP segments per message cross the lossy link."""


def _frozen_mid_job(cluster, hold: int, fault, kind: str):
    """Start a job, apply ``fault`` once the two servers other than ``hold`` run it; wait for it."""
    others = [index for index in range(3) if index != hold]
    with cluster.client() as client:
        with cluster.frozen(hold):
            job = cluster.start_job(client, FAIL_TIMEOUT, kind)
            for index in others:
                cluster.wait_for_log(index, f"job {job.job_id} started")
            fault()
        job.join()
    return job


def _cut_mid_job(cluster, mode: str):
    """Cut the link server-0 <-> server-1 in the middle of a job (server-2 held back)."""
    return _frozen_mid_job(cluster, 2, lambda: cluster.network.cut(0, 1, mode), f"cut-{mode}")


def _kill_mid_job(cluster, victim: int = 2):
    """SIGKILL ``victim`` in the middle of a job (the next server held back)."""
    return _frozen_mid_job(cluster, (victim + 2) % 3, lambda: cluster.kill(victim), "kill")


def _failing_job(cluster):
    with cluster.client() as client:
        job = cluster.start_job(client, FAIL_TIMEOUT, "doomed")
        job.join()
    return job


# --------------------------------------------------------------------------- 1. SIGKILL


def test_a_server_killed_mid_job_fails_it_naming_the_server_and_rejoins_after_restart(cluster) -> None:
    job = _kill_mid_job(cluster, victim=2)

    error = job.error
    assert isinstance(error, ServerUnavailableError), f"expected UNAVAILABLE, got {error!r}"
    assert error.server == "server-2", str(error)
    assert "server-2" in str(error)
    assert NO_ANSWER not in str(error), f"a server did not answer before the deadline: {error}"
    assert job.elapsed < FAIL_TIMEOUT / 2, f"a lost peer must fail the job at once, took {job.elapsed:.1f} s"

    # The two others stay up and answer: each reports exactly server-2 lost, and
    # health NOT_SERVING while a peer is missing (as documented).
    for index, other in ((0, "server-1"), (1, "server-0")):
        assert cluster.alive(index)
        expected = {other: True, "server-2": False}
        cluster.wait_until(
            f"server-{index} reports {expected}", lambda i=index, e=expected: cluster.peers(i) == e, 5.0
        )
        assert cluster.health(index) == "NOT_SERVING"
    failed = _failing_job(cluster)
    assert isinstance(failed.error, ServerUnavailableError), repr(failed.error)
    assert failed.error.server == "server-2"
    assert failed.elapsed < 2.0, f"a job with a dead server took {failed.elapsed:.1f} s to fail"

    cluster.start_server(2)  # same identity, same address and port
    cluster.wait_ready(RECONNECT_BOUND)
    for index in range(3):
        assert cluster.health(index) == "SERVING"
        assert all(cluster.peers(index).values())
    cluster.upload()
    cluster.run_job()


# --------------------------------------------------------------------------- 2. link cut


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["8kB-messages", "8MB-messages"])
@pytest.mark.parametrize("mode", ["prohibit", "drop"])
def test_a_link_cut_mid_job_fails_it_naming_the_peer_and_the_link_comes_back(cluster, mode, size) -> None:
    if mode == "drop":
        cluster.network.require_iptables()
    cluster.upload(size)
    pair = ("server-0", "server-1")
    problems: list[str] = []

    cut_at = time.monotonic()
    job = _cut_mid_job(cluster, mode)
    error = job.error
    assert isinstance(error, (ProtocolTimeoutError, ServerUnavailableError)), f"got {error!r}"
    assert error.server in pair, f"the error names {error.server}, not an end of the cut link: {error}"
    assert job.elapsed <= FAIL_TIMEOUT + 0.5
    if NO_ANSWER in str(error):
        problems.append(
            f"a server did not answer its RunJob before the {FAIL_TIMEOUT:.0f} s deadline "
            f"(the client's own deadline expired instead): {error}"
        )

    # While the cut lasts, keepalive finds the dead connections at both ends; jobs then fail at once.
    net = cluster.network
    cluster.wait_until(
        "both ends of the cut link report it down and hold no connection over it",
        lambda: (
            not cluster.peers(0)["server-1"]
            and not cluster.peers(1)["server-0"]
            and net.connections(0, 1) == net.connections(1, 0) == 0
        ),
        KEEPALIVE_BOUND - (time.monotonic() - cut_at),
    )
    assert cluster.peers(2) == {"server-0": True, "server-1": True}
    assert [cluster.health(index) for index in range(3)] == ["NOT_SERVING", "NOT_SERVING", "SERVING"]
    failed = _failing_job(cluster)
    assert isinstance(failed.error, ServerUnavailableError), repr(failed.error)
    assert failed.error.server in pair
    assert failed.elapsed < 2.0, f"a job over a known-dead link took {failed.elapsed:.1f} s to fail"

    net.heal()
    try:
        cluster.wait_ready(RECONNECT_BOUND)
    except AssertionError:
        links = {name: cluster.peers(index) for index, name in enumerate(pair)}
        problems.append(f"the link did not come back within {RECONNECT_BOUND:.0f} s of the repair: {links}")
    assert not problems, "\n".join(problems)
    cluster.run_job()


def test_a_half_open_link_fails_jobs_at_once_and_the_next_job_after_repair_succeeds(cluster) -> None:
    """server-1 drops its end of server-0's connection; server-0 is not told (its RST is lost).

    This is what a short silent cut often leaves behind: one end's keepalive gave up
    on the connection, the other's has not yet noticed.
    """
    net = cluster.network
    net.drop_resets(1, 0)
    net.abort_inbound(1, 0)
    cluster.wait_until("server-1 has no connection from server-0", lambda: net.connections(1, 0) == 1, 5.0)
    problems: list[str] = []

    job = _failing_job(cluster)
    error = job.error
    assert isinstance(error, (ProtocolTimeoutError, ServerUnavailableError)), f"got {error!r}"
    assert error.server in ("server-0", "server-1"), str(error)
    if not isinstance(error, ServerUnavailableError) or job.elapsed > FAIL_TIMEOUT / 2:
        problems.append(
            f"server-1 had lost server-0's stream before the job started, yet the job ran "
            f"{job.elapsed:.1f} s into its deadline instead of failing at once with UNAVAILABLE: {error}"
        )

    net.heal()
    cluster.wait_ready(KEEPALIVE_BOUND)
    with cluster.client() as client:
        after = cluster.start_job(client, 2 * FAIL_TIMEOUT, "after-repair")
        after.join()
    if after.error is not None:
        problems.append(
            f"the first job after the repair (all servers SERVING) failed after {after.elapsed:.1f} s: "
            f"{after.error}"
        )
    assert not problems, "\n".join(problems)
    cluster.run_job()


# --------------------------------------------------------------------------- 3. packet loss


def test_a_lossy_link_still_gives_correct_results(cluster) -> None:
    cluster.network.require_iptables()
    cluster.upload(LOSSY_SIZE)
    cluster.network.cut(0, 1, "loss", LOSS)
    times = [cluster.run_job(timeout=60.0) for _ in range(5)]
    dropped = cluster.network.dropped_packets(0) + cluster.network.dropped_packets(1)
    print(f"{dropped} packets dropped; job times {', '.join(f'{t:.2f}' for t in times)} s")
    assert dropped > 0, "the loss rules dropped nothing: the jobs did not cross the lossy link"


# --------------------------------------------------------------------------- 4. latency


def test_a_slow_link_gives_correct_results_and_the_job_takes_the_latency(cluster) -> None:
    direct = statistics.median(cluster.timed_jobs(7))

    # server-0 reaches server-1 through a proxy in its own namespace, and vice versa:
    # each has its own cluster file with only that peer's address changed.
    addresses = list(cluster.addresses)
    for index, peer in ((0, 1), (1, 0)):
        port = cluster.start_proxy(index, peer, DELAY_MS)
        changed = list(addresses)
        changed[peer] = f"127.0.0.1:{port}"
        own_file = cluster.directory / f"cluster-delayed-{index}.toml"
        own_file.write_text(cluster.render(tuple(changed)))
        cluster.restart(index, own_file)
    cluster.wait_ready()
    cluster.upload()
    delayed = statistics.median(cluster.timed_jobs(7))

    # Critical path: server-1's round-1 message reaches server-0 one delay late, and
    # server-0 then needs server-1's resharing message, another delay: 2 x 20 ms.
    added = delayed - direct
    expected = 2 * DELAY_MS / 1000
    print(f"median job: direct {direct * 1000:.1f} ms, {DELAY_MS:.0f} ms link {delayed * 1000:.1f} ms")
    assert added >= 0.9 * expected, f"direct {direct * 1000:.1f} ms, delayed {delayed * 1000:.1f} ms"
    assert added < expected + 0.2, f"direct {direct * 1000:.1f} ms, delayed {delayed * 1000:.1f} ms"


# --------------------------------------------------------------------------- 5. leaks


def test_failures_leak_no_tasks_sockets_or_memory(cluster) -> None:
    modes = ["prohibit", "drop"] if cluster.network.iptables else ["prohibit"]

    recovery_failures = 0

    def cut_and_repair() -> None:
        nonlocal recovery_failures
        for mode in modes:
            assert _cut_mid_job(cluster, mode).error is not None
            cluster.network.heal()
            cluster.wait_ready(RECONNECT_BOUND)
            # Right after a short cut the first job can be lost on a half-open
            # connection (see the half-open test); leaks are what is measured here.
            recovery_failures += cluster.run_job_eventually()

    def kill_and_restart() -> None:
        assert _kill_mid_job(cluster, victim=2).error is not None
        cluster.start_server(2)
        cluster.wait_ready(RECONNECT_BOUND)
        cluster.upload()
        cluster.run_job()

    cut_and_repair()  # warm-up: first failures fill caches, thread pools and buffers
    kill_and_restart()
    survivors = cluster.settled_resources([0, 1])
    for _ in range(2):
        kill_and_restart()
    restarted = cluster.settled_resources([2])
    for _ in range(2):
        cut_and_repair()

    # server-0 and server-1 lived through everything; server-2 through the cuts since its restart.
    print(f"jobs lost right after a repaired cut (retried): {recovery_failures}")
    cluster.assert_no_leaks({**survivors, **restarted})
