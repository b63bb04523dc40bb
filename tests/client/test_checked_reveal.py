"""The client's checked reconstruction of output shares (no servers needed)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from mpc_client import OutputIntegrityError
from mpc_client._fetch import OutputPart, reconstruct_output
from mpc_core.ring import to_wire
from mpc_core.sharing import share


def _parts(
    secret: np.ndarray, shape: tuple[int, ...], bits: int = 0, *, digest: bool = False
) -> list[OutputPart]:
    # Each server sends its own copies: no arrays shared between parts.
    parts = []
    for i, s in enumerate(share(secret)):
        first, second = s.first.copy(), s.second.copy()
        if digest:
            parts.append(
                OutputPart(
                    f"server-{i}",
                    shape,
                    bits,
                    first,
                    second_digest=hashlib.sha256(to_wire(second)).digest(),
                    first_digest=hashlib.sha256(to_wire(first)).digest(),
                )
            )
        else:
            parts.append(OutputPart(f"server-{i}", shape, bits, first, second))
    return parts


@pytest.mark.parametrize("digest", [False, True])
def test_consistent_parts_reconstruct_and_decode(digest: bool) -> None:
    secret = np.array([1 << 16, 3 << 15, (-2 << 16) % (1 << 64)], dtype=np.uint64)
    assert reconstruct_output(_parts(secret, (3,), 16, digest=digest)).tolist() == [1.0, 1.5, -2.0]


@pytest.mark.parametrize("component", [0, 1, 2])
def test_a_tampered_copy_names_both_holders(component: int) -> None:
    parts = _parts(np.array([5, 6, 7], dtype=np.uint64), (3,))
    holder = (component - 1) % 3  # holds component j as its second
    assert parts[holder].second is not None
    parts[holder].second[1] ^= np.uint64(1)
    with pytest.raises(OutputIntegrityError) as caught:
        reconstruct_output(parts)
    assert set(caught.value.servers) == {f"server-{holder}", f"server-{component}"}


@pytest.mark.parametrize("component", [0, 1, 2])
def test_a_tampered_first_copy_is_caught_by_the_digest(component: int) -> None:
    parts = _parts(np.array([5, 6, 7], dtype=np.uint64), (3,), digest=True)
    tampered = parts[component]
    tampered.first[0] ^= np.uint64(1 << 63)
    # The tampering server also recomputes its own digest: only the neighbour's copy catches it.
    parts[component] = OutputPart(
        tampered.server,
        tampered.shape,
        0,
        tampered.first,
        second_digest=tampered.second_digest,
        first_digest=hashlib.sha256(to_wire(tampered.first)).digest(),
    )
    with pytest.raises(OutputIntegrityError) as caught:
        reconstruct_output(parts)
    assert set(caught.value.servers) == {f"server-{(component - 1) % 3}", f"server-{component}"}


def test_disagreeing_shapes_are_an_integrity_error() -> None:
    parts = _parts(np.array([5, 6], dtype=np.uint64), (2,))
    other = parts[2]
    parts[2] = OutputPart("server-2", (2, 1), 0, other.first, other.second)
    with pytest.raises(OutputIntegrityError, match="shapes"):
        reconstruct_output(parts)


def test_parts_do_not_show_values() -> None:
    part = _parts(np.array([123456789], dtype=np.uint64), (1,))[0]
    assert "123456789" not in repr(part) and str(int(part.first[0])) not in repr(part)
