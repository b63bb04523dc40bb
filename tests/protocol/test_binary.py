"""Binary (XOR) replicated sharing and its AND (protocol/binary.py, mpc_core/bits.py), in both rings.

Oracles are Python integers: a ring element's bits are those of the integer
in ``[0, 2^k)``, a bit stream's those of the little-endian integer of its
words. Costs are measured with ``ctx.stats`` and the messages the in-memory
network recorded; the expected sizes are written out (one element is one
64-bit word in Z_2^64, two in Z_2^128). Received words are checked for
uniformity with the chi-square helpers of ``test_privacy``'s kind
(critical values for p = 10^-6 hard-coded).
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpc_core import bits
from mpc_core.errors import InvalidArgumentError
from mpc_core.ring import RING64
from mpc_core.sharing import share_for_party
from mpc_core.types import PARTIES
from mpc_server.protocol import binary
from mpc_server.protocol.binary import PackedBits
from mpc_server.protocol.memory import InMemoryNetwork

CHI2_15_P1E6 = 56.49
CHI2_64_P1E6 = 132.79
WORDS = {64: 1, 128: 2}
property_settings = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


# ---------------------------------------------------------------------- helpers


def stream_int(words) -> int:
    return sum(int(w) << (64 * i) for i, w in enumerate(words))


def int_stream(value: int, nwords: int):
    return np.array([(value >> (64 * i)) & (2**64 - 1) for i in range(nwords)], dtype=np.uint64)


def xor_shares(ring, values):
    """The three parties' binary shares of integers ``values`` (fresh randomness)."""
    components = bits.xor_split(ring, ring.from_ints(list(values)))
    return tuple(share_for_party(components, p) for p in PARTIES)


def constant_xor_shares(ring, values):
    """A valid but degenerate binary sharing: x_0 = x_1 = 0, x_2 = x (no randomness at all)."""
    x = ring.from_ints(list(values))
    components = (ring.zeros(x.size), ring.zeros(x.size), x)
    return tuple(share_for_party(components, p) for p in PARTIES)


def open_xor(shares):
    """XOR the components after checking that both copies of each agree."""
    for p in PARTIES:
        assert shares[p].second.tobytes() == shares[(p + 1) % 3].first.tobytes()
    return bits.xor_combine(shares[0].first, shares[1].first, shares[2].first)


def opened_ints(ring, shares):
    return ring.to_ints(open_xor(shares), signed=False)


def measured(operation):
    async def program(ctx):
        before = dataclasses.replace(ctx.stats)
        result = await operation(ctx)
        delta = {
            "sent": ctx.stats.bytes_sent - before.bytes_sent,
            "received": ctx.stats.bytes_received - before.bytes_received,
            "rounds": ctx.stats.rounds - before.rounds,
        }
        return result, delta

    return program


def chi_square_top(words, top_bits=4) -> float:
    counts = Counter(int(w) >> (64 - top_bits) for w in words)
    expected = len(words) / (1 << top_bits)
    return sum((counts.get(b, 0) - expected) ** 2 / expected for b in range(1 << top_bits))


def chi_square_lanes(words) -> float:
    """Chi-square (64 degrees of freedom) of the count of ones in each of the 64 bit lanes."""
    array = np.asarray(words, dtype=np.uint64)
    ones = [int(np.count_nonzero((array >> np.uint64(b)) & np.uint64(1))) for b in range(64)]
    n = array.size
    return sum((c - n / 2) ** 2 / (n / 4) for c in ones)


# ---------------------------------------------------------------------- pure bit helpers


@given(value=st.integers(min_value=0), nbits=st.integers(min_value=1, max_value=400).map(lambda v: 2 * v))
@property_settings
def test_split_even_odd_takes_alternate_bits_of_the_stream(value, nbits):
    value %= 1 << nbits
    even, odd = bits.split_even_odd(int_stream(value, bits.words_for(nbits)), nbits)
    half = nbits // 2
    assert even.size == odd.size == bits.words_for(half)
    assert stream_int(even) == sum(((value >> (2 * j)) & 1) << j for j in range(half))
    assert stream_int(odd) == sum(((value >> (2 * j + 1)) & 1) << j for j in range(half))


def test_split_even_odd_keeps_padding_out_of_the_stream():
    nbits = 70  # two words; bits 70..127 are padding
    garbage = int_stream((1 << 128) - 1 - ((1 << 70) - 1), 2)  # padding all ones, stream all zeros
    even, odd = bits.split_even_odd(garbage, nbits)
    assert stream_int(even) % (1 << 35) == 0
    assert stream_int(odd) % (1 << 35) == 0
    with pytest.raises(InvalidArgumentError):
        bits.split_even_odd(garbage, 71)


