"""What the servers refuse, over real mutual TLS: each refusal with its status code."""

from __future__ import annotations

import secrets
from pathlib import Path

import grpc
import pytest

from mpc_cli.certs import CertificateAuthority
from mpc_cli.local_cluster import LocalCluster
from mpc_client import (
    AlreadyExistsError,
    EncodingError,
    Grant,
    InvalidArgumentError,
    MpcClient,
    NotFoundError,
    PermissionDeniedError,
)
from mpc_core.identity import Principal, Role
from mpc_proto.v1 import client_service_pb2 as client_pb
from mpc_proto.v1 import client_service_pb2_grpc as client_grpc
from mpc_proto.v1 import peer_service_pb2 as peer_pb
from mpc_proto.v1 import peer_service_pb2_grpc as peer_grpc
from mpc_proto.v1 import types_pb2

pytestmark = pytest.mark.e2e
PROGRAM = "linear_regression.predict"


def _channel(cluster: LocalCluster, creds: grpc.ChannelCredentials, server: int = 0) -> grpc.Channel:
    target = f"server-{server}"
    return grpc.secure_channel(
        cluster.addresses[server], creds, options=[("grpc.ssl_target_name_override", target)]
    )


def _creds(cluster: LocalCluster, identity: str | None) -> grpc.ChannelCredentials:
    ca = (cluster.cert_dir / "ca.pem").read_bytes()
    if identity is None:
        return grpc.ssl_channel_credentials(ca)
    key = (cluster.cert_dir / f"{identity}.key").read_bytes()
    cert = (cluster.cert_dir / f"{identity}.pem").read_bytes()
    return grpc.ssl_channel_credentials(ca, key, cert)


def _info(channel: grpc.Channel) -> client_pb.GetServerInfoResponse:
    stub = client_grpc.ClientServiceStub(channel)
    reply: client_pb.GetServerInfoResponse = stub.GetServerInfo(client_pb.GetServerInfoRequest(), timeout=5)
    return reply


def test_a_client_without_certificate_is_refused(cluster: LocalCluster) -> None:
    with _channel(cluster, _creds(cluster, None)) as channel, pytest.raises(grpc.RpcError) as caught:
        _info(channel)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_certificate_from_another_ca_is_refused(cluster: LocalCluster, tmp_path: Path) -> None:
    rogue = CertificateAuthority(tmp_path / "rogue")
    issued = rogue.ensure(Principal(Role.CLIENT, "bank-1"))
    creds = grpc.ssl_channel_credentials(
        (cluster.cert_dir / "ca.pem").read_bytes(),
        issued.key_path.read_bytes(),
        issued.cert_path.read_bytes(),
    )
    with _channel(cluster, creds) as channel, pytest.raises(grpc.RpcError) as caught:
        _info(channel)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_the_sdk_refuses_a_certificate_from_another_ca(cluster: LocalCluster, tmp_path: Path) -> None:
    rogue = CertificateAuthority(tmp_path / "rogue")
    issued = rogue.ensure(Principal(Role.CLIENT, "bank-1"))
    with pytest.raises(Exception, match="not issued by the cluster CA"):
        MpcClient.connect(cluster.cluster_file, issued.cert_path, issued.key_path)


def test_a_server_answering_under_another_identity_is_refused(cluster: LocalCluster) -> None:
    # server-1's address, but we expect server-0's identity: TLS name check fails.
    channel = grpc.secure_channel(
        cluster.addresses[1],
        _creds(cluster, "bank-1"),
        options=[("grpc.ssl_target_name_override", "server-0")],
    )
    with channel, pytest.raises(grpc.RpcError) as caught:
        _info(channel)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_client_certificate_on_the_peer_api_is_refused(cluster: LocalCluster) -> None:
    with _channel(cluster, _creds(cluster, "bank-1")) as channel:
        stub = peer_grpc.PeerServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Handshake(peer_pb.HandshakeRequest(protocol_version=1, party=1), timeout=5)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as caught:
            stub.Exchange(iter([peer_pb.ExchangeRequest(job_id="x", op=0)]), timeout=5)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_server_certificate_on_the_client_api_is_refused(cluster: LocalCluster) -> None:
    with _channel(cluster, _creds(cluster, "server-1")) as channel, pytest.raises(grpc.RpcError) as caught:
        _info(channel)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_receiver_without_grant_is_refused(cluster: LocalCluster) -> None:
    with cluster.client("bank-1") as bank:
        bank.upload("only-for-owner", [1.0, 2.0], grants=[Grant("model-owner", PROGRAM)], overwrite=True)
    with cluster.client("outsider") as outsider:
        outsider.upload("w1", [0.5], grants=[Grant.read_access("outsider", PROGRAM)], overwrite=True)
        # Named by no grant of bank-1's dataset: to the outsider it does not exist.
        with pytest.raises(NotFoundError, match="dataset bank-1/only-for-owner not found"):
            outsider.run(PROGRAM, {"features": ["bank-1/only-for-owner"], "weights": "w1"})
    # A grant for another program does not help the receiver either.
    with cluster.client("model-owner") as owner, pytest.raises(PermissionDeniedError, match="outputs of"):
        owner.run("dot", {"x": "bank-1/only-for-owner", "y": "bank-1/only-for-owner"})


