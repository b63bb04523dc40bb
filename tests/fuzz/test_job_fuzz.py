"""RunJob and FetchOutput under hostile input, checked against a model of the contract.

The module uploads a fixed pool of datasets of three owners (known values,
shapes and grants of every scope: own data, pinned inputs with and without
versions, read access; submitters; role restrictions; an expired grant; a
pinned version that was replaced; and a few grants drawn at random from a
fixed seed), then fuzzes job descriptions sent to all three servers at
once, by any of the three clients, as a client would: random and bad job
ids, programs, roles, dataset references, receivers and submitters,
duplicate job ids with the same or another spec, and ``return_output``.

The oracle mirrors the order in which a server checks a job
(mpc_server/service/job_plan.py and jobs.py): the request's names, the
program, the roles, every input's existence *and visibility* to the
submitter in the order listed (an invisible dataset is answered exactly like
a missing one), the role counts, the grants of every input, the program's
shapes, then either the recorded job under that (submitter, job id) or the
submitter's output quota. So it predicts the one code each server answers,
and the words of NOT_FOUND and PERMISSION_DENIED; for a valid job, its exact
result. Fetches are fuzzed against the outputs the valid jobs left behind,
keyed by (submitter, job id), including released ones and other clients'.
"""

from __future__ import annotations

import math
import random
import re
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpc_cli.local_cluster import LocalCluster
from mpc_client import DatasetRef, Grant, ResourceLimitError
from mpc_core.fixed_point import FixedPoint
from mpc_core.ring import RING64, RING128
from mpc_proto.v1 import client_service_pb2 as pb
from mpc_proto.v1 import types_pb2
from mpc_server.service.output_store import OutputRetention

from .conftest import AE, DOCUMENTED, FUZZER, IA, NAME, NF, OK, PD, RE, Outcome, Wire, describe

