"""UploadDataset under hostile input: random headers, mangled streams, replays.

The oracle below is the upload contract (protos/mpc/v1/client_service.proto,
README "SDK"), written independently of the server code. For a request it
computes the *set* of refusals the request deserves; the server must answer
with one of them (any one: the order in which a server checks is its own
business), never with UNKNOWN or INTERNAL, and never accept a malformed
upload. Every fuzzed stream is malformed on purpose: a well-formed one would
be committed (and, with the cross-server consistency check, wait for the two
other servers), which ``test_replays`` covers through all three servers.
"""

from __future__ import annotations

import itertools
import math
import secrets
import time
from dataclasses import dataclass

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mpc_core.fixed_point import FixedPoint
from mpc_core.ring import RING128
from mpc_core.sharing import share
from mpc_proto.v1 import client_service_pb2 as pb
from mpc_proto.v1 import types_pb2

from .conftest import (
    AE,
    DOCUMENTED,
    FUZZER,
    IA,
    MAX_DIMENSIONS,
    MAX_ELEMENTS,
    NAME,
    OK,
    PROGRAMS,
    RE,
    TAKEN,
    Outcome,
    Wire,
    describe,
    header_faults,
    upload_faults,
)

pytestmark = pytest.mark.e2e
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

BAD_NAMES = (
    "",
    "a" * 129,
    "a/b",
    "/",
    "..",
    "../etc/passwd",
    "x/../y",
    ".hidden",
    "-dash",
    "_under",
    "naïve",
    "名前",
    "a b",
    "a\x00b",
    "a\nb",
    "emoji-\U0001f600",
    "a" * 1000,
)

# -- strategies ----------------------------------------------------------------

names = st.one_of(
    st.from_regex(NAME, fullmatch=True),
    st.sampled_from(BAD_NAMES),
    st.just(TAKEN),
    st.text(max_size=140),
)
dims = st.one_of(
    st.integers(1, 6),
    st.just(0),
    st.sampled_from([MAX_ELEMENTS, MAX_ELEMENTS + 1, 1 << 32, 1 << 63, (1 << 64) - 1]),
    st.integers(MAX_ELEMENTS + 1, (1 << 64) - 1),
)
grants = st.builds(
    types_pb2.Grant,
    receiver=st.one_of(st.from_regex(NAME, fullmatch=True), st.sampled_from(BAD_NAMES)),
    program=st.one_of(st.sampled_from(PROGRAMS), st.text(max_size=40)),
)
seeds = st.one_of(st.just(b""), st.binary(min_size=16, max_size=16), st.binary(max_size=40))


@st.composite
def headers(draw: st.DrawFn) -> pb.UploadHeader:
    grant_list = draw(st.lists(grants, max_size=4))
    if draw(st.integers(0, 20)) == 0:  # now and then: more grants than allowed
        grant_list = [types_pb2.Grant(receiver=FUZZER, program="dot")] * draw(st.integers(257, 300))
    return pb.UploadHeader(
        name=draw(names),
        shape=draw(st.lists(dims, max_size=MAX_DIMENSIONS + 2)),
        fractional_bits=draw(st.one_of(st.just(32), st.integers(0, (1 << 32) - 1))),
        ring=draw(st.sampled_from([types_pb2.RING_Z2_128] * 4 + [types_pb2.RING_Z2_64, 0, 7])),
        magnitude_bits=draw(st.one_of(st.just(40), st.integers(0, (1 << 32) - 1))),
        grants=grant_list,
        upload_id=draw(st.one_of(st.binary(min_size=16, max_size=16), st.binary(max_size=40))),
        overwrite=draw(st.booleans()),
        first_seed=draw(seeds),
        second_seed=draw(seeds),
    )


