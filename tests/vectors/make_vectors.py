"""Write ``cross_language.json``: test vectors every client implementation must reproduce.

Run from the repository root (after changing the fixed-point, sharing or PRG rules)::

    .venv/bin/python tests/vectors/make_vectors.py

The file has one section per ring (``rings``: Z_2^64 at f = 16, Z_2^128 at
f = 32, the two rings' default scales), each with the same kinds of case:
fixed-point encodings (with the magnitude bits of what was encoded),
refusals, decodings, checked reconstructions, PRG expansions of fixed
seeds, a complete seeded split (what each server receives, and the
reconstruction) and wire bytes with their SHA-256 digests. ``grants`` (one
section for both rings) gives grants as an SDK user writes them and the
``mpc.v1.Grant`` each must become on the wire (``"self"`` and bare names
resolved, versions pinned, the role inferred), and grants an SDK must refuse.

The values come from ``mpc_core`` itself; every case is also checked here
against exact arithmetic (Python ints and fractions) before it is written, so
the file never records a value the two disagree on. ``test_cross_language_vectors.py``
checks the file against both again, and ``clients/node/test/vectors.test.js``
checks the Node client against it. Ring elements travel as decimal strings of
their unsigned value (JSON numbers lose precision above 2^53); seeds and bytes
as lowercase hex.
"""

from __future__ import annotations

import hashlib
import json
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from mpc_core.fixed_point import FixedPoint
from mpc_core.prg import prg_elements
from mpc_core.ring import RING64, RING128, Ring
from mpc_core.sharing import SeededSplit, reconstruct, reconstruct_checked, share_for_party

PATH = Path(__file__).with_name("cross_language.json")
FRACTIONAL_BITS = {64: 16, 128: 32}
"""The scale of each ring's cases: the default scale of a cluster in that ring."""


def _halves(f: int) -> list[float]:
    half = 2.0 ** -(f + 1)
    return [
        # exact halves of the last unit: rint rounds them to the even neighbour
        half,  # 0.5 -> 0
        3 * half,  # 1.5 -> 2
        5 * half,  # 2.5 -> 2
        7 * half,  # 3.5 -> 4
        -half,  # -0.5 -> -0 -> 0
        -3 * half,  # -1.5 -> -2
        -5 * half,  # -2.5 -> -2
    ]


COMMON_VALUES: list[float] = [
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
    -5e-324,
]

ENCODE_VALUES: dict[int, list[float]] = {
    64: [
        *COMMON_VALUES,
        2.0**-16,
        -(2.0**-16),
        *_halves(16),
        2.0**30 + 2.0**-17,  # 2^46 + 0.5 -> 2^46
        2.0**30 + 3 * 2.0**-17,  # 2^46 + 1.5 -> 2^46 + 2
        -(2.0**30) - 3 * 2.0**-17,
        # large, still in range: |v| < 2^(63 - f) = 2^47
        1e14,
        -1e14,
        123456789.123456789,
        2.0**47 - 2.0**-6,  # largest double below 2^47: encodes to 2^63 - 1024
        -(2.0**47) + 2.0**-6,
    ],
    128: [
        *COMMON_VALUES,
        2.0**-32,  # one unit: 1
        -(2.0**-32),  # -1: all 128 bits set (the high word too)
        -3 * 2.0**-32,
        -1e-9,  # rint(-4.29...) = -4
        *_halves(32),
        2.0**19 + 2.0**-33,  # 2^51 + 0.5 -> 2^51
        2.0**19 + 3 * 2.0**-33,  # 2^51 + 1.5 -> 2^51 + 2
        -(2.0**19) - 3 * 2.0**-33,
        # beyond 2^63 units: the high word is not just the sign
        2.0**31,  # 2^63
        -(2.0**31),  # -2^63: low word 2^63, high word all ones
        2.0**31 + 2.0**-32,  # 2^63 + 1
        -(2.0**31) - 2.0**-32,  # -(2^63 + 1)
        2.0**32,  # 2^64: low word 0, high word 1
        -(2.0**32),
        3e9,
        1e10,
        -1e10,
        123456789012.34567,
        1e14,
        -1e14,
        1e20,
        -2.5e21,
        1e28,
        -3.5e28,
        2.0**95 - 2.0**42,  # largest double below 2^95: encodes to 2^127 - 2^74
        -(2.0**95) + 2.0**42,
    ],
}

