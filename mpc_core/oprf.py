"""Distributed Diffie-Hellman OPRF that turns customer ids into join tokens.

Group: ristretto255 (prime order ``GROUP_ORDER``) through libsodium's
``crypto_core_ristretto255_*`` and ``crypto_scalarmult_ristretto255`` via
``pysodium``; no curve arithmetic is written here. libsodium refuses
non-canonical encodings, points off the group and identity results.

The key ``k = k_0 + k_1 + k_2 (mod GROUP_ORDER)`` is replicated like ring
shares: server i holds ``(k_i, k_{i+1})``; the two holders of component j
(parties j and j-1) derive it from their pairwise key k_j and a per-session
tag (:func:`derive_key_share`), without communicating.

Owner: :func:`blind` canonicalises ids, refuses duplicates, hashes each to
``P = from_hash(SHA-512(domain, session, id))`` and sends ``B = r P`` (r fresh
per element); server i returns :func:`evaluate_share` = ``(k_i B, k_{i+1} B)``;
:func:`finalize` checks both copies of each component (naming the two servers
otherwise), unblinds ``T = r^-1 (k_0 B + k_1 B + k_2 B) = k P``, returns tokens
``SHA-256(domain, session, T)[:16]``. Compact variant: server 0 multiplies by
``2k_0 + k_1``, 1 by ``k_1 + 2k_2``, 2 by ``k_0 - k_2``; the owner takes ``kB =
v_1 + v_2`` and checks ``v_0 = kB + v_2`` (:func:`blame_compact` names a liar).

:func:`canonical_id`: an ``int`` (not ``bool``) becomes its decimal string
(``42`` matches ``"42"``); text is NFKC-normalised, case-folded, NFKC again,
whitespace runs become one space, ends trimmed. Refused: other types, empty
results, non-printable characters (controls, zero-width and other format
characters, surrogates), more than ``MAX_ID_BYTES`` UTF-8 bytes. Formats
(phone numbers, leading zeros) are the caller's business. Owners upload rows
in a fresh :func:`random_permutation` order.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from mpc_core.errors import InvalidArgumentError, MpcError, OutputIntegrityError, ProtocolError
from mpc_core.prg import SecretKey, prf_words
from mpc_core.types import PARTIES, PartyId, next_party, party_id, prev_party

try:
    import pysodium
except ValueError as _exc:  # pysodium raises ValueError when libsodium is missing
    raise ImportError("mpc_core.oprf needs libsodium >= 1.0.18 (Debian: libsodium23)") from _exc

_mul: Callable[[bytes, bytes], bytes] = pysodium.crypto_scalarmult_ristretto255
_add: Callable[[bytes, bytes], bytes] = pysodium.crypto_core_ristretto255_add
_sub: Callable[[bytes, bytes], bytes] = pysodium.crypto_core_ristretto255_sub
_reduce: Callable[[bytes], bytes] = pysodium.crypto_core_ristretto255_scalar_reduce
_scalar_add: Callable[[bytes, bytes], bytes] = pysodium.crypto_core_ristretto255_scalar_add
_scalar_mul: Callable[[bytes, bytes], bytes] = pysodium.crypto_core_ristretto255_scalar_mul
_scalar_neg: Callable[[bytes], bytes] = pysodium.crypto_core_ristretto255_scalar_negate
_scalar_invert: Callable[[bytes], bytes] = pysodium.crypto_core_ristretto255_scalar_invert

GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493
POINT_BYTES = 32
SCALAR_BYTES = 32
TOKEN_BYTES = 16
MAX_ID_BYTES = 1024
MAX_SESSION_BYTES = 255
_HASH_DOMAIN = b"mpc.v1.oprf.hash-to-group"
_TOKEN_DOMAIN = b"mpc.v1.oprf.token"
_KEY_DOMAIN = b"mpc.v1.oprf.key"
_NAMES = ("0", "1", "2")
Points = Sequence[bytes]
Names = Sequence[str]


class CompactCheckError(MpcError):
    """Compact evaluations do not fit together: one of the three servers is wrong."""

    grpc_status: ClassVar[str] = "DATA_LOSS"

    def __init__(self, positions: Sequence[int]) -> None:
        """Record the element positions whose check failed."""
        self.positions = tuple(positions)
        count, first = len(self.positions), self.positions[0]
        super().__init__(f"OPRF evaluations of {count} elements (first: {first}) do not fit together")


def _frame(*parts: bytes) -> bytes:
    return b"".join(len(part).to_bytes(2, "big") + part for part in parts)


def _session(session: bytes) -> bytes:
    if not isinstance(session, bytes) or not 0 < len(session) <= MAX_SESSION_BYTES:
        raise InvalidArgumentError(f"OPRF session ids are 1 to {MAX_SESSION_BYTES} bytes")
    return session


def is_point(value: object) -> bool:
    """Whether ``value`` is the canonical encoding of a non-identity group element."""
    if type(value) is not bytes or len(value) != POINT_BYTES or not any(value):
        return False  # length first: libsodium reads 32 bytes; all zeros encode the identity
    return bool(pysodium.crypto_core_ristretto255_is_valid_point(value))


def canonical_id(value: str | int) -> bytes:
    """The canonical UTF-8 bytes of a customer id (rules in the module docstring)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidArgumentError(f"ids are str or int, not {type(value).__name__}")
    if isinstance(value, int) and value.bit_length() > 4 * MAX_ID_BYTES:
        raise InvalidArgumentError(f"an id is longer than {MAX_ID_BYTES} bytes")
    text = unicodedata.normalize("NFKC", str(value))
    text = " ".join(unicodedata.normalize("NFKC", text.casefold()).split())
    if not text:
        raise InvalidArgumentError("an id is empty after canonicalisation")
    if not text.isprintable():
        raise InvalidArgumentError("an id contains non-printable characters")
    data = text.encode("utf-8")
    if len(data) > MAX_ID_BYTES:
        raise InvalidArgumentError(f"an id is longer than {MAX_ID_BYTES} bytes")
    return data


