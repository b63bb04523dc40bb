"""Bytes on the wire: random protobuf encodings and mutated requests for every RPC.

A client is not bound to our generated code: it can send any bytes as a
request message. Bytes that decode as the request type (protobuf is
lenient: unknown fields, repeated scalars, truncations that still parse)
must be handled like any other request, with a documented status. Bytes
that do not decode are a malformed request too: INVALID_ARGUMENT, never
UNKNOWN (the grpc default for a failed deserializer) and never INTERNAL.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import grpc
import pytest
from google.protobuf.message import DecodeError, Message
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mpc_core import protowire
from mpc_proto.v1 import client_service_pb2 as pb
from mpc_proto.v1 import types_pb2

from .conftest import DOCUMENTED, FUZZER, IA, OK, Wire, describe, upload_faults

pytestmark = pytest.mark.e2e
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# -- a tiny protobuf encoder, to write fields our generated code never would ------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
    return _varint(number << 3 | wire_type) + payload


@st.composite
def unknown_fields(draw: st.DrawFn) -> bytes:
    """A well-formed encoding of fields the request type does not declare."""
    out = b""
    for _ in range(draw(st.integers(0, 6))):
        number = draw(st.integers(1, (1 << 29) - 1))
        kind = draw(st.sampled_from(["varint", "fixed64", "bytes", "fixed32"]))
        if kind == "varint":
            out += _field(number, 0, _varint(draw(st.integers(0, (1 << 64) - 1))))
        elif kind == "fixed64":
            out += _field(number, 1, draw(st.binary(min_size=8, max_size=8)))
        elif kind == "bytes":
            data = draw(st.binary(max_size=64))
            out += _field(number, 2, _varint(len(data)) + data)
        else:
            out += _field(number, 5, draw(st.binary(min_size=4, max_size=4)))
    return out


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` after one to three byte-level edits."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "duplicate"]))
        at = draw(st.integers(0, max(0, len(out) - 1)))
        if op == "flip" and out:
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and out:
            out[at] = draw(st.integers(0, 255))
        elif op == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete" and out:
            del out[at]
        elif op == "truncate":
            del out[at:]
        elif op == "duplicate":
            out[at:at] = out[at : at + draw(st.integers(1, 8))]
    return bytes(out)


def _decodes(message_type: type[Message], data: bytes) -> bool:
    try:
        message_type.FromString(data)
    except DecodeError:
        return False
    return True


# -- fuzzing -------------------------------------------------------------------


@FUZZ
@given(extra=unknown_fields(), server=st.integers(0, 2))
def test_server_info_ignores_unknown_fields(wire: Wire, extra: bytes, server: int) -> None:
    outcome = wire.raw_unary(server, "GetServerInfo", extra)
    assert outcome.code is OK, str(outcome)
    reply = pb.GetServerInfoResponse.FromString(outcome.response)
    assert reply.identity == f"server-{server}" and reply.readiness == pb.READINESS_STATE_READY


def _job_request() -> pb.RunJobRequest:
    spec = pb.JobSpec(
        job_id=f"wire-{secrets.token_hex(6)}",
        program="dot",
        inputs=[
            pb.JobInput(role="x", dataset=types_pb2.DatasetRef(owner=FUZZER, name="wire-v")),
            pb.JobInput(role="y", dataset=types_pb2.DatasetRef(owner=FUZZER, name="wire-v")),
        ],
        receiver=FUZZER,
    )
    return pb.RunJobRequest(job=spec, return_output=True)


@pytest.fixture(scope="module")
def wire_dataset(wire: Wire) -> str:
    wire.sdk.upload("wire-v", [1.0, 2.0, 3.0], grants=[(FUZZER, "dot")], overwrite=True)
    return "wire-v"


@FUZZ
@given(data=st.data())
def test_mutated_run_job_requests(wire: Wire, wire_dataset: str, data: st.DataObject) -> None:
    # A fresh job id per example: the base id is never shared between mutants.
    raw = data.draw(mutated(_job_request().SerializeToString()))
    assume(_decodes(pb.RunJobRequest, raw))
    outcomes = wire.raw_unary_all("RunJob", raw)
    assert all(o.code in DOCUMENTED | {OK} for o in outcomes), describe(outcomes)
    assert len({o.code for o in outcomes}) == 1, f"the servers disagree: {describe(outcomes)}"


@FUZZ
@given(data=st.data(), server=st.integers(0, 2))
def test_mutated_fetch_requests(wire: Wire, data: st.DataObject, server: int) -> None:
    base = pb.FetchOutputRequest(job_id="wire-job", second_as_digest=True, release=False)
    raw = data.draw(mutated(base.SerializeToString()))
    assume(_decodes(pb.FetchOutputRequest, raw))
    outcome = wire.raw_unary_stream(server, "FetchOutput", raw)
    if outcome.code is OK:
        # A RunJob mutant may have run a job under this very id (hypothesis also draws
        # the constants of this module): then it must be a real output, header first.
        assert outcome.responses, str(outcome)
        assert protowire.decode_item(outcome.responses[0])[0] == protowire.ITEM_HEADER, str(outcome)
    else:
        assert outcome.code in DOCUMENTED, str(outcome)


def _upload_messages() -> list[bytes]:
    header = pb.UploadHeader(
        name=f"wire-{secrets.token_hex(4)}",
        shape=[2],
        fractional_bits=32,
        ring=types_pb2.RING_Z2_128,
        magnitude_bits=40,
        upload_id=secrets.token_bytes(16),
        grants=[types_pb2.Grant(receiver=FUZZER, program="dot", grant_id=bytes(range(16)))],
        second_seed=bytes(16),
    )
    chunk = types_pb2.ShareChunk(offset=0, first=bytes(32))
    return [
        pb.UploadDatasetRequest(header=header).SerializeToString(),
        pb.UploadDatasetRequest(chunk=chunk).SerializeToString(),
    ]


@FUZZ
@given(data=st.data(), server=st.integers(0, 2), which=st.integers(0, 1))
def test_mutated_upload_messages(wire: Wire, data: st.DataObject, server: int, which: int) -> None:
    messages = _upload_messages()
    messages[which] = data.draw(mutated(messages[which]))
    assume(all(_decodes(pb.UploadDatasetRequest, m) for m in messages))
    expected = upload_faults([pb.UploadDatasetRequest.FromString(m) for m in messages], server)
    assume(expected)  # still well-formed: it would be committed (see test_replays)
    outcome = wire.raw_stream_unary(server, "UploadDataset", messages)
    assert outcome.code in DOCUMENTED, str(outcome)
    assert outcome.code in expected, f"expected {sorted(c.name for c in expected)}, got {outcome}"


def test_the_cluster_survives_wire_fuzzing(wire: Wire, healthy) -> None:
    healthy()


# -- bytes that do not decode --------------------------------------------------

BAD_UTF8 = b"\xff\xfe"
UNDECODABLE: list[tuple[str, str, Sequence[bytes]]] = [
    ("GetServerInfo: corrupt wire format", "GetServerInfo", [b"\x0a\x7f"]),
    ("RunJob: job id not UTF-8", "RunJob", [_field(1, 2, _varint(4) + _field(1, 2, _varint(2) + BAD_UTF8))]),
    ("FetchOutput: job id not UTF-8", "FetchOutput", [_field(1, 2, _varint(2) + BAD_UTF8)]),
    (
        "UploadDataset: name not UTF-8",
        "UploadDataset",
        [_field(1, 2, _varint(4) + _field(1, 2, _varint(2) + BAD_UTF8))],
    ),
    ("UploadDataset: garbage after a good header", "UploadDataset", [_upload_messages()[0], b"\x12\x7f\x00"]),
]


@pytest.mark.parametrize(
    ("method", "messages"), [(m, b) for _, m, b in UNDECODABLE], ids=[t[0] for t in UNDECODABLE]
)
def test_undecodable_requests_are_invalid_argument(
    wire: Wire, method: str, messages: Sequence[bytes]
) -> None:
    for message in messages[-1:]:
        request_type = {
            "GetServerInfo": pb.GetServerInfoRequest,
            "RunJob": pb.RunJobRequest,
            "FetchOutput": pb.FetchOutputRequest,
            "UploadDataset": pb.UploadDatasetRequest,
        }[method]
        assert not _decodes(request_type, message), "the test case must not decode"
    if method == "UploadDataset":
        outcome = wire.raw_stream_unary(0, method, messages)
    elif method == "FetchOutput":
        outcome = wire.raw_unary_stream(0, method, messages[0])
    else:
        outcome = wire.raw_unary(0, method, messages[0])
    assert outcome.code is not grpc.StatusCode.UNKNOWN and outcome.code is not grpc.StatusCode.INTERNAL, (
        f"an undecodable request must be a documented refusal: {outcome}"
    )
    assert outcome.code is IA, str(outcome)
