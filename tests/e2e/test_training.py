"""Training on shares with real server processes: the banks' features, the model owner's label.

The grants are those of a deployment: each bank consents to exactly the fit
it was asked for (``Grant.pinned`` to the job's inputs, the label by version,
the parameters fixed); the model owner's label may serve only that fit. The
model stays on the servers (``keep_as``, the banks' grants demand it), and a
later ``linear_regression.predict`` delivers predictions to bank-1, under
grants pinned to the kept model's versions. scikit-learn is the reference:
every coefficient and prediction within 1e-4, relative to ``max(1, |v|)``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.datasets import load_diabetes, load_linnerud
from sklearn.linear_model import LinearRegression, Ridge

from mpc_cli.local_cluster import LocalCluster
from mpc_client import DatasetRef, Grant, InvalidArgumentError, Keep, NotFoundError, PermissionDeniedError

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
FIT, PREDICT = "linear_regression.fit", "linear_regression.predict"
Array = npt.NDArray[np.float64]
Inputs = dict[str, str | list[str]]


def _diabetes() -> tuple[Array, Array, int]:
    x, y = load_diabetes(return_X_y=True, scaled=False)
    return x, y, 4  # bank-1: age, sex, bmi, bp; bank-2: the six blood serum measurements


def _linnerud() -> tuple[Array, Array, int]:
    data = load_linnerud()
    return data.data, data.target[:, 0], 1  # bank-1: chins; bank-2: situps, jumps; label: weight


LOADERS: dict[str, Callable[[], tuple[Array, Array, int]]] = {"diabetes": _diabetes, "linnerud": _linnerud}


def _relative(got: Array, expected: Array) -> float:
    return float((np.abs(np.atleast_1d(got) - expected) / np.maximum(1.0, np.abs(expected))).max())


@dataclass(frozen=True)
class Training:
    """Uploaded datasets of one scenario, and the fit job the banks consented to."""

    x: Array
    y: Array
    fit: Inputs
    banks: tuple[DatasetRef, DatasetRef]


def _upload(cluster: LocalCluster, dataset: str, *, keep_only: bool, l2s: tuple[float, ...]) -> Training:
    """The model owner's label, then the banks' columns, each granting exactly this fit (and l2)."""
    x, y, split = LOADERS[dataset]()
    tag = secrets.token_hex(3)
    fit: Inputs = {"features": [f"bank-1/x-{tag}", f"bank-2/x-{tag}"], "label": f"model-owner/y-{tag}"}
    with cluster.client("model-owner") as owner:
        label = owner.upload(f"y-{tag}", y, grants=[Grant.pinned("model-owner", FIT, fit)])
    pinned: Inputs = {**fit, "label": label.pinned}
    grants = [
        Grant.pinned("model-owner", FIT, pinned, parameters={"l2": l2}, keep_outputs=keep_only) for l2 in l2s
    ]
    refs = []
    for bank, columns in (("bank-1", x[:, :split]), ("bank-2", x[:, split:])):
        with cluster.client(bank) as client:
            refs.append(client.upload(f"x-{tag}", columns, grants=grants))
    return Training(x, y, fit, (refs[0], refs[1]))


@pytest.mark.parametrize("dataset", sorted(LOADERS))
def test_the_fit_matches_scikit_learn_and_only_the_consented_fits_run(
    cluster: LocalCluster, dataset: str
) -> None:
    training = _upload(cluster, dataset, keep_only=False, l2s=(0.0, 0.1))
    with cluster.client("model-owner") as owner:
        for l2 in (0.0, 0.1):
            job = owner.run(FIT, training.fit, parameters={"l2": l2})
            weights, constant = owner.fetch(job, output="weights"), owner.fetch(job, output="intercept")
            model = (Ridge(alpha=l2) if l2 else LinearRegression()).fit(training.x, training.y)
            assert _relative(weights, model.coef_) < 1e-4, (l2, weights, model.coef_)
            assert _relative(constant, np.array(model.intercept_)) < 1e-4
        with pytest.raises(PermissionDeniedError, match="parameter"):  # the banks fixed l2
            owner.run(FIT, training.fit, parameters={"l2": 10.0})
        one_bank: Inputs = {**training.fit, "features": training.fit["features"][:1]}  # type: ignore[index]
        with pytest.raises(PermissionDeniedError):  # bank-1's columns alone: not the job it allowed
            owner.run(FIT, one_bank)
    # Nor may a bank submit it: to bank-1, bank-2's columns do not even exist.
    with cluster.client("bank-1") as bank, pytest.raises(NotFoundError, match=r"bank-2/x-.* not found"):
        bank.run(FIT, training.fit, receiver="model-owner")


def test_a_model_kept_in_shares_predicts_for_bank_1_as_scikit_learn_does(cluster: LocalCluster) -> None:
    training = _upload(cluster, "diabetes", keep_only=True, l2s=(0.0,))
    tag = secrets.token_hex(3)
    predict: Inputs = {
        "features": [str(ref) for ref in training.banks],
        "weights": f"model-owner/w-{tag}",
        "intercept": f"model-owner/c-{tag}",
    }
    # The model may serve exactly one prediction job, for bank-1, on these versions of the banks' data.
    model_grant = Grant.pinned("bank-1", PREDICT, {**predict, "features": [r.pinned for r in training.banks]})
    with cluster.client("model-owner") as owner:
        with pytest.raises(PermissionDeniedError):  # the banks allowed the fit only if the model stays put
            owner.run(FIT, training.fit)
        keep = {
            "weights": Keep(f"w-{tag}", grants=(model_grant,)),
            "intercept": Keep(f"c-{tag}", grants=(model_grant,)),
        }
        job = owner.run(FIT, training.fit, keep_as=keep)
        kept = {o.name: o.kept_as for o in job.outputs}
        assert all(ref is not None and ref.version for ref in kept.values())
        with pytest.raises(InvalidArgumentError, match="nothing to fetch"):
            owner.fetch(job)
        mine = {d.ref.name: d for d in owner.datasets().items}
        assert mine[f"w-{tag}"].shape == (10,) and mine[f"c-{tag}"].shape == ()
    # The banks now allow bank-1 predictions with this model, pinned to the kept versions.
    pinned = {**predict, "weights": kept["weights"].pinned, "intercept": kept["intercept"].pinned}  # type: ignore[union-attr]
    for bank, ref in zip(("bank-1", "bank-2"), training.banks, strict=True):
        with cluster.client(bank) as client:
            client.add_grant(ref.name, Grant.pinned("bank-1", PREDICT, pinned))
    with cluster.client("bank-1") as bank:
        result = bank.run(PREDICT, predict)
        predictions = bank.fetch(result)
        audit = [r for r in bank.audit(training.banks[0].name).items if r.job_id == job.job_id]
    expected = LinearRegression().fit(training.x, training.y).predict(training.x)
    assert _relative(predictions, expected) < 1e-4
    (record,) = audit  # bank-1's trail shows the fit and the datasets it left on the servers
    assert record.program == FIT and record.receiver == "model-owner"
    assert dict(record.kept) == kept