def hash_to_group(session: bytes, canonical: bytes) -> bytes:
    """``P = from_hash(SHA-512(domain, session, canonical))``, a group element."""
    digest = hashlib.sha512(_HASH_DOMAIN + _frame(_session(session), canonical)).digest()
    point: bytes = pysodium.crypto_core_ristretto255_from_hash(digest)
    return point


def derive_token(session: bytes, point: bytes) -> bytes:
    """``SHA-256(domain, session, T)[:16]`` for an unblinded OPRF output ``T``."""
    if type(point) is not bytes or len(point) != POINT_BYTES:
        raise InvalidArgumentError(f"group elements are {POINT_BYTES} bytes")
    return hashlib.sha256(_TOKEN_DOMAIN + _frame(_session(session), point)).digest()[:TOKEN_BYTES]


class KeyComponent:
    """One additive component ``k_j`` of the OPRF key; redacted in ``repr``."""

    __slots__ = ("index", "scalar")

    def __init__(self, index: int, scalar: bytes) -> None:
        """Wrap a canonical, non-zero 32-byte little-endian scalar."""
        self.index = party_id(index)
        if type(scalar) is not bytes or len(scalar) != SCALAR_BYTES:
            raise InvalidArgumentError(f"scalars are {SCALAR_BYTES} bytes")
        if not 0 < int.from_bytes(scalar, "little") < GROUP_ORDER:
            raise InvalidArgumentError("key components are non-zero scalars below the group order")
        self.scalar = scalar

    def __repr__(self) -> str:
        """Redact the scalar."""
        return f"KeyComponent({self.index}, <redacted>)"


@dataclass(frozen=True, repr=False)
class KeyShare:
    """Server ``party``'s key material: ``first`` = k_i, ``second`` = k_{i+1}."""

    party: PartyId
    first: KeyComponent
    second: KeyComponent

    def __repr__(self) -> str:
        """Redact both components."""
        return f"KeyShare(party={self.party}, <redacted>)"


def derive_component(key: SecretKey, index: int, tag: bytes) -> KeyComponent:
    """Component ``index`` from pairwise key k_index and session ``tag``; equal at both holders."""
    material = prf_words(key, _KEY_DOMAIN + _frame(tag), 8).astype("<u8").tobytes()
    digest = hashlib.sha512(_KEY_DOMAIN + bytes([party_id(index)]) + _frame(tag, material)).digest()
    scalar = _reduce(digest)
    if not any(scalar):
        raise InvalidArgumentError("derived a zero OPRF key component; use a fresh tag")
    return KeyComponent(index, scalar)


def derive_key_share(own: SecretKey, next_key: SecretKey, party: PartyId, tag: bytes) -> KeyShare:
    """Server ``party``'s share ``(k_i, k_{i+1})`` from its pairwise keys ``(own, next)``."""
    first = derive_component(own, party, tag)
    return KeyShare(party, first, derive_component(next_key, next_party(party), tag))


