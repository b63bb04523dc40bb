"""Bits of ring elements and packed bit streams: the local algebra of binary (XOR) sharing.

A *binary* sharing holds a vector of bits as ring elements (``mpc_core.ring``)
whose bits are the shared bits: ``x = x_0 ^ x_1 ^ x_2`` componentwise, in the
replicated layout of ``mpc_core.sharing``. XOR, AND and shifts act on the
elements' 64-bit words (:meth:`~mpc_core.ring.Ring.words`), where they are
limb-wise and therefore valid for Z_2^128 too.

A *bit stream* is a flat ``uint64`` vector read as a little-endian string of
bits: bit ``j`` is bit ``j % 64`` of word ``j // 64``. The words of ``n``
elements of Z_2^k are the stream of ``n`` fields of ``k`` bits, element
``e``'s bit ``b`` at position ``e*k + b``. :func:`split_even_odd` takes the
even and the odd positions of a stream; applied to a stream of ``w``-bit
fields (``w`` even) it yields two streams of ``w/2``-bit fields holding each
field's even and odd bits, in field order. That is one level of the carry
and AND trees of ``mpc_server.protocol.binary``, on whole arrays, with every
level's bits packed densely for the wire. Bits past a stream's length are
padding: they never move into the stream, whatever their value.

The local halves of the protocols live here too, as pure functions of one
party's values: the terms of an AND (:func:`and_terms`), the first level of
the adder in ``binary.adder_first_layer`` (:func:`first_layer_part`, the one
non-linear map applied to values a single party knows) and the arithmetic of
bit injection (:func:`injection_message`, :func:`injection_part`). Pure:
numpy and the core only, no I/O; randomness (:func:`xor_split`, for clients
and tests) only from :mod:`mpc_core.prg`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from mpc_core.errors import InvalidArgumentError
from mpc_core.prg import random_elements
from mpc_core.ring import Ring, RingArray, Words, ring_of
from mpc_core.sharing import ReplicatedShare

WORD_BITS = 64
_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)
_LOW32 = np.uint64(0xFFFFFFFF)
_UNSHUFFLE_STAGES = (  # Hacker's Delight §7-2, "unshuffle", widened to 64 bits
    (np.uint64(1), np.uint64(0x2222222222222222)),
    (np.uint64(2), np.uint64(0x0C0C0C0C0C0C0C0C)),
    (np.uint64(4), np.uint64(0x00F000F000F000F0)),
    (np.uint64(8), np.uint64(0x0000FF000000FF00)),
    (np.uint64(16), np.uint64(0x00000000FFFF0000)),
)

Bits = npt.NDArray[np.uint8]
"""One bit per entry (0 or 1), unpacked."""


def words_for(nbits: int) -> int:
    """Words of a stream of ``nbits`` bits: ``ceil(nbits / 64)``."""
    return -(-nbits // WORD_BITS)


def words_of(values: RingArray) -> Words:
    """The 64-bit words of ring elements (a view when contiguous)."""
    return ring_of(values).words(values)


def xor(a: RingArray, b: RingArray) -> RingArray:
    """``a ^ b`` elementwise (any ring; flat result)."""
    return ring_of(a).from_words(np.bitwise_xor(words_of(a), words_of(b)))


def and_(a: RingArray, b: RingArray) -> RingArray:
    """``a & b`` elementwise (any ring; flat result)."""
    return ring_of(a).from_words(np.bitwise_and(words_of(a), words_of(b)))


def constant_words(ring: Ring, constant: int | RingArray, n: int) -> Words:
    """The words of ``n`` elements equal to an int ``constant``, or of a vector of ``n`` elements."""
    if isinstance(constant, int):
        return np.tile(ring.words(ring.from_ints([constant])), n)
    words = ring.words(ring.require(constant, "the constant"))
    if words.size != n * ring.words_per_element:
        raise InvalidArgumentError(f"a public vector of {n} elements is needed, got {constant.size}")
    return words


def unshuffle(words: Words) -> Words:
    """Per word: the 32 even-position bits to the low half, the 32 odd ones to the high half."""
    x = np.array(words, dtype=np.uint64)
    for shift, mask in _UNSHUFFLE_STAGES:
        t = ((x >> shift) ^ x) & mask
        x ^= t ^ (t << shift)
    return x


def _join_halves(halves: Words, count: int) -> Words:
    """``count`` words from 32-bit values (held in uint64), two per word, low first."""
    padded = np.zeros(2 * count, dtype=np.uint64)
    used = min(halves.size, 2 * count)
    padded[:used] = halves[:used]
    joined: Words = padded[0::2] | (padded[1::2] << np.uint64(32))
    return joined


def split_even_odd(words: Words, nbits: int) -> tuple[Words, Words]:
    """The even and the odd positions of a stream of ``nbits`` (even) bits, as two streams."""
    if nbits % 2 or words.size != words_for(nbits):
        raise InvalidArgumentError(f"a stream of {nbits} bits cannot be {words.size} words and split")
    mixed = unshuffle(words)
    count = words_for(nbits // 2)
    return _join_halves(mixed & _LOW32, count), _join_halves(mixed >> np.uint64(32), count)


def field_mask(width: int, nbits: int, position: int) -> Words:
    """A stream of ``nbits`` bits of ``width``-bit fields with bit ``position`` of every field set.

    ``width`` is a power of two: a divisor of 64 or a multiple of it.
    """
    if width <= WORD_BITS:
        if WORD_BITS % width:
            raise InvalidArgumentError(f"field width {width} does not divide a word")
        pattern = sum(1 << (lane * width + position) for lane in range(WORD_BITS // width))
        return np.full(words_for(nbits), pattern, dtype=np.uint64)
    period = np.zeros(width // WORD_BITS, dtype=np.uint64)
    period[position // WORD_BITS] = np.uint64(1) << np.uint64(position % WORD_BITS)
    return np.resize(period, words_for(nbits))


def pack_bits(bits: Bits) -> Words:
    """A stream from one bit per entry (entry j at position j)."""
    packed = np.packbits(np.asarray(bits, dtype=np.uint8), bitorder="little")
    raw = np.zeros(words_for(bits.size) * 8, dtype=np.uint8)
    raw[: packed.size] = packed
    words: Words = raw.view("<u8").astype(np.uint64, copy=False)
    return words


def unpack_bits(words: Words, count: int) -> Bits:
    """The first ``count`` bits of a stream, one per entry."""
    raw = np.ascontiguousarray(words, dtype="<u8").view(np.uint8)
    bits: Bits = np.unpackbits(raw, count=count, bitorder="little")
    return bits


def element_bits(values: RingArray, position: int) -> Words:
    """The stream of bit ``position`` of every element (element j at position j)."""
    ring = ring_of(values)
    if not 0 <= position < ring.bits:
        raise InvalidArgumentError(f"bit {position} is outside the {ring.bits}-bit elements")
    words = ring.words(values).reshape(-1, ring.words_per_element)[:, position // WORD_BITS]
    bits = (words >> np.uint64(position % WORD_BITS)) & np.uint64(1)
    return pack_bits(bits.astype(np.uint8))


def bits_to_ring(ring: Ring, words: Words, count: int) -> RingArray:
    """The first ``count`` bits of a stream as elements 0 and 1 of ``ring``."""
    return ring.from_signed64(unpack_bits(words, count).astype(np.int64))


def signs_to_ring(ring: Ring, words: Words, count: int) -> RingArray:
    """``1 - 2 b`` (1 or -1) for the first ``count`` bits ``b`` of a stream, as elements of ``ring``."""
    return ring.from_signed64(1 - 2 * unpack_bits(words, count).astype(np.int64))


def words_share(first: Words, second: Words) -> ReplicatedShare:
    """A share of a bit stream from its two word components."""
    return ReplicatedShare(np.ascontiguousarray(first, np.uint64), np.ascontiguousarray(second, np.uint64))


def share_words(x: ReplicatedShare) -> tuple[Words, Words]:
    """The words of a share's two components."""
    return words_of(x.first), words_of(x.second)


