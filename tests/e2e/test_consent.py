"""Consent that means what it says, against three server processes over mutual TLS.

The showcase with the README's pinned grants: the model owner uploads its
model first, the banks pin that version. Then every extraction the old
read-access grants allowed is tried again (issue 10), each refused; the
owner revokes, reads its audit trail from every server, and a stranger's
probes get one answer for "missing" and "not yours".
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc
import numpy as np
import numpy.typing as npt
import pytest

from mpc_cli.local_cluster import LocalCluster
from mpc_client import (
    DatasetRef,
    Grant,
    MpcClient,
    NotFoundError,
    PermissionDeniedError,
    ResourceLimitError,
)
from mpc_proto.v1 import client_service_pb2 as pb
from mpc_proto.v1 import client_service_pb2_grpc as pb_grpc

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
PREDICT = "linear_regression.predict"
CLIENTS = ("model-owner", "bank-1", "bank-2", "outsider")
OUTPUT_QUOTA = 6
INCOME = np.array([52_000.25, 61_500.5, 48_250.75])
DEBT = np.array([1_200.5, 15_000.25, 250.0])
WEIGHTS = np.array([0.25, -0.5])
INTERCEPT = 1250.75
REFUSED = r"grant [0-9a-f]{12} does not allow it"


@pytest.fixture(scope="module")
def consent_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = LocalCluster(
        tmp_path_factory.mktemp("consent"),
        clients=CLIENTS,
        server_args=["--client-outputs", str(OUTPUT_QUOTA)],
    )
    local.start()
    yield local
    local.stop()


@dataclass(frozen=True)
class Showcase:
    """One pinned prediction set up as the README does it, under fresh names."""

    job: dict[str, str | list[str]]
    weights: DatasetRef
    income: DatasetRef
    bank_grant: Grant

    @property
    def expected(self) -> npt.NDArray[np.float64]:
        predictions: npt.NDArray[np.float64] = np.column_stack([INCOME, DEBT]) @ WEIGHTS + INTERCEPT
        return predictions


def _showcase(cluster: LocalCluster) -> Showcase:
    tag = secrets.token_hex(3)
    income, debt, weights, intercept = (f"{n}-{tag}" for n in ("income", "debt", "weights", "intercept"))
    job: dict[str, str | list[str]] = {
        "features": [f"bank-1/{income}", f"bank-2/{debt}"],
        "weights": f"model-owner/{weights}",
        "intercept": f"model-owner/{intercept}",
    }
    with cluster.client("model-owner") as owner:
        model_grant = [Grant.pinned("model-owner", PREDICT, job)]
        w = owner.upload(weights, WEIGHTS, grants=model_grant)
        c = owner.upload(intercept, INTERCEPT, grants=model_grant)
    pinned = dict(job, weights=w.pinned, intercept=c.pinned)
    bank_grant = Grant.pinned("model-owner", PREDICT, pinned)
    with cluster.client("bank-1") as bank:
        income_ref = bank.upload(income, INCOME, grants=[bank_grant])
    with cluster.client("bank-2") as bank:
        bank.upload(debt, DEBT, grants=[bank_grant])
    return Showcase(job, w, income_ref, bank_grant)


@pytest.fixture
def showcase(consent_cluster: LocalCluster) -> Showcase:
    return _showcase(consent_cluster)


@pytest.fixture
def owner(consent_cluster: LocalCluster) -> Iterator[MpcClient]:
    with consent_cluster.client("model-owner") as client:
        yield client


def test_the_pinned_prediction_runs_and_is_right(owner: MpcClient, showcase: Showcase) -> None:
    _, predictions = owner.run_and_fetch(PREDICT, showcase.job)
    np.testing.assert_allclose(predictions, showcase.expected, atol=1e-6)


def test_attack_replacing_the_weights_by_a_unit_vector_is_refused(
    owner: MpcClient, showcase: Showcase
) -> None:
    """Weights (1, 0) would output bank-1's column: re-uploading the model voids the banks' grants."""
    weights = str(showcase.job["weights"]).partition("/")[2]
    owner.upload(
        weights, [1.0, 0.0], grants=[Grant.pinned("model-owner", PREDICT, showcase.job)], overwrite=True
    )
    with pytest.raises(
        PermissionDeniedError, match=rf"{REFUSED}: it pins model-owner/{weights} to a version"
    ):
        owner.run_and_fetch(PREDICT, showcase.job)


def test_attack_a_new_weights_dataset_is_refused(owner: MpcClient, showcase: Showcase) -> None:
    """Weights (1, 0) under another name: the banks pinned the inputs by name."""
    crafted = dict(showcase.job, weights="model-owner/unit-weights")
    owner.upload(
        "unit-weights", [1.0, 0.0], grants=[Grant.read_access("model-owner", PREDICT)], overwrite=True
    )
    with pytest.raises(PermissionDeniedError, match=rf"{REFUSED}: its inputs are pinned to features="):
        owner.run_and_fetch(PREDICT, crafted)


def test_attack_a_one_feature_job_with_weight_one_is_refused(owner: MpcClient, showcase: Showcase) -> None:
    owner.upload("one", [1.0], grants=[Grant.read_access("model-owner", PREDICT)], overwrite=True)
    features = showcase.job["features"]
    with pytest.raises(PermissionDeniedError, match=rf"dataset {features[0]} may not be used.*{REFUSED}"):
        owner.run_and_fetch(PREDICT, {"features": [features[0]], "weights": "one"})


def test_attack_subtracting_two_predictions_is_refused(owner: MpcClient, showcase: Showcase) -> None:
    """(a, b) then (a, b + 1), subtracted, is bank-2's column: the second job cannot run."""
    _, first = owner.run_and_fetch(PREDICT, showcase.job)
    np.testing.assert_allclose(first, showcase.expected, atol=1e-6)
    shifted = WEIGHTS + np.array([0.0, 1.0])
    owner.upload("shifted", shifted, grants=[Grant.read_access("model-owner", PREDICT)], overwrite=True)
    with pytest.raises(PermissionDeniedError, match=REFUSED):
        owner.run_and_fetch(PREDICT, dict(showcase.job, weights="model-owner/shifted"))


