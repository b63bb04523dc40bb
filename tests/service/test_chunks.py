"""Jobs within a memory budget (``service.chunks``), in process: streamed results are the unchunked ones.

Three job services over the in-memory network, datasets stored as a seeded
upload stores them (server 0 keeps both seeds, servers 1 and 2 one seed and
``x_2``). Every server is restarted (fresh stores, empty caches) before a
job, so streamed rows come from the share files (``share_ranges.FileRows``,
seeded components expanded by range). The outputs are compared as ring
elements, bit for bit, with the unchunked path, for chunk sizes and piece
sizes drawn by hypothesis.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpc_core.errors import ResourceLimitError
from mpc_core.fixed_point import FixedPoint
from mpc_core.prg import prg_elements
from mpc_core.sharing import reconstruct_checked, split_seeded
from mpc_core.types import PARTIES
from mpc_server.service import chunks
from mpc_server.service.jobs import JobLimits
from mpc_server.service.model import DatasetRef, JobResult
from mpc_server.service.programs import row_chunks

from .conftest import Cluster, Inputs, read_access

ROWS = 300
PREDICT, DOT, MULTIPLY = "linear_regression.predict", "dot", "elementwise.multiply"
JOBS: dict[str, Inputs] = {
    PREDICT: {"features": ["bank-1/x", "bank-2/z"], "weights": "model-owner/w", "intercept": "model-owner/c"},
    DOT: {"x": "bank-1/v", "y": "bank-2/u"},
    MULTIPLY: {"x": "bank-1/v", "y": "bank-2/u"},
}


def _put_seeded(cluster: Cluster, ref: str, values: np.ndarray) -> None:
    """Store ``values`` on the three servers the way a seed-compressed upload stores them."""
    ring, owner, name = cluster.ring, *ref.split("/")
    fixed = FixedPoint(32, ring)
    encoded, magnitude = fixed.encode_bounded(values)
    split = split_seeded(ring, encoded)
    count = int(values.size)
    x0, x1 = prg_elements(ring, split.seed_0, count), prg_elements(ring, split.seed_1, count)
    layouts = [((split.seed_0, split.seed_1), x0, x1), ((split.seed_1, b""), x1, split.x_2),
               ((b"", split.seed_0), split.x_2, x0)]  # fmt: skip
    upload_id = secrets.token_bytes(16)
    grants = tuple(read_access("model-owner", program) for program in (*JOBS, "stats.summary"))
    for server, (seeds, first, second) in zip(cluster.servers, layouts, strict=True):
        store = server.datasets
        pending = store.create(
            DatasetRef(owner, name), shape=values.shape, ring=ring, fractional_bits=32,
            magnitude_bits=magnitude, grants=grants, upload_id=upload_id, count=count, seeds=seeds,
        )  # fmt: skip
        pending.first[:], pending.second[:] = first, second
        store.publish(pending, store.write(pending), overwrite=True)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Datasets of 300 rows on the three servers' disks (seeded, as uploads are)."""
    path = tmp_path_factory.mktemp("chunks")
    cluster, values = Cluster(path), np.linspace(-20.0, 20.0, ROWS * 5)
    _put_seeded(cluster, "bank-1/x", values[: ROWS * 3].reshape(ROWS, 3))
    _put_seeded(cluster, "bank-2/z", np.sin(values[: ROWS * 2]).reshape(ROWS, 2) * 9.0)
    _put_seeded(cluster, "bank-1/v", values[ROWS * 2 : ROWS * 3] * 1.5)
    _put_seeded(cluster, "bank-2/u", np.cos(values[:ROWS]) * 4.0)
    _put_seeded(cluster, "model-owner/w", np.array([0.5, -1.25, 2.0, 0.375, -3.0]))
    _put_seeded(cluster, "model-owner/c", np.array(7.5))
    return path


def _ring_outputs(cluster: Cluster, result: JobResult) -> Mapping[str, bytes]:
    """Every output of ``result`` reconstructed (checked reveal), as the ring elements' bytes."""
    outputs = {}
    for output in result.outputs:
        parts = [
            s.outputs.fetch("model-owner", "model-owner", result.job_id, output.name) for s in cluster.servers
        ]
        outputs[output.name] = reconstruct_checked(
            [p.share for p in parts], [f"server-{i}" for i in PARTIES]
        ).tobytes()
    return outputs


def _run(root: Path, program: str, limits: JobLimits | None = None) -> Mapping[str, bytes]:
    cluster = Cluster(root)  # restarted servers: empty caches, the files are read
    for server in cluster.servers:
        server.jobs.limits = limits or JobLimits()
    return _ring_outputs(cluster, cluster.run(program, JOBS[program]))


def _forced(chunk_rows: int) -> object:
    """``memory_plan`` streaming every streamable job ``chunk_rows`` rows at a time."""
    real = chunks.memory_plan

    def plan(job: object, budget: int, server: str = "this server") -> chunks.MemoryPlan:
        whole = real(job, 1 << 50, server)  # type: ignore[arg-type]
        return replace(whole, budget=budget, streamed_bytes=whole.whole_bytes, chunk_rows=chunk_rows)

    return plan