def split_share(x: ReplicatedShare, nbits: int) -> tuple[ReplicatedShare, ReplicatedShare]:
    """Even and odd positions of a shared stream of ``nbits`` bits (linear, so componentwise)."""
    first, second = share_words(x)
    f_even, f_odd = split_even_odd(first, nbits)
    s_even, s_odd = split_even_odd(second, nbits)
    return words_share(f_even, s_even), words_share(f_odd, s_odd)


def concat(*shares: ReplicatedShare) -> ReplicatedShare:
    """The shares of the concatenated vectors (any ring)."""
    firsts, seconds = [s.first for s in shares], [s.second for s in shares]
    return ReplicatedShare(np.concatenate(firsts), np.concatenate(seconds))


def slice_share(x: ReplicatedShare, start: int, stop: int) -> ReplicatedShare:
    """Elements ``start:stop`` of a share (contiguous copies)."""
    return ReplicatedShare(x.first[start:stop].copy(), x.second[start:stop].copy())


def columns(x: ReplicatedShare, rows: int, cut: slice) -> ReplicatedShare:
    """The columns ``cut`` of a share of a row-major matrix with ``rows`` rows, flattened."""

    def take(component: RingArray) -> RingArray:
        return np.ascontiguousarray(component.reshape(rows, -1)[:, cut]).reshape(-1)

    return ReplicatedShare(take(x.first), take(x.second))


