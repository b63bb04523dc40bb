"""``stats.summary`` on real servers: three owners' columns, pinned consent, numpy within 1e-6, a kept output.

Criterion per entry: ``|ours - numpy| <= 1e-6 * max(1, |numpy|)`` against numpy
on the original float64 columns, with the cluster's defaults (Z_2^128, 32
fractional bits). Correlations are compared where ``valid`` is 1 (every
column here) and must be exactly 0 elsewhere.
"""

from __future__ import annotations

import secrets

import numpy as np
import numpy.typing as npt
import pytest
from sklearn import datasets  # type: ignore[import-untyped]

from mpc_cli.local_cluster import LocalCluster
from mpc_client import Grant, Keep, NotFoundError

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
PROGRAM = "stats.summary"
OWNERS = ("bank-1", "bank-2", "model-owner")
TOLERANCE = 1e-6
Matrix = npt.NDArray[np.float64]


def _columns() -> Matrix:
    """Diabetes (unscaled) between an income-like and a tiny column: 12 columns, 442 rows.

    A column shares its dataset's public bound, so the income goes with age,
    sex and BMI (standard deviations from 0.5 to 20 next to 2^17) and the tiny
    one with blood serum values (bound 2^7).
    """
    data = datasets.load_diabetes(scaled=False).data
    rows = data.shape[0]
    income = 40_000 + 900 * data[:, 2] + (15 * np.arange(rows)) % 7_000
    tiny = 1e-4 * (data[:, 8] - 4.6)
    return np.column_stack([income, data, tiny])


def _upload(cluster: LocalCluster, data: Matrix) -> dict[str, list[str]]:
    """Each owner uploads its block; every block grants exactly this job (pinned) to the model owner."""
    tag = secrets.token_hex(3)
    blocks = np.array_split(np.arange(data.shape[1]), len(OWNERS))
    job = {"columns": [f"{owner}/stats-{tag}" for owner in OWNERS]}
    grant = Grant.pinned("model-owner", PROGRAM, job)
    for owner, columns in zip(OWNERS, blocks, strict=True):
        with cluster.client(owner) as client:
            client.upload(f"stats-{tag}", data[:, columns], grants=[grant])
    return job


def _worst(ours: Matrix, reference: Matrix) -> float:
    return float(np.max(np.abs(ours - reference) / np.maximum(1.0, np.abs(reference))))


def test_three_owners_summary_matches_numpy(cluster: LocalCluster) -> None:
    data = _columns()
    job = _upload(cluster, data)
    with cluster.client("model-owner") as owner:
        result = owner.run(PROGRAM, job, parameters={"ddof": 1})
        out = owner.fetch_all(result)
    assert [o.name for o in result.outputs] == [
        "count", "sum", "mean", "variance", "covariance", "correlation", "valid",
    ]  # fmt: skip
    assert result.ring_bits == 128 and {o.fractional_bits for o in result.outputs} == {32}
    assert float(out["count"]) == data.shape[0]
    references = {
        "sum": data.sum(axis=0),
        "mean": data.mean(axis=0),
        "variance": data.var(axis=0, ddof=1),
        "covariance": np.cov(data, rowvar=False, ddof=1),
        "correlation": np.corrcoef(data, rowvar=False),
    }
    for name, reference in references.items():
        assert out[name].shape == reference.shape
        assert _worst(out[name], reference) <= TOLERANCE, (name, _worst(out[name], reference))
    assert out["valid"].tolist() == [1.0] * data.shape[1]
    stats = result.stats
    assert set(stats) == {"server-0", "server-1", "server-2"}
    for server in stats.values():  # traffic independent of N: a few tens of KB, whatever the rows
        assert 0 < server.bytes_sent_to_peers < 200_000 and server.rounds < 80


def test_a_kept_summary_output_is_used_by_a_later_job(cluster: LocalCluster) -> None:
    data = _columns()
    job = _upload(cluster, data)
    name = f"means-{secrets.token_hex(3)}"
    with cluster.client("model-owner") as owner:
        keep = Keep(name, grants=(Grant("model-owner", "dot"),))
        result = owner.run(PROGRAM, job, keep_as={"mean": keep})
        kept = result.output("mean")
        assert kept.kept_as is not None and kept.kept_as.name == name
        delivered = owner.fetch(result, output="variance")
        np.testing.assert_allclose(delivered, data.var(axis=0), rtol=TOLERANCE, atol=TOLERANCE)
        _, square = owner.run_and_fetch("dot", {"x": name, "y": name})
    means = data.mean(axis=0)
    assert float(square) == pytest.approx(float(means @ means), rel=1e-9)
    with cluster.client("bank-1") as bank, pytest.raises(NotFoundError):
        bank.run(PROGRAM, job, receiver="model-owner")  # bank-1 may not even see bank-2's block