def test_pack_unpack_and_element_bits(ring, ring_data):
    values = ring_data.uniform(131)
    x = ring_data.array(values)
    for position in (0, 1, 63, ring.bits - 1):
        stream = bits.element_bits(x, position)
        assert stream.size == bits.words_for(131)
        assert bits.unpack_bits(stream, 131).tolist() == [(v >> position) & 1 for v in values]
    flags = np.array([v & 1 for v in values], dtype=np.uint8)
    assert bits.unpack_bits(bits.pack_bits(flags), 131).tolist() == flags.tolist()
    assert ring_data.ints(bits.bits_to_ring(ring, bits.pack_bits(flags), 131)) == flags.tolist()
    assert ring_data.signed_ints(bits.signs_to_ring(ring, bits.pack_bits(flags), 131)) == [
        1 - 2 * int(f) for f in flags
    ]


@pytest.mark.parametrize(("width", "position"), [(2, 1), (32, 31), (64, 63), (128, 127), (128, 5)])
def test_field_mask_sets_one_bit_per_field(width, position):
    nbits = 8 * width
    mask = bits.field_mask(width, nbits, position)
    assert mask.size == bits.words_for(nbits)
    expected = sum(1 << (f * width + position) for f in range(8))
    assert stream_int(mask) % (1 << nbits) == expected  # whatever the padding holds


# ---------------------------------------------------------------------- local operations


def test_local_operations_match_python_integers(ring, ring_data):
    n, m = 50, ring.modulus - 1
    xv, yv, cv = ring_data.uniform(n), ring_data.uniform(n), ring_data.uniform(n)
    xs, ys = xor_shares(ring, xv), xor_shares(ring, yv)
    c = ring_data.array(cv)

    def each(fn):
        return opened_ints(ring, [fn(p) for p in PARTIES])

    assert each(lambda p: binary.xor(xs[p], ys[p])) == [a ^ b for a, b in zip(xv, yv, strict=True)]
    assert each(lambda p: binary.xor_public(p, xs[p], 12345)) == [a ^ 12345 for a in xv]
    assert each(lambda p: binary.xor_public(p, xs[p], c)) == [a ^ b for a, b in zip(xv, cv, strict=True)]
    assert each(lambda p: binary.not_(p, xs[p])) == [a ^ m for a in xv]
    assert each(lambda p: binary.and_public(xs[p], c)) == [a & b for a, b in zip(xv, cv, strict=True)]
    for amount in (0, 1, 17, ring.bits - 1):
        assert each(lambda p, s=amount: binary.shift_left(xs[p], s)) == [(a << amount) & m for a in xv]
        assert each(lambda p, s=amount: binary.shift_right(xs[p], s)) == [a >> amount for a in xv]
    with pytest.raises(InvalidArgumentError):
        binary.shift_left(xs[0], ring.bits)


def test_pack_and_unpack_shares_move_single_bits(ring, ring_data):
    values = ring_data.uniform(70)
    xs = xor_shares(ring, values)
    packed = [binary.pack(xs[p], ring.bits - 1) for p in PARTIES]
    assert all(isinstance(b, PackedBits) and b.count == 70 for b in packed)
    assert "redacted" in repr(packed[0])
    unpacked = [binary.unpack(packed[p], ring) for p in PARTIES]
    assert opened_ints(ring, unpacked) == [v >> (ring.bits - 1) for v in values]
    with pytest.raises(InvalidArgumentError):
        PackedBits(packed[0].share, 200)


# ---------------------------------------------------------------------- AND


@pytest.mark.parametrize("n", [1, 3, 1000, 70_000])
def test_and_matches_python_integers(net, run_parties, ring, ring_data, n):
    xv, yv = ring_data.uniform(n), ring_data.uniform(n)
    xv[:3] = [0, ring.modulus - 1, int("55" * (ring.bits // 8), 16)][:n]
    xs, ys = xor_shares(ring, xv), xor_shares(ring, yv)

    shares = run_parties(net, lambda ctx: binary.and_(ctx, xs[ctx.party], ys[ctx.party]))

    assert all(s.first.dtype == ring.dtype for s in shares)
    assert opened_ints(ring, shares) == [a & b for a, b in zip(xv, yv, strict=True)]


@given(pairs=st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0)), min_size=1, max_size=9))
@property_settings
def test_and_of_arbitrary_integers(run_parties, ring, pairs):
    xv = [a % ring.modulus for a, _ in pairs]
    yv = [b % ring.modulus for _, b in pairs]
    xs, ys = xor_shares(ring, xv), xor_shares(ring, yv)
    shares = run_parties(InMemoryNetwork(), lambda ctx: binary.and_(ctx, xs[ctx.party], ys[ctx.party]))
    assert opened_ints(ring, shares) == [a & b for a, b in zip(xv, yv, strict=True)]


