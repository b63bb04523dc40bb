'use strict';
/**
 * Randomness: the OS CSPRNG (`crypto.randomBytes`) and the written PRG rule
 * of seed-compressed uploads, identical to `mpc_core.prg.prg_words`:
 * the AES-128-CTR keystream under key = seed with an all-zero initial counter
 * block, read as little-endian 64-bit words.
 * @module prg
 */
const crypto = require('node:crypto');
const { fromWire, WORD_BYTES } = require('./ring');
const { MpcError } = require('./errors');

const SEED_BYTES = 16;
const CHUNK_BYTES = 1 << 20;

/**
 * Expand a 16-byte seed into `n` ring elements.
 * @param {Uint8Array} seed 16 bytes
 * @param {number} n number of words
 * @returns {BigUint64Array}
 */
function prgWords(seed, n) {
  if (seed.length !== SEED_BYTES) {
    throw new MpcError(`PRG seeds are ${SEED_BYTES} bytes, got ${seed.length}`, { code: 'INVALID_ARGUMENT' });
  }
  const cipher = crypto.createCipheriv('aes-128-ctr', seed, Buffer.alloc(16));
  const total = n * WORD_BYTES;
  const stream = Buffer.alloc(total);
  const zeros = Buffer.alloc(Math.min(CHUNK_BYTES, total));
  for (let start = 0; start < total; start += CHUNK_BYTES) {
    const size = Math.min(CHUNK_BYTES, total - start);
    cipher.update(zeros.subarray(0, size)).copy(stream, start);
  }
  return fromWire(stream);
}

/**
 * A fresh seed from the OS CSPRNG.
 * @returns {Buffer}
 */
function randomSeed() {
  return crypto.randomBytes(SEED_BYTES);
}

/**
 * `n` uniformly random ring elements straight from the OS CSPRNG.
 * @param {number} n
 * @returns {BigUint64Array}
 */
function randomWords(n) {
  return fromWire(crypto.randomBytes(n * WORD_BYTES));
}

module.exports = { SEED_BYTES, prgWords, randomSeed, randomWords };
