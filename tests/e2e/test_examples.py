"""The README's SDK example runs as three separate client processes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mpc_cli.local_cluster import LocalCluster

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def _run(cluster: LocalCluster, *args: str) -> str:
    completed = subprocess.run(
        [sys.executable, *args], cwd=cluster.directory, capture_output=True, text=True, timeout=60, check=True
    )
    return completed.stdout


def test_bank_and_model_owner_processes(cluster: LocalCluster) -> None:
    income = ["101234.56", "87000", "130500.25"]
    debt = ["5000.5", "12000", "300"]
    model = _run(cluster, str(ROOT / "examples/model_owner.py"), "upload").split("model:")[1].split()
    assert [name.split("@")[0] for name in model] == ["model-owner/weights", "model-owner/intercept"]
    bank = str(ROOT / "examples/bank.py")
    assert "uploaded bank-1/income" in _run(cluster, bank, "bank-1", "income", *model, *income)
    assert "uploaded bank-2/debt" in _run(cluster, bank, "bank-2", "debt", *model, *debt)
    out = _run(cluster, str(ROOT / "examples/model_owner.py"), "predict")
    printed = np.array([float(v) for v in re.findall(r"-?\d+\.\d+", out.split("predictions:")[1])])
    expected = 0.2731 * np.array(income, float) - 0.5912 * np.array(debt, float) + 1250.75
    assert np.allclose(printed, expected, atol=1e-3)


def test_a_replaced_model_voids_the_banks_grants(cluster: LocalCluster) -> None:
    """The banks pinned one version of the model: after another upload the job is refused."""
    model = _run(cluster, str(ROOT / "examples/model_owner.py"), "upload").split("model:")[1].split()
    bank = str(ROOT / "examples/bank.py")
    _run(cluster, bank, "bank-1", "income", *model, "1", "2", "3")
    _run(cluster, bank, "bank-2", "debt", *model, "4", "5", "6")
    _run(cluster, str(ROOT / "examples/model_owner.py"), "upload")  # a new version of the model
    failed = subprocess.run(
        [sys.executable, str(ROOT / "examples/model_owner.py"), "predict"],
        cwd=cluster.directory,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert failed.returncode != 0
    assert "PermissionDeniedError" in failed.stderr and "to a version that has been replaced" in failed.stderr


@pytest.mark.parametrize("name", ["bank.py", "model_owner.py"])
def test_readme_shows_the_examples_verbatim(name: str) -> None:
    code = (ROOT / "examples" / name).read_text()
    body = code.split('"""', 2)[2].strip()
    assert body in (ROOT / "README.md").read_text()
