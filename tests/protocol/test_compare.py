"""Sign bits, bit injection and comparisons (protocol/compare.py), in both rings.

Oracles are Python integers (``ring_data``; numpy only for ``argmax`` of
small values). Costs are measured three ways: ``ctx.stats`` per party (bytes
and the rounds each party takes part in), the messages the in-memory network
recorded, and the protocol's latency, the longest chain of messages each of
which was sent after the previous one arrived (Lamport clocks on the
channels). The expected sizes are written out per message, as the docstrings
count them. What each party receives is tested for uniformity on constant
inputs, where only the masks can make it look random.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpc_core import bits
from mpc_core.errors import InvalidArgumentError, ProtocolError
from mpc_core.ring import RING64
from mpc_core.sharing import share, share_for_party
from mpc_core.types import PARTIES
from mpc_server.protocol import compare, injection, sign_window
from mpc_server.protocol.binary import PackedBits
from mpc_server.protocol.context import OFFLOAD_MIN_ELEMENTS
from mpc_server.protocol.memory import InMemoryNetwork

# About a thousand chi-square assertions per run (every message of every job): each at p = 10^-9,
# so a run fails by chance with probability about 10^-6; a missing mask scores in the thousands.
CHI2_15_P1E9 = 73.63
CHI2_64_P1E9 = 156.60
property_settings = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


# ---------------------------------------------------------------------- helpers


def shared(ring, values):
    return share(ring, ring.from_ints(list(values)))


def constant_shares(ring, values):
    """A valid but degenerate sharing: x_0 = x_1 = 0, x_2 = x (no randomness at all)."""
    x = ring.from_ints(list(values))
    components = (ring.zeros(x.size), ring.zeros(x.size), x)
    return tuple(share_for_party(components, p) for p in PARTIES)


def run_op(run_parties, net, operation, *shares, **options):
    return run_parties(net, lambda ctx: operation(ctx, *(s[ctx.party] for s in shares), **options))


def opened(open_shares, data, results):
    return data.signed_ints(open_shares(results))


def opened_bits(packed):
    words = bits.xor_combine(*(b.share.first for b in packed))
    for p in PARTIES:
        assert packed[p].share.second.tobytes() == packed[(p + 1) % 3].share.first.tobytes()
    return bits.unpack_bits(words, packed[0].count).tolist()


def edge_values(ring):
    k = ring.bits
    half, quarter = 2 ** (k - 1), 2 ** (k - 2)
    top = [half - 1, -half, quarter, -quarter, quarter - 1, 1 - quarter]
    return [0, 1, -1, 2, -2, 2**31, -(2**31), 2**63 - 1, -(2**63), *top]


class LamportChannel:
    """Wraps a channel; a message's depth is one more than the deepest message its sender had received."""

    def __init__(self, inner, clocks, depths):
        self._inner, self._clocks, self._depths = inner, clocks, depths

    @property
    def party(self):
        return self._inner.party

    def peer_name(self, party):
        return self._inner.peer_name(party)

    async def send(self, to, tag, words, timeout):
        self._depths[(self.party, to, tag.op)] = self._clocks[self.party] + 1
        await self._inner.send(to, tag, words, timeout)

    async def recv(self, frm, tag, timeout):
        words = await self._inner.recv(frm, tag, timeout)
        self._clocks[self.party] = max(self._clocks[self.party], self._depths[(frm, self.party, tag.op)])
        return words

    def __getattr__(self, name):
        return getattr(self._inner, name)


def costs(run_parties, operation):
    """Per-party stats deltas and the latency (in rounds) of ``operation(ctx)`` run after key setup."""
    net = InMemoryNetwork()
    clocks, depths = dict.fromkeys(PARTIES, 0), {}
    net.channels = tuple(LamportChannel(c, clocks, depths) for c in net.channels)
    starts = {}

    async def program(ctx):
        starts[ctx.party] = clocks[ctx.party]
        before = dataclasses.replace(ctx.stats)
        await operation(ctx)
        return ctx.stats.bytes_sent - before.bytes_sent, ctx.stats.rounds - before.rounds

    results = run_parties(net, program)
    return [s for s, _ in results], [r for _, r in results], max(clocks.values()) - max(starts.values())