def good_chunks(header: pb.UploadHeader, pieces: int) -> list[pb.UploadDatasetRequest]:
    """The chunks a correct uploader sends after ``header`` (zeros as data)."""
    count = math.prod(header.shape)
    sent = (not header.first_seed, not header.second_seed)
    if not any(sent):
        return []
    size = 8 if header.ring == types_pb2.RING_Z2_64 else 16
    bounds = np.linspace(0, count, min(pieces, count) + 1).astype(int)
    return [
        pb.UploadDatasetRequest(
            chunk=types_pb2.ShareChunk(
                offset=lo,
                first=bytes(size * (hi - lo)) if sent[0] else b"",
                second=bytes(size * (hi - lo)) if sent[1] else b"",
            )
        )
        for lo, hi in itertools.pairwise(bounds.tolist())
    ]


MUTATIONS = (
    "empty_stream",
    "drop_header",
    "second_header",
    "chunk_before_header",
    "swap_chunks",
    "duplicate_chunk",
    "drop_chunk",
    "set_offset",
    "trim_bytes",
    "extend_bytes",
    "fill_seeded_component",
    "empty_chunk",
    "extra_chunk",
)


def _chunk_indices(requests: list[pb.UploadDatasetRequest]) -> list[int]:
    return [i for i, r in enumerate(requests) if r.WhichOneof("item") == "chunk"]


@st.composite
def mangled_streams(draw: st.DrawFn) -> list[pb.UploadDatasetRequest]:
    """A small, otherwise correct upload with one to three structural faults."""
    header = pb.UploadHeader(
        name=draw(st.one_of(st.from_regex(NAME, fullmatch=True), st.just(TAKEN))),
        shape=draw(st.lists(st.integers(1, 5), max_size=3)),
        fractional_bits=32,
        ring=types_pb2.RING_Z2_128,
        magnitude_bits=40,
        upload_id=secrets.token_bytes(16),
        overwrite=draw(st.booleans()),
        first_seed=draw(st.sampled_from([b"", b"s" * 16])),
        second_seed=draw(st.sampled_from([b"", b"t" * 16])),
    )
    requests = [pb.UploadDatasetRequest(header=header), *good_chunks(header, draw(st.integers(1, 3)))]
    for mutation in draw(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=3)):
        chunks = _chunk_indices(requests)
        if mutation == "empty_stream":
            requests = []
        elif mutation == "drop_header" and requests:
            requests = [r for r in requests if r.WhichOneof("item") != "header"]
        elif mutation == "second_header":
            requests.insert(
                draw(st.integers(1, max(1, len(requests)))), pb.UploadDatasetRequest(header=header)
            )
        elif mutation == "chunk_before_header" and chunks:
            requests.insert(0, requests.pop(chunks[0]))
        elif mutation == "swap_chunks" and len(chunks) >= 2:
            i, j = chunks[0], chunks[-1]
            requests[i], requests[j] = requests[j], requests[i]
        elif mutation == "duplicate_chunk" and chunks:
            i = draw(st.sampled_from(chunks))
            requests.insert(i + 1, requests[i])
        elif mutation == "drop_chunk" and chunks:
            del requests[draw(st.sampled_from(chunks))]
        elif mutation == "set_offset" and chunks:
            target = requests[draw(st.sampled_from(chunks))].chunk
            target.offset = draw(st.one_of(st.integers(0, 10), st.integers(0, (1 << 64) - 1)))
        elif mutation in ("trim_bytes", "extend_bytes", "fill_seeded_component") and chunks:
            target = requests[draw(st.sampled_from(chunks))].chunk
            field = draw(st.sampled_from(["first", "second"]))
            data = getattr(target, field)
            k = draw(st.integers(1, 9))
            if mutation == "trim_bytes":
                setattr(target, field, data[:-k] if data else data)
            else:
                setattr(target, field, data + bytes(k) if mutation == "extend_bytes" else bytes(16 * k))
        elif mutation == "empty_chunk":
            requests.append(pb.UploadDatasetRequest(chunk=types_pb2.ShareChunk(offset=0)))
        elif mutation == "extra_chunk":
            requests.append(
                pb.UploadDatasetRequest(
                    chunk=types_pb2.ShareChunk(
                        offset=math.prod(header.shape), first=bytes(16), second=bytes(16)
                    )
                )
            )
    return requests


def _check(outcome: Outcome, expected: set[grpc.StatusCode]) -> None:
    assert outcome.code in DOCUMENTED, f"undocumented status: {outcome}"
    assert outcome.code in expected, f"expected one of {sorted(c.name for c in expected)}, got {outcome}"


