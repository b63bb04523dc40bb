"""The Node client (clients/node) against real servers, side by side with the Python SDK, in both rings.

Every test here runs twice, against a cluster in Z_2^64 (f = 16) and one in
Z_2^128 (f = 32, the default ring). The Python model owner uploads its model
with a pinned grant, a Node bank and a Python bank upload their columns with
grants pinned to that model's versions, the model owner runs
``linear_regression.predict`` for the receiver ``node-analyst``, and a Node
process acting as ``node-analyst`` fetches (naming the submitter), checks and
prints the result. The numbers must match plaintext within the documented
error bound. Scales chosen per dataset, requested output scales (truncation,
and its refusal), inline outputs and the magnitude bits both clients compute
are checked too, and a Node owner's audit trail, dataset listing and grant
revocation. The open program model from Node: the programs the servers list
(roles, parameters, outputs), an output kept on the servers as a dataset and
used by a later job, and parameters the program does not take. Keyed tables:
two Python banks upload DataFrames keyed by overlapping string ids, the Python
model owner predicts on their join for a Node receiver, whose fetch returns the
row tokens with the values (checked against the plaintext join through the
banks' key maps), and a Node job selects columns of a keyed table by name.
Refusals (no grant, someone else's output, bad values, an unknown parameter, a
server with the wrong identity, a server certificate on the cluster file's
revocation list, a silent server, a foreign CA) must fail with a clear message
and a non-zero exit status. The Node unit tests (``node --test``) run from here
too, so CI executes them.

Needs ``node`` and ``npm``; runs ``npm ci`` in clients/node when its
dependencies are missing (the npm registry must then be reachable).
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mpc_cli.certs import CertificateAuthority, revoke
from mpc_cli.local_cluster import LocalCluster
from mpc_client import Grant, MpcClient, NotFoundError, PermissionDeniedError, UnauthenticatedError
from mpc_client._keyed import KeyMap, default_key_dir
from mpc_core.certificates import inspect_certificate
from mpc_core.cluster import render_cluster
from mpc_core.fixed_point import FixedPoint
from mpc_core.identity import Principal, Role
from mpc_core.ring import ring_for_bits

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "clients" / "node"
CLI = NODE_DIR / "bin" / "mpc-node.js"
PROGRAM = "linear_regression.predict"
DOT = "dot"
CLIENTS = ("model-owner", "bank-1", "bank-2", "node-bank", "node-analyst")
ALIGNMENT_NEEDS = "alignment needs libsodium (Debian: libsodium23)"
DEFAULT_SCALE = {64: 16, 128: 32}
F64_EPS = 2.0**-52


def _missing_dependencies() -> list[str]:
    package = json.loads((NODE_DIR / "package.json").read_text())
    return [name for name in package["dependencies"] if not (NODE_DIR / "node_modules" / name).is_dir()]


@pytest.fixture(scope="module")
def node() -> str:
    """The node executable, with the client's dependencies installed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are not installed: the Node client cannot be tested here")
    if _missing_dependencies():
        installed = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert installed.returncode == 0, f"npm ci failed in {NODE_DIR}:\n{installed.stderr[-3000:]}"
        assert not _missing_dependencies(), _missing_dependencies()
    return node


@pytest.fixture(scope="module", params=[64, 128], ids=["Z2_64", "Z2_128"])
def node_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    """A cluster in Z_2^64 or Z_2^128 with certificates for the Node identities too.

    server-1's certificate also carries the DNS name ``server-0``, as an extra
    ``mpc certs --host`` name shared by the servers would: host-name
    verification against the target name ``server-0`` then accepts server-1,
    and only the ``urn:mpc:server:<identity>`` URI SAN tells them apart
    (see test_node_verifies_each_server_by_its_identity).
    """
    directory = tmp_path_factory.mktemp(f"node-cluster-{request.param}")
    CertificateAuthority(directory / "certs").ensure(
        Principal(Role.SERVER, "server-1"), ["127.0.0.1", "localhost", "server-0"]
    )
    with LocalCluster(directory, clients=CLIENTS, ring_bits=request.param) as local:
        yield local


def _scale(cluster: LocalCluster) -> int:
    return DEFAULT_SCALE[cluster.ring_bits]


def _node(
    node: str, cluster: LocalCluster, identity: str, *args: str, cluster_file: str = "cluster.toml"
) -> subprocess.CompletedProcess[str]:
    """Run the Node CLI as ``identity`` in the cluster directory (certs/<identity>.pem|.key)."""
    command = [node, str(CLI), *args, "--identity", identity, "--cluster", cluster_file]
    return subprocess.run(
        command, cwd=cluster.directory, capture_output=True, text=True, timeout=180, check=False
    )


def _ok(completed: subprocess.CompletedProcess[str]) -> str:
    assert completed.returncode == 0, f"exit {completed.returncode}\n{completed.stderr}"
    return completed.stdout


def _uploaded_magnitude(stdout: str) -> int:
    match = re.search(r"magnitude 2\^(\d+)\)", stdout)
    assert match, stdout
    return int(match.group(1))


def _uploaded_version(stdout: str, dataset: str) -> str:
    """The ``owner/name@version`` a Node upload printed."""
    match = re.search(rf"^version: ({re.escape(dataset)}@[0-9a-f]{{32}})$", stdout, re.MULTILINE)
    assert match, stdout
    return match.group(1)


def _grant_ids(stdout: str) -> list[str]:
    """The ids of the grants a Node upload or add-grant printed."""
    return re.findall(r"grant ([0-9a-f]{32}): ", stdout)


def _prediction_bound(
    f_x: int, f_w: int, weights: np.ndarray, columns: list[np.ndarray], intercept: float | None
) -> np.ndarray:
    """The error bound of a prediction whose inputs were rounded to 2^-f_x (features), 2^-f_w (weights).

    Each input is off by at most half its unit, so ``sum_k w_k x_k + c`` is off by at most
    ``sum_k (|w_k| 2^-(f_x+1) + |x_k| 2^-(f_w+1) + 2^-(f_x+f_w+2)) + 2^-(f_w+1)`` (the README's
    "Error bound" with f_x = f_w = f, the intercept at the weights' scale); plus float64 rounding
    of the plaintext and of the decoding, a few units in the last place of the terms.
    """
    bound = (0.0 if intercept is None else 2.0 ** -(f_w + 1)) + sum(
        abs(w) * 2.0 ** -(f_x + 1) + np.abs(x) * 2.0 ** -(f_w + 1) + 2.0 ** -(f_x + f_w + 2)
        for w, x in zip(weights, columns, strict=True)
    )
    magnitude = sum(np.abs(w * x) for w, x in zip(weights, columns, strict=True)) + abs(intercept or 0.0)
    return np.asarray(bound + 8 * F64_EPS * magnitude)


