"""Fixtures for the protocol tests: three parties in one event loop over an in-memory network.

``run_parties(net, program)`` runs ``program(ctx)`` once per party, concurrently
(``asyncio.gather``), after the job agreement and key setup round, and
returns the three results in party order. Every :class:`PartyContext` computes
in the ring of the ``ring`` fixture, which is parametrized over Z_2^64 and
Z_2^128, so every test that runs parties runs in both rings.

Oracles are Python integers reduced modulo 2^k (``ring_data``); numpy only
generates test data. Helpers are handed out as fixtures so that test modules
never import a ``conftest`` module by name.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pytest

from mpc_core.ring import RING64, RING128, Ring, RingArray
from mpc_core.sharing import ReplicatedShare, reconstruct_checked
from mpc_core.types import PARTIES
from mpc_server.protocol.context import PartyContext
from mpc_server.protocol.memory import InMemoryNetwork
from mpc_server.protocol.setup import agree_and_setup_keys

JOB_DIGEST = hashlib.sha256(b"tests/protocol job description").digest()
"""The job digest every party agrees on unless a test says otherwise."""

Program = Callable[[PartyContext], Awaitable[Any]]

_job_numbers = itertools.count(1)


class RunParties(Protocol):
    """Signature of the ``run_parties`` fixture."""

    def __call__(
        self,
        net: InMemoryNetwork,
        program: Program,
        *,
        job_id: str | None = None,
        timeout: float = 20.0,
        digests: Sequence[bytes] | None = None,
        setup: bool = True,
        return_exceptions: bool = False,
        ring: Ring | None = None,
    ) -> list[Any]: ...


async def run_parties_async(
    net: InMemoryNetwork,
    program: Program,
    *,
    job_id: str | None = None,
    timeout: float = 20.0,
    digests: Sequence[bytes] | None = None,
    setup: bool = True,
    return_exceptions: bool = False,
    ring: Ring = RING128,
) -> list[Any]:
    """Run one job in ``ring``: every party agrees and sets up keys, then runs ``program(ctx)``.

    ``timeout`` sets the job deadline (``loop.time() + timeout``, as the job
    runner does). ``digests`` gives each party its own job digest. With
    ``return_exceptions`` a party's exception is returned in its place.
    """
    job = job_id if job_id is not None else f"job-{next(_job_numbers)}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    own_digests = list(digests) if digests is not None else [JOB_DIGEST] * len(PARTIES)

    async def one_party(index: int) -> Any:
        ctx = PartyContext(net.channels[index], job, deadline, ring=ring)
        if setup:
            await agree_and_setup_keys(ctx, own_digests[index])
        return await program(ctx)

    results = await asyncio.gather(*(one_party(p) for p in PARTIES), return_exceptions=return_exceptions)
    return list(results)


def _with_ring(default: Ring, options: dict[str, Any]) -> dict[str, Any]:
    if options.get("ring") is None:
        options["ring"] = default
    return options


@pytest.fixture(params=[RING64, RING128], ids=["ring64", "ring128"])
def ring(request: pytest.FixtureRequest) -> Ring:
    """The ring a test computes in: Z_2^64 and Z_2^128."""
    ring_: Ring = request.param
    return ring_


@pytest.fixture
def net() -> InMemoryNetwork:
    """A fresh three-party in-memory network."""
    return InMemoryNetwork()


@pytest.fixture
def run_parties(ring: Ring) -> RunParties:
    """Run a program at the three parties in ``ring`` (fresh event loop); see the module docstring."""

    def run(net: InMemoryNetwork, program: Program, **options: Any) -> list[Any]:
        return asyncio.run(run_parties_async(net, program, **_with_ring(ring, options)))

    return run


@pytest.fixture
def run_parties_in_loop(ring: Ring) -> Callable[..., Awaitable[list[Any]]]:
    """The async form in ``ring``, for tests that run several jobs in one event loop."""

    def run(net: InMemoryNetwork, program: Program, **options: Any) -> Awaitable[list[Any]]:
        return run_parties_async(net, program, **_with_ring(ring, options))

    return run


@pytest.fixture
def open_shares() -> Callable[[Sequence[ReplicatedShare]], RingArray]:
    """Reconstruct three parties' shares, checking both copies of every component."""
    return reconstruct_checked


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    """Test data generator (not for shares), seeded per test for reproducible inputs."""
    seed = int.from_bytes(hashlib.sha256(request.node.nodeid.encode()).digest()[:8], "little")
    return np.random.default_rng(seed)


@dataclass(frozen=True)
class RingData:
    """Test data and plaintext oracles in one ring, as Python integers.

    ``uniform``/``signed`` draw integers from the seeded ``rng``; ``array``
    turns integers (any sign) into ring elements and ``ints``/``signed_ints``
    turn elements back into Python integers, reduced modulo 2^k.
    """

    ring: Ring
    rng: np.random.Generator

    @property
    def modulus(self) -> int:
        return self.ring.modulus

    def _words(self, n: int, count: int) -> list[list[int]]:
        words = self.rng.integers(0, 2**64, size=(n, count), dtype=np.uint64)
        return [[int(w) for w in row] for row in words]

    def uniform(self, n: int) -> list[int]:
        """``n`` uniform integers in ``[0, 2^k)``."""
        count = self.ring.words_per_element
        return [sum(w << (64 * j) for j, w in enumerate(row)) for row in self._words(n, count)]

    def signed(self, n: int, bits: int) -> list[int]:
        """``n`` integers with ``|v| < 2^bits``, (almost exactly) uniform."""
        span = 2 ** (bits + 1) - 1
        count = (bits + 1) // 64 + 2  # 64 spare bits: the modulo bias is below 2^-64
        raw = [sum(w << (64 * j) for j, w in enumerate(row)) for row in self._words(n, count)]
        return [v % span - (2**bits - 1) for v in raw]

    def vector(self, n: int) -> tuple[RingArray, list[int]]:
        """``n`` uniform elements as an array and as the integers they are."""
        values = self.uniform(n)
        return self.array(values), values

    def array(self, values: Sequence[int]) -> RingArray:
        """Elements of the ring from integers (reduced modulo 2^k)."""
        return self.ring.from_ints(list(values))

    def ints(self, values: RingArray) -> list[int]:
        """Elements as integers in ``[0, 2^k)``."""
        return self.ring.to_ints(values, signed=False)

    def signed_ints(self, values: RingArray) -> list[int]:
        """Elements as integers in ``[-2^(k-1), 2^(k-1))``."""
        return self.ring.to_ints(values, signed=True)

    def reduce(self, values: Sequence[int]) -> list[int]:
        """Integers reduced modulo 2^k."""
        return [v % self.modulus for v in values]


@pytest.fixture
def ring_data(ring: Ring, rng: np.random.Generator) -> RingData:
    """Test data and Python-integer oracles in the test's ring."""
    return RingData(ring, rng)
