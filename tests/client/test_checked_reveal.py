"""The client's checked reconstruction of output shares (no servers needed), in both rings."""

from __future__ import annotations

import dataclasses
import hashlib
from fractions import Fraction

import numpy as np
import pytest

from mpc_client import OutputIntegrityError
from mpc_client._fetch import OutputPart, reconstruct_output
from mpc_core.fixed_point import default_fractional_bits
from mpc_core.ring import RING64, RING128, Ring, RingArray
from mpc_core.sharing import share


@pytest.fixture(params=[RING64, RING128], ids=["ring64", "ring128"])
def ring(request: pytest.FixtureRequest) -> Ring:
    ring_: Ring = request.param
    return ring_


def _digest(ring: Ring, values: RingArray) -> bytes:
    return hashlib.sha256(ring.to_wire(values)).digest()


def _parts(
    ring: Ring, secret: list[int], shape: tuple[int, ...], bits: int = 0, *, digest: bool = False
) -> list[OutputPart]:
    # Each server sends its own copies: no arrays shared between parts.
    parts = []
    for i, s in enumerate(share(ring, ring.from_ints(secret))):
        first, second = s.first.copy(), s.second.copy()
        if digest:
            parts.append(
                OutputPart(
                    f"server-{i}",
                    shape,
                    bits,
                    ring,
                    first,
                    second_digest=_digest(ring, second),
                    first_digest=_digest(ring, first),
                )
            )
        else:
            parts.append(OutputPart(f"server-{i}", shape, bits, ring, first, second))
    return parts


def _flip_bit(ring: Ring, values: RingArray, index: int, bit: int) -> None:
    """Flip bit ``bit`` of element ``index`` in place (through the 64-bit word view)."""
    words = ring.words(values)
    assert np.shares_memory(words, values)
    words[index * ring.words_per_element + bit // 64] ^= np.uint64(1 << (bit % 64))


@pytest.mark.parametrize("digest", [False, True])
def test_consistent_parts_reconstruct_and_decode(ring: Ring, digest: bool) -> None:
    f = default_fractional_bits(ring)
    secret = [1 << f, 3 << (f - 1), -2 << f, -(1 << (f - 2))]
    assert reconstruct_output(_parts(ring, secret, (4,), f, digest=digest)).tolist() == [
        1.0,
        1.5,
        -2.0,
        -0.25,
    ]


@pytest.mark.parametrize("digest", [False, True])
def test_outputs_beyond_64_bits_decode_in_z128(digest: bool) -> None:
    """Values whose encodings need the high word: +-2^70 + 3 * 2^40 at f = 32, and a 2-D shape."""
    secret = [2**70 + 3 * 2**40, -(2**70) - 3 * 2**40, 2**126, -(2**126), 1, -1]
    got = reconstruct_output(_parts(RING128, secret, (3, 2), 32, digest=digest))
    expected = [float(Fraction(v, 2**32)) for v in secret]
    assert got.shape == (3, 2)
    assert got.reshape(-1).tolist() == expected


@pytest.mark.parametrize("bit", ["low", "high"])
@pytest.mark.parametrize("component", [0, 1, 2])
def test_a_tampered_copy_names_both_holders(ring: Ring, component: int, bit: str) -> None:
    parts = _parts(ring, [5, 6, 7], (3,))
    holder = (component - 1) % 3  # holds component j as its second
    second = parts[holder].second
    assert second is not None
    _flip_bit(ring, second, 1, 0 if bit == "low" else ring.bits - 1)
    with pytest.raises(OutputIntegrityError) as caught:
        reconstruct_output(parts)
    assert set(caught.value.servers) == {f"server-{holder}", f"server-{component}"}


@pytest.mark.parametrize("component", [0, 1, 2])
def test_a_tampered_first_copy_is_caught_by_the_digest(ring: Ring, component: int) -> None:
    parts = _parts(ring, [5, 6, 7], (3,), digest=True)
    tampered = parts[component]
    _flip_bit(ring, tampered.first, 0, ring.bits - 1)
    # The tampering server also recomputes its own digest: only the neighbour's copy catches it.
    parts[component] = OutputPart(
        tampered.server,
        tampered.shape,
        0,
        ring,
        tampered.first,
        second_digest=tampered.second_digest,
        first_digest=_digest(ring, tampered.first),
    )
    with pytest.raises(OutputIntegrityError) as caught:
        reconstruct_output(parts)
    assert set(caught.value.servers) == {f"server-{(component - 1) % 3}", f"server-{component}"}


def test_disagreeing_shapes_are_an_integrity_error(ring: Ring) -> None:
    parts = _parts(ring, [5, 6], (2,))
    other = parts[2]
    parts[2] = OutputPart("server-2", (2, 1), 0, ring, other.first, other.second)
    with pytest.raises(OutputIntegrityError, match="shapes"):
        reconstruct_output(parts)


def test_disagreeing_scales_are_an_integrity_error(ring: Ring) -> None:
    parts = _parts(ring, [5, 6], (2,), 8)
    other = parts[1]
    parts[1] = OutputPart("server-1", (2,), 9, ring, other.first, other.second)
    with pytest.raises(OutputIntegrityError, match="scales") as caught:
        reconstruct_output(parts)
    assert "server-1" in caught.value.servers


def test_a_part_in_another_ring_is_an_integrity_error(ring: Ring) -> None:
    other_ring = RING128 if ring is RING64 else RING64
    parts = _parts(ring, [5, 6], (2,))
    stray = _parts(other_ring, [5, 6], (2,))[0]
    parts[0] = stray
    with pytest.raises(OutputIntegrityError, match="rings") as caught:
        reconstruct_output(parts)
    assert "server-0" in caught.value.servers


def test_parts_do_not_show_values(ring: Ring) -> None:
    part = _parts(ring, [123456789], (1,))[0]
    first_value = ring.to_ints(part.first, signed=False)[0]
    assert "123456789" not in repr(part)
    assert str(first_value) not in repr(part)


@pytest.mark.parametrize(
    "cuts",
    [((3,), (3,), (3,)), ((2, 5), (2, 5), (2, 5)), ((1,), (4,), (6, 7)), ((), (), ())],
    ids=["same-pieces", "same-pieces-3", "different-pieces", "whole"],
)
def test_streamed_pieces_reconstruct_like_the_whole_component(
    ring: Ring, cuts: tuple[tuple[int, ...], ...]
) -> None:
    """A streamed first component stays in the pieces it arrived in, whatever their boundaries."""
    f = default_fractional_bits(ring)
    secret = [(v << f) // 4 for v in range(-4, 4)]
    whole = _parts(ring, secret, (8,), f, digest=True)
    streamed = [
        OutputPart(
            part.server,
            part.shape,
            f,
            ring,
            ring.empty(0),
            second_digest=part.second_digest,
            first_digest=part.first_digest,
            pieces=tuple(np.split(part.first, list(cut))),
        )
        for part, cut in zip(whole, cuts, strict=True)
    ]
    assert reconstruct_output(streamed).tolist() == [v / 4 for v in range(-4, 4)]
    assert reconstruct_output(streamed).tolist() == reconstruct_output(whole).tolist()
    # Without a tag computed while streaming, the digest is taken over the pieces joined.
    untagged = [dataclasses.replace(part, first_digest=b"") for part in streamed]
    assert reconstruct_output(untagged).tolist() == [v / 4 for v in range(-4, 4)]
