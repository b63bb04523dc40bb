'use strict';
/**
 * Fixed-point encoding of real numbers into Z_2^64 or Z_2^128, bit-identical
 * to `mpc_core.fixed_point` (numpy):
 *
 *   enc(v) = rint(v * 2^f) mod 2^k      (rint: round half to even)
 *   dec(u) = signed(u) / 2^f            (signed: the two's complement view)
 *
 * Inputs must be finite with |rint(v * 2^f)| < 2^(k-1), i.e. |v| < 2^(k-1-f);
 * anything else is refused with an {@link EncodingError} naming the first bad
 * index, before anything is sent. `v * 2^f` is exact in float64 (a power of
 * two), so the only rounding is `rint`, done here exactly as numpy does it.
 *
 * Exactness in Z_2^128. The rounded value is an integer-valued double of up
 * to 127 bits; `BigInt(double)` converts such a double exactly (a double
 * above 2^53 is a multiple of a power of two, and BigInt keeps every bit), and
 * `BigInt.asUintN(128, ...)` turns a negative integer into its two's
 * complement, so small negative values get an all-ones high word. Never split
 * a double into words with double arithmetic (`x % 2**64` and `x / 2**64`
 * round), and never store a negative BigInt into a high word by hand.
 * Decoding converts the signed BigInt with `Number()`, which rounds to the
 * nearest double (ties to even), then divides by 2^f (exact).
 *
 * Magnitude bits. {@link encodeBounded} also returns the least m >= 0 with
 * |rint(v * 2^f)| <= 2^m for every element: the public bound an upload must
 * state (`UploadHeader.magnitude_bits`).
 * @module fixed_point
 */
const { EncodingError } = require('./errors');

/** The default scale of a cluster in Z_2^64. */
const DEFAULT_FRACTIONAL_BITS_64 = 16;
/** The default scale of a cluster in Z_2^128 (the default ring). */
const DEFAULT_FRACTIONAL_BITS_128 = 32;

/**
 * The scale a cluster uses in `ring` unless its cluster file says otherwise.
 * @param {import('./ring').Ring} ring
 */
function defaultFractionalBits(ring) {
  return ring.bits === 64 ? DEFAULT_FRACTIONAL_BITS_64 : DEFAULT_FRACTIONAL_BITS_128;
}

/**
 * The largest scale of a dataset in `ring`: one integer bit and the sign remain.
 * @param {import('./ring').Ring} ring
 */
function maxFractionalBits(ring) {
  return ring.bits - 2;
}

/**
 * Round to the nearest integer, ties to even (numpy.rint, IEEE roundTiesToEven).
 * @param {number} x a finite double
 * @returns {number}
 */
function roundHalfEven(x) {
  const floor = Math.floor(x);
  const diff = x - floor; // exact for doubles
  if (diff < 0.5) return floor;
  if (diff > 0.5) return floor + 1;
  return floor % 2 === 0 ? floor : floor + 1;
}

/**
 * The least m >= 0 with `largest <= 2^m`.
 * @param {bigint} largest a non-negative integer
 * @returns {number}
 */
function magnitudeBitsOf(largest) {
  return largest <= 1n ? 0 : (largest - 1n).toString(2).length;
}

/**
 * Describe where a check failed: the first index and how many more.
 * @param {number[]} bad indices that failed
 * @param {boolean} scalar whether the input was a scalar
 */
function locate(bad, scalar) {
  if (scalar) return '(the scalar value)';
  return `at index ${bad[0]}` + (bad.length > 1 ? ` (and ${bad.length - 1} more)` : '');
}

/**
 * @param {import('./ring').Ring} ring
 * @param {number} fractionalBits
 */
function checkScale(ring, fractionalBits) {
  const limit = maxFractionalBits(ring);
  if (!Number.isInteger(fractionalBits) || fractionalBits < 0 || fractionalBits > limit) {
    throw new EncodingError(`fractional_bits must be within 0..${limit} in ${ring.name}, got ${fractionalBits}`);
  }
}

/**
 * Encode real values as ring elements and return their magnitude bits.
 * @param {import('./ring').Ring} ring
 * @param {ArrayLike<number>} values flat values (numbers only)
 * @param {number} fractionalBits f, 0..k-2
 * @param {{scalar?: boolean}} [options] word error messages for a scalar
 * @returns {{elements: BigUint64Array, magnitudeBits: number}}
 * @throws {EncodingError} a value is not a number, NaN, infinite or out of range
 */
function encodeBounded(ring, values, fractionalBits, { scalar = false } = {}) {
  checkScale(ring, fractionalBits);
  const notNumber = [];
  const notFinite = [];
  const tooLarge = [];
  const scale = 2 ** fractionalBits;
  const limit = 2 ** (ring.bits - 1); // exact as a double
  const scaled = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (typeof v !== 'number') {
      notNumber.push(i);
    } else if (!Number.isFinite(v)) {
      notFinite.push(i);
    } else {
      scaled[i] = roundHalfEven(v * scale);
      if (!(Math.abs(scaled[i]) < limit)) tooLarge.push(i);
    }
  }
  if (notNumber.length) {
    const kind = typeof values[notNumber[0]];
    throw new EncodingError(`values must be real numbers; found a ${kind} ${locate(notNumber, scalar)}`);
  }
  if (notFinite.length) {
    throw new EncodingError(`values must be finite; found NaN or inf ${locate(notFinite, scalar)}`);
  }
  if (tooLarge.length) {
    const bound = (2 ** (ring.bits - 1 - fractionalBits)).toPrecision(6);
    throw new EncodingError(
      `value out of fixed-point range ${locate(tooLarge, scalar)}: with ${fractionalBits} fractional bits ` +
        `in ${ring.name} |v| must be below ${bound}`,
    );
  }
  const elements = ring.alloc(values.length);
  let largest = 0;
  for (let i = 0; i < values.length; i++) {
    ring.set(elements, i, BigInt(scaled[i])); // exact: an integer-valued double; reduced mod 2^k
    largest = Math.max(largest, Math.abs(scaled[i])); // exact: no arithmetic, only comparisons
  }
  return { elements, magnitudeBits: magnitudeBitsOf(BigInt(largest)) };
}

/**
 * Encode real values as ring elements.
 * @param {import('./ring').Ring} ring
 * @param {ArrayLike<number>} values
 * @param {number} fractionalBits
 * @param {{scalar?: boolean}} [options]
 * @returns {BigUint64Array}
 */
function encode(ring, values, fractionalBits, options) {
  return encodeBounded(ring, values, fractionalBits, options).elements;
}

/**
 * Decode ring elements (two's complement) into doubles at scale 2^f.
 * @param {import('./ring').Ring} ring
 * @param {BigUint64Array} vector
 * @param {number} fractionalBits f (f_x + f_w for the output of a product): what the OutputInfo says
 * @returns {Float64Array}
 */
function decode(ring, vector, fractionalBits) {
  const scale = 2 ** fractionalBits;
  const out = new Float64Array(ring.size(vector));
  // Number(BigInt) rounds to the nearest double, ties to even; dividing by 2^f is exact.
  for (let i = 0; i < out.length; i++) out[i] = Number(ring.signed(ring.get(vector, i))) / scale;
  return out;
}

module.exports = {
  DEFAULT_FRACTIONAL_BITS_64,
  DEFAULT_FRACTIONAL_BITS_128,
  defaultFractionalBits,
  maxFractionalBits,
  roundHalfEven,
  magnitudeBitsOf,
  encodeBounded,
  encode,
  decode,
};
