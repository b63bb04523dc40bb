"""Consent beyond tests/e2e/test_refusals.py: who a grant covers, per input, per server.

test_refusals covers a receiver without a grant and a grant for another
program. Here: a grant names the receiver (not whoever submits), every
input needs it, it is matched exactly, an overwrite without it revokes it,
nobody can plant a dataset under another owner's name, and each server
decides on its own copy of the grants (one server whose copy lacks the
grant stops the job everywhere).
"""

from __future__ import annotations

import secrets

import grpc
import numpy as np
import pytest

from mpc_cli.local_cluster import LocalCluster
from mpc_client import Grant, InvalidArgumentError, PermissionDeniedError
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
        bank.upload("g-x", X, grants=[Grant("model-owner", DOT), Grant("model-owner", MUL)], overwrite=True)
    with secure_cluster.client("bank-2") as bank:
        bank.upload("g-only-outsider", X, grants=[Grant("outsider", MUL)], overwrite=True)


def test_a_grant_names_the_receiver_not_the_submitter(secure_cluster: LocalCluster, bank_data: None) -> None:
    with secure_cluster.client("outsider") as outsider:
        # The outsider may start a job whose output goes to the granted receiver ...
        job = outsider.run(DOT, {"x": "bank-1/g-x", "y": "bank-1/g-x"}, receiver="model-owner")
        # ... but never receive it,
        with pytest.raises(PermissionDeniedError):
            outsider.fetch(job)
        # ... nor name itself as the receiver.
        with pytest.raises(PermissionDeniedError, match="does not grant outsider"):
            outsider.run(DOT, {"x": "bank-1/g-x", "y": "bank-1/g-x"})
    with secure_cluster.client("model-owner") as owner:
        assert float(owner.fetch(job)) == pytest.approx(float(X @ X))
        # The granted receiver cannot redirect the output to someone else either.
        with pytest.raises(PermissionDeniedError, match="does not grant outsider"):
            owner.run(DOT, {"x": "bank-1/g-x", "y": "bank-1/g-x"}, receiver="outsider")


def test_every_input_needs_the_grant(secure_cluster: LocalCluster, bank_data: None) -> None:
    with secure_cluster.client("model-owner") as owner:
        owner.upload("g-own", X, grants=[Grant("model-owner", MUL)], overwrite=True)
        with pytest.raises(PermissionDeniedError, match="bank-2/g-only-outsider does not grant model-owner"):
            owner.run(MUL, {"x": "g-own", "y": "bank-2/g-only-outsider"})
        with pytest.raises(PermissionDeniedError, match="bank-2/g-only-outsider does not grant model-owner"):
            owner.run(MUL, {"x": "bank-2/g-only-outsider", "y": "bank-1/g-x"})
        # Even the owner's own dataset needs the grant for the owner.
        owner.upload("g-own-nogrant", X, overwrite=True)
        with pytest.raises(PermissionDeniedError):
            owner.run(MUL, {"x": "g-own-nogrant", "y": "g-own"})


def test_grants_match_exactly(secure_cluster: LocalCluster) -> None:
    with secure_cluster.client("bank-1") as bank:
        bank.upload("g-case", X, grants=[Grant("Model-Owner", DOT)], overwrite=True)
        for program in ("Dot", "dot ", "dot*", ""):
            with pytest.raises(InvalidArgumentError, match="unknown program"):
                bank.upload("g-bad", X, grants=[Grant("model-owner", program)])
    with secure_cluster.client("model-owner") as owner, pytest.raises(PermissionDeniedError):
        owner.run(DOT, {"x": "bank-1/g-case", "y": "bank-1/g-case"})


def test_an_overwrite_without_the_grant_revokes_it(secure_cluster: LocalCluster) -> None:
    with secure_cluster.client("bank-1") as bank:
        bank.upload("g-revoked", X, grants=[Grant("model-owner", DOT)], overwrite=True)
    with secure_cluster.client("model-owner") as owner:
        earlier = owner.run(DOT, {"x": "bank-1/g-revoked", "y": "bank-1/g-revoked"})
    with secure_cluster.client("bank-1") as bank:
        bank.upload("g-revoked", X, grants=[], overwrite=True)
    with secure_cluster.client("model-owner") as owner:
        with pytest.raises(PermissionDeniedError):
            owner.run(DOT, {"x": "bank-1/g-revoked", "y": "bank-1/g-revoked"})
        # What was computed with consent stays the receiver's.
        assert float(owner.fetch(earlier)) == pytest.approx(float(X @ X))


def test_nobody_can_plant_a_dataset_under_another_owner(
    secure_cluster: LocalCluster, raw: Raw, bank_data: None
) -> None:
    # The owner is the uploader's certificate, never a field of the request.
    with secure_cluster.client("outsider") as outsider:
        outsider.upload("g-x", -X, grants=[Grant("model-owner", DOT)], overwrite=True)
    with secure_cluster.client("model-owner") as owner:
        _, result = owner.run_and_fetch(DOT, {"x": "bank-1/g-x", "y": "outsider/g-x"})
    assert float(result) == pytest.approx(float(-(X @ X)))
    with secure_cluster.client("model-owner") as owner:
        _, result = owner.run_and_fetch(DOT, {"x": "bank-1/g-x", "y": "bank-1/g-x"})
    assert float(result) == pytest.approx(float(X @ X))


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
    granted = [types_pb2.Grant(receiver="model-owner", program=DOT)]
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
