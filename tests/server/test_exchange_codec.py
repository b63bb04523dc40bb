"""Peer messages encoded without the protobuf runtime are ordinary ``ExchangeRequest``s."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpc_core.protowire import WireFormatError
from mpc_proto.v1 import peer_service_pb2 as pb
from mpc_server.transport import exchange_codec

uint64s = st.integers(min_value=0, max_value=2**64 - 1)
job_ids = st.text(max_size=40)
payloads = st.binary(max_size=80).map(lambda raw: raw[: len(raw) // 8 * 8])


def _runtime_data(job_id: str, op: int, offset: int, total: int, payload: bytes) -> bytes:
    chunk = pb.DataChunk(offset=offset, total_words=total, payload=payload)
    return bytes(pb.ExchangeRequest(job_id=job_id, op=op, data=chunk).SerializeToString())


@given(job_ids, uint64s, uint64s, uint64s, payloads)
def test_data_messages_are_encoded_as_the_runtime_does(
    job_id: str, op: int, offset: int, total: int, payload: bytes
) -> None:
    ours = exchange_codec.encode_data(job_id, op, offset, total, memoryview(payload))
    assert ours == _runtime_data(job_id, op, offset, total, payload)


@given(job_ids, uint64s, uint64s, uint64s, payloads)
def test_runtime_data_messages_decode_to_their_values(
    job_id: str, op: int, offset: int, total: int, payload: bytes
) -> None:
    message = _runtime_data(job_id, op, offset, total, payload)
    frame = exchange_codec.decode(message)
    assert not frame.is_abort
    assert (frame.job_id, frame.op, frame.offset, frame.total_words) == (job_id, op, offset, total)
    assert bytes(frame.payload) == payload
    assert frame.wire_bytes == len(message)


@given(job_ids, st.text(max_size=60))
def test_aborts_round_trip(job_id: str, reason: str) -> None:
    frame = exchange_codec.decode(exchange_codec.encode_abort(job_id, reason))
    assert frame.is_abort and (frame.job_id, frame.reason) == (job_id, reason)


def test_frames_do_not_show_payload_bytes() -> None:
    frame = exchange_codec.decode(_runtime_data("job-1", 3, 0, 1, b"secret!!"))
    assert "secret" not in repr(frame)
    assert repr(frame) == "ExchangeFrame('job-1', op=3, data 0+1/1)"


@pytest.mark.parametrize(
    "message, reason",
    [
        (pb.ExchangeRequest(job_id="j", op=1).SerializeToString(), "found 0"),
        (pb.ExchangeRequest(job_id="j").SerializeToString() + b"\x1a\x00\x22\x00", "found 2"),
        (b"\x0a\x01\xff\x1a\x00", "not UTF-8"),
        (b"\x1a\x05\x18", "runs past the end"),
    ],
)
def test_malformed_messages_are_refused(message: bytes, reason: str) -> None:
    with pytest.raises(WireFormatError, match=reason):
        exchange_codec.decode(message)


@given(st.binary(max_size=120))
def test_random_bytes_decode_or_raise_wire_format_error(data: bytes) -> None:
    with contextlib.suppress(WireFormatError):
        exchange_codec.decode(data)


def test_field_numbers_match_the_protos() -> None:
    request = pb.ExchangeRequest.DESCRIPTOR.fields_by_name
    chunk = pb.DataChunk.DESCRIPTOR.fields_by_name
    assert [request[name].number for name in ("job_id", "op", "data", "abort")] == [
        exchange_codec.JOB_ID,
        exchange_codec.OP,
        exchange_codec.DATA,
        exchange_codec.ABORT,
    ]
    assert [chunk[name].number for name in ("offset", "total_words", "payload")] == [
        exchange_codec.OFFSET,
        exchange_codec.TOTAL_WORDS,
        exchange_codec.PAYLOAD,
    ]
    assert pb.JobAbort.DESCRIPTOR.fields_by_name["reason"].number == exchange_codec.REASON