pytestmark = pytest.mark.e2e
FUZZ = settings(
    max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
MUL, DOT, LR = "elementwise.multiply", "dot", "linear_regression.predict"
PROGRAMS = (MUL, DOT, LR)
ROLES = {MUL: {"x": (1, 1), "y": (1, 1)}, DOT: {"x": (1, 1), "y": (1, 1)}}
ROLES[LR] = {"features": (1, 64), "weights": (1, 1), "intercept": (0, 1)}
"""Each program's roles, in the program's order, with their counts."""
OWNER, BANK = "model-owner", "bank-1"
IDENTITIES = (FUZZER, OWNER, BANK)
QUOTA = OutputRetention().max_outputs_per_client
"""Outputs kept per submitter on a server (the servers' default)."""
UNKNOWN_OUTPUTS = 100
"""Outputs other fuzz modules may have left in the fuzzer's account (a margin)."""


def quota_account(submitter: str, receiver: str) -> str:
    """Whose quota a kept output is charged to: the submitter's (docs/api.md, "Output quotas")."""
    return submitter


# -- the pool ------------------------------------------------------------------


@dataclass(frozen=True)
class G:
    """A grant as the test gives it; pins name ``owner/name`` (``@`` pins the current version)."""

    receiver: str
    program: str
    scope: str = "own"  # "own", "pinned", "any"
    pins: tuple[tuple[str, str], ...] = ()
    role: str = ""
    submitters: tuple[str, ...] = ()
    expires_at: float = 0.0


def own(receiver: str, *programs: str, **options: Any) -> list[G]:
    """Own-data grants (the default scope) of ``programs`` (default: all)."""
    return [G(receiver, p, **options) for p in programs or PROGRAMS]


def anything(receiver: str, *programs: str, **options: Any) -> list[G]:
    """Read access (any inputs) for ``programs`` (default: all)."""
    return [G(receiver, p, "any", **options) for p in programs or PROGRAMS]


def pinned(receiver: str, program: str, *pins: tuple[str, str], **options: Any) -> G:
    """One exact job: (role, ``owner/name``) of every input in order; ``owner/name@`` pins its version."""
    return G(receiver, program, "pinned", tuple(pins), **options)


@dataclass(frozen=True)
class Data:
    owner: str
    name: str
    values: np.ndarray
    grants: tuple[G, ...]
    reupload: bool = False
    """Uploaded again after the whole pool: versions pinned before are replaced."""

    @property
    def ref(self) -> str:
        return f"{self.owner}/{self.name}"


_rng = np.random.default_rng(7)  # test data only; quarters are exact in fixed point


def _values(*shape: int) -> np.ndarray:
    return _rng.integers(-400, 400, size=shape) / 4


INCOME_JOB = (("x", f"{BANK}/income"), ("y", f"{FUZZER}/pin-w@"))
FEATURES_JOB = (("features", f"{BANK}/feat"), ("features", f"{FUZZER}/v3b"), ("weights", f"{OWNER}/w3@"))
STALE_JOB = (("x", f"{BANK}/stale"), ("y", f"{FUZZER}/replaced@"))
HAND_MADE = [
    Data(OWNER, "w3", _values(3), (pinned(FUZZER, LR, *FEATURES_JOB),)),
    Data(FUZZER, "v3a", _values(3), (*own(FUZZER), *own(OWNER, submitters=(FUZZER, OWNER)))),
    Data(FUZZER, "v3b", _values(3), (*own(FUZZER), pinned(FUZZER, LR, *FEATURES_JOB))),
    Data(FUZZER, "v4", _values(4), tuple(own(FUZZER))),
    Data(FUZZER, "m32", _values(3, 2), tuple(own(FUZZER))),
    Data(FUZZER, "w1", _values(1), tuple(own(FUZZER))),
    Data(FUZZER, "w2", _values(2), tuple(own(FUZZER))),
    Data(FUZZER, "w3", _values(3), tuple(own(FUZZER))),
    Data(FUZZER, "c", np.array(12.25), (*own(FUZZER), *own(OWNER, submitters=(FUZZER,)))),
    Data(FUZZER, "open3", _values(3), tuple(anything(FUZZER))),
    Data(FUZZER, "mo-only", _values(3), tuple(own(OWNER, MUL, DOT))),
    Data(FUZZER, "x-only", _values(3), tuple(own(FUZZER, MUL, DOT, role="x"))),
    Data(FUZZER, "expired", _values(3), tuple(own(FUZZER, MUL, DOT, expires_at=1.0))),
    Data(FUZZER, "nogrant", _values(3), ()),
    Data(FUZZER, "pin-w", _values(3), (pinned(FUZZER, DOT, *INCOME_JOB),)),
    Data(FUZZER, "replaced", _values(3), (pinned(FUZZER, DOT, *STALE_JOB),), reupload=True),
    Data(OWNER, "shared", _values(3), (*anything(FUZZER, DOT, MUL), *own(BANK, DOT))),
    Data(OWNER, "for-bank", _values(3), tuple(own(OWNER, DOT, MUL, submitters=(BANK,)))),
    Data(OWNER, "to-bank", _values(3), tuple(own(BANK, DOT, MUL, submitters=(FUZZER,)))),
    Data(OWNER, "private", _values(3), ()),
    Data(BANK, "income", _values(3), (pinned(FUZZER, DOT, *INCOME_JOB),)),
    Data(BANK, "feat", _values(3), (pinned(FUZZER, LR, *FEATURES_JOB),)),
    Data(BANK, "stale", _values(3), (pinned(FUZZER, DOT, *STALE_JOB),)),
    Data(BANK, "hidden", _values(3), tuple(own(OWNER, DOT))),
]


def _random_pool(seed: int, count: int) -> list[Data]:
    """Datasets of shape (3,) with grants of every kind drawn from a fixed seed."""
    draw = random.Random(seed)
    names = [(IDENTITIES[k % 3], f"r{k}") for k in range(count)]
    pool = []
    for index, (owner, name) in enumerate(names):
        grants = []
        for _ in range(draw.randint(0, 3)):
            receiver, program = draw.choice(IDENTITIES), draw.choice((MUL, DOT))
            options: dict[str, Any] = {
                "role": draw.choice(("", "", "x", "y")),
                "submitters": draw.choice(((), (), (FUZZER,), (OWNER, BANK), (receiver, FUZZER))),
            }
            scope = draw.choice(("own", "any", "pinned"))
            if scope == "pinned":
                other = draw.choice([f"{o}/{n}" for o, n in names] + [f"{FUZZER}/v3a", f"{OWNER}/shared"])
                mine = f"{owner}/{name}"
                uploaded = other not in [f"{o}/{n}" for o, n in names[index:]]  # has a version to pin
                pair = [mine, other + draw.choice(("", "@") if uploaded else ("",))]
                draw.shuffle(pair)
                pins = (("x", pair[0]), ("y", pair[1]))
                options["role"] = ""
                grants.append(pinned(receiver, program, *pins, **options))
            else:
                grants.append(G(receiver, program, scope, **options))
        pool.append(Data(owner, name, _values(3), tuple(grants)))
    return pool


DATASETS = {d.ref: d for d in (*HAND_MADE, *_random_pool(seed=10, count=9))}
MISSING = (f"{FUZZER}/missing", f"{OWNER}/missing", f"{BANK}/missing")
BAD_REFS = (("", "x"), (FUZZER, ""), ("a/b", "x"), (FUZZER, ".."), (FUZZER, "../v3a"), (FUZZER, "ä"))
BAD_IDS = ("", "j" * 129, "a/b", "..", "../../tmp/x", ".x", "-x", "jöb", "a b", "a\x00b")
INVALID_TEXT = st.text(max_size=40).filter(lambda s: NAME.fullmatch(s) is None)
"""Random job ids that are never valid: a refused valid id would stay poisoned (see
tests/security/test_job_ids.py), which is tested on its own."""


def owner_of(ref: str) -> str:
    return ref.partition("/")[0]


@dataclass(frozen=True)
class StoredGrant:
    """A grant as the servers hold it: pins resolved to versions."""

    grant_id: str
    receiver: str
    program: str
    scope: str
    role: str
    pins: tuple[tuple[str, str, str], ...]  # (role, ref, version or "")
    submitters: tuple[str, ...]
    expires_at: float

    @property
    def label(self) -> str:
        return f"grant {self.grant_id[:12]}"

    @property
    def may_submit(self) -> tuple[str, ...]:
        return self.submitters or (self.receiver,)

    def names(self, identity: str) -> bool:
        return identity == self.receiver or identity in self.may_submit


@dataclass
class Pool:
    """What the servers hold: every dataset's current version and grants."""

    versions: dict[str, str] = field(default_factory=dict)
    grants: dict[str, tuple[StoredGrant, ...]] = field(default_factory=dict)

    def visible(self, submitter: str, ref: str) -> bool:
        """Owned by the submitter, or some grant on it names the submitter."""
        if ref not in self.versions:
            return False
        return owner_of(ref) == submitter or any(g.names(submitter) for g in self.grants[ref])


def _sdk_grant(data: Data, grant: G, versions: Mapping[str, str]) -> Grant:
    options: dict[str, Any] = {
        "role": grant.role,
        "submitters": grant.submitters,
        "expires_at": grant.expires_at,
    }
    if grant.scope == "any":
        return Grant.read_access(grant.receiver, grant.program, **options)
    if grant.scope == "own":
        return Grant(grant.receiver, grant.program, **options)
    job: dict[str, list[str | DatasetRef]] = {}
    for role, text in grant.pins:
        ref, at, _ = text.partition("@")
        owner, name = ref.split("/")
        version = versions[ref] if at and ref != data.ref else ""
        job.setdefault(role, []).append(DatasetRef(owner, name, version))
    return Grant.pinned(grant.receiver, grant.program, job, **options)


def _stored(data: Data, sdk: Grant) -> StoredGrant:
    pins = []
    for role, text in sdk.inputs:
        ref = DatasetRef.parse(text, data.owner)
        pins.append((role, str(ref), "" if str(ref) == data.ref else ref.version))
    own_roles = {role for role, text in sdk.inputs if str(DatasetRef.parse(text, data.owner)) == data.ref}
    role = sdk.role or (own_roles.pop() if len(own_roles) == 1 else "")
    scope = {"own-data": "own", "pinned": "pinned", "any-inputs": "any"}[sdk.scope.value]
    return StoredGrant(
        sdk.grant_id, sdk.receiver, sdk.program, scope, role, tuple(pins), sdk.submitters, sdk.expires_at
    )


# -- the ledger: what the servers did ---------------------------------------------


@dataclass
class Kept:
    """A job that ran: what the servers should keep and replay."""

    submitter: str
    key: tuple[object, ...]
    receiver: str
    shape: tuple[int, ...]
    request: pb.RunJobRequest
    released_on: set[int] = field(default_factory=set)


@dataclass
class Ledger:
    pool: Pool
    jobs: dict[tuple[str, str], Kept] = field(default_factory=dict)
    """By (submitter, job id)."""
    kept: dict[tuple[str, int], int] = field(default_factory=dict)
    """Outputs kept per (quota account, server)."""

    def ran(self, kept: Kept) -> None:
        self.jobs[kept.submitter, kept.request.job.job_id] = kept
        account = quota_account(kept.submitter, kept.receiver)
        for server in range(3):
            self.kept[account, server] = self.kept.get((account, server), 0) + 1

    def released(self, kept: Kept, server: int) -> None:
        if server not in kept.released_on:
            kept.released_on.add(server)
            account = quota_account(kept.submitter, kept.receiver)
            self.kept[account, server] -= 1


# -- the oracle ----------------------------------------------------------------


@dataclass(frozen=True)
class Prediction:
    """What every server answers to a job."""

    code: grpc.StatusCode
    also: frozenset[grpc.StatusCode] = frozenset()
    """Codes the oracle cannot rule out (a quota other modules may have filled)."""
    missing: str = ""
    """For NOT_FOUND: the dataset the refusal names."""
    refused: str = ""
    """For PERMISSION_DENIED: the dataset the refusal names."""
    labels: tuple[str, ...] = ()
    """For PERMISSION_DENIED: the grants the refusal names (those the submitter may see)."""
    key: tuple[object, ...] = ()
    shape: tuple[int, ...] = ()

    @property
    def codes(self) -> frozenset[grpc.StatusCode]:
        return self.also | {self.code}


def _feature_columns(shape: tuple[int, ...]) -> tuple[int, int] | None:
    if len(shape) == 1:
        return shape[0], 1
    if len(shape) == 2:
        return shape[0], shape[1]
    return None


def _shape_fault(program: str, bound: dict[str, list[Data]]) -> tuple[bool, tuple[int, ...]]:
    """(whether the program refuses the shapes, the output shape)."""
    if program in (MUL, DOT):
        x, y = bound["x"][0], bound["y"][0]
        if x.values.shape != y.values.shape:
            return True, ()
        return False, (x.values.shape if program == MUL else ())
    blocks = [_feature_columns(d.values.shape) for d in bound["features"]]
    if None in blocks or len({b[0] for b in blocks if b}) != 1:
        return True, ()
    columns = sum(b[1] for b in blocks if b)
    if bound["weights"][0].values.shape != (columns,):
        return True, ()
    if any(d.values.shape not in ((), (1,)) for d in bound["intercept"]):
        return True, ()
    rows = blocks[0][0] if blocks[0] else 0
    return False, (rows,)


@dataclass(frozen=True)
class Job:
    submitter: str
    receiver: str
    program: str
    inputs: tuple[tuple[str, str], ...]


def refusal(grant: StoredGrant, job: Job, dataset: str, pool: Pool) -> str | None:
    """Why ``grant`` does not allow ``job`` to use ``dataset`` (service.grants.Grant.refusal)."""
    if (job.receiver, job.program) != (grant.receiver, grant.program):
        return "receiver or program"
    if job.submitter not in grant.may_submit:
        return "submitter"
    if grant.expires_at:
        return "expired"  # every expiry in the pool is in the past
    roles = {role for role, ref in job.inputs if ref == dataset}
    if grant.role and roles != {grant.role}:
        return "role"
    if grant.scope == "own":
        foreign = any(owner_of(r) != owner_of(dataset) for _, r in job.inputs)
        return "another owner's data" if foreign else None
    if grant.scope == "pinned":
        if list(job.inputs) != [(role, ref) for role, ref, _ in grant.pins]:
            return "inputs"
        for _, ref, version in grant.pins:
            if version and ref != dataset and pool.versions.get(ref) != version:
                return "replaced version"
    return None


def predict(request: pb.RunJobRequest, submitter: str, ledger: Ledger) -> Prediction:
    """The answer of every server to ``request`` from ``submitter``, in the servers' order of checks."""
    spec, pool = request.job, ledger.pool
    # The request's names (api.convert, model.JobSpec).
    for item in spec.inputs:
        if not item.HasField("dataset") or not all(
            NAME.fullmatch(part) for part in (item.dataset.owner, item.dataset.name)
        ):
            return Prediction(IA)
    if NAME.fullmatch(spec.job_id) is None or NAME.fullmatch(spec.receiver) is None:
        return Prediction(IA)
    # The program and its roles, then every input's visibility in order, then the counts.
    roles = ROLES.get(spec.program)
    if roles is None or any(item.role not in roles for item in spec.inputs):
        return Prediction(IA)
    inputs = tuple((item.role, f"{item.dataset.owner}/{item.dataset.name}") for item in spec.inputs)
    for _, ref in inputs:
        if not pool.visible(submitter, ref):
            return Prediction(NF, missing=ref)
    bound: dict[str, list[Data]] = {role: [] for role in roles}
    for role, ref in inputs:
        bound[role].append(DATASETS[ref])
    if any(not lo <= len(bound[role]) <= hi for role, (lo, hi) in roles.items()):
        return Prediction(IA)
    # Consent: every distinct dataset, in the program's role order.
    job = Job(submitter, spec.receiver, spec.program, inputs)
    for ref in dict.fromkeys(d.ref for role in roles for d in bound[role]):
        grants = pool.grants[ref]
        if all(refusal(g, job, ref, pool) is not None for g in grants):
            shown = owner_of(ref) == submitter
            labels = tuple(g.label for g in grants if shown or g.names(submitter))
            return Prediction(PD, refused=ref, labels=labels)
    # The program's checks of shapes.
    fault, shape = _shape_fault(spec.program, bound)
    if fault:
        return Prediction(IA)
    key = (spec.program, spec.receiver, inputs)
    kept = ledger.jobs.get((submitter, spec.job_id))
    if kept is not None:
        return Prediction(AE if kept.key != key else OK, key=key, shape=shape)
    used = max(ledger.kept.get((quota_account(submitter, spec.receiver), s), 0) for s in range(3))
    if used >= QUOTA:
        return Prediction(RE, key=key, shape=shape)
    uncertain = frozenset({RE}) if submitter == FUZZER and used + UNKNOWN_OUTPUTS >= QUOTA else frozenset()
    return Prediction(OK, also=uncertain, key=key, shape=shape)


def expected_per_server(request: pb.RunJobRequest, submitter: str, ledger: Ledger) -> list[Prediction]:
    """The prediction for each server (a replay's inline output may have been released on some)."""
    prediction = predict(request, submitter, ledger)
    kept = ledger.jobs.get((submitter, request.job.job_id))
    inline = request.return_output and request.job.receiver == submitter
    if prediction.code is not OK or kept is None or not inline:
        return [prediction] * 3
    return [Prediction(NF) if server in kept.released_on else prediction for server in range(3)]


def check_words(outcome: Outcome, prediction: Prediction) -> None:
    """NOT_FOUND says exactly what a missing dataset gets; PERMISSION_DENIED names what it may."""
    if outcome.code is NF and prediction.missing:
        assert outcome.details == f"dataset {prediction.missing} not found", str(outcome)
    if outcome.code is PD:
        prefix = f"dataset {prediction.refused} may not be used in this job: "
        assert outcome.details.startswith(prefix), f"expected {prefix!r}...: {outcome}"
        named = tuple(
            f"grant {m}" for m in re.findall(r"grant ([0-9a-f]{12}) does not allow it", outcome.details)
        )
        assert named == prediction.labels, f"expected the grants {prediction.labels}: {outcome}"
        if not prediction.labels:
            assert outcome.details == prefix + "no grant allows it", str(outcome)


def plaintext(request: pb.RunJobRequest) -> np.ndarray:
    spec = request.job
    by_role: dict[str, list[np.ndarray]] = {}
    for item in spec.inputs:
        by_role.setdefault(item.role, []).append(DATASETS[f"{item.dataset.owner}/{item.dataset.name}"].values)
    if spec.program == MUL:
        product: np.ndarray = by_role["x"][0] * by_role["y"][0]
        return product
    if spec.program == DOT:
        return np.asarray(float(np.sum(by_role["x"][0] * by_role["y"][0])))
    features = np.column_stack([f.reshape(f.shape[0], -1) for f in by_role["features"]])
    result = features @ by_role["weights"][0]
    for intercept in by_role.get("intercept", []):
        result = result + float(intercept.reshape(-1)[0])
    predictions: np.ndarray = result
    return predictions


def reconstruct(outcomes: list[Outcome]) -> np.ndarray:
    """Check both copies of every component, then add the three components up."""
    info = outcomes[0].response.output
    ring = RING128 if info.ring == types_pb2.RING_Z2_128 else RING64
    firsts, seconds = [], []
    for outcome in outcomes:
        share = outcome.response.output_share
        firsts.append(ring.from_wire(share.first))
        seconds.append(ring.from_wire(share.second))
    for party in range(3):
        assert seconds[party].tobytes() == firsts[(party + 1) % 3].tobytes(), "copies of a component differ"
    total = ring.add(ring.add(firsts[0], firsts[1]), firsts[2])
    return FixedPoint(info.fractional_bits, ring).decode(total).reshape(tuple(info.shape))


# -- strategies ----------------------------------------------------------------

refs = st.one_of(
    st.sampled_from(sorted(DATASETS)).map(lambda r: tuple(r.split("/"))),
    st.sampled_from(MISSING).map(lambda r: tuple(r.split("/"))),
    st.sampled_from(BAD_REFS),
    st.just(None),
)
roles = st.one_of(st.sampled_from(["x", "y", "features", "weights", "intercept"]), st.text(max_size=20))


def _input(role: str, ref: Sequence[str] | None) -> pb.JobInput:
    if ref is None:
        return pb.JobInput(role=role)
    owner, name = ref.split("/") if isinstance(ref, str) else ref
    return pb.JobInput(role=role, dataset=types_pb2.DatasetRef(owner=owner, name=name))


def _by_shape() -> dict[tuple[int, ...], list[tuple[str, str]]]:
    groups: dict[tuple[int, ...], list[tuple[str, str]]] = {}
    for data in DATASETS.values():
        groups.setdefault(data.values.shape, []).append((data.owner, data.name))
    return groups


SAME_SHAPE = _by_shape()
COLUMNS = [(d.owner, d.name) for d in DATASETS.values() if d.values.ndim in (1, 2) and d.values.shape[0] == 3]
WEIGHTS = {1: (FUZZER, "w1"), 2: (FUZZER, "w2"), 3: (FUZZER, "w3")}


Curated = tuple[str, str, str, tuple[tuple[str, str], ...]]


def _curated() -> list[Curated]:
    """(submitter, receiver, program, inputs) of jobs the pool's grants were made for."""
    jobs = []
    for data in DATASETS.values():
        for grant in data.grants:
            submitter = (grant.submitters or (grant.receiver,))[0]
            if grant.scope == "pinned":
                inputs = tuple((role, text.partition("@")[0]) for role, text in grant.pins)
                jobs.append((submitter, grant.receiver, grant.program, inputs))
            elif grant.program in (MUL, DOT) and data.values.shape == (3,):
                role = grant.role or "x"
                inputs = (("x", data.ref), ("y", data.ref)) if not grant.role else ((role, data.ref),)
                if grant.role:  # the other role from a dataset of the same owner, allowed or not
                    other = next(
                        d.ref
                        for d in DATASETS.values()
                        if d.owner == data.owner and d is not data and d.values.shape == (3,)
                    )
                    inputs = tuple(sorted((*inputs, ("y" if role == "x" else "x", other))))
                jobs.append((submitter, grant.receiver, grant.program, inputs))
    return sorted(set(jobs))


CURATED: dict[str, list[Curated]] = {}
for _job in _curated():
    CURATED.setdefault(_job[0], []).append(_job)


@st.composite
def plausible_inputs(draw: st.DrawFn, program: str) -> list[pb.JobInput]:
    """Inputs that fit the program's roles and shapes; grants vary with the datasets."""
    if program in (MUL, DOT):
        group = SAME_SHAPE[draw(st.sampled_from(sorted(SAME_SHAPE)))]
        return [_input("x", draw(st.sampled_from(group))), _input("y", draw(st.sampled_from(group)))]
    features = draw(st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=3))
    columns = sum(DATASETS["/".join(f)].values.reshape(3, -1).shape[1] for f in features)
    chosen = [("features", f) for f in features]
    chosen.append(("weights", WEIGHTS.get(columns, (FUZZER, "w3"))))
    intercept = draw(st.sampled_from([None, (FUZZER, "c"), (FUZZER, "w1"), (FUZZER, "v3a")]))
    if intercept is not None:
        chosen.append(("intercept", intercept))
    return [_input(role, ref) for role, ref in chosen]


