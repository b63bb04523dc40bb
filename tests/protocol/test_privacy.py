"""What a party receives reveals nothing: statistical checks on recorded messages, in both rings.

In a multiplication party i sends ``z_i = x_i*y_i + x_i*y_{i+1} + x_{i+1}*y_i +
alpha_i`` to party i-1, which does not know ``k_{i+1}``; so the element it
receives must be uniform in Z_2^k whatever the inputs (protocols.md §2, §4).
Uniformity is checked on the top bits of *every 64-bit word* of the received
elements: the one word of a Z_2^64 element, the low and the high word of a
Z_2^128 element (a mask that covered only one half would leave the other
half's top byte skewed).

The chi-square critical values are hard-coded (scipy is not a dependency):
p = 10^-6 for 255 degrees of freedom (256 buckets of the top byte) is 377.08,
and for 15 degrees of freedom (16 buckets of the top 4 bits) 56.49. Each
chi-square assertion therefore fails by chance with probability 10^-6 (a
CI run must not flake), while a missing mask gives statistics in the
thousands.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import numpy as np

from mpc_core.ring import RING128
from mpc_core.sharing import ReplicatedShare, share, share_for_party
from mpc_core.types import PARTIES
from mpc_server.protocol import arithmetic, truncation

CHI2_255_P1E6 = 377.08
CHI2_15_P1E6 = 56.49


def chi_square(values: list[int], top_bits: int, width: int = 64) -> float:
    """Chi-square statistic of the top ``top_bits`` of ``width``-bit ``values`` against uniform."""
    buckets = 1 << top_bits
    counts = Counter(v >> (width - top_bits) for v in values)
    expected = len(values) / buckets
    return sum((counts.get(b, 0) - expected) ** 2 / expected for b in range(buckets))


def word_columns(ring, values: list[int]) -> list[list[int]]:
    """The 64-bit words of every element, by position (low word first)."""
    mask = (1 << 64) - 1
    return [[(v >> (64 * j)) & mask for v in values] for j in range(ring.bits // 64)]


def uniform_words(ring, values: list[int], top_bits: int, critical: float) -> list[float]:
    """The chi-square statistics of all word positions; asserts each is below ``critical``."""
    statistics = [chi_square(column, top_bits) for column in word_columns(ring, values)]
    assert all(s < critical for s in statistics), statistics
    return statistics


def received_by(net, ring, receiver, min_op=1):
    """Elements (as integers) ``receiver`` got in protocol steps after the agreement round."""
    values: list[int] = []
    for m in net.sent:
        if m.receiver == receiver and m.tag.op >= min_op:
            values += ring.to_ints(ring.from_words(m.words), signed=False)
    return values


def constant_components(ring, value) -> tuple[ReplicatedShare, ReplicatedShare, ReplicatedShare]:
    """A valid but degenerate sharing: x_0 = x_1 = 0, x_2 = x (no randomness at all)."""
    zeros = ring.zeros(value.shape)
    components = (zeros, zeros.copy(), value.copy())
    s0, s1, s2 = (share_for_party(components, p) for p in PARTIES)
    return s0, s1, s2


def test_chi_square_helper_rejects_non_uniform_words(rng):
    n = 1 << 16
    low, high = ([int(w) for w in rng.integers(0, 2**64, size=n, dtype=np.uint64)] for _ in range(2))
    uniform = [lo | hi << 64 for lo, hi in zip(low, high, strict=True)]
    assert all(chi_square(c, 8) < CHI2_255_P1E6 for c in word_columns(RING128, uniform))
    assert chi_square(low, 8) < CHI2_255_P1E6
    assert chi_square([v >> 1 for v in low], 8) > CHI2_255_P1E6  # top bit always 0
    assert chi_square([12345] * n, 4) > CHI2_15_P1E6
    # A Z_2^128 element whose high word is only a function of its low word is caught.
    half_masked = [lo | (lo >> 1) << 64 for lo in low]
    statistics = [chi_square(c, 8) for c in word_columns(RING128, half_masked)]
    assert statistics[0] < CHI2_255_P1E6 < statistics[1]
    # ... and so is one whose low word is zero-extended (high word all zero).
    assert chi_square(word_columns(RING128, low)[1], 4) > CHI2_15_P1E6


def test_received_products_are_uniform_when_the_mask_is_the_only_randomness(
    net, run_parties, open_shares, ring, ring_data
):
    """x = y = all-ones with constant components: only alpha_i can make z_i look uniform."""
    n = 1 << 16  # 256 words per top-byte bucket
    ones = ring_data.array([1] * n)
    xs = ys = constant_components(ring, ones)
    net.record = True

    shares = run_parties(net, lambda ctx: arithmetic.mul(ctx, xs[ctx.party], ys[ctx.party]))

    for receiver in PARTIES:
        values = received_by(net, ring, receiver)
        assert len(values) == n
        uniform_words(ring, values, 8, CHI2_255_P1E6)
    # Sanity: the product is still right.
    assert ring_data.ints(open_shares(shares)) == [1] * n


def test_received_product_words_are_uniform_for_client_shares_of_a_constant(
    net, run_parties, ring, ring_data
):
    n = 1 << 16
    x = ring_data.array([3] * n)
    xs, ys = share(ring, x), share(ring, x)
    net.record = True

    run_parties(net, lambda ctx: arithmetic.mul(ctx, xs[ctx.party], ys[ctx.party]))

    values = [v for r in PARTIES for v in received_by(net, ring, r)]
    assert len(values) == 3 * n
    uniform_words(ring, values, 8, CHI2_255_P1E6)


def test_received_truncation_message_is_uniform_for_a_constant_input(net, run_parties, ring, ring_data):
    """Party 0 gets s_1 - r with r = F(k_2, tag), which it cannot compute: uniform even for x = 2^40."""
    n = 1 << 16
    xs = constant_components(ring, ring_data.array([2**40] * n))
    net.record = True

    run_parties(net, lambda ctx: truncation.truncate(ctx, xs[ctx.party], 16))

    values = received_by(net, ring, 0)
    assert len(values) == n
    uniform_words(ring, values, 8, CHI2_255_P1E6)


def test_received_product_words_are_uniform_across_jobs(net, run_parties_in_loop, ring, ring_data):
    """The same scalar product x = y = 1 in 200 jobs (the same input shares each time)."""
    jobs = 200
    xs = ys = constant_components(ring, ring_data.array([1]))
    net.record = True

    async def main():
        for job in range(jobs):
            await run_parties_in_loop(
                net, lambda ctx: arithmetic.mul(ctx, xs[ctx.party], ys[ctx.party]), job_id=f"job-{job}"
            )

    asyncio.run(main())

    values = [v for r in PARTIES for v in received_by(net, ring, r)]
    assert len(values) == 3 * jobs
    uniform_words(ring, values, 4, CHI2_15_P1E6)
    assert len(set(values)) == len(values)  # fresh masks per job


def test_no_payload_equals_or_contains_a_cleartext_vector(net, run_parties, ring, ring_data, rng):
    n, rows = 1000, 10
    x, x_ints = ring_data.vector(n)
    y, y_ints = ring_data.vector(n)
    small_ints = [int(v) for v in rng.integers(0, 1000, size=n)]  # low-entropy input, e.g. ages
    matrix, m_ints = ring_data.vector(rows * n)
    xs, ys = share(ring, x), share(ring, y)
    smalls, ms = share(ring, ring_data.array(small_ints)), share(ring, matrix.reshape(rows, n))
    pairs = list(zip(x_ints, y_ints, strict=True))
    cleartexts = {
        "x": x_ints,
        "y": y_ints,
        "small": small_ints,
        "x*y": ring_data.reduce([a * b for a, b in pairs]),
        "small*small": [v * v for v in small_ints],
        "<x,y>": [sum(a * b for a, b in pairs) % ring.modulus],
        "M@y": [sum(m_ints[r * n + c] * y_ints[c] for c in range(n)) % ring.modulus for r in range(rows)],
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
        elements = ring.to_ints(ring.from_words(message.words), signed=False)
        for name, clear in cleartexts.items():
            assert elements != clear, name
            assert ring.to_wire(ring_data.array(clear)) not in payload, name
            hits = set(elements) & {v for v in clear if v > 1000}
            assert not hits, (name, message.sender, message.receiver)
        # Low-entropy values: a uniform 64-bit word lands below 2^20 with probability 2^-44;
        # checking every word also catches a Z_2^128 element whose high word was left unmasked.
        assert all(int(w) >= 1 << 20 for w in message.words), (message.sender, message.receiver)
