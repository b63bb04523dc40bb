"""DeleteDataset under hostile input: names, other owners' datasets, partial deletes."""

from __future__ import annotations

import secrets

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpc_client import Grant
from mpc_proto.v1 import client_service_pb2 as pb
from mpc_proto.v1 import types_pb2

from .conftest import DOCUMENTED, FUZZER, IA, NAME, NF, OK, Outcome, Wire, describe

pytestmark = pytest.mark.e2e
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOBODY = "bank-1"
BAD_NAMES = ("", "a/b", "..", "../../outputs/x", ".hidden", "-x", "ä", "a\x00b", "n" * 129)


def _delete(wire: Wire, server: int, name: str, identity: str = FUZZER) -> Outcome:
    try:
        wire.stub(server, identity).DeleteDataset(pb.DeleteDatasetRequest(name=name), timeout=10)
    except grpc.RpcError as exc:
        assert isinstance(exc, grpc.Call)
        return Outcome(server, exc.code(), exc.details() or "")
    return Outcome(server, OK)


@FUZZ
@given(
    name=st.one_of(st.sampled_from(BAD_NAMES), st.text(max_size=60), st.from_regex(NAME, fullmatch=True)),
    server=st.integers(0, 2),
)
def test_random_deletes_get_their_documented_code(wire: Wire, name: str, server: int) -> None:
    # bank-1 owns nothing on the fuzz cluster: every valid name is NOT_FOUND.
    outcome = _delete(wire, server, name, identity=NOBODY)
    assert outcome.code in DOCUMENTED, str(outcome)
    assert outcome.code == (NF if NAME.fullmatch(name) else IA), str(outcome)


TABLE = [
    ("empty name", "", IA),
    ("name with a slash", "fuzzer/x", IA),
    ("name '..'", "..", IA),
    ("path traversal", "../../outputs/anything", IA),
    ("unicode name", "lösch", IA),
    ("name of 20000 characters", "n" * 20000, IA),
    ("no such dataset", "never-uploaded", NF),
]


@pytest.mark.parametrize(("name", "code"), [(n, c) for _, n, c in TABLE], ids=[t[0] for t in TABLE])
def test_each_malformed_delete_class_gets_its_code(wire: Wire, name: str, code: grpc.StatusCode) -> None:
    outcome = _delete(wire, 2, name, identity=NOBODY)
    assert outcome.code == code, str(outcome)


def _dot_job(wire: Wire, owner: str, name: str, identity: str = FUZZER) -> list[Outcome]:
    ref = types_pb2.DatasetRef(owner=owner, name=name)
    spec = pb.JobSpec(
        job_id=f"del-{secrets.token_hex(6)}",
        program="dot",
        inputs=[pb.JobInput(role="x", dataset=ref), pb.JobInput(role="y", dataset=ref)],
        receiver=identity,
    )
    return wire.run_job_all(pb.RunJobRequest(job=spec), identity=identity)


def test_a_client_deletes_only_its_own_datasets(wire: Wire) -> None:
    name = f"del-{secrets.token_hex(4)}"
    with wire.cluster.client("model-owner") as owner:
        owner.upload(name, [1.0, 2.0], grants=[Grant("model-owner", "dot")])
    # The fuzzer names the same dataset name: it can only mean its own (absent) one.
    assert [_delete(wire, s, name).code for s in range(3)] == [NF] * 3
    outcomes = _dot_job(wire, "model-owner", name, identity="model-owner")
    assert [o.code for o in outcomes] == [OK] * 3, describe(outcomes)


def test_a_deleted_dataset_is_gone_and_a_partial_delete_stops_jobs(wire: Wire) -> None:
    name = f"del-{secrets.token_hex(4)}"
    wire.sdk.upload(name, [1.0, 2.0], grants=[Grant(FUZZER, "dot")])
    # Deleted on server-1 only: jobs must not run on the two remaining copies.
    assert _delete(wire, 1, name).code == OK
    outcomes = _dot_job(wire, FUZZER, name)
    assert outcomes[1].code == NF, describe(outcomes)
    assert all(o.code == grpc.StatusCode.ABORTED for o in (outcomes[0], outcomes[2])), describe(outcomes)
    # Deleted everywhere: gone, and deleting again is NOT_FOUND.
    assert [_delete(wire, s, name).code for s in (0, 2)] == [OK, OK]
    assert [o.code for o in _dot_job(wire, FUZZER, name)] == [NF] * 3
    assert [_delete(wire, s, name).code for s in range(3)] == [NF] * 3
