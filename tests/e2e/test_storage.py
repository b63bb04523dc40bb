"""Durable storage: restarts keep data, crashes leave nothing half-written,
inconsistent uploads are rejected everywhere, deletion really deletes, and
damaged share files fail jobs instead of changing their results."""

from __future__ import annotations

import json
import secrets
import signal
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from mpc_cli.local_cluster import LocalCluster
from mpc_cli.main import main
from mpc_client import AlreadyExistsError, Grant, MpcError, NotFoundError
from mpc_core.fixed_point import FixedPoint
from mpc_core.ring import RING128
from mpc_core.sharing import share
from mpc_proto.v1 import client_service_pb2 as pb
from mpc_proto.v1 import client_service_pb2_grpc, types_pb2
from mpc_server.service import share_files

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


# Integrity at rest: the bit-rot reports, with real server processes.

PREDICT = "linear_regression.predict"
PREDICT_INPUTS = {"features": ["bank-1/x", "bank-1/z"], "weights": "w", "intercept": "c"}


def _predict_setup(cluster: LocalCluster, rows: int = 1000) -> np.ndarray:
    """The showcase model over ``rows`` customers; returns the plaintext predictions."""
    x = np.linspace(1.0, 60.0, rows)
    z = np.linspace(-3.0, 4.0, rows)
    w, c = np.array([0.5, -1.25]), 17.5
    with cluster.client("model-owner") as owner:
        grant = [Grant.pinned("model-owner", PREDICT, PREDICT_INPUTS)]
        weights = owner.upload("w", w, grants=grant)
        intercept = owner.upload("c", c, grants=grant)
    pinned = [
        Grant.pinned("model-owner", PREDICT, {**PREDICT_INPUTS, "weights": weights, "intercept": intercept})
    ]
    with cluster.client("bank-1") as bank:
        bank.upload("x", x, grants=pinned)
        bank.upload("z", z, grants=pinned)
    expected: np.ndarray = np.column_stack([x, z]) @ w + c
    return expected


def _flip_stored_bit(cluster: LocalCluster, server: int, dataset: str, bit: int) -> None:
    """Flip one bit of the stored shares (not the header) of ``dataset`` on a stopped ``server``."""
    path = cluster.directory / "data" / f"server-{server}" / "datasets" / f"{dataset}.share"
    layout = share_files.inspect(path)
    assert layout.stored, "the file must hold a component in full"
    data = bytearray(path.read_bytes())
    data[layout.offset + bit // 8] ^= 1 << (bit % 8)
    path.write_bytes(bytes(data))


def _storage_problems(cluster: LocalCluster, capsys: pytest.CaptureFixture[str]) -> list[list[str]]:
    certs = cluster.cert_dir
    args = ["status", "--cluster", str(cluster.cluster_file), "--json"]
    main([*args, "--cert", str(certs / "model-owner.pem"), "--key", str(certs / "model-owner.key")])
    return [server["storage_problems"] for server in json.loads(capsys.readouterr().out)["servers"]]


@pytest.mark.parametrize(
    ("dataset", "server", "bit"),
    [("bank-1/x", 1, 8 * 16 * 500 + 127), ("model-owner/c", 2, 6)],
    ids=["feature share", "intercept share"],
)
def test_a_flipped_bit_in_a_stored_share_fails_the_job_on_every_server(
    local: LocalCluster, capsys: pytest.CaptureFixture[str], dataset: str, server: int, bit: int
) -> None:
    """The issue: one flipped bit in a feature share turned 32.06 into 1.75e9, one in an
    intercept share shifted every prediction by -256, and nothing noticed. Now: an error
    naming the server and the dataset, and no number."""
    expected = _predict_setup(local)
    with local.client("model-owner") as owner:  # the healthy cluster predicts correctly
        assert np.allclose(owner.fetch(owner.run(PREDICT, PREDICT_INPUTS)), expected, atol=1e-6)
    local.kill(server)  # a stopped server: its cache is gone, the damage is found when the file is read
    _flip_stored_bit(local, server, dataset, bit)
    local.start_server(server)
    local.wait_ready(30)
    job_id = f"after-the-damage-{server}"
    with local.client("model-owner") as owner, pytest.raises(MpcError) as caught:
        owner.run_and_fetch(PREDICT, PREDICT_INPUTS, job_id=job_id)
    message = str(caught.value)
    assert f"dataset {dataset} on server-{server} is damaged" in message, message
    assert "failed its checksum" in message and "no result was computed" in message
    log = local.log_path(server).read_text()  # the damaged server refused, and told its peers
    assert f"job {job_id} failed: dataset {dataset} on server-{server} is damaged" in log, log[-4000:]
    for index in {0, 1, 2} - {server}:
        log = local.log_path(index).read_text()
        # A peer that needs no message from the damaged server may finish its part first (from
        # intact shares, and nobody can fetch the output without the damaged server); the others
        # end the job when told.
        finished = f"job {job_id} finished" in log
        assert finished or f"server server-{server} aborted the job: dataset {dataset}" in log, log[-4000:]
    problems = _storage_problems(local, capsys)
    assert any("1 stored share file is damaged" in p for p in problems[server]), problems
    assert not any(problems[i] for i in {0, 1, 2} - {server})