def test_node_unit_tests_pass(node: str) -> None:
    completed = subprocess.run(
        [node, "--test", "test/"], cwd=NODE_DIR, capture_output=True, text=True, timeout=180, check=False
    )
    assert completed.returncode == 0, completed.stdout[-5000:] + completed.stderr[-2000:]
    assert "# fail 0" in completed.stdout
    assert "# pass 0" not in completed.stdout
    for ring in ("Z_2^64", "Z_2^128"):  # the vectors of both rings ran
        assert f"{ring}: a seeded split with given seeds" in completed.stdout


@pytest.mark.parametrize("upload_mode", ["seed-compressed", "plain"])
def test_node_bank_python_bank_python_owner_node_receiver(
    node: str, node_cluster: LocalCluster, tmp_path: Path, upload_mode: str
) -> None:
    f = _scale(node_cluster)
    ring = ring_for_bits(node_cluster.ring_bits)
    # More than 2 x 131072 customers: every upload and fetch takes several chunks in both rings.
    n = 300_001
    i = np.arange(n, dtype=np.float64)
    income = np.round(35_000 + (i * 7919) % 120_000 + (i % 97) * 0.37, 2)
    debt = np.round(1_000 + (i * 104_729) % 30_000 + (i % 89) * 0.29, 2)
    weights, intercept = np.array([0.2731, -0.5912]), 1250.75
    name = f"income-{upload_mode}"
    job_inputs = {
        "features": [f"node-bank/{name}", "bank-1/debt"],
        "weights": "model-owner/weights",
        "intercept": "model-owner/intercept",
    }

    # The model first: its owner allows node-analyst this one prediction, submitted by itself.
    with node_cluster.client("model-owner") as owner:
        model_grant = [Grant.pinned("node-analyst", PROGRAM, job_inputs, submitters=("model-owner",))]
        w = owner.upload("weights", weights, grants=model_grant, overwrite=True)
        c = owner.upload("intercept", intercept, grants=model_grant, overwrite=True)
    # The banks pin that model's versions: a replaced model voids their grants.
    pinned = {**job_inputs, "weights": w.pinned, "intercept": c.pinned}

    values_file = tmp_path / "income.json"
    values_file.write_text(json.dumps(income.tolist()))
    upload = [
        "upload",
        name,
        "--values-file",
        str(values_file),
        "--grant",
        f"node-analyst:{PROGRAM}",
        "--pin",
        "features=self,bank-1/debt",
        "--pin",
        f"weights={w.pinned}",
        "--pin",
        f"intercept={c.pinned}",
        "--submitter",
        "model-owner",
    ]
    if upload_mode == "plain":
        upload.append("--plain")
    uploaded = _ok(_node(node, node_cluster, "node-bank", *upload))
    assert f"uploaded node-bank/{name} ({n} elements, " in uploaded
    assert f"{ring.name}, f = {f}, " in uploaded
    # The public bound the Node client declared is the one the Python SDK computes.
    assert _uploaded_magnitude(uploaded) == FixedPoint(f, ring).encode_bounded(income)[1]
    assert len(_grant_ids(uploaded)) == 1
    assert f"weights={w.pinned}" in uploaded

    with node_cluster.client("bank-1") as bank:
        bank.upload(
            "debt",
            debt,
            grants=[Grant.pinned("node-analyst", PROGRAM, pinned, submitters=("model-owner",))],
            overwrite=True,
        )
    with node_cluster.client("model-owner") as owner:
        job = owner.run(PROGRAM, job_inputs, receiver="node-analyst")
        # The version the Node upload returned is the one the servers hold.
        assert _uploaded_version(uploaded, f"node-bank/{name}") in {
            r.dataset.pinned for r in owner.jobs().items[-1].inputs
        }

    # Outputs are keyed by (submitter, job id): without --submitter, node-analyst asks for a
    # job of its own of that id, and there is none.
    own = _node(node, node_cluster, "node-analyst", "fetch", job.job_id)
    assert own.returncode == 1
    assert "NOT_FOUND" in own.stderr
    full = json.loads(
        _ok(_node(node, node_cluster, "node-analyst", "fetch", job.job_id, "--submitter", "model-owner"))
    )
    assert full["shape"] == [n]
    assert full["ring"] == f"RING_Z2_{node_cluster.ring_bits}"
    assert full["fractional_bits"] == 2 * f  # the natural scale f_x + f_w: exact, no truncation
    predictions = np.array(full["values"])
    plaintext = weights[0] * income + weights[1] * debt + intercept
    bound = _prediction_bound(f, f, weights, [income, debt], intercept)
    error = np.abs(predictions - plaintext)
    assert np.all(error <= bound), (
        f"max error {error.max()} above the bound at {int(np.argmax(error - bound))}"
    )
    assert error.max() > 0  # fixed point really rounded: the numbers went through the MPC path

    digest = json.loads(
        _ok(
            _node(
                node,
                node_cluster,
                "node-analyst",
                "fetch",
                job.job_id,
                "--submitter",
                "model-owner",
                "--digest",
            )
        )
    )
    assert digest["values"] == full["values"]
    with node_cluster.client("node-analyst") as analyst:  # the Python SDK decodes the same numbers
        python = analyst.fetch(job)
    # Both convert the signed ring element to the nearest double, then divide by 2^f exactly.
    assert python.tolist() == full["values"]


