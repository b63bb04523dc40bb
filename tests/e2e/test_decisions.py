"""Decisions without scores and logistic regression, through three real server processes.

* ``linear_regression.decide`` on credit-like data: exactly the plaintext
  decisions for rows farther from the threshold than the fixed-point error; a
  bank's grant for decisions refuses a job for the scores.
* ``logistic_regression.fit`` on scikit-learn's breast_cancer, its columns
  split across three banks that each standardise their own columns (mean 0,
  population variance 1) before upload, the label at the model owner: ROC AUC
  within 0.01 and accuracy within 1 percentage point of scikit-learn's
  ``LogisticRegression(C=1.0)`` (l2 penalty, lbfgs) with ``l2 = 1/N``, which
  is the same objective.
* The model kept in shares (``keep_as``) and used by
  ``logistic_regression.predict``: probabilities, and decisions only where a
  bank's grant allows nothing else.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer  # type: ignore[import-untyped]
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
from sklearn.metrics import accuracy_score, roc_auc_score  # type: ignore[import-untyped]

from mpc_cli.local_cluster import LocalCluster
from mpc_client import Grant, InvalidArgumentError, Keep, PermissionDeniedError

pytestmark = pytest.mark.e2e

DECIDE, PREDICT = "linear_regression.decide", "linear_regression.predict"
FIT, LOGISTIC = "logistic_regression.fit", "logistic_regression.predict"
BANKS = ("bank-1", "bank-2", "bank-3")
Job = dict[str, str | list[str]]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A cluster with three banks (the shared one has two)."""
    local = LocalCluster(tmp_path_factory.mktemp("decisions"), clients=("model-owner", *BANKS))
    local.start()
    yield local
    local.stop()


def test_decisions_only_are_exact_away_from_the_threshold_and_scores_are_refused(
    cluster: LocalCluster,
) -> None:
    rng, tag, n = np.random.default_rng(11), secrets.token_hex(3), 2000
    income, years = rng.normal(size=n), rng.normal(size=n)
    debt, missed = 0.4 * income + rng.normal(0.0, 0.9, n), np.abs(rng.normal(size=n)) - 0.8
    bank1, bank2 = np.stack([income, debt], axis=1), np.stack([years, missed], axis=1)
    w, c, threshold = np.array([0.9, -1.3, 0.35, -0.8]), 0.25, 0.1
    for row, delta in enumerate([1e-4, -1e-4, 1e-7, -1e-7]):  # rows near the threshold
        rest = bank1[row] @ w[:2] + bank2[row, 0] * w[2] + c
        bank2[row, 1] = (threshold + delta - rest) / w[3]
    job: Job = {
        "features": [f"bank-1/x-{tag}", f"bank-2/z-{tag}"],
        "weights": f"model-owner/w-{tag}",
        "intercept": f"model-owner/c-{tag}",
    }
    decisions_only = Grant.pinned("model-owner", DECIDE, job, parameters={"threshold": threshold})
    with cluster.client("model-owner") as owner:
        owner.upload(f"w-{tag}", w, grants=[decisions_only])
        owner.upload(f"c-{tag}", np.array([c]), grants=[decisions_only])
    for bank, values, name in (("bank-1", bank1, "x"), ("bank-2", bank2, "z")):
        with cluster.client(bank) as client:
            client.upload(f"{name}-{tag}", values, grants=[decisions_only])
    with cluster.client("model-owner") as owner:
        with pytest.raises(PermissionDeniedError, match="does not allow it"):
            owner.run_and_fetch(PREDICT, job)
        with pytest.raises(PermissionDeniedError, match="threshold"):
            owner.run(DECIDE, job, parameters={"threshold": 0.0})
        result = owner.run(DECIDE, job, parameters={"threshold": threshold})
        assert result.outputs[0].name == "decisions" and result.outputs[0].fractional_bits == 0
        decisions = owner.fetch(result)
    scores = np.hstack([bank1, bank2]) @ w + c
    x = np.hstack([bank1, bank2])
    error = 2.0**-33 * (np.abs(w).sum() + np.abs(x).sum(axis=1) + 2) + 4 * 2.0**-66  # f = 32, with the window
    far = np.abs(scores - threshold) > error
    assert far.all()  # even 1e-7 is far beyond the encoding error at 2^32
    np.testing.assert_array_equal(decisions, (scores > threshold).astype(float))


