"""Tests for mpc_core.sharing (replicated 2-out-of-3 sharing) and mpc_core.types."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc_core.errors import InvalidArgumentError, OutputIntegrityError
from mpc_core.sharing import (
    ReplicatedShare,
    reconstruct,
    reconstruct_checked,
    share,
    share_for_party,
    split,
)
from mpc_core.types import PARTIES, MessageTag, PartyId, next_party, party_id, prev_party

U64 = st.integers(min_value=0, max_value=2**64 - 1)
VECTORS = st.lists(U64, min_size=0, max_size=32)
NAMES = ("server-0", "server-1", "server-2")


def u64(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.uint64)


@settings(max_examples=150, deadline=None)
@given(VECTORS)
def test_reconstruct_inverts_share(values: list[int]) -> None:
    shares = share(u64(values))
    assert len(shares) == 3
    assert reconstruct(shares).tolist() == values
    assert reconstruct_checked(shares).tolist() == values


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(U64, U64), max_size=32))
def test_sharing_is_linear(pairs: list[tuple[int, int]]) -> None:
    x = [p[0] for p in pairs]
    y = [p[1] for p in pairs]
    xs, ys = share(u64(x)), share(u64(y))
    summed = [ReplicatedShare(a.first + b.first, a.second + b.second) for a, b in zip(xs, ys, strict=True)]
    diff = [ReplicatedShare(a.first - b.first, a.second - b.second) for a, b in zip(xs, ys, strict=True)]
    assert reconstruct_checked(summed).tolist() == [(a + b) % 2**64 for a, b in pairs]
    assert reconstruct_checked(diff).tolist() == [(a - b) % 2**64 for a, b in pairs]


@settings(max_examples=100, deadline=None)
@given(VECTORS)
def test_party_i_holds_components_i_and_i_plus_1(values: list[int]) -> None:
    shares = share(u64(values))
    for party in PARTIES:
        mine, following = shares[party], shares[next_party(party)]
        assert mine.size == len(values)
        assert mine.first.dtype == mine.second.dtype == np.uint64
        # party i's second component (x_{i+1}) is party i+1's first.
        assert mine.second.tolist() == following.first.tolist()


def test_split_components_sum_to_the_secret_and_share_for_party_layout() -> None:
    secret = u64([1, 2**64 - 1, 12345])
    components = split(secret)
    assert (components[0] + components[1] + components[2]).tolist() == secret.tolist()
    for party in PARTIES:
        pair = share_for_party(components, party)
        assert pair.first is components[party]
        assert pair.second is components[(party + 1) % 3]


def test_share_flattens_and_accepts_signed_integers() -> None:
    shares = share(np.array([[-1, 2], [3, -4]], dtype=np.int64))
    assert all(s.first.shape == (4,) for s in shares)
    assert reconstruct(shares).view(np.int64).tolist() == [-1, 2, 3, -4]


@pytest.mark.parametrize("component", [0, 1, 2])
@pytest.mark.parametrize("copy", ["first", "second"])
def test_reconstruct_checked_names_the_two_holders_of_a_tampered_component(component: int, copy: str) -> None:
    shares = list(share(u64([10, 20, 30])))
    # component j is held as party j's first and as party j-1's second.
    holder = component if copy == "first" else (component - 1) % 3
    original = shares[holder]
    tampered = getattr(original, copy).copy()
    tampered[1] += np.uint64(1)
    if copy == "first":
        shares[holder] = ReplicatedShare(tampered, original.second)
    else:
        shares[holder] = ReplicatedShare(original.first, tampered)
    # Unchecked reconstruction uses only the first copies, so it cannot notice.
    assert (reconstruct(shares).tolist() == [10, 20, 30]) == (copy == "second")
    with pytest.raises(OutputIntegrityError) as info:
        reconstruct_checked(shares, NAMES)
    error = info.value
    expected = (NAMES[(component - 1) % 3], NAMES[component])
    assert error.servers == expected
    message = str(error)
    assert f"servers {expected[0]} and {expected[1]}" in message
    assert f"component {component}" in message
    assert error.grpc_status == "DATA_LOSS"


def test_reconstruct_checked_default_names_are_party_indices() -> None:
    shares = list(share(u64([7])))
    shares[0] = ReplicatedShare(shares[0].first, shares[0].second + np.uint64(1))
    with pytest.raises(OutputIntegrityError) as info:
        reconstruct_checked(shares)
    assert info.value.servers == ("0", "1")


def test_reconstruct_checked_detects_a_truncated_share() -> None:
    shares = list(share(u64([1, 2, 3])))
    shares[1] = ReplicatedShare(shares[1].first[:2].copy(), shares[1].second[:2].copy())
    with pytest.raises(OutputIntegrityError) as info:
        reconstruct_checked(shares, NAMES)
    assert set(info.value.servers) <= set(NAMES)
    assert "server-1" in info.value.servers


def test_reconstruct_needs_exactly_three_shares() -> None:
    shares = share(u64([1]))
    for bad in (shares[:2], (*shares, shares[0]), ()):
        with pytest.raises(InvalidArgumentError, match="need 3 shares"):
            reconstruct(bad)
        with pytest.raises(InvalidArgumentError, match="need 3 shares"):
            reconstruct_checked(bad)


def test_replicated_share_validates_components() -> None:
    with pytest.raises(InvalidArgumentError, match="uint64"):
        ReplicatedShare(np.zeros(2, dtype=np.int64), np.zeros(2, dtype=np.uint64))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="uint64"):
        ReplicatedShare([0, 0], np.zeros(2, dtype=np.uint64))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="shape"):
        ReplicatedShare(np.zeros(2, dtype=np.uint64), np.zeros(3, dtype=np.uint64))


def test_repr_and_str_redact_share_values() -> None:
    secret = u64([0x1234_5678_9ABC_DEF0, 424242424242, 2**63 + 99])
    for held in share(secret):
        for text in (repr(held), str(held), repr([held]), f"{held}"):
            assert "redacted" in text
            assert "size=3" in text
            for component in (held.first, held.second):
                for value in component.tolist():
                    assert str(value) not in text
                    assert f"{value:x}" not in text.lower()
            for value in secret.tolist():
                assert str(value) not in text


def test_a_single_party_share_does_not_equal_the_secret() -> None:
    secret = u64([42] * 8)
    first, second = share(secret), share(secret)
    for party in PARTIES:
        for component in ("first", "second"):
            a = getattr(first[party], component)
            b = getattr(second[party], component)
            # fresh randomness per sharing: components differ between two sharings
            assert a.tolist() != b.tolist()
            assert a.tolist() != secret.tolist()


def test_components_of_a_zero_secret_look_uniform() -> None:
    n = 4096
    components = split(np.zeros(n, dtype=np.uint64))
    for component in components:
        assert len(set(component.tolist())) == n  # no repeats among 4096 random words
        bits = np.unpackbits(component.view(np.uint8)).reshape(n, 64)
        ones = bits.sum(axis=0)
        sigma = (n * 0.25) ** 0.5
        assert np.all(np.abs(ones - n / 2) < 5 * sigma), ones
    assert components[0].tolist() != components[1].tolist()


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