@pytest.fixture(scope="module")
def taken(wire: Wire) -> str:
    wire.sdk.upload(TAKEN, [1.0, 2.0], grants=[(FUZZER, "dot")], overwrite=True)
    return TAKEN


# -- fuzzing -------------------------------------------------------------------


@FUZZ
@given(header=headers(), server=st.integers(0, 2), pieces=st.integers(1, 3))
def test_random_headers_get_their_documented_code(
    wire: Wire, taken: str, header: pb.UploadHeader, server: int, pieces: int
) -> None:
    faults = header_faults(header)
    small = not faults and math.prod(header.shape) <= 4096
    requests = [pb.UploadDatasetRequest(header=header), *(good_chunks(header, pieces) if small else [])]
    expected = upload_faults(requests)
    assume(expected)  # a well-formed upload is committed; see test_replays
    _check(wire.upload(server, requests, timeout=5), expected)


@FUZZ
@given(requests=mangled_streams(), server=st.integers(0, 2))
def test_mangled_upload_streams_are_refused(
    wire: Wire, taken: str, requests: list[pb.UploadDatasetRequest], server: int
) -> None:
    expected = upload_faults(requests)
    assume(expected)
    _check(wire.upload(server, requests, timeout=5), expected)


def test_the_cluster_survives_upload_fuzzing(wire: Wire, healthy) -> None:
    healthy()


# -- the table: one malformed class, one code ----------------------------------


def _header(**fields: object) -> pb.UploadHeader:
    base: dict[str, object] = {
        "name": f"t-{secrets.token_hex(4)}",
        "shape": [2],
        "fractional_bits": 32,
        "ring": types_pb2.RING_Z2_128,
        "magnitude_bits": 40,
        "upload_id": secrets.token_bytes(16),
    }
    base.update(fields)
    return pb.UploadHeader(**base)  # type: ignore[arg-type]


def _without(header: pb.UploadHeader, field: str) -> pb.UploadHeader:
    header.ClearField(field)  # type: ignore[arg-type]
    return header


def _with_chunks(header: pb.UploadHeader) -> list[pb.UploadDatasetRequest]:
    return [pb.UploadDatasetRequest(header=header), *good_chunks(header, 1)]


def _chunk(offset: int = 0, first: bytes = b"", second: bytes = b"") -> pb.UploadDatasetRequest:
    return pb.UploadDatasetRequest(chunk=types_pb2.ShareChunk(offset=offset, first=first, second=second))


