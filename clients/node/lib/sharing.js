'use strict';
/**
 * 2-out-of-3 replicated secret sharing over Z_2^64, as `mpc_core.sharing`.
 *
 * A secret vector x is split into components with x = x0 + x1 + x2 (mod 2^64).
 * Party (server) i holds the pair (x_i, x_{i+1}), indices mod 3, so component
 * j is held by servers j and j-1. When revealing, every component therefore
 * arrives twice, and the checked reveal refuses to reconstruct unless both
 * copies agree.
 * @module sharing
 */
const crypto = require('node:crypto');
const { add, sub, toWire } = require('./ring');
const { prgWords, randomSeed, randomWords } = require('./prg');
const { MpcError, OutputIntegrityError } = require('./errors');

/**
 * @typedef {object} Share one party's pair of components
 * @property {BigUint64Array} first component i of party i
 * @property {BigUint64Array} second component i+1 of party i
 */

/**
 * Split into three additive components: x0, x1 uniformly random, x2 = x - x0 - x1.
 * @param {BigUint64Array} secret
 * @returns {[BigUint64Array, BigUint64Array, BigUint64Array]}
 */
function split(secret) {
  const x0 = randomWords(secret.length);
  const x1 = randomWords(secret.length);
  return [x0, x1, sub(sub(secret, x0), x1)];
}

/**
 * @typedef {object} SeededSplit a split whose components 0 and 1 are PRG expansions
 * @property {Buffer} seed0 x0 = prgWords(seed0, n)
 * @property {Buffer} seed1 x1 = prgWords(seed1, n)
 * @property {BigUint64Array} x2 x - x0 - x1
 */

/**
 * Split with components 0 and 1 expanded from fresh 16-byte seeds.
 * @param {BigUint64Array} secret
 * @param {[Buffer, Buffer]} [seeds] fixed seeds, for tests only
 * @returns {SeededSplit}
 */
function splitSeeded(secret, seeds = [randomSeed(), randomSeed()]) {
  const [seed0, seed1] = seeds;
  const x2 = sub(sub(secret, prgWords(seed0, secret.length)), prgWords(seed1, secret.length));
  return { seed0, seed1, x2 };
}

/**
 * Party `party`'s pair (x_i, x_{i+1}).
 * @param {BigUint64Array[]} components the three components
 * @param {number} party 0, 1 or 2
 * @returns {Share}
 */
function shareForParty(components, party) {
  return { first: components[party], second: components[(party + 1) % 3] };
}

/**
 * Constant-time equality of two ring vectors.
 * @param {BigUint64Array} a
 * @param {BigUint64Array} b
 */
function sameWords(a, b) {
  return a.length === b.length && crypto.timingSafeEqual(toWire(a), toWire(b));
}

/**
 * Reconstruct after checking that both copies of every component agree:
 * component j arrives as server j's `first` and server j-1's `second`.
 * @param {Share[]} shares the three servers' shares, in party order
 * @param {string[]} [names] server names for error messages
 * @returns {BigUint64Array} x0 + x1 + x2
 * @throws {OutputIntegrityError} naming the two servers whose copies differ
 */
function reconstructChecked(shares, names = ['0', '1', '2']) {
  if (shares.length !== 3) throw new MpcError(`need 3 shares, got ${shares.length}`, { code: 'INVALID_ARGUMENT' });
  for (let holder = 0; holder < 3; holder++) {
    const other = (holder + 1) % 3;
    if (!sameWords(shares[holder].second, shares[other].first)) {
      throw new OutputIntegrityError([names[holder], names[other]], `copies of share component ${other}`);
    }
  }
  return add(add(shares[0].first, shares[1].first), shares[2].first);
}

/**
 * Reconstruct from the three `first` components after checking each server's
 * SHA-256 digest of its `second` against the digest of its neighbour's `first`
 * (FetchOutput with `second_as_digest`).
 * @param {{server: string, first: BigUint64Array, secondDigest: Buffer, firstDigest?: Buffer}[]} parts
 * @returns {BigUint64Array}
 * @throws {OutputIntegrityError} naming the two servers whose copies differ
 */
function reconstructByDigest(parts) {
  for (let holder = 0; holder < 3; holder++) {
    const part = parts[holder];
    const other = parts[(holder + 1) % 3];
    const expected = other.firstDigest ?? crypto.createHash('sha256').update(toWire(other.first)).digest();
    const given = part.secondDigest ?? Buffer.alloc(0);
    if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) {
      throw new OutputIntegrityError([part.server, other.server], `copies of share component ${(holder + 1) % 3}`);
    }
  }
  return add(add(parts[0].first, parts[1].first), parts[2].first);
}

module.exports = { split, splitSeeded, shareForParty, reconstructChecked, reconstructByDigest };
