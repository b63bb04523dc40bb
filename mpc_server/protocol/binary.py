"""Binary (XOR) replicated sharing: local XOR, NOT and shifts, one-round AND, carry and AND trees.

Layout: the arithmetic one (``mpc_core.sharing``) with XOR for ``+``. A
vector of bits is ``x = x_0 ^ x_1 ^ x_2`` and **party i holds
``(x_i, x_{i+1})``** as a :class:`~mpc_core.sharing.ReplicatedShare` of
ring elements whose bits are the shared bits: k bits per element of Z_2^k.
:class:`PackedBits` shares a vector of single bits as a bit stream
(``mpc_core.bits``), 64 to a word, the words being elements of Z_2^64.

* Local (no messages): XOR of two sharings; XOR with a public constant
  (component 0 only, held by parties 0 and 2); NOT (XOR with all ones); AND
  with a public mask; logical shifts by public amounts (a shift moves bits,
  so it acts on each component).
* :func:`and_` (Araki, Furukawa, Lindell, Nof, Ohara, "High-Throughput
  Semi-Honest Secure Three-Party Computation with an Honest Majority", ACM
  CCS 2016, §2, the AND gate): party i forms
  ``z_i = (x_i & y_i) ^ (x_i & y_{i+1}) ^ (x_{i+1} & y_i) ^ a_i`` with a
  fresh XOR zero sharing ``a_i = F(k_i) ^ F(k_{i+1})`` and sends ``z_i`` to
  party i-1 (which lacks ``k_{i+1}``, so ``z_i`` is uniform to it). One
  round; one element (k bits) per party per element.
* Inputs and circuits on two addends, ``a`` known to party 0 and ``b`` to
  parties 1 and 2 (as ``x_0 + x_1`` and ``x_2`` of an arithmetic sharing):
  :func:`input_from_party0` (one message), :func:`adder_first_layer` (the
  first levels of an adder, 2 rounds), :func:`equality_terms` and
  :func:`split_terms` (3-out-of-3 terms to ``d`` at party 0, ``beta`` at 1, 2).
* Trees (the reduction half of a parallel-prefix adder, as in ABY3's bit
  extraction, Mohassel-Rindal, "ABY3: A Mixed Protocol Framework for Machine
  Learning", ACM CCS 2018, §5.3): :func:`carry_level` halves a stream of
  ``(G, P)`` groups (``G = G_hi ^ P_hi G_lo``, ``P = P_hi P_lo``: composing
  the affine maps ``c -> G ^ P c`` over GF(2), so XOR is exact where the
  adder has OR); :func:`and_level` halves a stream by ANDing neighbours. Each
  level is one AND round over densely packed bits.

Every message goes through the context (deadline, byte and round counts);
tags are allocated by callers when they are called; randomness comes from the
pairwise keys through ``mpc_core.prg``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from mpc_core import bits
from mpc_core.bits import and_terms, concat, share_words, slice_share, split_share, words_share
from mpc_core.errors import InvalidArgumentError, ProtocolError
from mpc_core.prg import prf_words
from mpc_core.ring import Ring, RingArray, Words, ring_of
from mpc_core.sharing import ReplicatedShare
from mpc_core.types import MessageTag, PartyId
from mpc_server.protocol.context import PartyContext

Pair = tuple[ReplicatedShare, ReplicatedShare]


@dataclass(frozen=True, eq=False, repr=False)
class PackedBits:
    """``count`` XOR-shared bits packed into ``ceil(count / 64)`` words (uint64 components)."""

    share: ReplicatedShare
    count: int

    def __post_init__(self) -> None:
        """The components are words, exactly as many as ``count`` bits need."""
        if self.share.first.dtype != np.uint64 or self.share.size != bits.words_for(self.count):
            raise InvalidArgumentError(f"{self.count} packed bits need {bits.words_for(self.count)} words")

    def __repr__(self) -> str:
        """Redact the values."""
        return f"PackedBits(count={self.count}, <redacted>)"


# ---------------------------------------------------------------------- local operations


def xor(x: ReplicatedShare, y: ReplicatedShare) -> ReplicatedShare:
    """Share of ``x ^ y`` (local)."""
    return ReplicatedShare(bits.xor(x.first, y.first), bits.xor(x.second, y.second))


def xor_public(party: PartyId, x: ReplicatedShare, constant: int | RingArray) -> ReplicatedShare:
    """Share of ``x ^ c`` for a public int or vector ``c``: into component 0 (parties 0 and 2)."""
    ring = x.ring
    c = ring.from_words(bits.constant_words(ring, constant, x.size))
    if party == 0:
        return ReplicatedShare(bits.xor(x.first, c), x.second.copy())
    if party == 2:
        return ReplicatedShare(x.first.copy(), bits.xor(x.second, c))
    return ReplicatedShare(x.first.copy(), x.second.copy())


def not_(party: PartyId, x: ReplicatedShare) -> ReplicatedShare:
    """Share of ``~x`` (every bit flipped; local)."""
    return xor_public(party, x, -1)


def and_public(x: ReplicatedShare, mask: int | RingArray) -> ReplicatedShare:
    """Share of ``x & c`` for a public int or vector ``c`` (local: AND distributes over XOR)."""
    ring = x.ring
    c = ring.from_words(bits.constant_words(ring, mask, x.size))
    return ReplicatedShare(bits.and_(x.first, c), bits.and_(x.second, c))


def _check_shift(x: ReplicatedShare, amount: int) -> None:
    if not 0 <= amount < x.ring.bits:
        raise InvalidArgumentError(f"cannot shift {x.ring.bits}-bit elements by {amount}")


def shift_left(x: ReplicatedShare, amount: int) -> ReplicatedShare:
    """Share of ``x << amount`` (within the k bits; local)."""
    _check_shift(x, amount)
    ring = x.ring
    return ReplicatedShare(ring.shl(x.first, amount), ring.shl(x.second, amount))


def shift_right(x: ReplicatedShare, amount: int) -> ReplicatedShare:
    """Share of ``x >> amount`` (logical; local)."""
    _check_shift(x, amount)
    ring = x.ring
    return ReplicatedShare(ring.lshr(x.first, amount), ring.lshr(x.second, amount))


def pack(x: ReplicatedShare, position: int) -> PackedBits:
    """Bit ``position`` of every element of a binary sharing, packed (local)."""
    first, second = bits.element_bits(x.first, position), bits.element_bits(x.second, position)
    return PackedBits(words_share(first, second), x.size)


def unpack(packed: PackedBits, ring: Ring) -> ReplicatedShare:
    """Packed bits as a binary sharing in ``ring``, one bit (bit 0) per element (local)."""
    n = packed.count
    first, second = share_words(packed.share)
    return ReplicatedShare(bits.bits_to_ring(ring, first, n), bits.bits_to_ring(ring, second, n))


# ---------------------------------------------------------------------- messages and AND


def _mismatch(ctx: PartyContext, tag: MessageTag, frm: PartyId, expected: int, got: int) -> ProtocolError:
    name = ctx.channel.peer_name(frm)
    return ProtocolError(f"malformed message {tag.op} from {name}: expected {expected} words, got {got}")


async def recv_words(ctx: PartyContext, frm: PartyId, tag: MessageTag, expected: int) -> Words:
    """Receive exactly ``expected`` words from ``frm`` (through the context: deadline, byte count)."""
    words = await ctx.recv(frm, tag)
    if words.size != expected:
        raise _mismatch(ctx, tag, frm, expected, int(words.size))
    return words


async def exchange_words(ctx: PartyContext, tag: MessageTag, words: Words) -> Words:
    """One round: send ``words`` to party i-1, receive as many from party i+1."""
    ctx.stats.rounds += 1
    await ctx.send(ctx.prev, tag, words)
    return await recv_words(ctx, ctx.next, tag, int(words.size))


def xor_zero(ctx: PartyContext, tag: MessageTag, nwords: int, purpose: bytes = b"xor.zero") -> Words:
    """Party i's ``a_i = F(k_i) ^ F(k_{i+1})`` of an XOR sharing of zero (``nwords`` words)."""
    keys, label = ctx.require_keys(), tag.to_bytes(purpose)
    zero: Words = prf_words(keys.own, label, nwords) ^ prf_words(keys.next, label, nwords)
    return zero


