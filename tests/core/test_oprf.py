"""Tests for mpc_core.oprf: the distributed DH-OPRF (ristretto255) that turns ids into join tokens."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("mpc_core.oprf", reason="needs libsodium (Debian: libsodium23)", exc_type=ImportError)

import pysodium

from mpc_core.errors import InvalidArgumentError, OutputIntegrityError, ProtocolError
from mpc_core.oprf import (
    GROUP_ORDER,
    MAX_ID_BYTES,
    MAX_SESSION_BYTES,
    POINT_BYTES,
    TOKEN_BYTES,
    CompactCheckError,
    KeyComponent,
    KeyShare,
    blame_compact,
    blind,
    canonical_id,
    canonical_ids,
    compact_scalar,
    derive_component,
    derive_key_share,
    derive_token,
    evaluate,
    evaluate_compact,
    evaluate_share,
    finalize,
    finalize_compact,
    hash_to_group,
    is_point,
    random_scalar,
)
from mpc_core.prg import SecretKey, random_key, random_permutation
from mpc_core.types import PARTIES, PartyId, next_party, prev_party

NAMES = ("server-0", "server-1", "server-2")
SESSION = b"alignment-job-1"
IDS: list[str | int] = ["alice@example.com", "bob", 42, "Carol Smith", "+41 79 123 45 67", "x" * 200]
IDENTITY = bytes(POINT_BYTES)
NON_CANONICAL = b"\xff" * POINT_BYTES  # a field element >= p: not a canonical encoding


def make_shares(keys: list[SecretKey], tag: bytes = b"session-tag") -> list[KeyShare]:
    return [derive_key_share(keys[p], keys[next_party(p)], p, tag) for p in PARTIES]


@pytest.fixture
def shares() -> list[KeyShare]:
    return make_shares([random_key() for _ in PARTIES])


def whole_key(shares: list[KeyShare]) -> bytes:
    k0, k1, k2 = (shares[j].first.scalar for j in PARTIES)
    total: bytes = pysodium.crypto_core_ristretto255_scalar_add(
        pysodium.crypto_core_ristretto255_scalar_add(k0, k1), k2
    )
    return total


def direct_tokens(session: bytes, scalar: bytes, ids: list[str | int]) -> list[bytes]:
    """Tokens computed in the clear under ``scalar`` (what only the whole key can do)."""
    points = [hash_to_group(session, canonical_id(value)) for value in ids]
    return [derive_token(session, point) for point in evaluate(KeyComponent(0, scalar), points)]


def run_full(session: bytes, shares: list[KeyShare], ids: list[str | int]) -> list[bytes]:
    blinding = blind(session, ids)
    return finalize(blinding, [evaluate_share(share, blinding.elements) for share in shares], NAMES)


def run_compact(session: bytes, shares: list[KeyShare], ids: list[str | int]) -> list[bytes]:
    blinding = blind(session, ids)
    return finalize_compact(blinding, [evaluate_compact(share, blinding.elements) for share in shares], NAMES)


def other_point() -> bytes:
    return hash_to_group(b"elsewhere", b"some other id")


# --- tokens -------------------------------------------------------------------------------------


def test_tokens_are_deterministic_per_id_and_session(shares: list[KeyShare]) -> None:
    first, second = run_full(SESSION, shares, IDS), run_full(SESSION, shares, list(reversed(IDS)))
    assert first == list(reversed(second))
    assert all(len(token) == TOKEN_BYTES for token in first)
    assert len(set(first)) == len(IDS)


def test_tokens_differ_across_sessions_and_keys(shares: list[KeyShare]) -> None:
    tokens = set(run_full(SESSION, shares, IDS))
    assert tokens.isdisjoint(run_full(b"alignment-job-2", shares, IDS))
    keys = [random_key() for _ in PARTIES]
    assert tokens.isdisjoint(run_full(SESSION, make_shares(keys), IDS))
    # Same pairwise keys, a new alignment tag: a fresh, independent OPRF key.
    assert set(run_full(SESSION, make_shares(keys, b"tag-a"), IDS)).isdisjoint(
        run_full(SESSION, make_shares(keys, b"tag-b"), IDS)
    )


def test_two_banks_with_overlapping_customers_get_equal_tokens(shares: list[KeyShare]) -> None:
    bank_1 = run_full(SESSION, shares, ["ann", "ben", " CAROL ", 7])
    bank_2 = run_compact(SESSION, shares, ["dora", "7", "carol", "Ann"])
    assert set(bank_1) & set(bank_2) == {bank_1[0], bank_1[2], bank_1[3]}
    assert bank_2[1] == bank_1[3] and bank_2[2] == bank_1[2] and bank_2[3] == bank_1[0]


@settings(max_examples=25, deadline=None)
@given(ids=st.lists(st.integers(min_value=-(10**30), max_value=10**30), unique=True, max_size=8))
def test_three_components_combine_to_the_whole_key(ids: list[int]) -> None:
    shares = make_shares([random_key() for _ in PARTIES])
    expected = direct_tokens(SESSION, whole_key(shares), list(ids))
    assert run_full(SESSION, shares, list(ids)) == expected
    assert run_compact(SESSION, shares, list(ids)) == expected


def test_empty_request(shares: list[KeyShare]) -> None:
    assert run_full(SESSION, shares, []) == []
    assert run_compact(SESSION, shares, []) == []


def test_hash_to_group_is_domain_separated_by_session() -> None:
    point = hash_to_group(SESSION, b"bob")
    assert is_point(point)
    assert point == hash_to_group(SESSION, b"bob")
    assert point != hash_to_group(b"alignment-job-2", b"bob")
    assert hash_to_group(b"ab", b"c") != hash_to_group(b"a", b"bc")  # fields are length-framed
    assert derive_token(b"ab", point) != derive_token(b"a", point)


# --- keys ---------------------------------------------------------------------------------------


def test_both_holders_derive_the_same_component(shares: list[KeyShare]) -> None:
    for party in PARTIES:
        assert shares[party].first.index == party
        assert shares[party].second.index == next_party(party)
        assert shares[party].second.scalar == shares[next_party(party)].first.scalar
    assert len({share.first.scalar for share in shares}) == 3


def test_component_derivation_depends_on_key_tag_and_index() -> None:
    key = random_key()
    base = derive_component(key, 0, b"t").scalar
    assert derive_component(key, 0, b"t").scalar == base
    assert derive_component(key, 0, b"u").scalar != base
    assert derive_component(key, 1, b"t").scalar != base
    assert derive_component(random_key(), 0, b"t").scalar != base
    assert 0 < int.from_bytes(base, "little") < GROUP_ORDER


def test_one_servers_key_material_cannot_recompute_tokens(shares: list[KeyShare]) -> None:
    ids: list[str | int] = [f"customer-{i}" for i in range(20)]
    real = set(run_full(SESSION, shares, ids))
    add = pysodium.crypto_core_ristretto255_scalar_add
    for share in shares:
        a, b = share.first.scalar, share.second.scalar
        for guess in (a, b, add(a, b), add(add(a, a), b), add(a, add(b, b)), compact_scalar(share)):
            assert real.isdisjoint(direct_tokens(SESSION, guess, ids))


def test_compact_scalars_follow_the_documented_forms(shares: list[KeyShare]) -> None:
    k0, k1, k2 = (int.from_bytes(shares[j].first.scalar, "little") for j in PARTIES)
    forms = [2 * k0 + k1, k1 + 2 * k2, k0 - k2]
    for share, form in zip(shares, forms, strict=True):
        assert int.from_bytes(compact_scalar(share), "little") == form % GROUP_ORDER


def test_key_component_validation_and_redaction(shares: list[KeyShare]) -> None:
    scalar = shares[0].first.scalar
    for text in (repr(shares[0]), repr(shares[0].first), str(shares[0].second)):
        assert "redacted" in text and scalar.hex() not in text and str(scalar) not in text
    for bad in (bytes(32), GROUP_ORDER.to_bytes(32, "little"), b"\x01" * 31):
        with pytest.raises(InvalidArgumentError):
            KeyComponent(0, bad)
    with pytest.raises(InvalidArgumentError):
        KeyComponent(3, scalar)


# --- blinding -----------------------------------------------------------------------------------


def test_blinded_elements_are_fresh_per_element_and_per_call() -> None:
    ids: list[str | int] = [f"id-{i}" for i in range(50)]
    first, second = blind(SESSION, ids), blind(SESSION, ids)
    assert all(is_point(element) for element in first.elements)
    assert len(set(first.elements) | set(second.elements)) == 100
    assert len(set(first.inverses) | set(second.inverses)) == 100  # one fresh scalar per element
    hashed = {hash_to_group(SESSION, canonical_id(value)) for value in ids}
    assert hashed.isdisjoint(first.elements)


def test_blinding_inverses_unblind_their_elements() -> None:
    blinding = blind(SESSION, ["a", "b", "c"])
    for value, element, inverse in zip("abc", blinding.elements, blinding.inverses, strict=True):
        unblinded = pysodium.crypto_scalarmult_ristretto255(inverse, element)
        assert unblinded == hash_to_group(SESSION, value.encode())


def test_reprs_hide_secrets(shares: list[KeyShare]) -> None:
    blinding = blind(SESSION, ["a"])
    assert repr(blinding) == "Blinding(size=1, <redacted>)"
    evaluation = evaluate_share(shares[0], blinding.elements)
    assert repr(evaluation) == "Evaluation(size=1)"


def test_random_scalar_is_canonical_and_fresh() -> None:
    scalars = {random_scalar() for _ in range(100)}
    assert len(scalars) == 100
    assert all(0 < int.from_bytes(s, "little") < GROUP_ORDER for s in scalars)


def test_random_permutation() -> None:
    order = random_permutation(1000)
    assert sorted(order.tolist()) == list(range(1000))
    assert order.tolist() != random_permutation(1000).tolist()
    assert random_permutation(0).size == 0


# --- checks against a faulty server -------------------------------------------------------------


@pytest.mark.parametrize("server", PARTIES)
@pytest.mark.parametrize("which", ["first", "second"])
def test_a_tampered_evaluation_is_caught_and_named(shares: list[KeyShare], server: int, which: str) -> None:
    blinding = blind(SESSION, IDS)
    evaluations = [evaluate_share(share, blinding.elements) for share in shares]
    getattr(evaluations[server], which)[3] = other_point()  # a valid element, but the wrong one
    with pytest.raises(OutputIntegrityError) as caught:
        finalize(blinding, evaluations, NAMES)
    if which == "first":  # component `server`, whose other holder is server - 1
        expected = {NAMES[prev_party(PartyId(server))], NAMES[server]}
        component = server
    else:  # component server + 1, whose other holder is server + 1
        expected = {NAMES[server], NAMES[next_party(PartyId(server))]}
        component = next_party(PartyId(server))
    assert set(caught.value.servers) == expected
    assert f"component {component}" in str(caught.value)


def test_a_consistent_invalid_point_names_its_two_holders(shares: list[KeyShare]) -> None:
    blinding = blind(SESSION, IDS)
    evaluations = [evaluate_share(share, blinding.elements) for share in shares]
    evaluations[1].first[0] = NON_CANONICAL  # component 1: servers 1 and 0 both "agree" on it
    evaluations[0].second[0] = NON_CANONICAL
    with pytest.raises(OutputIntegrityError, match="not a group element") as caught:
        finalize(blinding, evaluations, NAMES)
    assert set(caught.value.servers) == {NAMES[0], NAMES[1]}


@pytest.mark.parametrize("server", PARTIES)
def test_a_short_or_malformed_answer_names_its_server(shares: list[KeyShare], server: int) -> None:
    blinding = blind(SESSION, IDS)
    evaluations = [evaluate_share(share, blinding.elements) for share in shares]
    evaluations[server].second.pop()
    with pytest.raises(ProtocolError, match=NAMES[server]):
        finalize(blinding, evaluations, NAMES)
    values = [evaluate_compact(share, blinding.elements) for share in shares]
    values[server][0] = values[server][0][:31]
    with pytest.raises(ProtocolError, match=NAMES[server]):
        finalize_compact(blinding, values, NAMES)


@pytest.mark.parametrize("server", PARTIES)
def test_a_wrong_compact_value_is_caught_and_blamed(shares: list[KeyShare], server: int) -> None:
    ids: list[str | int] = [f"id-{i}" for i in range(10)]
    blinding = blind(SESSION, ids)
    values = [evaluate_compact(share, blinding.elements) for share in shares]
    values[server][2] = other_point()
    values[server][7] = IDENTITY
    with pytest.raises(CompactCheckError) as caught:
        finalize_compact(blinding, values, NAMES)
    assert caught.value.positions == (2, 7)
    # Diagnosis: full evaluations of just the failing elements name the faulty server.
    suspects = [blinding.elements[n] for n in caught.value.positions]
    full = [evaluate_share(share, suspects) for share in shares]
    failing = [[v[n] for n in caught.value.positions] for v in values]
    assert blame_compact(failing, full, NAMES) == (NAMES[server],)
    # A server that also lies in the diagnosis is named with its partner by the copy check.
    full[server].first[0] = other_point()
    with pytest.raises(OutputIntegrityError):
        blame_compact(failing, full, NAMES)


def test_a_server_using_another_key_is_caught(shares: list[KeyShare]) -> None:
    blinding = blind(SESSION, IDS)
    rogue = KeyShare(PARTIES[1], shares[1].first, KeyComponent(2, random_scalar()))
    values = [evaluate_compact(s, blinding.elements) for s in (shares[0], rogue, shares[2])]
    with pytest.raises(CompactCheckError) as caught:
        finalize_compact(blinding, values, NAMES)
    assert caught.value.positions == tuple(range(len(IDS)))
    evaluations = [evaluate_share(s, blinding.elements) for s in (shares[0], rogue, shares[2])]
    with pytest.raises(OutputIntegrityError) as named:
        finalize(blinding, evaluations, NAMES)
    assert set(named.value.servers) == {NAMES[1], NAMES[2]}


# --- invalid inputs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("element", "message"),
    [
        (IDENTITY, "not a group element"),
        (NON_CANONICAL, "not a group element"),
        (b"\x01" * 32, "not a group element"),
        (b"\x02" * 31, "not 32 bytes"),
        ("not bytes", "not 32 bytes"),
    ],
)
def test_servers_refuse_invalid_blinded_elements(
    shares: list[KeyShare], element: object, message: str
) -> None:
    elements = [*blind(SESSION, ["a", "b"]).elements, element]
    with pytest.raises(InvalidArgumentError, match=f"element 2 is {message}"):
        evaluate_share(shares[0], elements)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match=f"element 2 is {message}"):
        evaluate_compact(shares[0], elements)  # type: ignore[arg-type]


def test_is_point_never_reads_past_short_input() -> None:
    assert not is_point(b"")
    assert not is_point(b"\x00" * 31)
    assert not is_point(IDENTITY)
    assert not is_point(bytearray(other_point()))
    assert is_point(other_point())


@pytest.mark.parametrize("session", [b"", b"x" * (MAX_SESSION_BYTES + 1), "text"])
def test_session_ids_are_validated(session: object) -> None:
    with pytest.raises(InvalidArgumentError, match="session"):
        blind(session, ["a"])  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="session"):
        hash_to_group(session, b"a")  # type: ignore[arg-type]


def test_finalize_refuses_wrong_shapes(shares: list[KeyShare]) -> None:
    blinding = blind(SESSION, ["a"])
    evaluations = [evaluate_share(share, blinding.elements) for share in shares]
    with pytest.raises(InvalidArgumentError, match="need 3"):
        finalize(blinding, evaluations[:2])
    with pytest.raises(InvalidArgumentError, match="need 3"):
        finalize_compact(blinding, [evaluate_compact(shares[0], blinding.elements)])
    with pytest.raises(InvalidArgumentError, match="server names"):
        finalize(blinding, evaluations, NAMES[:2])
    with pytest.raises(InvalidArgumentError):
        derive_token(SESSION, b"short")


# --- canonicalisation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        (42, b"42"),
        ("42", b"42"),
        (-7, b"-7"),
        ("0042", b"0042"),  # numeric-looking text is text: leading zeros matter
        ("  Alice   SMITH\t\n", b"alice smith"),
        ("Stra\u00dfe", b"strasse"),
        ("\uff14\uff12", b"42"),  # full-width digits
        ("\ufb01le", b"file"),  # the "fi" ligature
        ("a\u00a0b", b"a b"),  # no-break space
        ("Caf\u00e9", "caf\u00e9".encode()),
        ("Cafe\u0301", "caf\u00e9".encode()),  # combining accent composes
    ],
)
def test_canonicalisation_rules(raw: str | int, canonical: bytes) -> None:
    assert canonical_id(raw) == canonical


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "empty"),
        (" \t ", "empty"),
        ("a\x00b", "non-printable"),
        ("a\u200bb", "non-printable"),  # zero-width space
        ("\ud800", "non-printable"),  # lone surrogate
        ("x" * (MAX_ID_BYTES + 1), "longer"),
        (10 ** (MAX_ID_BYTES + 1), "longer"),
        (True, "not bool"),
        (4.2, "not float"),
        (None, "not NoneType"),
        (b"bytes", "not bytes"),
    ],
)
def test_canonicalisation_refusals(raw: object, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        canonical_id(raw)  # type: ignore[arg-type]


def test_duplicates_after_canonicalisation_are_refused_by_row() -> None:
    with pytest.raises(InvalidArgumentError, match="rows 1 and 3") as caught:
        blind(SESSION, ["x", "Secret Name", "y", " secret  name"])
    assert "secret" not in str(caught.value).lower()
    with pytest.raises(InvalidArgumentError, match="rows 0 and 1"):
        canonical_ids([7, "7"])
    with pytest.raises(InvalidArgumentError, match="id at row 2: an id is empty"):
        canonical_ids(["a", "b", " "])


@given(value=st.integers())
def test_an_integer_matches_its_decimal_text(value: int) -> None:
    assert canonical_id(value) == canonical_id(str(value)) == str(value).encode()


@given(text=st.text(min_size=1, max_size=40))
def test_canonical_text_is_stable(text: str) -> None:
    try:
        canonical = canonical_id(text)
    except InvalidArgumentError:
        return
    assert canonical_id(canonical.decode()) == canonical
    assert canonical == canonical.strip() and b"  " not in canonical


def test_token_formula_is_the_documented_one(shares: list[KeyShare]) -> None:
    """token = SHA-256("mpc.v1.oprf.token" || len16(session) || session || len16(T) || T)[:16]."""
    point = other_point()
    framed = len(SESSION).to_bytes(2, "big") + SESSION + (32).to_bytes(2, "big") + point
    assert derive_token(SESSION, point) == hashlib.sha256(b"mpc.v1.oprf.token" + framed).digest()[:16]
    digest = hashlib.sha512(
        b"mpc.v1.oprf.hash-to-group" + framed[: 2 + len(SESSION)] + b"\x00\x03bob"
    ).digest()
    assert hash_to_group(SESSION, b"bob") == pysodium.crypto_core_ristretto255_from_hash(digest)
