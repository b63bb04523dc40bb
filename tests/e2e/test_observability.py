"""Health that follows peer links, reflection, Prometheus metrics, JSON logs."""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from mpc_cli.local_cluster import LocalCluster
from mpc_client import Grant, NotFoundError
from mpc_core.fixed_point import FixedPoint
from mpc_core.ring import RING128
from mpc_core.sharing import share
from mpc_proto.v1 import client_service_pb2 as pb
from mpc_proto.v1 import client_service_pb2_grpc, types_pb2
from mpc_server.transport.auth import WRITTEN_STREAMS_PER_CALLER

pytestmark = pytest.mark.e2e
MUL = "elementwise.multiply"


@pytest.fixture
def observed(tmp_path: Path) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path, clients=("model-owner",), log_level="DEBUG", metrics=True)
    local.start()
    yield local
    local.stop()


def _channel(cluster: LocalCluster, index: int) -> grpc.Channel:
    certs = cluster.cert_dir
    creds = grpc.ssl_channel_credentials(
        (certs / "ca.pem").read_bytes(),
        (certs / "model-owner.key").read_bytes(),
        (certs / "model-owner.pem").read_bytes(),
    )
    return grpc.secure_channel(
        cluster.addresses[index], creds, options=[("grpc.ssl_target_name_override", f"server-{index}")]
    )


def _health(channel: grpc.Channel) -> int:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    status: int = reply.status
    return status


