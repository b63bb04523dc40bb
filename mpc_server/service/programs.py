"""The programs a job can run, each a small composition of protocols.

A program declares the roles its inputs play, checks their shapes before any
communication (:meth:`Program.plan`), and computes on shares
(:meth:`Program.run`). Outputs are final: products are not truncated but
reported at scale ``2^(2f)`` (``OutputInfo.fractional_bits = 2f``), which
is exact and saves a round (reference/protocols.md §8).

* ``linear_regression.predict``: ``y = X w + c`` with the columns of ``X``
  from any number of owners (roles ``features``, in order), ``w`` (role
  ``weights``) and ``c`` (role ``intercept``, optional) from the model owner.
* ``elementwise.multiply``: ``x * y`` elementwise (roles ``x``, ``y``).
* ``dot``: ``<x, y>`` (roles ``x``, ``y``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from mpc_core.errors import InvalidArgumentError
from mpc_core.ring import RingArray
from mpc_core.sharing import ReplicatedShare
from mpc_server.protocol import arithmetic
from mpc_server.protocol.context import PartyContext
from mpc_server.service.model import OutputInfo, StoredDataset

BoundInputs = Mapping[str, tuple[StoredDataset, ...]]
"""The datasets of a job, grouped by role, in the order the job listed them."""

MAX_FEATURE_BLOCKS = 64


@dataclass(frozen=True)
class RoleSpec:
    """How many datasets a role takes."""

    name: str
    min_count: int = 1
    max_count: int = 1


class Program(Protocol):
    """A named computation over shared inputs."""

    name: str
    roles: tuple[RoleSpec, ...]

    def plan(self, inputs: BoundInputs) -> OutputInfo:
        """Check the inputs' shapes; return the output's shape and scale."""
        ...

    async def run(self, ctx: PartyContext, inputs: BoundInputs) -> ReplicatedShare:
        """Compute this party's share of the output."""
        ...


def _single(inputs: BoundInputs, role: str) -> StoredDataset:
    return inputs[role][0]


def _same_shape(x: StoredDataset, y: StoredDataset) -> None:
    if x.shape != y.shape:
        raise InvalidArgumentError(f"inputs {x.ref} and {y.ref} differ in shape: {x.shape} vs {y.shape}")


class ElementwiseMultiply:
    """``x * y`` elementwise; one round."""

    name = "elementwise.multiply"
    roles: tuple[RoleSpec, ...] = (RoleSpec("x"), RoleSpec("y"))

    def plan(self, inputs: BoundInputs) -> OutputInfo:
        """Both inputs must have the same shape."""
        x, y = _single(inputs, "x"), _single(inputs, "y")
        _same_shape(x, y)
        return OutputInfo(x.shape, x.fractional_bits + y.fractional_bits)

    async def run(self, ctx: PartyContext, inputs: BoundInputs) -> ReplicatedShare:
        """One multiplication (Araki et al. / ABY3 §3)."""
        return await arithmetic.mul(ctx, _single(inputs, "x").share, _single(inputs, "y").share)


class Dot:
    """``<x, y>`` over all elements; one round, one element."""

    name = "dot"
    roles: tuple[RoleSpec, ...] = (RoleSpec("x"), RoleSpec("y"))

    def plan(self, inputs: BoundInputs) -> OutputInfo:
        """Both inputs must have the same shape; the output is a scalar."""
        x, y = _single(inputs, "x"), _single(inputs, "y")
        _same_shape(x, y)
        return OutputInfo((), x.fractional_bits + y.fractional_bits)

    async def run(self, ctx: PartyContext, inputs: BoundInputs) -> ReplicatedShare:
        """A dot product with one reshare (ABY3 §5)."""
        return await arithmetic.dot(ctx, _single(inputs, "x").share, _single(inputs, "y").share)


def _feature_columns(dataset: StoredDataset) -> tuple[int, int]:
    """(rows, columns) of a feature block: a column (N,) or a matrix (N, d)."""
    if len(dataset.shape) == 1:
        return dataset.shape[0], 1
    if len(dataset.shape) == 2:
        return dataset.shape[0], dataset.shape[1]
    raise InvalidArgumentError(
        f"feature dataset {dataset.ref} must be a column (N,) or a matrix (N, d), not shape {dataset.shape}"
    )


class LinearRegressionPredict:
    """``y = X w + c`` for features split across owners; one round."""

    name = "linear_regression.predict"
    roles: tuple[RoleSpec, ...] = (
        RoleSpec("features", 1, MAX_FEATURE_BLOCKS),
        RoleSpec("weights"),
        RoleSpec("intercept", 0, 1),
    )

    def plan(self, inputs: BoundInputs) -> OutputInfo:
        """Rows agree across blocks; weights have one entry per column."""
        blocks = [_feature_columns(d) for d in inputs["features"]]
        rows = {r for r, _ in blocks}
        if len(rows) != 1:
            names = ", ".join(
                f"{d.ref} has {r}" for d, (r, _) in zip(inputs["features"], blocks, strict=True)
            )
            raise InvalidArgumentError(f"feature datasets differ in row count: {names}")
        columns = sum(c for _, c in blocks)
        weights = _single(inputs, "weights")
        if weights.shape != (columns,):
            raise InvalidArgumentError(
                f"weights {weights.ref} must have shape ({columns},) to match {columns} "
                f"feature columns, not {weights.shape}"
            )
        for intercept in inputs.get("intercept", ()):
            if intercept.shape not in ((), (1,)):
                raise InvalidArgumentError(
                    f"intercept {intercept.ref} must be a scalar, not shape {intercept.shape}"
                )
        bits = inputs["features"][0].fractional_bits + weights.fractional_bits
        return OutputInfo((rows.pop(),), bits)

    async def run(self, ctx: PartyContext, inputs: BoundInputs) -> ReplicatedShare:
        """ABY3 §5 matrix-vector product, fused across blocks, one reshare.

        1. For each feature block ``X^(k)`` with weight slice ``w^(k)``, add
           the local 3-out-of-3 term ``X^(k)_i (w^(k)_i + w^(k)_{i+1}) +
           X^(k)_{i+1} w^(k)_i`` (no communication).
        2. Add component ``c_i`` of the intercept, lifted to scale ``2^(2f)``
           by the public factor ``2^f``.
        3. Reshare the sum once (``arithmetic.reshare``).
        """
        tag = ctx.allocate_tag()
        size = sum(d.share.size for d in inputs["features"])
        terms = await ctx.compute(size, _linear_terms, inputs)
        return await arithmetic.reshare(ctx, terms, tag)


def _linear_terms(inputs: BoundInputs) -> RingArray:
    weights = _single(inputs, "weights").share
    terms: RingArray | None = None
    offset = 0
    for block in inputs["features"]:
        rows, cols = _feature_columns(block)
        w = ReplicatedShare(weights.first[offset : offset + cols], weights.second[offset : offset + cols])
        term = arithmetic.matvec_terms(
            block.share.first.reshape(rows, cols), block.share.second.reshape(rows, cols), w
        )
        terms = term if terms is None else terms + term
        offset += cols
    if terms is None:
        raise InvalidArgumentError("linear regression needs at least one feature block")
    for intercept in inputs.get("intercept", ()):
        terms += intercept.share.first * np.uint64(1 << intercept.fractional_bits)
    return terms


def default_programs() -> dict[str, Program]:
    """The programs every server offers, by name."""
    programs: list[Program] = [LinearRegressionPredict(), ElementwiseMultiply(), Dot()]
    return {program.name: program for program in programs}
