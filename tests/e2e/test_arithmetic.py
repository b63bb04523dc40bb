"""Rings, scales and bounds through real servers: the right number or a clear refusal.

* Changing the cluster's ``fractional_bits`` over an existing data directory and
  mixing old and new datasets in one job gives the right answer (scales travel
  with the data and are aligned), in both rings.
* A job whose result could leave the ring is refused before it runs, naming the
  inputs, the bound and the range, in both rings; the same values fit Z_2^128.
* Datasets shared in another ring (the cluster's ``ring`` changed) are refused.
* Truncation on request: exact enough in Z_2^128, refused where it could fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mpc_cli.local_cluster import LocalCluster
from mpc_client import Grant, InvalidArgumentError

pytestmark = pytest.mark.e2e

PREDICT = "linear_regression.predict"
OWNER, BANK_1, BANK_2 = "model-owner", "bank-1", "bank-2"
MULTIPLY = "elementwise.multiply"
INPUTS = {"features": [f"{BANK_1}/x", f"{BANK_2}/z"], "weights": "w", "intercept": "c"}
PRODUCT = {"x": f"{BANK_1}/x", "y": f"{BANK_2}/z"}
# Each owner allows the model owner exactly the two jobs below, by name: the
# datasets are re-uploaded (and the ring changed) under the same grants.
PREDICTION = Grant.pinned(OWNER, PREDICT, {**INPUTS, "weights": f"{OWNER}/w", "intercept": f"{OWNER}/c"})
GRANTS = {
    OWNER: [PREDICTION],
    BANK_1: [PREDICTION, Grant.pinned(OWNER, MULTIPLY, PRODUCT)],
    BANK_2: [PREDICTION, Grant.pinned(OWNER, MULTIPLY, PRODUCT)],
}

X = np.array([84381.01, 53178.03, -12.5, 0.0, 146301.23])
Z = np.array([12067.41, -21443.02, 3.25, -7.0, 17128.29])
W = np.array([0.2731, -0.5912])
C = 5000.0
EXPECTED = W[0] * X + W[1] * Z + C


def _bound(fractional_bits: int) -> float:
    """The rounding bound of the README for inputs encoded with ``fractional_bits``."""
    half = 2.0 ** -(fractional_bits + 1)
    return float(half * (np.abs(W).sum() + np.abs(X).max() + np.abs(Z).max() + 1) + 2 * half**2)


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[type[LocalCluster]]:
    started: list[LocalCluster] = []

    class Tracked(LocalCluster):
        def start(self, timeout: float = 30.0, attempts: int = 3) -> LocalCluster:
            started.append(self)
            return super().start(timeout, attempts)

    yield Tracked
    for cluster in started:
        cluster.stop()


def _upload(cluster: LocalCluster, identity: str, **arrays: object) -> None:
    with cluster.client(identity) as client:
        for name, values in arrays.items():
            client.upload(name, values, grants=GRANTS[identity], overwrite=True)  # type: ignore[arg-type]


@pytest.mark.parametrize(("ring", "old", "new"), [(128, 20, 32), (64, 12, 16)])
def test_changing_fractional_bits_over_old_data_gives_the_right_answer(
    cluster_factory: type[LocalCluster], tmp_path: Path, ring: int, old: int, new: int
) -> None:
    """The reported bug: datasets from before and after a scale change, mixed in one job."""
    cluster = cluster_factory(tmp_path, clients=(OWNER, BANK_1, BANK_2), ring_bits=ring, fractional_bits=old)
    cluster.start()
    _upload(cluster, BANK_1, x=X)
    _upload(cluster, OWNER, w=W, c=C)
    cluster.stop()
    cluster.fractional_bits = new  # same data directories, new cluster file
    cluster.start()
    _upload(cluster, BANK_2, z=Z)
    with cluster.client(OWNER) as owner:
        job, predictions = owner.run_and_fetch(PREDICT, INPUTS)
    # bank-2's block carries f_z + f_w = new + old, the others less: all lifted to it
    assert job.fractional_bits == new + old
    assert np.abs(predictions - EXPECTED).max() <= _bound(old)


@pytest.mark.parametrize("ring", [64, 128])
def test_a_job_whose_result_could_leave_the_ring_is_refused(
    cluster_factory: type[LocalCluster], tmp_path: Path, ring: int
) -> None:
    cluster = cluster_factory(tmp_path, clients=(OWNER, BANK_1, BANK_2), ring_bits=ring).start()
    big = 2.0**17 if ring == 64 else 2.0**49  # products at scale 2^(2f) need more than k - 1 bits
    _upload(cluster, BANK_1, x=np.array([big, -3.0]))
    _upload(cluster, BANK_2, z=np.array([big, 5.0]))
    with cluster.client(OWNER) as owner, pytest.raises(InvalidArgumentError) as refused:
        owner.run_and_fetch(MULTIPLY, PRODUCT)
    message = str(refused.value)
    assert "bank-1/x" in message and "bank-2/z" in message
    assert f"signed range of Z_2^{ring}" in message and "refused before any computation" in message
    assert "could reach 2^" in message


def test_an_output_too_large_for_z2_64_is_refused_and_right_in_z2_128(
    cluster_factory: type[LocalCluster], tmp_path: Path
) -> None:
    """1e10 came back as 1.41e9 with status OK in Z_2^64 at f = 16; now it is refused there."""
    x = np.array([1e5, 2.0])
    for ring in (64, 128):
        cluster = cluster_factory(tmp_path / str(ring), clients=(OWNER, BANK_1, BANK_2), ring_bits=ring)
        cluster.start()
        _upload(cluster, BANK_1, x=x)
        _upload(cluster, BANK_2, z=x)
        with cluster.client(OWNER) as owner:
            if ring == 64:
                with pytest.raises(InvalidArgumentError, match="signed range of Z_2\\^64"):
                    owner.run_and_fetch(MULTIPLY, PRODUCT)
            else:
                _, product = owner.run_and_fetch(MULTIPLY, PRODUCT)
                assert product.tolist() == [1e10, 4.0]
        cluster.stop()


def test_datasets_of_another_ring_are_refused_until_uploaded_again(
    cluster_factory: type[LocalCluster], tmp_path: Path
) -> None:
    cluster = cluster_factory(tmp_path, clients=(OWNER, BANK_1, BANK_2), ring_bits=64).start()
    _upload(cluster, BANK_1, x=X)
    _upload(cluster, BANK_2, z=Z)
    _upload(cluster, OWNER, w=W, c=C)
    cluster.stop()
    cluster.ring_bits = 128
    cluster.fractional_bits = None
    cluster.start()
    with cluster.client(OWNER) as owner:
        with pytest.raises(InvalidArgumentError, match="computes in Z_2\\^128") as refused:
            owner.run_and_fetch(PREDICT, INPUTS)
        assert "bank-1/x (Z_2^64)" in str(refused.value)
    _upload(cluster, BANK_1, x=X)
    _upload(cluster, BANK_2, z=Z)
    _upload(cluster, OWNER, w=W, c=C)
    with cluster.client(OWNER) as owner:
        _, predictions = owner.run_and_fetch(PREDICT, INPUTS)
    assert np.abs(predictions - EXPECTED).max() <= _bound(32)


def test_truncation_on_request_in_both_rings(cluster_factory: type[LocalCluster], tmp_path: Path) -> None:
    for ring, f in ((128, 32), (64, 16)):
        cluster = cluster_factory(tmp_path / str(ring), clients=(OWNER, BANK_1, BANK_2), ring_bits=ring)
        cluster.start()
        _upload(cluster, BANK_1, x=X)
        _upload(cluster, BANK_2, z=Z)
        _upload(cluster, OWNER, w=W, c=C)
        with cluster.client(OWNER) as owner:
            if ring == 128:
                job, predictions = owner.run_and_fetch(PREDICT, INPUTS, output_fractional_bits=f)
                assert job.fractional_bits == f
                assert job.truncation_failure_log2 is not None and job.truncation_failure_log2 <= -40
                assert np.abs(predictions - EXPECTED).max() <= _bound(f) + 2.0**-f
            else:
                with pytest.raises(InvalidArgumentError, match="above the limit of 2\\^-40"):
                    owner.run_and_fetch(PREDICT, INPUTS, output_fractional_bits=f)
        cluster.stop()


def test_a_declared_bound_is_used_and_checked(cluster_factory: type[LocalCluster], tmp_path: Path) -> None:
    cluster = cluster_factory(tmp_path, clients=(OWNER, BANK_1, BANK_2), ring_bits=64).start()
    with cluster.client(BANK_1) as bank:
        with pytest.raises(InvalidArgumentError, match="exceeds the declared bound"):
            bank.upload("x", np.array([3.0, -5.0]), grants=GRANTS[BANK_1], bound=4.0)
        bank.upload("x", np.array([3.0, -5.0]), grants=GRANTS[BANK_1], bound=2.0**40)  # looser: accepted
    _upload(cluster, BANK_2, z=np.array([3.0, -5.0]))
    with cluster.client(OWNER) as owner, pytest.raises(InvalidArgumentError, match="could reach 2\\^"):
        # 2^40 * 2^3 at scale 2^32 exceeds 2^63 although the values themselves are small
        owner.run_and_fetch(MULTIPLY, PRODUCT)