@pytest.mark.parametrize("n", [1, 1000])
def test_and_sends_one_element_per_element_to_the_previous_party(net, run_parties, ring, ring_data, n):
    xs, ys = xor_shares(ring, ring_data.uniform(n)), xor_shares(ring, ring_data.uniform(n))
    net.record = True

    results = run_parties(net, measured(lambda ctx: binary.and_(ctx, xs[ctx.party], ys[ctx.party])))

    for _, cost in results:
        assert cost == {"sent": 8 * WORDS[ring.bits] * n, "received": 8 * WORDS[ring.bits] * n, "rounds": 1}
    messages = [m for m in net.sent if m.tag.op >= 1]
    assert sorted((m.sender, m.receiver) for m in messages) == [(0, 2), (1, 0), (2, 1)]
    assert len({m.tag for m in messages}) == 1


def test_and_of_constant_sharings_sends_uniform_words(net, run_parties, ring):
    """x = y = all ones with x_0 = x_1 = 0: only the XOR zero share can make z_i uniform."""
    n = 1 << 13
    xs = constant_xor_shares(ring, [ring.modulus - 1] * n)
    net.record = True

    shares = run_parties(net, lambda ctx: binary.and_(ctx, xs[ctx.party], xs[ctx.party]))

    assert opened_ints(ring, shares) == [ring.modulus - 1] * n
    for receiver in PARTIES:
        words = np.concatenate([m.words for m in net.sent if m.receiver == receiver and m.tag.op >= 1])
        assert words.size == WORDS[ring.bits] * n
        assert chi_square_top(words) < CHI2_15_P1E6
        assert chi_square_lanes(words) < CHI2_64_P1E6


def test_chi_square_helpers_reject_skewed_words(rng):
    words = rng.integers(0, 2**64, size=1 << 13, dtype=np.uint64)
    assert chi_square_top(words) < CHI2_15_P1E6
    assert chi_square_lanes(words) < CHI2_64_P1E6
    assert chi_square_top(words >> np.uint64(1)) > CHI2_15_P1E6
    assert chi_square_lanes(words & ~np.uint64(1 << 20)) > CHI2_64_P1E6  # one lane stuck at zero


# ---------------------------------------------------------------------- party-0 input and trees


def test_input_from_party0_costs_one_message_to_party_2(net, run_parties, ring_data):
    values = ring_data.uniform(300)
    words = RING64.words(RING64.from_ints([v % 2**64 for v in values]))

    def operation(ctx):
        return binary.input_from_party0(ctx, ctx.allocate_tag(), words if ctx.party == 0 else None, 300)

    results = run_parties(net, measured(operation))

    assert opened_ints(RING64, [r for r, _ in results]) == [v % 2**64 for v in values]
    assert [c["sent"] for _, c in results] == [2400, 0, 0]
    assert [c["received"] for _, c in results] == [0, 0, 2400]
    assert [c["rounds"] for _, c in results] == [1, 0, 1]


@pytest.mark.parametrize("count", [1, 5, 64, 1000])
def test_and_tree_ands_all_bits_of_each_field(run_parties, ring, ring_data, count):
    width = ring.bits
    values = ring_data.uniform(count)
    edges = [ring.modulus - 1, ring.modulus - 2, ring.modulus - 1 - 2 ** (width - 1)]  # all ones, then not
    values[: min(count, 3)] = edges[: min(count, 3)]
    xs = xor_shares(ring, values)
    streams = [bits.words_share(*bits.share_words(xs[p])) for p in PARTIES]
    levels = width.bit_length() - 1

    async def program(ctx):
        tags = [ctx.allocate_tag() for _ in range(levels)]
        reduced = await binary.and_reduce(ctx, tags, streams[ctx.party], count, width)
        return PackedBits(reduced, count)

    shares = run_parties(InMemoryNetwork(), program)

    opened = bits.unpack_bits(open_xor([s.share for s in shares]), count).tolist()
    assert opened == [int(v == ring.modulus - 1) for v in values]
