"""Products and linear operations open to the right values (protocols.md §4, §5), in both rings.

Every result is checked against a plaintext reference computed with Python
integers reduced modulo 2^k (``ring_data``), or exactly with
:class:`fractions.Fraction` for fixed point; numpy only generates inputs.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpc_core.errors import InvalidArgumentError
from mpc_core.fixed_point import FixedPoint
from mpc_core.ring import RING64, RING128
from mpc_core.sharing import ReplicatedShare, share
from mpc_core.types import PARTIES
from mpc_server.protocol import arithmetic
from mpc_server.protocol.memory import InMemoryNetwork

# Any sign and size: from_ints reduces them modulo 2^k, as the oracle does.
any_integer = st.integers(min_value=-(2**130), max_value=2**130)
property_settings = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def edge_values(ring):
    """0..3, M-2, M-1 and the neighbours of 2^32, 2^63, 2^64, 2^96 and 2^127, reduced mod M."""
    values = {0, 1, 2, 3, ring.modulus - 2, ring.modulus - 1}
    for bit in (32, 63, 64, 96, 127):
        values.update({2**bit - 1, 2**bit, 2**bit + 1})
    return sorted({v % ring.modulus for v in values})


def products(data, xs, ys):
    return [(a * b) % data.modulus for a, b in zip(xs, ys, strict=True)]


def shared_mul(run_parties, net, xs, ys):
    return run_parties(net, lambda ctx: arithmetic.mul(ctx, xs[ctx.party], ys[ctx.party]))


def test_edge_values_reach_the_top_of_each_ring(ring):
    values = edge_values(ring)
    assert values[-1] == ring.modulus - 1
    assert 2**63 in values
    assert (2**127 in values) == (ring is RING128)


@pytest.mark.parametrize("n", [1, 2, 17, 1000, 100_000])
def test_mul_of_random_vectors_opens_to_elementwise_product(
    net, run_parties, open_shares, ring, ring_data, n
):
    x, x_ints = ring_data.vector(n)
    y, y_ints = ring_data.vector(n)
    xs, ys = share(ring, x), share(ring, y)

    opened = open_shares(shared_mul(run_parties, net, xs, ys))

    assert opened.dtype == ring.dtype
    assert opened.shape == (n,)
    assert ring_data.ints(opened) == products(ring_data, x_ints, y_ints)


def test_mul_wraps_around_at_edge_values(net, run_parties, open_shares, ring, ring_data):
    edges = edge_values(ring)
    pairs = [(a, b) for a in edges for b in edges]
    a_ints, b_ints = [a for a, _ in pairs], [b for _, b in pairs]
    xs, ys = share(ring, ring_data.array(a_ints)), share(ring, ring_data.array(b_ints))

    opened = open_shares(shared_mul(run_parties, net, xs, ys))

    assert ring_data.ints(opened) == products(ring_data, a_ints, b_ints)


@property_settings
@given(pairs=st.lists(st.tuples(any_integer, any_integer), min_size=1, max_size=40))
def test_mul_matches_plaintext_product_property(run_parties, open_shares, ring_data, pairs):
    ring = ring_data.ring
    a_ints, b_ints = [a for a, _ in pairs], [b for _, b in pairs]
    xs, ys = share(ring, ring_data.array(a_ints)), share(ring, ring_data.array(b_ints))

    opened = open_shares(shared_mul(run_parties, InMemoryNetwork(), xs, ys))

    assert ring_data.ints(opened) == products(ring_data, a_ints, b_ints)


def test_fixed_point_mul_decoded_at_2f_matches_the_exact_product(
    net, run_parties, open_shares, ring, ring_data, rng
):
    fmt = FixedPoint.default(ring)
    f = fmt.fractional_bits
    assert f == {64: 16, 128: 32}[ring.bits]
    a = np.concatenate(
        [rng.uniform(-1000, 1000, 2000), [0.0, 1.0, -1.0, 2.0**-f, -(2.0 ** -(f + 1)), 1234.5678]]
    )
    b = np.concatenate([rng.uniform(-1000, 1000, 2000), [5.5, -0.0, 1e-3, 3.0, 7.0, -1234.5678]])
    enc_a, enc_b = fmt.encode(a), fmt.encode(b)
    xs, ys = share(ring, enc_a), share(ring, enc_b)

    opened = open_shares(shared_mul(run_parties, net, xs, ys))

    product_format = fmt.product_format()
    assert product_format.fractional_bits == 2 * f
    got = [Fraction(v, 2 ** (2 * f)) for v in ring_data.signed_ints(opened)]
    # The product of the encoded integers is exact (|product| < 2^(k-1)) ...
    exact = [
        Fraction(p * q, 2 ** (2 * f))
        for p, q in zip(ring_data.signed_ints(enc_a), ring_data.signed_ints(enc_b), strict=True)
    ]
    assert got == exact
    # ... and enc(v) = v*2^f + e with |e| <= 1/2, so it is within
    # (|a| + |b|) 2^-(f+1) + 2^-(2f+2) of the real product.
    for va, vb, value in zip(a, b, got, strict=True):
        real = Fraction(va) * Fraction(vb)
        bound = (abs(Fraction(va)) + abs(Fraction(vb))) / 2 ** (f + 1) + Fraction(1, 2 ** (2 * f + 2))
        assert abs(value - real) <= bound, (va, vb)
    # The float decoding agrees up to float64 rounding.
    decoded = product_format.decode(opened)
    np.testing.assert_allclose(decoded, [float(v) for v in got], rtol=2.0**-50, atol=0)


@pytest.mark.parametrize("length", [1, 2, 10, 1000, 10_000])
def test_dot_product_opens_to_plaintext_inner_product(net, run_parties, open_shares, ring, ring_data, length):
    x, x_ints = ring_data.vector(length)
    y, y_ints = ring_data.vector(length)
    xs, ys = share(ring, x), share(ring, y)

    opened = open_shares(run_parties(net, lambda ctx: arithmetic.dot(ctx, xs[ctx.party], ys[ctx.party])))

    assert opened.shape == (1,)
    assert ring_data.ints(opened) == [sum(a * b for a, b in zip(x_ints, y_ints, strict=True)) % ring.modulus]


def matrix_times_vector(data, matrix, vector, rows, cols):
    """Python-integer oracle of ``M @ v`` for a row-major (rows x cols) ``matrix``."""
    return [sum(matrix[r * cols + c] * vector[c] for c in range(cols)) % data.modulus for r in range(rows)]


@pytest.mark.parametrize(
    ("rows", "cols"), [(1, 1), (1, 9), (7, 1), (3, 4), (64, 100), (1000, 3), (40, 1000), (1, 1000)]
)
def test_matvec_opens_to_plaintext_matrix_vector_product(
    net, run_parties, open_shares, ring, ring_data, rows, cols
):
    matrix, m_ints = ring_data.vector(rows * cols)
    vector, v_ints = ring_data.vector(cols)
    ms, vs = share(ring, matrix.reshape(rows, cols)), share(ring, vector)

    opened = open_shares(
        run_parties(net, lambda ctx: arithmetic.matvec(ctx, ms[ctx.party], rows, vs[ctx.party]))
    )

    assert opened.shape == (rows,)
    assert ring_data.ints(opened) == matrix_times_vector(ring_data, m_ints, v_ints, rows, cols)


@property_settings
@given(
    shape=st.tuples(st.integers(1, 5), st.integers(1, 8)),
    entries=st.lists(any_integer, min_size=48, max_size=48),
)
def test_matvec_and_dot_match_plaintext_property(run_parties, open_shares, ring_data, shape, entries):
    """Arbitrary shapes and entries; the first row's product equals the dot product."""
    ring = ring_data.ring
    rows, cols = shape
    m_ints, v_ints = entries[: rows * cols], entries[40 : 40 + cols]
    ms, vs = share(ring, ring_data.array(m_ints)), share(ring, ring_data.array(v_ints))
    row_s = share(ring, ring_data.array(m_ints[:cols]))

    async def program(ctx):
        p = ctx.party
        return [await arithmetic.matvec(ctx, ms[p], rows, vs[p]), await arithmetic.dot(ctx, row_s[p], vs[p])]

    results = run_parties(InMemoryNetwork(), program)

    matvec = ring_data.ints(open_shares([r[0] for r in results]))
    dot = ring_data.ints(open_shares([r[1] for r in results]))
    assert matvec == matrix_times_vector(ring_data, m_ints, v_ints, rows, cols)
    assert dot == matvec[:1]


