"""Pseudo-random zero sharing and random sharing from the pairwise keys (protocols.md §2), in both rings.

Sums are checked with Python integers modulo 2^k.
"""

from __future__ import annotations

import asyncio

import pytest

from mpc_core.errors import FailedPreconditionError
from mpc_core.prg import prf_elements, prf_words
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
def test_zero_shares_sum_to_zero_for_every_tag(net, run_parties, ring, ring_data, n):
    results = draw(run_parties, net, lambda ctx: [zero_share(ctx, tag, n) for tag in TAGS])

    for t in range(len(TAGS)):
        alphas = [results[p][1][t] for p in range(3)]
        assert all(a.dtype == ring.dtype and a.shape == (n,) for a in alphas)
        ints = [ring_data.ints(a) for a in alphas]
        assert all(sum(column) % ring.modulus == 0 for column in zip(*ints, strict=True))
        # Each alpha_i alone is pseudo-random, not zero.
        for values in ints:
            assert sum(v != 0 for v in values) >= n - 1


def test_zero_share_elements_use_the_whole_ring(net, run_parties, ring, ring_data):
    """The top bit and the top bit of the low word are each set in about half of the elements.

    In Z_2^128 they also agree in about half of the elements, so a share built from
    64-bit randomness fails: zero-extended (bit 127 never set) or sign-extended (bit 127
    always equal to bit 63). Binomial(40000, 1/2) has standard deviation 100, so the
    window 0.45..0.55 is 10 standard deviations wide on either side.
    """
    n = 40_000
    results = draw(run_parties, net, lambda ctx: [zero_share(ctx, TAGS[1], n)])

    top = ring.bits - 1
    for p in range(3):
        values = ring_data.ints(results[p][1][0])
        counts = {
            "top bit": sum((v >> top) & 1 for v in values),
            "bit 63": sum((v >> 63) & 1 for v in values),
        }
        if ring.bits == 128:
            counts["bit 127 == bit 63"] = sum(((v >> top) & 1) == ((v >> 63) & 1) for v in values)
        for what, count in counts.items():
            assert 0.45 * n < count < 0.55 * n, (p, what, count)


def test_zero_share_of_other_purpose_also_sums_to_zero(net, run_parties, ring, ring_data):
    tag = MessageTag("job", 5)
    results = draw(run_parties, net, lambda ctx: [zero_share(ctx, tag, 64, purpose=b"other")])

    ints = [ring_data.ints(results[p][1][0]) for p in range(3)]
    assert [sum(column) % ring.modulus for column in zip(*ints, strict=True)] == [0] * 64


def test_different_tags_and_purposes_give_different_alpha(net, run_parties, ring_data):
    n = 256

    def draws(ctx):
        return [zero_share(ctx, tag, n) for tag in TAGS] + [zero_share(ctx, TAGS[0], n, purpose=b"other")]

    results = draw(run_parties, net, draws)

    for p in range(3):
        alphas = [ring_data.ints(a) for a in results[p][1]]
        for i in range(len(alphas)):
            for j in range(i + 1, len(alphas)):
                # Independent pseudo-random streams: no position agrees (a 2^-64 event each at most).
                assert not any(a == b for a, b in zip(alphas[i], alphas[j], strict=True)), (p, i, j)


def test_zero_share_is_deterministic_per_tag_and_prefix_consistent(net, run_parties, ring_data):
    tag = MessageTag("job", 9)

    results = draw(
        run_parties,
        net,
        lambda ctx: [zero_share(ctx, tag, 100), zero_share(ctx, tag, 10), zero_share(ctx, tag, 100)],
    )

    for p in range(3):
        whole, prefix, again = (ring_data.ints(a) for a in results[p][1])
        assert len(whole) == 100
        assert prefix == whole[:10]
        assert again == whole


def test_alpha_is_the_difference_of_the_two_pairwise_prf_streams(net, run_parties, ring, ring_data):
    tag = MessageTag("job", 4)
    n = 50
    results = draw(run_parties, net, lambda ctx: [zero_share(ctx, tag, n)])

    words_per_element = {64: 1, 128: 2}[ring.bits]
    for p in range(3):
        keys, (alpha,) = results[p]
        label = tag.to_bytes(b"zero")
        # F(k, tag) in the ring: consecutive little-endian 64-bit words of the keystream, low word first.
        streams = []
        for key in (keys.own, keys.next):
            words = [int(w) for w in prf_words(key, label, n * words_per_element)]
            element_ints = [
                sum(words[i * words_per_element + j] << (64 * j) for j in range(words_per_element))
                for i in range(n)
            ]
            assert ring_data.ints(prf_elements(ring, key, label, n)) == element_ints
            streams.append(element_ints)
        own, nxt = streams
        assert ring_data.ints(alpha) == ring_data.reduce([a - b for a, b in zip(own, nxt, strict=True)])


@pytest.mark.parametrize("n", [1, 1000])
def test_random_share_is_a_consistent_replicated_sharing(net, run_parties, open_shares, ring, ring_data, n):
    tags = [MessageTag("job", 1), MessageTag("job", 2)]
    results = draw(run_parties, net, lambda ctx: [random_share(ctx, tag, n) for tag in tags])

    assert all(s.ring == ring for p in range(3) for s in results[p][1])
    first = ring_data.ints(open_shares([results[p][1][0] for p in range(3)]))
    second = ring_data.ints(open_shares([results[p][1][1] for p in range(3)]))
    assert len(first) == n
    assert not any(a == b for a, b in zip(first, second, strict=True))


def test_random_share_components_are_the_prf_streams_of_the_pairwise_keys(net, run_parties, ring, ring_data):
    """Party i holds (F(k_i, tag), F(k_{i+1}, tag)) under the purpose label."""
    tag = MessageTag("job", 3)
    results = draw(run_parties, net, lambda ctx: [random_share(ctx, tag, 20, purpose=b"mask")])

    label = tag.to_bytes(b"mask")
    for p in range(3):
        keys, (s,) = results[p]
        assert ring_data.ints(s.first) == ring_data.ints(prf_elements(ring, keys.own, label, 20))
        assert ring_data.ints(s.second) == ring_data.ints(prf_elements(ring, keys.next, label, 20))


def test_zero_share_without_key_setup_is_refused(net, ring):
    async def main():
        ctx = PartyContext(net.channels[0], "job", asyncio.get_running_loop().time() + 1, ring=ring)
        with pytest.raises(FailedPreconditionError, match="keys"):
            zero_share(ctx, MessageTag("job", 1), 4)
        with pytest.raises(FailedPreconditionError, match="keys"):
            random_share(ctx, MessageTag("job", 1), 4)

    asyncio.run(main())
