"""``dot``: the dot product ``<x, y>`` over all elements, one round, one element.

Roles: ``x`` and ``y``, one dataset each, of equal shape. Output: a scalar
at the natural scale ``f_x + f_y`` unless the job asks for another.

Bound: ``|<x, y>| <= n * 2^(m_x + m_y)`` for ``n`` elements. Cost: one round,
one ring element per server whatever ``n`` (ABY3 eprint 2018/403 §5).
"""

from __future__ import annotations

from mpc_core.ring import Ring, RingArray
from mpc_core.sharing import ReplicatedShare
from mpc_server.protocol import arithmetic
from mpc_server.protocol.context import PartyContext
from mpc_server.service.programs import row_chunks
from mpc_server.service.programs.base import (
    BoundInputs,
    PlanInputs,
    ProgramPlan,
    RoleSpec,
    finish_plan,
    magnitude,
    same_shape,
    single,
    single_share,
)
from mpc_server.service.programs.params import Params, ParamSpec


class Dot:
    """``<x, y>`` over all elements; one round, one element."""

    name = "dot"
    summary = "the dot product <x, y> over all elements"
    roles: tuple[RoleSpec, ...] = (RoleSpec("x"), RoleSpec("y"))
    parameters: tuple[ParamSpec, ...] = ()
    outputs: tuple[str, ...] = ("value",)
    streamed_roles: tuple[str, ...] = ("x", "y")
    sums_rows = True

    def plan(self, ring: Ring, inputs: PlanInputs, params: Params, output_bits: int | None) -> ProgramPlan:
        """Both inputs must have the same shape; the sum must fit the ring."""
        x, y = single(inputs, "x"), single(inputs, "y")
        same_shape(x, y)
        bound = x.size * magnitude(x) * magnitude(y)
        natural = x.fractional_bits + y.fractional_bits
        what = f"the dot product of {x.ref} and {y.ref}"
        return finish_plan(ring, (), natural, bound, output_bits=output_bits, what=what, name="value")

    async def run(
        self, ctx: PartyContext, inputs: BoundInputs, plan: ProgramPlan
    ) -> dict[str, ReplicatedShare]:
        """A dot product with one reshare (ABY3 §5); the rows' terms summed locally (``row_chunks``)."""
        return {"value": await row_chunks.run_whole(ctx, self, inputs, plan)}

    def chunk_terms(self, inputs: BoundInputs, plan: ProgramPlan) -> RingArray:
        """Party i's one-element term of the dot product over the rows in ``inputs`` (local, blocking)."""
        return arithmetic.dot_terms(single_share(inputs, "x").share, single_share(inputs, "y").share)