@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (1, 1000), (4, 1000), (9, 5)])
def test_matmul_terms_of_the_three_parties_sum_to_the_product(ring, ring_data, rows, cols):
    """The fused matmul-terms kernel: the three 3-out-of-3 terms add up to X @ w (no messages)."""
    matrix, m_ints = ring_data.vector(rows * cols)
    vector, v_ints = ring_data.vector(cols)
    ms, vs = share(ring, matrix), share(ring, vector)
    row = share(ring, ring_data.array(m_ints[:cols]))

    matvec_terms = [
        arithmetic.matvec_terms(ms[p].first.reshape(rows, cols), ms[p].second.reshape(rows, cols), vs[p])
        for p in PARTIES
    ]
    dot_terms = [arithmetic.dot_terms(row[p], vs[p]) for p in PARTIES]

    expected = matrix_times_vector(ring_data, m_ints, v_ints, rows, cols)
    columns = [ring_data.ints(t) for t in matvec_terms]
    assert [sum(c) % ring.modulus for c in zip(*columns, strict=True)] == expected
    assert all(t.shape == (1,) for t in dot_terms)
    assert sum(ring_data.ints(t)[0] for t in dot_terms) % ring.modulus == expected[0]


def test_matvec_of_small_signed_values_gives_signed_result(
    net, run_parties, open_shares, ring, ring_data, rng
):
    matrix = rng.integers(-1000, 1000, size=(5, 6), dtype=np.int64)
    vector = rng.integers(-1000, 1000, size=6, dtype=np.int64)
    ms, vs = share(ring, ring.from_signed64(matrix)), share(ring, ring.from_signed64(vector))

    opened = open_shares(
        run_parties(net, lambda ctx: arithmetic.matvec(ctx, ms[ctx.party], 5, vs[ctx.party]))
    )

    m_ints, v_ints = matrix.tolist(), vector.tolist()
    assert ring_data.signed_ints(opened) == [
        sum(a * b for a, b in zip(row, v_ints, strict=True)) for row in m_ints
    ]


