"""Public job parameters: typed, ranged, defaulted, and the same JSON on every server."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpc_core.errors import InvalidArgumentError
from mpc_server.service.programs.params import (
    ParamSpec,
    ParamType,
    params_from_json,
    params_to_json,
    resolve,
    type_of,
)

SPECS = (
    ParamSpec("l2", ParamType.NUMBER, "ridge strength", default=0.0, minimum=0.0),
    ParamSpec("iterations", ParamType.INTEGER, "solver steps", default=0, minimum=0, maximum=30),
    ParamSpec("fit_intercept", ParamType.FLAG, "fit c too", default=True),
    ParamSpec("threshold", ParamType.NUMBER, "decision threshold"),
)


def test_defaults_are_filled_in_and_the_order_is_the_programs() -> None:
    resolved = resolve(SPECS, [("threshold", 0.5), ("l2", 2.0)], "p")
    assert list(resolved.items()) == [
        ("l2", 2.0),
        ("iterations", 0),
        ("fit_intercept", True),
        ("threshold", 0.5),
    ]


def test_an_integer_is_read_as_a_number_but_not_the_other_way() -> None:
    resolved = resolve(SPECS, [("threshold", 1)], "p")
    assert resolved["threshold"] == 1.0 and type_of(resolved["threshold"]) is ParamType.NUMBER
    with pytest.raises(InvalidArgumentError, match="iterations of p is an integer, got a number"):
        resolve(SPECS, [("threshold", 1.0), ("iterations", 3.0)], "p")
    with pytest.raises(InvalidArgumentError, match="fit_intercept of p is a flag, got an integer"):
        resolve(SPECS, [("threshold", 1.0), ("fit_intercept", 1)], "p")


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ([], "needs the parameter threshold"),
        ([("threshold", 0.0), ("alpha", 1.0)], "has no parameter 'alpha'"),
        ([("threshold", 0.0), ("threshold", 1.0)], "given twice"),
        ([("threshold", 0.0), ("l2", -1.0)], "must be at least 0"),
        ([("threshold", 0.0), ("iterations", 31)], "must be at most 30"),
        ([("threshold", float("nan"))], "must be finite"),
        ([("threshold", float("inf"))], "must be finite"),
        ([(f"p{i}", 0.0) for i in range(33)], "at most 32 parameters"),
    ],
)
def test_bad_parameters_are_refused_by_name(given: list[tuple[str, float]], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        resolve(SPECS, given, "p")


values = st.one_of(
    st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False)
)


@given(st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), values, max_size=6))
def test_parameters_survive_their_json_form_with_their_types(params: dict[str, float | int | bool]) -> None:
    back = params_from_json(params_to_json(params))
    assert back == params
    assert {k: type_of(v) for k, v in back.items()} == {k: type_of(v) for k, v in params.items()}