# Refused before anything is sent: not finite, or |rint(v * 2^f)| >= 2^(k-1).
REFUSED_VALUES: dict[int, list[str]] = {
    64: ["NaN", "Infinity", "-Infinity", "140737488355328", "-140737488355328", "1e15", "-1e300"],
    128: [
        "NaN",
        "Infinity",
        "-Infinity",
        "39614081257132168796771975168",  # 2^95
        "-39614081257132168796771975168",
        "1e29",
        "-1e300",
        "1.7976931348623157e308",
    ],
}

# Magnitude bits: the least m >= 0 with max |rint(v * 2^f)| <= 2^m over a vector.
MAGNITUDE_VECTORS: dict[int, list[list[float]]] = {
    64: [
        [0.0],
        [2.0**-17],  # rounds to 0
        [2.0**-16],  # 1 -> 0
        [2 * 2.0**-16],  # 2 -> 1
        [3 * 2.0**-16],  # 3 -> 2
        [1.0],  # 2^16 -> 16
        [-1.0, 0.5],
        [1.5],  # 3 * 2^15 -> 17
        [0.2731, -0.5912],
        [101234.56, -84381.01, 87000.0],
        [2.0**47 - 2.0**-6],  # 2^63 - 1024 -> 63
    ],
    128: [
        [0.0],
        [2.0**-33],  # rounds to 0
        [2.0**-32],  # 1 -> 0
        [2 * 2.0**-32],  # 2 -> 1
        [3 * 2.0**-32],  # 3 -> 2
        [1.0],  # 2^32 -> 32
        [-1.0, 0.5],
        [1.5],  # 3 * 2^31 -> 33
        [0.2731, -0.5912],
        [101234.56, -84381.01, 87000.0],
        [2.0**31],  # 2^63 -> 63
        [-(2.0**31) - 2.0**-32],  # 2^63 + 1 -> 64
        [1e20, -1.0],
        [2.0**95 - 2.0**42],  # 2^127 - 2^74 -> 127
    ],
}


def _decode_cases_for(ring: Ring) -> list[tuple[int, int]]:
    """(ring element as an unsigned int, fractional bits): dec(u) = signed(u) / 2^f."""
    k, m = ring.bits, ring.modulus
    f = FRACTIONAL_BITS[k]
    cases = [
        (0, f),
        (1 << f, f),
        (m - (1 << f), f),
        (1, f),
        (m - 1, f),
        ((1 << (k - 1)) - 1, f),
        (1 << (k - 1), f),
        (3 << (2 * f - 1), 2 * f),  # 1.5 at the scale of a product
        (m - (5 << (2 * f - 2)), 2 * f),  # -1.25 at the scale of a product
        ((1 << (k - 1)) - 1, 2 * f),
    ]
    if k == 128:
        cases += [
            (1 << 64, f),  # low word 0, high word 1
            ((1 << 64) - 1, f),  # high word 0, low word all ones
            (m - (1 << 64), f),  # -2^64: high word all ones, low word 0
            ((1 << 100) + (1 << 47) + 1, f),
            (m - (1 << 63), 64),
            (_element("dec", 0, 16), f),
            (_element("dec", 1, 16), 64),
        ]
    return cases


PRG_SEEDS = [
    "00000000000000000000000000000000",
    "000102030405060708090a0b0c0d0e0f",
    "2b7e151628aed2a6abf7158809cf4f3c",
    "ffffffffffffffffffffffffffffffff",
]
PRG_ELEMENTS = {64: 7, 128: 5}  # Z_2^64: three and a half AES blocks, a partial block
SEEDED_VALUES = [1.0, -1.5, 101234.56, 0.0, -84381.01, -(2.0**-20), 0.2731]


def _element(label: str, index: int, size: int) -> int:
    """A fixed, random-looking unsigned integer of ``size`` bytes (reproducible)."""
    return int.from_bytes(hashlib.sha256(f"{label}/{index}".encode()).digest()[:size], "little")


def _ints(ring: Ring, values: Any) -> list[str]:
    """Ring elements as decimal strings of their unsigned values."""
    return [str(v) for v in ring.to_ints(values, signed=False)]


def _signed(ring: Ring, value: int) -> int:
    return value - ring.modulus if value > ring.max_signed else value


def _oracle_encode(ring: Ring, value: float, f: int) -> int:
    """rint(v * 2^f) mod 2^k with exact rationals (Python's round() rounds half to even)."""
    return round(Fraction(value) * 2**f) % ring.modulus


def _oracle_magnitude(values: list[float], f: int) -> int:
    largest = max(abs(round(Fraction(v) * 2**f)) for v in values)
    m = 0
    while largest > 1 << m:
        m += 1
    return m


