"""Fixtures for the protocol tests: three parties in one event loop over an in-memory network.

``run_parties(net, program)`` runs ``program(ctx)`` once per party, concurrently
(``asyncio.gather``), after the job agreement and key setup round, and
returns the three results in party order. Helpers are handed out as fixtures
so that test modules never import a ``conftest`` module by name.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import numpy as np
import pytest

from mpc_core.ring import RingArray
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
) -> list[Any]:
    """Run one job: every party agrees and sets up keys, then runs ``program(ctx)``.

    ``timeout`` sets the job deadline (``loop.time() + timeout``, as the job
    runner does). ``digests`` gives each party its own job digest. With
    ``return_exceptions`` a party's exception is returned in its place.
    """
    job = job_id if job_id is not None else f"job-{next(_job_numbers)}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    own_digests = list(digests) if digests is not None else [JOB_DIGEST] * len(PARTIES)

    async def one_party(index: int) -> Any:
        ctx = PartyContext(net.channels[index], job, deadline)
        if setup:
            await agree_and_setup_keys(ctx, own_digests[index])
        return await program(ctx)

    results = await asyncio.gather(*(one_party(p) for p in PARTIES), return_exceptions=return_exceptions)
    return list(results)


def run_parties_sync(net: InMemoryNetwork, program: Program, **options: Any) -> list[Any]:
    """:func:`run_parties_async` in a fresh event loop."""
    return asyncio.run(run_parties_async(net, program, **options))


@pytest.fixture
def net() -> InMemoryNetwork:
    """A fresh three-party in-memory network."""
    return InMemoryNetwork()


@pytest.fixture
def run_parties() -> RunParties:
    """Run a program at the three parties (fresh event loop); see the module docstring."""
    return run_parties_sync


@pytest.fixture
def run_parties_in_loop() -> Callable[..., Awaitable[list[Any]]]:
    """The async form, for tests that run several jobs in one event loop."""
    return run_parties_async


@pytest.fixture
def open_shares() -> Callable[[Sequence[ReplicatedShare]], RingArray]:
    """Reconstruct three parties' shares, checking both copies of every component."""
    return reconstruct_checked


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    """Test data generator (not for shares), seeded per test for reproducible inputs."""
    seed = int.from_bytes(hashlib.sha256(request.node.nodeid.encode()).digest()[:8], "little")
    return np.random.default_rng(seed)