def join_rows(rows: int, left: ReplicatedShare, right: ReplicatedShare) -> ReplicatedShare:
    """Row-major matrices side by side: each row of ``left`` followed by the same row of ``right``."""
    pairs = ((left.first, right.first), (left.second, right.second))
    joined = [
        np.concatenate([a.reshape(rows, -1), b.reshape(rows, -1)], axis=1).reshape(-1) for a, b in pairs
    ]
    return ReplicatedShare(joined[0], joined[1])


def and_terms(x: ReplicatedShare, y: ReplicatedShare) -> Words:
    """Party i's term ``(x_i & (y_i ^ y_{i+1})) ^ (x_{i+1} & y_i)`` of ``x & y``; the three XOR to it."""
    x0, x1 = share_words(x)
    y0, y1 = share_words(y)
    if x0.size != y0.size:
        raise InvalidArgumentError(f"AND operands differ in size: {x0.size} vs {y0.size} words")
    terms: Words = (x0 & (y0 ^ y1)) ^ (x1 & y0)
    return terms


def carry_final_terms(g: ReplicatedShare, p: ReplicatedShare, count: int) -> Words:
    """Party i's 3-out-of-3 XOR term of ``G_odd ^ P_odd G_even``, for ``count`` fields of two groups."""
    g_even, g_odd = split_share(g, 2 * count)
    _, p_odd = split_share(p, 2 * count)
    terms: Words = and_terms(p_odd, g_even) ^ words_of(g_odd.first)
    return terms


def and_final_terms(e: ReplicatedShare, count: int) -> Words:
    """Party i's 3-out-of-3 XOR term of the AND of the two bits of each of ``count`` fields."""
    even, odd = split_share(e, 2 * count)
    return and_terms(odd, even)


def first_layer_message(a: Words, nbits: int, r: Words, q: Words) -> Words:
    """Party 0's message for :func:`first_layer_part`: ``[a ^ r, (a_odd & a_even) ^ q]``."""
    a_even, a_odd = split_even_odd(a, nbits)
    message: Words = np.concatenate([a ^ r, (a_odd & a_even) ^ q])
    return message


