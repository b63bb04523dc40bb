"""``logistic_regression.fit`` and ``.predict`` through the three job services (in memory).

The fit is compared with the same algorithm in float64 (fixed-Hessian Newton
with the clipped momentum and the polynomial sigmoid: the protocol must
agree with it to rounding) and with scikit-learn's ``LogisticRegression``
(the model it approximates, ``C = 1 / (l2 N)``).
"""

from __future__ import annotations

import asyncio
import secrets

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score

from mpc_core.errors import InvalidArgumentError, PermissionDeniedError
from mpc_core.ring import RING64, RING128
from mpc_server.protocol import sigmoid as sg
from mpc_server.service.grants import Grant, GrantScope
from mpc_server.service.model import DatasetRef, DatasetSummary, JobInput, JobResult, JobSpec, KeepRequest
from mpc_server.service.programs.logistic_plan import MOMENTUM_BITS, plan_probabilities, weight_limit_bits

from .conftest import Cluster, read_access

FIT, PREDICT = "logistic_regression.fit", "logistic_regression.predict"


def poly_sigmoid(u: np.ndarray) -> np.ndarray:
    c = np.array(sg.POLY_NUMERATORS, dtype=np.float64) / 2.0**sg.POLY_DENOMINATOR_BITS
    t = np.clip(u, -6.5, 6.5) / 8
    return 0.5 + sum(ci * t ** (2 * i + 1) for i, ci in enumerate(c))


def float_fit(x: np.ndarray, y: np.ndarray, l2: float, iterations: int) -> np.ndarray:
    """The protocol's algorithm in float64: ``[w, c]``."""
    n, d = x.shape
    z = np.hstack([x, np.ones((n, 1))])
    s = int(n - 1).bit_length()
    ridge = np.eye(d + 1) * l2 * n / 2**s
    ridge[-1, -1] = 0.0
    inverse = np.linalg.inv(z.T @ z / (4 * 2**s) + ridge)
    limit = 2.0 ** weight_limit_bits(l2)
    w = v = np.zeros(d + 1)
    for t in range(iterations):
        g = z.T @ (y - poly_sigmoid(z @ v)) / 2**s - ridge @ v
        new = np.clip(v + inverse @ g, -limit, limit)
        beta = round(t / (t + 3) * 2**MOMENTUM_BITS) / 2**MOMENTUM_BITS
        w, v = new, new + beta * (new - w)
    return w


def standardised_breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_breast_cancer(return_X_y=True)
    return (x - x.mean(axis=0)) / x.std(axis=0), y.astype(np.float64)


def put_training_data(cluster: Cluster, x: np.ndarray, y: np.ndarray, grants: list[Grant]) -> dict:
    """Columns split across three banks; the label at the model owner."""
    cuts = np.array_split(np.arange(x.shape[1]), 3)
    names = []
    for bank, columns in enumerate(cuts, start=1):
        cluster.put(f"bank-{bank}/x", x[:, columns], grants=grants)
        names.append(f"bank-{bank}/x")
    cluster.put("model-owner/y", y, grants=grants)
    return {"features": names, "label": "model-owner/y"}


def test_fit_on_breast_cancer_matches_its_float_algorithm_and_sklearn(cluster: Cluster) -> None:
    x, y = standardised_breast_cancer()
    n = len(y)
    job = put_training_data(cluster, x, y, [read_access("model-owner", FIT)])
    result = cluster.run(FIT, job, parameters={"l2": 1 / n, "iterations": 30})
    assert [o.name for o in result.outputs] == ["weights", "intercept"]
    assert result.outputs[0].shape == (30,) and result.outputs[1].shape == ()
    w, c = cluster.fetch(result, "weights"), float(cluster.fetch(result, "intercept"))
    np.testing.assert_allclose(np.r_[w, c], float_fit(x, y, 1 / n, 30), atol=1e-4)
    reference = LogisticRegression(C=1.0, max_iter=10_000).fit(x, y)
    ours, theirs = x @ w + c, reference.decision_function(x)
    assert abs(roc_auc_score(y, ours) - roc_auc_score(y, theirs)) < 0.002
    assert abs(accuracy_score(y, ours > 0) - accuracy_score(y, theirs > 0)) <= 0.01


