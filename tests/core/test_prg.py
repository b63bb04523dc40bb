"""Tests for mpc_core.prg: AES-128-CTR PRG (zero IV), the tagged PRF and OS randomness."""

from __future__ import annotations

import hashlib

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
    prf_words,
    prg_words,
    random_key,
    random_words,
)
from mpc_core.types import MessageTag

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
