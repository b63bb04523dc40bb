"""Joining keyed datasets on their tokens: which rows of each dataset line up.

A keyed dataset's rows carry 16-byte join tokens (``mpc_core.oprf``: OPRF
outputs under an alignment's key, the same for the same customer at every
owner). Every server holds the same tokens of a dataset version (they are
part of the upload the three servers checked together), so every server
computes the same join here, locally and without messages:

1. for each dataset, sort its tokens (a dataset's tokens are distinct);
2. intersect them all (an inner join), in token order;
3. for each dataset, the index of each intersection token among its rows.

Programs then see each dataset's rows in intersection order (``select``).
The work is ``O(n log n)`` on numpy arrays of fixed-size byte strings; run
it off the event loop.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mpc_core.errors import InvalidArgumentError

TOKEN_BYTES = 16
Tokens = npt.NDArray[np.void]
"""One dataset's tokens: an array of ``np.dtype("V16")``, one per row."""


def tokens_from_bytes(data: bytes) -> Tokens:
    """Tokens from their wire/storage form (16 bytes each, concatenated)."""
    if len(data) % TOKEN_BYTES:
        raise InvalidArgumentError(f"tokens are {TOKEN_BYTES} bytes each")
    tokens: Tokens = np.frombuffer(data, dtype=f"V{TOKEN_BYTES}")
    return tokens


@dataclass(frozen=True, eq=False)
class Join:
    """The inner join of some keyed datasets: the common tokens in order, and each dataset's rows."""

    tokens: Tokens
    """The tokens of the joined rows, in ascending byte order."""
    rows: tuple[npt.NDArray[np.int64], ...]
    """For each dataset (in the order given), the row of each joined token."""

    @property
    def size(self) -> int:
        """Number of joined rows."""
        return len(self.tokens)

    def digest(self) -> bytes:
        """SHA-256 of the joined tokens (for logs and checks; equal on every server)."""
        return hashlib.sha256(self.tokens.tobytes()).digest()


def inner_join(datasets: Sequence[Tokens]) -> Join:
    """The rows every dataset has a token for, in token order (steps 1-3 of the module docstring).

    Raises:
        InvalidArgumentError: a dataset repeats a token (it would join twice).
    """
    if not datasets:
        raise InvalidArgumentError("a join needs at least one keyed dataset")
    orders = [np.argsort(tokens, kind="stable") for tokens in datasets]
    sorted_tokens = [tokens[order] for tokens, order in zip(datasets, orders, strict=True)]
    for position, tokens in enumerate(sorted_tokens):
        if len(tokens) > 1 and bool(np.any(tokens[1:] == tokens[:-1])):
            raise InvalidArgumentError(f"keyed input {position} repeats a token: its rows cannot be joined")
    common = sorted_tokens[0]
    for tokens in sorted_tokens[1:]:
        common = common[np.isin(common, tokens, assume_unique=True)]
    rows = tuple(
        order[np.searchsorted(tokens, common)].astype(np.int64)
        for tokens, order in zip(sorted_tokens, orders, strict=True)
    )
    return Join(common, rows)
