"""Arithmetic on replicated shares: local linear ops and one-round products.

Party i holds ``(x_i, x_{i+1})`` of every secret (``mpc_core.sharing``), in
the ring of the shares' components (Z_2^64 or Z_2^128; ``mpc_core.ring``).

* Addition, subtraction, multiplication by a public constant and addition of
  a public constant are local (no messages).
* A product first forms party i's *3-out-of-3* term
  ``z_i = x_i*y_i + x_i*y_{i+1} + x_{i+1}*y_i``; the three terms cover all
  nine cross products and so sum to ``x*y``. :func:`reshare` then turns the
  terms back into a replicated sharing with one round and one ring element
  per output per party (Araki et al., CCS 2016; ABY3, Mohassel-Rindal
  CCS 2018, §3 "Arithmetic sharing").
* Dot products and matrix-vector products sum their terms locally before
  resharing, so they cost one element per *output*, whatever the inner
  length (ABY3 eprint 2018/403 §5, "vectorized multiplication").
"""

from __future__ import annotations

from mpc_core.ring import RingArray
from mpc_core.sharing import ReplicatedShare
from mpc_core.types import MessageTag, PartyId
from mpc_server.protocol.context import PartyContext
from mpc_server.protocol.randomness import add_zero_share


def add(x: ReplicatedShare, y: ReplicatedShare) -> ReplicatedShare:
    """Share of ``x + y`` (local)."""
    ring = x.ring
    return ReplicatedShare(ring.add(x.first, y.first), ring.add(x.second, y.second))


def sub(x: ReplicatedShare, y: ReplicatedShare) -> ReplicatedShare:
    """Share of ``x - y`` (local)."""
    ring = x.ring
    return ReplicatedShare(ring.sub(x.first, y.first), ring.sub(x.second, y.second))


def mul_public(x: ReplicatedShare, constant: int) -> ReplicatedShare:
    """Share of ``c * x`` for a public integer ``c`` (local)."""
    ring = x.ring
    return ReplicatedShare(ring.mul_public(x.first, constant), ring.mul_public(x.second, constant))


def add_public(party: PartyId, x: ReplicatedShare, constant: int) -> ReplicatedShare:
    """Share of ``x + c`` for a public integer ``c``: added to component 0 only.

    Component 0 is held by party 0 (as ``first``) and party 2 (as
    ``second``); party 1 changes nothing.
    """
    ring = x.ring
    if party == 0:
        return ReplicatedShare(ring.add_public(x.first, constant), x.second.copy())
    if party == 2:
        return ReplicatedShare(x.first.copy(), ring.add_public(x.second, constant))
    return ReplicatedShare(x.first.copy(), x.second.copy())


def mul_terms(x: ReplicatedShare, y: ReplicatedShare) -> RingArray:
    """Party i's term ``x_i*(y_i + y_{i+1}) + x_{i+1}*y_i`` of ``x*y`` (elementwise)."""
    return x.ring.mul_terms(x.first, x.second, y.first, y.second)


def dot_terms(x: ReplicatedShare, y: ReplicatedShare) -> RingArray:
    """Party i's one-element term of the dot product ``<x, y>``."""
    return matvec_terms(x.first.reshape(1, -1), x.second.reshape(1, -1), y)


def matvec_terms(matrix_first: RingArray, matrix_second: RingArray, vector: ReplicatedShare) -> RingArray:
    """Party i's term of ``X @ w``: ``X_i (w_i + w_{i+1}) + X_{i+1} w_i``.

    ``matrix_*`` are the (rows x cols) components ``X_i`` and ``X_{i+1}``;
    ``vector`` holds ``w`` with ``cols`` elements. Returns ``rows`` elements,
    computed in one pass by the ring's fused kernel.
    """
    return vector.ring.matmul_terms(matrix_first, matrix_second, vector.first, vector.second)


async def reshare(ctx: PartyContext, terms: RingArray, tag: MessageTag | None = None) -> ReplicatedShare:
    """Turn 3-out-of-3 terms into a replicated sharing (one round).

    Araki et al. (CCS 2016) / ABY3 §3, party i:

    1. Use the op's tag (allocated by the caller when it was called, so that
       concurrent ops are numbered in program order) and draw ``alpha_i`` of
       a zero sharing.
    2. ``z_i = terms_i + alpha_i``.
    3. Send ``z_i`` to party i-1; it knows ``k_i`` but not ``k_{i+1}``, so
       ``F(k_{i+1}, tag)`` inside ``alpha_i`` is a one-time pad to it.
    4. Receive ``z_{i+1}`` from party i+1.
    5. Hold ``(z_i, z_{i+1})``.

    Cost: one round, one ring element (8 or 16 bytes) per output per party.
    """
    tag = tag or ctx.allocate_tag()
    z = await ctx.compute(int(terms.size), add_zero_share, ctx, tag, terms.reshape(-1))
    z_next = await ctx.exchange(ctx.prev, z, ctx.next, tag)
    return ReplicatedShare(z, z_next)


async def mul(ctx: PartyContext, x: ReplicatedShare, y: ReplicatedShare) -> ReplicatedShare:
    """Share of the elementwise product ``x * y`` (one round).

    For fixed-point inputs the product carries scale ``2^(f_x + f_y)``;
    truncate it (``protocol.truncation``) or decode it at that scale.
    """
    tag = ctx.allocate_tag()
    terms = await ctx.compute(x.size, mul_terms, x, y)
    return await reshare(ctx, terms, tag)


async def dot(ctx: PartyContext, x: ReplicatedShare, y: ReplicatedShare) -> ReplicatedShare:
    """Share of the dot product ``<x, y>`` (one round, one element)."""
    tag = ctx.allocate_tag()
    terms = await ctx.compute(x.size, dot_terms, x, y)
    return await reshare(ctx, terms, tag)


async def matvec(
    ctx: PartyContext, matrix: ReplicatedShare, rows: int, vector: ReplicatedShare
) -> ReplicatedShare:
    """Share of ``X @ w`` for a shared (rows x len(w)) ``X`` (one round)."""
    tag = ctx.allocate_tag()
    cols = vector.size
    first = matrix.first.reshape(rows, cols)
    second = matrix.second.reshape(rows, cols)
    terms = await ctx.compute(matrix.size, matvec_terms, first, second, vector)
    return await reshare(ctx, terms, tag)
