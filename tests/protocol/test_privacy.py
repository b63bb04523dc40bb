"""What a party receives reveals nothing: statistical checks on recorded messages.

In a multiplication party i sends ``z_i = x_i*y_i + x_i*y_{i+1} + x_{i+1}*y_i +
alpha_i`` to party i-1, which does not know ``k_{i+1}``; so the word it
receives must be uniform whatever the inputs (protocols.md §2, §4).

The chi-square critical values are hard-coded (scipy is not a dependency):
p = 10^-6 for 255 degrees of freedom (256 buckets of the top byte) is 377.08,
and for 15 degrees of freedom (16 buckets of the top 4 bits) 56.49. Each
chi-square assertion therefore fails by chance with probability 10^-6 (a
CI run must not flake), while a missing mask gives statistics in the
thousands.
"""

from __future__ import annotations

import asyncio

import numpy as np

from mpc_core.ring import RingArray
from mpc_core.sharing import ReplicatedShare, share, share_for_party
from mpc_core.types import PARTIES
from mpc_server.protocol import arithmetic, truncation

CHI2_255_P1E6 = 377.08
CHI2_15_P1E6 = 56.49


def chi_square(words: RingArray, top_bits: int) -> float:
    """Chi-square statistic of the top ``top_bits`` bits of ``words`` against uniform."""
    buckets = 1 << top_bits
    counts = np.bincount((words >> np.uint64(64 - top_bits)).astype(np.int64), minlength=buckets)
    expected = words.size / buckets
    return float(((counts - expected) ** 2 / expected).sum())


def received_by(net, receiver, min_op=1):
    """Words ``receiver`` got in protocol steps after the agreement round, concatenated."""
    parts = [m.words for m in net.sent if m.receiver == receiver and m.tag.op >= min_op]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)


def constant_components(value: RingArray) -> tuple[ReplicatedShare, ReplicatedShare, ReplicatedShare]:
    """A valid but degenerate sharing: x_0 = x_1 = 0, x_2 = x (no randomness at all)."""
    zeros = np.zeros_like(value)
    components = (zeros, zeros, value.copy())
    s0, s1, s2 = (share_for_party(components, p) for p in PARTIES)
    return s0, s1, s2


def test_chi_square_helper_rejects_non_uniform_words(rng):
    uniform = rng.integers(0, 2**64, size=1 << 16, dtype=np.uint64)
    assert chi_square(uniform, 8) < CHI2_255_P1E6
    skewed = uniform >> np.uint64(1)  # top bit always 0
    assert chi_square(skewed, 8) > CHI2_255_P1E6
    assert chi_square(np.full(1 << 16, 12345, dtype=np.uint64), 4) > CHI2_15_P1E6


def test_received_products_are_uniform_when_the_mask_is_the_only_randomness(net, run_parties):
    """x = y = all-ones with constant components: only alpha_i can make z_i look uniform."""
    n = 1 << 16  # 256 words per top-byte bucket
    ones = np.ones(n, dtype=np.uint64)
    xs = ys = constant_components(ones)
    net.record = True

    shares = run_parties(net, lambda ctx: arithmetic.mul(ctx, xs[ctx.party], ys[ctx.party]))

    for receiver in PARTIES:
        words = received_by(net, receiver)
        assert words.size == n
        statistic = chi_square(words, 8)
        assert statistic < CHI2_255_P1E6, (receiver, statistic)
    # Sanity: the product is still right.
    total = shares[0].first + shares[1].first + shares[2].first
    np.testing.assert_array_equal(total, ones)


def test_received_product_words_are_uniform_for_client_shares_of_a_constant(net, run_parties):
    n = 1 << 16
    x = np.full(n, 3, dtype=np.uint64)
    xs, ys = share(x), share(x)
    net.record = True

    run_parties(net, lambda ctx: arithmetic.mul(ctx, xs[ctx.party], ys[ctx.party]))

    words = np.concatenate([received_by(net, r) for r in PARTIES])
    assert words.size == 3 * n
    assert chi_square(words, 8) < CHI2_255_P1E6


def test_received_product_words_are_uniform_across_jobs(net, run_parties_in_loop):
    """The same scalar product x = y = 1 in 200 jobs (the same input shares each time)."""
    jobs = 200
    xs = ys = constant_components(np.ones(1, dtype=np.uint64))
    net.record = True

    async def main():
        for job in range(jobs):
            await run_parties_in_loop(
                net, lambda ctx: arithmetic.mul(ctx, xs[ctx.party], ys[ctx.party]), job_id=f"job-{job}"
            )

    asyncio.run(main())

    words = np.concatenate([received_by(net, r) for r in PARTIES])
    assert words.size == 3 * jobs
    assert chi_square(words, 4) < CHI2_15_P1E6
    assert np.unique(words).size == words.size  # fresh masks per job


def test_no_payload_equals_or_contains_a_cleartext_vector(net, run_parties, rng):
    n, rows = 1000, 10
    x = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    y = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    small = rng.integers(0, 1000, size=n, dtype=np.uint64)  # low-entropy input, e.g. ages
    matrix = rng.integers(0, 2**64, size=(rows, n), dtype=np.uint64)
    xs, ys, smalls, ms = share(x), share(y), share(small), share(matrix)
    cleartexts = {
        "x": x,
        "y": y,
        "small": small,
        "x*y": x * y,
        "small*small": small * small,
        "<x,y>": np.array([(x * y).sum(dtype=np.uint64)]),
        "M@y": matrix @ y,
    }
    net.record = True

    async def program(ctx):
        p = ctx.party
        product = await arithmetic.mul(ctx, xs[p], ys[p])
        await arithmetic.mul(ctx, smalls[p], smalls[p])
        await arithmetic.dot(ctx, xs[p], ys[p])
        await arithmetic.matvec(ctx, ms[p], rows, ys[p])
        await truncation.truncate(ctx, product, 16)

    run_parties(net, program)

    messages = [m for m in net.sent if m.tag.op >= 1]
    assert len(messages) == 4 * 3 + 1
    for message in messages:
        payload = message.words.tobytes()
        for name, clear in cleartexts.items():
            assert not np.array_equal(message.words, clear), name
            assert clear.tobytes() not in payload, name
            hits = np.isin(message.words, clear[clear > 1000])
            assert not hits.any(), (name, message.sender, message.receiver)
        # Low-entropy values: a uniform word lands below 2^20 with probability 2^-44.
        assert not np.any(message.words < (1 << 20)), (message.sender, message.receiver)
