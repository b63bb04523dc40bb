"""Tests for mpc_core.prg: AES-128-CTR PRG (zero IV), the tagged PRF and OS randomness, in both rings."""

from __future__ import annotations

import hashlib
import itertools

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc_core.errors import InvalidArgumentError
from mpc_core.prg import (
    KEY_BYTES,
    SecretKey,
    prf_counter_block,
    prf_elements,
    prf_words,
    prg_elements,
    prg_elements_range,
    prg_fill,
    prg_words,
    prg_words_range,
    random_elements,
    random_key,
    random_words,
)
from mpc_core.ring import RING64, RING128, Ring
from mpc_core.types import MessageTag

RINGS = pytest.mark.parametrize("ring", [RING64, RING128], ids=["Z2^64", "Z2^128"])

SEEDS = st.binary(min_size=16, max_size=16)
WORDS_PER_CHUNK = (1 << 20) // 8  # the implementation writes the keystream in 1 MiB chunks


def reference_words(key: bytes, counter: int, first_block: int, blocks: int) -> list[int]:
    """AES-128-CTR keystream built from single-block ECB encryptions (big-endian 128-bit counter)."""
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    stream = b"".join(
        encryptor.update(((counter + first_block + i) % 2**128).to_bytes(16, "big")) for i in range(blocks)
    )
    return [int.from_bytes(stream[i : i + 8], "little") for i in range(0, len(stream), 8)]


