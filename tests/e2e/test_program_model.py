"""The open program model against real servers: listed programs, parameters, outputs kept as datasets."""

from __future__ import annotations

import secrets

import numpy as np
import pytest

from mpc_cli.local_cluster import LocalCluster
from mpc_client import (
    AlreadyExistsError,
    Grant,
    InvalidArgumentError,
    Keep,
    NotFoundError,
    PermissionDeniedError,
)

pytestmark = pytest.mark.e2e
PREDICT, DOT = "linear_regression.predict", "dot"
X = np.array([[1.5, -2.0], [0.25, 4.0], [3.0, 1.0]])
W = np.array([0.5, -0.25])


def _model(cluster: LocalCluster, **bank_grant: object) -> dict[str, str | list[str]]:
    """bank-1 features, the model owner's weights, both granting this one prediction job."""
    tag = secrets.token_hex(3)
    job: dict[str, str | list[str]] = {"features": [f"bank-1/x-{tag}"], "weights": f"model-owner/w-{tag}"}
    with cluster.client("model-owner") as owner:
        owner.upload(f"w-{tag}", W, grants=[Grant.pinned("model-owner", PREDICT, job)])
    with cluster.client("bank-1") as bank:
        bank.upload(f"x-{tag}", X, grants=[Grant.pinned("model-owner", PREDICT, job, **bank_grant)])  # type: ignore[arg-type]
    return job


def test_servers_list_their_programs_with_roles_parameters_and_outputs(cluster: LocalCluster) -> None:
    with cluster.client("bank-1") as bank:
        infos = bank.server_info()
    programs = [{p.name: p for p in info.programs} for info in infos]
    assert programs[0] == programs[1] == programs[2]
    predict = programs[0][PREDICT]
    assert predict.roles == (("features", 1, 64), ("weights", 1, 1), ("intercept", 0, 1))
    assert predict.outputs == ("predictions",) and predict.summary
    assert programs[0][DOT].outputs == ("value",)


def test_an_output_kept_as_a_dataset_is_used_by_a_later_job_and_never_delivered(
    cluster: LocalCluster,
) -> None:
    job = _model(cluster)
    name = f"scores-{secrets.token_hex(3)}"
    with cluster.client("model-owner") as owner:
        kept = Keep(name, grants=(Grant("model-owner", DOT),))
        # kept at the working scale 2^32 (the natural scale of a product is 2^64)
        result = owner.run(PREDICT, job, keep_as={"predictions": kept}, output_fractional_bits=32)
        (output,) = result.outputs
        assert (
            output.kept_as is not None and output.kept_as.name == name and len(output.kept_as.version) == 32
        )
        with pytest.raises(InvalidArgumentError, match="nothing to fetch"):
            owner.fetch(result)
        with pytest.raises(NotFoundError):  # and the servers hold no output to fetch
            owner.fetch(result.job_id)
        (info,) = [d for d in owner.datasets().items if d.ref.name == name]
        assert info.ref.version == output.kept_as.version and info.shape == (3,)
        _, square = owner.run_and_fetch(DOT, {"x": name, "y": name})
        expected = X @ W
        assert float(square) == pytest.approx(float(expected @ expected), abs=1e-6)
        again = owner.run(  # a retry
            PREDICT, job, keep_as={"predictions": kept}, output_fractional_bits=32, job_id=result.job_id
        )
        assert again.outputs == result.outputs
    with cluster.client("bank-1") as bank:
        (record,) = [r for r in bank.audit().items if r.job_id == result.job_id]
    assert record.kept == (("predictions", output.kept_as),)


def test_keeping_is_the_receivers_own_and_never_overwrites_by_accident(cluster: LocalCluster) -> None:
    job = _model(cluster)
    name = f"scores-{secrets.token_hex(3)}"
    with cluster.client("model-owner") as owner:
        owner.upload(name, [1.0], overwrite=True)
        with pytest.raises(AlreadyExistsError, match=f"dataset model-owner/{name} already exists"):
            owner.run(PREDICT, job, keep_as={"predictions": name})
        result = owner.run(PREDICT, job, keep_as={"predictions": Keep(name, overwrite=True)})
        assert result.outputs[0].kept_as is not None
        (info,) = [d for d in owner.datasets().items if d.ref.name == name]
        assert info.shape == (3,)
        with pytest.raises(InvalidArgumentError, match="has no output 'weights'"):
            owner.run(PREDICT, job, keep_as={"weights": "w"})
        with pytest.raises(InvalidArgumentError, match="has no parameter 'l2'"):
            owner.run(PREDICT, job, parameters={"l2": 0.5})
    with cluster.client("bank-1") as bank, pytest.raises(PermissionDeniedError, match="only the receiver"):
        bank.run(PREDICT, job, receiver="model-owner", keep_as={"predictions": "planted"})


def test_a_grant_can_require_every_output_to_stay_on_the_servers(cluster: LocalCluster) -> None:
    job = _model(cluster, keep_outputs=True)
    with cluster.client("model-owner") as owner:
        with pytest.raises(PermissionDeniedError, match="keep every output on the servers"):
            owner.run_and_fetch(PREDICT, job)
        result = owner.run(PREDICT, job, keep_as={"predictions": f"kept-{secrets.token_hex(3)}"})
        assert result.outputs[0].kept_as is not None
