'use strict';
/**
 * The rings Z_2^64 and Z_2^128, and their wire codec, as `mpc_core.ring`.
 *
 * A vector of n elements is a `BigUint64Array` in the wire layout:
 *
 * - Z_2^64: n words, one per element. Storing a BigInt into a
 *   `BigUint64Array` reduces it modulo 2^64, so `out[i] = a[i] + b[i]` is ring
 *   arithmetic, also when the intermediate BigInt is negative or above 2^64.
 * - Z_2^128: 2n words, element i being the low word `2i` and the high word
 *   `2i + 1`. Arithmetic joins the two words into one BigInt, computes, and
 *   reduces with `BigInt.asUintN(128, ...)` before splitting again; never
 *   store a signed or oversized BigInt into the high word directly.
 *
 * On the wire an element is its little-endian encoding: 8 bytes in Z_2^64,
 * 16 in Z_2^128 (the 128-bit integer least significant byte first, which is
 * the low word then the high word, each little-endian), elements back to back
 * (`protos/mpc/v1/types.proto`). On a little-endian host that is exactly the
 * memory of the `BigUint64Array`, so encoding is a view.
 *
 * Received bytes are never viewed as a `BigUint64Array` in place:
 * `new BigUint64Array(buf.buffer, buf.byteOffset, n)` throws a RangeError when
 * `byteOffset` is not a multiple of 8, which it often is not for the Buffers
 * grpc-js hands out. {@link Ring#fromWire} copies into a fresh (aligned) array.
 * @module ring
 */
const os = require('node:os');
const { MpcError } = require('./errors');

const WORD_BYTES = 8;
const LITTLE_ENDIAN_HOST = os.endianness() === 'LE';
const MASK64 = (1n << 64n) - 1n;

/** One of the two rings of the product: Z_2^64 or Z_2^128. */
class Ring {
  /** @param {64 | 128} bits */
  constructor(bits) {
    if (bits !== 64 && bits !== 128) {
      throw new MpcError(`the ring must be Z_2^64 or Z_2^128, not Z_2^${bits}`, { code: 'INVALID_ARGUMENT' });
    }
    /** @type {64 | 128} */
    this.bits = bits;
    /** `Z_2^64` or `Z_2^128` */
    this.name = `Z_2^${bits}`;
    /** bytes of one element on the wire: 8 or 16 */
    this.elementBytes = bits / 8;
    /** 64-bit words per element: 1 or 2 */
    this.wordsPerElement = bits / 64;
    /** the `mpc.v1.Ring` enum name */
    this.protoName = `RING_Z2_${bits}`;
    /** 2^bits */
    this.modulus = 1n << BigInt(bits);
    /** 2^(bits-1) - 1, the largest value of the signed view */
    this.maxSigned = (1n << BigInt(bits - 1)) - 1n;
    this.bigBits = BigInt(bits);
    Object.freeze(this);
  }

  /**
   * A vector of `n` zero elements.
   * @param {number} n
   * @returns {BigUint64Array}
   */
  alloc(n) {
    return new BigUint64Array(n * this.wordsPerElement);
  }

  /**
   * Number of elements of a vector.
   * @param {BigUint64Array} vector
   */
  size(vector) {
    return vector.length / this.wordsPerElement;
  }

  /**
   * Element `i` as an unsigned BigInt in [0, 2^bits).
   * @param {BigUint64Array} vector
   * @param {number} i
   * @returns {bigint}
   */
  get(vector, i) {
    if (this.bits === 64) return vector[i];
    return (vector[2 * i + 1] << 64n) | vector[2 * i];
  }

  /**
   * Store `value mod 2^bits` as element `i` (any sign, any size).
   * @param {BigUint64Array} vector
   * @param {number} i
   * @param {bigint} value
   */
  set(vector, i, value) {
    if (this.bits === 64) {
      vector[i] = value; // BigUint64Array stores modulo 2^64
      return;
    }
    const reduced = BigInt.asUintN(128, value);
    vector[2 * i] = reduced & MASK64;
    vector[2 * i + 1] = reduced >> 64n;
  }

  /**
   * The signed view of an element: an integer in [-2^(bits-1), 2^(bits-1)).
   * @param {bigint} element
   * @returns {bigint}
   */
  signed(element) {
    return BigInt.asIntN(this.bits, element);
  }

  /**
   * Elements from BigInts (any sign or size), reduced modulo 2^bits.
   * @param {Iterable<bigint | number | string>} values
   * @returns {BigUint64Array}
   */
  fromInts(values) {
    const list = Array.from(values, (v) => BigInt(v));
    const out = this.alloc(list.length);
    list.forEach((v, i) => this.set(out, i, v));
    return out;
  }

  /**
   * The elements as unsigned BigInts (or signed ones with `{signed: true}`).
   * @param {BigUint64Array} vector
   * @param {{signed?: boolean}} [options]
   * @returns {bigint[]}
   */
  toInts(vector, { signed = false } = {}) {
    const out = new Array(this.size(vector));
    for (let i = 0; i < out.length; i++) {
      const element = this.get(vector, i);
      out[i] = signed ? this.signed(element) : element;
    }
    return out;
  }

  /**
   * `a + b` element-wise, modulo 2^bits.
   * @param {BigUint64Array} a
   * @param {BigUint64Array} b
   * @returns {BigUint64Array}
   */
  add(a, b) {
    this.sameSize(a, b);
    const out = new BigUint64Array(a.length);
    if (this.bits === 64) {
      for (let i = 0; i < a.length; i++) out[i] = a[i] + b[i];
      return out;
    }
    for (let w = 0; w < a.length; w += 2) {
      const low = a[w] + b[w]; // below 2^65: the carry is its bit 64
      out[w] = low; // stored modulo 2^64
      out[w + 1] = a[w + 1] + b[w + 1] + (low >> 64n);
    }
    return out;
  }

