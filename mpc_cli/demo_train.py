"""``mpc demo --train``: the banks and the model owner train the model on shares; it never leaves them.

The model owner holds the labels (the credit limits it granted), bank 1 the
customers' income, bank 2 their debt. Each uploads secret shares with
consent for exactly one job: the fit of ``linear_regression.fit`` on these
versions, for the model owner, *only if the model stays on the servers*
(``keep_outputs``). The model owner runs the fit keeping both outputs as
datasets (nobody sees the weights), pinned to one later job: predictions for
bank 1's customers. The banks then consent to that prediction with this
version of the model, bank 1 runs it and reconstructs its predictions. The
plaintext fit (``numpy.linalg.lstsq``) is printed beside them, with the
largest difference; so is the refusal of a fit that would reveal the model.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np

from mpc_cli.demo_data import FloatArray, TrainingData, training_data
from mpc_client import Grant, JobResult, Keep, MpcClient, MpcError
from mpc_core.errors import ConfigError

FIT, PREDICT = "linear_regression.fit", "linear_regression.predict"
OWNER, BANK_1, BANK_2 = "model-owner", "bank-1", "bank-2"
DEFAULT_TRAINING_RECORDS = 200
_SHOWN_ROWS = 12

Connect = Callable[[str], MpcClient]
Say = Callable[[str], None]
Runner = Callable[[argparse.Namespace], AbstractContextManager[Connect]]


@dataclass(frozen=True)
class Trained:
    """What bank 1 got, and what the jobs cost."""

    predictions: FloatArray
    fit: JobResult
    predict: JobResult
    seconds: float


def run_training(args: argparse.Namespace, runner: Runner, say: Say) -> int:
    """Run the training scenario on the cluster ``runner`` yields, then print the report."""
    data = training_data(args.records)
    with runner(args) as connect:
        trained = _train_and_predict(connect, data, say)
    _report(args, data, trained)
    return 0


def _train_and_predict(connect: Connect, data: TrainingData, say: Say) -> Trained:
    fit_inputs: dict[str, str | list[str]] = {
        "features": [f"{BANK_1}/income", f"{BANK_2}/debt"],
        "label": f"{OWNER}/limits",
    }
    with connect(BANK_1) as bank_1, connect(BANK_2) as bank_2, connect(OWNER) as owner:
        say(f"{OWNER} shares and uploads its labels: the credit limits of {len(data.label)} customers")
        label = owner.upload(
            "limits", data.label, grants=[Grant.pinned(OWNER, FIT, fit_inputs)], overwrite=True
        )
        pinned = {**fit_inputs, "label": label.pinned}
        consent = [Grant.pinned(OWNER, FIT, pinned, keep_outputs=True)]
        say(f"each bank allows {OWNER} this one fit, with these labels, if the model stays on the servers")
        income = bank_1.upload("income", data.x, grants=consent, overwrite=True)
        debt = bank_2.upload("debt", data.z, grants=consent, overwrite=True)
        _refuse_revealing_fit(owner, fit_inputs, say)
        predict_inputs: dict[str, str | list[str]] = {
            "features": [str(income), str(debt)],
            "weights": f"{OWNER}/trained-weights",
            "intercept": f"{OWNER}/trained-intercept",
        }
        serve = (Grant.pinned(BANK_1, PREDICT, {**predict_inputs, "features": [income.pinned, debt.pinned]}),)
        started = time.perf_counter()
        fit = owner.run(FIT, fit_inputs, keep_as={
            "weights": Keep("trained-weights", grants=serve, overwrite=True),
            "intercept": Keep("trained-intercept", grants=serve, overwrite=True),
        })  # fmt: skip
        kept = {o.name: o.kept_as for o in fit.outputs}
        versions = ", ".join(f"{ref}@{ref.version[:12]}..." for ref in kept.values() if ref)
        cost = _cost(fit, time.perf_counter() - started)
        say(f"{OWNER} trained the model on shares in {cost}; kept as {versions}")
        model = {k: ref.pinned for k, ref in kept.items() if ref is not None}
        for client, ref in ((bank_1, income), (bank_2, debt)):
            client.add_grant(ref.name, Grant.pinned(BANK_1, PREDICT, {**predict_inputs, **model}))
        say(f"the banks allow {BANK_1} predictions with this version of the model")
        started = time.perf_counter()
        predict = bank_1.run(PREDICT, predict_inputs)
        predictions = bank_1.fetch(predict)
        seconds = time.perf_counter() - started
        say(f"{BANK_1} ran {PREDICT} and reconstructed its predictions in {_cost(predict, seconds)}")
    return Trained(predictions, fit, predict, seconds)


def _refuse_revealing_fit(owner: MpcClient, inputs: dict[str, str | list[str]], say: Say) -> None:
    """The banks' grants demand that the model be kept: delivering it to the model owner is refused."""
    try:
        owner.run(FIT, inputs)
    except MpcError as exc:
        say(f"{OWNER} tried the fit with the model delivered to itself and was refused: {type(exc).__name__}")
    else:
        raise ConfigError("the model owner could see a model the banks wanted kept: consent is broken")


