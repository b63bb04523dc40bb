"""Pseudo-random zero sharing and random sharing from the pairwise keys (protocols.md §2)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from mpc_core.errors import FailedPreconditionError
from mpc_core.prg import prf_words
from mpc_core.types import MessageTag
from mpc_server.protocol.context import PartyContext
from mpc_server.protocol.randomness import random_share, zero_share

TAGS = [
    MessageTag("job-a", 0),
    MessageTag("job-a", 1),
    MessageTag("job-a", 2**40),
    MessageTag("job-b", 1),
    MessageTag("", 7),
    MessageTag("ünïcode job", 3),
]
SIZES = [1, 2, 7, 1000, 40_000]


def draw(run_parties, net, draws):
    """At each party, after key setup, evaluate ``draws(ctx)`` (a list of arrays)."""

    async def program(ctx):
        return [ctx.keys, draws(ctx)]

    return run_parties(net, program)


@pytest.mark.parametrize("n", SIZES)
def test_zero_shares_sum_to_zero_for_every_tag(net, run_parties, n):
    results = draw(run_parties, net, lambda ctx: [zero_share(ctx, tag, n) for tag in TAGS])

    for t in range(len(TAGS)):
        alphas = [results[p][1][t] for p in range(3)]
        assert all(a.dtype == np.uint64 and a.shape == (n,) for a in alphas)
        np.testing.assert_array_equal(alphas[0] + alphas[1] + alphas[2], np.zeros(n, dtype=np.uint64))
        # Each alpha_i alone is pseudo-random, not zero.
        for a in alphas:
            assert np.count_nonzero(a) >= n - 1


def test_zero_share_of_other_purpose_also_sums_to_zero(net, run_parties):
    tag = MessageTag("job", 5)
    results = draw(run_parties, net, lambda ctx: [zero_share(ctx, tag, 64, purpose=b"other")])

    total = sum((results[p][1][0] for p in range(3)), start=np.zeros(64, dtype=np.uint64))
    np.testing.assert_array_equal(total, np.zeros(64, dtype=np.uint64))


def test_different_tags_and_purposes_give_different_alpha(net, run_parties):
    n = 256

    def draws(ctx):
        return [zero_share(ctx, tag, n) for tag in TAGS] + [zero_share(ctx, TAGS[0], n, purpose=b"other")]

    results = draw(run_parties, net, draws)

    for p in range(3):
        alphas = results[p][1]
        for i in range(len(alphas)):
            for j in range(i + 1, len(alphas)):
                # Independent pseudo-random streams: no position agrees (a 2^-64 event each).
                assert not np.any(alphas[i] == alphas[j]), (p, i, j)


def test_zero_share_is_deterministic_per_tag_and_prefix_consistent(net, run_parties):
    tag = MessageTag("job", 9)

    results = draw(run_parties, net, lambda ctx: [zero_share(ctx, tag, 100), zero_share(ctx, tag, 10)])

    for p in range(3):
        again, prefix = results[p][1]
        assert again.shape == (100,)
        np.testing.assert_array_equal(prefix, again[:10])


def test_alpha_is_the_difference_of_the_two_pairwise_prf_streams(net, run_parties):
    tag = MessageTag("job", 4)
    results = draw(run_parties, net, lambda ctx: [zero_share(ctx, tag, 50)])

    for p in range(3):
        keys, (alpha,) = results[p]
        label = tag.to_bytes(b"zero")
        np.testing.assert_array_equal(alpha, prf_words(keys.own, label, 50) - prf_words(keys.next, label, 50))


@pytest.mark.parametrize("n", [1, 1000])
def test_random_share_is_a_consistent_replicated_sharing(net, run_parties, open_shares, n):
    tags = [MessageTag("job", 1), MessageTag("job", 2)]
    results = draw(run_parties, net, lambda ctx: [random_share(ctx, tag, n) for tag in tags])

    first = open_shares([results[p][1][0] for p in range(3)])
    second = open_shares([results[p][1][1] for p in range(3)])
    assert first.shape == (n,)
    assert not np.any(first == second)


def test_zero_share_without_key_setup_is_refused(net):
    async def main():
        ctx = PartyContext(net.channels[0], "job", asyncio.get_running_loop().time() + 1)
        with pytest.raises(FailedPreconditionError, match="keys"):
            zero_share(ctx, MessageTag("job", 1), 4)
        with pytest.raises(FailedPreconditionError, match="keys"):
            random_share(ctx, MessageTag("job", 1), 4)

    asyncio.run(main())