def test_attack_a_bank_column_in_the_weights_role_is_refused(owner: MpcClient, showcase: Showcase) -> None:
    """Bank-1's column as the weights against an identity 'feature' matrix."""
    identity = [f"eye-{k}" for k in range(3)]
    for k, name in enumerate(identity):
        owner.upload(name, np.eye(3)[k], grants=[Grant.read_access("model-owner", PREDICT)], overwrite=True)
    job = {"features": identity, "weights": str(showcase.income)}
    with pytest.raises(
        PermissionDeniedError, match=rf"{REFUSED}: it allows the dataset in the role 'features'"
    ):
        owner.run_and_fetch(PREDICT, job)


def test_a_third_party_cannot_submit_for_the_receiver(
    consent_cluster: LocalCluster, showcase: Showcase
) -> None:
    """The old attack: a fourth client's weights (1, 0), the banks' data, receiver model-owner.

    Neither that job nor the exact pinned job runs for it: the banks' grants
    name model-owner only, so to the outsider their datasets do not exist.
    """
    with consent_cluster.client("outsider") as outsider:
        outsider.upload(
            "w",
            [1.0, 0.0],
            grants=[Grant.read_access("model-owner", PREDICT, submitters=("outsider",))],
            overwrite=True,
        )
        crafted = dict(showcase.job, weights="outsider/w")
        del crafted["intercept"]
        for job in (crafted, showcase.job):
            with pytest.raises(NotFoundError, match=f"dataset {showcase.job['features'][0]} not found"):
                outsider.run(PREDICT, job, receiver="model-owner")