def first_layer_part(
    a: Words, a_pair: Words, b: Words, width: int, count: int, *, with_b: bool, mask: Words
) -> Words:
    """One party's part ``[G, P]`` of the first prefix level of ``a + b`` (``count`` fields of ``width``).

    For a pair of positions (odd ``o`` above even ``e``) with ``g = a & b``
    and ``p = a ^ b``, the level's group is ``G = g_o ^ p_o g_e``,
    ``P = p_o p_e``; the top pair of every field takes ``g_o = p_o``,
    ``p_o = 1`` instead, so a tree over all pairs ends in ``p_top ^ carry``:
    the sum's top bit. As bit polynomials ``G`` and ``P`` are linear in the
    monomials ``a_o``, ``a_e`` and ``a_pair = a_o a_e`` with coefficients in
    ``b``, plus terms in ``b`` alone. Given XOR shares of ``a`` and of
    ``a_pair`` (streams of ``count * width`` and ``count * width / 2`` bits),
    the parts XOR to ``[G, P]``; the ``b``-only terms are added by one caller
    (``with_b``). Each of ``G`` and ``P`` is a stream of ``count * width / 2``
    bits; the result is ``[G, P] ^ mask``.
    """
    a_even, a_odd = split_even_odd(a, count * width)
    b_even, b_odd = split_even_odd(b, count * width)
    top = field_mask(width // 2, count * width // 2, width // 2 - 1)
    rest = np.bitwise_xor(top, _ONES)
    both = b_odd & b_even
    g = (a_odd & ((b_odd & rest) | top)) ^ (a_pair & b_even & rest)
    g ^= a_even & ((both & rest) | (b_even & top))
    p = (a_pair & rest) ^ (a_odd & b_even & rest) ^ (a_even & ((b_odd & rest) | top))
    if with_b:
        g ^= b_odd & top
        p ^= (both & rest) | (b_even & top)
    parts: Words = np.concatenate([g, p]) ^ mask
    return parts


def injection_message(
    ring: Ring, d: Words, count: int, v_sum: RingArray | None, masks: tuple[RingArray, RingArray | None]
) -> RingArray:
    """Party 0's message of a bit injection: ``d w - r_w`` (``w = v_0 + v_1``, or 1), then ``d - r_d``.

    ``d`` is a stream of ``count`` bits; with ``v_sum`` of ``repeat * count``
    elements the bits repeat ``repeat`` times.
    """
    d_ring = bits_to_ring(ring, d, count)
    r_w, r_d = masks
    if v_sum is None or r_d is None:
        return ring.sub(d_ring, r_w)
    weighted = ring.mul(np.tile(d_ring, v_sum.size // count), v_sum)
    return np.concatenate([ring.sub(weighted, r_w), ring.sub(d_ring, r_d)])


def injection_part(
    ring: Ring,
    party: int,
    beta: Words,
    count: int,
    shares: tuple[RingArray, RingArray | None],
    *,
    values: tuple[RingArray, RingArray] | None = None,
) -> RingArray:
    """Party 1's or 2's additive part of ``b`` (or ``v b``) for ``b = d ^ beta``, ``s = 1 - 2 beta``.

    ``b = beta + s d`` and ``v b = v beta + s (v_0 + v_1) d + s v_2 d``.
    ``shares`` are the party's additive shares of ``d w`` and ``d`` (``w`` is
    ``v_0 + v_1``, or 1 without ``v``; then only the first). ``values`` are
    its components of ``v``: ``(v_1, v_2)`` at party 1, which takes
    ``v_1 + v_2`` as its part of ``v``, and ``(v_2, v_0)`` at party 2, which
    takes ``v_0``; both know ``v_2``. Without ``v`` party 2 adds ``beta``.
    """
    weighted, plain = shares
    repeat = weighted.size // count
    beta_ring = np.tile(bits_to_ring(ring, beta, count), repeat)
    sign = np.tile(signs_to_ring(ring, beta, count), repeat)
    if values is None or plain is None:
        part = ring.mul(sign, weighted)
        return ring.add(part, beta_ring) if party == 2 else part
    first, second = values
    linear, v2 = (ring.add(first, second), second) if party == 1 else (second, first)
    inner = ring.add(weighted, ring.mul(np.tile(plain, repeat), v2))
    return ring.add(ring.mul(linear, beta_ring), ring.mul(sign, inner))


def fold_blocks(ring: Ring, values: RingArray, combine: int) -> RingArray:
    """The sum of ``combine`` consecutive blocks of equal length of ``values``."""
    blocks = values.reshape(combine, -1)
    total: RingArray = np.ascontiguousarray(blocks[0]).copy()
    for block in blocks[1:]:
        ring.add(total, block, out=total)
    return total


def xor_split(ring: Ring, secret: RingArray) -> tuple[RingArray, RingArray, RingArray]:
    """XOR-share ``secret`` (flattened): ``x_0``, ``x_1`` uniformly random, ``x_2 = x ^ x_0 ^ x_1``."""
    flat = ring.require(secret, "the secret").reshape(-1)
    x0, x1 = random_elements(ring, flat.size), random_elements(ring, flat.size)
    return x0, x1, xor(xor(flat, x0), x1)


def xor_combine(x0: RingArray, x1: RingArray, x2: RingArray) -> RingArray:
    """``x_0 ^ x_1 ^ x_2``: the secret of three XOR components."""
    return xor(xor(x0, x1), x2)