def prf_reference(key: bytes, tag: bytes, n: int) -> list[int]:
    counter = int.from_bytes(hashlib.sha256(b"mpc.v1.prf" + tag).digest()[:16], "big")
    return reference_words(key, counter, 0, (n + 1) // 2)[:n]


# --- PRG ------------------------------------------------------------------------------------------


def test_prg_known_answer_zero_key() -> None:
    # AES-128(key=0^128, block=0^128) = 66e94bd4ef8a2c3b884cfa59ca342b2e (FIPS-197 / NIST vectors)
    words = prg_words(bytes(16), 2)
    assert words.dtype == np.uint64
    assert words.tolist() == [0x3B2C8AEFD44BE966, 0x2E2B34CA59FA4C88]


def test_prg_known_answer_fips197_key() -> None:
    # FIPS-197 key; block 0 and block 1 are computed independently with AES-ECB.
    seed = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
    encryptor = Cipher(algorithms.AES(seed), modes.ECB()).encryptor()
    block0 = encryptor.update(bytes(16))
    block1 = encryptor.update((1).to_bytes(16, "big"))
    expected = [
        int.from_bytes(block0[:8], "little"),
        int.from_bytes(block0[8:], "little"),
        int.from_bytes(block1[:8], "little"),
    ]
    assert prg_words(seed, 3).tolist() == expected
    # and the same with a CTR cipher and zero IV, as a second independent implementation
    ctr = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor().update(bytes(24))
    assert prg_words(seed, 3).tobytes() == ctr


@settings(max_examples=100, deadline=None)
@given(SEEDS, st.integers(min_value=0, max_value=40))
def test_prg_matches_reference_keystream(seed: bytes, n: int) -> None:
    assert prg_words(seed, n).tolist() == reference_words(seed, 0, 0, (n + 1) // 2)[:n]


@settings(max_examples=100, deadline=None)
@given(SEEDS, st.integers(min_value=0, max_value=50), st.integers(min_value=0, max_value=50))
def test_prg_prefix_property(seed: bytes, n: int, k: int) -> None:
    short = prg_words(seed, n)
    long = prg_words(seed, n + k)
    assert short.shape == (n,)
    assert long.shape == (n + k,)
    assert long[:n].tolist() == short.tolist()


def test_prg_across_the_internal_chunk_boundary() -> None:
    seed = bytes(range(16))
    n = WORDS_PER_CHUNK + 5
    words = prg_words(seed, n)
    assert words.shape == (n,)
    first_block = WORDS_PER_CHUNK // 2 - 2
    expected = reference_words(seed, 0, first_block, 4)  # words WORDS_PER_CHUNK-4 .. WORDS_PER_CHUNK+3
    assert words[2 * first_block : 2 * first_block + 8].tolist() == expected
    assert prg_words(seed, n + 3)[:n].tolist() == words.tolist()


def test_prg_zero_words_and_determinism() -> None:
    empty = prg_words(bytes(16), 0)
    assert empty.dtype == np.uint64
    assert empty.shape == (0,)
    seed = b"\x01" * 16
    assert prg_words(seed, 10).tolist() == prg_words(seed, 10).tolist()
    assert prg_words(seed, 10).tolist() != prg_words(b"\x02" * 16, 10).tolist()


def test_prg_accepts_bytearray_seed_and_output_is_writable() -> None:
    words = prg_words(bytearray(16), 2)
    assert words.tolist() == [0x3B2C8AEFD44BE966, 0x2E2B34CA59FA4C88]
    assert words.flags.writeable


@pytest.mark.parametrize("size", [0, 1, 15, 17, 32])
def test_prg_rejects_wrong_seed_size(size: int) -> None:
    with pytest.raises(InvalidArgumentError, match="16 bytes"):
        prg_words(bytes(size), 4)


def test_negative_word_counts_are_rejected() -> None:
    with pytest.raises(InvalidArgumentError):
        prg_words(bytes(16), -1)
    with pytest.raises(InvalidArgumentError):
        prf_words(SecretKey(bytes(16)), b"t", -1)
    with pytest.raises(InvalidArgumentError):
        random_words(-1)


# --- ring elements from the PRG -------------------------------------------------------------------


def keystream(seed: bytes, size: int) -> bytes:
    """``size`` bytes of AES-128-CTR keystream under ``seed``, zero IV (an independent implementation)."""
    return Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor().update(bytes(size))


def test_prg_elements_known_answer_z2_128() -> None:
    # AES-128(0^128, 0^128) = 66e94bd4ef8a2c3b884cfa59ca342b2e, read as one little-endian 128-bit integer
    element = prg_elements(RING128, bytes(16), 1)
    assert element.dtype == RING128.dtype
    expected = int.from_bytes(bytes.fromhex("66e94bd4ef8a2c3b884cfa59ca342b2e"), "little")
    assert RING128.to_ints(element, signed=False) == [expected]
    assert expected == 0x2E2B34CA59FA4C88_3B2C8AEFD44BE966
    assert RING64.to_ints(prg_elements(RING64, bytes(16), 2), signed=False) == [
        0x3B2C8AEFD44BE966,
        0x2E2B34CA59FA4C88,
    ]


@RINGS
@settings(max_examples=50, deadline=None)
@given(seed=SEEDS, n=st.integers(min_value=0, max_value=40))
def test_prg_elements_are_the_keystream_read_little_endian(ring: Ring, seed: bytes, n: int) -> None:
    elements = prg_elements(ring, seed, n)
    assert elements.dtype == ring.dtype
    assert elements.shape == (n,)
    stream = keystream(seed, n * ring.element_bytes)
    size = ring.element_bytes
    assert ring.to_ints(elements, signed=False) == [
        int.from_bytes(stream[i : i + size], "little") for i in range(0, len(stream), size)
    ]
    assert ring.to_wire(elements) == stream


@settings(max_examples=50, deadline=None)
@given(seed=SEEDS, n=st.integers(min_value=0, max_value=40))
def test_prg_elements_of_z2_128_are_prg_words_pairwise(seed: bytes, n: int) -> None:
    elements = prg_elements(RING128, seed, n)
    words = prg_words(seed, 2 * n)
    assert elements["lo"].tolist() == words[0::2].tolist()
    assert elements["hi"].tolist() == words[1::2].tolist()
    assert RING128.to_ints(elements, signed=False) == [
        int(words[2 * i]) + (int(words[2 * i + 1]) << 64) for i in range(n)
    ]
    assert RING128.words(elements).tolist() == words.tolist()
    assert prg_elements(RING64, seed, n).tolist() == prg_words(seed, n).tolist()


@RINGS
@settings(max_examples=30, deadline=None)
@given(seed=SEEDS, n=st.integers(min_value=0, max_value=30), k=st.integers(min_value=0, max_value=30))
def test_prg_elements_prefix_property(ring: Ring, seed: bytes, n: int, k: int) -> None:
    assert prg_elements(ring, seed, n + k)[:n].tobytes() == prg_elements(ring, seed, n).tobytes()


@RINGS
@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (3, 5), (2, 0, 4)])
def test_prg_fill_equals_prg_elements(ring: Ring, shape: tuple[int, ...]) -> None:
    seed = bytes(range(16))
    out = ring.zeros(shape)
    assert prg_fill(seed, out) is None
    size = int(np.prod(shape))
    assert out.shape == shape
    assert out.reshape(-1).tobytes() == prg_elements(ring, seed, size).tobytes()


