"""Job agreement and pairwise key setup (protocols.md §2; protocol/setup.py).

The agreement round moves only digests and keys, so it is the same in both rings; the
tests run in both anyway (``run_parties`` computes in the ``ring`` fixture).
"""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from mpc_core.errors import FailedPreconditionError, ProtocolError
from mpc_core.prg import SecretKey
from mpc_core.types import PARTIES, MessageTag
from mpc_server.protocol.context import PairwiseKeys, PartyContext
from mpc_server.protocol.memory import InMemoryNetwork
from mpc_server.protocol.randomness import zero_share
from mpc_server.protocol.setup import agree_and_setup_keys


async def keep_context(ctx):
    return ctx


def test_party_i_next_key_is_party_i_plus_1_own_key(net, run_parties):
    contexts = run_parties(net, keep_context)

    keys = [ctx.keys for ctx in contexts]
    assert all(isinstance(k, PairwiseKeys) for k in keys)
    for i in PARTIES:
        assert keys[i].next == keys[(i + 1) % 3].own
        assert keys[i].next.material == keys[(i + 1) % 3].own.material
    # Three distinct fresh keys; party i never learns k_{i+2} (= k_{i-1}).
    materials = {k.own.material for k in keys}
    assert len(materials) == 3
    for i in PARTIES:
        assert keys[i].own != keys[i].next
        missing = keys[(i + 2) % 3].own
        assert missing not in (keys[i].own, keys[i].next)


def test_setup_returns_the_keys_it_stores_and_counts_one_round(net, ring):
    async def main():
        loop = asyncio.get_running_loop()
        ctxs = [PartyContext(net.channels[p], "job", loop.time() + 5, ring=ring) for p in PARTIES]
        digest = hashlib.sha256(b"same").digest()
        returned = await asyncio.gather(*(agree_and_setup_keys(c, digest) for c in ctxs))
        return ctxs, returned

    ctxs, returned = asyncio.run(main())
    for ctx, keys in zip(ctxs, returned, strict=True):
        assert ctx.keys is keys
        assert ctx.ring == ring
        assert ctx.stats.rounds == 1
        assert ctx.stats.bytes_sent == 48 + 32  # the same in every ring
        assert "redacted" in repr(keys)
        assert keys.own.material.hex() not in repr(keys)


@pytest.mark.parametrize("odd_party", PARTIES)
def test_digest_mismatch_names_the_disagreeing_server(net, run_parties, odd_party):
    good = hashlib.sha256(b"job description A").digest()
    bad = hashlib.sha256(b"job description B").digest()
    digests = [bad if p == odd_party else good for p in PARTIES]

    results = run_parties(net, keep_context, digests=digests, return_exceptions=True)

    odd_name = f"server-{odd_party}"
    for p in PARTIES:
        error = results[p]
        assert isinstance(error, FailedPreconditionError), (p, error)
        if p != odd_party:
            # The honest parties both blame exactly the odd one out.
            assert odd_name in str(error)
            others = [f"server-{q}" for q in PARTIES if q not in (p, odd_party)]
            assert all(name not in str(error) for name in others)
            assert "different description" in str(error)
        else:
            assert odd_name not in str(error)
        # The error message never contains digests.
        assert good.hex() not in str(error)
        assert bad.hex() not in str(error)


def test_digest_mismatch_leaves_no_keys(net):
    digests = [hashlib.sha256(bytes([p])).digest() for p in PARTIES]

    async def main():
        loop = asyncio.get_running_loop()
        ctxs = [PartyContext(net.channels[p], "job", loop.time() + 5) for p in PARTIES]
        results = await asyncio.gather(
            *(agree_and_setup_keys(c, d) for c, d in zip(ctxs, digests, strict=True)), return_exceptions=True
        )
        return ctxs, results

    ctxs, results = asyncio.run(main())
    assert all(isinstance(r, FailedPreconditionError) for r in results)
    assert all(ctx.keys is None for ctx in ctxs)


def test_keys_differ_across_jobs(net, run_parties, ring):
    first = run_parties(net, keep_context, job_id="job-1")
    second = run_parties(net, keep_context, job_id="job-2")

    for p in PARTIES:
        assert first[p].keys.own != second[p].keys.own
        assert first[p].keys.next != second[p].keys.next
    # Same tag in both jobs, still unrelated masks.
    tag = MessageTag("job", 1)
    for p in PARTIES:
        a = ring.to_ints(zero_share(first[p], tag, 32))
        b = ring.to_ints(zero_share(second[p], tag, 32))
        assert not any(u == v for u, v in zip(a, b, strict=True))


def test_keys_differ_across_jobs_on_fresh_networks(run_parties):
    seen: set[bytes] = set()
    for _ in range(5):
        for ctx in run_parties(InMemoryNetwork(), keep_context, job_id="same-job-id"):
            seen.add(ctx.keys.own.material)
    assert len(seen) == 15


def test_digest_of_wrong_length_is_refused(net):
    async def main():
        ctx = PartyContext(net.channels[0], "job", asyncio.get_running_loop().time() + 1)
        with pytest.raises(ProtocolError, match="SHA-256"):
            await agree_and_setup_keys(ctx, b"short")

    asyncio.run(main())


def test_malformed_agreement_message_names_the_sender(net, run_parties):
    def truncate_from_1_to_0(message):
        if message.sender == 1 and message.receiver == 0:
            return [message.words[:-1]]
        return [message.words]

    net.interceptor = truncate_from_1_to_0

    results = run_parties(net, keep_context, return_exceptions=True)

    assert isinstance(results[0], ProtocolError)
    assert "malformed" in str(results[0])
    assert "server-1" in str(results[0])


def test_secret_key_redacts_and_compares_by_value():
    material = bytes(range(16))
    key = SecretKey(material)
    assert key == SecretKey(bytes(range(16)))
    assert key != SecretKey(bytes(16))
    assert material.hex() not in repr(key)
