"""Write ``cross_language.json``: test vectors every client implementation must reproduce.

Run from the repository root (after changing the fixed-point, sharing or PRG rules)::

    python tests/vectors/make_vectors.py

The values come from ``mpc_core`` itself; ``test_cross_language_vectors.py``
checks the file against ``mpc_core`` and an exact-arithmetic oracle, and
``clients/node/test/vectors.test.js`` checks the Node client against it.
Integers in the ring travel as decimal strings (JSON numbers lose precision
above 2^53); seeds and bytes as lowercase hex.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mpc_core.fixed_point import FixedPoint
from mpc_core.prg import prg_words
from mpc_core.ring import RING_MODULUS, to_wire
from mpc_core.sharing import SeededSplit, reconstruct, share_for_party

PATH = Path(__file__).with_name("cross_language.json")
FRACTIONAL_BITS = 16
ULP = 2.0**-FRACTIONAL_BITS
HALF = 2.0 ** -(FRACTIONAL_BITS + 1)

ENCODE_VALUES: list[float] = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    -0.5,
    0.1,
    -0.1,
    1 / 3,
    -2 / 3,
    0.2731,
    -0.5912,
    1250.75,
    101234.56,
    -84381.01,
    65535.99999,
    1e-10,
    -1e-10,
    5e-324,
    ULP,
    -ULP,
    # exact halves of the last unit: numpy.rint rounds them to the even neighbour
    HALF,  # 0.5 -> 0
    3 * HALF,  # 1.5 -> 2
    5 * HALF,  # 2.5 -> 2
    7 * HALF,  # 3.5 -> 4
    -HALF,  # -0.5 -> -0 -> 0
    -3 * HALF,  # -1.5 -> -2
    -5 * HALF,  # -2.5 -> -2
    2.0**30 + HALF,  # 2^46 + 0.5 -> 2^46
    2.0**30 + 3 * HALF,  # 2^46 + 1.5 -> 2^46 + 2
    -(2.0**30) - 3 * HALF,
    # large, still in range: |v| < 2^(63 - f) = 2^47
    1e14,
    -1e14,
    123456789.123456789,
    2.0**47 - 2.0**-6,  # largest double below 2^47: encodes to 2^63 - 1024
    -(2.0**47) + 2.0**-6,
]

# Refused before anything is sent: not finite, or |round(v * 2^16)| >= 2^63.
REFUSED_VALUES = ["NaN", "Infinity", "-Infinity", "140737488355328", "-140737488355328", "1e15", "-1e300"]

# (encoded ring element, fractional bits): decoding is int64(u) / 2^f.
DECODE_CASES: list[tuple[int, int]] = [
    (0, 16),
    (65536, 16),
    (RING_MODULUS - 65536, 16),
    (1, 16),
    (RING_MODULUS - 1, 16),
    (2**63 - 1, 16),
    (2**63, 16),
    (3 * 2**31, 32),
    (RING_MODULUS - 5 * 2**30, 32),
    (2**63 - 1, 32),
]

PRG_SEEDS = [
    "00000000000000000000000000000000",
    "000102030405060708090a0b0c0d0e0f",
    "2b7e151628aed2a6abf7158809cf4f3c",
    "ffffffffffffffffffffffffffffffff",
]
PRG_WORDS = 7  # three and a half AES blocks: exercises a partial block


def _word(label: str, index: int) -> int:
    """A fixed, random-looking ring element (no randomness: the file is reproducible)."""
    return int.from_bytes(hashlib.sha256(f"{label}/{index}".encode()).digest()[:8], "little")


def _encode_cases() -> list[dict[str, Any]]:
    encoded = FixedPoint(FRACTIONAL_BITS).encode(np.array(ENCODE_VALUES))
    return [
        {"value": value, "encoded_u64": str(int(word))}
        for value, word in zip(ENCODE_VALUES, encoded, strict=True)
    ]


def _decode_cases() -> list[dict[str, Any]]:
    cases = []
    for word, bits in DECODE_CASES:
        value = float(FixedPoint(bits).decode(np.array([word], dtype=np.uint64))[0])
        cases.append({"encoded_u64": str(word), "fractional_bits": bits, "value": value})
    return cases


def _reconstruct_cases() -> list[dict[str, Any]]:
    triples = [
        (1, 2, 3),
        (RING_MODULUS - 1, 1, 0),  # wraps to 0
        (RING_MODULUS - 1, RING_MODULUS - 1, RING_MODULUS - 1),  # 3 * (2^64 - 1) wraps to 2^64 - 3
        (2**63, 2**63, 65536),  # wraps to 65536 = enc(1.0)
    ]
    triples += [(_word("r", 3 * i), _word("r", 3 * i + 1), _word("r", 3 * i + 2)) for i in range(4)]
    secret_for_minus_1_5 = RING_MODULUS - 98304  # enc(-1.5)
    x0, x1 = _word("neg", 0), _word("neg", 1)
    triples.append((x0, x1, (secret_for_minus_1_5 - x0 - x1) % RING_MODULUS))
    cases = []
    for triple in triples:
        components = [np.array([c], dtype=np.uint64) for c in triple]
        shares = [share_for_party(components, party) for party in (0, 1, 2)]
        secret = reconstruct(shares)
        value = float(FixedPoint(FRACTIONAL_BITS).decode(secret)[0])
        cases.append(
            {"components": [str(c) for c in triple], "secret_u64": str(int(secret[0])), "value_f16": value}
        )
    return cases


def _prg_cases() -> list[dict[str, Any]]:
    return [
        {"seed_hex": seed, "words": [str(int(w)) for w in prg_words(bytes.fromhex(seed), PRG_WORDS)]}
        for seed in PRG_SEEDS
    ]


def _seeded_split_cases() -> list[dict[str, Any]]:
    """x_2 = secret - prg(seed_0) - prg(seed_1) for fixed seeds."""
    secret = FixedPoint(FRACTIONAL_BITS).encode(np.array([1.0, -1.5, 101234.56, 0.0, -84381.01]))
    seed_0, seed_1 = bytes.fromhex(PRG_SEEDS[1]), bytes.fromhex(PRG_SEEDS[2])
    x_2 = secret - prg_words(seed_0, secret.size) - prg_words(seed_1, secret.size)
    split = SeededSplit(seed_0, seed_1, x_2)
    assert np.array_equal(sum(split.components()), secret)
    return [
        {
            "secret_u64": [str(int(w)) for w in secret],
            "seed_0_hex": seed_0.hex(),
            "seed_1_hex": seed_1.hex(),
            "x_2": [str(int(w)) for w in x_2],
        }
    ]


def _wire_cases() -> list[dict[str, Any]]:
    """Ring vectors as little-endian bytes, and the SHA-256 used by digest fetches."""
    vectors = [[], [1], [1, 2**64 - 1, 2**63, 0x0102030405060708], [_word("w", i) for i in range(5)]]
    cases = []
    for words in vectors:
        data = to_wire(np.array(words, dtype=np.uint64))
        cases.append(
            {
                "words": [str(w) for w in words],
                "hex": data.hex(),
                "sha256_hex": hashlib.sha256(data).hexdigest(),
            }
        )
    return cases


def build() -> dict[str, Any]:
    """The whole vector file as a JSON-ready dict."""
    return {
        "about": (
            "Cross-language test vectors for clients of the MPC service; generated by "
            "tests/vectors/make_vectors.py from mpc_core. Ring elements are decimal strings."
        ),
        "fixed_point": {
            "fractional_bits": FRACTIONAL_BITS,
            "encode": _encode_cases(),
            "refuse": REFUSED_VALUES,
            "decode": _decode_cases(),
        },
        "reconstruct": _reconstruct_cases(),
        "prg": _prg_cases(),
        "seeded_split": _seeded_split_cases(),
        "wire": _wire_cases(),
    }


def render() -> str:
    """The file's exact text."""
    return json.dumps(build(), indent=2) + "\n"


def main() -> int:
    """Write the file next to this script."""
    PATH.write_text(render())
    print(f"wrote {PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
