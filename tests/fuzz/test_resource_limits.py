"""Declared sizes cost nothing until the data arrives; hostile names cost nothing at all.

Memory is read from ``/proc/<pid>/status`` (VmRSS) of the real server
processes before and after a burst. The point is the ratio: terabytes and
exabytes are declared, a few megabytes may move.
"""

from __future__ import annotations

import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from mpc_proto.v1 import client_service_pb2 as pb
from mpc_proto.v1 import types_pb2

from .conftest import IA, MAX_ELEMENTS, PROGRAMS, RE, Wire, metric_values

pytestmark = pytest.mark.e2e
MB = 1 << 20
ALLOWED_GROWTH = 50 * MB

OVERSIZE_SHAPES = (
    [MAX_ELEMENTS + 1],
    [(1 << 64) - 1],
    [1 << 40, 1 << 20],
    [1 << 13] * 3,
    [MAX_ELEMENTS, 2],
    [1 << 32] * 3,
    [2, 2, 2, 2, 2, 2, 1 << 22],
)


def _header_only(shape: list[int], **fields: object) -> list[pb.UploadDatasetRequest]:
    header = pb.UploadHeader(
        name=f"big-{secrets.token_hex(4)}",
        shape=shape,
        fractional_bits=32,
        ring=types_pb2.RING_Z2_128,
        magnitude_bits=40,
        upload_id=secrets.token_bytes(16),
        **fields,  # type: ignore[arg-type]
    )
    return [pb.UploadDatasetRequest(header=header)]


def test_a_burst_of_oversize_declarations_allocates_nothing(wire: Wire, healthy) -> None:
    before = [wire.rss(server) for server in range(3)]
    declared = 0
    jobs = []
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        for round_ in range(30):
            for shape in OVERSIZE_SHAPES:
                seeds = {"first_seed": bytes(16), "second_seed": bytes(16)} if round_ % 2 else {}
                server = round_ % 3
                jobs.append(pool.submit(wire.upload, server, _header_only(shape, **seeds), timeout=5))
                declared += 16 * min(_count(shape), 1 << 64)
        outcomes = [job.result() for job in jobs]
    assert {o.code for o in outcomes} == {RE}, [str(o) for o in outcomes if o.code is not RE][:3]
    assert time.monotonic() - started < 20
    growth = [wire.rss(server) - b for server, b in enumerate(before)]
    assert max(growth) < ALLOWED_GROWTH, (
        f"RSS grew by {[g // MB for g in growth]} MB after declaring {declared:.3g} bytes"
    )
    healthy()


def _count(shape: list[int]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def test_declared_but_unsent_data_costs_no_memory(wire: Wire) -> None:
    """Headers at the limit (2 GiB of shares each) whose data never comes."""
    before = [wire.rss(server) for server in range(3)]
    outcomes = [
        wire.upload(server, _header_only([MAX_ELEMENTS]), timeout=10) for server in (0, 1, 2, 0, 1, 2)
    ]
    assert {o.code for o in outcomes} == {IA}, [str(o) for o in outcomes]
    assert all("ended after 0" in o.details for o in outcomes), [o.details for o in outcomes]
    growth = [wire.rss(server) - b for server, b in enumerate(before)]
    assert max(growth) < ALLOWED_GROWTH, f"RSS grew by {[g // MB for g in growth]} MB"


def test_a_large_seeded_header_does_not_stall_the_server(wire: Wire, healthy) -> None:
    """A 60-byte header asking for the most seed-expanded words allowed must not freeze the loop.

    While the server expands the seed (and whatever it then does with the
    upload), it must keep answering other calls: peers' protocol messages
    and other clients' jobs run on the same loop.
    """
    server = 1
    stream = _header_only([MAX_ELEMENTS], first_seed=secrets.token_bytes(16))
    done = threading.Event()

    def upload() -> None:
        wire.upload(server, stream, timeout=30)
        done.set()

    worker = threading.Thread(target=upload)
    latencies = []
    worker.start()
    time.sleep(0.05)
    while not done.is_set():
        started = time.monotonic()
        outcome = wire.info(server)
        latencies.append(time.monotonic() - started)
        assert outcome.code.name == "OK", str(outcome)
        time.sleep(0.02)
    worker.join(30)
    assert max(latencies, default=0.0) < 0.5, (
        f"GetServerInfo took up to {max(latencies):.2f} s while a seeded header was expanded: "
        "the event loop was blocked"
    )
    healthy()


def test_unknown_program_names_do_not_grow_the_metrics(wire: Wire) -> None:
    """mpc_jobs_total is labelled by program; a client must not be able to mint labels."""
    for k in range(40):
        spec = pb.JobSpec(job_id=f"label-{secrets.token_hex(6)}", program=f"made-up-{k}", receiver="fuzzer")
        assert wire.run_job(0, pb.RunJobRequest(job=spec)).code is IA
    samples = metric_values(wire.metrics(0), "mpc_jobs_total")
    programs = {label.split('program="', 1)[1].split('"', 1)[0] for label in samples if "program=" in label}
    unknown = programs - set(PROGRAMS)
    assert len(unknown) <= 1, (
        f"{len(unknown)} client-chosen program labels in mpc_jobs_total, e.g. {sorted(unknown)[:3]}"
    )
