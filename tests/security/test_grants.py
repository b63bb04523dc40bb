"""Consent beyond tests/e2e/test_consent.py: who a grant covers, per input, per server.

test_consent covers the showcase's pinned grants against the extraction
attacks. Here: who may submit and receive under a grant, every input needs
one, the safe default refuses other owners' data, roles and names match
exactly, an overwrite without the grant revokes it, nobody can plant a
dataset under another owner's name, grants that cannot mean what they say
are refused, and each server decides on its own copy of the grants (one
server whose copy differs stops the job everywhere, and the SDK says so).
"""

from __future__ import annotations

import secrets

import grpc
import numpy as np
import pytest

from mpc_cli.local_cluster import LocalCluster
from mpc_client import Grant, InvalidArgumentError, MpcError, NotFoundError, PermissionDeniedError
from mpc_core.fixed_point import FixedPoint
from mpc_core.ring import RING128
from mpc_core.sharing import share
from mpc_proto.v1 import client_service_pb2 as pb
from mpc_proto.v1 import types_pb2

from .conftest import Raw, describe

pytestmark = pytest.mark.e2e
MUL, DOT = "elementwise.multiply", "dot"
PD = grpc.StatusCode.PERMISSION_DENIED
NF = grpc.StatusCode.NOT_FOUND
ABORTED = grpc.StatusCode.ABORTED
X = np.array([3.0, -1.5, 2.25])


@pytest.fixture(scope="module")
def bank_data(secure_cluster: LocalCluster) -> None:
    with secure_cluster.client("bank-1") as bank:
        grants = [
            Grant("model-owner", DOT, submitters=("model-owner", "outsider")),
            Grant("model-owner", MUL),
        ]
        bank.upload("g-x", X, grants=grants, overwrite=True)
    with secure_cluster.client("bank-2") as bank:
        bank.upload("g-only-outsider", X, grants=[Grant("outsider", MUL)], overwrite=True)


def test_a_grant_names_its_receiver_and_its_submitters(secure_cluster: LocalCluster, bank_data: None) -> None:
    with secure_cluster.client("outsider") as outsider:
        # A named submitter may start a job whose output goes to the granted receiver ...
        job = outsider.run(DOT, {"x": "bank-1/g-x", "y": "bank-1/g-x"}, receiver="model-owner")
        # ... but never receive it (one answer for "not yours" and "no such output"),
        with pytest.raises(NotFoundError, match=f"no output of job {job.job_id} for outsider"):
            outsider.fetch(job)
        # ... nor name itself as the receiver.
        with pytest.raises(PermissionDeniedError, match="it allows model-owner outputs of dot"):
            outsider.run(DOT, {"x": "bank-1/g-x", "y": "bank-1/g-x"})
    with secure_cluster.client("model-owner") as owner:
        assert float(owner.fetch(job, release=True)) == pytest.approx(float(X @ X))
        # The granted receiver cannot redirect the output to someone else either.
        with pytest.raises(PermissionDeniedError, match="it allows model-owner outputs of dot"):
            owner.run(DOT, {"x": "bank-1/g-x", "y": "bank-1/g-x"}, receiver="outsider")
    with secure_cluster.client("bank-2") as stranger, pytest.raises(NotFoundError):
        stranger.run(DOT, {"x": "bank-1/g-x", "y": "bank-1/g-x"}, receiver="model-owner")
    # Refusals name only the grants that name the caller: not the multiply grant, for model-owner alone.
    with (
        secure_cluster.client("outsider") as outsider,
        pytest.raises(PermissionDeniedError, match=r"it allows model-owner outputs of dot$"),
    ):
        outsider.run(MUL, {"x": "bank-1/g-x", "y": "bank-1/g-x"}, receiver="model-owner")


def test_every_input_needs_a_grant(secure_cluster: LocalCluster, bank_data: None) -> None:
    with secure_cluster.client("model-owner") as owner:
        owner.upload("g-own", X, grants=[Grant("model-owner", MUL)], overwrite=True)
        # A dataset whose grants do not name model-owner is, to it, a dataset that does not exist.
        with pytest.raises(NotFoundError, match="dataset bank-2/g-only-outsider not found"):
            owner.run(MUL, {"x": "g-own", "y": "bank-2/g-only-outsider"})
        with pytest.raises(NotFoundError, match="dataset bank-2/g-only-outsider not found"):
            owner.run(MUL, {"x": "bank-2/g-only-outsider", "y": "bank-1/g-x"})
        # Even the owner's own dataset needs a grant for the owner.
        owner.upload("g-own-nogrant", X, overwrite=True)
        with pytest.raises(
            PermissionDeniedError, match="g-own-nogrant may not be used in this job: no grant"
        ):
            owner.run(MUL, {"x": "g-own-nogrant", "y": "g-own"})


