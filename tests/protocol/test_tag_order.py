"""Message tags follow program (call) order, never completion order (both rings).

``MessageTag`` and ``PartyContext.allocate_tag`` promise that op indices are
allocated "in program order when a protocol function is called, never by
completion order", so concurrent operations launched with ``asyncio.gather``
label their messages (and PRF draws) the same way at all three parties, even
when the parties' local work finishes in a different order (they are separate
machines). Large local work (``OFFLOAD_MIN_ELEMENTS`` and up) runs in a worker
thread, which is where completion order can differ between parties.
"""

from __future__ import annotations

import asyncio

import pytest

from mpc_core.sharing import share
from mpc_core.types import PARTIES
from mpc_server.protocol import arithmetic, truncation
from mpc_server.protocol.context import OFFLOAD_MIN_ELEMENTS, PartyContext

SMALL = 5
LARGE = 2 * OFFLOAD_MIN_ELEMENTS


def shared_pair(data, n):
    x, x_ints = data.vector(n)
    y, y_ints = data.vector(n)
    return x_ints, y_ints, share(data.ring, x), share(data.ring, y)


def products(data, xs, ys):
    return [(a * b) % data.modulus for a, b in zip(xs, ys, strict=True)]


def inner(data, xs, ys):
    return [sum(a * b for a, b in zip(xs, ys, strict=True)) % data.modulus]


def test_concurrent_small_products_in_one_job_open_correctly(net, run_parties, open_shares, ring, ring_data):
    a, b, as_, bs = shared_pair(ring_data, 10)
    c, d, cs, ds = shared_pair(ring_data, 7)
    matrix, m_ints = ring_data.vector(3 * 7)
    vector, v_ints = ring_data.vector(7)
    ms, vs = share(ring, matrix.reshape(3, 7)), share(ring, vector)
    t_ints = ring_data.signed(10, 40)
    ts = share(ring, ring_data.array(t_ints))

    async def program(ctx):
        p = ctx.party
        return await asyncio.gather(
            arithmetic.mul(ctx, as_[p], bs[p]),
            arithmetic.mul(ctx, cs[p], ds[p]),
            arithmetic.dot(ctx, cs[p], ds[p]),
            arithmetic.matvec(ctx, ms[p], 3, vs[p]),
            truncation.truncate(ctx, ts[p], 16),
        )

    results = run_parties(net, program)

    opened = [open_shares([results[p][k] for p in PARTIES]) for k in range(5)]
    assert ring_data.ints(opened[0]) == products(ring_data, a, b)
    assert ring_data.ints(opened[1]) == products(ring_data, c, d)
    assert ring_data.ints(opened[2]) == inner(ring_data, c, d)
    expected_matvec = [inner(ring_data, m_ints[7 * r : 7 * r + 7], v_ints)[0] for r in range(3)]
    assert ring_data.ints(opened[3]) == expected_matvec
    # In Z_2^64 truncating a 40-bit value fails with probability about 2^-25 (|x'| / 2^64 on
    # average), so requiring all ten within one ulp flakes about once in 3 million runs.
    truncated = ring_data.signed_ints(opened[4])
    assert all(abs(v * 2**16 - t) <= 2**16 for v, t in zip(truncated, t_ints, strict=True))


def test_ops_of_concurrent_calls_are_numbered_in_call_order(net, run_parties, ring, ring_data):
    """Op 1 belongs to the first call and op 2 to the second, whatever their sizes."""
    _, _, xs, ys = shared_pair(ring_data, LARGE)
    _, _, us, vs = shared_pair(ring_data, SMALL)
    net.record = True

    async def program(ctx):
        p = ctx.party
        await asyncio.gather(arithmetic.mul(ctx, xs[p], ys[p]), arithmetic.mul(ctx, us[p], vs[p]))

    run_parties(net, program)

    words_per_element = {64: 1, 128: 2}[ring.bits]
    sizes = {m.tag.op: m.words.size for m in net.sent if m.tag.op >= 1}
    assert sizes == {1: LARGE * words_per_element, 2: SMALL * words_per_element}


@pytest.mark.parametrize("operation", ["mul", "dot", "matvec"])
def test_concurrent_products_open_correctly_when_parties_finish_local_work_in_different_orders(
    net, run_parties, open_shares, ring_data, monkeypatch, operation
):
    """Party 0's first local computation is slow (a busy machine), the others are not."""
    x, y, xs, ys = shared_pair(ring_data, LARGE)
    u, v, us, vs = shared_pair(ring_data, LARGE)
    original = PartyContext.compute
    calls: dict[int, int] = {}

    async def compute_with_latency(self, size, fn, *args):
        index = calls[self.party] = calls.get(self.party, 0) + 1
        if self.party == 0 and index == 1:
            await asyncio.sleep(0.05)
        return await original(self, size, fn, *args)

    monkeypatch.setattr(PartyContext, "compute", compute_with_latency)

    async def one(ctx, a, b):
        if operation == "mul":
            return await arithmetic.mul(ctx, a, b)
        if operation == "dot":
            return await arithmetic.dot(ctx, a, b)
        return await arithmetic.matvec(ctx, a, 1, b)

    async def program(ctx):
        p = ctx.party
        return await asyncio.gather(one(ctx, xs[p], ys[p]), one(ctx, us[p], vs[p]))

    results = run_parties(net, program)

    first = ring_data.ints(open_shares([results[p][0] for p in PARTIES]))
    second = ring_data.ints(open_shares([results[p][1] for p in PARTIES]))
    if operation == "mul":
        assert first == products(ring_data, x, y)
        assert second == products(ring_data, u, v)
    else:
        assert first == inner(ring_data, x, y)
        assert second == inner(ring_data, u, v)


def test_concurrent_large_products_open_correctly_in_repeated_jobs(net, run_parties_in_loop, ring, ring_data):
    """Two equal-size offloaded products at once, ten jobs: thread completion order varies."""
    x, y, xs, ys = shared_pair(ring_data, OFFLOAD_MIN_ELEMENTS)
    u, v, us, vs = shared_pair(ring_data, OFFLOAD_MIN_ELEMENTS)
    expected = (products(ring_data, x, y), products(ring_data, u, v))

    async def program(ctx):
        p = ctx.party
        return await asyncio.gather(arithmetic.mul(ctx, xs[p], ys[p]), arithmetic.mul(ctx, us[p], vs[p]))

    async def main():
        return [await run_parties_in_loop(net, program) for _ in range(10)]

    wrong = 0
    for results in asyncio.run(main()):
        opened = []
        for k in (0, 1):
            components = [ring_data.ints(results[p][k].first) for p in PARTIES]
            opened.append([sum(c) % ring.modulus for c in zip(*components, strict=True)])
        consistent = all(
            ring_data.ints(results[p][k].second) == ring_data.ints(results[(p + 1) % 3][k].first)
            for p in PARTIES
            for k in (0, 1)
        )
        if not (consistent and tuple(opened) == expected):
            wrong += 1
    assert wrong == 0, f"{wrong} of 10 jobs opened to wrong products"