def _masked_terms(ctx: PartyContext, tag: MessageTag, x: ReplicatedShare, y: ReplicatedShare) -> Words:
    terms = and_terms(x, y)
    terms ^= xor_zero(ctx, tag, int(terms.size))
    return terms


async def and_with_tag(
    ctx: PartyContext, tag: MessageTag, x: ReplicatedShare, y: ReplicatedShare
) -> ReplicatedShare:
    """:func:`and_` under a tag the caller allocated."""
    nwords = bits.words_of(x.first).size
    z = await ctx.compute(nwords, _masked_terms, ctx, tag, x, y)
    z_next = await exchange_words(ctx, tag, z)
    ring = ring_of(x.first)
    return ReplicatedShare(ring.from_words(z), ring.from_words(z_next.copy()))


async def and_(ctx: PartyContext, x: ReplicatedShare, y: ReplicatedShare) -> ReplicatedShare:
    """Share of ``x & y`` (Araki et al. CCS 2016 AND gate), elementwise.

    Steps at party i: 1. allocate the tag (program order); 2. form
    ``z_i = (x_i & y_i) ^ (x_i & y_{i+1}) ^ (x_{i+1} & y_i) ^ a_i`` with
    ``a_i = F(k_i, tag) ^ F(k_{i+1}, tag)``; 3. send ``z_i`` to party i-1;
    4. receive ``z_{i+1}`` from party i+1; 5. hold ``(z_i, z_{i+1})``.

    Cost: one round; one element (k bits: 8 or 16 bytes) per party per element.
    """
    return await and_with_tag(ctx, ctx.allocate_tag(), x, y)