def test_node_scales_per_dataset_output_scales_and_truncation(
    node: str, node_cluster: LocalCluster, tmp_path: Path
) -> None:
    """A dataset keeps the scale it was uploaded at; the output states its scale; truncation on request."""
    f, bits = _scale(node_cluster), node_cluster.ring_bits
    n = 2000
    i = np.arange(n, dtype=np.float64)
    income = np.round(35_000 + (i * 7919) % 120_000 + (i % 97) * 0.37, 2)
    weight, f_w = 0.2731, f - 8  # the weight at a scale of its own
    # Own data only (the default scope), submitted by node-bank for node-analyst.
    grants = ["--grant", f"node-analyst:{PROGRAM}", "--submitter", "node-bank"]
    values_file = tmp_path / "x.json"
    values_file.write_text(json.dumps(income.tolist()))
    _ok(
        _node(
            node,
            node_cluster,
            "node-bank",
            "upload",
            "x",
            "--values-file",
            str(values_file),
            *grants,
            "--overwrite",
        )
    )
    out = _ok(
        _node(
            node,
            node_cluster,
            "node-bank",
            "upload",
            "w",
            str(weight),
            "--fractional-bits",
            str(f_w),
            *grants,
            "--overwrite",
        )
    )
    assert f"f = {f_w}, " in out

    job = json.loads(
        _ok(
            _node(
                node,
                node_cluster,
                "node-bank",
                "run",
                PROGRAM,
                "features=x",
                "weights=w",
                "--receiver",
                "node-analyst",
            )
        )
    )
    assert job["fractional_bits"] == f + f_w  # natural: f_x + f_w
    assert job["truncation_failure_log2"] is None
    assert job["submitter"] == "node-bank"
    fetched = json.loads(
        _ok(_node(node, node_cluster, "node-analyst", "fetch", job["job_id"], "--submitter", "node-bank"))
    )
    assert fetched["fractional_bits"] == f + f_w
    exact_bound = _prediction_bound(f, f_w, np.array([weight]), [income], None)
    assert np.all(np.abs(np.array(fetched["values"]) - weight * income) <= exact_bound)

    # Ask for the output at scale f: lower than natural, so the servers truncate by f_w bits.
    truncating = _node(
        node,
        node_cluster,
        "node-bank",
        "run",
        PROGRAM,
        "features=x",
        "weights=w",
        "--receiver",
        "node-analyst",
        "--output-fractional-bits",
        str(f),
    )
    if bits == 64:
        # In Z_2^64 the failure probability on these bounds is far above 2^-40: refused before computing.
        assert truncating.returncode == 1
        assert "INVALID_ARGUMENT" in truncating.stderr
        assert "could fail with probability up to 2^-10.0, above the limit of 2^-40" in truncating.stderr
        return
    truncated_job = json.loads(_ok(truncating))
    assert truncated_job["fractional_bits"] == f
    assert truncated_job["truncation_failure_log2"] == pytest.approx(-42.03, abs=0.01)  # docs/api.md
    truncated = json.loads(
        _ok(
            _node(
                node,
                node_cluster,
                "node-analyst",
                "fetch",
                truncated_job["job_id"],
                "--submitter",
                "node-bank",
            )
        )
    )
    assert truncated["fractional_bits"] == f
    # Truncation (floor, off by at most one more) adds at most two units of the output scale.
    error = np.abs(np.array(truncated["values"]) - weight * income)
    assert np.all(error <= exact_bound + 2.0 ** -(f - 1))


def test_node_run_and_fetch_takes_small_outputs_inline(
    node: str, node_cluster: LocalCluster, tmp_path: Path
) -> None:
    grants = ["--grant", f"node-analyst:{PROGRAM}"]
    _ok(
        _node(
            node, node_cluster, "node-analyst", "upload", "few", "1.5", "-2.25", "4", *grants, "--overwrite"
        )
    )
    _ok(_node(node, node_cluster, "node-analyst", "upload", "w1", "2", *grants, "--overwrite"))
    small = json.loads(
        _ok(
            _node(node, node_cluster, "node-analyst", "run", PROGRAM, "features=few", "weights=w1", "--fetch")
        )
    )
    assert small["inline"] is True
    assert small["values"] == [3.0, -4.5, 8.0]
    assert small["ring"] == f"RING_Z2_{node_cluster.ring_bits}"

    # 65537 elements: above the inline limit, so RunJob returns no share and the client fetches.
    values_file = tmp_path / "many.json"
    values_file.write_text(json.dumps([float(k % 7) for k in range(65_537)]))
    _ok(
        _node(
            node,
            node_cluster,
            "node-analyst",
            "upload",
            "many",
            "--values-file",
            str(values_file),
            *grants,
            "--overwrite",
        )
    )
    large = json.loads(
        _ok(
            _node(
                node, node_cluster, "node-analyst", "run", PROGRAM, "features=many", "weights=w1", "--fetch"
            )
        )
    )
    assert large["inline"] is False
    assert large["values"] == [2.0 * (k % 7) for k in range(65_537)]


def test_node_fetch_of_an_output_for_someone_else_is_not_found(node: str, node_cluster: LocalCluster) -> None:
    grants = ["--grant", f"node-analyst:{PROGRAM}", "--submitter", "node-bank"]
    small = _ok(
        _node(node, node_cluster, "node-bank", "upload", "small", "1.5", "-2.25", *grants, "--overwrite")
    )
    (small_grant,) = _grant_ids(small)
    _ok(_node(node, node_cluster, "node-bank", "upload", "w1", "2", *grants, "--overwrite"))
    run = _node(
        node,
        node_cluster,
        "node-bank",
        "run",
        PROGRAM,
        "features=small",
        "weights=w1",
        "--receiver",
        "node-analyst",
        "--job-id",
        "node-refusal-job",
    )
    assert json.loads(_ok(run))["receiver"] == "node-analyst"
    fetched = _node(
        node, node_cluster, "node-analyst", "fetch", "node-refusal-job", "--submitter", "node-bank"
    )
    assert json.loads(_ok(fetched))["values"] == [3.0, -4.5]

    # The submitter is not the receiver: for it the output does not exist, in the very words
    # the servers use for a job that never ran, so nobody learns which job ids exist.
    refused = _node(node, node_cluster, "node-bank", "fetch", "node-refusal-job")
    missing = _node(node, node_cluster, "node-bank", "fetch", "never-ran-job")
    for completed, job_id in ((refused, "node-refusal-job"), (missing, "never-ran-job")):
        assert completed.returncode == 1
        assert completed.stdout == ""
        assert (
            f"mpc-node: NOT_FOUND: server-0, server-1, server-2: no output of job {job_id} for node-bank "
            "(never computed, released or expired)"
        ) in completed.stderr
    assert refused.stderr.replace("node-refusal-job", "never-ran-job") == missing.stderr

    # A job for a receiver the inputs do not grant does not run at all, even for the owner of
    # every input: node-bank would have to grant itself.
    ungranted = _node(node, node_cluster, "node-bank", "run", PROGRAM, "features=small", "weights=w1")
    assert ungranted.returncode == 1
    assert "PERMISSION_DENIED" in ungranted.stderr
    assert (
        f"dataset node-bank/small may not be used in this job: grant {small_grant[:12]} does not allow it: "
        f"it allows node-analyst outputs of {PROGRAM}"
    ) in ungranted.stderr


