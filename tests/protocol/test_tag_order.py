"""Message tags follow program (call) order, never completion order.

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

import numpy as np
import pytest

from mpc_core.sharing import share
from mpc_core.types import PARTIES
from mpc_server.protocol import arithmetic, truncation
from mpc_server.protocol.context import OFFLOAD_MIN_ELEMENTS, PartyContext

SMALL = 5
LARGE = 2 * OFFLOAD_MIN_ELEMENTS


def ring_vector(rng, n):
    return rng.integers(0, 2**64, size=n, dtype=np.uint64)


def shared_pair(rng, n):
    x, y = ring_vector(rng, n), ring_vector(rng, n)
    return x, y, share(x), share(y)


def test_concurrent_small_products_in_one_job_open_correctly(net, run_parties, open_shares, rng):
    a, b, as_, bs = shared_pair(rng, 10)
    c, d, cs, ds = shared_pair(rng, 7)
    matrix, vector = ring_vector(rng, 3 * 7).reshape(3, 7), ring_vector(rng, 7)
    ms, vs = share(matrix), share(vector)

    async def program(ctx):
        p = ctx.party
        return await asyncio.gather(
            arithmetic.mul(ctx, as_[p], bs[p]),
            arithmetic.mul(ctx, cs[p], ds[p]),
            arithmetic.dot(ctx, cs[p], ds[p]),
            arithmetic.matvec(ctx, ms[p], 3, vs[p]),
            truncation.truncate(ctx, as_[p], 16),
        )

    results = run_parties(net, program)

    opened = [open_shares([results[p][k] for p in PARTIES]) for k in range(5)]
    np.testing.assert_array_equal(opened[0], a * b)
    np.testing.assert_array_equal(opened[1], c * d)
    assert opened[2][0] == (c * d).sum(dtype=np.uint64)
    np.testing.assert_array_equal(opened[3], matrix @ vector)
    assert opened[4].shape == a.shape


def test_ops_of_concurrent_calls_are_numbered_in_call_order(net, run_parties, rng):
    """Op 1 belongs to the first call and op 2 to the second, whatever their sizes."""
    _, _, xs, ys = shared_pair(rng, LARGE)
    _, _, us, vs = shared_pair(rng, SMALL)
    net.record = True

    async def program(ctx):
        p = ctx.party
        await asyncio.gather(arithmetic.mul(ctx, xs[p], ys[p]), arithmetic.mul(ctx, us[p], vs[p]))

    run_parties(net, program)

    sizes = {m.tag.op: m.words.size for m in net.sent if m.tag.op >= 1}
    assert sizes == {1: LARGE, 2: SMALL}


@pytest.mark.parametrize("operation", ["mul", "dot", "matvec"])
def test_concurrent_products_open_correctly_when_parties_finish_local_work_in_different_orders(
    net, run_parties, open_shares, rng, monkeypatch, operation
):
    """Party 0's first local computation is slow (a busy machine), the others are not."""
    x, y, xs, ys = shared_pair(rng, LARGE)
    u, v, us, vs = shared_pair(rng, LARGE)
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

    first = open_shares([results[p][0] for p in PARTIES])
    second = open_shares([results[p][1] for p in PARTIES])
    if operation == "mul":
        np.testing.assert_array_equal(first, x * y)
        np.testing.assert_array_equal(second, u * v)
    else:
        assert first[0] == (x * y).sum(dtype=np.uint64)
        assert second[0] == (u * v).sum(dtype=np.uint64)


def test_concurrent_large_products_open_correctly_in_repeated_jobs(net, run_parties_in_loop, rng):
    """Two equal-size offloaded products at once, ten jobs: thread completion order varies."""
    x, y, xs, ys = shared_pair(rng, OFFLOAD_MIN_ELEMENTS)
    u, v, us, vs = shared_pair(rng, OFFLOAD_MIN_ELEMENTS)

    async def program(ctx):
        p = ctx.party
        return await asyncio.gather(arithmetic.mul(ctx, xs[p], ys[p]), arithmetic.mul(ctx, us[p], vs[p]))

    async def main():
        return [await run_parties_in_loop(net, program) for _ in range(10)]

    wrong = 0
    for results in asyncio.run(main()):
        first = sum((results[p][0].first for p in PARTIES), start=np.zeros_like(x))
        second = sum((results[p][1].first for p in PARTIES), start=np.zeros_like(x))
        consistent = all(
            np.array_equal(results[p][k].second, results[(p + 1) % 3][k].first)
            for p in PARTIES
            for k in (0, 1)
        )
        if not (consistent and np.array_equal(first, x * y) and np.array_equal(second, u * v)):
            wrong += 1
    assert wrong == 0, f"{wrong} of 10 jobs opened to wrong products"
