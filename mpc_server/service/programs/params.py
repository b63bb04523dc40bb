"""Public parameters of a job: declared by the program, typed, checked, part of the digest.

A program lists its parameters as :class:`ParamSpec` (name, type, range,
default). A job gives values by name (``JobSpec.parameters``);
:func:`resolve` checks them against the program and fills in the defaults,
so every server works with the same complete, typed set. Grants may fix
parameters to exact values (``Grant.parameters``): they are compared with
the resolved set, so a grant fixing ``l2 = 0.0`` also matches a job that
leaves ``l2`` at its default of 0.0.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mpc_core.errors import InvalidArgumentError
from mpc_core.identity import shown

ParamValue = float | int | bool
"""A parameter's value: a number (float), an integer (int) or a flag (bool)."""
Params = Mapping[str, ParamValue]
MAX_PARAMETERS = 32


class ParamType(enum.Enum):
    """The three types of public parameters, as on the wire (``JobParameter``'s oneof)."""

    NUMBER = "number"
    INTEGER = "integer"
    FLAG = "flag"


_ARTICLE = {ParamType.NUMBER: "a number", ParamType.INTEGER: "an integer", ParamType.FLAG: "a flag"}


def type_of(value: ParamValue) -> ParamType:
    """The type a Python value stands for (bool before int: ``True`` is an int too)."""
    if isinstance(value, bool):
        return ParamType.FLAG
    if isinstance(value, int):
        return ParamType.INTEGER
    return ParamType.NUMBER


@dataclass(frozen=True)
class ParamSpec:
    """One parameter a program takes."""

    name: str
    type: ParamType
    summary: str
    default: ParamValue | None = None
    """The value when the job gives none; None: the job must give one."""
    minimum: float | None = None
    maximum: float | None = None

    def check(self, value: ParamValue, program: str) -> ParamValue:
        """``value`` if it has this parameter's type and range, else a refusal naming both.

        An integer given for a number is read as that number (``l2 = 1`` means 1.0).
        """
        if self.type is ParamType.NUMBER and type_of(value) is ParamType.INTEGER:
            value = float(value)
        if type_of(value) is not self.type:
            raise InvalidArgumentError(
                f"parameter {self.name} of {program} is {_ARTICLE[self.type]}, got {_ARTICLE[type_of(value)]}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidArgumentError(f"parameter {self.name} of {program} must be finite")
        if self.minimum is not None and value < self.minimum:
            raise InvalidArgumentError(
                f"parameter {self.name} of {program} must be at least {self.minimum:g}"
            )
        if self.maximum is not None and value > self.maximum:
            raise InvalidArgumentError(f"parameter {self.name} of {program} must be at most {self.maximum:g}")
        return value


def resolve(specs: Sequence[ParamSpec], given: Sequence[tuple[str, ParamValue]], program: str) -> Params:
    """The job's complete parameters: ``given`` checked against ``specs``, defaults filled in.

    Raises:
        InvalidArgumentError: an unknown or repeated name, a wrong type or
            range, or a required parameter missing.
    """
    if len(given) > MAX_PARAMETERS:
        raise InvalidArgumentError(f"a job takes at most {MAX_PARAMETERS} parameters")
    by_name = {spec.name: spec for spec in specs}
    values: dict[str, ParamValue] = {}
    for name, value in given:
        spec = by_name.get(name)
        if spec is None:
            known = ", ".join(by_name) or "none"
            raise InvalidArgumentError(
                f"program {program} has no parameter {shown(name)} (parameters: {known})"
            )
        if name in values:
            raise InvalidArgumentError(f"parameter {name} is given twice")
        values[name] = spec.check(value, program)
    for spec in specs:
        if spec.name not in values:
            if spec.default is None:
                raise InvalidArgumentError(f"program {program} needs the parameter {spec.name}")
            values[spec.name] = spec.default
    return {spec.name: values[spec.name] for spec in specs}


def params_to_json(params: Params) -> list[list[object]]:
    """Parameters as JSON with their types (digests, audit records, grant files)."""
    return [[name, type_of(value).value, value] for name, value in sorted(params.items())]


def params_from_json(data: Sequence[Sequence[object]]) -> dict[str, ParamValue]:
    """The inverse of :func:`params_to_json`."""
    values: dict[str, ParamValue] = {}
    for name, kind, value in data:
        kinds = {ParamType.NUMBER.value: float, ParamType.INTEGER.value: int, ParamType.FLAG.value: bool}
        values[str(name)] = kinds[str(kind)](value)
    return values
