'use strict';
/**
 * Fixed-point encoding of real numbers into Z_2^64, bit-identical to
 * `mpc_core.fixed_point` (numpy):
 *
 *   enc(v) = rint(v * 2^f) mod 2^64      (rint: round half to even)
 *   dec(u) = int64(u) / 2^f
 *
 * Inputs must be finite with |rint(v * 2^f)| < 2^63, i.e. |v| < 2^(63-f);
 * anything else is refused with an {@link EncodingError} naming the first bad
 * index, before anything is sent. `v * 2^f` is exact in float64 (a power of
 * two), so the only rounding is `rint`, done here exactly as numpy does it.
 * @module fixed_point
 */
const { EncodingError } = require('./errors');

const DEFAULT_FRACTIONAL_BITS = 16;
const TWO_63 = 2 ** 63;

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
 * Describe where a check failed: the first index and how many more.
 * @param {number[]} bad indices that failed
 * @param {boolean} scalar whether the input was a scalar
 */
function locate(bad, scalar) {
  if (scalar) return '(the scalar value)';
  return `at index ${bad[0]}` + (bad.length > 1 ? ` (and ${bad.length - 1} more)` : '');
}

/**
 * Encode real values as ring elements.
 * @param {ArrayLike<number>} values flat values (numbers only)
 * @param {number} [fractionalBits] f, the cluster's `fractional_bits`
 * @param {{scalar?: boolean}} [options] word error messages for a scalar
 * @returns {BigUint64Array}
 * @throws {EncodingError} a value is not a number, NaN, infinite or out of range
 */
function encode(values, fractionalBits = DEFAULT_FRACTIONAL_BITS, { scalar = false } = {}) {
  if (!Number.isInteger(fractionalBits) || fractionalBits < 0 || fractionalBits > 62) {
    throw new EncodingError(`fractional_bits must be within 0..62, got ${fractionalBits}`);
  }
  const notNumber = [];
  const notFinite = [];
  const tooLarge = [];
  const scale = 2 ** fractionalBits;
  const scaled = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (typeof v !== 'number') {
      notNumber.push(i);
    } else if (!Number.isFinite(v)) {
      notFinite.push(i);
    } else {
      scaled[i] = roundHalfEven(v * scale);
      if (Math.abs(scaled[i]) >= TWO_63) tooLarge.push(i);
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
    const bound = (2 ** (63 - fractionalBits)).toPrecision(6);
    throw new EncodingError(
      `value out of fixed-point range ${locate(tooLarge, scalar)}: ` +
        `with ${fractionalBits} fractional bits |v| must be below ${bound}`,
    );
  }
  const out = new BigUint64Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = BigInt(scaled[i]); // stored mod 2^64
  return out;
}

/**
 * Decode ring elements (two's complement) into doubles at scale 2^f.
 * @param {BigUint64Array} words
 * @param {number} fractionalBits f (2f for the output of a product)
 * @returns {Float64Array}
 */
function decode(words, fractionalBits) {
  const scale = 2 ** fractionalBits;
  const out = new Float64Array(words.length);
  // Number(BigInt) rounds to nearest-even, like numpy's int64 -> float64.
  for (let i = 0; i < words.length; i++) out[i] = Number(BigInt.asIntN(64, words[i])) / scale;
  return out;
}

module.exports = { DEFAULT_FRACTIONAL_BITS, roundHalfEven, encode, decode };