def _weighted(draw: st.DrawFn, usual: st.SearchStrategy[str], hostile: st.SearchStrategy[str]) -> str:
    """Mostly ``usual``, one time in six ``hostile`` (both are always drawn)."""
    first, second, coin = draw(usual), draw(hostile), draw(st.integers(0, 5))
    return second if coin == 0 else first


def _pick(ledger: Ledger, index: int) -> tuple[str, str]:
    return sorted(ledger.jobs)[index % len(ledger.jobs)]


@dataclass(frozen=True)
class Submission:
    submitter: str
    request: pb.RunJobRequest


@st.composite
def submissions(draw: st.DrawFn, ledger: Ledger) -> Submission:
    # Every draw happens whatever the ledger holds (hypothesis replays draws);
    # ``pick`` chooses among the jobs that ran.
    replay, pick = draw(st.integers(0, 5)) == 0, draw(st.integers(0, 1 << 16))
    mode = draw(st.sampled_from(["fresh"] * 6 + ["bad", "reuse"]))
    bad_id = draw(st.one_of(st.sampled_from(BAD_IDS), INVALID_TEXT))
    program = _weighted(
        draw,
        st.sampled_from(PROGRAMS),
        st.sampled_from(["", "dot ", "DOT", "x"]) | st.text(max_size=30),
    )
    plausible = draw(plausible_inputs(program if program in ROLES else DOT))
    arbitrary = [_input(r, ref) for r, ref in draw(st.lists(st.tuples(roles, refs), max_size=4))]
    use_plausible = program in ROLES and draw(st.integers(0, 5)) > 0
    curator = draw(st.sampled_from(sorted(CURATED)))
    curated, use_curated = draw(st.sampled_from(CURATED[curator])), draw(st.integers(0, 2)) == 0
    same_submitter = draw(st.integers(0, 3)) > 0
    edit, edit_at, edited = (
        draw(st.integers(0, 6)) == 0,
        draw(st.integers(0, 1 << 16)),
        draw(st.tuples(roles, refs)),
    )
    receiver = _weighted(
        draw, st.sampled_from([FUZZER] * 4 + [OWNER, BANK, "nobody"]), st.sampled_from(BAD_IDS)
    )
    submitter = draw(st.sampled_from([FUZZER] * 4 + [OWNER, BANK]))
    return_output = draw(st.booleans())

    if replay and ledger.jobs:  # a job that ran, exactly, by its submitter
        kept = ledger.jobs[_pick(ledger, pick)]
        request = pb.RunJobRequest()
        request.CopyFrom(kept.request)
        request.return_output = return_output
        return Submission(kept.submitter, request)
    if mode == "reuse" and ledger.jobs:  # an id that ran, usually by the same submitter
        used_by, job_id = _pick(ledger, pick)
        submitter = used_by if same_submitter else submitter
    elif mode == "bad":
        job_id = bad_id
    else:
        job_id = f"fz-{secrets.token_hex(6)}"
    inputs = plausible if use_plausible else arbitrary
    if use_curated:  # a job some grant was made for, usually by the submitter and for the receiver it names
        curated_submitter, curated_receiver, program, pairs = curated
        inputs = [_input(role, ref) for role, ref in pairs]
        if same_submitter:
            submitter, receiver = curated_submitter, curated_receiver
    if edit and inputs:  # one hostile edit of the spec
        inputs[edit_at % len(inputs)] = _input(*edited)
    spec = pb.JobSpec(job_id=job_id, program=program, inputs=inputs, receiver=receiver)
    return Submission(submitter, pb.RunJobRequest(job=spec, return_output=return_output))


