"""``cross_language.json`` is what mpc_core computes, and what exact arithmetic says, in both rings.

The Node client checks itself against the same file (``clients/node/test``);
together the two sides pin every client to the Python reference. Each case is
checked twice here: against ``mpc_core`` and against an independent oracle
(exact rationals and Python ints modulo 2^k for fixed point, sharing and the
wire; AES-ECB on counter blocks for the PRG).
"""

from __future__ import annotations

import hashlib
import json
import runpy
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mpc_core.errors import EncodingError
from mpc_core.fixed_point import FixedPoint, default_fractional_bits
from mpc_core.prg import prg_elements
from mpc_core.ring import Ring, ring_for_bits
from mpc_core.sharing import ReplicatedShare, reconstruct_checked, share_for_party

HERE = Path(__file__).parent
VECTORS = json.loads((HERE / "cross_language.json").read_text())
SECTIONS: dict[int, dict[str, Any]] = {section["ring_bits"]: section for section in VECTORS["rings"]}
BITS = sorted(SECTIONS)


def _cases(kind: str, sub: str | None = None) -> list[Any]:
    """(ring bits, case) for every case of ``kind`` (or ``kind[sub]``) in every ring, for parametrize."""
    found = []
    for bits in BITS:
        items = SECTIONS[bits][kind] if sub is None else SECTIONS[bits][kind][sub]
        found += [pytest.param(bits, case, id=f"Z2^{bits}-{i}") for i, case in enumerate(items)]
    return found


def _signed(bits: int, value: int) -> int:
    """The signed view of an unsigned ``value`` in Z_2^bits (the oracle's decoding)."""
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


def _elements(ring: Ring, decimals: list[str]) -> Any:
    return ring.from_ints([int(d) for d in decimals])


def _oracle_magnitude(values: list[float], f: int) -> int:
    """The least m >= 0 with max |round(v * 2^f)| <= 2^m, by counting."""
    largest = max(abs(round(Fraction(v) * 2**f)) for v in values)
    m = 0
    while largest > 1 << m:
        m += 1
    return m


def test_the_file_is_what_make_vectors_writes() -> None:
    generator = runpy.run_path(str(HERE / "make_vectors.py"))
    assert (HERE / "cross_language.json").read_text() == generator["render"](), (
        "stale vectors: run .venv/bin/python tests/vectors/make_vectors.py"
    )


def test_both_rings_at_their_default_scales() -> None:
    assert BITS == [64, 128]
    for bits, section in SECTIONS.items():
        ring = ring_for_bits(bits)
        assert section["ring"] == f"RING_Z2_{bits}"
        assert section["element_bytes"] == ring.element_bytes == bits // 8
        assert section["fixed_point"]["fractional_bits"] == default_fractional_bits(ring)


@pytest.mark.parametrize("bits", BITS)
def test_the_file_covers_the_cases_it_promises(bits: int) -> None:
    section = SECTIONS[bits]
    f = section["fixed_point"]["fractional_bits"]
    values = [case["value"] for case in section["fixed_point"]["encode"]]
    halves = [v for v in values if (Fraction(v) * 2**f).denominator == 2]
    assert len(halves) >= 6
    assert any(v < 0 for v in values)
    assert any(-1 < v < 0 and round(Fraction(v) * 2**f) != 0 for v in values), "no small negative"
    assert any(abs(round(Fraction(v) * 2**f)) >= 2 ** (bits - 2) for v in values), "no value near the range"
    if bits == 128:
        assert sum(abs(v) * 2**f >= 2**63 for v in values) >= 6, "too few values beyond 2^63 units"
    sums = [sum(int(c) for c in case["components"]) for case in section["reconstruct"]]
    assert any(total >= 1 << bits for total in sums), "no wraparound case"
    assert len(section["fixed_point"]["refuse"]) >= 6
    assert len(section["fixed_point"]["magnitude_bits"]) >= 8