def test_fit_converges_to_sklearns_model_on_overlapping_classes(cluster: Cluster) -> None:
    x, y = make_classification(4000, 6, n_informative=4, flip_y=0.05, random_state=3)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    job = put_training_data(cluster, x, y.astype(np.float64), [read_access("model-owner", FIT)])
    l2 = 1e-3
    result = cluster.run(FIT, job, parameters={"l2": l2, "iterations": 20})
    model = np.r_[cluster.fetch(result, "weights"), cluster.fetch(result, "intercept")]
    reference = LogisticRegression(C=1 / (l2 * len(y)), max_iter=10_000).fit(x, y)
    np.testing.assert_allclose(model, np.r_[reference.coef_[0], reference.intercept_], atol=0.01)


def run_keeping(cluster: Cluster, job: dict, parameters: dict, keep: dict, grant: Grant) -> JobResult:
    """A fit whose outputs are kept as the model owner's datasets, with ``grant`` on them."""
    spec = JobSpec(
        f"job-{secrets.token_hex(6)}",
        FIT,
        tuple(
            JobInput(role, DatasetRef(*ref.split("/")))
            for role, refs in job.items()
            for ref in np.atleast_1d(refs)
        ),
        "model-owner",
        None,
        tuple(sorted(parameters.items())),
        tuple(KeepRequest(output, name, (grant,)) for output, name in keep.items()),
    )

    async def all_three() -> list[JobResult]:
        return list(await asyncio.gather(*(s.jobs.run("model-owner", spec, 60.0) for s in cluster.servers)))

    return asyncio.run(all_three())[0]


def test_a_kept_model_predicts_probabilities_and_decisions(cluster: Cluster) -> None:
    x, y = standardised_breast_cancer()
    access = [read_access("model-owner", FIT), read_access("model-owner", PREDICT)]
    job = put_training_data(cluster, x, y, access)
    kept = {"weights": "model-w", "intercept": "model-c"}
    fitted = run_keeping(cluster, job, {"l2": 1 / len(y), "iterations": 12}, kept, access[1])
    assert all(o.kept_as is not None for o in fitted.outputs)
    model = {
        "features": job["features"],
        "weights": "model-owner/model-w",
        "intercept": "model-owner/model-c",
    }
    probabilities = cluster.run(PREDICT, model)
    p = cluster.fetch(probabilities)
    w = float_fit(x, y, 1 / len(y), 12)
    score = x @ w[:-1] + w[-1]
    assert p.min() >= 0.0 and p.max() <= 1.0
    assert np.abs(p - 1 / (1 + np.exp(-score))).max() < 1e-3  # 7.6e-4 plus the model's own rounding
    decided = cluster.fetch(
        cluster.run(PREDICT, model, parameters={"decisions_only": True, "threshold": 0.8})
    )
    away = np.abs(score - np.log(0.8 / 0.2)) > 0.05  # beyond the float model's distance from ours
    np.testing.assert_array_equal(decided[away], (score[away] > np.log(4.0)).astype(float))


def test_a_grant_for_decisions_only_refuses_probabilities(cluster: Cluster) -> None:
    rng = np.random.default_rng(5)
    x, w = rng.normal(size=(200, 3)), np.array([1.5, -2.0, 0.5])
    decisions_only = Grant(
        secrets.token_bytes(16), "model-owner", PREDICT, scope=GrantScope.ANY_INPUTS,
        parameters=(("decisions_only", True), ("threshold", 0.3)),
    )  # fmt: skip
    cluster.put("bank-1/x", x, grants=[decisions_only])
    cluster.put("model-owner/w", w, grants=[decisions_only])
    job = {"features": "bank-1/x", "weights": "model-owner/w"}
    with pytest.raises(PermissionDeniedError, match="decisions_only"):
        cluster.run(PREDICT, job)
    with pytest.raises(PermissionDeniedError, match="threshold"):
        cluster.run(PREDICT, job, parameters={"decisions_only": True})
    result = cluster.run(PREDICT, job, parameters={"decisions_only": True, "threshold": 0.3})
    assert result.outputs[0].fractional_bits == 0
    np.testing.assert_array_equal(cluster.fetch(result), (x @ w > np.log(0.3 / 0.7)).astype(float))


def test_fit_refuses_unstandardised_features_after_one_opened_bit(cluster: Cluster) -> None:
    x, y = load_breast_cancer(return_X_y=True)  # raw: areas in the thousands
    job = put_training_data(cluster, x / 8, y.astype(np.float64), [read_access("model-owner", FIT)])
    with pytest.raises(InvalidArgumentError, match="needs standardised features"):
        cluster.run(FIT, job, parameters={"l2": 1e-3})


