"""Tests for mpc_core.sharing (replicated 2-out-of-3 sharing in both rings) and mpc_core.types."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc_core.errors import InvalidArgumentError, OutputIntegrityError
from mpc_core.prg import KEY_BYTES, prg_elements
from mpc_core.ring import RING64, RING128, Ring
from mpc_core.sharing import (
    ReplicatedShare,
    SeededSplit,
    reconstruct,
    reconstruct_checked,
    share,
    share_for_party,
    split,
    split_seeded,
)
from mpc_core.types import PARTIES, MessageTag, PartyId, next_party, party_id, prev_party

RINGS = pytest.mark.parametrize("ring", [RING64, RING128], ids=["Z2^64", "Z2^128"])
INTS = st.one_of(
    st.integers(min_value=-(2**128), max_value=2**128),
    st.sampled_from([0, 1, -1, 2**63, 2**64 - 1, 2**64, 2**127, 2**128 - 1]),
)
VECTORS = st.lists(INTS, min_size=0, max_size=32)
NAMES = ("server-0", "server-1", "server-2")


def values_of(ring: Ring, array: np.ndarray) -> list[int]:
    return ring.to_ints(array, signed=False)


def reduced(ring: Ring, values: list[int]) -> list[int]:
    return [v % ring.modulus for v in values]


def other_ring(ring: Ring) -> Ring:
    return RING128 if ring is RING64 else RING64


@RINGS
@settings(max_examples=100, deadline=None)
@given(values=VECTORS)
def test_reconstruct_inverts_share(ring: Ring, values: list[int]) -> None:
    shares = share(ring, ring.from_ints(values))
    assert len(shares) == 3
    assert all(s.ring is ring for s in shares)
    assert values_of(ring, reconstruct(shares)) == reduced(ring, values)
    assert values_of(ring, reconstruct_checked(shares)) == reduced(ring, values)
    assert reconstruct(shares).dtype == ring.dtype


@RINGS
@settings(max_examples=60, deadline=None)
@given(pairs=st.lists(st.tuples(INTS, INTS), max_size=32))
def test_sharing_is_linear(ring: Ring, pairs: list[tuple[int, int]]) -> None:
    xs = share(ring, ring.from_ints([p[0] for p in pairs]))
    ys = share(ring, ring.from_ints([p[1] for p in pairs]))
    summed = [
        ReplicatedShare(ring.add(a.first, b.first), ring.add(a.second, b.second))
        for a, b in zip(xs, ys, strict=True)
    ]
    diff = [
        ReplicatedShare(ring.sub(a.first, b.first), ring.sub(a.second, b.second))
        for a, b in zip(xs, ys, strict=True)
    ]
    assert values_of(ring, reconstruct_checked(summed)) == [(a + b) % ring.modulus for a, b in pairs]
    assert values_of(ring, reconstruct_checked(diff)) == [(a - b) % ring.modulus for a, b in pairs]


@RINGS
@settings(max_examples=60, deadline=None)
@given(values=VECTORS)
def test_party_i_holds_components_i_and_i_plus_1(ring: Ring, values: list[int]) -> None:
    shares = share(ring, ring.from_ints(values))
    for party in PARTIES:
        mine, following = shares[party], shares[next_party(party)]
        assert mine.size == len(values)
        assert mine.first.dtype == mine.second.dtype == ring.dtype
        # party i's second component (x_{i+1}) is party i+1's first.
        assert mine.second.tobytes() == following.first.tobytes()


@RINGS
def test_split_components_sum_to_the_secret_and_share_for_party_layout(ring: Ring) -> None:
    secret = ring.from_ints([1, 2**64 - 1, 12345, 2**127 + 3, -1])
    components = split(ring, secret)
    assert all(c.dtype == ring.dtype and c.shape == (5,) for c in components)
    total = ring.add(ring.add(components[0], components[1]), components[2])
    assert values_of(ring, total) == values_of(ring, secret)
    for party in PARTIES:
        pair = share_for_party(components, party)
        assert pair.first is components[party]
        assert pair.second is components[(party + 1) % 3]


@RINGS
def test_share_flattens(ring: Ring) -> None:
    secret = ring.from_signed64(np.array([[-1, 2], [3, -4]], dtype=np.int64))
    shares = share(ring, secret)
    assert all(s.first.shape == (4,) and s.second.shape == (4,) for s in shares)
    assert ring.to_ints(reconstruct(shares)) == [-1, 2, 3, -4]


@RINGS
def test_split_refuses_the_other_rings_elements(ring: Ring) -> None:
    wrong = other_ring(ring).zeros(3)
    with pytest.raises(
        InvalidArgumentError, match=re.escape(f"the secret must hold elements of {ring.name}")
    ):
        split(ring, wrong)
    with pytest.raises(InvalidArgumentError, match=re.escape(ring.name)):
        split_seeded(ring, wrong)
    with pytest.raises(InvalidArgumentError, match=re.escape(ring.name)):
        share(ring, np.zeros(3, dtype=np.int64))


# --- seeded splits --------------------------------------------------------------------------------


@RINGS
@settings(max_examples=60, deadline=None)
@given(values=VECTORS)
def test_seeded_split_components_reconstruct(ring: Ring, values: list[int]) -> None:
    secret = ring.from_ints(values)
    seeded = split_seeded(ring, secret)
    assert isinstance(seeded, SeededSplit)
    assert seeded.ring is ring
    assert len(seeded.seed_0) == len(seeded.seed_1) == KEY_BYTES
    x0, x1, x2 = seeded.components()
    assert x2 is seeded.x_2
    n = len(values)
    assert x0.tobytes() == prg_elements(ring, seeded.seed_0, n).tobytes()
    assert x1.tobytes() == prg_elements(ring, seeded.seed_1, n).tobytes()
    assert values_of(ring, ring.add(ring.add(x0, x1), x2)) == reduced(ring, values)
    shares = [share_for_party((x0, x1, x2), party) for party in PARTIES]
    assert values_of(ring, reconstruct_checked(shares)) == reduced(ring, values)


@RINGS
def test_seeded_splits_draw_fresh_seeds_and_redact_them(ring: Ring) -> None:
    secret = ring.from_ints([7, 8, 9])
    a, b = split_seeded(ring, secret), split_seeded(ring, secret)
    assert {a.seed_0, a.seed_1}.isdisjoint({b.seed_0, b.seed_1})
    assert a.seed_0 != a.seed_1
    assert a.x_2.tobytes() != b.x_2.tobytes()
    assert split_seeded(ring, ring.zeros((2, 2))).x_2.shape == (4,)  # flattened
    for text in (repr(a), str(a), f"{a!r}"):
        assert text == f"SeededSplit({ring.name}, size=3, <redacted>)"
        assert a.seed_0.hex() not in text
        assert a.seed_1.hex() not in text


# --- checked reconstruction -----------------------------------------------------------------------


@RINGS
@pytest.mark.parametrize("component", [0, 1, 2])
@pytest.mark.parametrize("copy", ["first", "second"])
def test_reconstruct_checked_names_the_two_holders_of_a_tampered_component(
    ring: Ring, component: int, copy: str
) -> None:
    shares = list(share(ring, ring.from_ints([10, 20, 30])))
    # component j is held as party j's first and as party j-1's second.
    holder = component if copy == "first" else (component - 1) % 3
    original = shares[holder]
    tampered = getattr(original, copy).copy()
    tampered[1:2] = ring.add_public(tampered[1:2], 2**64 if ring.bits == 128 else 1)
    if copy == "first":
        shares[holder] = ReplicatedShare(tampered, original.second)
    else:
        shares[holder] = ReplicatedShare(original.first, tampered)
    # Unchecked reconstruction uses only the first copies, so it cannot notice.
    assert (values_of(ring, reconstruct(shares)) == [10, 20, 30]) == (copy == "second")
    with pytest.raises(OutputIntegrityError) as info:
        reconstruct_checked(shares, NAMES)
    error = info.value
    expected = (NAMES[(component - 1) % 3], NAMES[component])
    assert error.servers == expected
    message = str(error)
    assert f"servers {expected[0]} and {expected[1]}" in message
    assert f"component {component}" in message
    assert error.grpc_status == "DATA_LOSS"


def test_a_change_in_the_high_limb_alone_is_detected() -> None:
    shares = list(share(RING128, RING128.from_ints([5, 6])))
    second = shares[2].second.copy()
    second["hi"][0] ^= np.uint64(1 << 63)
    shares[2] = ReplicatedShare(shares[2].first, second)
    with pytest.raises(OutputIntegrityError) as info:
        reconstruct_checked(shares, NAMES)
    assert info.value.servers == ("server-2", "server-0")


@RINGS
def test_reconstruct_checked_default_names_are_party_indices(ring: Ring) -> None:
    shares = list(share(ring, ring.from_ints([7])))
    shares[0] = ReplicatedShare(shares[0].first, ring.add_public(shares[0].second, 1))
    with pytest.raises(OutputIntegrityError) as info:
        reconstruct_checked(shares)
    assert info.value.servers == ("0", "1")


@RINGS
def test_reconstruct_checked_detects_a_truncated_share(ring: Ring) -> None:
    shares = list(share(ring, ring.from_ints([1, 2, 3])))
    shares[1] = ReplicatedShare(shares[1].first[:2].copy(), shares[1].second[:2].copy())
    with pytest.raises(OutputIntegrityError) as info:
        reconstruct_checked(shares, NAMES)
    assert set(info.value.servers) <= set(NAMES)
    assert "server-1" in info.value.servers


@RINGS
def test_shares_of_different_rings_are_refused(ring: Ring) -> None:
    mine = share(ring, ring.from_ints([1, 2]))
    theirs = share(other_ring(ring), other_ring(ring).from_ints([1, 2]))
    mixed = (mine[0], theirs[1], mine[2])
    with pytest.raises(InvalidArgumentError, match="different rings"):
        reconstruct(mixed)
    with pytest.raises(InvalidArgumentError, match="different rings"):
        reconstruct_checked(mixed)
    with pytest.raises(InvalidArgumentError, match="different rings"):
        ReplicatedShare(mine[0].first, theirs[0].second)


@RINGS
def test_reconstruct_needs_exactly_three_shares(ring: Ring) -> None:
    shares = share(ring, ring.from_ints([1]))
    for bad in (shares[:2], (*shares, shares[0]), ()):
        with pytest.raises(InvalidArgumentError, match="need 3 shares"):
            reconstruct(bad)
        with pytest.raises(InvalidArgumentError, match="need 3 shares"):
            reconstruct_checked(bad)


@RINGS
def test_replicated_share_validates_components(ring: Ring) -> None:
    zeros = ring.zeros(2)
    with pytest.raises(InvalidArgumentError, match="not an array of ring elements"):
        ReplicatedShare(np.zeros(2, dtype=np.int64), zeros)
    with pytest.raises(InvalidArgumentError, match="arrays of ring elements"):
        ReplicatedShare([0, 0], zeros)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="shape"):
        ReplicatedShare(zeros, ring.zeros(3))
    held = ReplicatedShare(zeros, ring.zeros(2))
    assert held.ring is ring
    assert held.size == 2


@RINGS
def test_repr_and_str_redact_share_values(ring: Ring) -> None:
    secret = ring.from_ints([0x1234_5678_9ABC_DEF0, 424242424242, 2**63 + 99, 2**100 + 5])
    for held in share(ring, secret):
        words = [int(w) for c in (held.first, held.second) for w in ring.words(c)]
        for text in (repr(held), str(held), repr([held]), f"{held}"):
            assert f"ReplicatedShare({ring.name}, size=4, <redacted>)" in text
            assert "redacted" in text
            for value in values_of(ring, held.first) + values_of(ring, held.second) + words:
                assert str(value) not in text
                assert f"{value:x}" not in text.lower()
            for value in values_of(ring, secret):
                assert str(value) not in text


@RINGS
def test_a_single_party_share_does_not_equal_the_secret(ring: Ring) -> None:
    secret = ring.from_ints([42] * 8)
    first, second = share(ring, secret), share(ring, secret)
    for party in PARTIES:
        for component in ("first", "second"):
            a = getattr(first[party], component)
            b = getattr(second[party], component)
            # fresh randomness per sharing: components differ between two sharings
            assert a.tobytes() != b.tobytes()
            assert a.tobytes() != secret.tobytes()


@RINGS
def test_components_of_a_zero_secret_look_uniform(ring: Ring) -> None:
    n = 4096
    components = split(ring, ring.zeros(n))
    for component in components:
        assert len({bytes(component[i : i + 1].tobytes()) for i in range(n)}) == n  # no repeats
        bits = np.unpackbits(component.view(np.uint8)).reshape(n, ring.bits)
        ones = bits.sum(axis=0)
        sigma = (n * 0.25) ** 0.5
        assert np.all(np.abs(ones - n / 2) < 5 * sigma), ones
    assert components[0].tobytes() != components[1].tobytes()


# --- mpc_core.types -------------------------------------------------------------------------------


def test_party_arithmetic() -> None:
    assert [next_party(p) for p in PARTIES] == [1, 2, 0]
    assert [prev_party(p) for p in PARTIES] == [2, 0, 1]
    assert all(prev_party(next_party(p)) == p for p in PARTIES)
    assert [party_id(v) for v in (0, 1, 2)] == [0, 1, 2]


@pytest.mark.parametrize("value", [-1, 3, 10])
def test_party_id_rejects_out_of_range(value: int) -> None:
    with pytest.raises(InvalidArgumentError, match="party must be 0, 1 or 2"):
        party_id(value)


JOB = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)
OP = st.integers(min_value=0, max_value=2**64 - 1)
PURPOSE = st.binary(max_size=8)


@settings(max_examples=200, deadline=None)
@given(st.tuples(JOB, OP, PURPOSE), st.tuples(JOB, OP, PURPOSE))
def test_message_tag_encoding_is_injective(a: tuple[str, int, bytes], b: tuple[str, int, bytes]) -> None:
    encoded_a = MessageTag(a[0], a[1]).to_bytes(a[2])
    encoded_b = MessageTag(b[0], b[1]).to_bytes(b[2])
    assert (encoded_a == encoded_b) == (a == b)


def test_message_tag_known_encoding_and_order() -> None:
    tag = MessageTag("job-1", 258)
    assert tag.to_bytes(b"zs") == b"\x00\x05job-1" + (258).to_bytes(8, "big") + b"zs"
    assert MessageTag("a", 1) < MessageTag("a", 2) < MessageTag("b", 0)
    assert PartyId(1) == 1
