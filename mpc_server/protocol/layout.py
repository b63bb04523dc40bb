"""Local (message-free) helpers for shared row-major matrices: sizes, public constants, column blocks.

A shared m x n matrix is a :class:`~mpc_core.sharing.ReplicatedShare` of its
``m*n`` entries in row-major order. A public constant is shared as component
0 (held by parties 0 and 2), as ``arithmetic.add_public`` does for scalars.
These helpers only rearrange or add components; they never communicate.
"""

from __future__ import annotations

import numpy as np

from mpc_core.errors import InvalidArgumentError
from mpc_core.ring import Ring, RingArray
from mpc_core.sharing import ReplicatedShare
from mpc_core.types import PartyId
from mpc_server.protocol import arithmetic


def require_size(x: ReplicatedShare, size: int, what: str) -> None:
    """Refuse a share whose length is not ``size``."""
    if x.size != size:
        raise InvalidArgumentError(f"{what} must have {size} elements, got {x.size}")


def public_share(party: PartyId, values: RingArray) -> ReplicatedShare:
    """This party's share of public ``values``: component 0 holds them (parties 0 and 2), the others 0."""
    flat = values.reshape(-1)
    zeros = np.zeros_like(flat)
    if party == 0:
        return ReplicatedShare(flat.copy(), zeros)
    if party == 2:
        return ReplicatedShare(zeros, flat.copy())
    return ReplicatedShare(zeros, zeros.copy())


def add_public_values(party: PartyId, x: ReplicatedShare, values: RingArray) -> ReplicatedShare:
    """Share of ``x + values`` for public ``values`` of the same length (local)."""
    return arithmetic.add(x, public_share(party, values))


def scaled_identity(ring: Ring, d: int, value: int) -> RingArray:
    """The public ``value * I`` (d x d, flattened)."""
    diagonal = [value if i % (d + 1) == 0 else 0 for i in range(d * d)]
    return ring.from_ints(diagonal)


def join_array_columns(left: RingArray, right: RingArray, rows: int) -> RingArray:
    """``[L | R]`` (flattened) of row-major L (rows x l) and R (rows x r)."""
    return np.concatenate([left.reshape(rows, -1), right.reshape(rows, -1)], axis=1).reshape(-1)


def split_array_columns(x: RingArray, rows: int, at: int) -> tuple[RingArray, RingArray]:
    """``X[:, :at]`` and ``X[:, at:]`` (flattened, contiguous) of a row-major X with ``rows`` rows."""
    matrix = x.reshape(rows, -1)
    return np.ascontiguousarray(matrix[:, :at]).reshape(-1), np.ascontiguousarray(matrix[:, at:]).reshape(-1)


def join_columns(left: ReplicatedShare, right: ReplicatedShare, rows: int) -> ReplicatedShare:
    """Share of ``[L | R]`` from shares of L (rows x l) and R (rows x r)."""
    return ReplicatedShare(
        join_array_columns(left.first, right.first, rows), join_array_columns(left.second, right.second, rows)
    )


def split_columns(x: ReplicatedShare, rows: int, at: int) -> tuple[ReplicatedShare, ReplicatedShare]:
    """Shares of ``X[:, :at]`` and ``X[:, at:]`` of a shared X with ``rows`` rows."""
    first, second = split_array_columns(x.first, rows, at), split_array_columns(x.second, rows, at)
    return ReplicatedShare(first[0], second[0]), ReplicatedShare(first[1], second[1])
