"""Lost, duplicated and aborted messages fail the job promptly, naming the peer.

``net.interceptor`` turns one sent message into the list of copies actually
delivered: ``[]`` drops it, ``[w, w]`` duplicates it. Op 0 is the agreement
round, so a product started right after setup has op 1. The same interceptor
can alter a message's length, which the receiver must refuse with a
:class:`ProtocolError` naming the sender (``PartyContext.recv_elements``). All
tests run in both rings.
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
from mpc_core.ring import RING128
from mpc_core.sharing import ReplicatedShare, share
from mpc_core.types import PARTIES, PartyId
from mpc_server.protocol import arithmetic, truncation

MUL_OP = 1


def inputs(data, n=8):
    """Two random n-vectors of the test's ring, as integers and as shares."""
    x, x_ints = data.vector(n)
    y, y_ints = data.vector(n)
    return x_ints, y_ints, share(data.ring, x), share(data.ring, y)


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
def test_dropped_product_message_times_out_at_the_deadline(net, run_parties, ring_data, sender):
    receiver = (sender - 1) % 3
    _, _, xs, ys = inputs(ring_data)
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


def test_receive_after_the_deadline_fails_at_once(net, run_parties, ring_data):
    _, _, xs, ys = inputs(ring_data)

    async def late(ctx):
        await asyncio.sleep(0.3)
        return await arithmetic.mul(ctx, xs[ctx.party], ys[ctx.party])

    results = run_parties(net, timed(late), timeout=0.2, return_exceptions=True)

    for error in results:
        assert isinstance(error, ProtocolTimeoutError)
        assert "deadline" in str(error)
        assert error.elapsed < 0.5


def test_duplicate_message_buffered_before_the_receive_is_a_protocol_error(net, run_parties, ring_data):
    """Party 0's z_0 reaches party 2 twice before party 2 asks for it."""
    _, _, xs, ys = inputs(ring_data)

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


def test_duplicate_arriving_while_the_receiver_waits_fails_its_next_receive(net, run_parties, ring_data):
    """Party 0 already waits for z_1 when two copies arrive: the job must still fail."""
    _, _, xs, ys = inputs(ring_data)

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


def test_every_message_duplicated_fails_every_party(net, run_parties, ring_data):
    _, _, xs, ys = inputs(ring_data)
    net.interceptor = lambda message: [message.words] * (2 if message.tag.op >= MUL_OP else 1)

    async def program(ctx):
        first = await arithmetic.mul(ctx, xs[ctx.party], ys[ctx.party])
        return await arithmetic.mul(ctx, first, ys[ctx.party])

    results = run_parties(net, timed(program), timeout=5, return_exceptions=True)

    for p in PARTIES:
        assert isinstance(results[p], ProtocolError), (p, results[p])
        assert results[p].elapsed < 1


def test_disconnected_peer_fails_the_waiting_party_quickly(net, run_parties, ring_data):
    """Party 2 never sends its z_2 and is lost after 0.1 s; party 1 waits on it."""
    _, _, xs, ys = inputs(ring_data)
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
def test_peer_abort_fails_the_others_naming_the_aborting_server(net, run_parties, ring_data, aborter):
    _, _, xs, ys = inputs(ring_data)
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


def test_abort_of_another_job_does_not_disturb_this_one(net, run_parties, open_shares, ring_data):
    x, y, xs, ys = inputs(ring_data)

    async def program(ctx):
        if ctx.party == 0:
            await ctx.channel.abort("some-other-job", "not mine")
        return await arithmetic.mul(ctx, xs[ctx.party], ys[ctx.party])

    opened = open_shares(run_parties(net, program, job_id="this-job"))

    assert ring_data.ints(opened) == ring_data.reduce([a * b for a, b in zip(x, y, strict=True)])


def resized(words, ring, change):
    """``words`` with ``change`` elements more (> 0: copies of the first) or fewer (< 0)."""
    per_element = {64: 1, 128: 2}[ring.bits]
    if change < 0:
        return words[: words.size + change * per_element]
    return np.concatenate([words, np.tile(words[:per_element], change)])


@pytest.mark.parametrize("change", [-1, 1, -8], ids=["one-element-short", "one-element-long", "empty"])
@pytest.mark.parametrize("sender", PARTIES)
def test_reshare_with_the_wrong_number_of_elements_fails_naming_the_sender(
    net, run_parties, ring, ring_data, sender, change
):
    """Party ``sender``'s z reaches party sender-1 with too few or too many elements."""
    receiver = (sender - 1) % 3
    _, _, xs, ys = inputs(ring_data, n=8)

    def resize(message):
        if message.sender == sender and message.tag.op == MUL_OP:
            return [resized(message.words, ring, change)]
        return [message.words]

    net.interceptor = resize

    results = run_parties(
        net,
        timed(lambda ctx: arithmetic.mul(ctx, xs[ctx.party], ys[ctx.party])),
        timeout=10,
        return_exceptions=True,
    )

    error = results[receiver]
    assert type(error) is ProtocolError, error
    assert f"server-{sender}" in str(error)
    assert "malformed" in str(error)
    assert all(f"server-{p}" not in str(error) for p in PARTIES if p != sender)
    assert error.elapsed < 1.0  # at once, not at the 10 s deadline
    for p in PARTIES:
        if p != receiver:
            assert isinstance(results[p][0], ReplicatedShare)


@pytest.mark.parametrize("ring", [RING128], ids=["ring128"])
@pytest.mark.parametrize("extra_words", [-1, 1])
def test_reshare_of_a_partial_z128_element_fails_naming_the_sender(
    net, run_parties, ring, ring_data, extra_words
):
    """An odd number of 64-bit words is no whole number of Z_2^128 elements."""
    _, _, xs, ys = inputs(ring_data, n=4)

    def resize(message):
        if message.sender == 2 and message.tag.op == MUL_OP:
            words = message.words
            return [words[:-1] if extra_words < 0 else np.concatenate([words, words[:1]])]
        return [message.words]

    net.interceptor = resize

    results = run_parties(
        net, lambda ctx: arithmetic.mul(ctx, xs[ctx.party], ys[ctx.party]), timeout=10, return_exceptions=True
    )

    error = results[1]
    assert type(error) is ProtocolError, error
    assert "server-2" in str(error)
    assert isinstance(results[0], ReplicatedShare)
    assert isinstance(results[2], ReplicatedShare)


@pytest.mark.parametrize("change", [-1, 1])
def test_truncation_message_with_the_wrong_number_of_elements_fails_naming_party_1(
    net, run_parties, ring, ring_data, change
):
    xs = share(ring, ring_data.vector(6)[0])

    def resize(message):
        if message.sender == 1 and message.tag.op == MUL_OP:  # the truncation is op 1 here
            return [resized(message.words, ring, change)]
        return [message.words]

    net.interceptor = resize

    results = run_parties(
        net, lambda ctx: truncation.truncate(ctx, xs[ctx.party], 16), timeout=10, return_exceptions=True
    )

    error = results[0]
    assert type(error) is ProtocolError, error
    assert "server-1" in str(error)
    assert isinstance(results[1], ReplicatedShare)
    assert isinstance(results[2], ReplicatedShare)