def test_revoking_a_grant_stops_the_next_job_and_adding_it_back_restores_it(
    consent_cluster: LocalCluster, owner: MpcClient, showcase: Showcase
) -> None:
    earlier = owner.run(PREDICT, showcase.job)
    with consent_cluster.client("bank-1") as bank:
        bank.revoke_grant(showcase.income.name, showcase.bank_grant)
        (info,) = [d for d in bank.datasets().items if d.ref.name == showcase.income.name]
        assert info.grants == ()
    with pytest.raises(NotFoundError, match=f"dataset {showcase.income} not found"):
        owner.run(PREDICT, showcase.job)  # model-owner is named by no grant any more
    np.testing.assert_allclose(owner.fetch(earlier, release=True), showcase.expected, atol=1e-6)
    with consent_cluster.client("bank-1") as bank:
        bank.add_grant(showcase.income.name, showcase.bank_grant)
    _, again = owner.run_and_fetch(PREDICT, showcase.job)
    np.testing.assert_allclose(again, showcase.expected, atol=1e-6)


def test_a_use_limit_and_an_expiry_are_kept(consent_cluster: LocalCluster, owner: MpcClient) -> None:
    x = [1.5, 2.5]
    with consent_cluster.client("bank-1") as bank:
        once = Grant("model-owner", "dot", max_uses=1)
        bank.upload("once", x, grants=[once], overwrite=True)
        bank.upload("expired", x, grants=[Grant("model-owner", "dot", expires_at=1.0)], overwrite=True)
    _, value = owner.run_and_fetch("dot", {"x": "bank-1/once", "y": "bank-1/once"})
    assert float(value) == pytest.approx(8.5)
    with pytest.raises(
        PermissionDeniedError, match=rf"grant {once.grant_id[:12]} does not allow it: its 1 uses are spent"
    ):
        owner.run_and_fetch("dot", {"x": "bank-1/once", "y": "bank-1/once"})
    with pytest.raises(PermissionDeniedError, match="it has expired"):
        owner.run_and_fetch("dot", {"x": "bank-1/expired", "y": "bank-1/expired"})
    with consent_cluster.client("bank-1") as bank:
        (state,) = next(d for d in bank.datasets().items if d.ref.name == "once").grants
        assert state.uses == 1


def _trail(cluster: LocalCluster, who: str, name: str) -> list[list[pb.JobRecord]]:
    """Each server's own audit trail of ``who``'s dataset ``name``, asked one server at a time."""
    ca = (cluster.cert_dir / "ca.pem").read_bytes()
    key, cert = ((cluster.cert_dir / f"{who}{ext}").read_bytes() for ext in (".key", ".pem"))
    trails = []
    for server, address in enumerate(cluster.addresses):
        options = [("grpc.ssl_target_name_override", f"server-{server}")]
        with grpc.secure_channel(address, grpc.ssl_channel_credentials(ca, key, cert), options) as channel:
            reply = pb_grpc.ClientServiceStub(channel).GetAuditTrail(
                pb.GetAuditTrailRequest(name=name), timeout=10
            )
            trails.append(list(reply.records))
    return trails