@dataclass(frozen=True, repr=False)
class Blinding:
    """An owner's request: public ``elements``; secret ``inverses[i]`` unblinds element i."""

    session: bytes
    elements: list[bytes]
    inverses: list[bytes]

    def __repr__(self) -> str:
        """Show the size only."""
        return f"Blinding(size={len(self.elements)}, <redacted>)"


def random_scalar() -> bytes:
    """A uniform non-zero scalar from the OS CSPRNG (64 bytes reduced mod the order)."""
    while True:
        scalar = _reduce(secrets.token_bytes(64))
        if any(scalar):
            return scalar


def _batch_invert(scalars: list[bytes]) -> list[bytes]:
    """Inverses of non-zero scalars with one inversion (Montgomery's trick)."""
    if not scalars:
        return []
    prefix = [scalars[0]]
    for scalar in scalars[1:]:
        prefix.append(_scalar_mul(prefix[-1], scalar))
    running = _scalar_invert(prefix[-1])
    out = [b""] * len(scalars)
    for position in range(len(scalars) - 1, 0, -1):
        out[position] = _scalar_mul(running, prefix[position - 1])
        running = _scalar_mul(running, scalars[position])
    out[0] = running
    return out


def canonical_ids(ids: Sequence[str | int]) -> list[bytes]:
    """Canonicalise ``ids``; refuse duplicates after canonicalisation (rows named, not values)."""
    seen: dict[bytes, int] = {}
    out = []
    for row, value in enumerate(ids):
        try:
            canonical = canonical_id(value)
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(f"id at row {row}: {exc}") from None
        if canonical in seen:
            raise InvalidArgumentError(f"ids at rows {seen[canonical]} and {row} are equal once canonical")
        seen[canonical] = row
        out.append(canonical)
    return out


def blind(session: bytes, ids: Sequence[str | int]) -> Blinding:
    """Canonicalise, hash and blind ``ids`` with a fresh scalar per element."""
    return blind_canonical(session, canonical_ids(ids))


def blind_canonical(session: bytes, canonical: Sequence[bytes]) -> Blinding:
    """Hash and blind canonical ids (:func:`canonical_ids`), a fresh scalar per element."""
    _session(session)
    scalars = [random_scalar() for _ in canonical]
    elements = [_mul(r, hash_to_group(session, c)) for r, c in zip(scalars, canonical, strict=True)]
    return Blinding(session, elements, _batch_invert(scalars))


def evaluate_scalar(scalar: bytes, elements: Points) -> list[bytes]:
    """``scalar * B`` for every blinded element, each validated (position named if bad)."""
    out = []
    for position, element in enumerate(elements):
        if type(element) is not bytes or len(element) != POINT_BYTES:
            raise InvalidArgumentError(f"blinded element {position} is not {POINT_BYTES} bytes")
        try:
            out.append(_mul(scalar, element))
        except ValueError:
            raise InvalidArgumentError(f"blinded element {position} is not a group element") from None
    return out


def evaluate(component: KeyComponent, elements: Points) -> list[bytes]:
    """``k_j * B`` for every blinded element (each validated by libsodium)."""
    return evaluate_scalar(component.scalar, elements)


@dataclass(frozen=True, repr=False)
class Evaluation:
    """Server i's answer: ``first[n] = k_i B_n`` and ``second[n] = k_{i+1} B_n``."""

    first: list[bytes]
    second: list[bytes]

    def __repr__(self) -> str:
        """Show the sizes only."""
        return f"Evaluation(size={len(self.first)})"


def evaluate_share(share: KeyShare, elements: Points) -> Evaluation:
    """Server ``share.party``'s evaluation under both components it holds."""
    return Evaluation(evaluate(share.first, elements), evaluate(share.second, elements))


def _check_lists(lists: Sequence[Points], servers: Sequence[int], size: int, names: Names) -> None:
    """Each server sent ``size`` 32-byte values; else a ProtocolError names it."""
    if len(names) != len(PARTIES):
        raise InvalidArgumentError(f"need {len(PARTIES)} server names, got {len(names)}")
    for values, server in zip(lists, servers, strict=True):
        if len(values) != size or any(type(v) is not bytes or len(v) != POINT_BYTES for v in values):
            raise ProtocolError(f"server {names[server]} did not return {size} evaluations")