def test_fit_refuses_what_it_cannot_do_before_any_message(cluster: Cluster, tmp_path) -> None:
    rng = np.random.default_rng(2)
    access = [read_access("model-owner", FIT)]
    cluster.put("bank-1/x", rng.normal(size=(50, 3)), grants=access)
    cluster.put("bank-1/short", rng.normal(size=(40, 3)), grants=access)
    cluster.put("bank-1/wide", rng.normal(size=(50, 49)), grants=access)
    cluster.put("model-owner/y", rng.integers(0, 2, 50).astype(float), grants=access)
    cluster.put("model-owner/counts", rng.integers(0, 5, 50).astype(float), grants=access)
    job = {"features": "bank-1/x", "label": "model-owner/y"}
    with pytest.raises(InvalidArgumentError, match="differ in row count"):
        cluster.run(FIT, {**job, "features": ["bank-1/x", "bank-1/short"]})
    with pytest.raises(InvalidArgumentError, match="more rows than"):
        cluster.run(FIT, {**job, "features": "bank-1/wide"})
    with pytest.raises(InvalidArgumentError, match="0/1 values"):
        cluster.run(FIT, {**job, "label": "model-owner/counts"})
    with pytest.raises(InvalidArgumentError, match="l2 > 0"):
        cluster.run(FIT, job, parameters={"l2": 0.0})
    with pytest.raises(InvalidArgumentError, match="must be at most 200"):
        cluster.run(FIT, job, parameters={"iterations": 500})
    small = Cluster(tmp_path / "z64", RING64)
    small.put("bank-1/x", rng.normal(size=(50, 3)), grants=access, fractional_bits=16)
    small.put("model-owner/y", rng.integers(0, 2, 50).astype(float), grants=access, fractional_bits=16)
    with pytest.raises(InvalidArgumentError, match="fits no working scale"):
        small.run(FIT, job)


def test_in_z64_predict_gives_decisions_but_refuses_probabilities(tmp_path) -> None:
    small, access = Cluster(tmp_path, RING64), [read_access("model-owner", PREDICT)]
    x, w = np.array([[0.5, -1.0], [2.0, 0.25], [-3.0, 1.0]]), np.array([1.0, 0.5])
    small.put("bank-1/x", x, grants=access, fractional_bits=16)
    small.put("model-owner/w", w, grants=access, fractional_bits=16)
    job = {"features": "bank-1/x", "weights": "model-owner/w"}
    with pytest.raises(InvalidArgumentError, match="cannot be computed"):
        small.run(PREDICT, job)
    result = small.run(PREDICT, job, parameters={"decisions_only": True, "threshold": 0.5})
    np.testing.assert_array_equal(small.fetch(result), (x @ w > 0).astype(float))
    with pytest.raises(InvalidArgumentError, match="strictly between 0 and 1"):
        small.run(PREDICT, job, parameters={"decisions_only": True, "threshold": 1.0})


def test_probabilities_for_a_million_rows_truncate_the_weights_first(cluster: Cluster) -> None:
    """At 2^64 the sigmoid's clipped scores would exceed the budget: the weights drop 8 bits (one round)."""

    def summary(name: str, shape: tuple[int, ...], bits: int) -> DatasetSummary:
        return DatasetSummary(DatasetRef("a", name), shape, 128, 32, bits, b"", 0.0, ())

    for rows, drop in ((10**5, None), (10**6, 8)):
        model = {"weights": (summary("w", (1,), 33),), "intercept": (summary("c", (), 31),)}
        plan = plan_probabilities(RING128, {"features": (summary("x", (rows, 1), 34),), **model}, PREDICT)
        assert (plan.weights and plan.weights.shift) == drop
    n, access = 1_000_000, [read_access("model-owner", PREDICT)]
    x = np.linspace(-4.0, 4.0, n).reshape(n, 1)
    cluster.put("bank-1/x", x, grants=access)
    cluster.put("model-owner/w", [1.75], grants=access)
    cluster.put("model-owner/c", [-0.5], grants=access)
    result = cluster.run(
        PREDICT, {"features": "bank-1/x", "weights": "model-owner/w", "intercept": "model-owner/c"}
    )
    p = cluster.fetch(result)
    assert result.outputs[0].fractional_bits <= 32
    assert np.abs(p - 1 / (1 + np.exp(-(1.75 * x[:, 0] - 0.5)))).max() < 8e-4
