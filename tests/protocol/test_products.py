"""Products and linear operations open to the right values (protocols.md §4, §5).

Every product is checked against a plaintext reference: numpy ``uint64``
arithmetic (which wraps modulo 2^64) or Python integers reduced mod 2^64.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpc_core.fixed_point import FixedPoint
from mpc_core.ring import RING_MODULUS, ring_constant
from mpc_core.sharing import ReplicatedShare, share
from mpc_core.types import PARTIES
from mpc_server.protocol import arithmetic
from mpc_server.protocol.memory import InMemoryNetwork

EDGE_VALUES = [0, 1, 2, 3, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**63 + 1, 2**64 - 2, 2**64 - 1]

ring_element = st.integers(min_value=0, max_value=RING_MODULUS - 1)


def ring_vector(rng, n):
    return rng.integers(0, 2**64, size=n, dtype=np.uint64)


def products_mod_2_64(xs, ys):
    return np.array([(int(a) * int(b)) % RING_MODULUS for a, b in zip(xs, ys, strict=True)], dtype=np.uint64)


@pytest.mark.parametrize("n", [1, 2, 17, 1000, 100_000])
def test_mul_of_random_vectors_opens_to_elementwise_product(net, run_parties, open_shares, rng, n):
    x, y = ring_vector(rng, n), ring_vector(rng, n)
    xs, ys = share(x), share(y)

    shares = run_parties(net, lambda ctx: arithmetic.mul(ctx, xs[ctx.party], ys[ctx.party]))

    opened = open_shares(shares)
    assert opened.dtype == np.uint64
    assert opened.shape == (n,)
    np.testing.assert_array_equal(opened, x * y)
    if n <= 1000:  # independent check with Python integers
        np.testing.assert_array_equal(opened, products_mod_2_64(x, y))


def test_mul_wraps_around_at_edge_values(net, run_parties, open_shares):
    pairs = [(a, b) for a in EDGE_VALUES for b in EDGE_VALUES]
    x = np.array([a for a, _ in pairs], dtype=np.uint64)
    y = np.array([b for _, b in pairs], dtype=np.uint64)
    xs, ys = share(x), share(y)

    opened = open_shares(run_parties(net, lambda ctx: arithmetic.mul(ctx, xs[ctx.party], ys[ctx.party])))

    np.testing.assert_array_equal(opened, products_mod_2_64(x, y))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=st.lists(st.tuples(ring_element, ring_element), min_size=1, max_size=40))
def test_mul_matches_plaintext_product_property(run_parties, open_shares, pairs):
    x = np.array([a for a, _ in pairs], dtype=np.uint64)
    y = np.array([b for _, b in pairs], dtype=np.uint64)
    xs, ys = share(x), share(y)

    opened = open_shares(
        run_parties(InMemoryNetwork(), lambda ctx: arithmetic.mul(ctx, xs[ctx.party], ys[ctx.party]))
    )

    assert [int(v) for v in opened] == [(a * b) % RING_MODULUS for a, b in pairs]


def test_fixed_point_mul_decoded_at_2f_matches_float_product(net, run_parties, open_shares, rng):
    fmt = FixedPoint()
    a = np.concatenate([rng.uniform(-1000, 1000, 2000), [0.0, 1.0, -1.0, 2**-16, -(2**-17), 1234.5678]])
    b = np.concatenate([rng.uniform(-1000, 1000, 2000), [5.5, -0.0, 1e-3, 3.0, 7.0, -1234.5678]])
    xs, ys = share(fmt.encode(a)), share(fmt.encode(b))

    opened = open_shares(run_parties(net, lambda ctx: arithmetic.mul(ctx, xs[ctx.party], ys[ctx.party])))

    got = fmt.product_format().decode(opened)
    assert fmt.product_format().fractional_bits == 32
    # enc(v) = v*2^f + e with |e| <= 1/2, so the product is off by at most
    # (|a| + |b|) 2^-(f+1) + 2^-(2f+2); plus float64 rounding of the reference.
    bound = (np.abs(a) + np.abs(b)) * 2.0**-17 + 2.0**-34 + np.abs(a * b) * 2.0**-50
    assert np.all(np.abs(got - a * b) <= bound)


@pytest.mark.parametrize("length", [1, 2, 10, 10_000])
def test_dot_product_opens_to_plaintext_inner_product(net, run_parties, open_shares, rng, length):
    x, y = ring_vector(rng, length), ring_vector(rng, length)
    xs, ys = share(x), share(y)

    opened = open_shares(run_parties(net, lambda ctx: arithmetic.dot(ctx, xs[ctx.party], ys[ctx.party])))

    expected = sum(int(a) * int(b) for a, b in zip(x, y, strict=True)) % RING_MODULUS
    assert opened.shape == (1,)
    assert int(opened[0]) == expected
    assert opened[0] == (x * y).sum(dtype=np.uint64)


@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (1, 9), (7, 1), (3, 4), (64, 100), (1000, 3), (40, 1000)])
def test_matvec_opens_to_plaintext_matrix_vector_product(net, run_parties, open_shares, rng, rows, cols):
    matrix = ring_vector(rng, rows * cols).reshape(rows, cols)
    vector = ring_vector(rng, cols)
    ms, vs = share(matrix), share(vector)

    opened = open_shares(
        run_parties(net, lambda ctx: arithmetic.matvec(ctx, ms[ctx.party], rows, vs[ctx.party]))
    )

    expected = [
        sum(int(matrix[r, c]) * int(vector[c]) for c in range(cols)) % RING_MODULUS for r in range(rows)
    ]
    assert opened.shape == (rows,)
    assert [int(v) for v in opened] == expected


def test_matvec_of_small_signed_values_gives_signed_result(net, run_parties, open_shares, rng):
    matrix = rng.integers(-1000, 1000, size=(5, 6), dtype=np.int64)
    vector = rng.integers(-1000, 1000, size=6, dtype=np.int64)
    ms, vs = share(matrix.view(np.uint64)), share(vector.view(np.uint64))

    opened = open_shares(
        run_parties(net, lambda ctx: arithmetic.matvec(ctx, ms[ctx.party], 5, vs[ctx.party]))
    )

    np.testing.assert_array_equal(opened.view(np.int64), matrix @ vector)


def local(op, *shared):
    """Apply a local operation at each party to its own shares."""
    return [op(*(s[party] for s in shared)) for party in PARTIES]


def test_add_and_sub_are_correct(open_shares, rng):
    x, y = ring_vector(rng, 500), ring_vector(rng, 500)
    x[: len(EDGE_VALUES)] = EDGE_VALUES
    y[: len(EDGE_VALUES)] = EDGE_VALUES[::-1]
    xs, ys = share(x), share(y)

    np.testing.assert_array_equal(open_shares(local(arithmetic.add, xs, ys)), x + y)
    np.testing.assert_array_equal(open_shares(local(arithmetic.sub, xs, ys)), x - y)
    np.testing.assert_array_equal(open_shares(local(arithmetic.sub, ys, xs)), y - x)


@pytest.mark.parametrize("constant", [0, 1, 3, 2**63, -1, -12345])
def test_mul_public_scalar_is_correct(open_shares, rng, constant):
    x = ring_vector(rng, 300)
    c = ring_constant(constant)
    xs = share(x)

    opened = open_shares([arithmetic.mul_public(xs[p], c) for p in PARTIES])

    assert [int(v) for v in opened] == [(int(v) * constant) % RING_MODULUS for v in x]


def test_mul_public_vector_is_elementwise(open_shares, rng):
    x, c = ring_vector(rng, 300), ring_vector(rng, 300)
    xs = share(x)

    opened = open_shares([arithmetic.mul_public(xs[p], c) for p in PARTIES])

    np.testing.assert_array_equal(opened, products_mod_2_64(x, c))


@pytest.mark.parametrize("constant", [0, 1, 2**64 - 1, -(2**40), 2**63])
def test_add_public_scalar_is_correct_and_keeps_copies_consistent(open_shares, rng, constant):
    x = ring_vector(rng, 300)
    xs = share(x)

    shares = [arithmetic.add_public(p, xs[p], ring_constant(constant)) for p in PARTIES]

    # reconstruct_checked also verifies that both holders of each component agree.
    opened = open_shares(shares)
    assert [int(v) for v in opened] == [(int(v) + constant) % RING_MODULUS for v in x]


def test_add_public_vector_does_not_modify_inputs(open_shares, rng):
    x, c = ring_vector(rng, 50), ring_vector(rng, 50)
    xs = share(x)
    before = [(s.first.copy(), s.second.copy()) for s in xs]

    shares = [arithmetic.add_public(p, xs[p], c) for p in PARTIES]

    np.testing.assert_array_equal(open_shares(shares), x + c)
    for s, (first, second) in zip(xs, before, strict=True):
        np.testing.assert_array_equal(s.first, first)
        np.testing.assert_array_equal(s.second, second)


def test_linear_combination_then_product(net, run_parties, open_shares, rng):
    """(3x + 5 - y) * y, all on shares, opens to the plaintext value."""
    x, y = ring_vector(rng, 64), ring_vector(rng, 64)
    xs, ys = share(x), share(y)

    async def program(ctx):
        p = ctx.party
        u = arithmetic.add_public(p, arithmetic.mul_public(xs[p], np.uint64(3)), np.uint64(5))
        return await arithmetic.mul(ctx, arithmetic.sub(u, ys[p]), ys[p])

    opened = open_shares(run_parties(net, program))

    np.testing.assert_array_equal(opened, (x * np.uint64(3) + np.uint64(5) - y) * y)


def test_product_shares_are_replicated_shares(net, run_parties, rng):
    """Party i's output holds (z_i, z_{i+1}) and z_{i+1} is exactly what party i+1 computed."""
    x, y = ring_vector(rng, 10), ring_vector(rng, 10)
    xs, ys = share(x), share(y)

    shares = run_parties(net, lambda ctx: arithmetic.mul(ctx, xs[ctx.party], ys[ctx.party]))

    assert all(isinstance(s, ReplicatedShare) for s in shares)
    for p in PARTIES:
        np.testing.assert_array_equal(shares[p].second, shares[(p + 1) % 3].first)