# -- fixtures ------------------------------------------------------------------


def _upload(wire: Wire, data: Data, pool: Pool) -> None:
    grants = [_sdk_grant(data, g, pool.versions) for g in data.grants]
    with wire.cluster.client(data.owner) as client:
        ref = client.upload(data.name, data.values, grants=grants, overwrite=True)
    pool.versions[data.ref] = ref.version
    pool.grants[data.ref] = tuple(sorted((_stored(data, g) for g in grants), key=lambda g: g.grant_id))


@pytest.fixture(scope="module")
def ledger(wire: Wire) -> Ledger:
    """Upload the pool (as its owners, in order: pins name versions uploaded before) and start a ledger."""
    pool = Pool()
    for data in DATASETS.values():
        _upload(wire, data, pool)
    for data in DATASETS.values():
        if data.reupload:  # a new version: grants that pinned the old one are void
            _upload(wire, data, pool)
    return Ledger(pool)


# -- fuzzing -------------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_random_jobs_get_their_documented_code_or_the_exact_result(
    wire: Wire, ledger: Ledger, data: st.DataObject
) -> None:
    submission = data.draw(submissions(ledger))
    submitter, request = submission.submitter, submission.request
    expected = expected_per_server(request, submitter, ledger)
    outcomes = wire.run_job_all(request, identity=submitter)
    for outcome, prediction in zip(outcomes, expected, strict=True):
        assert outcome.code in DOCUMENTED | {OK}, f"undocumented status: {outcome}"
        assert outcome.code in prediction.codes, (
            f"expected {sorted(c.name for c in prediction.codes)}; got {describe(outcomes)} "
            f"for {request} submitted by {submitter}"
        )
        check_words(outcome, prediction)
    if {o.code for o in outcomes} != {OK}:
        return
    shape = expected[0].shape
    for outcome in outcomes:
        assert tuple(outcome.response.output.shape) == shape, describe(outcomes)
    job_id = request.job.job_id
    if (submitter, job_id) not in ledger.jobs:
        ledger.ran(Kept(submitter, expected[0].key, request.job.receiver, shape, request))
    if request.return_output and request.job.receiver == submitter:
        assert all(o.response.HasField("output_share") for o in outcomes)
        result = reconstruct(outcomes)
        np.testing.assert_array_equal(result, plaintext(request))
    else:
        assert not any(o.response.HasField("output_share") for o in outcomes), (
            "a share went to a non-receiver"
        )