def _encode_cases(ring: Ring) -> list[dict[str, Any]]:
    f = FRACTIONAL_BITS[ring.bits]
    values = ENCODE_VALUES[ring.bits]
    encoded, _ = FixedPoint(f, ring).encode_bounded(np.array(values))
    cases = []
    for value, element in zip(values, ring.to_ints(encoded, signed=False), strict=True):
        assert element == _oracle_encode(ring, value, f), (ring, value)
        single, magnitude = FixedPoint(f, ring).encode_bounded(np.array([value]))
        assert ring.to_ints(single, signed=False) == [element]
        assert magnitude == _oracle_magnitude([value], f), (ring, value)
        cases.append({"value": value, "encoded": str(element), "magnitude_bits": magnitude})
    return cases


def _magnitude_cases(ring: Ring) -> list[dict[str, Any]]:
    f = FRACTIONAL_BITS[ring.bits]
    cases = []
    for values in MAGNITUDE_VECTORS[ring.bits]:
        encoded, magnitude = FixedPoint(f, ring).encode_bounded(np.array(values))
        assert magnitude == _oracle_magnitude(values, f), (ring, values)
        cases.append({"values": values, "encoded": _ints(ring, encoded), "magnitude_bits": magnitude})
    return cases


def _decode_cases(ring: Ring) -> list[dict[str, Any]]:
    cases = []
    for element, bits in _decode_cases_for(ring):
        value = float(FixedPoint(bits, ring).decode(ring.from_ints([element]))[0])
        # The file records only decodings that are the correctly rounded exact quotient.
        assert value == float(Fraction(_signed(ring, element), 2**bits)), (ring, element, bits)
        cases.append({"encoded": str(element), "fractional_bits": bits, "value": value})
    return cases


def _reconstruct_cases(ring: Ring) -> list[dict[str, Any]]:
    m, size = ring.modulus, ring.element_bytes
    f = FRACTIONAL_BITS[ring.bits]
    half = 1 << (ring.bits - 1)
    triples = [
        (1, 2, 3),
        (m - 1, 1, 0),  # wraps to 0
        (m - 1, m - 1, m - 1),  # 3 (2^k - 1) wraps to 2^k - 3
        (half, half, 1 << f),  # wraps to 2^f = enc(1.0)
    ]
    if ring.bits == 128:
        triples.append(((1 << 64) - 1, 1, 0))  # the carry from the low word into the high word
    triples += [tuple(_element(f"r{ring.bits}", 3 * i + j, size) for j in range(3)) for i in range(4)]
    secret_for_minus_1_5 = m - (3 << (f - 1))  # enc(-1.5)
    x0, x1 = _element(f"neg{ring.bits}", 0, size), _element(f"neg{ring.bits}", 1, size)
    triples.append((x0, x1, (secret_for_minus_1_5 - x0 - x1) % m))
    cases = []
    for triple in triples:
        components = [ring.from_ints([c]) for c in triple]
        shares = [share_for_party(components, party) for party in (0, 1, 2)]
        secret = reconstruct_checked(shares)
        (total,) = ring.to_ints(secret, signed=False)
        assert total == sum(triple) % m
        value = float(FixedPoint(f, ring).decode(secret)[0])
        assert value == float(Fraction(_signed(ring, total), 2**f))
        cases.append(
            {
                "components": [str(c) for c in triple],
                "secret": str(total),
                "fractional_bits": f,
                "value": value,
            }
        )
    return cases


