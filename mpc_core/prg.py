"""Cryptographic randomness: OS entropy, an AES-128-CTR PRG and a tagged PRF.

* :func:`random_key` draws 16 bytes from the OS CSPRNG (``secrets``).
* :func:`random_words` draws uniform ring elements: AES-128-CTR keyed by a
  fresh OS-random key, which is as unpredictable as the OS source and about
  20x faster than ``os.urandom`` for large vectors.
* :func:`prg_words` expands a 16-byte seed deterministically: the AES-128-CTR
  keystream under key = seed, initial counter block = 16 zero bytes, read as
  little-endian uint64 words. This is the written rule any language can follow
  (e.g. seed-compressed uploads).
  :func:`prg_words_range` gives words ``[start, stop)`` of that expansion
  without the prefix (CTR mode starts at any block), for reading a seeded
  component in row chunks.
* :func:`prf_words` is ``F(k, tag, n)`` of the protocols: AES-128-CTR under the
  pairwise key ``k`` with the initial counter block
  ``SHA-256(b"mpc.v1.prf" || tag)[:16]``. Distinct tags give independent
  streams; callers must never reuse a (key, tag) pair for different data.
* :func:`random_elements`, :func:`prg_elements` and :func:`prf_elements` draw
  elements of a :class:`~mpc_core.ring.Ring` from the same keystreams: an
  element of Z_2^128 is 16 consecutive keystream bytes read as a
  little-endian integer (two consecutive 64-bit words, low word first), so
  ``prg_elements(RING128, s, n)`` is ``prg_words(s, 2n)`` pairwise.

Never ``random`` and never numpy's generators. The keystream is written with
``update_into`` into a preallocated buffer (5-8 GB/s here, versus 0.5 GB/s
for an allocating ``update``). This module does no I/O.
"""

from __future__ import annotations

import hashlib
import secrets
import sys

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mpc_core.errors import InvalidArgumentError
from mpc_core.ring import WORD_BYTES, Ring, RingArray, Words

KEY_BYTES = 16
_BLOCK = 16
_ZERO_BLOCK = bytes(_BLOCK)
_PRF_DOMAIN = b"mpc.v1.prf"
_CHUNK_BYTES = 1 << 20
_ZERO_CHUNK = memoryview(bytes(_CHUNK_BYTES))


class SecretKey:
    """Sixteen secret key bytes that never show up in ``repr`` or logs."""

    __slots__ = ("_material",)

    def __init__(self, material: bytes) -> None:
        """Wrap ``material``, which must be exactly 16 bytes."""
        if len(material) != KEY_BYTES:
            raise InvalidArgumentError(f"keys are {KEY_BYTES} bytes, got {len(material)}")
        self._material = bytes(material)

    @property
    def material(self) -> bytes:
        """The raw key bytes (keep them out of logs)."""
        return self._material

    def __repr__(self) -> str:
        """Redact the key."""
        return "SecretKey(<redacted>)"

    def __eq__(self, other: object) -> bool:
        """Compare keys in constant time."""
        if not isinstance(other, SecretKey):
            return NotImplemented
        return secrets.compare_digest(self._material, other._material)

    def __hash__(self) -> int:
        """Keys are not meant to be dict keys; hash by identity of type only."""
        return hash(SecretKey)


def random_key() -> SecretKey:
    """Draw a fresh 16-byte key from the OS CSPRNG."""
    return SecretKey(secrets.token_bytes(KEY_BYTES))


def _keystream_words(key: bytes, counter_block: bytes, n: int) -> Words:
    """Return ``n`` little-endian uint64 words of AES-128-CTR keystream."""
    if n < 0:
        raise InvalidArgumentError(f"cannot draw {n} words")
    total = n * WORD_BYTES
    # update_into needs block-size - 1 bytes of slack after the output.
    out = np.empty(total + _BLOCK - 1, dtype=np.uint8)
    view = out.data
    encryptor = Cipher(algorithms.AES(key), modes.CTR(counter_block)).encryptor()
    for start in range(0, total, _CHUNK_BYTES):
        size = min(_CHUNK_BYTES, total - start)
        encryptor.update_into(_ZERO_CHUNK[:size], view[start : start + size + _BLOCK - 1])
    words: Words = out[:total].view("<u8").astype(np.uint64, copy=False)
    return words


def prg_words(seed: bytes, n: int) -> Words:
    """Expand a 16-byte ``seed`` into ``n`` ring elements (zero IV)."""
    if len(seed) != KEY_BYTES:
        raise InvalidArgumentError(f"PRG seeds are {KEY_BYTES} bytes, got {len(seed)}")
    return _keystream_words(seed, _ZERO_BLOCK, n)


