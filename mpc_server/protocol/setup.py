"""Job start: agreement on the job description and pairwise key setup.

Both happen in one round before any computation (DESIGN.md, "Processes and
flow" step 4, and reference/protocols.md §2):

1. Party i draws a fresh 16-byte key ``k_i`` from the OS CSPRNG.
2. It sends ``(digest, k_i)`` to party i-1 and ``digest`` to party i+1,
   where ``digest`` is the SHA-256 of its own canonical job description.
3. It receives ``(digest', k_{i+1})`` from party i+1 and ``digest''`` from
   party i-1, and compares both digests with its own in constant time.

Afterwards party i knows ``(k_i, k_{i+1})``: key ``k_j`` is known exactly to
parties j and j-1, the two holders of share component j, as the
pseudo-random zero sharing of Araki et al. (CCS 2016) requires. Keys are
fresh per job, so no key outlives a job and a restarted server can never
disagree with its peers about PRF counters.
"""

from __future__ import annotations

import hmac

import numpy as np

from mpc_core.errors import FailedPreconditionError, ProtocolError
from mpc_core.prg import KEY_BYTES, SecretKey, random_key
from mpc_core.ring import Words
from mpc_server.protocol.context import PairwiseKeys, PartyContext

DIGEST_BYTES = 32


def _words(data: bytes) -> Words:
    words: Words = np.frombuffer(data, dtype="<u8").astype(np.uint64)
    return words


def _split_digest(words: Words, expect_key: bool, sender: str) -> tuple[bytes, bytes]:
    data = words.astype("<u8").tobytes()
    expected = DIGEST_BYTES + (KEY_BYTES if expect_key else 0)
    if len(data) != expected:
        raise ProtocolError(f"malformed job agreement message from {sender}")
    return data[:DIGEST_BYTES], data[DIGEST_BYTES:]


async def agree_and_setup_keys(ctx: PartyContext, job_digest: bytes) -> PairwiseKeys:
    """Confirm all three parties hold the same job, and set up the PRF keys.

    Raises:
        FailedPreconditionError: a peer holds a different job description.
    """
    if len(job_digest) != DIGEST_BYTES:
        raise ProtocolError("job digests are SHA-256 values")
    tag = ctx.allocate_tag()
    own = random_key()
    ctx.stats.rounds += 1
    await ctx.send(ctx.prev, tag, _words(job_digest + own.material))
    await ctx.send(ctx.next, tag, _words(job_digest))
    from_next = await ctx.recv(ctx.next, tag)
    from_prev = await ctx.recv(ctx.prev, tag)
    next_digest, next_key = _split_digest(from_next, True, ctx.channel.peer_name(ctx.next))
    prev_digest, _ = _split_digest(from_prev, False, ctx.channel.peer_name(ctx.prev))
    for peer, digest in ((ctx.next, next_digest), (ctx.prev, prev_digest)):
        if not hmac.compare_digest(digest, job_digest):
            raise FailedPreconditionError(
                f"server {ctx.channel.peer_name(peer)} holds a different description "
                f"of job {ctx.job_id}; the servers refused to compute"
            )
    keys = PairwiseKeys(own=own, next=SecretKey(next_key))
    ctx.keys = keys
    return keys
