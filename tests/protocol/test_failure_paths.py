"""Lost, duplicated and aborted messages fail the job promptly, naming the peer.

``net.interceptor`` turns one sent message into the list of copies actually
delivered: ``[]`` drops it, ``[w, w]`` duplicates it. Op 0 is the agreement
round, so a product started right after setup has op 1.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from mpc_core.errors import (
    JobAbortedError,
    ProtocolError,
    ProtocolTimeoutError,
    ServerUnavailableError,
)
from mpc_core.sharing import ReplicatedShare, share
from mpc_core.types import PARTIES, PartyId
from mpc_server.protocol import arithmetic

MUL_OP = 1


def inputs(rng, n=8):
    x = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    y = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    return x, y, share(x), share(y)


def timed(program):
    """Wrap ``program`` so that it returns or raises together with its duration."""

    async def run(ctx):
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            result = await program(ctx)
        except Exception as exc:
            exc.elapsed = loop.time() - start
            raise
        return result, loop.time() - start

    return run


@pytest.mark.parametrize("sender", PARTIES)
def test_dropped_product_message_times_out_at_the_deadline(net, run_parties, rng, sender):
    receiver = (sender - 1) % 3
    _, _, xs, ys = inputs(rng)
    deadline = 0.5

    def drop(message):
        if message.sender == sender and message.tag.op == MUL_OP:
            return []
        return [message.words]

    net.interceptor = drop

    results = run_parties(
        net,
        timed(lambda ctx: arithmetic.mul(ctx, xs[ctx.party], ys[ctx.party])),
        timeout=deadline,
        return_exceptions=True,
    )

    error = results[receiver]
    assert isinstance(error, ProtocolTimeoutError), error
    assert f"server-{sender}" in str(error)
    assert error.server == f"server-{sender}"
    # It waited until (about) the job deadline, not longer and not fail-fast.
    assert deadline - 0.15 <= error.elapsed <= deadline + 0.3, error.elapsed
    for p in PARTIES:
        if p != receiver:
            share_, elapsed = results[p]
            assert isinstance(share_, ReplicatedShare)
            assert elapsed < deadline


def test_receive_after_the_deadline_fails_at_once(net, run_parties, rng):
    _, _, xs, ys = inputs(rng)

    async def late(ctx):
        await asyncio.sleep(0.3)
        return await arithmetic.mul(ctx, xs[ctx.party], ys[ctx.party])

    results = run_parties(net, timed(late), timeout=0.2, return_exceptions=True)

    for error in results:
        assert isinstance(error, ProtocolTimeoutError)
        assert "deadline" in str(error)
        assert error.elapsed < 0.5


def test_duplicate_message_buffered_before_the_receive_is_a_protocol_error(net, run_parties, rng):
    """Party 0's z_0 reaches party 2 twice before party 2 asks for it."""
    _, _, xs, ys = inputs(rng)

    def duplicate(message):
        if message.sender == 0 and message.tag.op == MUL_OP:
            return [message.words, message.words]
        return [message.words]

    net.interceptor = duplicate

    async def program(ctx):
        if ctx.party == 2:
            await asyncio.sleep(0.05)  # make sure both copies are already buffered
        return await arithmetic.mul(ctx, xs[ctx.party], ys[ctx.party])

    results = run_parties(net, timed(program), timeout=5, return_exceptions=True)

    error = results[2]
    assert isinstance(error, ProtocolError), error
    assert "duplicate" in str(error)
    assert "server-0" in str(error)
    assert error.elapsed < 1
    assert isinstance(results[0][0], ReplicatedShare)
    assert isinstance(results[1][0], ReplicatedShare)


def test_duplicate_arriving_while_the_receiver_waits_fails_its_next_receive(net, run_parties, rng):
    """Party 0 already waits for z_1 when two copies arrive: the job must still fail."""
    _, _, xs, ys = inputs(rng)

    def duplicate(message):
        if message.sender == 1 and message.tag.op == MUL_OP:
            return [message.words, message.words]
        return [message.words]

    net.interceptor = duplicate

    async def program(ctx):
        if ctx.party == 1:
            await asyncio.sleep(0.05)  # party 0 is waiting by now
        first = await arithmetic.mul(ctx, xs[ctx.party], ys[ctx.party])
        return await arithmetic.mul(ctx, first, ys[ctx.party])

    results = run_parties(net, timed(program), timeout=5, return_exceptions=True)

    error = results[0]
    assert isinstance(error, ProtocolError), error
    assert "duplicate" in str(error)
    assert "server-1" in str(error)
    assert error.elapsed < 1


