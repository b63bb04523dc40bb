"""Upload and reveal variants: plain and seed-compressed uploads, inline and
streamed outputs, full and digest-checked reveals, traffic counters (the
caller's own in ``GetServerInfo``, peer links' in the Prometheus metrics)."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from mpc_cli.local_cluster import LocalCluster
from mpc_client import Grant, NotFoundError
from mpc_client._fetch import OutputPart, reconstruct_output
from mpc_core.ring import RING128
from mpc_proto.v1 import client_service_pb2 as pb
from mpc_proto.v1 import types_pb2

pytestmark = pytest.mark.e2e
MUL = "elementwise.multiply"


@pytest.mark.parametrize("compress", [True, False])
def test_both_upload_forms_give_the_same_result(cluster: LocalCluster, compress: bool) -> None:
    values = np.linspace(-100, 100, 3001)
    with cluster.client("model-owner") as owner:
        owner.upload(
            f"lin-{compress}", values, grants=[Grant("model-owner", MUL)], compress=compress, overwrite=True
        )
        _, squared = owner.run_and_fetch(MUL, {"x": f"lin-{compress}", "y": f"lin-{compress}"})
    assert np.allclose(squared, values * values, atol=1e-2)


def test_seed_compression_cuts_upload_traffic(cluster: LocalCluster) -> None:
    values = np.ones(200_000)
    with cluster.client("bank-1") as bank:
        sent = []
        for compress in (False, True):
            before = sum(info.client_bytes_received for info in bank.server_info())
            bank.upload(f"ones-{compress}", values, compress=compress, overwrite=True)
            sent.append(sum(info.client_bytes_received for info in bank.server_info()) - before)
    plain, compressed = sent
    element = 16  # bytes of a Z_2^128 element, the default ring
    assert plain >= 6 * element * values.size  # three servers, two components each
    assert compressed < 2 * element * values.size * 1.01  # two vectors in all
    assert compressed < plain / 2.9


@pytest.mark.parametrize("n", [1, 65_536, 65_537, 400_000])
def test_inline_and_streamed_outputs(cluster: LocalCluster, n: int) -> None:
    values = (np.arange(n) % 97) / 4.0
    with cluster.client("model-owner") as owner:
        owner.upload(f"seq-{n}", values, grants=[Grant("model-owner", MUL)], overwrite=True)
        job, squared = owner.run_and_fetch(MUL, {"x": f"seq-{n}", "y": f"seq-{n}"}, keep=True)
        fetched = owner.fetch(job, release=True)
        with pytest.raises(NotFoundError, match="released or expired"):
            owner.fetch(job)
    assert np.array_equal(squared, values * values)
    assert np.array_equal(fetched, squared)


def test_run_and_fetch_releases_large_outputs(cluster: LocalCluster) -> None:
    values = np.ones(70_000)
    with cluster.client("model-owner") as owner:
        owner.upload("ones-70k", values, grants=[Grant("model-owner", MUL)], overwrite=True)
        job, _ = owner.run_and_fetch(MUL, {"x": "ones-70k", "y": "ones-70k"})
        with pytest.raises(NotFoundError):
            owner.fetch(job)


def test_run_and_fetch_drops_small_outputs_unless_kept(cluster: LocalCluster) -> None:
    """Returned inline without ``keep``: dropped within about a second, never written."""
    with cluster.client("model-owner") as owner:
        owner.upload("small", [1.5, 2.0], grants=[Grant("model-owner", MUL)], overwrite=True)
        dropped, _ = owner.run_and_fetch(MUL, {"x": "small", "y": "small"}, job_id="small-dropped")
        kept, _ = owner.run_and_fetch(MUL, {"x": "small", "y": "small"}, job_id="small-kept", keep=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                owner.fetch(dropped)
            except NotFoundError:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the returned output was still on the servers after 10 s")
        assert owner.fetch(kept).tolist() == [2.25, 4.0]
    data = cluster.directory / "data"
    kept_files = "server-*/outputs/model-owner/small-kept*"  # outputs are kept per submitter
    while len(list(data.glob(kept_files))) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)  # the kept copy is written in the background too
    assert len(list(data.glob(kept_files))) == 3
    assert not list(data.glob("server-*/outputs/**/small-dropped*")), "a dropped output was written"


def test_full_reveal_sends_both_copies(cluster: LocalCluster) -> None:
    """Without second_as_digest each server streams both of its components."""
    values = np.array([1.5, -2.25, 3.0])
    with cluster.client("model-owner") as owner:
        owner.upload("three-values", values, grants=[Grant("model-owner", MUL)], overwrite=True)
        job = owner.run(MUL, {"x": "three-values", "y": "three-values"})
        parts = []
        for connection in owner._connections:
            stream = connection.stub.FetchOutput(pb.FetchOutputRequest(job_id=job.job_id), timeout=10)
            header = next(stream).header
            (chunk,) = [message.chunk for message in stream]
            shape = tuple(header.shape)
            parts.append(
                OutputPart(
                    connection.name,
                    shape,
                    header.fractional_bits,
                    RING128,
                    RING128.from_wire(chunk.first),
                    RING128.from_wire(chunk.second),
                )
            )
    assert reconstruct_output(parts).tolist() == (values * values).tolist()


def test_inline_output_only_for_the_receiver(cluster: LocalCluster) -> None:
    """A job submitted for someone else: the output is the receiver's, never the submitter's."""
    # bank-2 lets model-owner receive the job's output and lets itself submit such jobs
    grant = Grant("model-owner", MUL, submitters=("bank-2",))
    with cluster.client("bank-2") as bank:
        bank.upload("for-owner", [2.0], grants=[grant], overwrite=True)
        spec = pb.JobSpec(
            job_id="inline-for-someone-else",
            program=MUL,
            inputs=[
                pb.JobInput(role="x", dataset=types_pb2.DatasetRef(owner="bank-2", name="for-owner")),
                pb.JobInput(role="y", dataset=types_pb2.DatasetRef(owner="bank-2", name="for-owner")),
            ],
            receiver="model-owner",
        )
        responses = [
            c.stub.RunJob.future(pb.RunJobRequest(job=spec, return_output=True), timeout=10)
            for c in bank._connections
        ]
        assert all(not r.result().HasField("output_share") for r in responses)
        # Nor can the submitter fetch it: for it, the output does not exist, word for word.
        with pytest.raises(NotFoundError) as not_its_own:
            bank.fetch("inline-for-someone-else")
        with pytest.raises(NotFoundError) as missing:
            bank.fetch("inline-never-ran")
        assert str(not_its_own.value) == str(missing.value).replace(
            "inline-never-ran", "inline-for-someone-else"
        )
    with cluster.client("model-owner") as owner:
        assert owner.fetch("inline-for-someone-else", submitter="bank-2").tolist() == [4.0]


def _peer_bytes(cluster: LocalCluster) -> dict[tuple[str, str, str], float]:
    """(server, "sent" or "received", peer) -> bytes, from each server's Prometheus metrics."""
    counted: dict[tuple[str, str, str], float] = {}
    for index in range(3):
        for key, value in cluster.scrape(index).items():
            for direction in ("sent", "received"):
                prefix = f"mpc_peer_bytes_{direction}_total{{peer="
                if key.startswith(prefix):
                    counted[f"server-{index}", direction, key.removeprefix(prefix).rstrip("}")] = value
    return counted