GRANT = types_pb2.Grant(receiver=FUZZER, program="dot")
TABLE: list[tuple[str, list[pb.UploadDatasetRequest], grpc.StatusCode]] = [
    ("empty stream", [], IA),
    ("chunk before the header", [_chunk(0, bytes(16), bytes(16)), *_with_chunks(_header())], IA),
    ("two headers", [pb.UploadDatasetRequest(header=_header()), *_with_chunks(_header())], IA),
    ("an empty first message", [pb.UploadDatasetRequest(), *_with_chunks(_header())], IA),
    ("empty name", _with_chunks(_header(name="")), IA),
    ("name of 129 characters", _with_chunks(_header(name="n" * 129)), IA),
    ("name with a slash", _with_chunks(_header(name="bank-1/income")), IA),
    ("name '..'", _with_chunks(_header(name="..")), IA),
    ("path traversal name", _with_chunks(_header(name="../../etc/passwd")), IA),
    ("unicode name", _with_chunks(_header(name="einkommen-ä")), IA),
    ("name with NUL", _with_chunks(_header(name="a\x00b")), IA),
    ("name of 20000 characters", _with_chunks(_header(name="n" * 20000)), IA),
    ("grant to an invalid receiver", _with_chunks(_header(grants=[types_pb2.Grant(receiver="a/b")])), IA),
    ("grant of an unknown program", _with_chunks(_header(grants=[types_pb2.Grant(receiver=FUZZER)])), IA),
    ("257 grants", _with_chunks(_header(grants=[GRANT] * 257)), RE),
    ("zero dimension", _with_chunks(_header(shape=[3, 0])), IA),
    ("nine dimensions", _with_chunks(_header(shape=[1] * 9)), IA),
    (
        "dimension -1 (2^64-1 on the wire)",
        [pb.UploadDatasetRequest(header=_header(shape=[(1 << 64) - 1]))],
        RE,
    ),
    ("one element above the limit", [pb.UploadDatasetRequest(header=_header(shape=[MAX_ELEMENTS + 1]))], RE),
    ("product above the limit", [pb.UploadDatasetRequest(header=_header(shape=[1 << 14, 1 << 14]))], RE),
    ("product overflowing 64 bits", [pb.UploadDatasetRequest(header=_header(shape=[1 << 32] * 3))], RE),
    ("fractional bits beyond the ring", _with_chunks(_header(fractional_bits=127)), IA),
    ("no fractional bits", _with_chunks(_without(_header(), "fractional_bits")), IA),
    ("no ring", _with_chunks(_header(ring=types_pb2.RING_UNSPECIFIED)), IA),
    ("the other ring", _with_chunks(_header(ring=types_pb2.RING_Z2_64)), IA),
    ("an unknown ring", _with_chunks(_header(ring=9)), IA),
    ("no magnitude bound", _with_chunks(_without(_header(), "magnitude_bits")), IA),
    ("a magnitude bound beyond the ring", _with_chunks(_header(magnitude_bits=128)), IA),
    ("no upload id", _with_chunks(_header(upload_id=b"")), IA),
    ("upload id of 15 bytes", _with_chunks(_header(upload_id=bytes(15))), IA),
    ("first seed of 15 bytes", _with_chunks(_header(first_seed=bytes(15))), IA),
    ("second seed of 17 bytes", _with_chunks(_header(second_seed=bytes(17))), IA),
    (
        "chunk for an upload whose components both come from seeds",
        [pb.UploadDatasetRequest(header=_header(first_seed=bytes(16), second_seed=bytes(16))), _chunk(0)],
        IA,
    ),
    (
        "bytes in a component expanded from a seed",
        [pb.UploadDatasetRequest(header=_header(first_seed=bytes(16))), _chunk(0, bytes(16), bytes(16))],
        IA,
    ),
    (
        "chunk at offset 2^64-1",
        [pb.UploadDatasetRequest(header=_header()), _chunk((1 << 64) - 1, bytes(16), bytes(16))],
        IA,
    ),
    (
        "the same chunk twice",
        [
            pb.UploadDatasetRequest(header=_header()),
            _chunk(0, bytes(16), bytes(16)),
            _chunk(0, bytes(16), bytes(16)),
        ],
        IA,
    ),
    (
        "chunks out of order",
        [
            pb.UploadDatasetRequest(header=_header()),
            _chunk(1, bytes(16), bytes(16)),
            _chunk(0, bytes(16), bytes(16)),
        ],
        IA,
    ),
    ("an empty chunk", [pb.UploadDatasetRequest(header=_header()), _chunk(0)], IA),
    ("header without any chunk", [pb.UploadDatasetRequest(header=_header())], IA),
    ("existing name without overwrite", _with_chunks(_header(name=TAKEN)), AE),
]


@pytest.mark.parametrize(("requests", "code"), [(r, c) for _, r, c in TABLE], ids=[t[0] for t in TABLE])
def test_each_malformed_upload_class_gets_its_code(
    wire: Wire, taken: str, requests: list[pb.UploadDatasetRequest], code: grpc.StatusCode
) -> None:
    outcome = wire.upload(1, requests, timeout=5)
    assert outcome.code == code, str(outcome)
    assert len(outcome.details) < 2000, "the refusal echoes unbounded client input"


# -- replays through all three servers -----------------------------------------


@dataclass
class Version:
    values: np.ndarray
    upload_id: bytes


