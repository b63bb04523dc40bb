"""A server that alters its stored output share is caught by the receiver's client.

server-0 runs in this test process (built from ``server_config`` like
``mpc server`` builds it), server-1 and server-2 as real processes. After a
job, the test reaches into server-0's output store and flips bits in its
share: exactly what a compromised server could do. Every component is held
by two servers, so the client's checked reconstruction must refuse the
output with :class:`OutputIntegrityError` naming server-0 and the
neighbour holding the other copy, on both paths (FetchOutput with digests,
and the share returned inline with RunJob), and accept it again once the
share is restored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pytest

from mpc_cli.local_cluster import LocalCluster
from mpc_client import Grant, OutputIntegrityError
from mpc_core.sharing import ReplicatedShare
from mpc_server.app import MpcServer
from mpc_server.config import server_config
from mpc_server.service.model import output_key

pytestmark = pytest.mark.e2e
MUL = "elementwise.multiply"
_T = TypeVar("_T")


@dataclass
class Hybrid:
    cluster: LocalCluster
    server: MpcServer
    loop: asyncio.AbstractEventLoop

    def on_loop(self, coroutine: Coroutine[Any, Any, _T], timeout: float = 30.0) -> _T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hybrid]:
    cluster = LocalCluster(tmp_path_factory.mktemp("hybrid"), clients=("model-owner",))
    cluster.prepare()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="in-process-server-0", daemon=True)
    thread.start()

    async def build() -> MpcServer:
        server = MpcServer(server_config(cluster.cluster_file, "server-0"))
        await server.start()
        return server

    hybrid = Hybrid(cluster, asyncio.run_coroutine_threadsafe(build(), loop).result(30), loop)
    try:
        cluster.start_server(1)
        cluster.start_server(2)
        cluster.wait_ready(30)
        yield hybrid
    finally:
        hybrid.on_loop(hybrid.server.stop(grace=1.0))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        cluster.stop()


def _tamper(hybrid: Hybrid, submitter: str, job_id: str, components: tuple[str, ...]) -> Any:
    """Flip one bit of the given components of server-0's stored share; return the original."""

    async def flip() -> Any:
        store = hybrid.server.output_store
        original = store.get(output_key(submitter, job_id, "product"))  # per (submitter, job id, output)
        kept = dataclasses.replace(
            original,
            share=ReplicatedShare(
                np.array(original.share.first, copy=True), np.array(original.share.second, copy=True)
            ),
        )
        parts = {
            "first": np.array(original.share.first, copy=True),
            "second": np.array(original.share.second, copy=True),
        }
        for name in components:
            parts[name].view(np.uint64)[-1] ^= np.uint64(1 << 40)  # a high-word bit in Z_2^128
        store.put(dataclasses.replace(original, share=ReplicatedShare(parts["first"], parts["second"])))
        return kept

    return hybrid.on_loop(flip())


def _restore(hybrid: Hybrid, original: Any) -> None:
    async def put() -> None:
        hybrid.server.output_store.put(original)

    hybrid.on_loop(put())


# Server i holds components (i, i+1): server-0's first is also server-2's second,
# its second also server-1's first.
NEIGHBOUR = {("first",): "server-2", ("second",): "server-1"}


@pytest.mark.parametrize("components", [("first",), ("second",), ("first", "second")], ids="+".join)
def test_a_flipped_bit_in_one_servers_share_is_caught_and_named(
    hybrid: Hybrid, components: tuple[str, ...]
) -> None:
    values = np.arange(1.0, 9.0) / 4
    job_id = f"tamper-{secrets.token_hex(6)}"
    inputs = {"x": "t-v", "y": "t-v"}
    with hybrid.cluster.client("model-owner") as owner:
        owner.upload("t-v", values, grants=[Grant("model-owner", MUL)], overwrite=True)
        _, honest = owner.run_and_fetch(MUL, inputs, job_id=job_id, keep=True)
        np.testing.assert_array_equal(honest, values * values)

        original = _tamper(hybrid, "model-owner", job_id, components)
        # FetchOutput: the second copy arrives as a digest.
        with pytest.raises(OutputIntegrityError) as caught:
            owner.fetch(job_id)
        servers = set(caught.value.servers)
        assert "server-0" in servers and servers <= {"server-0", "server-1", "server-2"} and len(servers) == 2
        if components in NEIGHBOUR:
            assert servers == {"server-0", NEIGHBOUR[components]}
        assert "server-0" in str(caught.value)
        # RunJob replay: the whole share comes back inline, both copies compared.
        with pytest.raises(OutputIntegrityError) as inline:
            owner.run_and_fetch(MUL, inputs, job_id=job_id, keep=True)
        assert "server-0" in inline.value.servers
        if components in NEIGHBOUR:
            assert set(inline.value.servers) == {"server-0", NEIGHBOUR[components]}

        # The honest share again: accepted, and the values are right.
        _restore(hybrid, original)
        np.testing.assert_array_equal(owner.fetch(job_id), values * values)