@pytest.mark.parametrize(("bits", "case"), _cases("fixed_point", "encode"))
def test_encoding(bits: int, case: dict[str, Any]) -> None:
    ring = ring_for_bits(bits)
    f = SECTIONS[bits]["fixed_point"]["fractional_bits"]
    expected = int(case["encoded"])
    encoded, magnitude = FixedPoint(f, ring).encode_bounded(np.array([case["value"]]))
    assert ring.to_ints(encoded, signed=False) == [expected]
    assert magnitude == case["magnitude_bits"]
    # Oracle: Python's round() on an exact rational rounds half to even, like numpy.rint.
    assert round(Fraction(case["value"]) * 2**f) % (1 << bits) == expected
    assert _oracle_magnitude([case["value"]], f) == case["magnitude_bits"]


@pytest.mark.parametrize("bits", BITS)
def test_encoding_all_at_once(bits: int) -> None:
    ring, fixed = ring_for_bits(bits), SECTIONS[bits]["fixed_point"]
    encoded = FixedPoint(fixed["fractional_bits"], ring).encode(
        np.array([c["value"] for c in fixed["encode"]])
    )
    assert [str(e) for e in ring.to_ints(encoded, signed=False)] == [c["encoded"] for c in fixed["encode"]]


@pytest.mark.parametrize(("bits", "case"), _cases("fixed_point", "magnitude_bits"))
def test_magnitude_bits(bits: int, case: dict[str, Any]) -> None:
    ring = ring_for_bits(bits)
    f = SECTIONS[bits]["fixed_point"]["fractional_bits"]
    encoded, magnitude = FixedPoint(f, ring).encode_bounded(np.array(case["values"]))
    assert [str(e) for e in ring.to_ints(encoded, signed=False)] == case["encoded"]
    assert magnitude == case["magnitude_bits"] == _oracle_magnitude(case["values"], f)
    largest = max(abs(v) for v in ring.to_ints(encoded))
    assert largest <= 1 << magnitude
    assert magnitude == 0 or largest > 1 << (magnitude - 1)


@pytest.mark.parametrize(
    ("bits", "text"), [(b, t) for b in BITS for t in SECTIONS[b]["fixed_point"]["refuse"]]
)
def test_refused_values(bits: int, text: str) -> None:
    f = SECTIONS[bits]["fixed_point"]["fractional_bits"]
    with pytest.raises(EncodingError):
        FixedPoint(f, ring_for_bits(bits)).encode(np.array([0.0, 1.5, float(text)]))
    value = float(text)
    if np.isfinite(value):  # the oracle: out of the signed range
        assert abs(round(Fraction(value) * 2**f)) >= 1 << (bits - 1)


@pytest.mark.parametrize(("bits", "case"), _cases("fixed_point", "decode"))
def test_decoding(bits: int, case: dict[str, Any]) -> None:
    ring = ring_for_bits(bits)
    element = ring.from_ints([int(case["encoded"])])
    assert float(FixedPoint(case["fractional_bits"], ring).decode(element)[0]) == case["value"]
    # Oracle: the correctly rounded quotient of the signed value by 2^f.
    exact = Fraction(_signed(bits, int(case["encoded"])), 2 ** case["fractional_bits"])
    assert float(exact) == case["value"]


@pytest.mark.parametrize(("bits", "case"), _cases("reconstruct"))
def test_reconstruction(bits: int, case: dict[str, Any]) -> None:
    ring = ring_for_bits(bits)
    components = [ring.from_ints([int(c)]) for c in case["components"]]
    shares = [share_for_party(components, party) for party in (0, 1, 2)]
    secret = reconstruct_checked(shares)
    total = sum(int(c) for c in case["components"]) % (1 << bits)
    assert ring.to_ints(secret, signed=False) == [int(case["secret"])] == [total]
    assert float(FixedPoint(case["fractional_bits"], ring).decode(secret)[0]) == case["value"]
    assert float(Fraction(_signed(bits, total), 2 ** case["fractional_bits"])) == case["value"]