def _streams(name: str, version: Version, *, overwrite: bool = False) -> list[list[pb.UploadDatasetRequest]]:
    """Correct, consistent shares of ``version`` for each server (plain, not seeded)."""
    encoded, magnitude = FixedPoint.default().encode_bounded(version.values)
    shares = share(RING128, encoded.reshape(-1))
    header = pb.UploadHeader(
        name=name,
        shape=list(version.values.shape),
        fractional_bits=32,
        ring=types_pb2.RING_Z2_128,
        magnitude_bits=magnitude,
        grants=[GRANT],
        upload_id=version.upload_id,
        overwrite=overwrite,
    )
    return [
        [
            pb.UploadDatasetRequest(header=header),
            _chunk(0, RING128.to_wire(shares[party].first), RING128.to_wire(shares[party].second)),
        ]
        for party in range(3)
    ]


def _dot(wire: Wire, name: str) -> float:
    _, result = wire.sdk.run_and_fetch("dot", {"x": name, "y": name})
    return float(result)


def test_replays(wire: Wire) -> None:
    """An upload id names one version: replaying it never changes the dataset."""
    name = f"replayed-{secrets.token_hex(4)}"
    first = Version(np.array([1.0, 2.0, 3.0]), secrets.token_bytes(16))
    outcomes = wire.upload_all(_streams(name, first))
    assert [o.code for o in outcomes] == [OK] * 3, describe(outcomes)
    assert _dot(wire, name) == 14.0

    # The identical upload again (a client retry): harmless either way.
    outcomes = wire.upload_all(_streams(name, first))
    assert {o.code for o in outcomes} <= {OK, AE}, describe(outcomes)
    assert _dot(wire, name) == 14.0

    # The same upload id with other content: not a retry, refused with or without overwrite.
    other = Version(np.array([5.0, 6.0]), first.upload_id)
    for overwrite in (False, True):
        outcomes = wire.upload_all(_streams(name, other, overwrite=overwrite))
        assert [o.code for o in outcomes] == [AE] * 3, f"overwrite={overwrite}: {describe(outcomes)}"
        assert _dot(wire, name) == 14.0

    # A new version without overwrite is refused; with overwrite it replaces the old one.
    newer = Version(np.array([5.0, 6.0]), secrets.token_bytes(16))
    outcomes = wire.upload_all(_streams(name, newer))
    assert [o.code for o in outcomes] == [AE] * 3, describe(outcomes)
    assert _dot(wire, name) == 14.0
    outcomes = wire.upload_all(_streams(name, newer, overwrite=True))
    assert [o.code for o in outcomes] == [OK] * 3, describe(outcomes)
    assert _dot(wire, name) == 61.0


def test_an_upload_refused_by_one_server_fails_on_the_others_at_once(wire: Wire) -> None:
    """Correct shares to server-0 and server-1, a malformed stream to server-2.

    Server-2 refuses at once; the other two must not sit in the consistency
    round until the client's deadline (jobs tell their peers at once; an
    upload must too), and nothing may be stored.
    """
    name = f"half-{secrets.token_hex(4)}"
    streams = _streams(name, Version(np.array([1.0, 2.0]), secrets.token_bytes(16)))
    streams[2] = [streams[2][0], _chunk(1, bytes(16), bytes(16))]  # wrong offset
    started = time.monotonic()
    outcomes = wire.upload_all(streams, timeout=8)
    elapsed = time.monotonic() - started
    assert elapsed < 4, f"server-0 and server-1 waited {elapsed:.1f} s for server-2: {describe(outcomes)}"
    assert outcomes[2].code == IA, describe(outcomes)
    assert all(o.code in DOCUMENTED | {grpc.StatusCode.ABORTED} for o in outcomes), describe(outcomes)
    outcomes = wire.run_job_all(
        pb.RunJobRequest(
            job=pb.JobSpec(
                job_id=f"half-{secrets.token_hex(6)}",
                program="dot",
                inputs=[
                    pb.JobInput(role="x", dataset=types_pb2.DatasetRef(owner=FUZZER, name=name)),
                    pb.JobInput(role="y", dataset=types_pb2.DatasetRef(owner=FUZZER, name=name)),
                ],
                receiver=FUZZER,
            )
        )
    )
    assert [o.code for o in outcomes] == [grpc.StatusCode.NOT_FOUND] * 3, describe(outcomes)
