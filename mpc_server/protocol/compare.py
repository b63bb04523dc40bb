"""Comparisons on arithmetic shares: sign bits, bit injection, <, =, ReLU, clip, maximum, argmax.

Sources: Mohassel-Rindal, "ABY3: A Mixed Protocol Framework for Machine
Learning", ACM CCS 2018 (eprint 2018/403), §5.3 (bit extraction: party 0
inputs ``x_0 + x_1`` in binary and a parallel-prefix adder adds ``x_2``; the
carry into the top bit gives the MSB) and §5.4 (bit injection,
``[a]^A [b]^B``); Araki et al., CCS 2016, §2 (AND gates, ``protocol.binary``).
Departures, argued where made: the adder's input and first two AND layers
are one message from party 0 and one exchange of parties 1 and 2
(``binary.adder_first_layer``); bit injection is a masked input from party 0
and a two-party reshare (``injection.inject``) instead of ABY3's three-party OT,
and absorbs a product and a comparison's last AND layer in its two rounds.

Costs in Z_2^k (``L = log2 k``: 6 or 7): rounds (latency) and bits sent per
element by party 0 / 1 / 2, for multiples of 64 elements (each message is
rounded up to whole 64-bit words):

======================  ======  ======================  ===============  ================
function                rounds  party 0 / 1 / 2         k = 64           k = 128
======================  ======  ======================  ===============  ================
``msb`` (XOR result)    L + 1   2.5k-3 / 2k-3 / 2k-3    157 / 125 / 125  317 / 253 / 253
``bit_injection``       2       k / k / k               64 / 64 / 64     128 / 128 / 128
``bit_times``           2       2k / k / k              128 / 64 / 64    256 / 128 / 128
``less_than`` & co.     L + 2   3.5k-4 / 3k-3 / 3k-3    220 / 189 / 189  444 / 381 / 381
``equal``               L + 2   3k-2 / 2k-1 / 2k-1      190 / 127 / 127  382 / 255 / 255
``relu``                L + 2   4.5k-4 / 3k-3 / 3k-3    284 / 189 / 189  572 / 381 / 381
``clip``                L + 2   9k-8 / 5k-6 / 5k-6      568 / 314 / 314  1144 / 634 / 634
======================  ======  ======================  ===============  ================

``maximum`` / ``argmax`` over ``m`` values: ``T = ceil(log2 m)`` levels, ``T (L + 1) + 1``
rounds (a level's first message, from party 0, overlaps the previous level's last round).

**Range.** ``x < y`` reads the sign of ``x - y``: exact while
``-2^(k-1) <= x - y < 2^(k-1)`` as integers (e.g. ``|x|, |y| < 2^(k-2)``);
``clip`` and the tournaments need the same of ``x - lo``, ``hi - x`` and of
differences of candidates. ``is_negative``, ``relu`` and ``equal`` are exact
for all elements. The service layer guarantees the ranges from public
magnitude bounds (``mpc_core.bounds``). Semi-honest security, as products:
nothing here detects a deviating server.

**The 64-bit window** (``magnitude_bits`` on ``greater_than_public``, Z_2^128):
a sign of a value with a public bound read by a 64-bit adder (``sign_window``):
8 rounds and 284 / 253 / 253 bits per element instead of 9 and 444 / 381 / 381.
"""

from __future__ import annotations

import numpy as np

from mpc_core import bits
from mpc_core.bits import concat
from mpc_core.errors import InvalidArgumentError, ProtocolError
from mpc_core.ring import RingArray, Words
from mpc_core.sharing import ReplicatedShare
from mpc_core.types import MessageTag
from mpc_server.protocol import arithmetic, binary
from mpc_server.protocol.binary import PackedBits
from mpc_server.protocol.context import PartyContext
from mpc_server.protocol.injection import inject_terms
from mpc_server.protocol.sign_window import Adder, adder_for, window_words


def _tags(ctx: PartyContext, count: int) -> list[MessageTag]:
    return [ctx.allocate_tag() for _ in range(count)]


def _levels(ctx: PartyContext) -> int:
    return ctx.ring.bits.bit_length() - 1  # L = log2 k


