"""Input consistency: all three servers hold matching copies of every component.

Each share component is held by two servers (component j by parties j and
j-1). A faulty or malicious client could give the two holders different
copies; computing on them is not equivalent to any input and can leak (e.g.
``delta * (w - w_0)``, reference/protocols.md §3). After an upload, and
before it becomes visible, the servers compare digests of their copies:

1. Party i computes ``H(x_i)`` and ``H(x_{i+1})`` of its two components (the
   upload service uses one-time keyed tags whose key for component j only
   the two holders of x_j know; any digest works here).
2. It sends both digests to both peers (one round, two digests each way).
3. It compares every component's two copies it now knows: ``x_i`` (its own
   first vs party i-1's second), ``x_{i+1}`` (its own second vs party i+1's
   first) and ``x_{i+2}`` (party i+1's second vs party i-1's first).

So each server checks all three components and all three reach the same
verdict; on any mismatch the upload is rejected everywhere.
"""

from __future__ import annotations

import hmac

import numpy as np

from mpc_core.errors import InconsistentSharesError, ProtocolError
from mpc_core.ring import Words
from mpc_server.protocol.context import PartyContext


def _split(words: Words, size: int, sender: str) -> tuple[bytes, bytes]:
    data = words.astype("<u8").tobytes()
    if len(data) != 2 * size:
        raise ProtocolError(f"malformed consistency message from {sender}")
    return data[:size], data[size:]


async def check_replicas(ctx: PartyContext, what: str, first_digest: bytes, second_digest: bytes) -> None:
    """Confirm the copies of all three components agree (one round).

    Raises:
        InconsistentSharesError: naming the component and its two holders.
    """
    size = len(first_digest)
    if size % 8 or size != len(second_digest):
        raise ProtocolError("consistency digests must be two of equal length, a multiple of 8 bytes")
    tag = ctx.allocate_tag()
    words: Words = np.frombuffer(first_digest + second_digest, dtype="<u8").astype(np.uint64)
    ctx.stats.rounds += 1
    await ctx.send(ctx.prev, tag, words)
    await ctx.send(ctx.next, tag, words)
    next_first, next_second = _split(await ctx.recv(ctx.next, tag), size, ctx.channel.peer_name(ctx.next))
    prev_first, prev_second = _split(await ctx.recv(ctx.prev, tag), size, ctx.channel.peer_name(ctx.prev))
    me, nxt, prv = ctx.party, ctx.next, ctx.prev
    copies = (
        (me, first_digest, prev_second, (prv, me)),
        (nxt, second_digest, next_first, (me, nxt)),
        (prv, next_second, prev_first, (nxt, prv)),
    )
    for component, copy_a, copy_b, holders in copies:
        if not hmac.compare_digest(copy_a, copy_b):
            names = sorted(ctx.channel.peer_name(p) for p in holders)
            raise InconsistentSharesError(
                f"the uploader sent inconsistent shares of {what}: {names[0]} and {names[1]} "
                f"received different copies of share component {component}; the upload was rejected"
            )