  /**
   * `a - b` element-wise, modulo 2^bits.
   * @param {BigUint64Array} a
   * @param {BigUint64Array} b
   * @returns {BigUint64Array}
   */
  sub(a, b) {
    this.sameSize(a, b);
    const out = new BigUint64Array(a.length);
    if (this.bits === 64) {
      for (let i = 0; i < a.length; i++) out[i] = a[i] - b[i];
      return out;
    }
    for (let w = 0; w < a.length; w += 2) {
      const borrow = a[w] < b[w] ? 1n : 0n;
      out[w] = a[w] - b[w]; // stored modulo 2^64
      out[w + 1] = a[w + 1] - b[w + 1] - borrow; // stored modulo 2^64
    }
    return out;
  }

  /**
   * @param {BigUint64Array} a
   * @param {BigUint64Array} b
   */
  sameSize(a, b) {
    if (a.length !== b.length) {
      throw new MpcError(`ring operands differ in size: ${this.size(a)} vs ${this.size(b)}`, {
        code: 'INVALID_ARGUMENT',
      });
    }
  }

  /**
   * Little-endian bytes of the elements `[start, end)` (a view on little-endian hosts, no copy).
   * @param {BigUint64Array} vector
   * @param {number} [start] first element
   * @param {number} [end] one past the last element
   * @returns {Buffer}
   */
  toWire(vector, start = 0, end = this.size(vector)) {
    const count = Math.max(0, Math.min(end, this.size(vector)) - start);
    const first = start * this.wordsPerElement;
    const words = count * this.wordsPerElement;
    if (LITTLE_ENDIAN_HOST) {
      return Buffer.from(vector.buffer, vector.byteOffset + first * WORD_BYTES, words * WORD_BYTES);
    }
    const out = Buffer.alloc(words * WORD_BYTES);
    for (let i = 0; i < words; i++) out.writeBigUInt64LE(vector[first + i], i * WORD_BYTES);
    return out;
  }

  /**
   * Decode little-endian bytes (any alignment) into a new vector.
   * @param {Uint8Array} bytes a whole number of elements
   * @param {number} [expected] the number of elements required, if known
   * @returns {BigUint64Array}
   * @throws {MpcError} INVALID_ARGUMENT if the length is wrong
   */
  fromWire(bytes, expected) {
    if (bytes.length % this.elementBytes) {
      throw new MpcError(
        `ring vector of ${bytes.length} bytes is not a whole number of ${this.elementBytes}-byte elements of ${this.name}`,
        { code: 'INVALID_ARGUMENT' },
      );
    }
    const count = bytes.length / this.elementBytes;
    if (expected !== undefined && count !== expected) {
      throw new MpcError(`expected ${expected} elements of ${this.name}, got ${count}`, { code: 'INVALID_ARGUMENT' });
    }
    const out = this.alloc(count);
    if (LITTLE_ENDIAN_HOST) {
      // Copy the bytes into the fresh, aligned array (never view `bytes` in place).
      new Uint8Array(out.buffer).set(bytes);
    } else {
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let i = 0; i < out.length; i++) out[i] = view.getBigUint64(i * WORD_BYTES, true);
    }
    return out;
  }

  /**
   * Write `source` into `target` from element `offset` on.
   * @param {BigUint64Array} target
   * @param {BigUint64Array} source
   * @param {number} offset in elements
   */
  copyInto(target, source, offset) {
    target.set(source, offset * this.wordsPerElement);
  }

  toString() {
    return `Ring(${this.name})`;
  }
}

const RING64 = new Ring(64);
const RING128 = new Ring(128);
/** The rings by their `mpc.v1.Ring` enum name. */
const RINGS_BY_PROTO = { RING_Z2_64: RING64, RING_Z2_128: RING128 };

/**
 * The ring Z_2^bits.
 * @param {number} bits 64 or 128
 * @returns {Ring}
 */
function ringForBits(bits) {
  if (bits === 64) return RING64;
  if (bits === 128) return RING128;
  throw new MpcError(`the ring must be Z_2^64 or Z_2^128, not Z_2^${bits}`, { code: 'INVALID_ARGUMENT' });
}

/**
 * The ring an `mpc.v1.Ring` value names (as grpc-js gives it with `enums: String`).
 * @param {string | number} value e.g. "RING_Z2_128"
 * @param {string} [what] for the error message, e.g. "server-1: the output"
 * @returns {Ring}
 * @throws {MpcError} INVALID_ARGUMENT for RING_UNSPECIFIED or an unknown value
 */
function ringFromProto(value, what = 'the message') {
  const ring = typeof value === 'number' ? [null, RING64, RING128][value] : RINGS_BY_PROTO[value];
  if (!ring) throw new MpcError(`${what} names no known ring (${value})`, { code: 'INVALID_ARGUMENT' });
  return ring;
}

/**
 * Number of elements of an array of `shape` (1 for a scalar, shape []).
 * @param {number[]} shape
 * @returns {number}
 */
function elementCount(shape) {
  return shape.reduce((n, d) => n * d, 1);
}

module.exports = { WORD_BYTES, Ring, RING64, RING128, ringForBits, ringFromProto, elementCount };
