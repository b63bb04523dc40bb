"""Bounded memory per job, on real processes: streamed predictions, refusals, checksums of chunked reads.

The servers run with a deliberately small per-job budget (``--job-memory-bytes``).
A prediction over 2^22 rows x 4 features (seeded uploads: 512 MiB of shares per
server if loaded whole) is streamed from the share files in row chunks and comes
out right, while each server's peak RSS stays within its RSS before the job (the
process and its dataset cache) plus the budget. A program that cannot stream
over the same inputs is refused before anything is allocated, and a flipped bit
in a file read in chunks still fails the job with DATA_LOSS and no output.
The issue's amplification case: a dot product over two seeded blocks of 2^24
rows (1 GiB of shares per server if loaded whole; jobs over such blocks took
2.7 GiB per server before) stays within the budget, and a prediction over
them, whose output alone would exceed the budget, is refused before anything
is allocated.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from mpc_cli.local_cluster import LocalCluster
from mpc_client import Grant
from mpc_client._jobs import job_spec
from mpc_core.errors import MpcError
from mpc_proto.v1 import client_service_pb2 as pb
from mpc_proto.v1 import client_service_pb2_grpc as pb_grpc
from mpc_server.service import share_files

pytestmark = pytest.mark.e2e
BUDGET = 256 << 20
ROWS, FEATURES = 1 << 22, 4
PREDICT = "linear_regression.predict"
OWNER = "model-owner"
GRANTS = [Grant(OWNER, PREDICT), Grant(OWNER, "stats.summary")]


@pytest.fixture(scope="module")
def small_budget(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    args = ["--job-memory-bytes", str(BUDGET)]
    local = LocalCluster(
        tmp_path_factory.mktemp("budget"), clients=(OWNER,), server_args=args, log_level="INFO"
    )
    local.start()
    yield local
    local.stop()


def _status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {key} for process {pid}")


def _pids(cluster: LocalCluster) -> list[int]:
    return [process.pid for process in cluster.processes if process is not None]


def _restart_all(cluster: LocalCluster) -> None:
    """Restart every server (SIGTERM): their caches are empty, the jobs read the files."""
    for index in range(3):
        cluster.kill(index, signal.SIGTERM)
        cluster.start_server(index)
    cluster.wait_ready(30)


@pytest.fixture(scope="module")
def features(small_budget: LocalCluster) -> tuple[np.ndarray, np.ndarray, float]:
    """Four feature columns of 2^22 rows (seeded uploads), weights and an intercept."""
    x = np.linspace(-50.0, 50.0, ROWS * FEATURES).reshape(FEATURES, ROWS).T.copy()
    x[:, 1] = np.sin(np.arange(ROWS) * 0.001) * 7.0
    w, c = np.array([0.25, -1.5, 2.0, 0.125]), 3.75
    with small_budget.client(OWNER, timeout=300) as owner:
        for column in range(FEATURES):
            owner.upload(f"x{column}", x[:, column], grants=GRANTS)
        owner.upload("w", w, grants=GRANTS)
        owner.upload("c", c, grants=GRANTS)
    return x, w, c


INPUTS = {"features": [f"x{i}" for i in range(FEATURES)], "weights": "w", "intercept": "c"}


def test_a_prediction_over_more_than_the_budget_is_streamed_and_right(
    small_budget: LocalCluster, features: tuple[np.ndarray, np.ndarray, float]
) -> None:
    x, w, c = features
    _restart_all(small_budget)
    pids = _pids(small_budget)
    before = [_status(pid, "VmRSS:") for pid in pids]
    for pid in pids:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS now
    with small_budget.client(OWNER, timeout=300) as owner:
        job, predictions = owner.run_and_fetch(PREDICT, INPUTS, job_id="streamed")
    peaks = [_status(pid, "VmHWM:") for pid in pids]
    assert predictions.shape == (ROWS,)
    assert np.abs(predictions - (x @ w + c)).max() < 1e-6
    # Whole, the job would hold 512 MiB of input shares and 128 MiB of output per server. Streamed:
    # the output (128 MiB), two 16 MiB pieces on the wire and chunks of rows, within the budget.
    for server, (start, peak) in enumerate(zip(before, peaks, strict=True)):
        print(f"server-{server}: RSS {start >> 20} MiB before the job, peak {peak >> 20} MiB")
        assert peak - start <= BUDGET, f"server-{server}: {start >> 20} -> {peak >> 20} MiB"
    # 2^22 outputs travel in four pieces of 2^20, pipelined: one exchange each after the agreement.
    for stats in job.stats.values():
        assert stats.rounds == 1 + 4
    for index in range(3):
        log = small_budget.log_path(index).read_text()
        assert "job streamed streams its rows in chunks of" in log and "job streamed finished" in log


def test_a_job_that_cannot_stream_is_refused_before_anything_is_allocated(
    small_budget: LocalCluster, features: tuple[np.ndarray, np.ndarray, float]
) -> None:
    pids = _pids(small_budget)
    before = [_status(pid, "VmRSS:") for pid in pids]
    with small_budget.client(OWNER, timeout=60) as owner, pytest.raises(MpcError) as caught:
        owner.run("stats.summary", {"columns": INPUTS["features"]}, job_id="too-big")
    message = str(caught.value)
    assert caught.value.grpc_status == "RESOURCE_EXHAUSTED", message
    assert "more than its per-job memory budget of 256 MiB" in message, message
    assert "--job-memory-bytes" in message and "cannot stream its inputs" in message
    after = [_status(pid, "VmRSS:") for pid in pids]
    assert all(a - b < 32 << 20 for a, b in zip(after, before, strict=True)), (before, after)
    for index in range(3):  # refused by every server before the agreement: nothing was read or audited
        assert "job too-big started" not in small_budget.log_path(index).read_text()


def test_a_flipped_bit_in_a_file_read_in_chunks_is_data_loss_and_no_output(
    small_budget: LocalCluster,
) -> None:
    z = np.linspace(1.0, 100.0, ROWS)
    inputs = {"features": ["z"], "weights": "w1"}
    with small_budget.client(OWNER, timeout=300) as owner:
        owner.upload("z", z, grants=GRANTS)
        owner.upload("w1", [2.0], grants=GRANTS)
    server = 1  # holds component 2 of z in full
    small_budget.kill(server)
    path = small_budget.directory / "data" / f"server-{server}" / "datasets" / OWNER / "z.share"
    layout = share_files.inspect(path)
    assert layout.stored == 1
    data = bytearray(path.read_bytes())
    data[layout.offset + 16 * (ROWS // 2) + 5] ^= 0x10  # a row in the middle: not the last chunk
    path.write_bytes(bytes(data))
    small_budget.start_server(server)
    small_budget.wait_ready(30)
    with small_budget.client(OWNER, timeout=300) as owner:
        with pytest.raises(MpcError) as caught:
            owner.run(PREDICT, inputs, job_id="damaged")
        message = str(caught.value)
        assert caught.value.grpc_status in {"DATA_LOSS", "ABORTED"}, message
        assert f"dataset {OWNER}/z on server-{server} is damaged" in message, message
        assert "failed its checksum" in message
        with pytest.raises(MpcError):  # no output can be fetched: the damaged server has none
            owner.fetch("damaged")
    log = small_budget.log_path(server).read_text()
    assert f"job damaged failed: dataset {OWNER}/z on server-{server} is damaged" in log, log[-3000:]
    # Server 0 waits for the last piece of z_1, which server 1 holds back until its checksum passed:
    # it can never hold a complete share computed from the damage.
    log = small_budget.log_path(0).read_text()
    assert "job damaged finished" not in log and f"server server-{server} aborted the job" in log, log[-3000:]


BLOCK = 1 << 24


@pytest.fixture(scope="module")
def blocks(small_budget: LocalCluster) -> tuple[np.ndarray, np.ndarray]:
    """Two seeded blocks of 2^24 rows: server 0 holds two 320-byte files, the others one seed each."""
    a = np.linspace(-1.0, 1.0, BLOCK)
    b = np.cos(np.arange(BLOCK) * 1e-4) * 0.5
    with small_budget.client(OWNER, timeout=300) as owner:
        owner.upload("a", a, grants=[Grant(OWNER, "dot"), Grant(OWNER, PREDICT)])
        owner.upload("b", b, grants=[Grant(OWNER, "dot"), Grant(OWNER, PREDICT)])
        owner.upload("w2", [1.0, -1.0], grants=[Grant(OWNER, PREDICT)])
    return a, b


def test_a_job_over_seeded_blocks_of_2_24_rows_stays_within_the_budget(
    small_budget: LocalCluster, blocks: tuple[np.ndarray, np.ndarray]
) -> None:
    """The issue's amplification case: loaded whole, 1 GiB of shares per server (2.7 GiB measured before)."""
    a, b = blocks
    _restart_all(small_budget)  # nothing cached: the rows come from the files, seeds expanded by range
    pids = _pids(small_budget)
    before = [_status(pid, "VmRSS:") for pid in pids]
    for pid in pids:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    with small_budget.client(OWNER, timeout=300) as owner:
        _, value = owner.run_and_fetch("dot", {"x": "a", "y": "b"}, job_id="seeded-dot")
    peaks = [_status(pid, "VmHWM:") for pid in pids]
    assert abs(float(value) - float(a @ b)) < 1e-3 * max(1.0, abs(float(a @ b)))
    for server, (start, peak) in enumerate(zip(before, peaks, strict=True)):
        print(f"server-{server}: RSS {start >> 20} MiB before the seeded dot, peak {peak >> 20} MiB")
        assert peak - start <= BUDGET, f"server-{server}: {start >> 20} -> {peak >> 20} MiB"
    for index in range(3):
        assert "job seeded-dot streams its rows in chunks of" in small_budget.log_path(index).read_text()