def words(nbits):
    return bits.words_for(nbits)


def tree_words(k, n, widths):
    """Words an AND level of ``[P_odd, P_odd] & [G_even, P_even]`` sends, for each input width."""
    return sum(2 * words(n * w // 2) for w in widths)


def sign_words(k, n, multiplicands=0):
    """Words sent by parties 0, 1, 2 for ``n`` signs, times ``multiplicands`` values each (0: the bit)."""
    w, half = k // 64, words(n * k // 2)
    levels = tree_words(k, n, [k >> s for s in range(1, k.bit_length() - 2)])  # k/2 .. 4
    outputs = n * max(multiplicands, 1)
    party0 = n * w + half + levels + outputs * w + (n * w if multiplicands else 0)  # [+ d - r_d]
    others = 2 * half + levels + words(n) + outputs * w
    return [party0, others, others]


# ---------------------------------------------------------------------- sign bits


@pytest.mark.parametrize("n", [1, 65, 3000])
def test_msb_is_the_top_bit(net, run_parties, ring, ring_data, n):
    values = ring_data.uniform(n)
    values[: min(n, 20)] = [v % ring.modulus for v in edge_values(ring)][: min(n, 20)]
    packed = run_op(run_parties, net, compare.msb, shared(ring, values))
    assert all(isinstance(b, PackedBits) for b in packed)
    assert opened_bits(packed) == [v >> (ring.bits - 1) for v in values]


def test_is_negative_and_relu_are_exact_for_every_element(net, run_parties, open_shares, ring, ring_data):
    values = ring_data.signed(2000, ring.bits - 1)
    values[:16] = edge_values(ring)
    xs = shared(ring, values)

    async def program(ctx):
        return await compare.is_negative(ctx, xs[ctx.party]), await compare.relu(ctx, xs[ctx.party])

    signs, relus = zip(*run_parties(net, program), strict=True)
    assert opened(open_shares, ring_data, signs) == [int(v < 0) for v in values]
    assert opened(open_shares, ring_data, relus) == [max(v, 0) for v in values]


def test_less_than_on_random_pairs_and_edge_cases(net, run_parties, open_shares, ring, ring_data):
    k, n = ring.bits, 3000
    xv, yv = ring_data.signed(n, k - 2), ring_data.signed(n, k - 2)
    yv[:100] = xv[:100]  # equal values
    xv[100:200] = [abs(v) for v in xv[100:200]]
    yv[100:200] = [-abs(v) for v in yv[100:200]]  # opposite signs
    edges = [0, 1, -1, 2 ** (k - 2), -(2 ** (k - 2)), 2 ** (k - 2) - 1, 1 - 2 ** (k - 2)]
    pairs = [(a, b) for a in edges for b in edges if -(2 ** (k - 1)) <= a - b < 2 ** (k - 1)]
    quarter = 2 ** (k - 2)
    pairs += [(quarter, 1 - quarter), (-quarter, quarter)]  # x - y = 2^(k-1) - 1 and -2^(k-1)
    xv += [a for a, _ in pairs]
    yv += [b for _, b in pairs]

    results = run_op(run_parties, net, compare.less_than, shared(ring, xv), shared(ring, yv))

    assert opened(open_shares, ring_data, results) == [int(a < b) for a, b in zip(xv, yv, strict=True)]


def test_less_than_wraps_outside_its_documented_range(net, run_parties, open_shares, ring, ring_data):
    """x - y = 2^(k-1) reads as negative: the range the service layer must guarantee is a real limit."""
    quarter = 2 ** (ring.bits - 2)
    results = run_op(run_parties, net, compare.less_than, shared(ring, [quarter]), shared(ring, [-quarter]))
    assert opened(open_shares, ring_data, results) == [1]  # the true answer is 0


@given(pairs=st.lists(st.tuples(st.integers(), st.integers()), min_size=1, max_size=8))
@property_settings
def test_less_than_and_equal_of_arbitrary_pairs_in_range(run_parties, open_shares, ring, ring_data, pairs):
    bound = 2 ** (ring.bits - 2)
    xv = [a % (2 * bound) - bound for a, _ in pairs]
    yv = [xv[i] if b % 3 == 0 else b % (2 * bound) - bound for i, (_, b) in enumerate(pairs)]
    xs, ys = shared(ring, xv), shared(ring, yv)

    async def program(ctx):
        p = ctx.party
        return await compare.less_than(ctx, xs[p], ys[p]), await compare.equal(ctx, xs[p], ys[p])

    lt, eq = zip(*run_parties(InMemoryNetwork(), program), strict=True)
    assert opened(open_shares, ring_data, lt) == [int(a < b) for a, b in zip(xv, yv, strict=True)]
    assert opened(open_shares, ring_data, eq) == [int(a == b) for a, b in zip(xv, yv, strict=True)]


def test_comparisons_against_public_constants(net, run_parties, open_shares, ring, ring_data):
    k = ring.bits
    values = [*ring_data.signed(500, k - 2), 0, 1, -1, 2 ** (k - 2) - 1, 1 - 2 ** (k - 2)]
    xs = shared(ring, values)
    vector = ring_data.signed(len(values), k - 2)
    vector[:5] = values[:5]
    constants = [0, 1, -1, 7, 2 ** (k - 2), -(2 ** (k - 2))]

    async def program(ctx):
        x = xs[ctx.party]
        out = []
        for c in [*constants, ring_data.array(vector)]:
            out.append(await compare.less_than_public(ctx, x, c))
            out.append(await compare.greater_than_public(ctx, x, c))
            out.append(await compare.equal_public(ctx, x, c))
        return out

    results = run_parties(net, program)
    for i, c in enumerate([*constants, None]):
        cs = vector if c is None else [c] * len(values)
        lt, gt, eq = (opened(open_shares, ring_data, [r[3 * i + j] for r in results]) for j in range(3))
        assert lt == [int(a < b) for a, b in zip(values, cs, strict=True)]
        assert gt == [int(a > b) for a, b in zip(values, cs, strict=True)]
        assert eq == [int(a == b) for a, b in zip(values, cs, strict=True)]
    with pytest.raises(InvalidArgumentError):
        run_parties(net, lambda ctx: compare.less_than_public(ctx, xs[ctx.party], ring_data.array([1, 2])))


def test_equal_is_exact_for_any_elements(net, run_parties, open_shares, ring, ring_data):
    k = ring.bits
    xv = ring_data.uniform(300)
    yv = [x ^ (1 << (i % k)) for i, x in enumerate(xv)]  # one bit apart, at every position
    yv[:50] = xv[:50]
    xv += [0, ring.modulus - 1, 2 ** (k - 1)]
    yv += [0, ring.modulus - 1, 0]

    results = run_op(run_parties, net, compare.equal, shared(ring, xv), shared(ring, yv))

    assert opened(open_shares, ring_data, results) == [int(a == b) for a, b in zip(xv, yv, strict=True)]


# ---------------------------------------------------------------------- clip, maximum, argmax


@pytest.mark.parametrize(("lo", "hi"), [(-1000, 2**40), (0, 0), (-(2**60), -5), (3, 2**61)])
def test_clip_matches_min_max(net, run_parties, open_shares, ring, ring_data, lo, hi):
    values = [*ring_data.signed(1000, 62), lo, hi, lo - 1, hi + 1, 0]
    results = run_op(run_parties, net, compare.clip, shared(ring, values), lo=lo, hi=hi)
    assert opened(open_shares, ring_data, results) == [min(max(v, lo), hi) for v in values]


def test_clip_refuses_empty_interval(net, run_parties, ring):
    xs = shared(ring, [1])
    with pytest.raises(InvalidArgumentError):
        run_parties(net, lambda ctx: compare.clip(ctx, xs[ctx.party], 2, 1))


@pytest.mark.parametrize("length", [1, 2, 3, 5, 8, 17, 100])
def test_maximum_and_argmax_of_a_vector(net, run_parties, open_shares, ring, ring_data, rng, length):
    values = [int(v) for v in rng.integers(-20, 20, size=length)]  # ties are common
    if length > 4:  # a large maximum, twice: argmax must name the first
        values[length // 3] = values[2 * length // 3] = 2 ** (ring.bits - 3)
    xs = shared(ring, values)

    async def program(ctx):
        return await compare.maximum(ctx, xs[ctx.party]), await compare.argmax(ctx, xs[ctx.party])

    best, index = zip(*run_parties(net, program), strict=True)
    assert opened(open_shares, ring_data, best) == [max(values)]
    assert opened(open_shares, ring_data, index) == [int(np.argmax(values))]


@pytest.mark.parametrize(("rows", "cols"), [(4, 7), (3, 1), (50, 10)])
def test_maximum_and_argmax_of_each_row(net, run_parties, open_shares, ring, ring_data, rng, rows, cols):
    matrix = rng.integers(-(2**40), 2**40, size=(rows, cols))
    matrix[:, -1] = matrix.max(axis=1)  # the maximum twice in every row: argmax must name the first
    xs = shared(ring, [int(v) for v in matrix.reshape(-1)])

    async def program(ctx):
        x = xs[ctx.party]
        return await compare.maximum(ctx, x, rows), await compare.argmax(ctx, x, rows)

    best, index = zip(*run_parties(net, program), strict=True)
    assert opened(open_shares, ring_data, best) == matrix.max(axis=1).tolist()
    assert opened(open_shares, ring_data, index) == matrix.argmax(axis=1).tolist()
    with pytest.raises(InvalidArgumentError):
        run_parties(net, lambda ctx: compare.maximum(ctx, xs[ctx.party], rows + 1 if cols > 1 else 0))


# ---------------------------------------------------------------------- bit injection


def packed_shares(flags):
    """The parties' XOR shares of ``flags``, packed (components drawn fresh)."""
    components = bits.xor_split(RING64, RING64.from_words(bits.pack_bits(np.array(flags))))
    return [PackedBits(share_for_party(components, p), len(flags)) for p in PARTIES]


def test_bit_injection_and_bit_times(net, run_parties, open_shares, ring, ring_data, rng):
    flags = [int(b) for b in rng.integers(0, 2, size=777)]
    packed = packed_shares(flags)
    values = ring_data.signed(2 * len(flags), ring.bits - 1)
    vs = shared(ring, values)

    async def program(ctx):
        b = packed[ctx.party]
        return await injection.bit_injection(ctx, b), await injection.bit_times(ctx, b, vs[ctx.party])

    injected, products = zip(*run_parties(net, program), strict=True)
    assert opened(open_shares, ring_data, injected) == flags
    expected = [f * v for f, v in zip(flags * 2, values, strict=True)]
    assert ring_data.ints(open_shares(products)) == ring_data.reduce(expected)
    two = shared(ring, [1, 2])
    with pytest.raises(InvalidArgumentError):
        run_parties(net, lambda ctx: injection.bit_times(ctx, packed[ctx.party], two[ctx.party]))


# ---------------------------------------------------------------------- costs


@pytest.mark.parametrize("n", [1, 63, 64, 1000, 4096])
def test_is_negative_costs_the_documented_rounds_and_bits(run_parties, ring, ring_data, n):
    k, levels = ring.bits, ring.bits.bit_length() - 1
    xs = shared(ring, ring_data.signed(n, k - 2))

    sent, rounds, latency = costs(run_parties, lambda ctx: compare.is_negative(ctx, xs[ctx.party]))

    assert sent == [8 * w for w in sign_words(k, n)]
    assert rounds == [levels, levels + 2, levels + 2]
    assert latency == levels + 2  # 8 in Z_2^64, 9 in Z_2^128
    if n % 64 == 0:
        assert [8 * s / n for s in sent] == [3.5 * k - 4, 3 * k - 3, 3 * k - 3]


def test_msb_equal_relu_injection_cost_the_documented_rounds_and_bits(run_parties, ring, ring_data):
    k, levels, n = ring.bits, ring.bits.bit_length() - 1, 4096
    xs = shared(ring, ring_data.signed(n, k - 2))
    packed = packed_shares([1, 0] * (n // 2))
    per_element = {
        compare.msb: ([2.5 * k - 3, 2 * k - 3, 2 * k - 3], [levels, levels + 1, levels + 1], levels + 1),
        compare.relu: ([4.5 * k - 4, 3 * k - 3, 3 * k - 3], [levels, levels + 2, levels + 2], levels + 2),
        compare.equal_public: (
            [3 * k - 2, 2 * k - 1, 2 * k - 1],
            [levels + 1] * 2 + [levels + 2],
            levels + 2,
        ),
        injection.bit_injection: ([k, k, k], [1, 2, 2], 2),
    }
    for operation, (bits_each, expected_rounds, expected_latency) in per_element.items():
        if operation is injection.bit_injection:
            run = lambda ctx, op=operation: op(ctx, packed[ctx.party])  # noqa: E731
        elif operation is compare.equal_public:
            run = lambda ctx, op=operation: op(ctx, xs[ctx.party], 5)  # noqa: E731
        else:
            run = lambda ctx, op=operation: op(ctx, xs[ctx.party])  # noqa: E731
        sent, rounds, latency = costs(run_parties, run)
        assert [8 * s / n for s in sent] == bits_each, operation.__name__
        assert rounds == expected_rounds, operation.__name__
        assert latency == expected_latency, operation.__name__


def test_clip_and_tournament_costs(run_parties, ring, ring_data):
    k, levels, n = ring.bits, ring.bits.bit_length() - 1, 2048
    xs = shared(ring, ring_data.signed(n, 40))

    sent, _, latency = costs(run_parties, lambda ctx: compare.clip(ctx, xs[ctx.party], -5, 5))
    assert [8 * s / n for s in sent] == [9 * k - 8, 5 * k - 6, 5 * k - 6]
    assert latency == levels + 2

    sent, _, latency = costs(run_parties, lambda ctx: compare.argmax(ctx, xs[ctx.party], n // 8))
    # Rows of 8: three levels. Party 0's first message of a level needs only its own (PRF) output
    # shares of the previous one, so it overlaps that level's last round.
    assert latency == 3 * (levels + 1) + 1
    assert sent == [8 * w for w in np.sum([sign_words(k, (n // 8) * m, 2) for m in (4, 2, 1)], axis=0)]


# ---------------------------------------------------------------------- what parties receive


def received_messages(net, receiver):
    return [m for m in net.sent if m.receiver == receiver and m.tag.op >= 1]


def chi_square_top(words, top_bits=4):
    counts = Counter(int(w) >> (64 - top_bits) for w in words)
    expected = len(words) / (1 << top_bits)
    return sum((counts.get(b, 0) - expected) ** 2 / expected for b in range(1 << top_bits))


def chi_square_lanes(words):
    array = np.asarray(words, dtype=np.uint64)
    ones = [int(np.count_nonzero((array >> np.uint64(b)) & np.uint64(1))) for b in range(64)]
    return sum((c - array.size / 2) ** 2 / (array.size / 4) for c in ones)


def assert_uniform_receipts(net, minimum_messages):
    """Every message (of at least 256 words) and every party's receipts as a whole look uniform."""
    for receiver in PARTIES:
        messages = received_messages(net, receiver)
        assert len(messages) >= minimum_messages[receiver]
        for m in messages:
            if m.words.size >= 256:
                assert chi_square_top(m.words) < CHI2_15_P1E9, (m.sender, receiver, m.tag.op)
                assert chi_square_lanes(m.words) < CHI2_64_P1E9, (m.sender, receiver, m.tag.op)
        if messages:
            pooled = np.concatenate([m.words for m in messages])
            assert chi_square_lanes(pooled) < CHI2_64_P1E9, receiver


@pytest.mark.parametrize("value", [0, -1, 12345])
def test_comparison_messages_are_uniform_for_constant_inputs(run_parties, open_shares, ring_data, value):
    """x = y = c (and x vs 0) with no randomness in the shares: only the masks make messages random."""
    n = 1 << 14  # the smallest messages (one bit per element) are 256 words
    xs = constant_shares(ring_data.ring, [value] * n)
    net = InMemoryNetwork()
    net.record = True

    async def program(ctx):
        x = xs[ctx.party]
        lt = await compare.less_than(ctx, x, x)
        eq = await compare.equal(ctx, x, x)
        rl = await compare.relu(ctx, x)
        return lt, eq, rl

    lt, eq, rl = zip(*run_parties(net, program), strict=True)
    assert opened(open_shares, ring_data, lt) == [0] * n
    assert opened(open_shares, ring_data, eq) == [1] * n
    assert opened(open_shares, ring_data, rl) == [max(value, 0)] * n
    assert_uniform_receipts(net, {0: 1, 1: 3, 2: 3})


def test_injection_messages_are_uniform_for_constant_bits(run_parties, ring, ring_data):
    n = 1 << 14
    components = (np.zeros(words(n), np.uint64), np.zeros(words(n), np.uint64), bits.pack_bits(np.ones(n)))
    packed = [PackedBits(share_for_party(components, p), n) for p in PARTIES]
    net = InMemoryNetwork()
    net.record = True

    run_parties(net, lambda ctx: injection.bit_injection(ctx, packed[ctx.party]))

    assert_uniform_receipts(net, {0: 0, 1: 1, 2: 2})


# ---------------------------------------------------------------------- tags and sizes


def test_concurrent_comparisons_with_threaded_local_work(run_parties, open_shares, ring, ring_data):
    """Tags are taken when each op is called, so gathered ops agree even when threads finish out of order."""
    n = 2 * OFFLOAD_MIN_ELEMENTS
    xv, yv = ring_data.signed(n, 50), ring_data.signed(n, 50)
    xs, ys = shared(ring, xv), shared(ring, yv)

    async def program(ctx):
        x, y = xs[ctx.party], ys[ctx.party]
        return await asyncio.gather(
            compare.less_than(ctx, x, y), compare.equal(ctx, x, x), compare.argmax(ctx, x, n // 2)
        )

    lt, eq, index = zip(*run_parties(InMemoryNetwork(), program), strict=True)
    assert opened(open_shares, ring_data, lt) == [int(a < b) for a, b in zip(xv, yv, strict=True)]
    assert opened(open_shares, ring_data, eq) == [1] * n
    assert opened(open_shares, ring_data, index) == [int(xv[2 * i + 1] > xv[2 * i]) for i in range(n // 2)]


def test_empty_inputs_give_empty_results(net, run_parties, ring):
    xs = shared(ring, [])
    results = run_op(run_parties, net, compare.less_than, xs, xs)
    assert all(r.size == 0 for r in results)
    assert all(r.size == 0 for r in run_op(run_parties, InMemoryNetwork(), compare.equal, xs, xs))


def test_a_malformed_message_fails_the_receiver(run_parties, ring, ring_data):
    """Party 2 gets party 0's first-layer message one word short: it raises, naming party 0."""
    xs = shared(ring, ring_data.signed(100, 40))
    net = InMemoryNetwork()

    def shorten(message):
        first_layer = (message.sender, message.receiver, message.tag.op) == (0, 2, 1)
        return [message.words[:-1]] if first_layer else [message.words]

    net.interceptor = shorten
    results = run_parties(
        net,
        lambda ctx: compare.less_than(ctx, xs[ctx.party], xs[ctx.party]),
        timeout=1.0,
        return_exceptions=True,
    )
    assert isinstance(results[2], ProtocolError)
    assert "server-0" in str(results[2])


# ---------------------------------------------------------------------- the 64-bit window (Z_2^128)


@pytest.mark.parametrize("m", [40, 62])
def test_a_windowed_sign_of_values_below_2_to_62_is_exact(net, run_parties, open_shares, ring_data, m):
    ring = ring_data.ring
    if ring.bits != 128:
        pytest.skip("the window is for Z_2^128")
    values = [*ring_data.signed(500, m - 1), 0, 1, -1, 2 ** (m - 1) - 1, -(2 ** (m - 1)), 2**m - 1, 1 - 2**m]
    xs = shared(ring, values)
    results = run_parties(
        net, lambda ctx: compare.greater_than_public(ctx, xs[ctx.party], 0, magnitude_bits=m)
    )
    assert opened(open_shares, ring_data, results) == [int(v > 0) for v in values]


def test_a_windowed_sign_errs_only_just_below_the_threshold(net, run_parties, open_shares, ring_data):
    ring, m = ring_data.ring, 100
    if ring.bits != 128:
        pytest.skip("the window is for Z_2^128")
    s = sign_window.window_shift(128, m)  # 38 low bits dropped
    threshold = 12345 << 40
    near = [threshold - d for d in (0, 1, 2**s - 1)]  # c - x in [0, 2^s): may read as x > c
    far = [
        threshold - 2**s,
        threshold + 1,
        threshold + 2**s,
        *(threshold + v for v in ring_data.signed(300, m - 2)),
    ]
    xs = shared(ring, near + far)
    results = run_parties(
        net, lambda ctx: compare.greater_than_public(ctx, xs[ctx.party], threshold, magnitude_bits=m)
    )
    got = opened(open_shares, ring_data, results)
    assert got[len(near) :] == [int(v > threshold) for v in far]  # exact outside the window
    assert set(got[: len(near)]) <= {0, 1}


def test_a_windowed_sign_costs_eight_rounds_and_fewer_bits(run_parties, ring_data):
    ring, n = ring_data.ring, 4096
    if ring.bits != 128:
        pytest.skip("the window is for Z_2^128")
    xs = shared(ring, ring_data.signed(n, 80))
    full, _, full_latency = costs(run_parties, lambda ctx: compare.greater_than_public(ctx, xs[ctx.party], 0))
    sent, rounds, latency = costs(
        run_parties, lambda ctx: compare.greater_than_public(ctx, xs[ctx.party], 0, magnitude_bits=82)
    )
    assert (full_latency, latency) == (9, 8)
    assert rounds == [6, 8, 8]
    # the 64-bit adder (2.5 * 64 - 3 / 2 * 64 - 3 bits: first layer, levels, last AND) + injection in Z_2^128
    assert [8 * b / n for b in sent] == [2.5 * 64 - 4 + 128, 2 * 64 - 3 + 128, 2 * 64 - 3 + 128]
    assert [8 * b / n for b in full] == [3.5 * 128 - 4, 3 * 128 - 3, 3 * 128 - 3]


def test_a_window_bound_outside_the_ring_is_refused(net, run_parties, ring_data):
    ring = ring_data.ring
    if ring.bits != 128:
        pytest.skip("the window is for Z_2^128")
    xs = shared(ring, [1, 2])
    with pytest.raises(InvalidArgumentError, match="needs a bound below 2"):
        run_parties(net, lambda ctx: compare.greater_than_public(ctx, xs[ctx.party], 0, magnitude_bits=127))