BAD_FETCH_IDS = st.one_of(st.sampled_from(BAD_IDS), INVALID_TEXT)


def _no_output(job_id: str, identity: str) -> str:
    """The one answer to a fetch of an output that is missing, released, or someone else's."""
    return f"no output of job {job_id} for {identity} (never computed, released or expired)"


@FUZZ
@given(data=st.data())
def test_random_fetches_get_their_documented_code(wire: Wire, ledger: Ledger, data: st.DataObject) -> None:
    choice = data.draw(st.sampled_from(["kept", "kept", "kept", "unknown", "bad"]))
    pick = data.draw(st.integers(0, 1 << 16))
    kept: Kept | None = None
    if choice == "kept" and ledger.jobs:
        kept = ledger.jobs[_pick(ledger, pick)]
        job_id = kept.request.job.job_id
    elif choice == "bad":
        job_id = data.draw(BAD_FETCH_IDS)
    else:
        job_id = f"fz-{secrets.token_hex(6)}"
    # Mostly the receiver asking (the fuzzer most often), naming the submitter or not.
    receiver = kept.receiver if kept is not None and kept.receiver in IDENTITIES else FUZZER
    identity = data.draw(st.sampled_from([receiver, receiver, FUZZER, OWNER, BANK]))
    named = kept.submitter if kept else FUZZER
    submitter = data.draw(st.sampled_from(["", "", named, named, FUZZER, OWNER, BANK, "a/b"]))
    server = data.draw(st.integers(0, 2))
    request = pb.FetchOutputRequest(
        job_id=job_id,
        submitter=submitter,
        second_as_digest=data.draw(st.booleans()),
        release=data.draw(st.booleans()),
    )
    found = ledger.jobs.get((submitter or identity, job_id))
    if NAME.fullmatch(job_id) is None or (submitter and NAME.fullmatch(submitter) is None):
        allowed = {IA}
    elif found is None or found.receiver != identity or server in found.released_on:
        allowed = {NF}
    else:
        allowed = {OK}
    outcome = wire.fetch(server, request, identity=identity)
    assert outcome.code in DOCUMENTED | {OK}, f"undocumented status: {outcome}"
    assert outcome.code in allowed, f"expected {sorted(c.name for c in allowed)}, got {outcome}"
    if outcome.code is NF:
        assert outcome.details == _no_output(job_id, identity), str(outcome)
    if outcome.code is not OK:
        return
    assert found is not None
    header, *rest = outcome.responses
    assert header.WhichOneof("item") == "header" and tuple(header.header.shape) == found.shape
    chunks = [r for r in rest if r.WhichOneof("item") == "chunk"]
    assert sum(len(c.chunk.first) for c in chunks) == 16 * math.prod(found.shape)
    digests = [r for r in rest if r.WhichOneof("item") == "second_digest"]
    assert len(digests) == (1 if request.second_as_digest else 0)
    if request.release:
        ledger.released(found, server)