def test_a_prediction_whose_output_alone_exceeds_the_budget_is_refused_before_allocating(
    small_budget: LocalCluster, blocks: tuple[np.ndarray, np.ndarray]
) -> None:
    pids = _pids(small_budget)
    before = [_status(pid, "VmRSS:") for pid in pids]
    inputs = {"features": ["a", "b"], "weights": "w2"}
    with small_budget.client(OWNER, timeout=60) as owner, pytest.raises(MpcError) as caught:
        owner.run(PREDICT, inputs, job_id="output-too-big")
    message = str(caught.value)
    assert caught.value.grpc_status == "RESOURCE_EXHAUSTED", message
    assert "per-job memory budget of 256 MiB" in message and "its outputs alone are too large" in message
    after = [_status(pid, "VmRSS:") for pid in pids]
    assert all(a - b < 32 << 20 for a, b in zip(after, before, strict=True)), (before, after)


def test_a_job_sent_to_one_server_only_holds_no_input_memory_and_its_server_stays_responsive(
    small_budget: LocalCluster, features: tuple[np.ndarray, np.ndarray, float]
) -> None:
    """The issue's case: jobs sent to one server held 2.6 GiB there until their deadline."""
    _restart_all(small_budget)  # empty caches: loading the inputs would show in RSS
    pid = _pids(small_budget)[1]
    ca = (small_budget.cert_dir / "ca.pem").read_bytes()
    key, cert = ((small_budget.cert_dir / f"{OWNER}{ext}").read_bytes() for ext in (".key", ".pem"))
    options = [("grpc.ssl_target_name_override", "server-1")]
    credentials = grpc.ssl_channel_credentials(ca, key, cert)
    spec = job_spec(OWNER, PREDICT, INPUTS, receiver=None, job_id=None, output_fractional_bits=None,
                    parameters=None, keep=None)  # fmt: skip
    before = _status(pid, "VmRSS")
    with grpc.secure_channel(small_budget.addresses[1], credentials, options) as channel:
        stub = pb_grpc.ClientServiceStub(channel)
        pending = stub.RunJob.future(pb.RunJobRequest(job=spec), timeout=6)
        slowest = 0.0
        while not pending.done():  # the server answers other calls at once meanwhile
            started = time.monotonic()
            stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=2)
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(0.2)
        with pytest.raises(grpc.RpcError) as caught:
            pending.result()
    assert caught.value.code() in {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE}
    assert _status(pid, "VmHWM") - before < 64 << 20  # 128 MiB of shares per input if loaded
    assert slowest < 1.0