def checked_components(evaluations: Sequence[Evaluation], size: int, names: Names = _NAMES) -> list[Points]:
    """The three components ``k_j B``, after checking that both copies of each agree.

    Raises:
        OutputIntegrityError: naming the two servers whose copies differ.
    """
    if len(evaluations) != len(PARTIES):
        raise InvalidArgumentError(f"need {len(PARTIES)} evaluations, got {len(evaluations)}")
    lists = [part for evaluation in evaluations for part in (evaluation.first, evaluation.second)]
    _check_lists(lists, [p for p in PARTIES for _ in range(2)], size, names)
    for holder in PARTIES:
        other = next_party(holder)
        copy_a, copy_b = b"".join(evaluations[holder].second), b"".join(evaluations[other].first)
        if not hmac.compare_digest(copy_a, copy_b):
            what = f"evaluations of OPRF key component {other}"
            raise OutputIntegrityError((names[holder], names[other]), what)
    return [evaluations[party].first for party in PARTIES]


def _sum3(components: Sequence[Points], position: int, names: Names) -> bytes:
    try:
        return _add(_add(components[0][position], components[1][position]), components[2][position])
    except ValueError:
        index = next((j for j in PARTIES if not is_point(components[j][position])), PARTIES[0])
    what = f"evaluations of OPRF key component {index}: element {position} is not a group element"
    raise OutputIntegrityError((names[prev_party(index)], names[index]), what)


def _tokens(blinding: Blinding, combined: list[bytes]) -> list[bytes]:
    tokens = []
    for position, (inverse, point) in enumerate(zip(blinding.inverses, combined, strict=True)):
        try:
            tokens.append(derive_token(blinding.session, _mul(inverse, point)))
        except ValueError:
            raise ProtocolError(f"the OPRF evaluations of element {position} sum to the identity") from None
    return tokens


def finalize(blinding: Blinding, evaluations: Sequence[Evaluation], names: Names = _NAMES) -> list[bytes]:
    """Check, combine and unblind the three servers' evaluations into tokens (input order)."""
    size = len(blinding.elements)
    components = checked_components(evaluations, size, names)
    combined = [_sum3(components, position, names) for position in range(size)]
    return _tokens(blinding, combined)


def compact_scalar(share: KeyShare) -> bytes:
    """Server i's one compact scalar: ``2k_0 + k_1``, ``k_1 + 2k_2`` or ``k_0 - k_2``."""
    first, second = share.first.scalar, share.second.scalar
    if share.party == 0:
        return _scalar_add(_scalar_add(first, first), second)
    if share.party == 1:
        return _scalar_add(first, _scalar_add(second, second))
    return _scalar_add(second, _scalar_neg(first))


def evaluate_compact(share: KeyShare, elements: Points) -> list[bytes]:
    """Server ``share.party``'s compact evaluation: one scalar multiplication per element."""
    return evaluate_scalar(compact_scalar(share), elements)


def _compact_combine(v0: bytes, v1: bytes, v2: bytes) -> bytes | None:
    """``kB = v_1 + v_2`` if ``v_0 = kB + v_2``, else ``None``."""
    try:
        combined = _add(v1, v2)
        expected = _add(combined, v2)
    except ValueError:
        return None
    return combined if hmac.compare_digest(expected, v0) else None


def finalize_compact(blinding: Blinding, values: Sequence[Points], names: Names = _NAMES) -> list[bytes]:
    """Check, combine and unblind compact evaluations (``values[i]`` from server i).

    Raises:
        CompactCheckError: with the positions whose check failed (see :func:`blame_compact`).
    """
    if len(values) != len(PARTIES):
        raise InvalidArgumentError(f"need {len(PARTIES)} evaluations, got {len(values)}")
    _check_lists(values, PARTIES, len(blinding.elements), names)
    combined = [_compact_combine(*triple) for triple in zip(*values, strict=True)]
    failed = [position for position, point in enumerate(combined) if point is None]
    if failed:
        raise CompactCheckError(failed)
    return _tokens(blinding, [point for point in combined if point is not None])


def blame_compact(
    values: Sequence[Points], evaluations: Sequence[Evaluation], names: Names = _NAMES
) -> tuple[str, ...]:
    """Names of the servers whose compact values are wrong, from full evaluations of the same elements.

    Raises:
        OutputIntegrityError: when the full evaluations' copies already disagree (naming that pair).
    """
    size = len(evaluations[0].first) if evaluations else 0
    c0, c1, c2 = checked_components(evaluations, size, names)
    _check_lists(values, PARTIES, size, names)
    wrong: set[str] = set()
    for n in range(size):
        expected = (_add(_add(c0[n], c0[n]), c1[n]), _add(_add(c1[n], c2[n]), c2[n]), _sub(c0[n], c2[n]))
        wrong.update(names[i] for i in PARTIES if not hmac.compare_digest(values[i][n], expected[i]))
    return tuple(sorted(wrong))