@pytest.fixture(scope="module")
def unchunked(root: Path) -> Iterator[dict[tuple[str, int], Mapping[str, bytes]]]:
    """The outputs of the unchunked path, by (program, piece size), computed once."""
    yield {}


def _whole(
    cache: dict[tuple[str, int], Mapping[str, bytes]], root: Path, program: str, piece: int
) -> Mapping[str, bytes]:
    if (program, piece) not in cache:
        with mock.patch.object(row_chunks, "PIECE_ELEMENTS", piece):
            cache[(program, piece)] = _run(root, program)
    return cache[(program, piece)]


@pytest.mark.parametrize("program", list(JOBS))
def test_the_row_separable_programs_are_right_and_deterministic(root: Path, program: str) -> None:
    """The unchunked path itself: twice the same ring elements (no randomness reaches the outputs)."""
    assert _run(root, program) == _run(root, program)


def test_a_streamed_prediction_has_the_expected_values(root: Path) -> None:
    values = np.linspace(-20.0, 20.0, ROWS * 5)
    x = np.hstack([values[: ROWS * 3].reshape(ROWS, 3), np.sin(values[: ROWS * 2]).reshape(ROWS, 2) * 9.0])
    cluster = Cluster(root)
    with mock.patch.object(chunks, "memory_plan", _forced(17)):
        result = cluster.run(PREDICT, JOBS[PREDICT])
    expected = x @ np.array([0.5, -1.25, 2.0, 0.375, -3.0]) + 7.5
    np.testing.assert_allclose(cluster.fetch(result), expected, atol=1e-6)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    program=st.sampled_from(list(JOBS)),
    chunk_rows=st.integers(min_value=1, max_value=ROWS + 5),
    piece=st.sampled_from([7, 64, 256, 1 << 20]),
)
def test_streamed_outputs_are_bit_identical_to_the_unchunked_ones(
    root: Path,
    unchunked: dict[tuple[str, int], Mapping[str, bytes]],
    program: str,
    chunk_rows: int,
    piece: int,
) -> None:
    expected = _whole(unchunked, root, program, piece)
    opened = mock.Mock(wraps=chunks.open_streams)
    with (
        mock.patch.object(row_chunks, "PIECE_ELEMENTS", piece),
        mock.patch.object(chunks, "memory_plan", _forced(chunk_rows)),
        mock.patch.object(chunks, "open_streams", opened),
    ):
        assert _run(root, program) == expected
    assert opened.call_count == 3  # every server streamed its rows from its files


def test_a_budget_below_the_whole_job_streams_it_with_the_same_result(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The real memory plan: a budget below the whole job streams the rows from the files, in chunks."""
    planned: list[object] = []
    real = chunks.memory_plan

    def spy(job: object, budget: int, server: str = "this server") -> chunks.MemoryPlan:
        planned.append(job)
        return real(job, budget, server)  # type: ignore[arg-type]

    with mock.patch.object(chunks, "memory_plan", spy):
        expected = _run(root, PREDICT)
    job = planned[0]
    whole = real(job, 1 << 50).whole_bytes  # type: ignore[arg-type]
    budget = whole - 30_000
    with mock.patch.object(chunks, "MIN_CHUNK_ROWS", 16):
        plan = real(job, budget)  # type: ignore[arg-type]
        assert plan.streamed and 16 <= plan.chunk_rows < ROWS and plan.estimate <= budget < whole
        with caplog.at_level(logging.INFO, logger=chunks.__name__):
            assert _run(root, PREDICT, JobLimits(memory_bytes=budget)) == expected
    assert caplog.text.count(f"streams its rows in chunks of {plan.chunk_rows}") == 3, caplog.text
    with pytest.raises(ResourceLimitError, match="more than its per-job memory budget"):  # 1024-row chunks
        _run(root, PREDICT, JobLimits(memory_bytes=budget))


def test_a_job_that_cannot_stream_is_refused_naming_the_budget_before_reading_anything(root: Path) -> None:
    cluster = Cluster(root)
    budget = chunks.JOB_OVERHEAD_BYTES + (1 << 10)
    for server in cluster.servers:
        server.jobs.limits = JobLimits(memory_bytes=budget)
    reads = mock.Mock(side_effect=AssertionError("a refused job read a dataset"))
    with mock.patch.object(chunks, "load_inputs", reads), pytest.raises(ResourceLimitError) as caught:
        cluster.run("stats.summary", {"columns": ["bank-1/x"]})
    message = str(caught.value)
    assert caught.value.grpc_status == "RESOURCE_EXHAUSTED"
    assert "per-job memory budget of 16 MiB" in message and "--job-memory-bytes" in message, message
    assert "cannot stream its inputs" in message
    reads.assert_not_called()


def test_a_streamed_job_whose_outputs_alone_exceed_the_budget_is_refused(root: Path) -> None:
    with pytest.raises(ResourceLimitError, match="its outputs alone are too large for it"):
        _run(root, MULTIPLY, JobLimits(memory_bytes=chunks.JOB_OVERHEAD_BYTES + 100))
