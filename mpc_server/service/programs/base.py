"""What every program shares: roles, parameters, outputs, the plan, and the final rescale.

A program declares the roles its inputs play, its public parameters
(``programs.params``) and its named outputs; it checks the inputs' shapes,
scales and bounds before any communication (:meth:`Program.plan`) and
computes on shares (:meth:`Program.run`, one share per output). ``plan``
returns a :class:`ProgramPlan` with, for each output, its shape, its
*natural* scale (the scale the computation produces, e.g. ``f_x + f_w`` for
a product, exact) and an exact integer bound on its encoded magnitude;
:func:`plan_output` then decides how to reach the scale the job asked for:

* the natural scale, or none requested: nothing more (exact);
* a higher scale: multiply by the public ``2^d`` (local, exact);
* a lower scale: ABY3 share truncation I by ``d`` bits (one round), allowed
  only when its failure probability on the bounds is at most 2^-40
  (``mpc_core.bounds``).

Every step checks that the bound stays inside the ring's signed range, so a
job whose output could wrap around is refused before it starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from mpc_core import bounds
from mpc_core.errors import InvalidArgumentError
from mpc_core.fixed_point import max_fractional_bits
from mpc_core.ring import Ring
from mpc_core.sharing import ReplicatedShare
from mpc_server.protocol import arithmetic
from mpc_server.protocol.context import PartyContext
from mpc_server.protocol.truncation import truncate
from mpc_server.service.model import DatasetSummary, OutputInfo, StoredDataset
from mpc_server.service.programs.params import Params, ParamSpec

PlanInputs = Mapping[str, tuple[DatasetSummary, ...]]
"""The datasets of a job as planned (summaries, no shares), grouped by role, in job order."""
BoundInputs = Mapping[str, tuple[StoredDataset, ...]]
"""The datasets of a job with this server's shares, grouped by role, in the order the job listed them."""


@dataclass(frozen=True)
class RoleSpec:
    """How many datasets a role takes."""

    name: str
    min_count: int = 1
    max_count: int = 1
    rows: bool = True
    """The datasets are rows of the job's table (joined on keys, or matched by position);
    False for inputs such as a model's weights."""


@dataclass(frozen=True)
class OutputPlan:
    """One output of a checked job, and how to get from its natural scale to the one asked for."""

    info: OutputInfo
    """Name, shape, ring, scale and bound of the output as delivered or kept."""
    natural_bits: int
    """The scale the program's computation produces."""
    truncate_bits: int = 0
    """Bits to truncate the natural result by (ABY3 share truncation I)."""
    lift_bits: int = 0
    """Bits to lift the natural result by (multiply by 2^lift_bits)."""

    @property
    def name(self) -> str:
        """The program's name for the output."""
        return self.info.name


@dataclass(frozen=True)
class ProgramPlan:
    """A checked job: its outputs, in the program's order, and the program's own decisions."""

    outputs: tuple[OutputPlan, ...]
    details: Mapping[str, Any] = field(default_factory=dict)
    """Program-specific decisions made while planning (e.g. per-block scale lifts)."""
    params: Params = field(default_factory=dict)
    """The job's complete public parameters."""

    @property
    def first(self) -> OutputPlan:
        """The program's first output (the only one of most programs)."""
        return self.outputs[0]

    def output(self, name: str) -> OutputPlan:
        """The output named ``name``."""
        for output in self.outputs:
            if output.name == name:
                return output
        raise KeyError(name)


class Program(Protocol):
    """A named computation over shared inputs."""

    name: str
    summary: str
    roles: tuple[RoleSpec, ...]
    parameters: tuple[ParamSpec, ...]
    outputs: tuple[str, ...]

    def plan(self, ring: Ring, inputs: PlanInputs, params: Params, output_bits: int | None) -> ProgramPlan:
        """Check the inputs; return the outputs and the rescales to reach ``output_bits``."""
        ...

    async def run(
        self, ctx: PartyContext, inputs: BoundInputs, plan: ProgramPlan
    ) -> Mapping[str, ReplicatedShare]:
        """Compute this party's share of every output at its natural scale."""
        ...


