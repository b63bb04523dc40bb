"""Bit injection: arithmetic shares of XOR-shared bits, optionally times arithmetic values.

Source: Mohassel-Rindal, ABY3 (CCS 2018) §5.4 (``[a]^A [b]^B`` and bit
injection), done here with a masked input from party 0 and a two-party
reshare instead of ABY3's three-party OT (:func:`inject`, same two rounds);
used by ``protocol.compare``.
"""

from __future__ import annotations

import functools

from mpc_core import bits
from mpc_core.errors import InvalidArgumentError
from mpc_core.prg import prf_elements
from mpc_core.ring import RingArray, Words
from mpc_core.sharing import ReplicatedShare
from mpc_core.types import MessageTag, PartyId
from mpc_server.protocol import binary
from mpc_server.protocol.binary import PackedBits
from mpc_server.protocol.context import PartyContext


def _tags(ctx: PartyContext, count: int) -> list[MessageTag]:
    return [ctx.allocate_tag() for _ in range(count)]


def _masks(
    ctx: PartyContext, tag: MessageTag, count: int, values: ReplicatedShare | None
) -> tuple[RingArray, RingArray | None]:
    """``r_w`` and ``r_d`` under ``k_1`` (party 0's ``next`` key, party 1's own)."""
    ring, keys = ctx.ring, ctx.require_keys()
    key = keys.next if ctx.party == 0 else keys.own
    r_w = prf_elements(ring, key, tag.to_bytes(b"inject.w"), count if values is None else values.size)
    return r_w, None if values is None else prf_elements(ring, key, tag.to_bytes(b"inject.d"), count)


async def inject(
    ctx: PartyContext,
    tags: list[MessageTag],
    source: Words,
    count: int,
    *,
    values: ReplicatedShare | None = None,
    combine: int = 1,
) -> ReplicatedShare:
    """Arithmetic share of ``b`` (or ``v b``) for ``b = d ^ beta``: party 0 knows ``d``, 1 and 2 ``beta``.

    ``source`` is ``d`` at party 0, ``beta`` at parties 1 and 2 (``count``
    packed bits). Over the integers ``b = beta + (1 - 2 beta) d``: a product
    of party 0's bit with one parties 1 and 2 both know. Instead of ABY3
    §5.4's three-party OT (also 2 rounds):

    1. Party 0 sends party 2 ``d - r_w`` (with ``v``: ``d (v_0 + v_1) - r_w``
       and ``d - r_d``); ``r`` are PRF outputs under ``k_1``, held by parties
       0 and 1 and unknown to party 2 (``bits.injection_message``).
    2. Parties 1 (from ``r``) and 2 (from the message) each form an additive
       part of ``b`` or ``v b`` (``bits.injection_part``: ``v_2`` and ``beta``
       are known to both), sum ``combine`` blocks, subtract ``c_1 = F(k_1)``
       and ``c_0 = F(k_0)`` respectively, and exchange: ``c_2`` is the sum.
       Party 1 needs nothing to send, so only party 2's message is a second
       round; each is masked by a PRF output its receiver lacks.
    3. Shares ``(c_0, c_1)``, ``(c_1, c_2)``, ``(c_2, c_0)``.

    Rounds 2; bits per output k / k / k, or 2k / k / k with ``v`` (``values``
    holds ``repeat * count`` elements: the bits repeat).
    """
    ring, keys = ctx.ring, ctx.require_keys()
    out = (count if values is None else values.size) // combine
    label = tags[1].to_bytes(b"inject.c")
    if ctx.party == 0:
        v_sum = None if values is None else ring.add(values.first, values.second)
        masks = _masks(ctx, tags[0], count, values)
        message = await ctx.compute(count, bits.injection_message, ring, source, count, v_sum, masks)
        ctx.stats.rounds += 1
        await ctx.send_elements(PartyId(2), tags[0], message)
        return ReplicatedShare(
            prf_elements(ring, keys.own, label, out), prf_elements(ring, keys.next, label, out)
        )
    ctx.stats.rounds += 2
    if ctx.party == 1:
        shares, own, peer = _masks(ctx, tags[0], count, values), keys.own, ctx.next
    else:
        size = count if values is None else values.size + count
        message = await ctx.recv_elements(PartyId(0), tags[0], size)
        shares = (message, None) if values is None else (message[: values.size], message[values.size :])
        own, peer = keys.next, ctx.prev
    pair = None if values is None else (values.first, values.second)
    part_of = functools.partial(bits.injection_part, values=pair)
    part = await ctx.compute(count, part_of, ring, ctx.party, source, count, shares)
    c_own = prf_elements(ring, own, label, out)
    mine = ring.sub(bits.fold_blocks(ring, part, combine), c_own)
    await ctx.send_elements(peer, tags[1], mine)
    c2 = ring.add(mine, await ctx.recv_elements(peer, tags[1], out))
    return ReplicatedShare(c_own, c2) if ctx.party == 1 else ReplicatedShare(c2, c_own)


async def inject_terms(
    ctx: PartyContext,
    tags: list[MessageTag],
    terms: Words,
    count: int,
    *,
    values: ReplicatedShare | None = None,
    combine: int = 1,
) -> ReplicatedShare:
    """:func:`inject` of bits given as an AND's 3-out-of-3 XOR terms, not reshared.

    ``binary.split_terms`` runs in round 1 beside party 0's message: no round of its own.
    """
    source = await binary.split_terms(ctx, tags[0], terms, count)
    return await inject(ctx, tags[1:], source, count, values=values, combine=combine)


def _bits_source(ctx: PartyContext, packed: PackedBits) -> Words:
    """``d = b_0 ^ b_1`` at party 0, ``beta = b_2`` at parties 1 and 2."""
    first, second = bits.words_of(packed.share.first), bits.words_of(packed.share.second)
    source: Words = first ^ second if ctx.party == 0 else (second if ctx.party == 1 else first)
    return source


async def bit_injection(ctx: PartyContext, packed: PackedBits) -> ReplicatedShare:
    """Arithmetic 0/1 shares of XOR-shared bits (ABY3 §5.4 bit injection, by :func:`inject`).

    Rounds 2; bits per bit k / k / k (parties 0 / 1 / 2).
    """
    return await inject(ctx, _tags(ctx, 2), _bits_source(ctx, packed), packed.count)


async def bit_times(ctx: PartyContext, packed: PackedBits, values: ReplicatedShare) -> ReplicatedShare:
    """Shares of ``b * v`` for XOR-shared bits ``b`` and arithmetic ``v`` (ABY3 §5.4 ``[a]^A [b]^B``).

    ``values`` has as many elements as bits, or a multiple (the bits then
    repeat). Rounds 2; bits per element of ``v``: 2k / k / k.
    """
    tags = _tags(ctx, 2)
    if packed.count == 0 or values.size % packed.count:
        raise InvalidArgumentError(f"{values.size} values cannot be paired with {packed.count} bits")
    return await inject(ctx, tags, _bits_source(ctx, packed), packed.count, values=values)
