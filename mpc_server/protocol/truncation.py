"""Probabilistic truncation of a shared fixed-point value: ABY3 "Share Truncation I".

Mohassel-Rindal, ABY3 (CCS 2018; eprint 2018/403 §5.1, Share Truncation
I), with the unbiased rounding of ``secretflow/spu`` ``TruncA``. Input: a
replicated sharing of ``x'`` with ``|x'| < 2^l``; output: a replicated
sharing of ``x ~ x' / 2^d``. Cost: one round, one ring element (party 1 to
party 0).

Error. With probability at least ``1 - 2^(l + 1 - k)`` in a ring of ``k``
bits the result is within 1 unit in the last place of ``x' / 2^d``;
otherwise it is garbage (the local shift of a share wrapped around). The
rounding is unbiased: party 0's share is floored and party 1's ceiled, so
the two half-ulp biases cancel. Callers bound ``l`` from the inputs' public
magnitude bounds and refuse a job whose truncations could fail with
probability above 2^-40 in all (``mpc_core.bounds``): in Z_2^128 that allows,
for example, a million values below 2^66 (a product at scale 2^64 of values
below 4).
"""

from __future__ import annotations

from mpc_core.prg import prf_elements
from mpc_core.ring import Ring, RingArray
from mpc_core.sharing import ReplicatedShare
from mpc_server.protocol.context import PartyContext


def _ceil_shift(ring: Ring, values: RingArray, bits: int) -> RingArray:
    """``-ARS(-t, d)``: arithmetic right shift rounding towards +infinity."""
    return ring.neg(ring.ashr(ring.neg(values), bits))


async def truncate(ctx: PartyContext, x: ReplicatedShare, bits: int) -> ReplicatedShare:
    """Share of ``x / 2^bits`` (ABY3 Share Truncation I), one round.

    Steps (component indices as in ``mpc_core.sharing``):

    1. Parties 1 and 2 derive ``r = F(k_2, tag)`` (component 2 of a random
       sharing; both hold ``k_2``).
    2. Party 0 (holding ``x'_0, x'_1``) and party 2 (holding ``x'_2, x'_0``)
       compute ``s_0 = ARS(x'_0, d)``.
    3. Party 1 (holding ``x'_1, x'_2``) computes
       ``s_1 = -ARS(-(x'_1 + x'_2), d)`` and sends ``s_1 - r`` to party 0.
    4. Shares: party 0 ``(s_0, s_1 - r)``, party 1 ``(s_1 - r, r)``,
       party 2 ``(r, s_0)``.
    """
    tag = ctx.allocate_tag()
    ring, n = ctx.ring, x.size
    if ctx.party == 0:
        s0 = ring.ashr(x.first, bits)
        ctx.stats.rounds += 1
        s1_masked = await ctx.recv_elements(ctx.next, tag, n)
        return ReplicatedShare(s0, s1_masked)
    keys = ctx.require_keys()
    label = tag.to_bytes(b"trunc")
    if ctx.party == 1:
        r = prf_elements(ring, keys.next, label, n)  # k_2 is party 1's "next" key
        s1_masked = ring.sub(_ceil_shift(ring, ring.add(x.first, x.second), bits), r)
        ctx.stats.rounds += 1
        await ctx.send_elements(ctx.prev, tag, s1_masked)
        return ReplicatedShare(s1_masked, r)
    r = prf_elements(ring, keys.own, label, n)  # party 2's own key k_2
    return ReplicatedShare(r, ring.ashr(x.second, bits))