def _keystream_oracle(seed: bytes, size: int) -> bytes:
    """The AES-128-CTR keystream spelled out: AES of the big-endian counter blocks 0, 1, 2, ..."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    blocks = b"".join(i.to_bytes(16, "big") for i in range((size + 15) // 16))
    ecb = Cipher(algorithms.AES(seed), modes.ECB()).encryptor()
    return (ecb.update(blocks) + ecb.finalize())[:size]


def _prg_cases(ring: Ring) -> list[dict[str, Any]]:
    n, size = PRG_ELEMENTS[ring.bits], ring.element_bytes
    cases = []
    for seed in PRG_SEEDS:
        elements = ring.to_ints(prg_elements(ring, bytes.fromhex(seed), n), signed=False)
        stream = _keystream_oracle(bytes.fromhex(seed), n * size)
        assert elements == [int.from_bytes(stream[i : i + size], "little") for i in range(0, n * size, size)]
        cases.append({"seed_hex": seed, "elements": [str(e) for e in elements]})
    return cases


def _seeded_split_cases(ring: Ring) -> list[dict[str, Any]]:
    """A whole seed-compressed upload: the split, what each server receives, the reconstruction."""
    f = FRACTIONAL_BITS[ring.bits]
    secret, magnitude = FixedPoint(f, ring).encode_bounded(np.array(SEEDED_VALUES))
    seed_0, seed_1 = bytes.fromhex(PRG_SEEDS[1]), bytes.fromhex(PRG_SEEDS[2])
    n = secret.size
    x_0, x_1 = prg_elements(ring, seed_0, n), prg_elements(ring, seed_1, n)
    x_2 = ring.sub(ring.sub(secret, x_0), x_1)
    components = SeededSplit(ring, seed_0, seed_1, x_2).components()
    assert all(np.array_equal(a, b) for a, b in zip(components, (x_0, x_1, x_2), strict=True))
    shares = [share_for_party(components, party) for party in (0, 1, 2)]
    reconstructed = reconstruct(shares)
    assert np.array_equal(reconstructed, secret)
    decoded = [float(v) for v in FixedPoint(f, ring).decode(reconstructed)]
    m = ring.modulus
    exact = [
        (a + b + c) % m
        for a, b, c in zip(*(ring.to_ints(x, signed=False) for x in (x_0, x_1, x_2)), strict=True)
    ]
    assert exact == [_oracle_encode(ring, v, f) for v in SEEDED_VALUES]
    empty: list[str] = []
    return [
        {
            "values": SEEDED_VALUES,
            "fractional_bits": f,
            "magnitude_bits": magnitude,
            "secret": _ints(ring, secret),
            "seed_0_hex": seed_0.hex(),
            "seed_1_hex": seed_1.hex(),
            "x_0": _ints(ring, x_0),
            "x_1": _ints(ring, x_1),
            "x_2": _ints(ring, x_2),
            # UploadHeader seeds and ShareChunk components each server receives
            "servers": [
                {
                    "party": 0,
                    "first_seed_hex": seed_0.hex(),
                    "second_seed_hex": seed_1.hex(),
                    "first": empty,
                    "second": empty,
                },
                {
                    "party": 1,
                    "first_seed_hex": seed_1.hex(),
                    "second_seed_hex": "",
                    "first": empty,
                    "second": _ints(ring, x_2),
                },
                {
                    "party": 2,
                    "first_seed_hex": "",
                    "second_seed_hex": seed_0.hex(),
                    "first": _ints(ring, x_2),
                    "second": empty,
                },
            ],
            "reconstructed": _ints(ring, reconstructed),
            "decoded": decoded,
        }
    ]


def _wire_vectors(ring: Ring) -> list[list[int]]:
    m = ring.modulus
    if ring.bits == 64:
        return [[], [1], [1, m - 1, 1 << 63, 0x0102030405060708], [_element("w", i, 8) for i in range(5)]]
    return [
        [],
        [1],
        [0x0102030405060708090A0B0C0D0E0F10],  # the worked example of docs/api.md
        [1 << 64, (1 << 64) - 1, m - 1, 1 << 127, m - 2],
        [_element("w128", i, 16) for i in range(4)],
    ]


def _wire_cases(ring: Ring) -> list[dict[str, Any]]:
    """Ring vectors as little-endian bytes, and the SHA-256 used by digest fetches."""
    cases = []
    for elements in _wire_vectors(ring):
        data = ring.to_wire(ring.from_ints(elements)) if elements else b""
        assert data == b"".join(e.to_bytes(ring.element_bytes, "little") for e in elements)
        cases.append(
            {
                "elements": [str(e) for e in elements],
                "hex": data.hex(),
                "sha256_hex": hashlib.sha256(data).hexdigest(),
            }
        )
    return cases


GRANT_ID = "000102030405060708090a0b0c0d0e0f"
VERSION = "9c1b7e15d2a6abf7158809cf4f3c2b7e"
SHOWCASE_JOB = {"features": ["bank-1/income", "bank-2/debt"], "weights": f"model-owner/weights@{VERSION}"}
GRANTS: list[dict[str, Any]] = [
    {"about": "the default: own data only", "grant": {"receiver": "model-owner", "program": "dot"}},
    {
        "about": "the showcase: the job pinned, the model by version, the own dataset by name",
        "grant": {"receiver": "model-owner", "program": "linear_regression.predict", "pinned": SHOWCASE_JOB},
    },
    {
        "about": "pinned with a bare own name, a role given, submitters, a use limit and an expiry",
        "grant": {
            "receiver": "model-owner",
            "program": "dot",
            "pinned": {"x": "self", "y": "other"},
            "role": "x",
            "submitters": ["model-owner", "bank-2"],
            "max_uses": 3,
            "expires_at": 1893456000.0,
        },
    },
    {
        "about": "pinned with the columns the job selects (a Select: owner/name#col,col)",
        "grant": {
            "receiver": "model-owner",
            "program": "linear_regression.predict",
            "pinned": {
                "features": ["self#income,age", "bank-2/debt"],
                "weights": f"model-owner/weights@{VERSION}",
            },
        },
    },
    {
        "about": "read access: any other inputs",
        "grant": {"receiver": "analyst", "program": "elementwise.multiply", "read_access": True},
    },
]
REFUSED_GRANTS: list[dict[str, Any]] = [
    {
        "about": "a pinned grant must list the granting dataset",
        "grant": {"receiver": "model-owner", "program": "dot", "pinned": {"x": "bank-2/a", "y": "bank-2/b"}},
        "message": "must list bank-1/income among its inputs",
    },
    {
        "about": "a version is 16 bytes in hex",
        "grant": {"receiver": "model-owner", "program": "dot", "pinned": {"x": "self", "y": "bank-2/b@abcd"}},
        "message": "a dataset version is 16 bytes in hex",
    },
    {
        "about": "names follow the name rules",
        "grant": {"receiver": "model owner", "program": "dot"},
        "message": "grant receiver",
    },
]


def _sdk_grant(spec: dict[str, Any]) -> Any:
    from mpc_client import Grant

    options = {k: (tuple(v) if isinstance(v, list) else v) for k, v in spec.items()}
    options.setdefault("grant_id", GRANT_ID)
    receiver, program = options.pop("receiver"), options.pop("program")
    if "pinned" in options:
        return Grant.pinned(receiver, program, options.pop("pinned"), **options)
    if options.pop("read_access", False):
        return Grant.read_access(receiver, program, **options)
    return Grant(receiver, program, **options)


def _grant_wire(spec: dict[str, Any]) -> dict[str, Any]:
    """What ``spec`` on dataset bank-1/income must be on the wire, as JSON."""
    from mpc_client._catalog import grant_to_proto
    from mpc_proto.v1 import types_pb2

    message = grant_to_proto(_sdk_grant(spec), "bank-1", "income")
    return {
        "receiver": message.receiver,
        "program": message.program,
        "role": message.role,
        "scope": types_pb2.GrantScope.Name(message.scope),
        "inputs": [
            {
                "role": p.role,
                "owner": p.dataset.owner,
                "name": p.dataset.name,
                "upload_id": p.upload_id.hex(),
                "columns": list(p.columns),
            }
            for p in message.inputs
        ],
        "submitters": list(message.submitters),
        "max_uses": message.max_uses,
        "expires_at": message.expires_at,
        "grant_id": message.grant_id.hex(),
    }


def _refused_grant(case: dict[str, Any]) -> dict[str, Any]:
    from mpc_core.errors import InvalidArgumentError

    try:
        _grant_wire(case["grant"])
    except InvalidArgumentError as exc:
        assert case["message"] in str(exc), (case, exc)
        return case
    raise AssertionError(f"the SDK accepted {case}")


def _grant_section() -> dict[str, Any]:
    return {
        "dataset": {"owner": "bank-1", "name": "income"},
        "default_grant_id": GRANT_ID,
        "cases": [{**case, "wire": _grant_wire(case["grant"])} for case in GRANTS],
        "refused": [_refused_grant(case) for case in REFUSED_GRANTS],
    }


def _ring_section(ring: Ring) -> dict[str, Any]:
    f = FRACTIONAL_BITS[ring.bits]
    return {
        "ring": f"RING_Z2_{ring.bits}",
        "ring_bits": ring.bits,
        "element_bytes": ring.element_bytes,
        "fixed_point": {
            "fractional_bits": f,
            "encode": _encode_cases(ring),
            "refuse": REFUSED_VALUES[ring.bits],
            "decode": _decode_cases(ring),
            "magnitude_bits": _magnitude_cases(ring),
        },
        "reconstruct": _reconstruct_cases(ring),
        "prg": _prg_cases(ring),
        "seeded_split": _seeded_split_cases(ring),
        "wire": _wire_cases(ring),
    }


def build() -> dict[str, Any]:
    """The whole vector file as a JSON-ready dict."""
    return {
        "about": (
            "Cross-language test vectors for clients of the MPC service; generated by "
            "tests/vectors/make_vectors.py from mpc_core and checked against exact arithmetic. "
            "Ring elements are decimal strings of their unsigned values; bytes and seeds are hex."
        ),
        "rings": [_ring_section(RING64), _ring_section(RING128)],
        "grants": _grant_section(),
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
