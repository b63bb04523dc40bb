"""Correlated randomness from the pairwise keys, without any messages.

With party i holding ``(k_i, k_{i+1})`` (see ``protocol.setup``):

* zero sharing: ``alpha_i = F(k_i, tag) - F(k_{i+1}, tag)``; the three
  ``alpha`` sum to 0 because every ``F(k_j, tag)`` appears once with each
  sign (Araki et al., CCS 2016, §2; ABY3 §3);
* random sharing: component ``r_j = F(k_j, tag)``, so party i holds
  ``(F(k_i, tag), F(k_{i+1}, tag))`` of a uniformly random secret.

``F`` draws elements of the job's ring (``mpc_core.prg.prf_elements``).
Every call needs a tag no other draw under the same keys uses; callers pass
the op's tag plus a purpose label.
"""

from __future__ import annotations

from mpc_core.prg import prf_elements
from mpc_core.ring import RingArray
from mpc_core.sharing import ReplicatedShare
from mpc_core.types import MessageTag
from mpc_server.protocol.context import PartyContext


def zero_share(ctx: PartyContext, tag: MessageTag, n: int, purpose: bytes = b"zero") -> RingArray:
    """This party's ``alpha_i`` (n elements) of a 3-out-of-3 sharing of zero."""
    keys, ring = ctx.require_keys(), ctx.ring
    label = tag.to_bytes(purpose)
    return ring.sub(prf_elements(ring, keys.own, label, n), prf_elements(ring, keys.next, label, n))


def add_zero_share(ctx: PartyContext, tag: MessageTag, terms: RingArray) -> RingArray:
    """``terms + alpha_i``, computed in place in ``terms`` (which it returns)."""
    keys, ring = ctx.require_keys(), ctx.ring
    label = tag.to_bytes(b"zero")
    ring.add(terms, prf_elements(ring, keys.own, label, terms.size), out=terms)
    ring.sub(terms, prf_elements(ring, keys.next, label, terms.size), out=terms)
    return terms


def random_share(ctx: PartyContext, tag: MessageTag, n: int, purpose: bytes = b"random") -> ReplicatedShare:
    """This party's replicated share of a uniformly random n-vector."""
    keys, ring = ctx.require_keys(), ctx.ring
    label = tag.to_bytes(purpose)
    return ReplicatedShare(prf_elements(ring, keys.own, label, n), prf_elements(ring, keys.next, label, n))
