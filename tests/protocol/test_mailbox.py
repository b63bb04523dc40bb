"""Unit tests of the receive side: :class:`mpc_server.protocol.mailbox.Mailbox`.

The mailbox moves flat 64-bit words whatever the ring; one test checks that a
Z_2^64 or Z_2^128 vector (the ``ring`` fixture) passes through intact and is counted in bytes.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from mpc_core.errors import (
    JobAbortedError,
    MpcError,
    ProtocolError,
    ProtocolTimeoutError,
    ResourceLimitError,
    ServerUnavailableError,
)
from mpc_core.types import MessageTag, PartyId
from mpc_server.protocol.mailbox import Mailbox

NAMES = {PartyId(0): "server-0", PartyId(1): "server-1", PartyId(2): "server-2"}
P1, P2 = PartyId(1), PartyId(2)


def words(n, start=1):
    return np.arange(start, start + n, dtype=np.uint64)


def tag(op, job="job"):
    return MessageTag(job, op)


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def run(coro):
    return asyncio.run(coro)


def test_message_delivered_before_receive_is_buffered_and_counted():
    box = Mailbox(NAMES)
    box.deliver(P1, tag(1), words(10))
    assert box.buffered_bytes == 80
    assert box.open_jobs == 1

    got = run(box.receive(P1, tag(1), 1.0))

    np.testing.assert_array_equal(got, words(10))
    assert box.buffered_bytes == 0


def test_ring_elements_pass_through_as_words_and_are_counted_in_bytes(ring):
    values = [0, 1, ring.modulus - 1, 2**63, (2**127 + 12345) % ring.modulus, 2**64 + 7]
    elements = ring.from_ints(values)
    box = Mailbox(NAMES, max_buffered_bytes=ring.element_bytes * len(values))
    box.deliver(P1, tag(1), ring.words(elements).copy())
    assert box.buffered_bytes == {64: 8, 128: 16}[ring.bits] * len(values)

    got = run(box.receive(P1, tag(1), 1.0))

    assert got.dtype == np.uint64
    assert ring.to_ints(ring.from_words(got, len(values)), signed=False) == [v % ring.modulus for v in values]
    assert box.buffered_bytes == 0


def test_receive_before_delivery_waits_for_the_message():
    box = Mailbox(NAMES)

    async def main():
        waiter = asyncio.create_task(box.receive(P1, tag(1), 5.0))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        box.deliver(P1, tag(1), words(4))
        assert box.buffered_bytes == 0  # handed straight to the waiter
        return await waiter

    np.testing.assert_array_equal(run(main()), words(4))
    assert box.buffered_bytes == 0


def test_messages_are_matched_by_sender_and_op_whatever_the_arrival_order():
    box = Mailbox(NAMES)
    box.deliver(P1, tag(3), words(3, start=30))
    box.deliver(P2, tag(1), words(1, start=21))
    box.deliver(P1, tag(1), words(1, start=11))
    box.deliver(P1, tag(1, job="other"), words(2, start=91))
    assert box.buffered_bytes == 8 * (3 + 1 + 1 + 2)
    assert box.open_jobs == 2

    async def main():
        return [
            await box.receive(P1, tag(1), 1),
            await box.receive(P2, tag(1), 1),
            await box.receive(P1, tag(3), 1),
            await box.receive(P1, tag(1, job="other"), 1),
        ]

    got = run(main())

    assert [g.tolist() for g in got] == [[11], [21], [30, 31, 32], [91, 92]]
    assert box.buffered_bytes == 0


def test_buffered_bytes_accounting_over_receive_close_and_failure():
    box = Mailbox(NAMES)
    box.deliver(P1, tag(1, "a"), words(5))
    box.deliver(P2, tag(1, "a"), words(7))
    box.deliver(P1, tag(1, "b"), words(11))
    assert box.buffered_bytes == 8 * 23

    run(box.receive(P2, tag(1, "a"), 1))
    assert box.buffered_bytes == 8 * 16

    box.close_job("b")
    assert box.buffered_bytes == 8 * 5

    box.deliver_abort(P1, "a", "bye")  # drops what server-1 had sent for job a
    assert box.buffered_bytes == 0


def test_max_buffered_bytes_fails_that_job_with_resource_limit_error():
    box = Mailbox(NAMES, max_buffered_bytes=100)
    box.deliver(P1, tag(1, "big"), words(10))  # 80 bytes: fits
    box.deliver(P1, tag(2, "big"), words(5))  # 120 bytes in total: over the limit
    assert box.buffered_bytes == 0  # the job's buffered messages from server-1 are released

    async def main():
        with pytest.raises(ResourceLimitError, match="100 bytes"):
            await box.receive(P1, tag(1, "big"), 1)
        with pytest.raises(ResourceLimitError):
            await box.receive(P1, tag(2, "big"), 1)
        with pytest.raises(ResourceLimitError):  # and later messages of that job too
            await box.receive(P1, tag(3, "big"), 1)
        # Another job is not affected.
        box.deliver(P1, tag(1, "small"), words(12))
        return await box.receive(P1, tag(1, "small"), 1)

    np.testing.assert_array_equal(run(main()), words(12))


def test_messages_handed_to_a_waiter_do_not_count_against_the_limit():
    box = Mailbox(NAMES, max_buffered_bytes=16)

    async def main():
        waiter = asyncio.create_task(box.receive(P1, tag(1), 5.0))
        await asyncio.sleep(0)
        box.deliver(P1, tag(1), words(1000))
        return await waiter

    assert run(main()).size == 1000


def test_closed_job_drops_state_and_ignores_later_messages():
    box = Mailbox(NAMES)
    box.deliver(P1, tag(1), words(4))
    box.close_job("job")
    assert box.open_jobs == 0
    assert box.buffered_bytes == 0

    box.deliver(P1, tag(2), words(4))
    box.deliver(P1, tag(1), words(4))  # not even a duplicate any more
    box.deliver_abort(P2, "job", "late")
    assert box.open_jobs == 0
    assert box.buffered_bytes == 0

    async def main():
        with pytest.raises(ProtocolError, match="closed"):
            await box.receive(P1, tag(2), 1)

    run(main())


def test_close_job_does_not_leave_a_waiting_receive_hanging():
    box = Mailbox(NAMES)

    async def main():
        waiter = asyncio.create_task(box.receive(P1, tag(1), 30.0))
        await asyncio.sleep(0.01)
        box.close_job("job")
        with pytest.raises((asyncio.CancelledError, MpcError)):
            await asyncio.wait_for(waiter, 1.0)

    run(main())
    assert box.open_jobs == 0


def test_sweep_drops_stale_jobs_that_were_never_opened():
    clock = FakeClock()
    box = Mailbox(NAMES, clock=clock)
    box.deliver(P1, tag(1, "stale"), words(6))
    box.deliver(P1, tag(1, "opened"), words(2))
    box.deliver(P1, tag(2, "opened"), words(3))
    run(box.receive(P1, tag(1, "opened"), 1))
    clock.now += 100
    box.deliver(P1, tag(1, "fresh"), words(5))

    dropped = box.sweep(max_age=50)

    assert dropped == 1
    assert box.open_jobs == 2
    assert box.buffered_bytes == 8 * (3 + 5)
    # The opened and the fresh job keep their messages.
    got = run(box.receive(P1, tag(2, "opened"), 1))
    np.testing.assert_array_equal(got, words(3))
    assert box.sweep(max_age=50) == 0
    clock.now += 100
    assert box.sweep(max_age=50) == 1  # "fresh" is stale now; "opened" never is
    assert box.open_jobs == 1
    assert box.buffered_bytes == 0


def test_peer_lost_fails_all_waiters_on_that_peer_in_every_job():
    box = Mailbox(NAMES)
    box.deliver(P2, tag(5, "b"), words(2))

    async def main():
        lost = [
            asyncio.create_task(box.receive(P2, tag(1, "a"), 30)),
            asyncio.create_task(box.receive(P2, tag(2, "a"), 30)),
            asyncio.create_task(box.receive(P2, tag(1, "b"), 30)),
        ]
        unaffected = asyncio.create_task(box.receive(P1, tag(1, "a"), 30))
        await asyncio.sleep(0.01)
        box.peer_lost(P2, ServerUnavailableError("server-2", "connection lost"))
        errors = await asyncio.wait_for(asyncio.gather(*lost, return_exceptions=True), 1.0)
        assert not unaffected.done()
        box.deliver(P1, tag(1, "a"), words(1))
        with pytest.raises(ServerUnavailableError):  # buffered messages are dropped too
            await box.receive(P2, tag(5, "b"), 1)
        return errors, await unaffected

    errors, survivor = run(main())

    assert all(isinstance(e, ServerUnavailableError) and e.server == "server-2" for e in errors)
    np.testing.assert_array_equal(survivor, words(1))
    assert box.buffered_bytes == 0


def test_duplicate_message_fails_the_job_for_that_sender():
    box = Mailbox(NAMES)
    box.deliver(P1, tag(1), words(3))
    box.deliver(P1, tag(1), words(3, start=100))
    box.deliver(P2, tag(1), words(3))  # same op from another sender is fine

    async def main():
        with pytest.raises(ProtocolError, match=r"duplicate message 1 of job job from server-1"):
            await box.receive(P1, tag(1), 1)
        with pytest.raises(ProtocolError, match="duplicate"):
            await box.receive(P1, tag(2), 1)
        return await box.receive(P2, tag(1), 1)

    np.testing.assert_array_equal(run(main()), words(3))


def test_duplicate_after_the_first_copy_was_received_fails_later_receives():
    box = Mailbox(NAMES)
    box.deliver(P1, tag(1), words(3))

    async def main():
        first = await box.receive(P1, tag(1), 1)
        box.deliver(P1, tag(1), words(3, start=50))
        with pytest.raises(ProtocolError, match="duplicate"):
            await box.receive(P1, tag(2), 1)
        return first

    np.testing.assert_array_equal(run(main()), words(3))  # never overwritten by the copy


def test_receive_times_out_naming_the_sender_and_cleans_up():
    box = Mailbox(NAMES)

    async def main():
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(ProtocolTimeoutError, match="server-2") as info:
            await box.receive(P2, tag(4), 0.1)
        elapsed = loop.time() - start
        # A late message is buffered normally and can be read.
        box.deliver(P2, tag(4), words(2))
        return info.value, elapsed, await box.receive(P2, tag(4), 1)

    error, elapsed, late = run(main())

    assert isinstance(error, TimeoutError)
    assert error.server == "server-2"
    assert 0.08 <= elapsed < 0.5
    np.testing.assert_array_equal(late, words(2))


def test_two_receives_of_the_same_message_are_refused():
    box = Mailbox(NAMES)

    async def main():
        first = asyncio.create_task(box.receive(P1, tag(1), 5))
        await asyncio.sleep(0)
        with pytest.raises(ProtocolError, match="already awaited"):
            await box.receive(P1, tag(1), 5)
        box.deliver(P1, tag(1), words(1))
        return await first

    np.testing.assert_array_equal(run(main()), words(1))


def test_abort_fails_waiting_and_later_receives_with_the_reason():
    box = Mailbox(NAMES)

    async def main():
        waiter = asyncio.create_task(box.receive(P2, tag(1), 30))
        await asyncio.sleep(0)
        box.deliver_abort(P2, "job", "disk full")
        with pytest.raises(JobAbortedError) as waiting:
            await asyncio.wait_for(waiter, 1)
        with pytest.raises(JobAbortedError) as later:
            await box.receive(P2, tag(2), 30)
        return waiting.value, later.value

    for error in run(main()):
        assert error.peer == "server-2"
        assert error.reason == "disk full"


def test_first_failure_of_a_job_wins():
    box = Mailbox(NAMES)
    box.fail_job(P1, "job", ResourceLimitError("first"))
    box.fail_job(P1, "job", ProtocolError("second"))

    async def main():
        with pytest.raises(ResourceLimitError, match="first"):
            await box.receive(P1, tag(1), 1)

    run(main())


def test_an_abort_of_a_job_never_opened_here_keeps_no_state_but_fails_a_start_soon_after():
    clock = FakeClock()
    box = Mailbox(NAMES, clock=clock)
    box.deliver(P1, tag(1), words(4))  # a peer ran ahead, then gave up before this party started
    box.deliver_abort(P1, "job", "client cancelled")
    assert box.open_jobs == 0 and box.buffered_bytes == 0

    async def main():
        with pytest.raises(JobAbortedError, match="client cancelled"):
            await box.receive(P1, tag(1), 1)

    run(main())  # within the refusal window, the local start sees the abort at once
    box.close_job("job")
    box.deliver_abort(P1, "later", "gone")
    clock.now += 11.0  # long after: a retry under the same id starts clean
    box.deliver(P1, tag(1, "later"), words(2))
    assert run(box.receive(P1, tag(1, "later"), 1)).tolist() == [1, 2]


def test_a_refusal_here_forgets_the_peers_failures_of_the_same_attempt():
    box = Mailbox(NAMES)
    box.deliver_abort(P1, "job", "dataset not found")  # the peer refused first
    box.refuse_job("job")  # then this party refused the same attempt
    box.deliver(P1, tag(1), words(2))  # the retry, once the dataset exists
    assert run(box.receive(P1, tag(1), 1)).tolist() == [1, 2]