def _training_data(cluster: LocalCluster, tag: str) -> tuple[Job, np.ndarray, np.ndarray]:
    """Each bank standardises its own columns and uploads them; the model owner uploads the label."""
    x, y = load_breast_cancer(return_X_y=True)
    columns = np.array_split(np.arange(x.shape[1]), len(BANKS))
    job: Job = {
        "features": [f"{bank}/cancer-{tag}" for bank in BANKS],
        "label": f"model-owner/diagnosis-{tag}",
    }
    grant = Grant.pinned("model-owner", FIT, job)
    standardised = np.empty_like(x)
    for bank, cols in zip(BANKS, columns, strict=True):
        own = x[:, cols]
        standardised[:, cols] = (own - own.mean(axis=0)) / own.std(axis=0)
        with cluster.client(bank) as client:
            client.upload(f"cancer-{tag}", standardised[:, cols], grants=[grant])
    with cluster.client("model-owner") as owner:
        owner.upload(f"diagnosis-{tag}", y.astype(np.float64), grants=[grant])
    return job, standardised, y


def test_logistic_regression_matches_sklearn_and_its_kept_model_predicts(cluster: LocalCluster) -> None:
    tag = secrets.token_hex(3)
    job, x, y = _training_data(cluster, tag)
    parameters = {"l2": 1.0 / len(y), "iterations": 30}
    model: Job = {
        "features": job["features"],
        "weights": f"model-owner/lr-w-{tag}",
        "intercept": f"model-owner/lr-c-{tag}",
    }
    probabilities, decisions = (
        Grant.pinned("model-owner", LOGISTIC, model),
        Grant.pinned("model-owner", LOGISTIC, model, parameters={"decisions_only": True, "threshold": 0.9}),
    )
    for bank in BANKS:
        with cluster.client(bank) as client:
            client.add_grant(f"cancer-{tag}", probabilities if bank != "bank-3" else decisions)
    with cluster.client("model-owner") as owner:
        fitted = owner.run(FIT, job, parameters=parameters, timeout=300)
        w, c = owner.fetch(fitted, output="weights"), float(owner.fetch(fitted, output="intercept"))
        keep = {
            "weights": Keep(f"lr-w-{tag}", grants=(probabilities, decisions)),
            "intercept": Keep(f"lr-c-{tag}", grants=(probabilities, decisions)),
        }
        kept = owner.run(FIT, job, parameters=parameters, keep_as=keep, timeout=300)
        assert all(o.kept_as is not None for o in kept.outputs)
        with pytest.raises(PermissionDeniedError, match="decisions_only"):  # bank-3 allows decisions only
            owner.run_and_fetch(LOGISTIC, model)
        result = owner.run(LOGISTIC, model, parameters={"decisions_only": True, "threshold": 0.9})
        decided = owner.fetch(result)
    with cluster.client("bank-3") as bank:  # the bank allows probabilities too, later
        bank.add_grant(f"cancer-{tag}", probabilities)
    with cluster.client("model-owner") as owner:
        _, p = owner.run_and_fetch(LOGISTIC, model)

    reference = LogisticRegression(C=1.0, max_iter=10_000).fit(x, y)  # the same objective as l2 = 1/N
    ours, theirs = x @ w + c, reference.decision_function(x)
    assert abs(roc_auc_score(y, ours) - roc_auc_score(y, theirs)) <= 0.01
    assert abs(accuracy_score(y, ours > 0) - accuracy_score(y, theirs > 0)) <= 0.01
    assert p.min() >= 0.0 and p.max() <= 1.0
    assert np.abs(p - 1.0 / (1.0 + np.exp(-ours))).max() < 1e-3  # 7.6e-4 and the fits' rounding
    assert abs(roc_auc_score(y, p) - roc_auc_score(y, theirs)) <= 0.01
    logit = np.log(0.9 / 0.1)
    away = np.abs(ours - logit) > 1e-3  # the two fits differ by their truncations' rounding only
    assert away.mean() > 0.95
    np.testing.assert_array_equal(decided[away], (ours[away] > logit).astype(float))


def test_a_fit_on_unstandardised_features_is_refused_clearly(cluster: LocalCluster) -> None:
    tag = secrets.token_hex(3)
    x, y = load_breast_cancer(return_X_y=True)  # raw: areas in the hundreds and thousands
    job: Job = {"features": [f"bank-1/raw-{tag}"], "label": f"model-owner/diagnosis-{tag}"}
    grant = Grant.pinned("model-owner", FIT, job)
    with cluster.client("bank-1") as bank:
        bank.upload(f"raw-{tag}", x[:, :10], grants=[grant])
    with cluster.client("model-owner") as owner:
        owner.upload(f"diagnosis-{tag}", y.astype(np.float64), grants=[grant])
        with pytest.raises(InvalidArgumentError, match="needs standardised features"):
            owner.run(FIT, job)
