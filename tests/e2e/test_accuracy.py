"""Right answers on real data: scikit-learn's bundled datasets through real servers.

For every bundled dataset with numeric features, ``LinearRegression`` is fitted
in the clear; its feature columns are split across two or three bank
identities, each uploading from its own OS process; the model owner uploads
the fitted weights and intercept first (the banks' pinned grants allow exactly
each case's prediction with that version of the model) and predicts through three server
processes over mutual TLS, with the **default** configuration (Z_2^128,
32 fractional bits) and no per-dataset tuning. Every prediction must be
within 1e-6 relative error (against ``max(1, |y|)``) of sklearn's ``predict``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from sklearn import datasets  # type: ignore[import-untyped]
from sklearn.linear_model import LinearRegression  # type: ignore[import-untyped]

from mpc_cli.local_cluster import LocalCluster

pytestmark = pytest.mark.e2e

PROGRAM = "linear_regression.predict"
OWNER = "model-owner"
BANKS = ("bank-1", "bank-2", "bank-3")
TOLERANCE = 1e-6

Matrix = npt.NDArray[np.float64]
Job = dict[str, str | list[str]]
"""A job's input mapping, as passed to ``run`` and pinned in grants."""


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


def _job(name: str) -> Job:
    """The input mapping of case ``name``'s prediction, as the model owner runs it."""
    banks = CASES[name][2]
    return {
        "features": [f"{bank}/{name}" for bank in BANKS[:banks]],
        "weights": f"{name}-w",
        "intercept": f"{name}-c",
    }


def _upload_everything(cluster: LocalCluster, directory: Path) -> dict[str, Matrix]:
    """Fit every case, hand each owner its arrays in a file, upload from separate processes.

    The model owner uploads first, granting itself each case's one job; the
    banks then grant exactly that job with that version of the model (pinned).
    """
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
    model_jobs = {dataset: _job(dataset.rsplit("-", 1)[0]) for dataset in model}
    (uploaded,) = _upload(cluster, directory, {OWNER: (model, model_jobs)})
    pinned = {json.loads(line)["dataset"]: json.loads(line)["pinned"] for line in uploaded.splitlines()}
    assert set(pinned) == {f"{OWNER}/{dataset}" for dataset in model}
    assert all(version.startswith(f"{dataset}@") for dataset, version in pinned.items())
    bank_jobs = {
        name: {
            **_job(name),
            "weights": pinned[f"{OWNER}/{name}-w"],
            "intercept": pinned[f"{OWNER}/{name}-c"],
        }
        for name in CASES
    }
    _upload(
        cluster,
        directory,
        {bank: (arrays, {name: bank_jobs[name] for name in arrays}) for bank, arrays in per_bank.items()},
    )
    return expected


def _upload(
    cluster: LocalCluster, directory: Path, owners: dict[str, tuple[dict[str, Matrix], dict[str, Job]]]
) -> list[str]:
    """Each owner uploads its arrays from its own process, all at once; their outputs."""
    processes = []
    for identity, (arrays, jobs) in owners.items():
        data, jobs_file = directory / f"{identity}.npz", directory / f"{identity}-jobs.json"
        np.savez(data, **arrays)  # type: ignore[arg-type]
        jobs_file.write_text(json.dumps(jobs))
        command = [sys.executable, str(Path(__file__).with_name("owner_process.py"))]
        command += [str(cluster.cluster_file), identity, str(data), OWNER, PROGRAM, str(jobs_file)]
        processes.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, f"an owner process failed:\n{out}\n{err}"
        outputs.append(out)
    return outputs


@pytest.mark.parametrize("name", sorted(CASES))
def test_predictions_match_sklearn_within_1e_6(
    fitted: tuple[LocalCluster, dict[str, Matrix]], name: str
) -> None:
    cluster, expected = fitted
    with cluster.client(OWNER) as owner:
        job, predictions = owner.run_and_fetch(PROGRAM, _job(name))
        info = owner.server_info()[0]
    assert info.ring_bits == 128 and info.fractional_bits == 32  # the defaults, untuned
    assert job.ring_bits == 128
    reference = expected[name]
    relative = np.abs(predictions - reference) / np.maximum(1.0, np.abs(reference))
    assert predictions.shape == reference.shape
    assert float(relative.max()) <= TOLERANCE, f"{name}: max relative error {relative.max():.3g}"