def test_every_message_duplicated_fails_every_party(net, run_parties, rng):
    _, _, xs, ys = inputs(rng)
    net.interceptor = lambda message: [message.words] * (2 if message.tag.op >= MUL_OP else 1)

    async def program(ctx):
        first = await arithmetic.mul(ctx, xs[ctx.party], ys[ctx.party])
        return await arithmetic.mul(ctx, first, ys[ctx.party])

    results = run_parties(net, timed(program), timeout=5, return_exceptions=True)

    for p in PARTIES:
        assert isinstance(results[p], ProtocolError), (p, results[p])
        assert results[p].elapsed < 1


def test_disconnected_peer_fails_the_waiting_party_quickly(net, run_parties, rng):
    """Party 2 never sends its z_2 and is lost after 0.1 s; party 1 waits on it."""
    _, _, xs, ys = inputs(rng)
    lost = asyncio.Event()
    deadline = 10.0

    async def program(ctx):
        if ctx.party == 2:
            await asyncio.sleep(0.1)
            net.disconnect(PartyId(2))
            lost.set()
            return None
        result = await arithmetic.mul(ctx, xs[ctx.party], ys[ctx.party])
        # Party 0 got z_1 and finished; its next product must send to party 2.
        await lost.wait()
        return await arithmetic.mul(ctx, result, ys[ctx.party])

    results = run_parties(net, timed(program), timeout=deadline, return_exceptions=True)

    for p in (0, 1):
        error = results[p]
        assert isinstance(error, ServerUnavailableError), (p, error)
        assert error.server == "server-2"
        assert "server-2" in str(error)
        assert error.elapsed < 1.0  # well before the 10 s deadline


def test_disconnect_fails_every_receive_waiting_on_the_lost_peer(net, run_parties):
    async def program(ctx):
        if ctx.party == 2:
            await asyncio.sleep(0.1)
            net.disconnect(PartyId(2))
            return None
        tags = [ctx.allocate_tag() for _ in range(3)]
        return await asyncio.gather(*(ctx.recv(PartyId(2), tag) for tag in tags), return_exceptions=True)

    results = run_parties(net, timed(program), timeout=10, return_exceptions=True)

    for p in (0, 1):
        errors, elapsed = results[p]
        assert elapsed < 1.0
        assert all(isinstance(e, ServerUnavailableError) and e.server == "server-2" for e in errors)


def test_a_new_job_after_a_disconnect_fails_fast(net, run_parties):
    net.disconnect(PartyId(1))

    async def nothing(ctx):
        return None

    results = run_parties(net, timed(nothing), timeout=10, return_exceptions=True)

    for p in (0, 2):
        assert isinstance(results[p], ServerUnavailableError)
        assert results[p].server == "server-1"


@pytest.mark.parametrize("aborter", PARTIES)
def test_peer_abort_fails_the_others_naming_the_aborting_server(net, run_parties, rng, aborter):
    _, _, xs, ys = inputs(rng)
    waiting = (aborter - 1) % 3  # receives the aborter's z in a product
    other = (aborter + 1) % 3

    async def program(ctx):
        if ctx.party == aborter:
            await asyncio.sleep(0.05)
            await ctx.channel.abort(ctx.job_id, "input dataset vanished")
            return None
        await arithmetic.mul(ctx, xs[ctx.party], ys[ctx.party])
        # A party that still completed its product fails on its next receive from the aborter.
        return await ctx.recv(PartyId(aborter), ctx.allocate_tag())

    results = run_parties(net, timed(program), timeout=10, return_exceptions=True)

    for p in (waiting, other):
        error = results[p]
        assert isinstance(error, JobAbortedError), (p, error)
        assert error.peer == f"server-{aborter}"
        assert error.reason == "input dataset vanished"
        assert f"server-{aborter}" in str(error)
        assert error.elapsed < 1.0


def test_abort_of_another_job_does_not_disturb_this_one(net, run_parties, open_shares, rng):
    x, y, xs, ys = inputs(rng)

    async def program(ctx):
        if ctx.party == 0:
            await ctx.channel.abort("some-other-job", "not mine")
        return await arithmetic.mul(ctx, xs[ctx.party], ys[ctx.party])

    opened = open_shares(run_parties(net, program, job_id="this-job"))

    np.testing.assert_array_equal(opened, x * y)
