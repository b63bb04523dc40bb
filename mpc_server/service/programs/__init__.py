"""The programs a job can run, each a small composition of protocols in its own module.

* ``linear_regression.predict`` (:mod:`.linear_regression`): ``y = X w + c``
  with the columns of ``X`` from any number of owners;
* ``elementwise.multiply`` (:mod:`.elementwise`): ``x * y`` elementwise;
* ``dot`` (:mod:`.dot`): ``<x, y>``.

What every program shares (roles, the plan with its bound and scale
analysis, the final rescale) is in :mod:`.base`.
"""

from __future__ import annotations

from mpc_server.service.programs.base import (
    BoundInputs,
    OutputPlan,
    PlanInputs,
    Program,
    ProgramPlan,
    RoleSpec,
    rescale,
)
from mpc_server.service.programs.decide import LinearRegressionDecide
from mpc_server.service.programs.dot import Dot
from mpc_server.service.programs.elementwise import ElementwiseMultiply
from mpc_server.service.programs.linear_fit import LinearRegressionFit
from mpc_server.service.programs.linear_regression import LinearRegressionPredict
from mpc_server.service.programs.logistic import LogisticRegressionFit, LogisticRegressionPredict
from mpc_server.service.programs.params import Params, ParamSpec, ParamType, ParamValue, resolve
from mpc_server.service.programs.stats import StatsSummary


def default_programs() -> dict[str, Program]:
    """The programs every server offers, by name."""
    programs: list[Program] = [
        LinearRegressionPredict(),
        ElementwiseMultiply(),
        Dot(),
        StatsSummary(),
        LinearRegressionFit(),
        LinearRegressionDecide(),
        LogisticRegressionFit(),
        LogisticRegressionPredict(),
    ]
    return {program.name: program for program in programs}


__all__ = [
    "BoundInputs",
    "OutputPlan",
    "ParamSpec",
    "ParamType",
    "ParamValue",
    "Params",
    "PlanInputs",
    "Program",
    "ProgramPlan",
    "RoleSpec",
    "default_programs",
    "rescale",
    "resolve",
]