def test_every_server_keeps_the_audit_trail_with_the_submitter(
    consent_cluster: LocalCluster, owner: MpcClient, showcase: Showcase
) -> None:
    result, _ = owner.run_and_fetch(PREDICT, showcase.job)
    with consent_cluster.client("bank-1") as bank:
        bank.upload(
            "shared",
            [2.0, 3.0],
            grants=[Grant("model-owner", "dot", submitters=("model-owner", "outsider"))],
            overwrite=True,
        )
    with consent_cluster.client("outsider") as outsider:
        by_outsider = outsider.run(
            "dot", {"x": "bank-1/shared", "y": "bank-1/shared"}, receiver="model-owner"
        )
    assert float(owner.fetch(by_outsider, release=True)) == pytest.approx(13.0)
    for trail in _trail(consent_cluster, "bank-1", showcase.income.name):
        (record,) = [r for r in trail if r.job_id == result.job_id]
        assert (record.submitter, record.receiver, record.program, record.status) == (
            "model-owner",
            "model-owner",
            PREDICT,
            "OK",
        )
        inputs = [(i.role, f"{i.dataset.owner}/{i.dataset.name}", i.upload_id.hex()) for i in record.inputs]
        assert inputs[0] == ("features", str(showcase.income), showcase.income.version)
        assert inputs[2] == ("weights", str(showcase.weights), showcase.weights.version)
        assert record.inputs[0].grant_id.hex() == showcase.bank_grant.grant_id
        assert record.finished_at >= record.started_at > 0
    for trail in _trail(consent_cluster, "bank-1", "shared"):
        assert [(r.job_id, r.submitter) for r in trail] == [(by_outsider.job_id, "outsider")]
    with consent_cluster.client("bank-1") as bank:
        merged = bank.audit()
    assert merged.disagreements == ()
    jobs = {(r.submitter, r.job_id) for r in merged.items}
    assert {("model-owner", result.job_id), ("outsider", by_outsider.job_id)} <= jobs
    mine = owner.jobs()
    assert ("model-owner", result.job_id) in {(r.submitter, r.job_id) for r in mine.items}
    assert all(r.status == "OK" for r in mine.items if r.job_id == result.job_id)


def _refusal(stub: pb_grpc.ClientServiceStub, spec: pb.JobSpec) -> tuple[grpc.StatusCode, str]:
    try:
        stub.RunJob(pb.RunJobRequest(job=spec), timeout=10)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    raise AssertionError(f"the job {spec.job_id} ran")


def test_a_stranger_gets_one_answer_for_missing_and_not_yours(
    consent_cluster: LocalCluster, showcase: Showcase
) -> None:
    """Every probe of a bank's existing dataset and of a missing one answers alike, on every server."""
    existing, missing = str(showcase.income), f"bank-1/missing-{secrets.token_hex(3)}"
    ca = (consent_cluster.cert_dir / "ca.pem").read_bytes()
    key, cert = ((consent_cluster.cert_dir / f"outsider{ext}").read_bytes() for ext in (".key", ".pem"))
    probes: dict[str, Callable[[str], pb.JobSpec]] = {
        "dot": lambda ref: pb.JobSpec(
            job_id="probe", program="dot", receiver="outsider", inputs=[_input("x", ref), _input("y", ref)]
        ),
        "one feature": lambda ref: pb.JobSpec(
            job_id="probe",
            program=PREDICT,
            receiver="model-owner",
            inputs=[_input("features", ref), _input("weights", "outsider/w")],
        ),
        "wrong count": lambda ref: pb.JobSpec(
            job_id="probe", program="dot", receiver="outsider", inputs=[_input("x", ref)]
        ),
    }
    for server, address in enumerate(consent_cluster.addresses):
        options = [("grpc.ssl_target_name_override", f"server-{server}")]
        with grpc.secure_channel(address, grpc.ssl_channel_credentials(ca, key, cert), options) as channel:
            stub = pb_grpc.ClientServiceStub(channel)
            for label, spec in probes.items():
                answers = [_refusal(stub, spec(ref)) for ref in (existing, missing)]
                assert answers[0][0] == answers[1][0], label
                assert answers[0][1].replace(existing, "X") == answers[1][1].replace(missing, "X"), label
            trail = stub.GetAuditTrail(pb.GetAuditTrailRequest(name=showcase.income.name), timeout=10)
            assert list(trail.records) == []  # a name of the outsider's own: it has no such dataset
            listed = stub.ListDatasets(pb.ListDatasetsRequest(), timeout=10)
            assert {d.name for d in listed.datasets} <= {"w", "mine", "filler"}  # its own only


def _input(role: str, ref: str) -> pb.JobInput:
    from mpc_proto.v1 import types_pb2

    owner, _, name = ref.partition("/")
    return pb.JobInput(role=role, dataset=types_pb2.DatasetRef(owner=owner, name=name))