async def input_from_party0(
    ctx: PartyContext, tag: MessageTag, value: Words | None, nwords: int
) -> ReplicatedShare:
    """XOR-share words only party 0 knows (``value``; ``None`` elsewhere): one message, 0 -> 2.

    Components ``(v ^ r, r, 0)`` with ``r = F(k_1, tag)``, known to parties
    0 and 1: party 0 sends ``v ^ r`` to party 2, to which ``k_1`` is unknown.
    One round (parties 0 and 2); party 0 sends ``nwords`` words.
    """
    keys, label = ctx.require_keys(), tag.to_bytes(b"input0")
    if ctx.party == 1:
        return words_share(prf_words(keys.own, label, nwords), np.zeros(nwords, np.uint64))
    ctx.stats.rounds += 1
    if ctx.party == 0:
        if value is None or value.size != nwords:
            raise InvalidArgumentError(f"party 0 must input {nwords} words")
        r = prf_words(keys.next, label, nwords)
        masked = value ^ r
        await ctx.send(PartyId(2), tag, masked)
        return words_share(masked, r)
    masked = await recv_words(ctx, PartyId(0), tag, nwords)
    return words_share(np.zeros(nwords, np.uint64), masked)


# ---------------------------------------------------------------------- trees over bit streams


def _halves(first: Words, second: Words, size: int) -> tuple[ReplicatedShare, ReplicatedShare]:
    """Two shares from components holding ``[G, P]``, ``size`` words each."""
    both = words_share(first, second)
    return slice_share(both, 0, size), slice_share(both, size, 2 * size)


def _split_both(g: ReplicatedShare, p: ReplicatedShare, nbits: int) -> tuple[Pair, Pair]:
    return split_share(g, nbits), split_share(p, nbits)