def test_the_cluster_survives_job_fuzzing(wire: Wire, ledger: Ledger, healthy: Callable[[], None]) -> None:
    assert ledger.jobs, "the fuzzer never produced a valid job; the strategies are off"
    submitters = {s for s, _ in ledger.jobs}
    assert len(submitters) > 1, f"only {submitters} ever submitted a valid job; the strategies are off"
    healthy()


# -- the table -----------------------------------------------------------------


def _spec(**fields: object) -> pb.RunJobRequest:
    base: dict[str, object] = {
        "job_id": f"t-{secrets.token_hex(6)}",
        "program": DOT,
        "inputs": [_input("x", (FUZZER, "v3a")), _input("y", (FUZZER, "v3b"))],
        "receiver": FUZZER,
    }
    base.update(fields)
    return pb.RunJobRequest(job=pb.JobSpec(**base))  # type: ignore[arg-type]


def _xy(x: str, y: str) -> list[pb.JobInput]:
    return [_input("x", x), _input("y", y)]


JOB_TABLE: list[tuple[str, pb.RunJobRequest, str, grpc.StatusCode]] = [
    ("empty job id", _spec(job_id=""), FUZZER, IA),
    ("job id of 129 characters", _spec(job_id="j" * 129), FUZZER, IA),
    ("job id with a slash", _spec(job_id="a/b"), FUZZER, IA),
    ("job id '..'", _spec(job_id=".."), FUZZER, IA),
    ("path traversal job id", _spec(job_id="../../outputs/x"), FUZZER, IA),
    ("unicode job id", _spec(job_id="jöb"), FUZZER, IA),
    ("empty receiver", _spec(receiver=""), FUZZER, IA),
    ("receiver with a slash", _spec(receiver="bank-1/x"), FUZZER, IA),
    ("empty program", _spec(program=""), FUZZER, IA),
    ("unknown program", _spec(program="logistic_regression.train"), FUZZER, IA),
    ("program name of 20000 characters", _spec(program="p" * 20000), FUZZER, IA),
    ("unknown role", _spec(inputs=[_input("x", (FUZZER, "v3a")), _input("z", (FUZZER, "v3b"))]), FUZZER, IA),
    ("input without a dataset", _spec(inputs=[_input("x", (FUZZER, "v3a")), _input("y", None)]), FUZZER, IA),
    (
        "dataset owner with a slash",
        _spec(inputs=[_input("x", ("a/b", "v3a")), _input("y", (FUZZER, "v3b"))]),
        FUZZER,
        IA,
    ),
    (
        "dataset name '..'",
        _spec(inputs=[_input("x", (FUZZER, "..")), _input("y", (FUZZER, "v3b"))]),
        FUZZER,
        IA,
    ),
    (
        "a role given twice",
        _spec(inputs=[_input("x", (FUZZER, "v3a"))] * 2 + [_input("y", (FUZZER, "v3b"))]),
        FUZZER,
        IA,
    ),
    ("a role missing", _spec(inputs=[_input("x", (FUZZER, "v3a"))]), FUZZER, IA),
    ("no inputs at all", _spec(inputs=[]), FUZZER, IA),
    (
        "65 feature blocks",
        _spec(
            program=LR,
            inputs=[_input("features", (FUZZER, "v3a"))] * 65 + [_input("weights", (FUZZER, "w1"))],
        ),
        FUZZER,
        IA,
    ),
    ("inputs of different shapes", _spec(inputs=_xy("fuzzer/v3a", "fuzzer/v4")), FUZZER, IA),
    (
        "weights not matching the features",
        _spec(program=LR, inputs=[_input("features", (FUZZER, "m32")), _input("weights", (FUZZER, "w3"))]),
        FUZZER,
        IA,
    ),
    ("missing dataset", _spec(inputs=_xy("fuzzer/v3a", "fuzzer/missing")), FUZZER, NF),
    ("another owner's missing dataset", _spec(inputs=_xy("fuzzer/v3a", "model-owner/missing")), FUZZER, NF),
    (
        "another owner's dataset without a grant",
        _spec(inputs=_xy("model-owner/private", "fuzzer/v3b")),
        FUZZER,
        NF,
    ),
    (
        "another owner's dataset granted to others only",
        _spec(inputs=_xy("fuzzer/v3a", "bank-1/hidden")),
        FUZZER,
        NF,
    ),
    ("own dataset without a grant", _spec(inputs=_xy("fuzzer/nogrant", "fuzzer/v3b")), FUZZER, PD),
    ("receiver without a grant", _spec(receiver="nobody"), FUZZER, PD),
    (
        "another owner's data with an own-data grant",
        _spec(inputs=_xy("model-owner/shared", "fuzzer/v3b")),
        FUZZER,
        PD,
    ),
    ("read access on both sides", _spec(inputs=_xy("model-owner/shared", "fuzzer/open3")), FUZZER, OK),
    ("a pinned job", _spec(inputs=_xy("bank-1/income", "fuzzer/pin-w")), FUZZER, OK),
    (
        "a pinned job in another order",
        _spec(inputs=[_input("y", "fuzzer/pin-w"), _input("x", "bank-1/income")]),
        FUZZER,
        PD,
    ),
    ("a pinned job with roles swapped", _spec(inputs=_xy("fuzzer/pin-w", "bank-1/income")), FUZZER, PD),
    ("a pinned job with another input", _spec(inputs=_xy("bank-1/income", "fuzzer/v3a")), FUZZER, PD),
    ("a pinned version that was replaced", _spec(inputs=_xy("bank-1/stale", "fuzzer/replaced")), FUZZER, PD),
    (
        "a pinned job submitted by one of its owners, not the receiver",
        _spec(inputs=_xy("bank-1/income", "fuzzer/pin-w")),
        BANK,
        NF,
    ),
    (
        "a grant's receiver submitting where the grant names other submitters",
        _spec(inputs=_xy("model-owner/for-bank", "model-owner/for-bank"), receiver=OWNER),
        OWNER,
        PD,
    ),
    (
        "a named submitter for the grant's receiver",
        _spec(inputs=_xy("model-owner/for-bank", "model-owner/for-bank"), receiver=OWNER),
        BANK,
        OK,
    ),
    (
        "a named submitter for another receiver",
        _spec(inputs=_xy("model-owner/to-bank", "model-owner/to-bank"), receiver=BANK),
        FUZZER,
        OK,
    ),
    (
        "an outsider for the grant's receiver",
        _spec(inputs=_xy("fuzzer/mo-only", "fuzzer/mo-only"), receiver=OWNER),
        BANK,
        NF,
    ),
    (
        "the owner submitting for a receiver that submits itself",
        _spec(inputs=_xy("fuzzer/mo-only", "fuzzer/mo-only"), receiver=OWNER),
        FUZZER,
        PD,
    ),
    (
        "the dataset in a role its grant does not allow",
        _spec(inputs=_xy("fuzzer/v3a", "fuzzer/x-only")),
        FUZZER,
        PD,
    ),
    ("the dataset in its role and another", _spec(inputs=_xy("fuzzer/x-only", "fuzzer/x-only")), FUZZER, PD),
    (
        "the dataset in the role its grant allows",
        _spec(inputs=_xy("fuzzer/x-only", "fuzzer/v3a")),
        FUZZER,
        OK,
    ),
    ("an expired grant", _spec(inputs=_xy("fuzzer/expired", "fuzzer/expired")), FUZZER, PD),
    (
        "invisible before visible-but-refused",
        _spec(inputs=_xy("fuzzer/nogrant", "model-owner/private")),
        FUZZER,
        NF,
    ),
    (
        "the datasets' owner, whose grants name others only",
        _spec(inputs=_xy("bank-1/income", "bank-1/income")),
        BANK,
        PD,
    ),
]


