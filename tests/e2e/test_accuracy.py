"""Right answers on real data: scikit-learn's bundled datasets through real servers.

For every bundled dataset with numeric features, ``LinearRegression`` is fitted
in the clear; its feature columns are split across two or three bank
identities, each uploading from its own OS process; the model owner uploads
the fitted weights and intercept and predicts through three server
processes over mutual TLS, with the **default** configuration (Z_2^128,
32 fractional bits) and no per-dataset tuning. Every prediction must be
within 1e-6 relative error (against ``max(1, |y|)``) of sklearn's ``predict``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from sklearn import datasets
from sklearn.linear_model import LinearRegression

from mpc_cli.local_cluster import LocalCluster

pytestmark = pytest.mark.e2e

PROGRAM = "linear_regression.predict"
OWNER = "model-owner"
BANKS = ("bank-1", "bank-2", "bank-3")
TOLERANCE = 1e-6

Matrix = npt.NDArray[np.float64]


def _cases() -> dict[str, tuple[Matrix, Matrix, int]]:
    """name -> (features, target, number of banks the columns are split across)."""
    cases: dict[str, tuple[Matrix, Matrix, int]] = {}
    diabetes = datasets.load_diabetes()
    cases["diabetes-scaled"] = (diabetes.data, diabetes.target, 3)
    raw = datasets.load_diabetes(scaled=False)
    cases["diabetes-unscaled"] = (raw.data, raw.target, 2)
    cancer = datasets.load_breast_cancer()
    cases["breast-cancer"] = (cancer.data, cancer.target.astype(float), 3)
    wine = datasets.load_wine()
    cases["wine-class"] = (wine.data, wine.target.astype(float), 3)
    cases["wine-alcohol"] = (wine.data[:, 1:], wine.data[:, 0], 2)
    linnerud = datasets.load_linnerud()
    for index, name in enumerate(linnerud.target_names):
        cases[f"linnerud-{name.lower()}"] = (linnerud.data, linnerud.target[:, index], 3)
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalCluster, dict[str, Matrix]]]:
    """A default cluster with every case's columns uploaded by three bank processes."""
    directory = tmp_path_factory.mktemp("accuracy")
    cluster = LocalCluster(directory / "cluster", clients=(OWNER, *BANKS))
    cluster.start()
    try:
        expected = _upload_everything(cluster, directory)
        yield cluster, expected
    finally:
        cluster.stop()


def _upload_everything(cluster: LocalCluster, directory: Path) -> dict[str, Matrix]:
    """Fit every case, hand each bank its columns in a file, upload from separate processes."""
    per_bank: dict[str, dict[str, Matrix]] = {bank: {} for bank in BANKS}
    model: dict[str, Matrix] = {}
    expected: dict[str, Matrix] = {}
    for name, (features, target, banks) in CASES.items():
        regression = LinearRegression().fit(features, target)
        expected[name] = regression.predict(features)
        model[f"{name}-w"] = regression.coef_
        model[f"{name}-c"] = np.array(regression.intercept_)
        for bank, columns in zip(BANKS, np.array_split(np.arange(features.shape[1]), banks), strict=False):
            per_bank[bank][name] = features[:, columns]
    processes = []
    for identity, arrays in [*per_bank.items(), (OWNER, model)]:
        data = directory / f"{identity}.npz"
        np.savez(data, **arrays)  # type: ignore[arg-type]
        command = [sys.executable, str(Path(__file__).with_name("owner_process.py"))]
        command += [str(cluster.cluster_file), identity, str(data), f"{OWNER}:{PROGRAM}"]
        processes.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, f"an owner process failed:\n{out}\n{err}"
    return expected


@pytest.mark.parametrize("name", sorted(CASES))
def test_predictions_match_sklearn_within_1e_6(
    fitted: tuple[LocalCluster, dict[str, Matrix]], name: str
) -> None:
    cluster, expected = fitted
    banks = CASES[name][2]
    inputs = {
        "features": [f"{bank}/{name}" for bank in BANKS[:banks]],
        "weights": f"{name}-w",
        "intercept": f"{name}-c",
    }
    with cluster.client(OWNER) as owner:
        job, predictions = owner.run_and_fetch(PROGRAM, inputs)
        info = owner.server_info()[0]
    assert info.ring_bits == 128 and info.fractional_bits == 32  # the defaults, untuned
    assert job.ring_bits == 128
    reference = expected[name]
    relative = np.abs(predictions - reference) / np.maximum(1.0, np.abs(reference))
    assert predictions.shape == reference.shape
    assert float(relative.max()) <= TOLERANCE, f"{name}: max relative error {relative.max():.3g}"
