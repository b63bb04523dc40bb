"""Job ids: a replay returns the recorded result; nothing else may reuse or spoil an id.

A job id names one job of its submitter forever (mpc_server/service/jobs.py):
the same submitter re-sending the same description gets the recorded result
without a recomputation; any other description or dataset version under that
id is ALREADY_EXISTS. Ids are scoped by submitter: another client sending the
same description submits a job of its own, which gets none of the recorded
result (here it is refused: its grants do not let it submit that job). A
*refused* job never ran, so it must not leave anything behind: neither state
on the peers nor a spoiled id that fails the next, valid job that uses it
(for example a client's retry after fixing a typo, or another client's job
whose id an attacker guessed).
"""

from __future__ import annotations

import secrets

import grpc
import numpy as np
import pytest

from mpc_cli.local_cluster import LocalCluster
from mpc_client import AlreadyExistsError, Grant, NotFoundError
from mpc_proto.v1 import client_service_pb2 as pb
from mpc_proto.v1 import types_pb2

from .conftest import Outcome, Raw, describe, metric, outcome_of, scrape, wait_for

pytestmark = pytest.mark.e2e
MUL = "elementwise.multiply"
AE = grpc.StatusCode.ALREADY_EXISTS
PD = grpc.StatusCode.PERMISSION_DENIED
NF = grpc.StatusCode.NOT_FOUND


@pytest.fixture(scope="module")
def owner_data(secure_cluster: LocalCluster) -> np.ndarray:
    values = np.array([1.25, -2.5, 4.0, 8.75])
    # The owner may also submit jobs whose output goes to the outsider (a receiver of its own).
    grants = [Grant("model-owner", MUL), Grant("outsider", MUL, submitters=("model-owner",))]
    with secure_cluster.client("model-owner") as owner:
        owner.upload("ids-v", values, grants=grants, overwrite=True)
    return values


def _totals(cluster: LocalCluster) -> list[tuple[float, float, float]]:
    """Per server: jobs counted OK for MUL, peer bytes sent to both peers."""
    out = []
    for server in range(3):
        text = scrape(cluster, server)
        peers = [f"server-{p}" for p in range(3) if p != server]
        sent = [metric(text, "mpc_peer_bytes_sent_total", peer=p) for p in peers]
        out.append((metric(text, "mpc_jobs_total", program=MUL, status="OK"), sent[0], sent[1]))
    return out


def test_a_replay_returns_the_recorded_result_without_recomputing(
    secure_cluster: LocalCluster, owner_data: np.ndarray
) -> None:
    job_id = f"replay-{secrets.token_hex(6)}"
    with secure_cluster.client("model-owner") as owner:
        first, values = owner.run_and_fetch(MUL, {"x": "ids-v", "y": "ids-v"}, job_id=job_id)
        before = _totals(secure_cluster)
        again, replayed = owner.run_and_fetch(MUL, {"x": "ids-v", "y": "ids-v"}, job_id=job_id)
        fetched = owner.fetch(job_id)
        after = _totals(secure_cluster)
    np.testing.assert_array_equal(values, owner_data * owner_data)
    np.testing.assert_array_equal(replayed, values)
    np.testing.assert_array_equal(fetched, values)
    assert again.shape == first.shape and again.job_id == job_id
    # Not one byte went between the servers for the replay: nothing was recomputed.
    assert [t[1:] for t in after] == [t[1:] for t in before]


def test_a_replay_is_not_counted_as_another_job(secure_cluster: LocalCluster, owner_data: np.ndarray) -> None:
    job_id = f"replay-{secrets.token_hex(6)}"
    with secure_cluster.client("model-owner") as owner:
        owner.run(MUL, {"x": "ids-v", "y": "ids-v"}, job_id=job_id)
        before = _totals(secure_cluster)
        owner.run(MUL, {"x": "ids-v", "y": "ids-v"}, job_id=job_id)
        after = _totals(secure_cluster)
    assert [t[0] for t in after] == [t[0] for t in before], (
        f"mpc_jobs_total{{status=OK}} went from {[t[0] for t in before]} to {[t[0] for t in after]} "
        "for a replay that computed nothing"
    )


def _spec(job_id: str, x: str = "ids-v", receiver: str = "model-owner") -> pb.RunJobRequest:
    def ref(name: str) -> types_pb2.DatasetRef:
        return types_pb2.DatasetRef(owner="model-owner", name=name)

    job = pb.JobSpec(
        job_id=job_id,
        program=MUL,
        inputs=[pb.JobInput(role="x", dataset=ref(x)), pb.JobInput(role="y", dataset=ref("ids-v"))],
        receiver=receiver,
    )
    return pb.RunJobRequest(job=job, return_output=True)


