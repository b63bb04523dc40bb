"""``elementwise.multiply``: ``x * y`` elementwise, one round.

Roles: ``x`` and ``y``, one dataset each, of equal shape, from any owners.
Output: the products, shape of the inputs, at the natural scale
``f_x + f_y`` (exact) unless the job asks for another.

Bound: ``|x * y| <= 2^(m_x + m_y)`` elementwise, on the encoded integers.
Cost: one round; one ring element per product per server (Araki et al.,
CCS 2016; ABY3 §3), in pipelined pieces above 2^20 products; rows beyond
the job's memory budget are streamed from storage (``row_chunks``).
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


class ElementwiseMultiply:
    """``x * y`` elementwise; one round."""

    name = "elementwise.multiply"
    summary = "x * y elementwise"
    roles: tuple[RoleSpec, ...] = (RoleSpec("x"), RoleSpec("y"))
    parameters: tuple[ParamSpec, ...] = ()
    outputs: tuple[str, ...] = ("product",)
    row_outputs: tuple[str, ...] = ("product",)
    streamed_roles: tuple[str, ...] = ("x", "y")
    sums_rows = False

    def plan(self, ring: Ring, inputs: PlanInputs, params: Params, output_bits: int | None) -> ProgramPlan:
        """Both inputs must have the same shape; the products must fit the ring."""
        x, y = single(inputs, "x"), single(inputs, "y")
        same_shape(x, y)
        bound = magnitude(x) * magnitude(y)
        natural = x.fractional_bits + y.fractional_bits
        what = f"the products of {x.ref} and {y.ref}"
        return finish_plan(ring, x.shape, natural, bound, output_bits=output_bits, what=what, name="product")

    async def run(
        self, ctx: PartyContext, inputs: BoundInputs, plan: ProgramPlan
    ) -> dict[str, ReplicatedShare]:
        """One multiplication (Araki et al. / ABY3 §3), reshared in pieces of rows (``row_chunks``)."""
        return {"product": await row_chunks.run_whole(ctx, self, inputs, plan)}

    def chunk_terms(self, inputs: BoundInputs, plan: ProgramPlan) -> RingArray:
        """Party i's product terms of the rows in ``inputs`` (local, blocking)."""
        return arithmetic.mul_terms(single_share(inputs, "x").share, single_share(inputs, "y").share)
