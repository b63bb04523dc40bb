"""The three servers compute only a job all three hold, and nothing leaks when they do not.

A client (or an attacker between client and one server) sends one server
another description under the same job id: another receiver, other inputs,
another program. Each server authorises its own copy, so the difference
shows only in the first protocol round, where the servers compare digests.
All three must refuse (FAILED_PRECONDITION, or ABORTED relaying a peer's
refusal), name the server that disagrees, do so at once (not at the
deadline), and keep no output anywhere: not for the receiver of the real
job and not for the one the odd server was told about.
"""

from __future__ import annotations

import secrets
import time

import grpc
import numpy as np
import pytest

from mpc_cli.local_cluster import LocalCluster
from mpc_client import Grant
from mpc_proto.v1 import client_service_pb2 as pb
from mpc_proto.v1 import types_pb2

from .conftest import Outcome, Raw, describe, outcome_of

pytestmark = pytest.mark.e2e
MUL, DOT = "elementwise.multiply", "dot"
FP = grpc.StatusCode.FAILED_PRECONDITION
ABORTED = grpc.StatusCode.ABORTED
NF = grpc.StatusCode.NOT_FOUND
RECEIVERS = ("model-owner", "outsider")
SUBMITTER = "model-owner"


@pytest.fixture(scope="module")
def agreed_data(secure_cluster: LocalCluster) -> None:
    # Every variant must pass each server's own checks, so that the difference shows only
    # when the servers compare digests: the model owner may submit jobs for both receivers.
    grants = [Grant(r, p, submitters=(SUBMITTER,)) for r in RECEIVERS for p in (MUL, DOT)]
    with secure_cluster.client("bank-1") as bank:
        bank.upload("agree-x", np.arange(4.0), grants=grants, overwrite=True)
        bank.upload("agree-y", np.arange(4.0) + 10, grants=grants, overwrite=True)


def _request(
    job_id: str, *, program: str = MUL, y: str = "agree-y", receiver: str = "model-owner"
) -> pb.RunJobRequest:
    def ref(name: str) -> types_pb2.DatasetRef:
        return types_pb2.DatasetRef(owner="bank-1", name=name)

    spec = pb.JobSpec(
        job_id=job_id,
        program=program,
        inputs=[pb.JobInput(role="x", dataset=ref("agree-x")), pb.JobInput(role="y", dataset=ref(y))],
        receiver=receiver,
    )
    return pb.RunJobRequest(job=spec, return_output=True)


VARIANTS = {
    "another receiver": {"receiver": "outsider"},
    "other inputs": {"y": "agree-x"},
    "another program": {"program": DOT},
}


def _fetch(raw: Raw, server: int, job_id: str, receiver: str) -> Outcome:
    """The receiver asks for the output of the model owner's job (ids are scoped by submitter)."""
    stub = raw.client(server, receiver)
    request = pb.FetchOutputRequest(job_id=job_id, submitter=SUBMITTER, second_as_digest=True)
    return outcome_of(server, lambda: list(stub.FetchOutput(request, timeout=5)))


def _assert_no_output_anywhere(raw: Raw, job_id: str) -> None:
    for server in range(3):
        for receiver in RECEIVERS:
            outcome = _fetch(raw, server, job_id, receiver)
            assert outcome.code == NF, f"an output was kept: {outcome}"


@pytest.mark.parametrize("odd", [0, 1, 2])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_servers_holding_different_descriptions_refuse_together(
    raw: Raw, agreed_data: None, variant: str, odd: int
) -> None:
    job_id = f"agree-{secrets.token_hex(6)}"
    requests = [_request(job_id, **VARIANTS[variant]) if i == odd else _request(job_id) for i in range(3)]
    started = time.monotonic()
    outcomes = raw.run_jobs(requests, SUBMITTER)
    elapsed = time.monotonic() - started
    assert all(o.code in (FP, ABORTED) for o in outcomes), describe(outcomes)
    odd_name = f"server-{odd}"
    for outcome in outcomes:
        if outcome.server == odd:
            others = {f"server-{i}" for i in range(3)} - {odd_name}
            assert any(name in outcome.details for name in others), describe(outcomes)
        else:
            assert odd_name in outcome.details, f"the disagreeing server is not named: {describe(outcomes)}"
    assert not any(o.response for o in outcomes)
    assert elapsed < 5.0, f"the refusal took {elapsed:.1f} s: the servers waited for a deadline"
    _assert_no_output_anywhere(raw, job_id)


@pytest.mark.parametrize("odd", [0, 1, 2])
def test_a_server_that_refuses_its_copy_stops_the_others_at_once(
    raw: Raw, agreed_data: None, odd: int
) -> None:
    """One server is told about a dataset it does not hold: it refuses, the others abort naming it."""
    job_id = f"agree-{secrets.token_hex(6)}"
    requests = [_request(job_id, y="agree-missing") if i == odd else _request(job_id) for i in range(3)]
    started = time.monotonic()
    outcomes = raw.run_jobs(requests, SUBMITTER)
    elapsed = time.monotonic() - started
    assert outcomes[odd].code == NF, describe(outcomes)
    for outcome in outcomes:
        if outcome.server != odd:
            assert outcome.code == ABORTED, describe(outcomes)
            # The trailer names the peer whose abort reached this server (the only name a
            # server can vouch for); the reason it relays names the server that refused.
            assert outcome.named in {f"server-{i}" for i in range(3)} - {f"server-{outcome.server}"}
            assert (
                f"server server-{odd} aborted the job: dataset bank-1/agree-missing not found"
                in outcome.details
            ), describe(outcomes)
    assert elapsed < 5.0, f"the refusal took {elapsed:.1f} s: the servers waited for a deadline"
    _assert_no_output_anywhere(raw, job_id)
