"""The in-process cluster runs existing programs through the job service exactly."""

from __future__ import annotations

import numpy as np
import pytest

from mpc_core.errors import PermissionDeniedError

from .conftest import Cluster, read_access

PREDICT = "linear_regression.predict"


def test_a_prediction_through_the_three_job_services(cluster: Cluster) -> None:
    x, w = np.array([[1.0, 2.0], [3.0, -4.0]]), np.array([0.5, 0.25])
    cluster.put("bank-1/x", x, grants=[read_access("model-owner", PREDICT)])
    cluster.put("model-owner/w", w, grants=[read_access("model-owner", PREDICT)])
    result = cluster.run(
        PREDICT, {"features": "bank-1/x", "weights": "model-owner/w"}, output_fractional_bits=32
    )
    np.testing.assert_allclose(cluster.fetch(result), x @ w, atol=1e-9)


def test_consent_is_checked_here_too(cluster: Cluster) -> None:
    cluster.put("model-owner/w", [1.0], grants=[])
    with pytest.raises(PermissionDeniedError):
        cluster.run("dot", {"x": "model-owner/w", "y": "model-owner/w"})