@pytest.mark.parametrize(("bits", "case"), _cases("prg"))
def test_prg(bits: int, case: dict[str, Any]) -> None:
    ring = ring_for_bits(bits)
    seed, expected = bytes.fromhex(case["seed_hex"]), [int(e) for e in case["elements"]]
    assert ring.to_ints(prg_elements(ring, seed, len(expected)), signed=False) == expected
    # Oracle: AES-128 of the big-endian counter blocks 0, 1, 2, ..., each element its
    # element_bytes consecutive keystream bytes read as a little-endian integer.
    size = ring.element_bytes
    blocks = b"".join(i.to_bytes(16, "big") for i in range((len(expected) * size + 15) // 16))
    ecb = Cipher(algorithms.AES(seed), modes.ECB()).encryptor()  # the CTR keystream, spelled out
    stream = ecb.update(blocks) + ecb.finalize()
    assert [
        int.from_bytes(stream[size * i : size * (i + 1)], "little") for i in range(len(expected))
    ] == expected
    # A longer expansion starts with the same elements.
    longer = ring.to_ints(prg_elements(ring, seed, 1000), signed=False)
    assert longer[: len(expected)] == expected


@pytest.mark.parametrize(("bits", "case"), _cases("seeded_split"))
def test_seeded_split(bits: int, case: dict[str, Any]) -> None:
    ring, m = ring_for_bits(bits), 1 << bits
    f = case["fractional_bits"]
    secret, magnitude = FixedPoint(f, ring).encode_bounded(np.array(case["values"]))
    assert [str(e) for e in ring.to_ints(secret, signed=False)] == case["secret"]
    assert magnitude == case["magnitude_bits"] == _oracle_magnitude(case["values"], f)
    n = len(case["secret"])
    seed_0, seed_1 = bytes.fromhex(case["seed_0_hex"]), bytes.fromhex(case["seed_1_hex"])
    x_0, x_1 = prg_elements(ring, seed_0, n), prg_elements(ring, seed_1, n)
    assert [str(e) for e in ring.to_ints(x_0, signed=False)] == case["x_0"]
    assert [str(e) for e in ring.to_ints(x_1, signed=False)] == case["x_1"]
    x_2 = ring.sub(ring.sub(secret, x_0), x_1)
    assert [str(e) for e in ring.to_ints(x_2, signed=False)] == case["x_2"]
    # Oracle: x_2 = secret - x_0 - x_1 modulo 2^k in Python ints.
    ints = [[int(e) for e in case[key]] for key in ("secret", "x_0", "x_1", "x_2")]
    assert [(s - a - b) % m for s, a, b in zip(*ints[:3], strict=True)] == ints[3]

    # What each server receives: seeds in the header, chunks only for components without one.
    expanded = {"": None, seed_0.hex(): x_0, seed_1.hex(): x_1}
    pairs = []
    for party, server in enumerate(case["servers"]):
        assert server["party"] == party
        parts = []
        for seed_key, data_key in (("first_seed_hex", "first"), ("second_seed_hex", "second")):
            seeded = expanded[server[seed_key]]
            assert (seeded is None) == bool(server[data_key]), "a seeded component travels empty"
            parts.append(seeded if seeded is not None else _elements(ring, server[data_key]))
        pairs.append(ReplicatedShare(parts[0], parts[1]))
    secret_back = reconstruct_checked(pairs)
    assert (
        [str(e) for e in ring.to_ints(secret_back, signed=False)] == case["reconstructed"] == case["secret"]
    )
    assert [float(v) for v in FixedPoint(f, ring).decode(secret_back)] == case["decoded"]
    assert [float(Fraction(_signed(bits, int(e)), 2**f)) for e in case["reconstructed"]] == case["decoded"]


@pytest.mark.parametrize(("bits", "case"), _cases("wire"))
def test_wire_encoding(bits: int, case: dict[str, Any]) -> None:
    ring = ring_for_bits(bits)
    elements = [int(e) for e in case["elements"]]
    data = ring.to_wire(ring.from_ints(elements)) if elements else b""
    assert data.hex() == case["hex"]
    # Oracle: each element's little-endian bytes, back to back.
    assert data == b"".join(e.to_bytes(bits // 8, "little") for e in elements)
    if bits == 128:  # equivalently: the low 64-bit word, then the high word, each little-endian
        words = b"".join(
            (e & (2**64 - 1)).to_bytes(8, "little") + (e >> 64).to_bytes(8, "little") for e in elements
        )
        assert data == words
    assert hashlib.sha256(data).hexdigest() == case["sha256_hex"]
    assert ring.to_ints(ring.from_wire(bytes.fromhex(case["hex"])), signed=False) == elements


def test_the_worked_wire_example_of_the_api_guide() -> None:
    (case,) = [c for c in SECTIONS[128]["wire"] if c["elements"] == [str(0x0102030405060708090A0B0C0D0E0F10)]]
    assert case["hex"] == "100f0e0d0c0b0a09" + "0807060504030201"
    assert (
        "10 0f 0e 0d 0c 0b 0a 09  08 07 06 05 04 03 02 01"
        in (HERE.parents[1] / "docs" / "api.md").read_text()
    )


GRANTS = VECTORS["grants"]


@pytest.mark.parametrize("case", GRANTS["cases"], ids=lambda c: c["about"])
def test_the_server_reads_each_wire_grant_as_it_was_meant(case: dict[str, Any]) -> None:
    """The server's reading of the wire grant allows exactly the job the SDK user described."""
    from mpc_proto.v1 import types_pb2
    from mpc_server.api.convert import grant_from_proto
    from mpc_server.service.grants import GrantScope

    wire = case["wire"]
    message = types_pb2.Grant(
        receiver=wire["receiver"],
        program=wire["program"],
        role=wire["role"],
        scope=types_pb2.GrantScope.Value(wire["scope"]),
        inputs=[
            types_pb2.PinnedInput(
                role=p["role"],
                dataset=types_pb2.DatasetRef(owner=p["owner"], name=p["name"]),
                upload_id=bytes.fromhex(p["upload_id"]),
                columns=p["columns"],
            )
            for p in wire["inputs"]
        ],
        submitters=wire["submitters"],
        max_uses=wire["max_uses"],
        expires_at=wire["expires_at"],
        grant_id=bytes.fromhex(wire["grant_id"]),
    )
    grant = grant_from_proto(message)
    spec = case["grant"]
    assert grant.grant_id.hex() == spec.get("grant_id", GRANTS["default_grant_id"])
    assert (grant.receiver, grant.program) == (spec["receiver"], spec["program"])
    expected_scope = (
        GrantScope.PINNED
        if "pinned" in spec
        else GrantScope.ANY_INPUTS
        if spec.get("read_access")
        else GrantScope.OWN_DATA
    )
    assert grant.scope is expected_scope
    assert grant.may_submit == tuple(spec.get("submitters", ())) or (spec["receiver"],)
    assert grant.max_uses == spec.get("max_uses", 0) and grant.expires_at == spec.get("expires_at", 0.0)
    if "pinned" in spec:
        named = [
            (role, ref)
            for role, refs in spec["pinned"].items()
            for ref in ([refs] if isinstance(refs, str) else refs)
        ]
        assert [pin.role for pin in grant.inputs] == [role for role, _ in named]
        for pin, (_, pinned) in zip(grant.inputs, named, strict=True):
            ref, _, selected = pinned.partition("#")
            assert pin.columns == (tuple(selected.split(",")) if selected else ())
            text, _, version = ref.partition("@")
            own = text in ("self", "income", "bank-1/income")
            assert str(pin.dataset) == ("bank-1/income" if own else text if "/" in text else f"bank-1/{text}")
            assert pin.upload_id.hex() == ("" if own else version)