def single(inputs: PlanInputs, role: str) -> DatasetSummary:
    """The one dataset of ``role``."""
    return inputs[role][0]


def single_share(inputs: BoundInputs, role: str) -> StoredDataset:
    """The one dataset of ``role``, with its share."""
    return inputs[role][0]


def magnitude(dataset: DatasetSummary) -> int:
    """The exact bound ``2^m`` on the dataset's encoded elements, or a refusal."""
    if dataset.magnitude_bits is None:
        raise InvalidArgumentError(
            f"dataset {dataset.ref} has no magnitude bound (it was stored before bounds existed); "
            "upload it again"
        )
    return 1 << dataset.magnitude_bits


def same_shape(x: DatasetSummary, y: DatasetSummary) -> None:
    """Refuse inputs of different shapes, naming both (not the shapes: they may be another owner's)."""
    if x.shape != y.shape:
        raise InvalidArgumentError(f"inputs {x.ref} and {y.ref} differ in shape")


def element_count(shape: tuple[int, ...]) -> int:
    """Elements of an array of ``shape``."""
    count = 1
    for dim in shape:
        count *= dim
    return count


def finish_plan(
    ring: Ring,
    shape: tuple[int, ...],
    natural_bits: int,
    bound: int,
    *,
    output_bits: int | None,
    what: str,
    name: str,
    details: Mapping[str, Any] | None = None,
    params: Params | None = None,
) -> ProgramPlan:
    """The plan of a program with one output (see :func:`plan_output`)."""
    output = plan_output(ring, name, shape, natural_bits, bound, output_bits=output_bits, what=what)
    return ProgramPlan((output,), dict(details or {}), dict(params or {}))


def plan_output(
    ring: Ring,
    name: str,
    shape: tuple[int, ...],
    natural_bits: int,
    bound: int,
    *,
    output_bits: int | None,
    what: str,
) -> OutputPlan:
    """Check the natural result's bound and plan the rescale to ``output_bits``.

    Raises:
        InvalidArgumentError: the result, or the lifted one, could leave the
            ring's signed range; the requested scale is out of range; or the
            truncation could fail with probability above 2^-40.
    """
    bounds.require_fits(ring, bound, natural_bits, what)
    target = natural_bits if output_bits is None else output_bits
    if not 0 <= target <= max_fractional_bits(ring):
        raise InvalidArgumentError(
            f"output_fractional_bits must be within 0..{max_fractional_bits(ring)} in {ring.name}, "
            f"got {target}"
        )
    count = element_count(shape)
    if target > natural_bits:
        lifted = bound << (target - natural_bits)
        bounds.require_fits(ring, lifted, target, f"{what}, lifted to scale 2^{target}")
        info = OutputInfo(shape, target, ring.bits, bounds.bound_bits(lifted), name=name)
        return OutputPlan(info, natural_bits, lift_bits=target - natural_bits)
    if target < natural_bits:
        failure = bounds.require_truncation_safe(ring, count, bound, natural_bits, what)
        shrunk = (bound >> (natural_bits - target)) + 2  # truncation is off by at most one
        info = OutputInfo(shape, target, ring.bits, bounds.bound_bits(shrunk), failure, name=name)
        return OutputPlan(info, natural_bits, truncate_bits=natural_bits - target)
    info = OutputInfo(shape, natural_bits, ring.bits, bounds.bound_bits(bound), name=name)
    return OutputPlan(info, natural_bits)


async def rescale(ctx: PartyContext, share: ReplicatedShare, plan: OutputPlan) -> ReplicatedShare:
    """Bring a natural-scale result to the output's planned scale (see :func:`plan_output`)."""
    if plan.truncate_bits:
        return await truncate(ctx, share, plan.truncate_bits)
    if plan.lift_bits:
        return arithmetic.mul_public(share, 1 << plan.lift_bits)
    return share