def test_node_owner_audits_its_data_and_revokes_a_grant(node: str, node_cluster: LocalCluster) -> None:
    """A Node owner sees who used its data under which grant, and a revoked grant allows no job."""
    job_inputs = {"features": "node-bank/audited", "weights": "model-owner/audit-w"}
    with node_cluster.client("model-owner") as owner:
        model = owner.upload(
            "audit-w",
            [0.5, -1.0],
            grants=[Grant.pinned("node-analyst", PROGRAM, job_inputs, submitters=("model-owner",))],
            overwrite=True,
        )
    uploaded = _ok(
        _node(
            node,
            node_cluster,
            "node-bank",
            "upload",
            "audited",
            "4",
            "6",
            "--shape",
            "1,2",
            "--grant",
            f"node-analyst:{PROGRAM}",
            "--pin",
            "features=self",
            "--pin",
            f"weights={model.pinned}",
            "--submitter",
            "model-owner",
            "--overwrite",
        )
    )
    (grant_id,) = _grant_ids(uploaded)
    version = _uploaded_version(uploaded, "node-bank/audited")

    with node_cluster.client("model-owner") as owner:
        job = owner.run(PROGRAM, job_inputs, receiver="node-analyst")
        with node_cluster.client("node-analyst") as analyst:
            assert analyst.fetch(job).tolist() == [4 * 0.5 - 6 * 1.0]

        trail = json.loads(_ok(_node(node, node_cluster, "node-bank", "audit", "audited")))
        assert trail["disagreements"] == []
        (record,) = [r for r in trail["items"] if r["jobId"] == job.job_id]
        assert (record["submitter"], record["receiver"], record["program"], record["status"]) == (
            "model-owner",
            "node-analyst",
            PROGRAM,
            "OK",
        )
        assert record["finishedAt"] >= record["startedAt"] > 0
        assert [(i["role"], i["dataset"]["pinned"]) for i in record["inputs"]] == [
            ("features", version),
            ("weights", model.pinned),
        ]
        assert record["inputs"][0]["grantId"] == grant_id  # the grant node-bank gave
        (model_info,) = [d for d in owner.datasets().items if d.ref.name == "audit-w"]
        assert record["inputs"][1]["grantId"] == model_info.grants[0].grant.grant_id
        # The whole trail (no name) has it too, and the receiver's job list.
        everything = json.loads(_ok(_node(node, node_cluster, "node-bank", "audit")))
        assert record in everything["items"]
        jobs = json.loads(_ok(_node(node, node_cluster, "node-analyst", "jobs")))
        assert [(r["jobId"], r["submitter"]) for r in jobs["items"]].count((job.job_id, "model-owner")) == 1

        listing = json.loads(_ok(_node(node, node_cluster, "node-bank", "datasets")))
        assert listing["disagreements"] == []
        (info,) = [d for d in listing["items"] if d["ref"]["name"] == "audited"]
        assert info["ref"]["pinned"] == version
        assert info["shape"] == [1, 2]
        assert [(g["grant"]["grantId"], g["uses"]) for g in info["grants"]] == [(grant_id, 1)]

        revoked = _ok(_node(node, node_cluster, "node-bank", "revoke-grant", "audited", grant_id))
        assert f"revoked grant {grant_id} of node-bank/audited" in revoked
        listing = json.loads(_ok(_node(node, node_cluster, "node-bank", "datasets")))
        (info,) = [d for d in listing["items"] if d["ref"]["name"] == "audited"]
        assert info["grants"] == []

        # The next job is refused on every server. No grant on the dataset names model-owner
        # any more, so for it the dataset is not there at all.
        with pytest.raises(NotFoundError, match="dataset node-bank/audited not found"):
            owner.run(PROGRAM, job_inputs, receiver="node-analyst")
        # A narrower grant added afterwards names model-owner again, but own data only: still refused.
        added = _ok(
            _node(
                node,
                node_cluster,
                "node-bank",
                "add-grant",
                "audited",
                "--grant",
                f"node-analyst:{PROGRAM}",
                "--submitter",
                "model-owner",
            )
        )
        (own_data,) = _grant_ids(added)
        with pytest.raises(PermissionDeniedError) as refused:
            owner.run(PROGRAM, job_inputs, receiver="node-analyst")
        assert (
            f"dataset node-bank/audited may not be used in this job: grant {own_data[:12]} does not allow "
            "it: it allows no other owner's data (the job names model-owner/audit-w)"
        ) in str(refused.value)

    # Refused jobs never ran: the trail still holds the one job.
    trail = json.loads(_ok(_node(node, node_cluster, "node-bank", "audit", "audited")))
    assert [r["jobId"] for r in trail["items"]] == [job.job_id]


def test_node_lists_programs_as_the_servers_do(node: str, node_cluster: LocalCluster) -> None:
    """``mpc-node programs``: each program's roles, parameters and outputs, as GetServerInfo has them."""
    listing = json.loads(_ok(_node(node, node_cluster, "node-analyst", "programs")))
    assert listing["disagreements"] == []
    programs = {p["name"]: p for p in listing["items"]}
    predict = programs[PROGRAM]
    assert [(r["name"], r["minCount"], r["maxCount"]) for r in predict["roles"]] == [
        ("features", 1, 64),
        ("weights", 1, 1),
        ("intercept", 0, 1),
    ]
    assert predict["outputs"] == ["predictions"]
    assert predict["parameters"] == []
    assert predict["summary"]
    assert programs[DOT]["outputs"] == ["value"]
    assert [r["name"] for r in programs[DOT]["roles"]] == ["x", "y"]
    # The same programs, roles, parameter names and types and outputs as the Python SDK reads.
    with node_cluster.client("node-analyst") as analyst:
        infos = analyst.server_info()
    assert sorted(programs) == sorted(p.name for p in infos[0].programs)
    for program in infos[0].programs:
        listed = programs[program.name]
        assert [(r["name"], r["minCount"], r["maxCount"]) for r in listed["roles"]] == list(program.roles)
        assert tuple(listed["outputs"]) == program.outputs
        assert [(p["name"], p["type"]) for p in listed["parameters"]] == [
            (n, t) for n, t, _ in program.parameters
        ]
        for parameter in listed["parameters"]:
            assert parameter["required"] == (parameter["default"] is None)