def local(op, *shared):
    """Apply a local operation at each party to its own shares."""
    return [op(*(s[party] for s in shared)) for party in PARTIES]


def test_add_and_sub_are_correct(open_shares, ring, ring_data):
    x_ints, y_ints = ring_data.uniform(500), ring_data.uniform(500)
    edges = edge_values(ring)
    x_ints[: len(edges)] = edges
    y_ints[: len(edges)] = edges[::-1]
    xs, ys = share(ring, ring_data.array(x_ints)), share(ring, ring_data.array(y_ints))
    pairs = list(zip(x_ints, y_ints, strict=True))

    added = ring_data.ints(open_shares(local(arithmetic.add, xs, ys)))
    x_minus_y = ring_data.ints(open_shares(local(arithmetic.sub, xs, ys)))
    y_minus_x = ring_data.ints(open_shares(local(arithmetic.sub, ys, xs)))

    assert added == ring_data.reduce([a + b for a, b in pairs])
    assert x_minus_y == ring_data.reduce([a - b for a, b in pairs])
    assert y_minus_x == ring_data.reduce([b - a for a, b in pairs])


@pytest.mark.parametrize("constant", [0, 1, 3, 2**63, 2**64 + 3, 2**127, -1, -12345, 2**130 + 7])
def test_mul_public_scalar_is_correct(open_shares, ring, ring_data, constant):
    x, x_ints = ring_data.vector(300)
    xs = share(ring, x)

    opened = open_shares([arithmetic.mul_public(xs[p], constant) for p in PARTIES])

    assert ring_data.ints(opened) == ring_data.reduce([v * constant for v in x_ints])


