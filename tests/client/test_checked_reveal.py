"""The client's checked reconstruction of output shares (no servers needed)."""

from __future__ import annotations

import numpy as np
import pytest

from mpc_client import OutputIntegrityError
from mpc_client._fetch import OutputPart, reconstruct_output
from mpc_core.sharing import ReplicatedShare, share


def _parts(secret: np.ndarray, shape: tuple[int, ...], bits: int = 0) -> list[OutputPart]:
    # Each server sends its own copies: no arrays shared between parts.
    return [
        OutputPart(f"server-{i}", shape, bits, ReplicatedShare(s.first.copy(), s.second.copy()))
        for i, s in enumerate(share(secret))
    ]


def test_consistent_parts_reconstruct_and_decode() -> None:
    parts = _parts(np.array([1 << 16, 3 << 15, (-2 << 16) % (1 << 64)], dtype=np.uint64), (3,), 16)
    assert reconstruct_output(parts).tolist() == [1.0, 1.5, -2.0]


@pytest.mark.parametrize("component", [0, 1, 2])
def test_a_tampered_copy_names_both_holders(component: int) -> None:
    parts = _parts(np.array([5, 6, 7], dtype=np.uint64), (3,))
    holder = (component - 1) % 3  # holds component j as its second
    parts[holder].share.second[1] ^= np.uint64(1)
    with pytest.raises(OutputIntegrityError) as caught:
        reconstruct_output(parts)
    assert set(caught.value.servers) == {f"server-{holder}", f"server-{component}"}


def test_disagreeing_shapes_are_an_integrity_error() -> None:
    parts = _parts(np.array([5, 6], dtype=np.uint64), (2,))
    parts[2] = OutputPart("server-2", (2, 1), 0, parts[2].share)
    with pytest.raises(OutputIntegrityError, match="shapes"):
        reconstruct_output(parts)