@pytest.mark.parametrize(
    ("request_", "submitter", "code"),
    [(r, s, c) for _, r, s, c in JOB_TABLE],
    ids=[t[0] for t in JOB_TABLE],
)
def test_each_job_class_gets_its_code(
    wire: Wire, ledger: Ledger, request_: pb.RunJobRequest, submitter: str, code: grpc.StatusCode
) -> None:
    prediction = predict(request_, submitter, ledger)
    assert prediction.code is code, (
        f"the oracle predicts {prediction.code.name}: the pool or the oracle is off"
    )
    outcomes = wire.run_job_all(request_, identity=submitter)
    assert [o.code for o in outcomes] == [code] * 3, describe(outcomes)
    for outcome in outcomes:
        check_words(outcome, prediction)
    assert all(len(o.details) < 2000 for o in outcomes), "the refusal echoes unbounded client input"
    if code is OK:
        _record(ledger, request_, submitter)


def test_an_invisible_dataset_is_answered_like_a_missing_one(wire: Wire, ledger: Ledger) -> None:
    """Not a word more: a stranger cannot tell a private dataset from one that does not exist."""
    answers = {}
    for name in ("private", "missing"):
        outcomes = wire.run_job_all(_spec(inputs=_xy(f"model-owner/{name}", "fuzzer/v3b")))
        assert [o.code for o in outcomes] == [NF] * 3, describe(outcomes)
        answers[name] = {o.details.replace(name, "NAME") for o in outcomes}
    assert answers["private"] == answers["missing"] == {"dataset model-owner/NAME not found"}


def _record(ledger: Ledger, request: pb.RunJobRequest, submitter: str) -> None:
    """Enter a job the test ran in the ledger (the fuzzers may meet its output)."""
    prediction = predict(request, submitter, ledger)
    assert prediction.code is OK, prediction
    ledger.ran(Kept(submitter, prediction.key, request.job.receiver, prediction.shape, request))


def test_a_used_job_id_with_another_spec_is_already_exists(wire: Wire, ledger: Ledger) -> None:
    request = _spec()
    assert [o.code for o in wire.run_job_all(request)] == [OK] * 3
    _record(ledger, request, FUZZER)
    again = _spec(job_id=request.job.job_id, inputs=_xy("fuzzer/v3a", "fuzzer/v3a"))
    outcomes = wire.run_job_all(again)
    assert [o.code for o in outcomes] == [AE] * 3, describe(outcomes)
    # The inputs listed in another order is another job too (x and y swapped).
    swapped = _spec(
        job_id=request.job.job_id, inputs=[_input("y", (FUZZER, "v3a")), _input("x", (FUZZER, "v3b"))]
    )
    outcomes = wire.run_job_all(swapped)
    assert [o.code for o in outcomes] == [AE] * 3, describe(outcomes)


