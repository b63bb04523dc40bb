'use strict';
/**
 * The ring Z_2^64 as `BigUint64Array`s, and its wire codec.
 *
 * Storing a BigInt into a `BigUint64Array` reduces it modulo 2^64, so
 * `out[i] = a[i] + b[i]` (or `-`, `*`) *is* ring arithmetic, also when the
 * intermediate BigInt is negative or above 2^64. On the wire a ring vector is
 * the little-endian encoding of its words, 8 bytes per element
 * (`protos/mpc/v1/types.proto`).
 * @module ring
 */
const os = require('node:os');
const { MpcError } = require('./errors');

const WORD_BYTES = 8;
const LITTLE_ENDIAN_HOST = os.endianness() === 'LE';

/**
 * Little-endian bytes of `words[start:end]` (a view on little-endian hosts, no copy).
 * @param {BigUint64Array} words
 * @param {number} [start]
 * @param {number} [end]
 * @returns {Buffer}
 */
function toWire(words, start = 0, end = words.length) {
  const count = Math.max(0, Math.min(end, words.length) - start);
  if (LITTLE_ENDIAN_HOST) {
    return Buffer.from(words.buffer, words.byteOffset + start * WORD_BYTES, count * WORD_BYTES);
  }
  const out = Buffer.alloc(count * WORD_BYTES);
  for (let i = 0; i < count; i++) out.writeBigUInt64LE(words[start + i], i * WORD_BYTES);
  return out;
}

/**
 * Decode little-endian bytes into a new `BigUint64Array`.
 * @param {Uint8Array} bytes a whole number of 8-byte words
 * @param {number} [expected] the number of elements required, if known
 * @returns {BigUint64Array}
 * @throws {MpcError} INVALID_ARGUMENT if the length is wrong
 */
function fromWire(bytes, expected) {
  if (bytes.length % WORD_BYTES) {
    throw new MpcError(`ring vector of ${bytes.length} bytes is not a whole number of 8-byte words`, {
      code: 'INVALID_ARGUMENT',
    });
  }
  const count = bytes.length / WORD_BYTES;
  if (expected !== undefined && count !== expected) {
    throw new MpcError(`expected ${expected} ring elements, got ${count}`, { code: 'INVALID_ARGUMENT' });
  }
  const words = new BigUint64Array(count);
  if (LITTLE_ENDIAN_HOST) {
    new Uint8Array(words.buffer).set(bytes);
  } else {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < count; i++) words[i] = view.getBigUint64(i * WORD_BYTES, true);
  }
  return words;
}

/**
 * `a + b` element-wise, modulo 2^64.
 * @param {BigUint64Array} a
 * @param {BigUint64Array} b
 * @returns {BigUint64Array}
 */
function add(a, b) {
  const out = new BigUint64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] + b[i];
  return out;
}

/**
 * `a - b` element-wise, modulo 2^64.
 * @param {BigUint64Array} a
 * @param {BigUint64Array} b
 * @returns {BigUint64Array}
 */
function sub(a, b) {
  const out = new BigUint64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] - b[i];
  return out;
}

/**
 * Number of elements of an array of `shape` (1 for a scalar, shape []).
 * @param {number[]} shape
 * @returns {number}
 */
function elementCount(shape) {
  return shape.reduce((n, d) => n * d, 1);
}

module.exports = { WORD_BYTES, toWire, fromWire, add, sub, elementCount };
