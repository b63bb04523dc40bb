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
from collections.abc import Callable
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
from mpc_server.service.grants import MAX_PINNED_INPUTS, MAX_SUBMITTERS

from .conftest import (
    AE,
    DOCUMENTED,
    FUZZER,
    IA,
    MAX_DIMENSIONS,
    MAX_ELEMENTS,
    MAX_GRANTS,
    NAME,
    OK,
    PROGRAMS,
    RE,
    TAKEN,
    Outcome,
    Wire,
    describe,
    grants_faults,
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
valid_names = st.one_of(
    st.sampled_from([FUZZER, "model-owner", "bank-1"]), st.from_regex(NAME, fullmatch=True)
)
pinned_inputs = st.builds(
    types_pb2.PinnedInput,
    role=st.sampled_from(["x", "y", "features", "weights", ""]),
    dataset=st.builds(types_pb2.DatasetRef, owner=valid_names, name=valid_names),
    upload_id=st.one_of(st.just(b""), st.binary(min_size=16, max_size=16)),
)
GRANT_FAULTS = (
    "grant_id",
    "scope",
    "receiver",
    "program",
    "submitter",
    "too_many_submitters",
    "pins_without_pinned_scope",
    "pinned_scope_without_pins",
    "pin_without_dataset",
    "pin_name",
    "pin_version",
    "too_many_pins",
    "without_itself",
    "expiry",
)


@st.composite
def grants_for(draw: st.DrawFn, name: str) -> types_pb2.Grant:
    """A grant on the fuzzer's dataset ``name``: well-formed, or with one or two hostile faults."""
    scope = draw(st.sampled_from(list(types_pb2.GrantScope.values())))
    pins = []
    if scope == types_pb2.GRANT_SCOPE_PINNED:
        pins = draw(st.lists(pinned_inputs, max_size=3))
        own = types_pb2.PinnedInput(role="x", dataset=types_pb2.DatasetRef(owner=FUZZER, name=name))
        pins.insert(draw(st.integers(0, len(pins))), own)
    grant = types_pb2.Grant(
        receiver=draw(valid_names),
        program=draw(st.sampled_from(PROGRAMS)),
        role=draw(st.sampled_from(["", "x", "features", "no-such-role"])),
        scope=scope,
        inputs=pins,
        submitters=draw(st.lists(valid_names, max_size=2)),
        max_uses=draw(st.integers(0, (1 << 32) - 1)),
        expires_at=draw(st.one_of(st.just(0.0), st.floats(0.0, 1e10))),
        grant_id=draw(st.binary(min_size=16, max_size=16)),
    )
    faults = draw(st.lists(st.sampled_from(GRANT_FAULTS), max_size=2)) if draw(st.integers(0, 2)) == 0 else []
    for fault in faults:
        bad_name = draw(st.sampled_from(BAD_NAMES))
        if fault == "grant_id":
            grant.grant_id = draw(st.binary(max_size=40).filter(lambda b: len(b) != 16))
        elif fault == "scope":
            grant.scope = types_pb2.GrantScope.ValueType(draw(st.sampled_from([4, 7, 99, -1])))
        elif fault == "receiver":
            grant.receiver = bad_name
        elif fault == "program":
            grant.program = draw(st.sampled_from(["", "DOT", "dot ", "x"]) | st.text(max_size=40))
        elif fault == "submitter":
            grant.submitters.append(bad_name)
        elif fault == "too_many_submitters":
            grant.submitters.extend(f"s-{k}" for k in range(MAX_SUBMITTERS + 1))
        elif fault == "pins_without_pinned_scope" and grant.scope != types_pb2.GRANT_SCOPE_PINNED:
            grant.inputs.append(draw(pinned_inputs))
        elif fault == "pinned_scope_without_pins":
            grant.scope = types_pb2.GRANT_SCOPE_PINNED
            del grant.inputs[:]
        elif fault == "pin_without_dataset":
            grant.inputs.append(types_pb2.PinnedInput(role="y"))
        elif fault == "pin_name":
            grant.inputs.append(
                types_pb2.PinnedInput(role="y", dataset=types_pb2.DatasetRef(owner=FUZZER, name=bad_name))
            )
        elif fault == "pin_version":
            grant.inputs.append(
                types_pb2.PinnedInput(
                    role="y",
                    dataset=types_pb2.DatasetRef(owner="bank-1", name="y"),
                    upload_id=draw(st.binary(min_size=1, max_size=40).filter(lambda b: len(b) != 16)),
                )
            )
        elif fault == "too_many_pins":
            grant.inputs.extend(
                types_pb2.PinnedInput(role="x", dataset=types_pb2.DatasetRef(owner=FUZZER, name=name))
                for _ in range(MAX_PINNED_INPUTS + 1)
            )
        elif fault == "without_itself":
            kept = [p for p in grant.inputs if (p.dataset.owner, p.dataset.name) != (FUZZER, name)]
            del grant.inputs[:]
            grant.inputs.extend(kept)
        elif fault == "expiry":
            grant.expires_at = draw(st.floats(max_value=-1e-9, allow_infinity=True, allow_nan=False))
    return grant


seeds = st.one_of(st.just(b""), st.binary(min_size=16, max_size=16), st.binary(max_size=40))


def _grant(**fields: object) -> types_pb2.Grant:
    """A valid grant to the fuzzer (own data, its own id), with ``fields`` changed."""
    base: dict[str, object] = {"receiver": FUZZER, "program": "dot", "grant_id": secrets.token_bytes(16)}
    base.update(fields)
    return types_pb2.Grant(**base)  # type: ignore[arg-type]


def _distinct_grants(count: int) -> list[types_pb2.Grant]:
    return [_grant(grant_id=k.to_bytes(16, "big")) for k in range(count)]


@st.composite
def grant_lists(draw: st.DrawFn, name: str) -> list[types_pb2.Grant]:
    """Grants for the fuzzer's dataset ``name``: mostly well-formed, some not, now and then too many."""
    grant_list = draw(st.lists(grants_for(name), max_size=4))
    if draw(st.integers(0, 3)) == 0 and len(grant_list) >= 2:  # two grants under one id
        grant_list[1].grant_id = grant_list[0].grant_id
    if draw(st.integers(0, 20)) == 7:  # more grants than allowed (rarely: 0 and 20 are drawn often)
        grant_list = _distinct_grants(draw(st.integers(MAX_GRANTS + 1, MAX_GRANTS + 44)))
    return grant_list


@st.composite
def headers(draw: st.DrawFn) -> pb.UploadHeader:
    name = draw(names)
    grant_list = draw(grant_lists(name))
    return pb.UploadHeader(
        name=name,
        shape=draw(st.lists(dims, max_size=MAX_DIMENSIONS + 2)),
        fractional_bits=draw(st.one_of(st.just(32), st.integers(0, (1 << 32) - 1))),
        ring=draw(
            st.sampled_from(
                [types_pb2.RING_Z2_128] * 4
                + [types_pb2.RING_Z2_64, types_pb2.Ring.ValueType(0), types_pb2.Ring.ValueType(7)]
            )
        ),
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
    faults = header_faults(header, server)
    small = not faults and math.prod(header.shape) <= 4096
    requests = [pb.UploadDatasetRequest(header=header), *(good_chunks(header, pieces) if small else [])]
    expected = upload_faults(requests, server)
    assume(expected)  # a well-formed upload is committed; see test_replays
    _check(wire.upload(server, requests, timeout=5), expected)


@FUZZ
@given(data=st.data(), server=st.integers(0, 2))
def test_random_grants_get_their_exact_code(wire: Wire, taken: str, data: st.DataObject, server: int) -> None:
    """A correct upload of an existing name, without overwrite, with random grants.

    The grants are checked before the name is (header, then grants, then
    replacement): faulty grants get their code, well-formed ones reach
    ALREADY_EXISTS. This pins the grant oracle down both ways.
    """
    header = _header(name=TAKEN, grants=data.draw(grant_lists(TAKEN)))
    expected = grants_faults(TAKEN, header.grants) or {AE}
    _check(wire.upload(server, _with_chunks(header), timeout=5), expected)


@FUZZ
@given(requests=mangled_streams(), server=st.integers(0, 2))
def test_mangled_upload_streams_are_refused(
    wire: Wire, taken: str, requests: list[pb.UploadDatasetRequest], server: int
) -> None:
    _fresh_names(requests)
    expected = upload_faults(requests, server)
    assume(expected)
    _check(wire.upload(server, requests, timeout=5), expected)


def _fresh_names(requests: list[pb.UploadDatasetRequest]) -> None:
    """Well-formed headers get a name no earlier example can have created (TAKEN stays taken)."""
    suffix = secrets.token_hex(4)
    for request in requests:
        if request.WhichOneof("item") == "header":
            header = request.header
            if header.name != TAKEN and not header_faults(header) and len(header.name) <= 100:
                header.name = f"{header.name}-{suffix}"


def test_the_cluster_survives_upload_fuzzing(wire: Wire, healthy: Callable[[], None]) -> None:
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


GRANT = _grant()
MISSING_SELF = types_pb2.PinnedInput(role="x", dataset=types_pb2.DatasetRef(owner=FUZZER, name="other"))
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
    ("grant to an invalid receiver", _with_chunks(_header(grants=[_grant(receiver="a/b")])), IA),
    ("grant of an unknown program", _with_chunks(_header(grants=[_grant(program="")])), IA),
    ("grant without a grant id", _with_chunks(_header(grants=[_grant(grant_id=b"")])), IA),
    ("grant id of 15 bytes", _with_chunks(_header(grants=[_grant(grant_id=bytes(15))])), IA),
    (
        "two grants under one grant id",
        _with_chunks(_header(grants=[GRANT, _grant(receiver="bank-1", grant_id=GRANT.grant_id)])),
        IA,
    ),
    ("an unknown grant scope", _with_chunks(_header(grants=[_grant(scope=9)])), IA),
    (
        "a pinned grant without inputs",
        _with_chunks(_header(grants=[_grant(scope=types_pb2.GRANT_SCOPE_PINNED)])),
        IA,
    ),
    (
        "pinned inputs on an own-data grant",
        _with_chunks(_header(grants=[_grant(scope=types_pb2.GRANT_SCOPE_OWN_DATA, inputs=[MISSING_SELF])])),
        IA,
    ),
    (
        "pinned inputs without the dataset itself",
        _with_chunks(_header(grants=[_grant(scope=types_pb2.GRANT_SCOPE_PINNED, inputs=[MISSING_SELF])])),
        IA,
    ),
    (
        "a pinned input without a dataset",
        _with_chunks(
            _header(grants=[_grant(scope=types_pb2.GRANT_SCOPE_PINNED, inputs=[types_pb2.PinnedInput()])])
        ),
        IA,
    ),
    (
        "a pinned version of 15 bytes",
        _with_chunks(
            _header(
                name="pinned-15",
                grants=[
                    _grant(
                        scope=types_pb2.GRANT_SCOPE_PINNED,
                        inputs=[
                            types_pb2.PinnedInput(
                                role="x", dataset=types_pb2.DatasetRef(owner=FUZZER, name="pinned-15")
                            ),
                            types_pb2.PinnedInput(
                                role="y",
                                dataset=types_pb2.DatasetRef(owner="bank-1", name="y"),
                                upload_id=bytes(15),
                            ),
                        ],
                    )
                ],
            )
        ),
        IA,
    ),
    ("a grant submitter with a slash", _with_chunks(_header(grants=[_grant(submitters=["bank-1/x"])])), IA),
    ("a negative expiry", _with_chunks(_header(grants=[_grant(expires_at=-1.0)])), IA),
    (f"{MAX_GRANTS + 1} grants", _with_chunks(_header(grants=_distinct_grants(MAX_GRANTS + 1))), RE),
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
    assert [o.response.upload_id for o in outcomes] == [first.upload_id] * 3, "the version stored"
    assert _dot(wire, name) == 14.0

    # The identical upload again (a client retry): harmless either way.
    outcomes = wire.upload_all(_streams(name, first))
    assert {o.code for o in outcomes} <= {OK, AE}, describe(outcomes)
    assert all(o.response.upload_id == first.upload_id for o in outcomes if o.code is OK)
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
    assert [o.response.upload_id for o in outcomes] == [newer.upload_id] * 3, "the version stored"
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
