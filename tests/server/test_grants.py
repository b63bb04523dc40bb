"""The grant rules on their own: what each scope allows, and the book of grants and uses."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpc_core.errors import InvalidArgumentError, NotFoundError, ResourceLimitError
from mpc_server.service.grant_book import GrantBook
from mpc_server.service.grants import (
    Grant,
    GrantScope,
    JobView,
    PinnedInput,
    check_grants,
    grant_from_json,
    grant_to_json,
    legacy_grant_id,
)
from mpc_server.service.model import DatasetRef, DatasetSummary, JobInput

PREDICT = "linear_regression.predict"
INCOME, DEBT = DatasetRef("bank-1", "income"), DatasetRef("bank-2", "debt")
WEIGHTS, OTHER = DatasetRef("model-owner", "weights"), DatasetRef("model-owner", "other")
V1, V2 = b"\x01" * 16, b"\x02" * 16
VERSIONS = {INCOME: b"\x0a" * 16, DEBT: b"\x0b" * 16, WEIGHTS: V1, OTHER: V2}
SHOWCASE = (JobInput("features", INCOME), JobInput("features", DEBT), JobInput("weights", WEIGHTS))


def _grant(**options: object) -> Grant:
    options.setdefault("receiver", "model-owner")
    options.setdefault("program", PREDICT)
    return Grant(grant_id=secrets.token_bytes(16), **options)  # type: ignore[arg-type]


def _pinned(**options: object) -> Grant:
    pins = (
        PinnedInput("features", INCOME),
        PinnedInput("features", DEBT),
        PinnedInput("weights", WEIGHTS, V1),
    )
    return _grant(scope=GrantScope.PINNED, inputs=pins, role="features", **options)


def _job(inputs: tuple[JobInput, ...] = SHOWCASE, submitter: str = "model-owner", **changes: str) -> JobView:
    versions = dict(VERSIONS)
    if "weights_version" in changes:
        versions[WEIGHTS] = bytes.fromhex(changes["weights_version"])
    return JobView(
        submitter,
        changes.get("receiver", "model-owner"),
        changes.get("program", PREDICT),
        inputs,
        versions.get,
    )


def test_the_pinned_showcase_job_is_allowed() -> None:
    assert _pinned().refusal(_job(), INCOME, uses=0, now=0.0) is None


@pytest.mark.parametrize(
    ("job", "reason"),
    [
        (_job(weights_version=V2.hex()), "it pins model-owner/weights to a version that has been replaced"),
        (_job((*SHOWCASE[:2], JobInput("weights", OTHER))), "its inputs are pinned to"),
        (_job((SHOWCASE[0], JobInput("weights", WEIGHTS))), "its inputs are pinned to"),
        (_job((SHOWCASE[1], SHOWCASE[0], SHOWCASE[2])), "its inputs are pinned to"),
        (_job((JobInput("features", OTHER), JobInput("weights", INCOME))), "in the role 'features' only"),
        (_job(receiver="outsider"), "it allows model-owner outputs of"),
        (_job(program="dot"), "it allows model-owner outputs of"),
        (_job(submitter="outsider"), "may be submitted by model-owner only"),
    ],
)
def test_every_change_to_the_pinned_job_is_refused(job: JobView, reason: str) -> None:
    refusal = _pinned().refusal(job, INCOME, uses=0, now=0.0)
    assert refusal is not None and reason in refusal


def test_use_limits_and_expiry() -> None:
    limited = _pinned(max_uses=2, expires_at=100.0)
    assert limited.refusal(_job(), INCOME, uses=1, now=99.0) is None
    assert limited.refusal(_job(), INCOME, uses=2, now=0.0) == "its 2 uses are spent"
    assert limited.refusal(_job(), INCOME, uses=0, now=100.0) == "it has expired"


def test_own_data_refuses_any_other_owner_and_any_inputs_refuses_none() -> None:
    own = _grant(program="dot")
    mine = (JobInput("x", INCOME), JobInput("y", DatasetRef("bank-1", "other")))
    assert own.refusal(_job(mine, program="dot"), INCOME, 0, 0.0) is None
    mixed = (JobInput("x", INCOME), JobInput("y", WEIGHTS))
    assert "no other owner's data (the job names model-owner/weights)" in str(
        own.refusal(_job(mixed, program="dot"), INCOME, 0, 0.0)
    )
    anything = _grant(program="dot", scope=GrantScope.ANY_INPUTS)
    assert anything.refusal(_job(mixed, program="dot"), INCOME, 0, 0.0) is None


def test_submitters_widen_who_may_submit_but_not_who_receives() -> None:
    grant = _pinned(submitters=("bank-2", "model-owner"))
    assert grant.refusal(_job(submitter="bank-2"), INCOME, 0, 0.0) is None
    assert grant.names("bank-2") and grant.names("model-owner") and not grant.names("outsider")
    assert grant.refusal(_job(submitter="bank-2", receiver="bank-2"), INCOME, 0, 0.0) is not None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"scope": GrantScope.PINNED}, "exactly when its scope is pinned"),
        ({"inputs": (PinnedInput("x", INCOME),)}, "exactly when its scope is pinned"),
        ({"max_uses": -1}, "cannot be negative"),
        ({"receiver": "no spaces"}, "grant receiver"),
        ({"submitters": ("ok", "not ok")}, "grant submitter"),
        ({"submitters": tuple(f"s{i}" for i in range(65))}, "too many"),
    ],
)
def test_malformed_grants_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        _grant(**options)
    with pytest.raises(InvalidArgumentError, match="16 bytes"):
        Grant(b"short", "model-owner", PREDICT)


def test_check_grants_refuses_what_an_owner_cannot_give() -> None:
    programs = {PREDICT, "dot"}
    check_grants([_pinned()], programs, INCOME, max_grants=4)
    with pytest.raises(InvalidArgumentError, match="unknown program"):
        check_grants([_grant(program="nonsense")], programs, INCOME, 4)
    with pytest.raises(InvalidArgumentError, match=r"do not include bank-1/other"):
        check_grants([_pinned()], programs, DatasetRef("bank-1", "other"), 4)
    same = _grant()
    with pytest.raises(InvalidArgumentError, match="share one grant id"):
        check_grants([same, same], programs, INCOME, 4)
    with pytest.raises(ResourceLimitError, match="at most 1 grants"):
        check_grants([_grant(), _grant()], programs, INCOME, 1)


names = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)


@given(
    receiver=names,
    role=st.sampled_from(["", "x", "features"]),
    scope=st.sampled_from(list(GrantScope)),
    submitters=st.lists(names, max_size=3, unique=True),
    max_uses=st.integers(0, 2**31),
    expires_at=st.floats(0, 2e9, allow_nan=False),
    versions=st.lists(st.binary(min_size=16, max_size=16) | st.just(b""), min_size=1, max_size=3),
)
def test_grants_survive_their_json_form(
    receiver: str,
    role: str,
    scope: GrantScope,
    submitters: list[str],
    max_uses: int,
    expires_at: float,
    versions: list[bytes],
) -> None:
    pins = tuple(PinnedInput("x", DatasetRef("o", f"d{i}"), v) for i, v in enumerate(versions))
    grant = Grant(
        secrets.token_bytes(16),
        receiver,
        "dot",
        role,
        scope,
        pins if scope is GrantScope.PINNED else (),
        tuple(submitters),
        max_uses,
        expires_at,
    )
    assert grant_from_json(grant_to_json(grant), b"") == grant


def test_old_grant_pairs_are_read_as_own_data_grants_with_a_stable_id() -> None:
    upload_id = secrets.token_bytes(16)
    grant = grant_from_json(["model-owner", PREDICT], upload_id)
    assert grant.scope is GrantScope.OWN_DATA and grant.may_submit == ("model-owner",)
    assert grant.grant_id == legacy_grant_id(upload_id, "model-owner", PREDICT)
    assert grant_from_json(["model-owner", PREDICT], upload_id) == grant


def _dataset(upload_id: bytes, *grants: Grant) -> DatasetSummary:
    return DatasetSummary(INCOME, (3,), 128, 32, 40, upload_id, 0.0, grants)


def test_the_book_adds_revokes_and_keeps_grants_per_version(tmp_path: Path) -> None:
    initial = _pinned()
    version_1 = _dataset(V1, initial)
    book = GrantBook(tmp_path)
    assert book.grants(version_1) == (initial,)
    added = _grant(program="dot")
    book.add(version_1, added)
    book.revoke(version_1, initial.grant_id)
    with pytest.raises(NotFoundError, match="no grant"):
        book.revoke(version_1, initial.grant_id)
    book.save_durably(INCOME, book.snapshot(INCOME))
    assert GrantBook(tmp_path).grants(version_1) == (added,)  # after a restart
    version_2 = _dataset(V2, initial)  # a new upload starts from its own grants
    assert GrantBook(tmp_path).grants(version_2) == (initial,)


def test_uses_are_reserved_then_committed_or_released(tmp_path: Path) -> None:
    limited = _pinned(max_uses=1)
    dataset = _dataset(V1, limited)
    book = GrantBook(tmp_path)
    first = book.reserve([(dataset, limited)])
    assert book.uses(dataset, limited.grant_id) == 1  # a concurrent job sees the limit reached
    book.release(first)
    assert book.uses(dataset, limited.grant_id) == 0
    second = book.reserve([(dataset, limited)])
    assert book.commit(second) == [INCOME]  # a limited grant's use must be saved
    assert book.commit(second) == []  # committing twice spends nothing more
    book.save_durably(INCOME, book.snapshot(INCOME))
    reopened = GrantBook(tmp_path)
    assert reopened.spent(dataset, limited.grant_id) == 1 and reopened.uses(dataset, limited.grant_id) == 1


def test_a_forgotten_dataset_leaves_no_grant_file(tmp_path: Path) -> None:
    book = GrantBook(tmp_path)
    dataset = _dataset(V1, _pinned())
    book.add(dataset, _grant())
    book.save_durably(INCOME, book.snapshot(INCOME))
    assert (tmp_path / "grants" / "bank-1" / "income.json").exists()
    book.forget(INCOME)
    book.save_durably(INCOME, book.snapshot(INCOME))
    assert not (tmp_path / "grants" / "bank-1" / "income.json").exists()


def test_a_grant_fixing_a_number_with_an_integer_fixes_that_number() -> None:
    grant = _pinned(parameters=(("l2", 1),))
    view = JobView("model-owner", "model-owner", PREDICT, SHOWCASE, VERSIONS.get, {"l2": 1.0})
    assert grant.refusal(view, INCOME, 0, 0.0) is None
    other = JobView("model-owner", "model-owner", PREDICT, SHOWCASE, VERSIONS.get, {"l2": 2.0})
    assert grant.refusal(other, INCOME, 0, 0.0) == "it fixes the parameter l2 to 1"


def test_a_grant_may_fix_only_parameters_its_program_has() -> None:
    from mpc_server.service.programs import default_programs

    programs = default_programs()
    fixes_unknown = _grant(program="dot", parameters=(("no_such", 1),))
    with pytest.raises(InvalidArgumentError, match="fixes no_such, which dot has not"):
        check_grants([fixes_unknown], programs, INCOME, 4)


def test_a_pinned_grant_pins_the_columns_a_job_selects_too() -> None:
    """Selecting other columns of a pinned table is another job: refused (it would reveal them)."""
    table = DatasetRef("bank-1", "table")
    pins = (PinnedInput("features", table, columns=("a",)), PinnedInput("weights", WEIGHTS, V1))
    grant = _grant(scope=GrantScope.PINNED, inputs=pins, role="features")

    def job(*columns: str) -> JobView:
        inputs = (JobInput("features", table, columns), JobInput("weights", WEIGHTS))
        return JobView("model-owner", "model-owner", PREDICT, inputs, VERSIONS.get)

    assert grant.refusal(job("a"), table, 0, 0.0) is None
    for other in (("b",), ("b", "a"), ("a", "b"), ()):
        assert "pinned to features=bank-1/table#a" in str(grant.refusal(job(*other), table, 0, 0.0))
    unpinned = _grant(
        scope=GrantScope.PINNED, inputs=(PinnedInput("features", table), pins[1]), role="features"
    )
    assert (
        unpinned.refusal(job("b"), table, 0, 0.0) is not None
    )  # a grant without columns allows no selection
    assert grant_from_json(grant_to_json(grant), b"") == grant
