"""``mpc demo``: the model owner and two banks, end to end on a local cluster.

With no arguments and no configuration it creates throwaway certificates,
starts three server processes on free loopback ports, uploads the model
owner's ``a``, ``b``, ``c``, then bank 1's column ``x`` (income) and bank 2's
column ``z`` (debt) as secret shares, runs ``linear_regression.predict`` and
lets only the model owner reconstruct ``y = a*x + b*z + c``. Every dataset
carries a pinned grant for exactly this one job (the banks' grants pin the
model's version too). It prints the predictions beside the plaintext result,
shows two refusals (a bank fetching the predictions; the model owner running
a job the banks did not allow), and stops the servers (also on Ctrl-C or
SIGTERM).

With ``--train`` the scenario starts one step earlier (``mpc_cli.demo_train``):
the banks and the model owner, who holds the labels, train the model on
shares with ``linear_regression.fit``, the model stays on the servers, and
bank 1 receives predictions for its customers, printed beside the plaintext fit.

With ``--cluster FILE`` it starts nothing and runs the same scenario against
an existing cluster (e.g. the docker-compose one), connecting as three
separate clients with the certificates ``model-owner``, ``bank-1`` and
``bank-2`` found in ``--certs`` (default: the cluster file's CA directory).
Its datasets (``income``, ``debt``, ``weights``, ``intercept``) replace those
of earlier runs.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from mpc_cli.demo_data import FloatArray, ShowcaseData, showcase_data
from mpc_cli.demo_train import DEFAULT_TRAINING_RECORDS, run_training
from mpc_cli.local_cluster import LocalCluster
from mpc_client import Grant, JobResult, MpcClient, MpcError
from mpc_core.errors import ConfigError
from mpc_server.config import load_cluster

PROGRAM = "linear_regression.predict"
OWNER, BANK_1, BANK_2 = "model-owner", "bank-1", "bank-2"
DEFAULT_RECORDS = 8
MAX_RECORDS = 10_000_000
_SHOWN_ROWS = 12
DEFAULT_WAIT = 60.0

Connect = Callable[[str], MpcClient]
"""Opens a client connection under the given client identity."""


def register(commands: Any) -> None:
    """Add the ``demo`` subcommand."""
    parser = commands.add_parser(
        "demo",
        help="run the model-owner + two-banks regression on a local 3-server cluster",
        description=(
            "Start a throwaway three-server cluster on loopback (fresh CA and certificates, "
            "mutual TLS), let bank-1 and bank-2 upload secret shares of their columns and the "
            "model owner its linear model, compute the predictions on shares, and let only the "
            "model owner reconstruct them. Prints the predictions beside the plaintext result."
        ),
    )
    parser.add_argument(
        "--records",
        type=int,
        help=f"number of customers (default {DEFAULT_RECORDS}; {DEFAULT_TRAINING_RECORDS} with --train)",
    )
    parser.add_argument(
        "--train",
        action="store_true",
        help="train the model on shares first (the model owner holds the labels); it stays on the servers "
        "and bank-1 receives the predictions",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object (inputs, predictions, max_abs_error)"
    )
    parser.add_argument(
        "--keep", type=Path, help="put certificates and server logs in this directory and keep them"
    )
    parser.add_argument(
        "--cluster",
        type=Path,
        help="run against this existing cluster instead of starting one (cluster file, TOML)",
    )
    parser.add_argument(
        "--certs",
        type=Path,
        help=(
            f"with --cluster: directory holding {OWNER}.pem/.key, {BANK_1}.pem/.key and "
            f"{BANK_2}.pem/.key (default: the cluster file's CA directory)"
        ),
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=DEFAULT_WAIT,
        help=f"with --cluster: seconds to wait for the servers to be ready (default {DEFAULT_WAIT:g})",
    )
    parser.set_defaults(run=run)


def _say(args: argparse.Namespace, message: str) -> None:
    """Progress output: to stdout normally, to stderr with --json."""
    print(message, file=sys.stderr if args.json else sys.stdout, flush=True)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _check_args(args: argparse.Namespace) -> None:
    if args.records is None:
        args.records = DEFAULT_TRAINING_RECORDS if args.train else DEFAULT_RECORDS
    if not 1 <= args.records <= MAX_RECORDS:
        raise ConfigError(f"--records must be between 1 and {MAX_RECORDS}")
    if args.cluster is None and args.certs is not None:
        raise ConfigError("--certs only applies together with --cluster")
    if args.cluster is not None and args.keep is not None:
        raise ConfigError("--keep applies to the local cluster only; it cannot be used with --cluster")
    if args.wait <= 0:
        raise ConfigError("--wait must be positive")


def run(args: argparse.Namespace) -> int:
    """Run the showcase on a local cluster, or on an existing one with ``--cluster``."""
    _check_args(args)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    runner = _on_existing_cluster if args.cluster is not None else _on_local_cluster
    if args.train:
        return run_training(args, runner, lambda message: _say(args, message))
    data = showcase_data(args.records)
    with runner(args) as connect:
        predictions, job = _showcase(args, connect, data)
    _report(args, data, predictions, job)
    return 0


@contextmanager
def _on_local_cluster(args: argparse.Namespace) -> Iterator[Connect]:
    """Start a throwaway cluster; it is always shut down on the way out."""
    with tempfile.TemporaryDirectory(prefix="mpc-demo-") as scratch:
        directory = args.keep or Path(scratch)
        cluster = LocalCluster(directory, clients=(OWNER, BANK_1, BANK_2))
        _say(args, f"Starting 3 MPC servers on loopback (certificates and logs in {directory}) ...")
        try:
            cluster.start()
            for index, address in enumerate(cluster.addresses):
                _say(args, f"  server-{index}  {address}  pid {cluster.processes[index].pid}")  # type: ignore[union-attr]
            _say(args, "Cluster ready: every server verified both peers over mutual TLS.")
            yield cluster.client
        finally:
            _say(args, "Stopping the servers ...")
            cluster.stop()


@contextmanager
def _on_existing_cluster(args: argparse.Namespace) -> Iterator[Connect]:
    """Connect to the servers of ``--cluster``, each party with its own certificate."""
    cluster = load_cluster(args.cluster)
    certs = args.certs or cluster.ca_path.parent
    for identity in (OWNER, BANK_1, BANK_2):
        for suffix in (".pem", ".key"):
            if not (certs / f"{identity}{suffix}").is_file():
                raise ConfigError(f"no {identity}{suffix} in {certs} (see --certs)")

    def connect(identity: str) -> MpcClient:
        return MpcClient.connect(args.cluster, certs / f"{identity}.pem", certs / f"{identity}.key")

    _say(args, f"Using the existing cluster of {args.cluster}:")
    for endpoint in cluster.servers:
        _say(args, f"  {endpoint.identity}  {endpoint.address}")
    with connect(OWNER) as owner:
        owner.wait_until_ready(timeout=args.wait)
    _say(args, "Cluster ready: every server reports both peers connected over mutual TLS.")
    yield connect


def _showcase(args: argparse.Namespace, connect: Connect, data: ShowcaseData) -> tuple[FloatArray, JobResult]:
    job_inputs: dict[str, str | list[str]] = {
        "features": [f"{BANK_1}/income", f"{BANK_2}/debt"],
        "weights": "weights",
        "intercept": "intercept",
    }
    with connect(BANK_1) as bank_1, connect(BANK_2) as bank_2, connect(OWNER) as owner:
        _say(args, f"{OWNER} shares and uploads its model, weights (a, b) and intercept c, for this one job")
        model_grant = [Grant.pinned(OWNER, PROGRAM, job_inputs)]  # its model: in this one job only
        weights = owner.upload("weights", [data.a, data.b], grants=model_grant, overwrite=True)
        intercept = owner.upload("intercept", data.c, grants=model_grant, overwrite=True)
        # The banks consent to exactly this job, with exactly this version of the model.
        pinned = {**job_inputs, "weights": weights.pinned, "intercept": intercept.pinned}
        bank_grant = [Grant.pinned(OWNER, PROGRAM, pinned)]
        version = f"{weights}@{weights.version[:12]}..."
        _say(args, f"each bank grants {OWNER} this one prediction with this version of the model ({version})")
        _say(args, f"{BANK_1} shares and uploads x = annual income of {args.records} customers")
        bank_1.upload("income", data.x, grants=bank_grant, overwrite=True)
        _say(args, f"{BANK_2} shares and uploads z = outstanding debt of the same customers")
        bank_2.upload("debt", data.z, grants=bank_grant, overwrite=True)
        started = time.perf_counter()
        job = owner.run(PROGRAM, job_inputs)
        predictions = owner.fetch(job)
        elapsed = time.perf_counter() - started
        stats = job.stats["server-0"]
        _say(
            args,
            f"{OWNER} ran {PROGRAM} and reconstructed the result in {elapsed * 1000:.1f} ms "
            f"({stats.rounds} rounds, {stats.bytes_sent_to_peers} bytes from each server to its peers)",
        )
        _check_refusals(args, bank_1, owner, job)
    return predictions, job


def _check_refusals(args: argparse.Namespace, bank: MpcClient, owner: MpcClient, job: JobResult) -> None:
    """Show that a bank cannot fetch the predictions, nor the model owner run a job nobody allowed."""
    try:
        bank.fetch(job)
    except MpcError as exc:
        _say(args, f"{BANK_1} tried to fetch the predictions too and was refused: {type(exc).__name__}")
    else:
        raise ConfigError("a bank could fetch the model owner's output: access control is broken")
    alone = {"features": [f"{BANK_1}/income"], "weights": "weights", "intercept": "intercept"}
    try:
        owner.run(PROGRAM, alone)
    except MpcError as exc:
        _say(
            args,
            f"{OWNER} tried a job the banks did not consent to ({BANK_1}'s income alone) "
            f"and was refused: {type(exc).__name__}",
        )
    else:
        raise ConfigError("the model owner could run a job the banks did not allow: consent is broken")


def _report(args: argparse.Namespace, data: ShowcaseData, predictions: FloatArray, job: JobResult) -> None:
    expected = data.plaintext()
    errors = np.abs(predictions - expected)
    bits = job.fractional_bits // 2
    bound = data.error_bound(bits)
    if args.json:
        print(
            json.dumps(
                {
                    "a": data.a,
                    "b": data.b,
                    "c": data.c,
                    "x": data.x.tolist(),
                    "z": data.z.tolist(),
                    "predictions": predictions.tolist(),
                    "plaintext": expected.tolist(),
                    "max_abs_error": float(errors.max()),
                    "error_bound": float(bound.max()),
                    "within_bound": bool(np.all(errors <= bound)),
                    "fractional_bits": bits,
                    "ring_bits": job.ring_bits,
                }
            )
        )
        return
    print(f"\nModel: y = {data.a} * income + ({data.b}) * debt + {data.c}\n")
    header = ("customer", "income x", "debt z", "y (MPC)", "y (plaintext)", "|error|")
    print("  ".join(f"{title:>{width}}" for title, width in zip(header, (8, 12, 10, 14, 14, 9), strict=True)))
    for row in range(min(len(expected), _SHOWN_ROWS)):
        print(
            f"{row:>8}  {data.x[row]:>12,.2f}  {data.z[row]:>10,.2f}  {predictions[row]:>14,.4f}  "
            f"{expected[row]:>14,.4f}  {errors[row]:>9.2e}"
        )
    if len(expected) > _SHOWN_ROWS:
        print(f"{'...':>8}  ({len(expected) - _SHOWN_ROWS} more rows)")
    relative = float((errors / np.maximum(np.abs(expected), 1.0)).max())
    verdict = "within" if np.all(errors <= bound) else "OUTSIDE"
    print(
        f"\nmax |error| = {errors.max():.3g} (relative {relative:.2g}), {verdict} the fixed-point "
        f"rounding bound of {bound.max():.3g} for {bits} fractional bits in Z_2^{job.ring_bits}"
    )
    print("Only the model owner saw the predictions; no server saw an input, a weight or a result.")