def _wait_for(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def test_health_follows_the_peer_links(observed: LocalCluster) -> None:
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    with _channel(observed, 0) as channel:
        assert _health(channel) == serving
        observed.kill(2, signal.SIGKILL)
        _wait_for(lambda: _health(channel) == not_serving)
        observed.start_server(2)
        _wait_for(lambda: _health(channel) == serving)


def test_a_health_watch_streams_the_changes(observed: LocalCluster) -> None:
    """The standard health service's Watch (written with ``context.write``) passes the guard."""
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    with _channel(observed, 0) as channel:
        request = health_pb2.HealthCheckRequest(service="")
        watch = health_pb2_grpc.HealthStub(channel).Watch(request, timeout=60)
        assert next(watch).status == serving
        observed.kill(2, signal.SIGKILL)
        assert next(watch).status == not_serving
        watch.cancel()


def test_watch_streams_per_client_are_bounded(observed: LocalCluster) -> None:
    """Watch holds a stream open: one certificate may hold WRITTEN_STREAMS_PER_CALLER of them per server."""
    request = health_pb2.HealthCheckRequest(service="")
    with _channel(observed, 1) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        watches = [stub.Watch(request, timeout=60) for _ in range(WRITTEN_STREAMS_PER_CALLER)]
        assert all(next(w).status == health_pb2.HealthCheckResponse.SERVING for w in watches)
        with pytest.raises(grpc.RpcError) as caught:
            next(stub.Watch(request, timeout=60))
        assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "watch streams on this server" in (caught.value.details() or "")
        watches.pop().cancel()  # a closed stream frees its slot

        def opens() -> bool:
            try:
                watches.append(stub.Watch(request, timeout=60))
                return next(watches[-1]).status == health_pb2.HealthCheckResponse.SERVING
            except grpc.RpcError:
                watches.pop()
                return False

        _wait_for(opens)
        for watch in watches:
            watch.cancel()


def test_reflection_lists_and_describes_the_services(observed: LocalCluster) -> None:
    with _channel(observed, 1) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {"mpc.v1.ClientService", "mpc.v1.PeerService", "grpc.health.v1.Health"} <= services
        described = database.FindFileContainingSymbol("mpc.v1.ClientService")
        assert described.package == "mpc.v1"
        assert "RunJob" in [m.name for m in described.service[0].method]


def _metrics(cluster: LocalCluster, index: int) -> str:
    with urllib.request.urlopen(
        f"http://127.0.0.1:{cluster.metrics_ports[index]}/metrics", timeout=5
    ) as reply:
        text: str = reply.read().decode()
    return text


def _value(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = "^" + re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    assert match, f"{name}{{{wanted}}} not in metrics"
    return float(match.group(1))


def test_metrics_count_jobs_traffic_and_peers(observed: LocalCluster) -> None:
    with observed.client("model-owner") as owner:
        owner.upload("m", np.arange(1000.0), grants=[Grant("model-owner", MUL)])
        owner.run_and_fetch(MUL, {"x": "m", "y": "m"})
        with pytest.raises(Exception, match="not found"):
            owner.run(MUL, {"x": "m", "y": "missing"})
    text = _metrics(observed, 0)
    assert _value(text, "mpc_jobs_total", program=MUL, status="OK") == 1
    assert _value(text, "mpc_jobs_total", program=MUL, status="NOT_FOUND") == 1
    assert _value(text, "mpc_job_duration_seconds_count", program=MUL) == 2
    assert _value(text, "mpc_peer_bytes_sent_total", peer="server-2") >= 8000  # the product went to party 2
    assert _value(text, "mpc_peers_connected") == 2
    assert _value(text, "mpc_uploads_total", status="ok") == 1


def test_logs_are_json_with_job_and_party(observed: LocalCluster) -> None:
    with observed.client("model-owner") as owner:
        owner.upload("logged", [1.0, 2.0], grants=[Grant("model-owner", MUL)])
        job = owner.run(MUL, {"x": "logged", "y": "logged"})
    observed.stop()
    for index in range(3):
        lines = observed.log_path(index).read_text().splitlines()
        # Python's records are JSON; only gRPC's C core may write its own lines.
        assert not [line for line in lines if line.startswith(("Traceback", "  File"))]
        records = [json.loads(line) for line in lines if line.startswith("{")]
        assert all({"ts", "level", "logger", "message", "server", "party"} <= set(r) for r in records)
        job_lines = [r for r in records if r.get("job_id") == job.job_id]
        assert any("started" in r["message"] for r in job_lines)
        assert {r["party"] for r in records} == {index}


def test_no_secret_reaches_the_logs_at_any_level(observed: LocalCluster) -> None:
    """Known shares and values are uploaded; no log line may contain any of them."""
    values = np.array([12345.678, -9876.5, 4242.4242])
    encoded, magnitude = FixedPoint.default().encode_bounded(values)
    shares = share(RING128, encoded)
    words = RING128.to_ints(encoded, signed=False) + RING128.to_ints(encoded)
    secrets = {str(w) for w in words} | {f"{w:x}" for w in words} | {repr(v) for v in values}
    for s in shares:
        for component in (s.first, s.second):
            ints = RING128.to_ints(component, signed=False) + RING128.words(component).tolist()
            secrets |= {str(w) for w in ints} | {f"{w:x}" for w in ints}
            secrets.add(RING128.to_wire(component).hex())
    header = pb.UploadHeader(
        name="secret",
        shape=[3],
        fractional_bits=32,
        ring=types_pb2.RING_Z2_128,
        magnitude_bits=magnitude,
        upload_id=b"x" * 16,
        grants=[types_pb2.Grant(receiver="model-owner", program=MUL, grant_id=os.urandom(16))],
    )
    channels = [_channel(observed, index) for index in range(3)]
    calls = []
    for index, channel in enumerate(channels):  # all three at once: the servers compare copies
        pair = shares[index]
        chunk = types_pb2.ShareChunk(
            offset=0, first=RING128.to_wire(pair.first), second=RING128.to_wire(pair.second)
        )
        requests = iter([pb.UploadDatasetRequest(header=header), pb.UploadDatasetRequest(chunk=chunk)])
        calls.append(
            client_service_pb2_grpc.ClientServiceStub(channel).UploadDataset.future(requests, timeout=10)
        )
    for call, channel in zip(calls, channels, strict=True):
        call.result()
        channel.close()
    with observed.client("model-owner") as owner:
        _, product = owner.run_and_fetch(MUL, {"x": "secret", "y": "secret"})
        assert np.allclose(product, values * values, rtol=1e-4)
        with pytest.raises(NotFoundError):  # an error path is logged too
            owner.run(MUL, {"x": "secret", "y": "nope"})
    observed.stop()
    text = "\n".join(observed.log_path(i).read_text() for i in range(3))
    assert '"level": "DEBUG"' in text or '"level": "INFO"' in text
    leaked = [s for s in secrets if len(s) >= 4 and s in text]
    assert not leaked, f"secret material in the logs: {leaked[:5]}"
    assert not re.search(r"[0-9a-f]{32}", text), "a 128-bit hex value (key or digest) reached the logs"