def test_servers_count_their_traffic(tmp_path: Path) -> None:
    n = 100_000
    metered = LocalCluster(tmp_path, clients=("model-owner",), metrics=True)
    metered.start()
    try:
        with metered.client("model-owner") as owner:
            owner.upload("counted", np.ones(n), grants=[Grant("model-owner", MUL)])
            before = _peer_bytes(metered)
            job = owner.run(MUL, {"x": "counted", "y": "counted"})
            after = _peer_bytes(metered)
    finally:
        metered.stop()
    servers = [f"server-{index}" for index in range(3)]
    assert {(s, d, p) for s, d, p in after} == {
        (s, d, p) for s in servers for d in ("sent", "received") for p in servers if p != s
    }
    delta = {key: value - before.get(key, 0) for key, value in after.items()}
    for server in servers:
        to_peers = {peer: sent for (s, d, peer), sent in delta.items() if s == server and d == "sent"}
        sent = sum(to_peers.values())
        # n Z_2^128 elements of the product to one peer, plus the agreement round and framing
        assert 16 * n <= sent <= 16 * n * 1.01 + 1000
        assert max(to_peers.values()) >= 16 * n and min(to_peers.values()) <= 1000
        # what one server counts as sent, the peer counts as received
        for peer, count in to_peers.items():
            assert delta[peer, "received", server] == count
        # the job's own account: its payload, within the transport's count
        stats = job.stats[server]
        assert 16 * n <= stats.bytes_sent_to_peers <= sent
        assert 16 * n <= stats.bytes_received_from_peers


def test_a_server_refuses_a_wrong_seed_length(cluster: LocalCluster) -> None:
    with cluster.client("bank-1") as bank:
        header = pb.UploadHeader(
            name="bad-seed",
            shape=[2],
            fractional_bits=32,
            ring=types_pb2.RING_Z2_128,
            magnitude_bits=40,
            upload_id=b"u" * 16,
            first_seed=b"s" * 8,
        )
        with pytest.raises(grpc.RpcError) as caught:
            bank._connections[0].stub.UploadDataset(iter([pb.UploadDatasetRequest(header=header)]), timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "seeds must be 16 bytes" in (caught.value.details() or "")