def test_node_keeps_an_output_as_a_dataset_and_a_later_job_uses_it(
    node: str, node_cluster: LocalCluster
) -> None:
    """Predictions kept on the servers as node-analyst's dataset; nobody sees them; a dot job reads them."""
    f = _scale(node_cluster)
    # In Z_2^128 the inputs are at the cluster's scale and the predictions (natural scale 2f) are
    # truncated to f; in Z_2^64 truncation on these bounds would be refused, so the inputs are at
    # f/2 and the predictions' natural scale is f already. Either way the kept dataset is at f.
    f_in = f if node_cluster.ring_bits == 128 else f // 2
    tag = secrets.token_hex(3)
    x_name, w_name, kept_name = f"keep-x-{tag}", f"keep-w-{tag}", f"scores-{tag}"
    features = np.array([[1.5, -2.0], [0.25, 4.0], [3.0, 1.0]])
    weights = np.array([0.5, -0.25])
    job_inputs = {"features": f"node-bank/{x_name}", "weights": f"model-owner/{w_name}"}
    with node_cluster.client("model-owner") as owner:
        w = owner.upload(
            w_name, weights, grants=[Grant.pinned("node-analyst", PROGRAM, job_inputs)], fractional_bits=f_in
        )
    _ok(
        _node(
            node,
            node_cluster,
            "node-bank",
            "upload",
            x_name,
            *(str(v) for v in features.ravel()),
            "--shape",
            "3,2",
            "--fractional-bits",
            str(f_in),
            "--grant",
            f"node-analyst:{PROGRAM}",
            "--pin",
            "features=self",
            "--pin",
            f"weights={w.pinned}",
            "--keep-outputs",
        )
    )
    # node-bank's grant allows only jobs that keep every output on the servers: delivering is refused.
    delivering = _node(
        node,
        node_cluster,
        "node-analyst",
        "run",
        PROGRAM,
        f"features=node-bank/{x_name}",
        f"weights=model-owner/{w_name}",
        "--fetch",
    )
    assert delivering.returncode == 1
    assert "PERMISSION_DENIED" in delivering.stderr
    assert "it allows only jobs that keep every output on the servers" in delivering.stderr
    bank_listing = json.loads(_ok(_node(node, node_cluster, "node-bank", "datasets")))
    (bank_info,) = [d for d in bank_listing["items"] if d["ref"]["name"] == x_name]
    assert [g["grant"]["keepOutputs"] for g in bank_info["grants"]] == [True]

    ran = _node(
        node,
        node_cluster,
        "node-analyst",
        "run",
        PROGRAM,
        f"features=node-bank/{x_name}",
        f"weights=model-owner/{w_name}",
        "--keep",
        f"predictions={kept_name}",
        "--grant",
        f"node-analyst:{DOT}",
        "--output-fractional-bits",
        str(f),
    )
    job = json.loads(_ok(ran))
    (output,) = job["outputs"]
    assert (output["name"], output["shape"], output["fractional_bits"]) == ("predictions", [3], f)
    assert re.fullmatch(rf"node-analyst/{kept_name}@[0-9a-f]{{32}}", output["kept_as"]), output
    if node_cluster.ring_bits == 128:
        assert output["truncation_failure_log2"] is not None and output["truncation_failure_log2"] <= -40
    else:
        assert output["truncation_failure_log2"] is None  # the natural scale: exact

    # Kept, not delivered: the servers hold no output of the job for anyone to fetch.
    fetched = _node(node, node_cluster, "node-analyst", "fetch", job["job_id"])
    assert fetched.returncode == 1
    assert "NOT_FOUND" in fetched.stderr
    # It is a dataset of node-analyst at the version the job named, with the grant the job gave it.
    listing = json.loads(_ok(_node(node, node_cluster, "node-analyst", "datasets")))
    assert listing["disagreements"] == []
    (info,) = [d for d in listing["items"] if d["ref"]["name"] == kept_name]
    assert info["ref"]["pinned"] == output["kept_as"]
    assert (info["shape"], info["fractionalBits"]) == ([3], f)
    assert [(g["grant"]["receiver"], g["grant"]["program"]) for g in info["grants"]] == [
        ("node-analyst", DOT)
    ]
    # The input owners' trail records where their data went.
    trail = json.loads(_ok(_node(node, node_cluster, "node-bank", "audit", x_name)))
    (record,) = [r for r in trail["items"] if r["jobId"] == job["job_id"]]
    assert [(k["output"], k["dataset"]["pinned"]) for k in record["kept"]] == [
        ("predictions", output["kept_as"])
    ]
    assert record["parameters"] == {}

    # A later job uses the kept dataset like any upload: <p, p>, fetched by Node.
    square = json.loads(
        _ok(_node(node, node_cluster, "node-analyst", "run", DOT, f"x={kept_name}", f"y={kept_name}"))
    )
    assert [(o["name"], o["kept_as"]) for o in square["outputs"]] == [("value", None)]
    assert square["fractional_bits"] == 2 * f
    value = json.loads(
        _ok(_node(node, node_cluster, "node-analyst", "fetch", square["job_id"], "--output", "value"))
    )
    assert (value["output"], value["shape"], value["fractional_bits"]) == ("value", [], 2 * f)
    predictions = features @ weights
    # Inputs exact at 2^-f_in; a truncation is off by at most two units of 2^-f per prediction.
    bound = 2 * np.abs(predictions).sum() * 2.0 ** -(f - 1) + 3 * 2.0 ** -(2 * f - 2)
    assert abs(value["values"][0] - float(predictions @ predictions)) <= bound
    with node_cluster.client("node-analyst") as analyst:
        (dot_record,) = [r for r in analyst.jobs().items if r.job_id == square["job_id"]]
    assert [(i.role, i.dataset.pinned) for i in dot_record.inputs] == [
        ("x", output["kept_as"]),
        ("y", output["kept_as"]),
    ]
    # A job whose output name the program does not have is refused by the servers.
    wrong = _node(
        node,
        node_cluster,
        "node-analyst",
        "run",
        DOT,
        f"x={kept_name}",
        f"y={kept_name}",
        "--keep",
        f"weights=other-{tag}",
    )
    assert wrong.returncode == 1
    assert "INVALID_ARGUMENT" in wrong.stderr
    assert "program dot has no output 'weights' (outputs: value)" in wrong.stderr