def test_outputs_and_job_ids_are_private_to_their_submitter(
    consent_cluster: LocalCluster, owner: MpcClient, showcase: Showcase
) -> None:
    job_id = f"shared-id-{secrets.token_hex(3)}"
    kept = owner.run(PREDICT, showcase.job, job_id=job_id)
    with consent_cluster.client("outsider") as outsider:
        answers = []
        for probe in (job_id, f"never-{secrets.token_hex(3)}"):
            with pytest.raises(NotFoundError) as caught:
                outsider.fetch(probe, submitter="model-owner")
            answers.append(str(caught.value).replace(probe, "ID"))
        assert answers[0] == answers[1]
        # The same job id is the outsider's own: no squatting, no probing.
        outsider.upload("mine", [1.0, 2.0], overwrite=True, grants=[Grant("outsider", "dot")])
        _, value = outsider.run_and_fetch("dot", {"x": "mine", "y": "mine"}, job_id=job_id)
        assert float(value) == pytest.approx(5.0)
        before = {i.identity: i.client_bytes_received for i in outsider.server_info()}
        with consent_cluster.client("bank-1") as bank:
            bank.upload("large", np.arange(50_000.0), overwrite=True)
        after = {i.identity: i.client_bytes_received for i in outsider.server_info()}
        assert all(after[s] - before[s] < 4096 for s in before), (
            "another client's upload shows in the counters"
        )
    np.testing.assert_allclose(owner.fetch(kept, release=True), showcase.expected, atol=1e-6)


def test_a_client_filling_its_quota_evicts_nobody(
    consent_cluster: LocalCluster, owner: MpcClient, showcase: Showcase
) -> None:
    """The outsider keeps outputs until refused; the model owner's unfetched output survives."""
    victim = owner.run(PREDICT, showcase.job)
    with consent_cluster.client("outsider") as outsider:
        outsider.upload(
            "filler",
            np.ones(100),
            overwrite=True,
            grants=[
                Grant("outsider", "elementwise.multiply"),
                Grant("model-owner", "elementwise.multiply", submitters=("outsider",)),
            ],
        )
        job = {"x": "filler", "y": "filler"}
        kept = []
        with pytest.raises(ResourceLimitError, match=rf"quota of {OUTPUT_QUOTA}"):
            for _ in range(OUTPUT_QUOTA + 1):
                kept.append(outsider.run("elementwise.multiply", job))
        assert len(kept) == OUTPUT_QUOTA
        with pytest.raises(ResourceLimitError):  # jobs it submits for others count against it too
            outsider.run("elementwise.multiply", job, receiver="model-owner")
        np.testing.assert_allclose(owner.fetch(victim, release=True), showcase.expected, atol=1e-6)
        _, own = owner.run_and_fetch(PREDICT, showcase.job)  # the victim's quota is its own
        np.testing.assert_allclose(own, showcase.expected, atol=1e-6)
        outsider.fetch(kept[0], release=True)
        outsider.run("elementwise.multiply", job)  # releasing one frees the quota
        for result in kept[1:]:
            outsider.fetch(result, release=True)


def test_an_owner_lists_its_datasets_with_versions_and_grants(
    consent_cluster: LocalCluster, showcase: Showcase
) -> None:
    with consent_cluster.client("bank-1") as bank:
        listing = bank.datasets()
    assert listing.disagreements == ()
    (info,) = [d for d in listing.items if d.ref.name == showcase.income.name]
    assert info.ref.version == showcase.income.version
    assert info.shape == (3,) and info.ring_bits == 128 and info.fractional_bits == 32
    assert info.magnitude_bits is not None and 2.0**info.magnitude_bits >= INCOME.max() * 2**32
    (state,) = info.grants
    assert state.grant.grant_id == showcase.bank_grant.grant_id
    own = str(showcase.income)
    expected = tuple((role, "self" if ref == own else ref) for role, ref in showcase.bank_grant.inputs)
    assert state.grant.inputs == expected
    assert all(d.ref.owner == "bank-1" for d in listing.items)