def test_only_the_receiver_may_fetch_the_output(cluster: LocalCluster) -> None:
    grant = [Grant("model-owner", "dot")]
    with cluster.client("model-owner") as owner:
        owner.upload("v", [1.0, 2.0, 3.0], grants=grant, overwrite=True)
        job = owner.run("dot", {"x": "v", "y": "v"})
        assert float(owner.fetch(job)) == pytest.approx(14.0)
    with (
        cluster.client("bank-2") as bank,
        pytest.raises(NotFoundError, match=f"no output of job {job.job_id}"),
    ):
        bank.fetch(job)
    with cluster.client("model-owner") as owner:
        assert float(owner.fetch(job, release=True)) == pytest.approx(14.0)  # still there for its receiver


def test_unknown_dataset_and_shape_mismatch(cluster: LocalCluster) -> None:
    grant = [Grant("model-owner", "elementwise.multiply")]
    with cluster.client("model-owner") as owner:
        owner.upload("three", [1.0, 2.0, 3.0], grants=grant, overwrite=True)
        owner.upload("two", [1.0, 2.0], grants=grant, overwrite=True)
        with pytest.raises(NotFoundError, match="bank-1/missing not found"):
            owner.run("elementwise.multiply", {"x": "three", "y": "bank-1/missing"})
        with pytest.raises(InvalidArgumentError, match="differ in shape"):
            owner.run("elementwise.multiply", {"x": "three", "y": "two"})
        with pytest.raises(InvalidArgumentError, match="unknown program"):
            owner.run("nonsense", {"x": "three"})


def test_job_ids_are_single_use(cluster: LocalCluster) -> None:
    grant = [Grant("model-owner", "dot")]
    with cluster.client("model-owner") as owner:
        owner.upload("u", [2.0], grants=grant, overwrite=True)
        first = owner.run("dot", {"x": "u", "y": "u"}, job_id="fixed-id-1")
        again = owner.run("dot", {"x": "u", "y": "u"}, job_id="fixed-id-1")  # a retry: same answer
        assert again.shape == first.shape
        owner.upload("u2", [3.0], grants=grant, overwrite=True)
        with pytest.raises(AlreadyExistsError):
            owner.run("dot", {"x": "u2", "y": "u2"}, job_id="fixed-id-1")


def test_bad_values_are_refused_before_upload(cluster: LocalCluster) -> None:
    with cluster.client("bank-1") as bank:
        for bad in ([1.0, float("nan")], [float("inf")], [1e300]):
            with pytest.raises(EncodingError):
                bank.upload("bad", bad)
        with pytest.raises(InvalidArgumentError):
            bank.upload("empty", [])
        with pytest.raises(NotFoundError):
            bank.run("dot", {"x": "bad", "y": "bad"}, receiver="bank-1")


def _upload(
    stub: client_grpc.ClientServiceStub, chunks: list[types_pb2.ShareChunk], shape: list[int]
) -> None:
    header = client_pb.UploadHeader(
        name="raw",
        shape=shape,
        fractional_bits=32,
        ring=types_pb2.RING_Z2_128,
        magnitude_bits=40,
        upload_id=secrets.token_bytes(16),
    )
    requests = [client_pb.UploadDatasetRequest(header=header)]
    requests += [client_pb.UploadDatasetRequest(chunk=chunk) for chunk in chunks]
    stub.UploadDataset(iter(requests), timeout=5)


def _zeros(offset: int, first: int, second: int) -> types_pb2.ShareChunk:
    return types_pb2.ShareChunk(offset=offset, first=bytes(first), second=bytes(second))


@pytest.mark.parametrize(
    ("chunks", "shape", "message"),
    [
        ([_zeros(0, 24, 24)], [1], "whole number"),  # Z_2^128 elements are 16 bytes
        ([_zeros(0, 32, 16)], [2], "differ in length"),
        ([_zeros(0, 16, 16)], [2], "ended after 1 of 2"),
        ([_zeros(1, 16, 16)], [2], "expected 0"),
        ([_zeros(0, 48, 48)], [2], "does not fit"),
        ([], [0], "positive"),
    ],
)
def test_malformed_shares_are_refused(
    cluster: LocalCluster, chunks: list[types_pb2.ShareChunk], shape: list[int], message: str
) -> None:
    with _channel(cluster, _creds(cluster, "bank-2")) as channel, pytest.raises(grpc.RpcError) as caught:
        _upload(client_grpc.ClientServiceStub(channel), chunks, shape)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (caught.value.details() or "")


def test_a_huge_declared_size_is_refused_before_allocating(cluster: LocalCluster) -> None:
    with _channel(cluster, _creds(cluster, "bank-2")) as channel, pytest.raises(grpc.RpcError) as caught:
        _upload(client_grpc.ClientServiceStub(channel), [], [1 << 40, 1 << 20])
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_server_info_reports_identity_and_peers(cluster: LocalCluster) -> None:
    with cluster.client("bank-1") as bank:
        infos = bank.server_info()
    assert [info.identity for info in infos] == ["server-0", "server-1", "server-2"]
    assert all(info.ready and all(info.peers.values()) for info in infos)
    assert {info.fractional_bits for info in infos} == {32}
    assert {info.ring_bits for info in infos} == {128}


def test_a_second_server_on_a_used_port_refuses_to_start(cluster: LocalCluster) -> None:
    import subprocess
    import sys

    command = [
        sys.executable,
        "-m",
        "mpc_cli",
        "server",
        "--cluster",
        str(cluster.cluster_file),
        "--identity",
        "server-0",
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert completed.returncode != 0
    assert "address already in use" in completed.stderr
    assert "add_port.cc" not in completed.stderr  # no gRPC internals on the terminal
    with cluster.client("bank-1") as bank:  # the running server is unaffected
        assert all(info.ready for info in bank.server_info())
