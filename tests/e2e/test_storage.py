"""Durable storage: restarts keep data, crashes leave nothing half-written,
inconsistent uploads are rejected everywhere, deletion really deletes."""

from __future__ import annotations

import secrets
import signal
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from mpc_cli.local_cluster import LocalCluster
from mpc_client import AlreadyExistsError, Grant, NotFoundError
from mpc_core.fixed_point import FixedPoint
from mpc_core.ring import RING128
from mpc_core.sharing import share
from mpc_proto.v1 import client_service_pb2 as pb
from mpc_proto.v1 import client_service_pb2_grpc, types_pb2

pytestmark = pytest.mark.e2e
MUL = "elementwise.multiply"


@pytest.fixture
def local(tmp_path: Path):  # type: ignore[no-untyped-def]
    cluster = LocalCluster(tmp_path, clients=("model-owner", "bank-1"), log_level="INFO")
    cluster.start()
    yield cluster
    cluster.stop()


def _restart(cluster: LocalCluster, index: int, sig: int = signal.SIGKILL) -> None:
    cluster.kill(index, sig)
    cluster.start_server(index)
    cluster.wait_ready(30)


def test_datasets_and_outputs_survive_a_restart(local: LocalCluster) -> None:
    values = np.array([1.5, -2.0, 3.25])
    with local.client("model-owner") as owner:
        owner.upload("kept", values, grants=[Grant("model-owner", MUL)])
        job = owner.run(MUL, {"x": "kept", "y": "kept"}, job_id="before-restart")
    _restart(local, 1)  # SIGKILL: no graceful shutdown
    with local.client("model-owner") as owner:
        assert owner.fetch(job).tolist() == (values * values).tolist()
        _, again = owner.run_and_fetch(MUL, {"x": "kept", "y": "kept"})
        assert again.tolist() == (values * values).tolist()
        # The job id is still taken after the restart: same job, same answer; another job, refused.
        assert owner.run(MUL, {"x": "kept", "y": "kept"}, job_id="before-restart").shape == (3,)
        owner.upload("other", [1.0, 2.0, 3.0], grants=[Grant("model-owner", MUL)])
        with pytest.raises(AlreadyExistsError):
            owner.run(MUL, {"x": "other", "y": "other"}, job_id="before-restart")


def test_a_crash_mid_upload_leaves_no_dataset(local: LocalCluster) -> None:
    """Kill a server while it receives a large upload: after the restart the
    dataset is visible nowhere and no half-written file remains."""
    values = np.ones(3_000_000)
    errors: list[Exception] = []

    def upload() -> None:
        with local.client("bank-1") as bank:
            try:
                bank.upload("half", values, grants=[Grant("model-owner", MUL)], compress=False, timeout=30)
            except Exception as exc:
                errors.append(exc)

    worker = threading.Thread(target=upload)
    tmp = local.directory / "data" / "server-2" / "tmp" / "datasets"
    with local.client("bank-1") as watcher:  # a server reports each client only its own traffic
        before = watcher.server_info()[2].client_bytes_received
        worker.start()
        end = time.monotonic() + 20
        # Kill while server-2 is still receiving (4 of its 48 MB in): before the
        # servers compare digests, so neither peer may commit the dataset.
        while time.monotonic() < end and watcher.server_info()[2].client_bytes_received - before < 4 << 20:
            time.sleep(0.001)
        local.kill(2)  # mid-upload
    worker.join(60)
    assert errors, "the upload cannot succeed without server-2"
    local.start_server(2)
    local.wait_ready(30)
    assert not any(tmp.glob("*"))
    assert not list((local.directory / "data").glob("server-*/datasets/bank-1/half.share"))
    with local.client("model-owner") as owner, pytest.raises(NotFoundError):
        owner.run(MUL, {"x": "bank-1/half", "y": "bank-1/half"})


def test_inconsistent_shares_are_rejected_on_every_server(local: LocalCluster) -> None:
    """A deliberately inconsistent client: server 1 gets a different copy of x_2."""
    encoded, magnitude = FixedPoint.default().encode_bounded(np.array([1.0, 2.0, 3.0]))
    shares = list(share(RING128, encoded))
    bad_second = shares[1].second.copy()
    bad_second[:1] = RING128.add_public(bad_second[:1], 1)  # server 1's copy of component 2 differs
    pairs = [
        (shares[0].first, shares[0].second),
        (shares[1].first, bad_second),
        (shares[2].first, shares[2].second),
    ]
    header = pb.UploadHeader(
        name="inconsistent",
        shape=[3],
        fractional_bits=32,
        ring=types_pb2.RING_Z2_128,
        magnitude_bits=magnitude,
        upload_id=b"i" * 16,
        grants=[types_pb2.Grant(receiver="model-owner", program=MUL, grant_id=secrets.token_bytes(16))],
    )
    certs = local.cert_dir
    creds = grpc.ssl_channel_credentials(
        (certs / "ca.pem").read_bytes(),
        (certs / "bank-1.key").read_bytes(),
        (certs / "bank-1.pem").read_bytes(),
    )
    futures, channels = [], []
    for index, (first, second) in enumerate(pairs):
        channel = grpc.secure_channel(
            local.addresses[index], creds, options=[("grpc.ssl_target_name_override", f"server-{index}")]
        )
        channels.append(channel)
        chunk = types_pb2.ShareChunk(offset=0, first=RING128.to_wire(first), second=RING128.to_wire(second))
        requests = iter([pb.UploadDatasetRequest(header=header), pb.UploadDatasetRequest(chunk=chunk)])
        futures.append(
            client_service_pb2_grpc.ClientServiceStub(channel).UploadDataset.future(requests, timeout=15)
        )
    for future in futures:
        with pytest.raises(grpc.RpcError) as caught:
            future.result()
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "server-1 and server-2 received different copies of share component 2" in (
            caught.value.details() or ""
        )
    for channel in channels:
        channel.close()
    with local.client("model-owner") as owner, pytest.raises(NotFoundError):
        owner.run(MUL, {"x": "bank-1/inconsistent", "y": "bank-1/inconsistent"})


def test_owners_can_delete_and_deletion_really_deletes(local: LocalCluster) -> None:
    with local.client("bank-1") as bank:
        bank.upload("to-delete", np.arange(100.0), grants=[Grant("model-owner", MUL)])
        files = list((local.directory / "data").glob("server-*/datasets/bank-1/to-delete.share"))
        assert len(files) == 3
        with local.client("model-owner") as owner, pytest.raises(NotFoundError):
            owner.delete("bank-1-data-is-not-mine")
        bank.delete("to-delete")
        assert not any(path.exists() for path in files)
        with pytest.raises(NotFoundError):
            bank.delete("to-delete")
    with local.client("model-owner") as owner, pytest.raises(NotFoundError, match="not found"):
        owner.run(MUL, {"x": "bank-1/to-delete", "y": "bank-1/to-delete"})
    _restart(local, 0, signal.SIGTERM)
    with local.client("model-owner") as owner, pytest.raises(NotFoundError):
        owner.run(MUL, {"x": "bank-1/to-delete", "y": "bank-1/to-delete"})


def test_shares_on_disk_are_private_files(local: LocalCluster) -> None:
    with local.client("bank-1") as bank:
        bank.upload("private", [1.0], grants=[Grant("model-owner", MUL)])
    for path in (local.directory / "data").glob("server-*/datasets/bank-1/private.share"):
        assert path.stat().st_mode & 0o077 == 0