def test_node_job_with_an_unknown_parameter_is_refused(node: str, node_cluster: LocalCluster) -> None:
    """A parameter the program does not take: refused by Node before sending, and by every server."""
    tag = secrets.token_hex(3)
    grants = ["--grant", f"node-analyst:{PROGRAM}"]
    _ok(_node(node, node_cluster, "node-analyst", "upload", f"px-{tag}", "1.5", "-2", *grants))
    _ok(_node(node, node_cluster, "node-analyst", "upload", f"pw-{tag}", "2", *grants))
    job = ["run", PROGRAM, f"features=px-{tag}", f"weights=pw-{tag}"]
    message = f"program {PROGRAM} has no parameter 'l2' (parameters: none)"

    local = _node(node, node_cluster, "node-analyst", *job, "--param", "l2=0.5", "--job-id", f"local-{tag}")
    assert local.returncode == 1
    assert f"mpc-node: INVALID_ARGUMENT: {message}" in local.stderr
    # Typed explicitly, it is sent as given: each server refuses it, in the same words.
    sent = _node(
        node, node_cluster, "node-analyst", *job, "--param", "l2:number=0.5", "--job-id", f"sent-{tag}"
    )
    assert sent.returncode == 1
    assert f"mpc-node: INVALID_ARGUMENT: server-0, server-1, server-2: {message}" in sent.stderr
    # A grant cannot fix a parameter the program does not take either.
    granted = _node(
        node,
        node_cluster,
        "node-analyst",
        "upload",
        f"pz-{tag}",
        "1",
        *grants,
        "--fix-param",
        "l2=0.5",
    )
    assert granted.returncode == 1
    assert f"mpc-node: INVALID_ARGUMENT: {message}" in granted.stderr
    # Neither ran; the job without it does.
    ok = json.loads(_ok(_node(node, node_cluster, "node-analyst", *job, "--fetch")))
    assert ok["values"] == [3.0, -4.0]
    jobs = json.loads(_ok(_node(node, node_cluster, "node-analyst", "jobs")))
    ids = {r["jobId"] for r in jobs["items"]}
    assert ok["job_id"] in ids
    assert not {f"local-{tag}", f"sent-{tag}"} & ids


def test_node_refuses_bad_values_before_sending(node: str, node_cluster: LocalCluster) -> None:
    too_large = "-1e15" if node_cluster.ring_bits == 64 else "-1e29"
    for bad in ("nan", "inf", too_large):
        refused = _node(node, node_cluster, "node-bank", "upload", "never", "1", bad, "3")
        assert refused.returncode == 1, refused.stderr
        assert "INVALID_ARGUMENT" in refused.stderr
        assert "at index 1" in refused.stderr
        assert "nothing was sent" in refused.stderr
    with node_cluster.client("model-owner") as owner, pytest.raises(NotFoundError):
        owner.run("dot", {"x": "node-bank/never", "y": "node-bank/never"})


def test_node_verifies_each_server_by_its_identity(node: str, node_cluster: LocalCluster) -> None:
    infos = json.loads(_ok(_node(node, node_cluster, "node-analyst", "info")))
    assert [(i["identity"], i["party"], i["readiness"], i["ring"]) for i in infos] == [
        (f"server-{p}", p, "READINESS_STATE_READY", f"RING_Z2_{node_cluster.ring_bits}") for p in range(3)
    ]
    # server-1's address under server-0's name. Its certificate also carries the DNS name server-0
    # (see the fixture), so the target-name override alone would accept it; its URI SAN
    # urn:mpc:server:server-1 does not match. And server-0's certificate does not carry server-1.
    swapped = list(zip(("server-1", "server-0", "server-2"), node_cluster.addresses, strict=True))
    (node_cluster.directory / "swapped.toml").write_text(
        render_cluster(swapped, "certs/ca.pem", ring_bits=node_cluster.ring_bits)
    )
    refused = _node(
        node, node_cluster, "node-analyst", "info", "--timeout", "10", cluster_file="swapped.toml"
    )
    assert refused.returncode == 1
    assert "UNAVAILABLE" in refused.stderr
    assert "server-0" in refused.stderr
    assert "server-1" in refused.stderr
    assert "server-2" not in refused.stderr
    assert "carries urn:mpc:server:server-1, not urn:mpc:server:server-0" in refused.stderr


def test_node_refuses_a_cluster_file_naming_another_ring(node: str, node_cluster: LocalCluster) -> None:
    other = 128 if node_cluster.ring_bits == 64 else 64
    servers = list(zip(("server-0", "server-1", "server-2"), node_cluster.addresses, strict=True))
    (node_cluster.directory / "other-ring.toml").write_text(
        render_cluster(servers, "certs/ca.pem", ring_bits=other)
    )
    info = _node(node, node_cluster, "node-analyst", "info", cluster_file="other-ring.toml")
    assert info.returncode == 1
    assert f"the cluster file names RING_Z2_{other}" in info.stderr
    assert f"server-0 computes in RING_Z2_{node_cluster.ring_bits}" in info.stderr
    upload = _node(
        node, node_cluster, "node-bank", "upload", "wrong-ring", "1", cluster_file="other-ring.toml"
    )
    assert upload.returncode == 1
    assert "INVALID_ARGUMENT" in upload.stderr
    assert f"is shared in Z_2^{other}; this cluster computes in Z_2^{node_cluster.ring_bits}" in upload.stderr


def test_every_node_call_has_a_deadline(node: str, node_cluster: LocalCluster) -> None:
    with socket.socket() as silent:  # accepts TCP connections, never speaks TLS
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        addresses = [*node_cluster.addresses[:2], f"127.0.0.1:{silent.getsockname()[1]}"]
        servers = list(zip(("server-0", "server-1", "server-2"), addresses, strict=True))
        (node_cluster.directory / "silent.toml").write_text(
            render_cluster(servers, "certs/ca.pem", ring_bits=node_cluster.ring_bits)
        )
        start = time.monotonic()
        refused = _node(
            node, node_cluster, "node-analyst", "info", "--timeout", "1.5", cluster_file="silent.toml"
        )
        elapsed = time.monotonic() - start
    assert refused.returncode == 1
    assert "DEADLINE_EXCEEDED" in refused.stderr
    assert "server-2" in refused.stderr
    assert elapsed < 20