@RINGS
@pytest.mark.parametrize("extra_bytes", [-16, -8, 0, 8, 120, 16, 24, 2 << 20])
def test_prg_fill_across_the_internal_chunk_boundary(ring: Ring, extra_bytes: int) -> None:
    # prg_fill writes the keystream in 1 MiB chunks and finishes with a shorter tail.
    total = (1 << 20) + extra_bytes
    if total % ring.element_bytes:
        total += ring.element_bytes - total % ring.element_bytes
    n = total // ring.element_bytes
    seed = b"\x07" * 16
    out = ring.empty(n)
    prg_fill(seed, out)
    assert out.tobytes() == keystream(seed, total)
    assert out.tobytes() == prg_elements(ring, seed, n).tobytes()


@RINGS
def test_prg_fill_overwrites_whatever_was_there(ring: Ring) -> None:
    seed = bytes(16)
    out = ring.from_ints([-1] * 5)
    prg_fill(seed, out)
    assert out.tobytes() == prg_elements(ring, seed, 5).tobytes()


@RINGS
def test_prg_fill_of_a_non_contiguous_array_fills_it_in_c_order(ring: Ring) -> None:
    seed = bytes(range(16))
    matrix = ring.zeros((4, 3))
    target = matrix.T  # 3 x 4, not C-contiguous: a write through a copy would be lost
    assert not target.flags.c_contiguous
    prg_fill(seed, target)
    assert ring.to_wire(target) == prg_elements(ring, seed, 12).tobytes()
    assert ring.to_ints(matrix, signed=False) != [0] * 12
    strided = ring.zeros(10)
    prg_fill(seed, strided[::2])
    assert strided[::2].tobytes() == prg_elements(ring, seed, 5).tobytes()
    assert ring.to_ints(strided[1::2]) == [0] * 5


@pytest.mark.parametrize("size", [0, 15, 17])
def test_prg_fill_and_prg_elements_refuse_wrong_seed_sizes(size: int) -> None:
    with pytest.raises(InvalidArgumentError, match="16 bytes"):
        prg_fill(bytes(size), RING128.zeros(2))
    with pytest.raises(InvalidArgumentError, match="16 bytes"):
        prg_elements(RING128, bytes(size), 2)


# --- ranged PRG expansion (a seeded component read in row chunks) -------------------------------


@settings(max_examples=200, deadline=None)
@given(SEEDS, st.integers(min_value=0, max_value=300), st.integers(min_value=0, max_value=300))
def test_prg_words_range_is_the_slice_of_the_full_expansion(seed: bytes, start: int, length: int) -> None:
    stop = start + length
    assert prg_words_range(seed, start, stop).tolist() == prg_words(seed, stop)[start:].tolist()


@RINGS
@settings(max_examples=100, deadline=None)
@given(
    seed=SEEDS, start=st.integers(min_value=0, max_value=200), length=st.integers(min_value=0, max_value=200)
)
def test_prg_elements_range_is_the_slice_of_the_full_expansion(
    ring: Ring, seed: bytes, start: int, length: int
) -> None:
    stop = start + length
    ranged = prg_elements_range(ring, seed, start, stop)
    assert ranged.dtype == ring.dtype and ranged.shape == (length,)
    assert ranged.tobytes() == prg_elements(ring, seed, stop)[start:].tobytes()


