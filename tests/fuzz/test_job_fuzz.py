"""RunJob and FetchOutput under hostile input, checked against a model of the contract.

The module uploads a fixed set of datasets (known values, shapes and
grants), then fuzzes job descriptions sent to all three servers at once,
as a client would: random and bad job ids, programs, roles, dataset
references and receivers, duplicate job ids with the same or another spec,
and ``return_output``. The oracle computes which refusals each job deserves
(and, for a valid job, its exact result); fetches are fuzzed against the
outputs the valid jobs left behind, including released ones.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpc_client import Grant
from mpc_core.fixed_point import FixedPoint
from mpc_core.ring import RING64, RING128
from mpc_proto.v1 import client_service_pb2 as pb
from mpc_proto.v1 import types_pb2

from .conftest import AE, DOCUMENTED, FUZZER, IA, NAME, NF, OK, PD, Outcome, Wire, describe

pytestmark = pytest.mark.e2e
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MUL, DOT, LR = "elementwise.multiply", "dot", "linear_regression.predict"
ROLES = {MUL: {"x": (1, 1), "y": (1, 1)}, DOT: {"x": (1, 1), "y": (1, 1)}}
ROLES[LR] = {"features": (1, 64), "weights": (1, 1), "intercept": (0, 1)}
OWNER = "model-owner"


@dataclass(frozen=True)
class Data:
    owner: str
    name: str
    values: np.ndarray
    grants: frozenset[tuple[str, str]]

    @property
    def ref(self) -> str:
        return f"{self.owner}/{self.name}"


def _all(*receivers: str) -> frozenset[tuple[str, str]]:
    return frozenset((r, p) for r in receivers for p in (MUL, DOT, LR))


_rng = np.random.default_rng(7)  # test data only; quarters are exact in fixed point


def _values(*shape: int) -> np.ndarray:
    return _rng.integers(-400, 400, size=shape) / 4


DATASETS = {
    d.ref: d
    for d in (
        Data(FUZZER, "v3a", _values(3), _all(FUZZER, OWNER)),
        Data(FUZZER, "v3b", _values(3), _all(FUZZER)),
        Data(FUZZER, "v4", _values(4), _all(FUZZER)),
        Data(FUZZER, "m32", _values(3, 2), _all(FUZZER)),
        Data(FUZZER, "w1", _values(1), _all(FUZZER)),
        Data(FUZZER, "w2", _values(2), _all(FUZZER)),
        Data(FUZZER, "w3", _values(3), _all(FUZZER)),
        Data(FUZZER, "c", np.array(12.25), _all(FUZZER, OWNER)),
        Data(FUZZER, "mo-only", _values(3), frozenset({(OWNER, MUL), (OWNER, DOT)})),
        Data(FUZZER, "nogrant", _values(3), frozenset()),
        Data(OWNER, "shared", _values(3), frozenset({(FUZZER, DOT), (FUZZER, MUL)})),
        Data(OWNER, "private", _values(3), frozenset()),
    )
}
MISSING = (f"{FUZZER}/missing", f"{OWNER}/missing")
BAD_REFS = (("", "x"), (FUZZER, ""), ("a/b", "x"), (FUZZER, ".."), (FUZZER, "../v3a"), (FUZZER, "ä"))
BAD_IDS = ("", "j" * 129, "a/b", "..", "../../tmp/x", ".x", "-x", "jöb", "a b", "a\x00b")
INVALID_TEXT = st.text(max_size=40).filter(lambda s: NAME.fullmatch(s) is None)
"""Random job ids that are never valid: a refused valid id would stay poisoned (see
tests/security/test_job_ids.py), which is tested on its own."""


@dataclass
class Kept:
    """A job that ran: what the servers should keep and replay."""

    key: tuple[object, ...]
    receiver: str
    shape: tuple[int, ...]
    request: pb.RunJobRequest
    released_on: set[int] = field(default_factory=set)


@dataclass
class Ledger:
    jobs: dict[str, Kept] = field(default_factory=dict)


# -- the oracle ----------------------------------------------------------------


def _feature_columns(shape: tuple[int, ...]) -> tuple[int, int] | None:
    if len(shape) == 1:
        return shape[0], 1
    if len(shape) == 2:
        return shape[0], shape[1]
    return None


def _shape_faults(program: str, bound: dict[str, list[Data]]) -> tuple[set[grpc.StatusCode], tuple[int, ...]]:
    if program in (MUL, DOT):
        x, y = bound["x"][0], bound["y"][0]
        if x.values.shape != y.values.shape:
            return {IA}, ()
        return set(), (x.values.shape if program == MUL else ())
    blocks = [_feature_columns(d.values.shape) for d in bound["features"]]
    if None in blocks or len({b[0] for b in blocks if b}) != 1:
        return {IA}, ()
    columns = sum(b[1] for b in blocks if b)
    if bound["weights"][0].values.shape != (columns,):
        return {IA}, ()
    if any(d.values.shape not in ((), (1,)) for d in bound["intercept"]):
        return {IA}, ()
    rows = blocks[0][0] if blocks[0] else 0
    return set(), (rows,)


def plan(request: pb.RunJobRequest) -> tuple[set[grpc.StatusCode], tuple[object, ...], tuple[int, ...]]:
    """(refusals the job deserves, canonical description, output shape)."""
    spec = request.job
    faults: set[grpc.StatusCode] = set()
    if NAME.fullmatch(spec.job_id) is None or NAME.fullmatch(spec.receiver) is None:
        faults.add(IA)
    for item in spec.inputs:
        if not item.HasField("dataset") or not all(
            NAME.fullmatch(part) for part in (item.dataset.owner, item.dataset.name)
        ):
            faults.add(IA)
    if faults:
        return faults, (), ()
    roles = ROLES.get(spec.program)
    if roles is None:
        return {IA}, (), ()
    bound: dict[str, list[Data]] = {role: [] for role in roles}
    for item in spec.inputs:
        ref = f"{item.dataset.owner}/{item.dataset.name}"
        if item.role not in roles:
            faults.add(IA)
        elif ref not in DATASETS:
            faults.add(NF)
        else:
            bound[item.role].append(DATASETS[ref])
    if faults:
        return faults, (), ()
    if any(not lo <= len(bound[role]) <= hi for role, (lo, hi) in roles.items()):
        return {IA}, (), ()
    if any((spec.receiver, spec.program) not in d.grants for ds in bound.values() for d in ds):
        return {PD}, (), ()
    faults, shape = _shape_faults(spec.program, bound)
    key = (spec.program, spec.receiver, tuple((r, tuple(d.ref for d in bound[r])) for r in sorted(roles)))
    return faults, key, shape


def plaintext(request: pb.RunJobRequest) -> np.ndarray:
    spec = request.job
    by_role: dict[str, list[np.ndarray]] = {}
    for item in spec.inputs:
        by_role.setdefault(item.role, []).append(DATASETS[f"{item.dataset.owner}/{item.dataset.name}"].values)
    if spec.program == MUL:
        return by_role["x"][0] * by_role["y"][0]
    if spec.program == DOT:
        return np.asarray(float(np.sum(by_role["x"][0] * by_role["y"][0])))
    features = np.column_stack([f.reshape(f.shape[0], -1) for f in by_role["features"]])
    result = features @ by_role["weights"][0]
    for intercept in by_role.get("intercept", []):
        result = result + float(intercept.reshape(-1)[0])
    return result


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


def _input(role: str, ref: tuple[str, str] | None) -> pb.JobInput:
    if ref is None:
        return pb.JobInput(role=role)
    return pb.JobInput(role=role, dataset=types_pb2.DatasetRef(owner=ref[0], name=ref[1]))


def _by_shape() -> dict[tuple[int, ...], list[tuple[str, str]]]:
    groups: dict[tuple[int, ...], list[tuple[str, str]]] = {}
    for data in DATASETS.values():
        groups.setdefault(data.values.shape, []).append((data.owner, data.name))
    return groups


SAME_SHAPE = _by_shape()
COLUMNS = [(d.owner, d.name) for d in DATASETS.values() if d.values.ndim in (1, 2) and d.values.shape[0] == 3]
WEIGHTS = {1: (FUZZER, "w1"), 2: (FUZZER, "w2"), 3: (FUZZER, "w3")}


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


def _pick(ledger: Ledger, index: int) -> str:
    return sorted(ledger.jobs)[index % len(ledger.jobs)]


@st.composite
def job_requests(draw: st.DrawFn, ledger: Ledger) -> pb.RunJobRequest:
    # Every draw happens whatever the ledger holds (hypothesis replays draws);
    # ``pick`` chooses among the jobs that ran.
    replay, pick = draw(st.integers(0, 5)) == 0, draw(st.integers(0, 1 << 16))
    mode = draw(st.sampled_from(["fresh"] * 6 + ["bad", "reuse"]))
    bad_id = draw(st.one_of(st.sampled_from(BAD_IDS), INVALID_TEXT))
    program = _weighted(
        draw,
        st.sampled_from([MUL, DOT, LR]),
        st.sampled_from(["", "dot ", "DOT", "x"]) | st.text(max_size=30),
    )
    plausible = draw(plausible_inputs(program if program in ROLES else DOT))
    arbitrary = [_input(r, ref) for r, ref in draw(st.lists(st.tuples(roles, refs), max_size=4))]
    use_plausible = program in ROLES and draw(st.integers(0, 5)) > 0
    edit, edit_at, edited = (
        draw(st.integers(0, 6)) == 0,
        draw(st.integers(0, 1 << 16)),
        draw(st.tuples(roles, refs)),
    )
    receiver = _weighted(draw, st.sampled_from([FUZZER] * 4 + [OWNER, "nobody"]), st.sampled_from(BAD_IDS))
    return_output = draw(st.booleans())

    if replay and ledger.jobs:  # a job that ran, exactly
        request = pb.RunJobRequest()
        request.CopyFrom(ledger.jobs[_pick(ledger, pick)].request)
        request.return_output = return_output
        return request
    if mode == "reuse" and ledger.jobs:
        job_id = _pick(ledger, pick)
    elif mode == "bad":
        job_id = bad_id
    else:
        job_id = f"fz-{secrets.token_hex(6)}"
    inputs = plausible if use_plausible else arbitrary
    if edit and inputs:  # one hostile edit of the spec
        inputs[edit_at % len(inputs)] = _input(*edited)
    spec = pb.JobSpec(job_id=job_id, program=program, inputs=inputs, receiver=receiver)
    return pb.RunJobRequest(job=spec, return_output=return_output)


# -- fixtures ------------------------------------------------------------------


@pytest.fixture(scope="module")
def ledger(wire: Wire) -> Ledger:
    """Upload the pool (as its owners) and start an empty ledger of jobs."""
    for data in DATASETS.values():
        grants = [Grant(r, p) for r, p in sorted(data.grants)]
        with wire.cluster.client(data.owner) as client:
            client.upload(data.name, data.values, grants=grants, overwrite=True)
    return Ledger()


def _expected_per_server(
    request: pb.RunJobRequest, ledger: Ledger
) -> tuple[list[set[grpc.StatusCode]], tuple[int, ...]]:
    faults, key, shape = plan(request)
    if faults:
        return [faults] * 3, shape
    kept = ledger.jobs.get(request.job.job_id)
    if kept is not None and kept.key != key:
        return [{AE}] * 3, shape
    expected = []
    for server in range(3):
        inline = request.return_output and request.job.receiver == FUZZER
        expected.append({NF} if kept is not None and inline and server in kept.released_on else {OK})
    return expected, shape


# -- fuzzing -------------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_random_jobs_get_their_documented_code_or_the_exact_result(
    wire: Wire, ledger: Ledger, data: st.DataObject
) -> None:
    request = data.draw(job_requests(ledger))
    expected, shape = _expected_per_server(request, ledger)
    outcomes = wire.run_job_all(request)
    for outcome, allowed in zip(outcomes, expected, strict=True):
        assert outcome.code in DOCUMENTED | {OK}, f"undocumented status: {outcome}"
        assert outcome.code in allowed, (
            f"expected {sorted(c.name for c in allowed)}; got {describe(outcomes)} for {request}"
        )
    if expected != [{OK}] * 3:
        return
    for outcome in outcomes:
        assert tuple(outcome.response.output.shape) == shape, describe(outcomes)
    job_id = request.job.job_id
    if job_id not in ledger.jobs:
        key = plan(request)[1]
        ledger.jobs[job_id] = Kept(key, request.job.receiver, shape, request)
    if request.return_output and request.job.receiver == FUZZER:
        assert all(o.response.HasField("output_share") for o in outcomes)
        result = reconstruct(outcomes)
        np.testing.assert_array_equal(result, plaintext(request))


BAD_FETCH_IDS = st.one_of(st.sampled_from(BAD_IDS), INVALID_TEXT)


@FUZZ
@given(data=st.data())
def test_random_fetches_get_their_documented_code(wire: Wire, ledger: Ledger, data: st.DataObject) -> None:
    choice = data.draw(st.sampled_from(["kept", "kept", "unknown", "bad"]))
    pick = data.draw(st.integers(0, 1 << 16))
    kept: Kept | None = None
    if choice == "kept" and ledger.jobs:
        job_id = _pick(ledger, pick)
        kept = ledger.jobs[job_id]
    elif choice == "bad":
        job_id = data.draw(BAD_FETCH_IDS)
    else:
        job_id = f"fz-{secrets.token_hex(6)}"
    identity = data.draw(st.sampled_from([FUZZER, FUZZER, OWNER]))
    server = data.draw(st.integers(0, 2))
    request = pb.FetchOutputRequest(
        job_id=job_id, second_as_digest=data.draw(st.booleans()), release=data.draw(st.booleans())
    )
    if kept is None:
        allowed = {NF} if NAME.fullmatch(job_id) else {IA, NF}  # the table insists on IA
    elif server in kept.released_on:
        allowed = {NF}
    else:
        allowed = {OK} if identity == kept.receiver else {PD}
    outcome = wire.fetch(server, request, identity=identity)
    assert outcome.code in DOCUMENTED | {OK}, f"undocumented status: {outcome}"
    assert outcome.code in allowed, f"expected {sorted(c.name for c in allowed)}, got {outcome}"
    if outcome.code is not OK or kept is None:
        return
    header, *rest = outcome.responses
    assert header.WhichOneof("item") == "header" and tuple(header.header.shape) == kept.shape
    chunks = [r for r in rest if r.WhichOneof("item") == "chunk"]
    assert sum(len(c.chunk.first) for c in chunks) == 16 * math.prod(kept.shape)
    digests = [r for r in rest if r.WhichOneof("item") == "second_digest"]
    assert len(digests) == (1 if request.second_as_digest else 0)
    if request.release:
        kept.released_on.add(server)


def test_the_cluster_survives_job_fuzzing(wire: Wire, ledger: Ledger, healthy) -> None:
    assert ledger.jobs, "the fuzzer never produced a valid job; the strategies are off"
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


JOB_TABLE: list[tuple[str, pb.RunJobRequest, grpc.StatusCode]] = [
    ("empty job id", _spec(job_id=""), IA),
    ("job id of 129 characters", _spec(job_id="j" * 129), IA),
    ("job id with a slash", _spec(job_id="a/b"), IA),
    ("job id '..'", _spec(job_id=".."), IA),
    ("path traversal job id", _spec(job_id="../../outputs/x"), IA),
    ("unicode job id", _spec(job_id="jöb"), IA),
    ("empty receiver", _spec(receiver=""), IA),
    ("receiver with a slash", _spec(receiver="bank-1/x"), IA),
    ("empty program", _spec(program=""), IA),
    ("unknown program", _spec(program="logistic_regression.train"), IA),
    ("program name of 20000 characters", _spec(program="p" * 20000), IA),
    ("unknown role", _spec(inputs=[_input("x", (FUZZER, "v3a")), _input("z", (FUZZER, "v3b"))]), IA),
    ("input without a dataset", _spec(inputs=[_input("x", (FUZZER, "v3a")), _input("y", None)]), IA),
    (
        "dataset owner with a slash",
        _spec(inputs=[_input("x", ("a/b", "v3a")), _input("y", (FUZZER, "v3b"))]),
        IA,
    ),
    ("dataset name '..'", _spec(inputs=[_input("x", (FUZZER, "..")), _input("y", (FUZZER, "v3b"))]), IA),
    (
        "a role given twice",
        _spec(inputs=[_input("x", (FUZZER, "v3a"))] * 2 + [_input("y", (FUZZER, "v3b"))]),
        IA,
    ),
    ("a role missing", _spec(inputs=[_input("x", (FUZZER, "v3a"))]), IA),
    ("no inputs at all", _spec(inputs=[]), IA),
    (
        "65 feature blocks",
        _spec(
            program=LR,
            inputs=[_input("features", (FUZZER, "v3a"))] * 65 + [_input("weights", (FUZZER, "w1"))],
        ),
        IA,
    ),
    (
        "inputs of different shapes",
        _spec(inputs=[_input("x", (FUZZER, "v3a")), _input("y", (FUZZER, "v4"))]),
        IA,
    ),
    (
        "weights not matching the features",
        _spec(program=LR, inputs=[_input("features", (FUZZER, "m32")), _input("weights", (FUZZER, "w3"))]),
        IA,
    ),
    ("missing dataset", _spec(inputs=[_input("x", (FUZZER, "v3a")), _input("y", (FUZZER, "missing"))]), NF),
    (
        "own dataset without a grant",
        _spec(inputs=[_input("x", (FUZZER, "nogrant")), _input("y", (FUZZER, "v3b"))]),
        PD,
    ),
    (
        "another owner's dataset without a grant",
        _spec(inputs=[_input("x", (OWNER, "private")), _input("y", (FUZZER, "v3b"))]),
        PD,
    ),
    ("receiver without a grant", _spec(receiver="nobody"), PD),
]


@pytest.mark.parametrize(
    ("request_", "code"), [(r, c) for _, r, c in JOB_TABLE], ids=[t[0] for t in JOB_TABLE]
)
def test_each_malformed_job_class_gets_its_code(
    wire: Wire, ledger: Ledger, request_: pb.RunJobRequest, code: grpc.StatusCode
) -> None:
    outcomes = wire.run_job_all(request_)
    assert [o.code for o in outcomes] == [code] * 3, describe(outcomes)
    assert all(len(o.details) < 2000 for o in outcomes), "the refusal echoes unbounded client input"


def test_a_used_job_id_with_another_spec_is_already_exists(wire: Wire, ledger: Ledger) -> None:
    request = _spec()
    assert [o.code for o in wire.run_job_all(request)] == [OK] * 3
    again = _spec(
        job_id=request.job.job_id, inputs=[_input("x", (FUZZER, "v3a")), _input("y", (FUZZER, "v3a"))]
    )
    outcomes = wire.run_job_all(again)
    assert [o.code for o in outcomes] == [AE] * 3, describe(outcomes)
    # The inputs listed in another order is another job too (x and y swapped).
    swapped = _spec(
        job_id=request.job.job_id, inputs=[_input("y", (FUZZER, "v3a")), _input("x", (FUZZER, "v3b"))]
    )
    outcomes = wire.run_job_all(swapped)
    assert [o.code for o in outcomes] == [AE] * 3, describe(outcomes)


FETCH_TABLE: list[tuple[str, str, grpc.StatusCode]] = [
    ("unknown job", "never-ran-here", NF),
    ("empty job id", "", IA),
    ("path traversal job id", "../../datasets/fuzzer/v3a", IA),
    ("job id of 20000 characters", "j" * 20000, IA),
]


@pytest.mark.parametrize(
    ("job_id", "code"), [(j, c) for _, j, c in FETCH_TABLE], ids=[t[0] for t in FETCH_TABLE]
)
def test_each_malformed_fetch_class_gets_its_code(wire: Wire, job_id: str, code: grpc.StatusCode) -> None:
    outcome = wire.fetch(0, pb.FetchOutputRequest(job_id=job_id, second_as_digest=True))
    assert outcome.code == code, str(outcome)


def test_someone_elses_output_is_permission_denied(wire: Wire, ledger: Ledger) -> None:
    request = _spec(receiver=OWNER, inputs=[_input("x", (FUZZER, "v3a")), _input("y", (FUZZER, "v3a"))])
    assert [o.code for o in wire.run_job_all(request)] == [OK] * 3
    for server in range(3):
        outcome = wire.fetch(server, pb.FetchOutputRequest(job_id=request.job.job_id, release=True))
        assert outcome.code == PD, str(outcome)
    # The refused release did not delete it: the receiver still gets it.
    outcome = wire.fetch(0, pb.FetchOutputRequest(job_id=request.job.job_id), identity=OWNER)
    assert outcome.code == OK, str(outcome)