def _cost(job: JobResult, seconds: float) -> str:
    stats = job.stats["server-0"]
    return f"{seconds * 1000:.0f} ms ({stats.rounds} rounds, {stats.bytes_sent_to_peers} bytes from server-0)"


def _report(args: argparse.Namespace, data: TrainingData, trained: Trained) -> None:
    weights, intercept = data.plaintext_fit()
    expected = data.x * weights[0] + data.z * weights[1] + intercept
    errors = np.abs(trained.predictions - expected)
    relative = float((errors / np.maximum(np.abs(expected), 1.0)).max())
    if args.json:
        print(
            json.dumps(_summary(data, trained, weights, intercept, expected, float(errors.max()), relative))
        )
        return
    print(
        f"\nPlaintext least squares (numpy.linalg.lstsq), for comparison only: "
        f"limit = {weights[0]:.6f} * income + ({weights[1]:.6f}) * debt + {intercept:,.4f}"
    )
    print("The model trained on shares stays on the servers: nobody saw its weights.\n")
    header = ("customer", "income x", "debt z", "limit (label)", "bank-1 (MPC)", "plaintext fit", "|error|")
    widths = (8, 12, 10, 14, 14, 14, 9)
    print("  ".join(f"{title:>{width}}" for title, width in zip(header, widths, strict=True)))
    for row in _rows(len(expected)):
        print(
            f"{row:>8}  {data.x[row]:>12,.2f}  {data.z[row]:>10,.2f}  {data.label[row]:>14,.2f}  "
            f"{trained.predictions[row]:>14,.4f}  {expected[row]:>14,.4f}  {errors[row]:>9.2e}"
        )
    if len(expected) > _SHOWN_ROWS:
        print(f"{'...':>8}  ({len(expected) - _SHOWN_ROWS} more rows)")
    print(
        f"\nmax |MPC - plaintext| = {errors.max():.3g} (relative {relative:.2g}), {len(expected)} customers"
    )
    print("Only bank-1 saw the predictions; no server saw a label, a feature, a weight or a prediction.")


def _rows(count: int) -> Iterator[int]:
    return iter(range(min(count, _SHOWN_ROWS)))


def _summary(  # noqa: PLR0917 - the report's parts
    data: TrainingData, trained: Trained, weights: FloatArray, intercept: float, expected: FloatArray,
    max_error: float, relative: float,
) -> dict[str, object]:  # fmt: skip
    def cost(job: JobResult) -> dict[str, int]:
        stats = job.stats["server-0"]
        return {"rounds": stats.rounds, "bytes_sent_to_peers": stats.bytes_sent_to_peers}

    return {
        "records": len(data.label),
        "x": data.x.tolist(),
        "z": data.z.tolist(),
        "label": data.label.tolist(),
        "plaintext_weights": weights.tolist(),
        "plaintext_intercept": intercept,
        "predictions": trained.predictions.tolist(),
        "plaintext_predictions": expected.tolist(),
        "max_abs_error": max_error,
        "max_relative_error": relative,
        "kept_model": [str(o.kept_as) for o in trained.fit.outputs],
        "fit": cost(trained.fit),
        "predict": cost(trained.predict),
        "ring_bits": trained.predict.ring_bits,
    }