async def adder_first_layer(
    ctx: PartyContext, tags: list[MessageTag], addend: Words, width: int, count: int
) -> tuple[ReplicatedShare, ReplicatedShare]:
    """The first prefix level of ``a + b``, ``a`` known to party 0 and ``b`` to parties 1 and 2.

    ``addend`` is ``a`` at party 0 and ``b`` at parties 1 and 2, streams of
    ``count`` fields of ``width`` bits. Returns shared ``(G, P)`` streams of
    ``count * width / 2`` bits (``bits.first_layer_part``: the tree over them
    ends in ``p_top ^ carry``, the top bit of each sum).

    ABY3 §5.3 would input ``a`` (a round), AND ``g = a & b`` (a round) and
    start the tree (a round). Each gate of these layers is a monomial of
    ``a`` times a function of ``b``, so instead:

    1. Party 0 sends party 2 ``M = a ^ r`` and ``Q = a_o a_e ^ q``; ``r``,
       ``q`` are PRF outputs under ``k_1`` (parties 0 and 1 hold it, 2 does
       not): 1.5 ``width`` bits per field.
    2. Party 2 evaluates the part of ``M_o, M_e, Q`` (with the ``b``-only
       terms), party 1 that of ``r_o, r_e, q``: they XOR to ``(G, P)``.
    3. Components ``c_0 = F(k_0)`` (parties 0, 2), ``c_1 = F(k_1)`` (0, 1):
       party 1 sends ``part_1 ^ c_1`` to party 2 (in step 1's round: it waits
       for nothing), party 2 sends ``part_2 ^ c_0`` to party 1; both XOR the
       two into ``c_2``. ``width`` bits per field each, masked by a PRF
       output the receiver lacks.

    Rounds 2 (party 0 takes part in 1).
    """
    keys, nbits = ctx.require_keys(), count * width
    nwords, half = bits.words_for(nbits), bits.words_for(nbits // 2)
    label = tags[1].to_bytes(b"adder.c")
    if ctx.party == 0:
        r = prf_words(keys.next, tags[0].to_bytes(b"adder.r"), nwords)
        q = prf_words(keys.next, tags[0].to_bytes(b"adder.q"), half)
        message = await ctx.compute(nwords, bits.first_layer_message, addend, nbits, r, q)
        ctx.stats.rounds += 1
        await ctx.send(PartyId(2), tags[0], message)
        return _halves(prf_words(keys.own, label, 2 * half), prf_words(keys.next, label, 2 * half), half)
    ctx.stats.rounds += 2
    if ctx.party == 1:
        a = prf_words(keys.own, tags[0].to_bytes(b"adder.r"), nwords)
        pair = prf_words(keys.own, tags[0].to_bytes(b"adder.q"), half)
        peer, own = ctx.next, prf_words(keys.own, label, 2 * half)
    else:
        message = await recv_words(ctx, PartyId(0), tags[0], nwords + half)
        a, pair = message[:nwords], message[nwords:]
        peer, own = ctx.prev, prf_words(keys.next, label, 2 * half)
    part_of = functools.partial(bits.first_layer_part, with_b=ctx.party == 2, mask=own)
    part = await ctx.compute(nwords, part_of, a, pair, addend, width, count)
    await ctx.send(peer, tags[1], part)
    c2 = part ^ await recv_words(ctx, peer, tags[1], part.size)
    return _halves(own, c2, half) if ctx.party == 1 else _halves(c2, own, half)


async def carry_level(
    ctx: PartyContext, tag: MessageTag, g: ReplicatedShare, p: ReplicatedShare, nbits: int
) -> tuple[ReplicatedShare, ReplicatedShare]:
    """Combine neighbouring ``(G, P)`` groups of two shared streams of ``nbits`` bits.

    One AND round on ``[P_odd, P_odd] & [G_even, P_even]``: ``nbits`` bits
    (two streams of ``nbits / 2``, each rounded up to whole words) per party.
    Returns the halved streams ``(G_odd ^ P_odd G_even, P_odd P_even)``.
    """
    (g_even, g_odd), (p_even, p_odd) = await ctx.compute(g.size, _split_both, g, p, nbits)
    half = g_even.size
    z = await and_with_tag(ctx, tag, concat(p_odd, p_odd), concat(g_even, p_even))
    return xor(g_odd, slice_share(z, 0, half)), slice_share(z, half, 2 * half)


async def carry_reduce(
    ctx: PartyContext,
    tags: list[MessageTag],
    gp: tuple[ReplicatedShare, ReplicatedShare],
    count: int,
    width: int,
) -> tuple[ReplicatedShare, ReplicatedShare]:
    """Apply :func:`carry_level` ``len(tags)`` times to ``count`` fields of ``width`` groups."""
    g, p = gp
    for tag in tags:
        g, p = await carry_level(ctx, tag, g, p, count * width)
        width //= 2
    return g, p


async def carry_final(
    ctx: PartyContext, tag: MessageTag, g: ReplicatedShare, p: ReplicatedShare, count: int
) -> PackedBits:
    """The last level, as a sharing: one AND round, ``count`` bits per party."""
    (g_even, g_odd), (_, p_odd) = _split_both(g, p, 2 * count)
    z = await and_with_tag(ctx, tag, p_odd, g_even)
    return PackedBits(xor(g_odd, z), count)


async def and_level(ctx: PartyContext, tag: MessageTag, e: ReplicatedShare, nbits: int) -> ReplicatedShare:
    """AND neighbouring bits of a shared stream of ``nbits`` bits: one round, ``nbits / 2`` bits per party."""
    even, odd = await ctx.compute(e.size, split_share, e, nbits)
    return await and_with_tag(ctx, tag, odd, even)


async def and_reduce(
    ctx: PartyContext, tags: list[MessageTag], e: ReplicatedShare, count: int, width: int
) -> ReplicatedShare:
    """Apply :func:`and_level` ``len(tags)`` times to ``count`` fields of ``width`` bits."""
    for tag in tags:
        e = await and_level(ctx, tag, e, count * width)
        width //= 2
    return e


async def equality_terms(
    ctx: PartyContext, tags: list[MessageTag], addend: Words, width: int, count: int
) -> Words:
    """Party i's 3-out-of-3 XOR term of ``[a == b]`` per field; ``addend`` is ``a`` at party 0, ``b`` at 1, 2.

    1. Party 0 XOR-shares ``a`` (:func:`input_from_party0`: one round,
       ``width`` bits per field); ``b`` is component 2 of a sharing, held by
       parties 1 and 2; ``e = ~(a ^ b)`` is all ones iff ``a = b``.
    2. ``log2(width) - 1`` levels of :func:`and_level` (``width / 2``, ...,
       2 bits per field), one tag each after the input's.
    3. The last AND's local terms (``bits.and_final_terms``).

    Rounds ``log2(width)``; a final :func:`split_terms` or reshare follows.
    """
    nwords = bits.words_for(count * width)
    e = await input_from_party0(ctx, tags[0], addend if ctx.party == 0 else None, nwords)
    if ctx.party == 1:
        e = words_share(e.first, e.second ^ addend)
    elif ctx.party == 2:
        e = words_share(e.first ^ addend, e.second)
    e = await and_reduce(ctx, tags[1:], not_(ctx.party, e), count, width)
    terms: Words = await ctx.compute(e.size, bits.and_final_terms, e, count)
    return terms


async def split_terms(ctx: PartyContext, tag: MessageTag, terms: Words, count: int) -> Words:
    """Turn 3-out-of-3 XOR terms ``t_i`` of ``count`` bits into ``d`` at party 0 and ``beta`` at 1 and 2.

    Party 1 sends party 2 ``t_1 ^ F(k_1)``, party 2 sends party 1
    ``t_2 ^ F(k_0)`` (each mask unknown to its receiver); both take their
    XOR as ``beta``; party 0 takes ``d = t_0 ^ F(k_1) ^ F(k_0)`` with no
    message, so ``d ^ beta`` is the shared bit. One bit per element from
    parties 1 and 2, in one round (parties 1 and 2; the caller counts it).
    """
    keys, label, nwords = ctx.require_keys(), tag.to_bytes(b"split.terms"), bits.words_for(count)
    if ctx.party == 0:
        source: Words = terms ^ prf_words(keys.own, label, nwords) ^ prf_words(keys.next, label, nwords)
        return source
    sent = terms ^ prf_words(keys.own if ctx.party == 1 else keys.next, label, nwords)
    peer = ctx.next if ctx.party == 1 else ctx.prev
    await ctx.send(peer, tag, sent)
    received: Words = sent ^ await recv_words(ctx, peer, tag, nwords)
    return received
