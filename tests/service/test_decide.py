"""``linear_regression.decide`` through the three job services: decisions, not scores; grants; refusals."""

from __future__ import annotations

import secrets

import numpy as np
import pytest

from mpc_core.errors import InvalidArgumentError, PermissionDeniedError
from mpc_core.ring import RING64
from mpc_server.service.grants import Grant, GrantScope

from .conftest import Cluster, read_access

DECIDE, PREDICT = "linear_regression.decide", "linear_regression.predict"


def grant(program: str = DECIDE, **parameters: float) -> Grant:
    return Grant(
        secrets.token_bytes(16),
        "model-owner",
        program,
        scope=GrantScope.ANY_INPUTS,
        parameters=tuple(sorted(parameters.items())),
    )


def credit_data(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """Two banks' standardised columns (income, debt ratio | years as customer, missed payments)."""
    income = rng.normal(0.0, 1.0, n)
    debt = 0.4 * income + rng.normal(0.0, 0.9, n)
    years = rng.normal(0.0, 1.0, n)
    missed = np.abs(rng.normal(0.0, 1.0, n)) - 0.8
    bank1, bank2 = np.stack([income, debt], axis=1), np.stack([years, missed], axis=1)
    w, c, threshold = np.array([0.9, -1.3, 0.35, -0.8]), 0.25, 0.1
    # put rows on, just above and just below the threshold: score - threshold = delta
    deltas = np.array([1e-3, -1e-3, 1e-7, -1e-7, 1e-12, -1e-12, 0.0])
    for row, delta in enumerate(deltas):
        rest = bank1[row] @ w[:2] + bank2[row, :1] @ w[2:3] + c
        bank2[row, 1] = (threshold + delta - rest) / w[3]
    return bank1, bank2, w, c, threshold


def error_bound(bank1: np.ndarray, bank2: np.ndarray, w: np.ndarray, f: int) -> np.ndarray:
    """The documented bound on |encoded score - score| per row (all scales f), plus the window's band."""
    x = np.hstack([bank1, bank2])
    rounding = 2.0 ** -(f + 1) * (np.abs(w).sum() + np.abs(x).sum(axis=1) + 1)
    return rounding + x.shape[1] * 2.0 ** -(2 * f + 2) + 2.0 ** -(f + 1)


def put_model(cluster: Cluster, rng: np.random.Generator, n: int, grants: list[Grant], f: int = 32):
    bank1, bank2, w, c, threshold = credit_data(rng, n)
    cluster.put("bank-1/x", bank1, grants=grants, fractional_bits=f)
    cluster.put("bank-2/z", bank2, grants=grants, fractional_bits=f)
    cluster.put("model-owner/w", w, grants=grants, fractional_bits=f)
    cluster.put("model-owner/c", [c], grants=grants, fractional_bits=f)
    inputs = {"features": ["bank-1/x", "bank-2/z"], "weights": "model-owner/w", "intercept": "model-owner/c"}
    scores = np.hstack([bank1, bank2]) @ w + c
    return inputs, scores, threshold, error_bound(bank1, bank2, w, f)


@pytest.mark.parametrize("f", [32, 16])
def test_decisions_are_the_plaintext_ones_away_from_the_threshold(cluster: Cluster, f: int) -> None:
    rng = np.random.default_rng(7)
    inputs, scores, threshold, err = put_model(cluster, rng, 3000, [read_access("model-owner", DECIDE)], f)
    result = cluster.run(DECIDE, inputs, parameters={"threshold": threshold})
    (output,) = result.outputs
    assert output.name == "decisions" and output.shape == (3000,) and output.fractional_bits == 0
    decisions = cluster.fetch(result)
    assert set(np.unique(decisions)) <= {0.0, 1.0}
    far = np.abs(scores - threshold) > err
    np.testing.assert_array_equal(decisions[far], (scores[far] > threshold).astype(float))
    assert far[:2].all() and not far[4:7].any()  # 1e-3 is decided exactly; 1e-12 need not be
    assert far[2:4].all() == (f == 32)  # 1e-7 is beyond the encoding error at f = 32, not at f = 16
    assert 0.2 < decisions.mean() < 0.8
    # the comparison is read by the 64-bit window: one round less than the full adder (9 at party 0)
    assert result.stats.rounds == 8  # party 0: agreement, the product, the windowed comparison (7 of its 8)


def test_decisions_can_be_lifted_to_another_scale(cluster: Cluster) -> None:
    rng = np.random.default_rng(8)
    inputs, scores, _, _ = put_model(cluster, rng, 50, [read_access("model-owner", DECIDE)])
    result = cluster.run(DECIDE, inputs, parameters={"threshold": -0.5}, output_fractional_bits=32)
    assert result.outputs[0].fractional_bits == 32
    np.testing.assert_array_equal(cluster.fetch(result), (scores > -0.5).astype(float))


def test_a_grant_for_decisions_refuses_a_scores_job_and_other_thresholds(cluster: Cluster) -> None:
    rng = np.random.default_rng(9)
    inputs, scores, _, _ = put_model(cluster, rng, 40, [grant(threshold=0.7)])
    with pytest.raises(PermissionDeniedError, match="does not allow it"):
        cluster.run(PREDICT, inputs)  # the scores themselves
    with pytest.raises(PermissionDeniedError, match="threshold"):
        cluster.run(DECIDE, inputs, parameters={"threshold": 0.0})
    result = cluster.run(DECIDE, inputs, parameters={"threshold": 0.7})
    np.testing.assert_array_equal(cluster.fetch(result), (scores > 0.7).astype(float))


def test_decide_refuses_what_it_cannot_compute_exactly(tmp_path) -> None:
    cluster = Cluster(tmp_path, RING64)
    access = [read_access("model-owner", DECIDE)]
    cluster.put("bank-1/x", [[1.0, 2.0], [3.0, 4.0]], grants=access, fractional_bits=16)
    cluster.put("model-owner/w", [0.5, 0.25], grants=access, fractional_bits=16)
    cluster.put("model-owner/w3", [0.5, 0.25, 1.0], grants=access, fractional_bits=16)
    cluster.put("model-owner/big", [2.0**40, 1.0], grants=access, fractional_bits=16)
    job = {"features": "bank-1/x", "weights": "model-owner/w"}
    with pytest.raises(InvalidArgumentError, match="needs the parameter threshold"):
        cluster.run(DECIDE, job)
    with pytest.raises(InvalidArgumentError, match="one entry per feature column"):
        cluster.run(DECIDE, {**job, "weights": "model-owner/w3"}, parameters={"threshold": 0.0})
    with pytest.raises(InvalidArgumentError, match="beyond the signed range"):
        cluster.run(DECIDE, {**job, "weights": "model-owner/big"}, parameters={"threshold": 0.0})
    with pytest.raises(InvalidArgumentError, match="threshold minus the scores"):
        cluster.run(DECIDE, job, parameters={"threshold": 2.0**31})
    result = cluster.run(DECIDE, job, parameters={"threshold": 1.0})  # the first score is exactly 1.0
    np.testing.assert_array_equal(cluster.fetch(result), [0.0, 1.0])
    result = cluster.run(DECIDE, job, parameters={"threshold": 1.0 - 2.0**-40})
    np.testing.assert_array_equal(cluster.fetch(result), [1.0, 1.0])