def test_job_ids_are_scoped_by_submitter(wire: Wire, ledger: Ledger) -> None:
    """Another client's job under the same id is its own job, with its own output."""
    mine = _spec(receiver=FUZZER, inputs=_xy("fuzzer/v3a", "fuzzer/v3a"))
    job_id = mine.job.job_id
    theirs = _spec(job_id=job_id, receiver=BANK, inputs=_xy("model-owner/to-bank", "model-owner/to-bank"))
    assert [o.code for o in wire.run_job_all(mine)] == [OK] * 3
    outcomes = wire.run_job_all(theirs, identity=FUZZER)
    assert [o.code for o in outcomes] == [AE] * 3, describe(outcomes)  # the fuzzer's id is used
    other = _spec(job_id=job_id, receiver=OWNER, inputs=_xy("model-owner/for-bank", "model-owner/for-bank"))
    outcomes = wire.run_job_all(other, identity=BANK)
    assert [o.code for o in outcomes] == [OK] * 3, describe(outcomes)  # bank-1's is not
    _record(ledger, mine, FUZZER)
    _record(ledger, other, BANK)
    asked = ((FUZZER, ""), (FUZZER, FUZZER), (OWNER, BANK), (OWNER, ""), (FUZZER, BANK), (BANK, BANK))
    answers = {
        (identity, submitter): wire.fetch(
            0, pb.FetchOutputRequest(job_id=job_id, submitter=submitter), identity=identity
        ).code
        for identity, submitter in asked
    }
    # Each receiver gets the output of the job it receives, named by its submitter; nobody else does.
    assert answers == {
        (FUZZER, ""): OK,
        (FUZZER, FUZZER): OK,
        (OWNER, BANK): OK,
        (OWNER, ""): NF,
        (FUZZER, BANK): NF,
        (BANK, BANK): NF,
    }


FETCH_TABLE: list[tuple[str, str, str, grpc.StatusCode]] = [
    ("unknown job", "never-ran-here", "", NF),
    ("unknown job of another submitter", "never-ran-here", BANK, NF),
    ("empty job id", "", "", IA),
    ("path traversal job id", "../../datasets/fuzzer/v3a", "", IA),
    ("job id of 20000 characters", "j" * 20000, "", IA),
    ("submitter with a slash", "never-ran-here", "bank-1/x", IA),
    ("path traversal submitter", "never-ran-here", "../fuzzer", IA),
]


@pytest.mark.parametrize(
    ("job_id", "submitter", "code"),
    [(j, s, c) for _, j, s, c in FETCH_TABLE],
    ids=[t[0] for t in FETCH_TABLE],
)
def test_each_malformed_fetch_class_gets_its_code(
    wire: Wire, job_id: str, submitter: str, code: grpc.StatusCode
) -> None:
    request = pb.FetchOutputRequest(job_id=job_id, submitter=submitter, second_as_digest=True)
    outcome = wire.fetch(0, request)
    assert outcome.code == code, str(outcome)


def test_someone_elses_output_is_not_found(wire: Wire, ledger: Ledger) -> None:
    """The fuzzer submits for the model owner: it cannot fetch (or release) the output it caused."""
    request = _spec(receiver=OWNER, inputs=_xy("fuzzer/v3a", "fuzzer/v3a"))
    job_id = request.job.job_id
    assert [o.code for o in wire.run_job_all(request)] == [OK] * 3
    _record(ledger, request, FUZZER)
    missing = wire.fetch(0, pb.FetchOutputRequest(job_id=f"{job_id}-never"))
    for server in range(3):
        outcome = wire.fetch(server, pb.FetchOutputRequest(job_id=job_id, release=True))
        assert outcome.code == NF, str(outcome)
        assert outcome.details == missing.details.replace(f"{job_id}-never", job_id), "a different answer"
    # The refused release did not delete it: the receiver still gets it, naming the submitter.
    outcome = wire.fetch(0, pb.FetchOutputRequest(job_id=job_id, submitter=FUZZER), identity=OWNER)
    assert outcome.code == OK, str(outcome)
    outcome = wire.fetch(0, pb.FetchOutputRequest(job_id=job_id), identity=OWNER)
    assert outcome.code == NF, f"the receiver's own job {job_id} does not exist: {outcome}"


def test_a_retry_of_the_job_that_spent_a_grants_last_use_gets_its_result(wire: Wire, ledger: Ledger) -> None:
    """A retry (same submitter, id and spec) returns the recorded result; only new jobs need a use."""
    name = f"once-{secrets.token_hex(4)}"
    wire.sdk.upload(name, [1.0, 2.0], grants=[Grant(FUZZER, DOT, max_uses=1)])
    request = _spec(inputs=_xy(f"fuzzer/{name}", f"fuzzer/{name}"))
    outcomes = wire.run_job_all(request)
    assert [o.code for o in outcomes] == [OK] * 3, describe(outcomes)
    outcomes = wire.run_job_all(request)
    assert [o.code for o in outcomes] == [OK] * 3, f"the retry was refused: {describe(outcomes)}"
    another = _spec(inputs=_xy(f"fuzzer/{name}", f"fuzzer/{name}"))
    outcomes = wire.run_job_all(another)
    assert [o.code for o in outcomes] == [PD] * 3, describe(outcomes)
    assert all("uses are spent" in o.details for o in outcomes), describe(outcomes)


# -- quotas --------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_quota(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A cluster keeping at most two outputs per submitter on each server."""
    local = LocalCluster(
        tmp_path_factory.mktemp("quota-cluster"),
        clients=(FUZZER, OWNER),
        server_args=("--client-outputs", "2"),
    )
    local.start()
    yield local
    local.stop()


def test_a_job_over_its_submitters_quota_is_refused_before_it_runs(small_quota: LocalCluster) -> None:
    """Kept outputs count against the submitter's quota; nothing is evicted; a release frees room."""
    job = {"x": "q", "y": "q"}
    with small_quota.client(FUZZER) as fuzzer, small_quota.client(OWNER) as owner:
        fuzzer.upload("q", [1.0, 2.0], grants=[Grant(FUZZER, DOT), Grant(FUZZER, DOT, submitters=(OWNER,))])
        first, second = fuzzer.run(DOT, job), fuzzer.run(DOT, job)
        with pytest.raises(ResourceLimitError, match="quota"):
            fuzzer.run(DOT, job, job_id="over-quota")
        assert "over-quota" not in {r.job_id for r in fuzzer.jobs().items}, "the refused job ran"
        # Nothing was evicted to make room.
        assert float(fuzzer.fetch(first)) == float(fuzzer.fetch(second)) == 5.0
        # Another submitter's jobs count against its own quota, whoever receives them.
        theirs = owner.run(DOT, {"x": "fuzzer/q", "y": "fuzzer/q"}, receiver=FUZZER)
        assert float(fuzzer.fetch(theirs, release=True)) == 5.0
        # Fetching with release frees the quota; the refused id was never used.
        fuzzer.fetch(first, release=True)
        again = fuzzer.run(DOT, job, job_id="over-quota")
        assert float(fuzzer.fetch(again, release=True)) == 5.0