def _counter_at(counter_block: bytes, blocks: int) -> bytes:
    """The CTR counter block ``blocks`` blocks after ``counter_block`` (big-endian, mod 2^128)."""
    value = (int.from_bytes(counter_block, "big") + blocks) % (1 << (8 * _BLOCK))
    return value.to_bytes(_BLOCK, "big")


def prg_words_range(seed: bytes, start: int, stop: int) -> Words:
    """Words ``[start, stop)`` of the expansion of ``seed``, without expanding the prefix.

    Equal to ``prg_words(seed, stop)[start:]``: AES-CTR starts at the block
    holding word ``start`` (counter ``start // 2``) and drops the half block
    before it.
    """
    if len(seed) != KEY_BYTES:
        raise InvalidArgumentError(f"PRG seeds are {KEY_BYTES} bytes, got {len(seed)}")
    if not 0 <= start <= stop:
        raise InvalidArgumentError(f"cannot draw words [{start}, {stop})")
    per_block = _BLOCK // WORD_BYTES
    skip = start % per_block
    words = _keystream_words(seed, _counter_at(_ZERO_BLOCK, start // per_block), stop - start + skip)
    if not skip:
        return words
    return np.ascontiguousarray(words[skip:])


def prg_elements_range(ring: Ring, seed: bytes, start: int, stop: int) -> RingArray:
    """Elements ``[start, stop)`` of ``prg_elements(ring, seed, n)`` (any ``n >= stop``)."""
    per = ring.words_per_element
    return ring.from_words(prg_words_range(seed, start * per, stop * per))


def prg_fill(seed: bytes, out: RingArray) -> None:
    """Write the PRG expansion of ``seed`` into ``out`` (contiguous ring elements).

    Equal to ``out[:] = prg_elements(ring, seed, out.size)`` without a
    temporary the size of ``out`` (e.g. straight into a memory-mapped file).
    """
    if len(seed) != KEY_BYTES:
        raise InvalidArgumentError(f"PRG seeds are {KEY_BYTES} bytes, got {len(seed)}")
    if sys.byteorder != "little" or not out.flags.c_contiguous:
        # Assign through ``out``: for a non-contiguous array ``out.reshape(-1)`` is a copy.
        words = prg_words(seed, out.size * out.dtype.itemsize // WORD_BYTES)
        out[...] = words.view(out.dtype).reshape(out.shape)
        return
    data = out.reshape(-1).view(np.uint8).data
    total = len(data)
    encryptor = Cipher(algorithms.AES(seed), modes.CTR(_ZERO_BLOCK)).encryptor()
    position = 0
    while total - position >= _CHUNK_BYTES + _BLOCK:  # update_into needs block-1 bytes of slack
        encryptor.update_into(_ZERO_CHUNK, data[position : position + _CHUNK_BYTES + _BLOCK - 1])
        position += _CHUNK_BYTES
    tail = total - position
    scratch = bytearray(tail + _BLOCK - 1)
    written = encryptor.update_into(bytes(tail), scratch)
    data[position:] = scratch[:written]


def random_words(n: int) -> Words:
    """Draw ``n`` uniformly random 64-bit words (fresh OS-random key)."""
    return _keystream_words(secrets.token_bytes(KEY_BYTES), _ZERO_BLOCK, n)


def prf_counter_block(tag: bytes) -> bytes:
    """Initial AES-CTR counter block for ``tag``: SHA-256(domain || tag)[:16]."""
    return hashlib.sha256(_PRF_DOMAIN + tag).digest()[:_BLOCK]


def prf_words(key: SecretKey, tag: bytes, n: int) -> Words:
    """``F(k, tag, n)``: ``n`` pseudo-random 64-bit words under ``key``."""
    return _keystream_words(key.material, prf_counter_block(tag), n)


def random_elements(ring: Ring, n: int) -> RingArray:
    """``n`` uniformly random elements of ``ring`` (fresh OS-random key)."""
    return ring.from_words(random_words(n * ring.words_per_element))


def prg_elements(ring: Ring, seed: bytes, n: int) -> RingArray:
    """The PRG expansion of ``seed`` as ``n`` elements of ``ring`` (zero IV)."""
    return ring.from_words(prg_words(seed, n * ring.words_per_element))


def prf_elements(ring: Ring, key: SecretKey, tag: bytes, n: int) -> RingArray:
    """``F(k, tag, n)`` as ``n`` pseudo-random elements of ``ring``."""
    return ring.from_words(prf_words(key, tag, n * ring.words_per_element))


def random_permutation(n: int) -> npt.NDArray[np.intp]:
    """A uniformly random order of ``n`` rows (argsort of CSPRNG-keyed AES-CTR words)."""
    return np.argsort(random_words(n), kind="stable")