# ---------------------------------------------------------------------- sign bits


def _addends(
    ctx: PartyContext, x: ReplicatedShare, adder: Adder | None = None, *, negate: bool = False
) -> Words:
    """``a = x_0 + x_1`` at party 0, ``b = x_2`` (or ``-x_2``) at parties 1 and 2, as words.

    With a 64-bit ``adder`` in Z_2^128: the window of each addend, one word per element.
    """
    ring = ctx.ring
    if ctx.party == 0:
        value = ring.add(x.first, x.second)
    else:
        b = x.second if ctx.party == 1 else x.first
        value = ring.neg(b) if negate else b
    words = ring.words(value)
    if adder is None or adder.width == ring.bits:
        return words
    return window_words(words, ring.words_per_element, adder.shift)


async def _carry_tree(
    ctx: PartyContext, tags: list[MessageTag], x: ReplicatedShare, adder: Adder | None = None
) -> tuple[ReplicatedShare, ReplicatedShare]:
    """The first ``L - 1`` levels of the carry tree of ``x``'s sum: two groups per element left."""
    adder = adder or Adder(ctx.ring.bits)
    addends = _addends(ctx, x, adder)
    gp = await binary.adder_first_layer(ctx, tags[:2], addends, adder.width, x.size)
    return await binary.carry_reduce(ctx, tags[2 : adder.levels], gp, x.size, adder.width // 2)


async def msb(ctx: PartyContext, x: ReplicatedShare) -> PackedBits:
    """XOR shares of the most significant bit of every element (ABY3 §5.3 bit extraction).

    1. ``binary.adder_first_layer`` of ``a = x_0 + x_1`` (party 0) and
       ``b = x_2`` (parties 1, 2): the carry tree's first level, k/2 groups
       per element (2 rounds; 1.5k / k / k bits).
    2. ``L - 2`` levels of ``binary.carry_level`` (1 round each; k/2, ...,
       4 bits per element) leave two groups per element.
    3. ``binary.carry_final``: one AND round, one bit per element.

    Rounds ``L + 1``; bits per element 2.5k-3 / 2k-3 / 2k-3.
    """
    tags = _tags(ctx, _levels(ctx) + 1)
    g, p = await _carry_tree(ctx, tags, x)
    return await binary.carry_final(ctx, tags[-1], g, p, x.size)


async def _sign(
    ctx: PartyContext,
    x: ReplicatedShare,
    values: ReplicatedShare | None = None,
    combine: int = 1,
    tags: list[MessageTag] | None = None,
    *,
    magnitude_bits: int | None = None,
) -> ReplicatedShare:
    """Arithmetic ``msb(x)`` (or ``msb(x) v``): :func:`msb` with its last AND into :func:`_inject_terms`.

    Rounds ``L + 2``: 2 (first layer), ``L - 2`` levels, 2 (injection); ``L + 3`` tags.
    ``magnitude_bits``: the caller's bound ``|x| < 2^m``, for the 64-bit window (module docstring).
    """
    adder = adder_for(ctx.ring, magnitude_bits)
    tags = tags or _tags(ctx, adder.levels + 3)
    if x.size == 0:
        return ReplicatedShare(ctx.ring.zeros(0), ctx.ring.zeros(0))
    g, p = await _carry_tree(ctx, tags, x, adder)
    terms = await ctx.compute(g.size, bits.carry_final_terms, g, p, x.size)
    return await inject_terms(ctx, tags[-3:], terms, x.size, values=values, combine=combine)


def _minus_public(ctx: PartyContext, x: ReplicatedShare, constant: int | RingArray) -> ReplicatedShare:
    """Share of ``x - c`` for a public int or vector ``c`` (component 0: parties 0 and 2)."""
    ring = ctx.ring
    c = ring.from_words(bits.constant_words(ring, constant, x.size))
    if ctx.party == 0:
        return ReplicatedShare(ring.sub(x.first, c), x.second)
    return ReplicatedShare(x.first, ring.sub(x.second, c)) if ctx.party == 2 else x


async def is_negative(ctx: PartyContext, x: ReplicatedShare) -> ReplicatedShare:
    """Shares of ``[x < 0]`` (the sign bit, 0 or 1). Rounds ``L + 2``; bits 3.5k-4 / 3k-3 / 3k-3."""
    return await _sign(ctx, x)


async def less_than(ctx: PartyContext, x: ReplicatedShare, y: ReplicatedShare) -> ReplicatedShare:
    """Shares of ``[x < y]``: the sign of ``x - y``, exact while ``|x - y| < 2^(k-1)``. As ``is_negative``."""
    return await _sign(ctx, arithmetic.sub(x, y))


async def less_than_public(
    ctx: PartyContext, x: ReplicatedShare, constant: int | RingArray
) -> ReplicatedShare:
    """Shares of ``[x < c]`` for a public int or vector ``c``: the sign of ``x - c``."""
    return await _sign(ctx, _minus_public(ctx, x, constant))


async def greater_than_public(
    ctx: PartyContext, x: ReplicatedShare, constant: int | RingArray, *, magnitude_bits: int | None = None
) -> ReplicatedShare:
    """Shares of ``[x > c]`` for a public int or vector ``c``: the sign of ``c - x``.

    With ``magnitude_bits`` (``|c - x| < 2^m``), read by the 64-bit window in Z_2^128.
    """
    difference = arithmetic.mul_public(_minus_public(ctx, x, constant), -1)
    return await _sign(ctx, difference, magnitude_bits=magnitude_bits)


# ---------------------------------------------------------------------- equality


async def _is_zero(ctx: PartyContext, z: ReplicatedShare) -> ReplicatedShare:
    """Arithmetic ``[z == 0]``: ``z = 0`` iff ``a = z_0 + z_1`` equals ``b = -z_2`` (exact in Z_2^k).

    1. ``binary.equality_terms``: party 0 XOR-shares ``a`` (one round, k
       bits), ``L - 1`` AND levels over ``~(a ^ b)`` (k/2, ..., 2 bits per
       element) leave the last AND as local terms.
    2. :func:`_inject_terms` (2 rounds; 1 + k bits).

    Rounds ``L + 2``; bits per element 3k-2 / 2k-1 / 2k-1.
    """
    ring, levels, n = ctx.ring, _levels(ctx), z.size
    tags = _tags(ctx, levels + 3)
    if n == 0:
        return ReplicatedShare(ring.zeros(0), ring.zeros(0))
    terms = await binary.equality_terms(ctx, tags[:levels], _addends(ctx, z, negate=True), ring.bits, n)
    return await inject_terms(ctx, tags[levels:], terms, n)


async def equal(ctx: PartyContext, x: ReplicatedShare, y: ReplicatedShare) -> ReplicatedShare:
    """Shares of ``[x == y]`` (exact; no range condition). Rounds ``L + 2``; bits 3k-2 / 2k-1 / 2k-1."""
    return await _is_zero(ctx, arithmetic.sub(x, y))


async def equal_public(ctx: PartyContext, x: ReplicatedShare, constant: int | RingArray) -> ReplicatedShare:
    """Shares of ``[x == c]`` for a public int or vector ``c``."""
    return await _is_zero(ctx, _minus_public(ctx, x, constant))


# ---------------------------------------------------------------------- ReLU, clip, tournaments


async def relu(ctx: PartyContext, x: ReplicatedShare) -> ReplicatedShare:
    """Shares of ``max(x, 0) = x - [x < 0] x``, the product computed in the injection's two rounds.

    Rounds ``L + 2``; bits per element 4.5k-4 / 3k-3 / 3k-3. Exact for every ``x``.
    """
    return arithmetic.sub(x, await _sign(ctx, x, x))


async def clip(ctx: PartyContext, x: ReplicatedShare, lo: int, hi: int) -> ReplicatedShare:
    """Shares of ``min(max(x, lo), hi)`` for public ``lo <= hi``: ``x + [x < lo](lo - x) + [x > hi](hi - x)``.

    Both signs in one batch of ``2n`` (one protocol's rounds); both products
    summed before the one reshare. Rounds ``L + 2``; bits per element
    9k-8 / 5k-6 / 5k-6. Needs ``|x - lo|, |x - hi| < 2^(k-1)``.
    """
    if lo > hi:
        raise InvalidArgumentError(f"clip needs lo <= hi, got {lo} > {hi}")
    below = _minus_public(ctx, x, lo)  # x - lo: negative iff x < lo
    above = arithmetic.mul_public(_minus_public(ctx, x, hi), -1)  # hi - x: negative iff x > hi
    adjust = await _sign(ctx, concat(below, above), concat(arithmetic.mul_public(below, -1), above), 2)
    return arithmetic.add(x, adjust)


async def _tournament_level(
    ctx: PartyContext, tags: list[MessageTag], rows: int, best: ReplicatedShare, index: ReplicatedShare | None
) -> tuple[ReplicatedShare, ReplicatedShare | None]:
    """Columns ``2j`` and ``2j + 1`` of every row become ``a + [a < b](b - a)`` (ties keep ``a``)."""
    pairs = best.size // rows // 2
    left, right, rest = slice(0, 2 * pairs, 2), slice(1, 2 * pairs, 2), slice(2 * pairs, None)
    a, b = bits.columns(best, rows, left), bits.columns(best, rows, right)
    values = arithmetic.sub(b, a)
    if index is not None:
        values = concat(
            values, arithmetic.sub(bits.columns(index, rows, right), bits.columns(index, rows, left))
        )
    moves = await _sign(ctx, arithmetic.sub(a, b), values, tags=tags)
    m = rows * pairs
    best = bits.join_rows(
        rows, arithmetic.add(a, bits.columns(moves, 1, slice(0, m))), bits.columns(best, rows, rest)
    )
    if index is not None:
        won = arithmetic.add(bits.columns(index, rows, left), bits.columns(moves, 1, slice(m, None)))
        index = bits.join_rows(rows, won, bits.columns(index, rows, rest))
    return best, index


async def _tournament(
    ctx: PartyContext, x: ReplicatedShare, rows: int, with_index: bool
) -> tuple[ReplicatedShare, ReplicatedShare | None]:
    """Maxima (and their indices) of ``rows`` equal rows of ``x``, pairing neighbours level by level.

    All levels' tags are allocated on the call, so concurrent tournaments
    number their messages alike at every party.
    """
    if rows < 1 or x.size == 0 or x.size % rows:
        raise InvalidArgumentError(f"cannot split {x.size} elements into {rows} non-empty rows")
    ring, length = ctx.ring, x.size // rows
    tags = [_tags(ctx, _levels(ctx) + 3) for _ in range((length - 1).bit_length())]
    index = None
    if with_index:
        columns = ring.from_signed64(np.tile(np.arange(length, dtype=np.int64), rows))
        zeros = ring.zeros(x.size)
        index = ReplicatedShare(*((columns, zeros), (zeros, zeros), (zeros, columns))[ctx.party])
    for level_tags in tags:
        x, index = await _tournament_level(ctx, level_tags, rows, x, index)
    return x, index


async def maximum(ctx: PartyContext, x: ReplicatedShare, rows: int = 1) -> ReplicatedShare:
    """Shares of the maximum of each of ``rows`` equal rows of ``x`` (row-major), by a tournament.

    Rows of ``m`` take ``T = ceil(log2 m)`` levels; a level compares
    neighbours and keeps the larger in the comparison's ``L + 2`` rounds,
    overlapping the previous level by one: ``T (L + 1) + 1`` rounds. Bits per
    pair 4.5k-4 / 3k-3 / 3k-3. Differences of candidates must stay below ``2^(k-1)``.
    """
    best, _ = await _tournament(ctx, x, rows, False)
    return best


async def argmax(ctx: PartyContext, x: ReplicatedShare, rows: int = 1) -> ReplicatedShare:
    """Shares of the index of the maximum of each row (the first one on ties, as ``numpy.argmax``).

    As :func:`maximum`, carrying the candidates' indices: bits per pair
    5.5k-4 / 4k-3 / 4k-3.
    """
    _, index = await _tournament(ctx, x, rows, True)
    if index is None:  # with_index always carries them
        raise ProtocolError("the argmax tournament lost its indices")
    return index
