"""One-time keyed tags of share bytes, for the checked reveal: GMAC (AES-128-GCM).

When a receiver fetches an output, every share component arrives from two
servers. Instead of both copies, the receiver may ask each server for its
second component only as a tag: it draws a fresh 16-byte key per server from
the OS CSPRNG and sends key ``k_i`` to server ``i`` alone, which returns
``GMAC(k_i, second_i)``; the receiver computes ``GMAC(k_i, first_{i+1})`` over
the copy server ``i + 1`` sent in full and compares. Server ``i + 1`` never
learns ``k_i``, so it cannot change its copy without the tags disagreeing,
except with probability about ``n / 2^128`` for ``n`` 16-byte blocks (GHASH,
McGrew-Viega, "The Security and Performance of the Galois/Counter Mode",
INDOCRYPT 2004). Each key tags exactly one component and the tags are never
sent to the server whose copy they check, so the fixed zero nonce is safe.

The tag is AES-128-GCM encryption of the empty plaintext with a 96-bit zero
nonce and the component's wire bytes as the associated data: any language's
AES-GCM computes it. It is 15x faster than SHA-256 here (hardware GHASH).
This module does no I/O.
"""

from __future__ import annotations

import hmac

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mpc_core.errors import InvalidArgumentError

MAC_KEY_BYTES = 16
TAG_BYTES = 16
_NONCE = bytes(12)


class Tagger:
    """An incremental GMAC over bytes fed in pieces (e.g. received chunks)."""

    __slots__ = ("_context",)

    def __init__(self, key: bytes) -> None:
        """Start a tag under a one-time 16-byte ``key``."""
        if len(key) != MAC_KEY_BYTES:
            raise InvalidArgumentError(f"tag keys are {MAC_KEY_BYTES} bytes, got {len(key)}")
        self._context = Cipher(algorithms.AES(key), modes.GCM(_NONCE)).encryptor()

    def update(self, data: bytes | memoryview) -> None:
        """Feed the next piece of the tagged bytes."""
        self._context.authenticate_additional_data(data)

    def tag(self) -> bytes:
        """The 16-byte tag of everything fed (once)."""
        self._context.finalize()
        return self._context.tag

    def __repr__(self) -> str:
        """No key material."""
        return "Tagger(<key redacted>)"


def tag(key: bytes, data: bytes | memoryview) -> bytes:
    """The GMAC tag of ``data`` under ``key``."""
    tagger = Tagger(key)
    tagger.update(data)
    return tagger.tag()


def same_tag(a: bytes, b: bytes) -> bool:
    """Constant-time comparison of two tags (or digests)."""
    return len(a) == len(b) and hmac.compare_digest(a, b)