@RINGS
def test_consecutive_ranges_concatenate_to_the_expansion(ring: Ring) -> None:
    """Chunks of any sizes, read one after the other, are the component (also across 1 MiB chunks)."""
    seed = bytes(range(16))
    total = WORDS_PER_CHUNK + 1001
    edges = [0, 1, 7, 1000, WORDS_PER_CHUNK // 2 - 1, WORDS_PER_CHUNK // 2 + 3, total]
    parts = [prg_elements_range(ring, seed, a, b) for a, b in itertools.pairwise(edges)]
    assert np.concatenate(parts).tobytes() == prg_elements(ring, seed, total).tobytes()


def test_prg_range_far_from_the_start_matches_the_reference_keystream() -> None:
    """The range starts at AES-CTR block ``start // 2`` without expanding the prefix."""
    seed = bytes(range(16, 32))
    start = (1 << 40) + 3  # 8 TiB into the stream: a prefix nobody could expand
    expected = reference_words(seed, 0, start // 2, 4)[1:6]
    assert prg_words_range(seed, start, start + 5).tolist() == expected
    per = RING128.words_per_element
    element = prg_elements_range(RING128, seed, 1 << 39, (1 << 39) + 1)
    assert RING128.words(element).tolist() == reference_words(seed, 0, (1 << 39) * per // 2, 1)


@pytest.mark.parametrize(("start", "stop"), [(-1, 3), (5, 4)])
def test_prg_range_refuses_bad_bounds(start: int, stop: int) -> None:
    with pytest.raises(InvalidArgumentError):
        prg_words_range(bytes(16), start, stop)
    with pytest.raises(InvalidArgumentError, match="16 bytes"):
        prg_words_range(bytes(15), 0, 1)


@RINGS
def test_random_elements(ring: Ring) -> None:
    a, b = random_elements(ring, 64), random_elements(ring, 64)
    assert a.dtype == b.dtype == ring.dtype
    assert a.shape == b.shape == (64,)
    assert a.tobytes() != b.tobytes()
    assert random_elements(ring, 0).shape == (0,)
    if ring is RING128:
        assert a["hi"].tolist() != [0] * 64  # the high words are random too


# --- PRF ------------------------------------------------------------------------------------------


def test_prf_counter_block() -> None:
    tag = b"job-1/op-7"
    assert prf_counter_block(tag) == hashlib.sha256(b"mpc.v1.prf" + tag).digest()[:16]
    assert len(prf_counter_block(b"")) == 16
    assert prf_counter_block(b"a") != prf_counter_block(b"b")


def test_prf_known_answer() -> None:
    key = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
    tag = MessageTag("job-1", 3).to_bytes(b"zero")
    assert prf_words(SecretKey(key), tag, 7).tolist() == prf_reference(key, tag, 7)


@settings(max_examples=100, deadline=None)
@given(SEEDS, st.binary(max_size=40), st.integers(min_value=0, max_value=20))
def test_prf_matches_reference_and_is_deterministic(key: bytes, tag: bytes, n: int) -> None:
    first = prf_words(SecretKey(key), tag, n)
    again = prf_words(SecretKey(key), tag, n)
    assert first.dtype == np.uint64
    assert first.tolist() == again.tolist() == prf_reference(key, tag, n)


@settings(max_examples=100, deadline=None)
@given(SEEDS, st.binary(max_size=16), st.binary(max_size=16))
def test_prf_tag_separation(key: bytes, tag_a: bytes, tag_b: bytes) -> None:
    a = prf_words(SecretKey(key), tag_a, 4).tolist()
    b = prf_words(SecretKey(key), tag_b, 4).tolist()
    assert (a == b) == (tag_a == tag_b)


def test_prf_differs_from_prg_and_between_keys() -> None:
    key = bytes(range(16))
    assert prf_words(SecretKey(key), b"", 4).tolist() != prg_words(key, 4).tolist()
    assert prf_words(SecretKey(key), b"t", 4).tolist() != prf_words(SecretKey(bytes(16)), b"t", 4).tolist()


def test_prf_message_tags_give_distinct_streams() -> None:
    key = random_key()
    streams = {
        tuple(prf_words(key, MessageTag(job, op).to_bytes(purpose), 2).tolist())
        for job in ("job-1", "job-2")
        for op in range(5)
        for purpose in (b"", b"zero", b"trunc")
    }
    assert len(streams) == 2 * 5 * 3


@settings(max_examples=50, deadline=None)
@given(SEEDS, st.binary(max_size=16), st.integers(0, 30), st.integers(0, 30))
def test_prf_prefix_property(key: bytes, tag: bytes, n: int, k: int) -> None:
    secret = SecretKey(key)
    assert prf_words(secret, tag, n + k)[:n].tolist() == prf_words(secret, tag, n).tolist()


@RINGS
@settings(max_examples=50, deadline=None)
@given(key=SEEDS, tag=st.binary(max_size=40), n=st.integers(min_value=0, max_value=20))
def test_prf_elements_are_prf_words_reinterpreted(ring: Ring, key: bytes, tag: bytes, n: int) -> None:
    elements = prf_elements(ring, SecretKey(key), tag, n)
    assert elements.dtype == ring.dtype
    assert elements.shape == (n,)
    words = prf_words(SecretKey(key), tag, n * ring.words_per_element)
    assert (
        ring.words(elements).tolist() == words.tolist() == prf_reference(key, tag, n * ring.words_per_element)
    )


@RINGS
@settings(max_examples=50, deadline=None)
@given(key=SEEDS, tag_a=st.binary(max_size=16), tag_b=st.binary(max_size=16))
def test_prf_elements_tag_separation(ring: Ring, key: bytes, tag_a: bytes, tag_b: bytes) -> None:
    a = prf_elements(ring, SecretKey(key), tag_a, 3).tobytes()
    b = prf_elements(ring, SecretKey(key), tag_b, 3).tobytes()
    assert (a == b) == (tag_a == tag_b)


@RINGS
def test_prf_elements_of_message_tags_give_distinct_streams(ring: Ring) -> None:
    key = random_key()
    streams = {
        prf_elements(ring, key, MessageTag(job, op).to_bytes(purpose), 1).tobytes()
        for job in ("job-1", "job-2")
        for op in range(5)
        for purpose in (b"", b"zero", b"trunc")
    }
    assert len(streams) == 2 * 5 * 3
    assert prf_elements(ring, key, b"t", 2).tobytes() != prg_elements(ring, key.material, 2).tobytes()


# --- OS randomness --------------------------------------------------------------------------------


def test_random_words_differ_per_call() -> None:
    a, b = random_words(64), random_words(64)
    assert a.dtype == b.dtype == np.uint64
    assert a.shape == b.shape == (64,)
    assert a.tolist() != b.tolist()
    assert random_words(0).shape == (0,)


def test_random_words_bit_balance() -> None:
    n = 8192
    words = random_words(n)
    bits = np.unpackbits(words.view(np.uint8)).reshape(n, 64)
    sigma_per_position = (n * 0.25) ** 0.5
    per_position = bits.sum(axis=0)
    assert np.all(np.abs(per_position - n / 2) < 5 * sigma_per_position), per_position
    total = int(bits.sum())
    assert abs(total - n * 32) < 5 * (n * 64 * 0.25) ** 0.5
    assert len(set(words.tolist())) == n


def test_random_key() -> None:
    a, b = random_key(), random_key()
    assert isinstance(a, SecretKey)
    assert len(a.material) == KEY_BYTES == 16
    assert a != b
    assert a.material != b.material


# --- SecretKey ------------------------------------------------------------------------------------


def test_secret_key_repr_redacts() -> None:
    material = bytes.fromhex("00112233445566778899aabbccddeeff")
    key = SecretKey(material)
    for text in (repr(key), str(key), f"{key!r}", repr([key])):
        assert "redacted" in text
        assert "00112233" not in text
        assert "aabbccdd" not in text
        assert str(material) not in text
    assert not hasattr(key, "__dict__")


def test_secret_key_equality() -> None:
    material = bytes(range(16))
    key = SecretKey(material)
    assert key == SecretKey(bytearray(material))
    assert key != SecretKey(bytes(16))
    assert key != material
    assert key.material == material
    assert isinstance(key.material, bytes)
    assert hash(key) == hash(SecretKey(material))


def test_secret_key_copies_its_material() -> None:
    material = bytearray(range(16))
    key = SecretKey(material)
    material[0] = 0xFF
    assert key.material == bytes(range(16))


@pytest.mark.parametrize("size", [0, 8, 15, 17, 32])
def test_secret_key_rejects_wrong_sizes(size: int) -> None:
    with pytest.raises(InvalidArgumentError, match=f"got {size}"):
        SecretKey(bytes(size))
