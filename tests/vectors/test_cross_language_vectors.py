"""``cross_language.json`` is what mpc_core computes, and what exact arithmetic says.

The Node client checks itself against the same file (``clients/node/test``);
together the two sides pin every client to the Python reference. Each case is
checked twice here: against ``mpc_core`` and against an independent oracle
(exact rationals for fixed point, AES-ECB on counter blocks for the PRG).
"""

from __future__ import annotations

import hashlib
import json
import runpy
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mpc_core.errors import EncodingError
from mpc_core.fixed_point import FixedPoint
from mpc_core.prg import prg_words
from mpc_core.ring import RING_MODULUS, from_wire, to_wire
from mpc_core.sharing import reconstruct_checked, share_for_party

HERE = Path(__file__).parent
VECTORS = json.loads((HERE / "cross_language.json").read_text())
FIXED = VECTORS["fixed_point"]


def test_the_file_is_what_make_vectors_writes() -> None:
    generator = runpy.run_path(str(HERE / "make_vectors.py"))
    assert (HERE / "cross_language.json").read_text() == generator["render"](), (
        "stale vectors: run python tests/vectors/make_vectors.py"
    )


def test_the_file_covers_the_cases_it_promises() -> None:
    values = [case["value"] for case in FIXED["encode"]]
    halves = [v for v in values if (Fraction(v) * 2**16).denominator == 2]
    assert len(halves) >= 6
    assert any(v < 0 for v in values)
    assert any(abs(v) > 1e13 for v in values)
    sums = [sum(int(c) for c in case["components"]) for case in VECTORS["reconstruct"]]
    assert any(total >= RING_MODULUS for total in sums), "no wraparound case"


@pytest.mark.parametrize("case", FIXED["encode"], ids=lambda c: repr(c["value"]))
def test_encoding(case: dict) -> None:
    expected = int(case["encoded_u64"])
    encoded = FixedPoint(FIXED["fractional_bits"]).encode(np.array([case["value"]]))
    assert int(encoded[0]) == expected
    # Oracle: Python's round() on an exact rational rounds half to even, like numpy.rint.
    assert round(Fraction(case["value"]) * 2 ** FIXED["fractional_bits"]) % RING_MODULUS == expected


@pytest.mark.parametrize("text", FIXED["refuse"])
def test_refused_values(text: str) -> None:
    with pytest.raises(EncodingError):
        FixedPoint(FIXED["fractional_bits"]).encode(np.array([float(text)]))


@pytest.mark.parametrize("case", FIXED["decode"], ids=lambda c: c["encoded_u64"])
def test_decoding(case: dict) -> None:
    word = np.array([int(case["encoded_u64"])], dtype=np.uint64)
    assert float(FixedPoint(case["fractional_bits"]).decode(word)[0]) == case["value"]
    signed = int(case["encoded_u64"]) - (RING_MODULUS if int(case["encoded_u64"]) >= 2**63 else 0)
    assert float(signed) / 2 ** case["fractional_bits"] == case["value"]


@pytest.mark.parametrize("case", VECTORS["reconstruct"], ids=lambda c: c["secret_u64"])
def test_reconstruction(case: dict) -> None:
    components = [np.array([int(c)], dtype=np.uint64) for c in case["components"]]
    shares = [share_for_party(components, party) for party in (0, 1, 2)]
    secret = reconstruct_checked(shares)
    assert int(secret[0]) == int(case["secret_u64"]) == sum(int(c) for c in case["components"]) % RING_MODULUS
    assert float(FixedPoint(16).decode(secret)[0]) == case["value_f16"]


@pytest.mark.parametrize("case", VECTORS["prg"], ids=lambda c: c["seed_hex"])
def test_prg(case: dict) -> None:
    seed, expected = bytes.fromhex(case["seed_hex"]), [int(w) for w in case["words"]]
    assert [int(w) for w in prg_words(seed, len(expected))] == expected
    # Oracle: AES-128 of the big-endian counter blocks 0, 1, 2, ..., read as little-endian u64.
    blocks = b"".join(i.to_bytes(16, "big") for i in range((len(expected) + 1) // 2))
    ecb = Cipher(algorithms.AES(seed), modes.ECB()).encryptor()  # the CTR keystream, spelled out
    stream = ecb.update(blocks) + ecb.finalize()
    assert [int.from_bytes(stream[8 * i : 8 * i + 8], "little") for i in range(len(expected))] == expected


@pytest.mark.parametrize("case", VECTORS["seeded_split"])
def test_seeded_split(case: dict) -> None:
    secret = np.array([int(w) for w in case["secret_u64"]], dtype=np.uint64)
    x_0 = prg_words(bytes.fromhex(case["seed_0_hex"]), secret.size)
    x_1 = prg_words(bytes.fromhex(case["seed_1_hex"]), secret.size)
    x_2 = np.array([int(w) for w in case["x_2"]], dtype=np.uint64)
    assert np.array_equal(secret - x_0 - x_1, x_2)
    assert np.array_equal(x_0 + x_1 + x_2, secret)


@pytest.mark.parametrize("case", VECTORS["wire"], ids=lambda c: str(len(c["words"])))
def test_wire_encoding(case: dict) -> None:
    words = np.array([int(w) for w in case["words"]], dtype=np.uint64)
    data = to_wire(words)
    assert data.hex() == case["hex"]
    assert data == b"".join(int(w).to_bytes(8, "little") for w in case["words"])
    assert hashlib.sha256(data).hexdigest() == case["sha256_hex"]
    assert np.array_equal(from_wire(data), words)