def test_the_default_grant_allows_no_other_owners_data(secure_cluster: LocalCluster, bank_data: None) -> None:
    """``Grant(receiver, program)``: the receiver's own data cannot be combined with the bank's."""
    with secure_cluster.client("model-owner") as owner:
        owner.upload(
            "g-probe", [1.0, 0.0, 0.0], grants=[Grant.read_access("model-owner", MUL)], overwrite=True
        )
        with pytest.raises(
            PermissionDeniedError,
            match=r"it allows no other owner's data \(the job names model-owner/g-probe\)",
        ):
            owner.run(MUL, {"x": "bank-1/g-x", "y": "g-probe"})
        _, square = owner.run_and_fetch(MUL, {"x": "bank-1/g-x", "y": "bank-1/g-x"})  # its own data: fine
    np.testing.assert_allclose(square, X * X, atol=1e-9)


def test_a_role_restriction_is_kept(secure_cluster: LocalCluster) -> None:
    with secure_cluster.client("bank-1") as bank:
        bank.upload("g-role", X, grants=[Grant("model-owner", DOT, role="x")], overwrite=True)
        bank.upload("g-other", X, grants=[Grant("model-owner", DOT)], overwrite=True)
    with secure_cluster.client("model-owner") as owner:
        _, value = owner.run_and_fetch(DOT, {"x": "bank-1/g-role", "y": "bank-1/g-other"})
        assert float(value) == pytest.approx(float(X @ X))
        with pytest.raises(PermissionDeniedError, match="in the role 'x' only"):
            owner.run(DOT, {"x": "bank-1/g-other", "y": "bank-1/g-role"})


def test_grants_match_exactly(secure_cluster: LocalCluster) -> None:
    with secure_cluster.client("bank-1") as bank:
        bank.upload("g-case", X, grants=[Grant("Model-Owner", DOT)], overwrite=True)
        for program in ("Dot", "dot ", "dot*", ""):
            with pytest.raises(InvalidArgumentError, match="unknown program"):
                bank.upload("g-bad", X, grants=[Grant("model-owner", program)])
    with secure_cluster.client("model-owner") as owner, pytest.raises(NotFoundError):
        owner.run(DOT, {"x": "bank-1/g-case", "y": "bank-1/g-case"})


def test_grants_that_cannot_mean_what_they_say_are_refused(secure_cluster: LocalCluster) -> None:
    with secure_cluster.client("bank-1") as bank:
        elsewhere = Grant.pinned("model-owner", DOT, {"x": "bank-2/a", "y": "bank-2/b"})
        with pytest.raises(InvalidArgumentError, match="must list bank-1/g-pin among its inputs"):
            bank.upload("g-pin", X, grants=[elsewhere])
        twice = Grant("model-owner", DOT)
        with pytest.raises(InvalidArgumentError, match="share one grant id"):
            bank.upload("g-pin", X, grants=[twice, Grant("model-owner", MUL, grant_id=twice.grant_id)])
        with pytest.raises(NotFoundError):
            bank.add_grant("g-never-uploaded", Grant("model-owner", DOT))
        bank.upload("g-pin", X, overwrite=True)
        with pytest.raises(NotFoundError, match="no grant"):
            bank.revoke_grant("g-pin", secrets.token_hex(16))
        with pytest.raises(InvalidArgumentError, match="unknown program"):
            bank.add_grant("g-pin", Grant("model-owner", "nonsense"))


def test_an_overwrite_without_the_grant_revokes_it(secure_cluster: LocalCluster) -> None:
    with secure_cluster.client("bank-1") as bank:
        bank.upload("g-revoked", X, grants=[Grant("model-owner", DOT)], overwrite=True)
    with secure_cluster.client("model-owner") as owner:
        earlier = owner.run(DOT, {"x": "bank-1/g-revoked", "y": "bank-1/g-revoked"})
    with secure_cluster.client("bank-1") as bank:
        bank.upload("g-revoked", X, grants=[], overwrite=True)
    with secure_cluster.client("model-owner") as owner:
        with pytest.raises(NotFoundError):
            owner.run(DOT, {"x": "bank-1/g-revoked", "y": "bank-1/g-revoked"})
        # What was computed with consent stays the receiver's.
        assert float(owner.fetch(earlier, release=True)) == pytest.approx(float(X @ X))