def test_node_refuses_a_certificate_from_another_ca(
    node: str, node_cluster: LocalCluster, tmp_path: Path
) -> None:
    rogue = CertificateAuthority(tmp_path / "rogue").ensure(Principal(Role.CLIENT, "node-bank"))
    completed = subprocess.run(
        [node, str(CLI), "info", "--cert", str(rogue.cert_path), "--key", str(rogue.key_path)],
        cwd=node_cluster.directory,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 1
    assert "not issued by the cluster CA" in completed.stderr


def _needs_alignment() -> None:
    """Skip a keyed-table test where the OPRF (libsodium) is missing."""
    pytest.importorskip("mpc_core.oprf", reason=ALIGNMENT_NEEDS, exc_type=ImportError)


def _keyed_banks(common: int, only_1: int, only_2: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """bank-1 (customer_id, income) and bank-2 (debt, products, indexed by customer_id), shuffled."""
    ids = [f"Cust {secrets.token_hex(5).upper()}" for _ in range(common + only_1 + only_2)]
    values = np.random.default_rng(17).normal(size=(len(ids), 3)) * [2_000.0, 500.0, 3.0] + [
        9_000.0,
        800.0,
        2.0,
    ]
    frame = pd.DataFrame(np.round(values, 2), columns=["income", "debt", "products"])
    frame.insert(0, "customer_id", ids)
    bank_1 = frame.iloc[: common + only_1][["customer_id", "income"]].sample(frac=1, random_state=3)
    bank_2 = pd.concat([frame.iloc[:common], frame.iloc[common + only_1 :]])[
        ["customer_id", "debt", "products"]
    ]
    return bank_1, bank_2.sample(frac=1, random_state=4).set_index("customer_id")


def test_node_receiver_fetches_a_keyed_prediction_of_the_python_sdk(
    node: str, node_cluster: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two Python banks' keyed tables joined by the servers; the Node receiver gets the rows' tokens too."""
    _needs_alignment()
    monkeypatch.setenv("MPC_KEY_DIR", str(tmp_path / "keys"))  # the banks' key maps, under tmp_path
    f = _scale(node_cluster)
    common, only_1, only_2 = 300, 200, 100
    weights, intercept = np.array([0.25, -0.5, 1.5]), 100.0
    bank_1, bank_2 = _keyed_banks(common, only_1, only_2)
    tag = secrets.token_hex(3)
    with node_cluster.client("model-owner") as owner:
        alignment = owner.open_alignment(f"node-{tag}", {"bank-1": len(bank_1), "bank-2": len(bank_2)})
    job = {
        "features": [f"bank-1/in-{tag}", f"bank-2/debt-{tag}"],
        "weights": f"model-owner/w-{tag}",
        "intercept": f"model-owner/c-{tag}",
    }
    # Every input allows node-analyst this one job, submitted by the model owner or node-analyst itself.
    grants = [Grant.pinned("node-analyst", PROGRAM, job, submitters=("model-owner", "node-analyst"))]
    with node_cluster.client("model-owner") as owner:
        owner.upload(f"w-{tag}", weights, grants=grants)
        owner.upload(f"c-{tag}", intercept, grants=grants)
    with node_cluster.client("bank-1") as bank:
        bank.upload_table(f"in-{tag}", bank_1, key="customer_id", alignment=alignment, grants=grants)
    with node_cluster.client("bank-2") as bank:
        bank.upload_table(f"debt-{tag}", bank_2, alignment=alignment, grants=grants)  # keyed by the index

    with node_cluster.client("model-owner") as owner:
        result = owner.run(PROGRAM, job, receiver="node-analyst")
    fetched = json.loads(
        _ok(_node(node, node_cluster, "node-analyst", "fetch", result.job_id, "--submitter", "model-owner"))
    )
    assert fetched["keyed"] is True
    assert fetched["shape"] == [common]  # the inner join: the common customers only
    values, tokens = np.array(fetched["values"]), fetched["row_tokens"]
    assert len(values) == len(tokens) == common == len(set(tokens))
    assert all(re.fullmatch(r"[0-9a-f]{32}", token) for token in tokens)

    # Each bank's key map names the customer of every token; both banks' maps agree.
    joined = bank_1.set_index("customer_id").join(bank_2, how="inner")
    maps = [KeyMap(default_key_dir(bank)).lookup() for bank in ("bank-1", "bank-2")]
    ids = [maps[0][bytes.fromhex(token)] for token in tokens]
    assert ids == [maps[1][bytes.fromhex(token)] for token in tokens]
    assert set(ids) == set(joined.index)
    rows = joined.loc[ids, ["income", "debt", "products"]].to_numpy()
    expected = rows @ weights + intercept
    bound = _prediction_bound(f, f, weights, list(rows.T), intercept)
    error = np.abs(values - expected)
    assert np.all(error <= bound), f"max error {error.max()} above the bound"
    # As multisets too, without the key maps: the plaintext join's predictions.
    plaintext = joined[["income", "debt", "products"]].to_numpy() @ weights + intercept
    assert sorted(values) == pytest.approx(sorted(plaintext), abs=float(bound.max()))

    # Digest mode gives the same; the Python SDK (no key map of its own) the same tokens and values.
    digest = json.loads(
        _ok(
            _node(
                node,
                node_cluster,
                "node-analyst",
                "fetch",
                result.job_id,
                "--submitter",
                "model-owner",
                "--digest",
            )
        )
    )
    assert (digest["values"], digest["row_tokens"]) == (fetched["values"], tokens)
    with node_cluster.client("node-analyst") as analyst:
        table = analyst.fetch_table(result)
    assert table.index.name == "token"
    assert list(table.index) == tokens
    assert table.to_numpy().tolist() == fetched["values"]

    # node-analyst submits the same job itself: the output is keyed, so never inline; fetched instead.
    ran = json.loads(
        _ok(
            _node(
                node,
                node_cluster,
                "node-analyst",
                "run",
                PROGRAM,
                f"features=bank-1/in-{tag},bank-2/debt-{tag}",
                f"weights=model-owner/w-{tag}",
                f"intercept=model-owner/c-{tag}",
                "--fetch",
            )
        )
    )
    assert ran["inline"] is False
    assert [o["keyed"] for o in ran["outputs"]] == [True]
    assert sorted(zip(ran["row_tokens"], ran["values"], strict=True)) == sorted(
        zip(tokens, fetched["values"], strict=True)
    )

    # The banks' listings (read by Node) show the alignment and the column names.
    for holder, name, columns, shape in (
        ("bank-1", f"in-{tag}", ["income"], [len(bank_1)]),
        ("bank-2", f"debt-{tag}", ["debt", "products"], [len(bank_2), 2]),
    ):
        listing = json.loads(_ok(_node(node, node_cluster, holder, "datasets")))
        assert listing["disagreements"] == []
        (info,) = [d for d in listing["items"] if d["ref"]["name"] == name]
        assert (info["alignment"], info["columns"], info["shape"]) == (alignment, columns, shape)


def test_node_selects_columns_of_a_keyed_table_by_name(
    node: str, node_cluster: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``features=bank-1/t:c:a``: JobInput.columns, by the names the table was uploaded with."""
    _needs_alignment()
    monkeypatch.setenv("MPC_KEY_DIR", str(tmp_path / "keys"))
    tag = secrets.token_hex(3)
    ids = [f"c{i}" for i in range(6)]
    frame = pd.DataFrame(
        {"id": ids, "a": np.arange(6.0), "b": np.arange(6.0) * 10, "c": 1 + np.arange(6.0) / 4}
    )
    with node_cluster.client("model-owner") as owner:
        alignment = owner.open_alignment(f"sel-{tag}", {"bank-1": len(ids)})
    with node_cluster.client("bank-1") as bank:
        bank.upload_table(
            f"t-{tag}",
            frame,
            key="id",
            alignment=alignment,
            grants=[Grant.read_access("node-analyst", PROGRAM)],
        )
    _ok(
        _node(
            node,
            node_cluster,
            "node-analyst",
            "upload",
            f"w-{tag}",
            "2",
            "-1",
            "--grant",
            f"node-analyst:{PROGRAM}",
            "--any-inputs",
        )
    )
    picked = json.loads(
        _ok(
            _node(
                node,
                node_cluster,
                "node-analyst",
                "run",
                PROGRAM,
                f"features=bank-1/t-{tag}:c:a",
                f"weights=w-{tag}",
                "--fetch",
            )
        )
    )
    assert picked["keyed"] is True and len(picked["row_tokens"]) == len(ids)
    known = KeyMap(default_key_dir("bank-1")).lookup()
    rows = frame.set_index("id").loc[[known[bytes.fromhex(t)] for t in picked["row_tokens"]]]
    expected = 2 * rows["c"].to_numpy() - rows["a"].to_numpy()  # the columns c and a, in that order
    assert picked["values"] == pytest.approx(expected.tolist())
    with node_cluster.client("node-analyst") as analyst:
        (record,) = [r for r in analyst.jobs().items if r.job_id == picked["job_id"]]
    assert [str(i.dataset) for i in record.inputs] == [f"bank-1/t-{tag}", f"node-analyst/w-{tag}"]
    unknown = _node(
        node, node_cluster, "node-analyst", "run", PROGRAM, f"features=bank-1/t-{tag}:z", f"weights=w-{tag}"
    )
    assert unknown.returncode == 1
    assert "INVALID_ARGUMENT" in unknown.stderr
    assert f"dataset bank-1/t-{tag} has no columns named ['z']" in unknown.stderr


def test_node_honours_the_revocation_list_of_the_cluster_file(node: str, node_cluster: LocalCluster) -> None:
    """``revoked = ...``: accepted; a listed server certificate is refused by Node (and the Python SDK)."""
    directory, certs = node_cluster.directory, node_cluster.cert_dir
    servers = list(zip(("server-0", "server-1", "server-2"), node_cluster.addresses, strict=True))

    def cluster_file(name: str, listed: list[str]) -> str:
        """A cluster file naming the revocation list ``name``.txt, with the certificates ``listed``."""
        for identity in listed:
            revoke(certs / f"{identity}.pem", directory / f"{name}.txt")
        if not listed:
            (directory / f"{name}.txt").write_text("# nothing revoked\n")
        text = render_cluster(
            servers, "certs/ca.pem", ring_bits=node_cluster.ring_bits, revoked=f"{name}.txt"
        )
        (directory / f"{name}.toml").write_text(text)
        return f"{name}.toml"

    # A list naming other certificates (a client's): everything works, also for Python.
    others = cluster_file("revoked-client", ["bank-1"])
    infos = json.loads(_ok(_node(node, node_cluster, "node-analyst", "info", cluster_file=others)))
    assert [i["identity"] for i in infos] == ["server-0", "server-1", "server-2"]
    assert _node(node, node_cluster, "node-analyst", "datasets", cluster_file=others).returncode == 0
    empty = cluster_file("revoked-none", [])
    assert _node(node, node_cluster, "node-analyst", "info", cluster_file=empty).returncode == 0
    # The listed client itself is refused before anything is sent.
    own = _node(node, node_cluster, "bank-1", "info", cluster_file=others)
    assert own.returncode == 1
    assert "FAILED_PRECONDITION: the client certificate (urn:mpc:client:bank-1, serial " in own.stderr
    assert "is on the revocation list" in own.stderr

    # server-1's certificate on the list (the servers' own cluster file names no list: this is
    # the client's check alone). Node refuses to talk to it; the other two are not blamed.
    server_1 = inspect_certificate((certs / "server-1.pem").read_bytes())
    listed = cluster_file("revoked-server", ["server-1"])
    refused = _node(node, node_cluster, "node-analyst", "info", "--timeout", "10", cluster_file=listed)
    assert refused.returncode == 1
    assert (
        f"mpc-node: UNAUTHENTICATED: server-1: the certificate at {node_cluster.addresses[1]} "
        f"(sha256:{server_1.fingerprint}, serial {server_1.serial:x}) has been revoked"
    ) in refused.stderr
    assert "server-0" not in refused.stderr and "server-2" not in refused.stderr
    # By serial alone, as openssl prints it (colons, upper case): refused the same way.
    colons = ":".join(re.findall("..", f"{server_1.serial:x}".rjust(40, "0"))).upper()
    (directory / "revoked-serial.txt").write_text(f"serial:{colons}  # server-1\n")
    (directory / "revoked-serial.toml").write_text(
        render_cluster(
            servers, "certs/ca.pem", ring_bits=node_cluster.ring_bits, revoked="revoked-serial.txt"
        )
    )
    by_serial = _node(node, node_cluster, "node-analyst", "info", cluster_file="revoked-serial.toml")
    assert by_serial.returncode == 1
    assert "UNAUTHENTICATED: server-1: the certificate at" in by_serial.stderr
    # The Python SDK, with the same cluster file, refuses server-1 too.
    python = MpcClient.connect(directory / listed, certs / "node-analyst.pem", certs / "node-analyst.key")
    with (
        python,
        pytest.raises(UnauthenticatedError, match=r"server-1: the certificate at .* has been revoked"),
    ):
        python.server_info(timeout=10)
    # A list that cannot be read is refused at connect.
    (directory / "revoked-none.txt").write_text("not an entry\n")
    broken = _node(node, node_cluster, "node-analyst", "info", cluster_file=empty)
    assert broken.returncode == 1
    assert "the revocation list is unusable" in broken.stderr and "line 1" in broken.stderr