@pytest.mark.parametrize("constant", [0, 1, 2**64 - 1, 2**64, -(2**40), 2**63, -1, 2**128 - 1])
def test_add_public_scalar_is_correct_and_keeps_copies_consistent(open_shares, ring, ring_data, constant):
    x, x_ints = ring_data.vector(300)
    xs = share(ring, x)

    shares = [arithmetic.add_public(p, xs[p], constant) for p in PARTIES]

    # reconstruct_checked also verifies that both holders of each component agree.
    opened = open_shares(shares)
    assert ring_data.ints(opened) == ring_data.reduce([v + constant for v in x_ints])


def test_local_operations_do_not_modify_their_inputs(open_shares, ring, ring_data):
    x, x_ints = ring_data.vector(50)
    y = ring_data.array(ring_data.uniform(50))
    xs, ys = share(ring, x), share(ring, y)
    before = [(ring_data.ints(s.first), ring_data.ints(s.second)) for s in (*xs, *ys)]

    added = [arithmetic.add_public(p, xs[p], 2**64 + 1) for p in PARTIES]
    local(arithmetic.add, xs, ys)
    local(arithmetic.sub, xs, ys)
    local(lambda s: arithmetic.mul_public(s, 3), xs)

    assert ring_data.ints(open_shares(added)) == ring_data.reduce([v + 2**64 + 1 for v in x_ints])
    after = [(ring_data.ints(s.first), ring_data.ints(s.second)) for s in (*xs, *ys)]
    assert after == before


def test_linear_combination_then_product(net, run_parties, open_shares, ring, ring_data):
    """(3x + 5 - y) * y, all on shares, opens to the plaintext value."""
    x, x_ints = ring_data.vector(64)
    y, y_ints = ring_data.vector(64)
    xs, ys = share(ring, x), share(ring, y)

    async def program(ctx):
        p = ctx.party
        u = arithmetic.add_public(p, arithmetic.mul_public(xs[p], 3), 5)
        return await arithmetic.mul(ctx, arithmetic.sub(u, ys[p]), ys[p])

    opened = open_shares(run_parties(net, program))

    expected = [((3 * a + 5 - b) * b) % ring.modulus for a, b in zip(x_ints, y_ints, strict=True)]
    assert ring_data.ints(opened) == expected


def test_product_shares_are_replicated_shares(net, run_parties, ring, ring_data):
    """Party i's output holds (z_i, z_{i+1}) and z_{i+1} is exactly what party i+1 computed."""
    xs, ys = share(ring, ring_data.vector(10)[0]), share(ring, ring_data.vector(10)[0])

    shares = shared_mul(run_parties, net, xs, ys)

    assert all(isinstance(s, ReplicatedShare) and s.ring == ring for s in shares)
    for p in PARTIES:
        assert ring_data.ints(shares[p].second) == ring_data.ints(shares[(p + 1) % 3].first)


def test_shares_of_another_ring_than_the_jobs_are_refused(net, run_parties, ring, ring_data):
    other = RING128 if ring is RING64 else RING64
    xs = share(other, other.from_ints([1, 2, 3]))

    results = run_parties(
        net, lambda ctx: arithmetic.mul(ctx, xs[ctx.party], xs[ctx.party]), return_exceptions=True, timeout=5
    )

    for result in results:
        assert isinstance(result, InvalidArgumentError), result