def test_nobody_can_plant_a_dataset_under_another_owner(
    secure_cluster: LocalCluster, raw: Raw, bank_data: None
) -> None:
    # The owner is the uploader's certificate, never a field of the request.
    with secure_cluster.client("bank-1") as bank:
        bank.upload("g-plant", X, grants=[Grant.read_access("model-owner", DOT)], overwrite=True)
    with secure_cluster.client("outsider") as outsider:
        outsider.upload("g-plant", -X, grants=[Grant.read_access("model-owner", DOT)], overwrite=True)
    with secure_cluster.client("model-owner") as owner:
        _, result = owner.run_and_fetch(DOT, {"x": "bank-1/g-plant", "y": "outsider/g-plant"})
        assert float(result) == pytest.approx(float(-(X @ X)))
        _, result = owner.run_and_fetch(DOT, {"x": "bank-1/g-plant", "y": "bank-1/g-plant"})
        assert float(result) == pytest.approx(float(X @ X))


def test_a_grant_on_two_servers_only_allows_nothing_and_is_reported(
    secure_cluster: LocalCluster, raw: Raw
) -> None:
    """An owner's AddGrant reached two servers: the third refuses, so no job runs; the listing says so."""
    name = f"g-partial-{secrets.token_hex(3)}"
    with secure_cluster.client("bank-2") as bank:
        bank.upload(name, X, grants=[Grant("bank-2", DOT)])
    grant = types_pb2.Grant(receiver="model-owner", program=DOT, grant_id=secrets.token_bytes(16))
    for server in (0, 1):
        raw.client(server, "bank-2").AddGrant(pb.AddGrantRequest(name=name, grant=grant), timeout=5)
    with secure_cluster.client("model-owner") as owner, pytest.raises(MpcError, match="server-2"):
        owner.run(DOT, {"x": f"bank-2/{name}", "y": f"bank-2/{name}"})
    with secure_cluster.client("bank-2") as bank:
        listing = bank.datasets()
    assert any(name in d and "server-2" in d for d in listing.disagreements), listing.disagreements


def _consistent_upload(
    name: str, grants_per_server: list[list[types_pb2.Grant]]
) -> list[list[pb.UploadDatasetRequest]]:
    """Correct shares for each server; only the grants in the headers differ."""
    encoded, magnitude = FixedPoint.default().encode_bounded(X)
    shares = share(RING128, encoded)
    upload_id = secrets.token_bytes(16)
    streams = []
    for party in range(3):
        header = pb.UploadHeader(
            name=name,
            shape=[3],
            fractional_bits=32,
            ring=types_pb2.RING_Z2_128,
            magnitude_bits=magnitude,
            upload_id=upload_id,
            grants=grants_per_server[party],
        )
        chunk = types_pb2.ShareChunk(
            offset=0, first=RING128.to_wire(shares[party].first), second=RING128.to_wire(shares[party].second)
        )
        streams.append([pb.UploadDatasetRequest(header=header), pb.UploadDatasetRequest(chunk=chunk)])
    return streams


def test_servers_refuse_an_upload_whose_headers_differ(raw: Raw) -> None:
    """A client told server-2 a narrower consent than server-0 and server-1.

    The servers confirm they hold the same header (grants included) before
    storing anything, so all three refuse the upload and no job can run on it.
    """
    name = f"g-split-{secrets.token_hex(4)}"
    granted = [types_pb2.Grant(receiver="model-owner", program=DOT, grant_id=secrets.token_bytes(16))]
    uploads = raw.upload_all(_consistent_upload(name, [granted, granted, []]), "bank-2")
    assert all(o.code == grpc.StatusCode.INVALID_ARGUMENT for o in uploads), describe(uploads)
    assert all("different headers of dataset bank-2/" in o.details for o in uploads), describe(uploads)
    job_id = f"g-split-{secrets.token_hex(4)}"
    spec = pb.JobSpec(
        job_id=job_id,
        program=DOT,
        inputs=[
            pb.JobInput(role="x", dataset=types_pb2.DatasetRef(owner="bank-2", name=name)),
            pb.JobInput(role="y", dataset=types_pb2.DatasetRef(owner="bank-2", name=name)),
        ],
        receiver="model-owner",
    )
    outcomes = raw.run_jobs([pb.RunJobRequest(job=spec, return_output=True)] * 3, "model-owner")
    assert all(o.code == NF for o in outcomes), describe(outcomes)
