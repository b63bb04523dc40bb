'use strict';
/**
 * Randomness: the OS CSPRNG (`crypto.randomBytes`) and the written PRG rule
 * of seed-compressed uploads, identical to `mpc_core.prg.prg_elements`:
 * the AES-128-CTR keystream under key = seed with an all-zero initial counter
 * block (the whole 16-byte block is the big-endian counter), cut into
 * elements of the ring: 8 consecutive keystream bytes per element of Z_2^64,
 * 16 per element of Z_2^128, each read as a little-endian integer.
 * @module prg
 */
const crypto = require('node:crypto');
const { RING64 } = require('./ring');
const { MpcError } = require('./errors');

const SEED_BYTES = 16;
const CHUNK_BYTES = 1 << 20;

/**
 * The first `size` bytes of the AES-128-CTR keystream under `seed` (zero IV).
 * @param {Uint8Array} seed 16 bytes
 * @param {number} size
 * @returns {Buffer}
 */
function keystream(seed, size) {
  if (seed.length !== SEED_BYTES) {
    throw new MpcError(`PRG seeds are ${SEED_BYTES} bytes, got ${seed.length}`, { code: 'INVALID_ARGUMENT' });
  }
  const cipher = crypto.createCipheriv('aes-128-ctr', seed, Buffer.alloc(16));
  const stream = Buffer.alloc(size);
  const zeros = Buffer.alloc(Math.min(CHUNK_BYTES, size));
  for (let start = 0; start < size; start += CHUNK_BYTES) {
    const length = Math.min(CHUNK_BYTES, size - start);
    cipher.update(zeros.subarray(0, length)).copy(stream, start);
  }
  return stream;
}

/**
 * Expand a 16-byte seed into `n` elements of `ring`.
 * @param {import('./ring').Ring} ring
 * @param {Uint8Array} seed 16 bytes
 * @param {number} n number of elements
 * @returns {BigUint64Array}
 */
function prgElements(ring, seed, n) {
  return ring.fromWire(keystream(seed, n * ring.elementBytes));
}

/**
 * Expand a 16-byte seed into `n` 64-bit words (the elements of Z_2^64).
 * @param {Uint8Array} seed
 * @param {number} n
 * @returns {BigUint64Array}
 */
function prgWords(seed, n) {
  return prgElements(RING64, seed, n);
}

/**
 * A fresh seed from the OS CSPRNG.
 * @returns {Buffer}
 */
function randomSeed() {
  return crypto.randomBytes(SEED_BYTES);
}

/**
 * `n` uniformly random elements of `ring` straight from the OS CSPRNG.
 * @param {import('./ring').Ring} ring
 * @param {number} n
 * @returns {BigUint64Array}
 */
function randomElements(ring, n) {
  return ring.fromWire(crypto.randomBytes(n * ring.elementBytes));
}

module.exports = { SEED_BYTES, keystream, prgElements, prgWords, randomSeed, randomElements };
