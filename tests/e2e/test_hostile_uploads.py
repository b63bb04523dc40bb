"""Hostile uploads against real servers: stalled streams end, memory is budgeted, seeds are not free."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from mpc_cli.local_cluster import LocalCluster
from mpc_proto.v1 import client_service_pb2 as pb
from mpc_proto.v1 import client_service_pb2_grpc as pb_grpc
from mpc_proto.v1 import types_pb2

pytestmark = pytest.mark.e2e
BUDGET = 256 << 20


@pytest.fixture(scope="module")
def strict_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    args = ["--upload-idle-seconds", "1", "--upload-memory-bytes", str(BUDGET)]
    local = LocalCluster(tmp_path_factory.mktemp("strict"), clients=("bank-1", "bank-2"), server_args=args)
    local.start()
    yield local
    local.stop()


def _stub(cluster: LocalCluster, server: int, who: str) -> tuple[grpc.Channel, pb_grpc.ClientServiceStub]:
    ca = (cluster.cert_dir / "ca.pem").read_bytes()
    key, cert = ((cluster.cert_dir / f"{who}{ext}").read_bytes() for ext in (".key", ".pem"))
    options = [("grpc.ssl_target_name_override", f"server-{server}")]
    channel = grpc.secure_channel(
        cluster.addresses[server], grpc.ssl_channel_credentials(ca, key, cert), options
    )
    return channel, pb_grpc.ClientServiceStub(channel)


def _header(elements: int, **seeds: bytes) -> pb.UploadDatasetRequest:
    header = pb.UploadHeader(
        name=f"h-{secrets.token_hex(4)}", shape=[elements], fractional_bits=32, ring=types_pb2.RING_Z2_128,
        magnitude_bits=40, upload_id=secrets.token_bytes(16), **seeds,
    )  # fmt: skip
    return pb.UploadDatasetRequest(header=header)


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def test_a_stalled_upload_is_ended_and_its_memory_freed(strict_cluster: LocalCluster) -> None:
    """Slowloris: a header and then silence. The server ends the call after the idle time."""
    stop = threading.Event()

    def stall() -> Iterator[pb.UploadDatasetRequest]:
        yield _header(1 << 22)
        stop.wait(30)

    channel, stub = _stub(strict_cluster, 1, "bank-1")
    started = time.monotonic()
    with channel, pytest.raises(grpc.RpcError) as caught:
        stub.UploadDataset(stall(), timeout=30)
    stop.set()
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "sent nothing for 1 s" in (caught.value.details() or "")
    assert time.monotonic() - started < 10


def test_uploads_beyond_the_memory_budget_are_refused_before_allocating(strict_cluster: LocalCluster) -> None:
    """Amplification: headers promising more than the budget are RESOURCE_EXHAUSTED; RSS stays low."""
    process = strict_cluster.processes[1]
    assert process is not None
    before = _rss(process.pid)
    channel, stub = _stub(strict_cluster, 1, "bank-2")
    with channel, pytest.raises(grpc.RpcError) as caught:
        stub.UploadDataset(iter([_header(1 << 24)]), timeout=10)  # 512 MiB > 256 MiB
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "budget" in (caught.value.details() or "")
    assert _rss(process.pid) - before < 64 << 20


def test_component_2_may_not_come_as_a_seed(strict_cluster: LocalCluster) -> None:
    """All three components as 16-byte seeds would make a tiny upload a huge dataset: refused."""
    channel, stub = _stub(strict_cluster, 1, "bank-1")
    with channel, pytest.raises(grpc.RpcError) as caught:
        stub.UploadDataset(iter([_header(1 << 10, first_seed=bytes(16), second_seed=bytes(16))]), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "component 2 must be sent in full" in (caught.value.details() or "")
