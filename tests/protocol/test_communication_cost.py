"""Communication cost of the products and of truncation (protocols.md §4, §5, §7.1), in both rings.

Traffic is measured with ``ctx.stats`` before and after the operation, so
the agreement round is excluded, and cross-checked with the messages the
in-memory network recorded. The expected sizes are written out, not taken
from the ring object: one element is 8 bytes (one 64-bit word on the
transport) in Z_2^64 and 16 bytes (two words) in Z_2^128.
"""

from __future__ import annotations

import dataclasses

import pytest

from mpc_core.sharing import share
from mpc_core.types import PARTIES
from mpc_server.protocol import arithmetic, truncation

ELEMENT_BYTES = {64: 8, 128: 16}
ELEMENT_WORDS = {64: 1, 128: 2}


def measured(operation):
    """A program that runs ``operation(ctx)`` and returns its traffic (a stats delta)."""

    async def program(ctx):
        before = dataclasses.replace(ctx.stats)
        await operation(ctx)
        after = ctx.stats
        return {
            "sent": after.bytes_sent - before.bytes_sent,
            "received": after.bytes_received - before.bytes_received,
            "rounds": after.rounds - before.rounds,
        }

    return program


def program_messages(net):
    """Recorded messages after the agreement round (op 0)."""
    return [m for m in net.sent if m.tag.op >= 1]


def shared(ring, data, n):
    return share(ring, data.vector(n)[0])


@pytest.mark.parametrize("n", [1, 3, 1000, 100_000])
def test_multiplication_sends_one_element_per_product_per_party(net, run_parties, ring, ring_data, n):
    xs, ys = shared(ring, ring_data, n), shared(ring, ring_data, n)
    net.record = True

    costs = run_parties(net, measured(lambda ctx: arithmetic.mul(ctx, xs[ctx.party], ys[ctx.party])))

    for cost in costs:
        assert cost["sent"] == ELEMENT_BYTES[ring.bits] * n
        assert cost["received"] == ELEMENT_BYTES[ring.bits] * n
        assert cost["rounds"] == 1
    messages = program_messages(net)
    assert len(messages) == 3
    # Party i sends z_i to party i-1 only (protocols.md §0.1, §4).
    assert sorted((m.sender, m.receiver) for m in messages) == [(0, 2), (1, 0), (2, 1)]
    assert all(m.words.size == ELEMENT_WORDS[ring.bits] * n for m in messages)
    assert all(m.words.nbytes == ELEMENT_BYTES[ring.bits] * n for m in messages)
    assert len({m.tag for m in messages}) == 1


@pytest.mark.parametrize("length", [1, 1000, 10_000])
def test_dot_product_sends_one_element_whatever_the_length(net, run_parties, ring, ring_data, length):
    xs, ys = shared(ring, ring_data, length), shared(ring, ring_data, length)
    net.record = True

    costs = run_parties(net, measured(lambda ctx: arithmetic.dot(ctx, xs[ctx.party], ys[ctx.party])))

    for cost in costs:
        assert cost["sent"] == ELEMENT_BYTES[ring.bits]
        assert cost["received"] == ELEMENT_BYTES[ring.bits]
        assert cost["rounds"] == 1
    messages = program_messages(net)
    assert [m.words.size for m in messages] == [ELEMENT_WORDS[ring.bits]] * 3


@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (1, 1000), (5, 1), (16, 300), (200, 50)])
def test_matvec_sends_one_element_per_row(net, run_parties, ring, ring_data, rows, cols):
    ms = share(ring, ring_data.vector(rows * cols)[0].reshape(rows, cols))
    vs = shared(ring, ring_data, cols)
    net.record = True

    costs = run_parties(net, measured(lambda ctx: arithmetic.matvec(ctx, ms[ctx.party], rows, vs[ctx.party])))

    for cost in costs:
        assert cost["sent"] == ELEMENT_BYTES[ring.bits] * rows
        assert cost["received"] == ELEMENT_BYTES[ring.bits] * rows
        assert cost["rounds"] == 1
    assert [m.words.size for m in program_messages(net)] == [ELEMENT_WORDS[ring.bits] * rows] * 3


def test_local_operations_send_nothing(net, run_parties, ring, ring_data):
    xs, ys = shared(ring, ring_data, 100), shared(ring, ring_data, 100)
    net.record = True

    async def operation(ctx):
        p = ctx.party
        s = arithmetic.add(xs[p], ys[p])
        s = arithmetic.sub(s, ys[p])
        s = arithmetic.mul_public(s, 7)
        return arithmetic.add_public(p, s, 1)

    costs = run_parties(net, measured(operation))

    assert all(c == {"sent": 0, "received": 0, "rounds": 0} for c in costs)
    assert program_messages(net) == []


@pytest.mark.parametrize("n", [1, 5000])
def test_truncation_sends_one_element_from_party_1_to_party_0(net, run_parties, ring, ring_data, n):
    xs = shared(ring, ring_data, n)
    net.record = True

    costs = run_parties(net, measured(lambda ctx: truncation.truncate(ctx, xs[ctx.party], 16)))

    size = ELEMENT_BYTES[ring.bits] * n
    assert [c["sent"] for c in costs] == [0, size, 0]
    assert [c["received"] for c in costs] == [size, 0, 0]
    assert [c["rounds"] for c in costs] == [1, 1, 0]
    messages = program_messages(net)
    assert [(m.sender, m.receiver, m.words.size) for m in messages] == [(1, 0, ELEMENT_WORDS[ring.bits] * n)]


def test_agreement_round_is_the_only_traffic_before_the_program(net, run_parties):
    net.record = True

    async def nothing(ctx):
        return ctx.stats

    stats = run_parties(net, nothing)

    for p in PARTIES:
        # digest (32 B) + key (16 B) to party i-1, digest to party i+1: the same in both rings.
        assert stats[p].bytes_sent == 48 + 32
        assert stats[p].bytes_received == 48 + 32
        assert stats[p].rounds == 1
    assert len(net.sent) == 6