def _fetch(raw: Raw, server: int, who: str, job_id: str, submitter: str) -> Outcome:
    stub = raw.client(server, who)
    request = pb.FetchOutputRequest(job_id=job_id, submitter=submitter, second_as_digest=True)
    return outcome_of(server, lambda: list(stub.FetchOutput(request, timeout=5)))


def test_a_used_id_is_refused_for_anything_but_a_replay(
    secure_cluster: LocalCluster, raw: Raw, owner_data: np.ndarray
) -> None:
    job_id = f"used-{secrets.token_hex(6)}"
    outcomes = raw.run_jobs([_spec(job_id)] * 3, "model-owner")
    assert all(o.code == grpc.StatusCode.OK for o in outcomes), describe(outcomes)

    # Another submitter sending the very same description: its own job (ids are scoped by
    # submitter), not a replay of the owner's; no grant lets it submit that job, and in
    # particular no output share comes back with the refusal.
    outcomes = raw.run_jobs([_spec(job_id)] * 3, "outsider")
    assert [o.code for o in outcomes] == [PD] * 3, describe(outcomes)
    assert not any(o.response for o in outcomes), describe(outcomes)
    # Nor can it fetch the owner's output under that id.
    for server in range(3):
        for submitter in ("", "model-owner"):
            outcome = _fetch(raw, server, "outsider", job_id, submitter)
            assert outcome.code == NF, str(outcome)
    # Another receiver.
    outcomes = raw.run_jobs([_spec(job_id, receiver="outsider")] * 3, "model-owner")
    assert [o.code for o in outcomes] == [AE] * 3, describe(outcomes)
    # The same text, but an input has been replaced by a new version since.
    with secure_cluster.client("model-owner") as owner:
        owner.upload("ids-w", owner_data, grants=[Grant("model-owner", MUL)])
        outcomes = raw.run_jobs([_spec(f"{job_id}-w", x="ids-w")] * 3, "model-owner")
        assert all(o.code == grpc.StatusCode.OK for o in outcomes), describe(outcomes)
        owner.upload("ids-w", owner_data + 1, grants=[Grant("model-owner", MUL)], overwrite=True)
        with pytest.raises(AlreadyExistsError):
            owner.run(MUL, {"x": "ids-w", "y": "ids-v"}, job_id=f"{job_id}-w")


def test_a_refused_job_id_can_be_used_once_the_problem_is_fixed(
    secure_cluster: LocalCluster, owner_data: np.ndarray
) -> None:
    job_id = f"typo-{secrets.token_hex(6)}"
    with secure_cluster.client("model-owner") as owner:
        with pytest.raises(NotFoundError):
            owner.run(MUL, {"x": "ids-v", "y": "ids-later"}, job_id=job_id)
        owner.upload("ids-later", owner_data, grants=[Grant("model-owner", MUL)])
        # The job that was refused never ran; its id is free.
        _, values = owner.run_and_fetch(MUL, {"x": "ids-v", "y": "ids-later"}, job_id=job_id)
    np.testing.assert_array_equal(values, owner_data * owner_data)


def test_another_client_cannot_spoil_a_job_id(
    secure_cluster: LocalCluster, raw: Raw, owner_data: np.ndarray
) -> None:
    """One malformed RunJob to one server, under the id a victim will use."""
    job_id = f"victim-{secrets.token_hex(6)}"
    spoiler = pb.JobSpec(job_id=job_id, program="no-such-program", receiver="bank-2")
    refused = raw.client(0, "bank-2").RunJob
    with pytest.raises(grpc.RpcError):
        refused(pb.RunJobRequest(job=spoiler), timeout=5)
    with secure_cluster.client("model-owner") as owner:
        try:
            _, values = owner.run_and_fetch(MUL, {"x": "ids-v", "y": "ids-v"}, job_id=job_id)
        except Exception as exc:
            leaked = "no-such-program" in str(exc)
            pytest.fail(
                f"the victim's job failed because of another client's refused request: {exc!r}"
                + (" (and the other client's request text reached the victim)" if leaked else "")
            )
    np.testing.assert_array_equal(values, owner_data * owner_data)


def test_a_refused_job_leaves_no_state_on_the_servers(
    secure_cluster: LocalCluster, owner_data: np.ndarray
) -> None:
    def open_jobs() -> list[float]:
        return [metric(scrape(secure_cluster, s), "mpc_mailbox_jobs") for s in range(3)]

    # Whatever earlier tests left behind, a successful job leaves no mailbox state.
    with secure_cluster.client("model-owner") as owner:
        baseline = open_jobs()
        for k in range(5):
            with pytest.raises(NotFoundError):
                owner.run(MUL, {"x": "ids-v", "y": f"ids-absent-{k}"})
    settled = wait_for(lambda: open_jobs() <= baseline, timeout=5.0)
    assert settled, (
        f"mpc_mailbox_jobs went from {baseline} to {open_jobs()} after 5 refused jobs and stayed there: "
        "refused jobs leave per-job state on the peers until the sweep"
    )
