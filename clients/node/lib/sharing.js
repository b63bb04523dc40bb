'use strict';
/**
 * 2-out-of-3 replicated secret sharing over Z_2^64 or Z_2^128, as `mpc_core.sharing`.
 *
 * A secret vector x is split into components with x = x0 + x1 + x2 (mod 2^k).
 * Party (server) i holds the pair (x_i, x_{i+1}), indices mod 3, so component
 * j is held by servers j and j-1. When revealing, every component therefore
 * arrives twice, and the checked reveal refuses to reconstruct unless both
 * copies agree. Vectors are `BigUint64Array`s in the layout of `./ring`.
 * @module sharing
 */
const crypto = require('node:crypto');
const { prgElements, randomSeed, randomElements } = require('./prg');
const { MpcError, OutputIntegrityError } = require('./errors');

/**
 * @typedef {object} Share one party's pair of components
 * @property {BigUint64Array} first component i of party i
 * @property {BigUint64Array} second component i+1 of party i
 */

/**
 * Split into three additive components: x0, x1 uniformly random, x2 = x - x0 - x1.
 * @param {import('./ring').Ring} ring
 * @param {BigUint64Array} secret
 * @returns {[BigUint64Array, BigUint64Array, BigUint64Array]}
 */
function split(ring, secret) {
  const n = ring.size(secret);
  const x0 = randomElements(ring, n);
  const x1 = randomElements(ring, n);
  return [x0, x1, ring.sub(ring.sub(secret, x0), x1)];
}

/**
 * @typedef {object} SeededSplit a split whose components 0 and 1 are PRG expansions
 * @property {import('./ring').Ring} ring
 * @property {Buffer} seed0 x0 = prgElements(ring, seed0, n)
 * @property {Buffer} seed1 x1 = prgElements(ring, seed1, n)
 * @property {BigUint64Array} x2 x - x0 - x1
 */

/**
 * Split with components 0 and 1 expanded from fresh 16-byte seeds.
 * @param {import('./ring').Ring} ring
 * @param {BigUint64Array} secret
 * @param {[Buffer, Buffer]} [seeds] fixed seeds, for tests only
 * @returns {SeededSplit}
 */
function splitSeeded(ring, secret, seeds = [randomSeed(), randomSeed()]) {
  const [seed0, seed1] = seeds;
  const n = ring.size(secret);
  const x2 = ring.sub(ring.sub(secret, prgElements(ring, seed0, n)), prgElements(ring, seed1, n));
  return { ring, seed0, seed1, x2 };
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
 * Constant-time equality of two ring vectors (their bytes).
 * @param {BigUint64Array} a
 * @param {BigUint64Array} b
 */
function sameElements(a, b) {
  const bytes = (v) => Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  return a.length === b.length && crypto.timingSafeEqual(bytes(a), bytes(b));
}

/**
 * SHA-256 of a vector's wire bytes (what `FetchOutputResponse.second_digest` carries).
 * @param {import('./ring').Ring} ring
 * @param {BigUint64Array} vector
 * @returns {Buffer}
 */
function wireDigest(ring, vector) {
  return crypto.createHash('sha256').update(ring.toWire(vector)).digest();
}

/**
 * Reconstruct after checking that both copies of every component agree:
 * component j arrives as server j's `first` and server j-1's `second`.
 * @param {import('./ring').Ring} ring
 * @param {Share[]} shares the three servers' shares, in party order
 * @param {string[]} [names] server names for error messages
 * @returns {BigUint64Array} x0 + x1 + x2
 * @throws {OutputIntegrityError} naming the two servers whose copies differ
 */
function reconstructChecked(ring, shares, names = ['0', '1', '2']) {
  if (shares.length !== 3) throw new MpcError(`need 3 shares, got ${shares.length}`, { code: 'INVALID_ARGUMENT' });
  for (let holder = 0; holder < 3; holder++) {
    const other = (holder + 1) % 3;
    if (!sameElements(shares[holder].second, shares[other].first)) {
      throw new OutputIntegrityError([names[holder], names[other]], `copies of share component ${other}`);
    }
  }
  return ring.add(ring.add(shares[0].first, shares[1].first), shares[2].first);
}

/**
 * Reconstruct from the three `first` components after checking each server's
 * SHA-256 digest of its `second` against the digest of its neighbour's `first`
 * (FetchOutput with `second_as_digest`).
 * @param {import('./ring').Ring} ring
 * @param {{server: string, first: BigUint64Array, secondDigest: Buffer, firstDigest?: Buffer}[]} parts
 * @returns {BigUint64Array}
 * @throws {OutputIntegrityError} naming the two servers whose copies differ
 */
function reconstructByDigest(ring, parts) {
  for (let holder = 0; holder < 3; holder++) {
    const part = parts[holder];
    const other = parts[(holder + 1) % 3];
    const expected = other.firstDigest ?? wireDigest(ring, other.first);
    const given = part.secondDigest ?? Buffer.alloc(0);
    if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) {
      throw new OutputIntegrityError([part.server, other.server], `copies of share component ${(holder + 1) % 3}`);
    }
  }
  return ring.add(ring.add(parts[0].first, parts[1].first), parts[2].first);
}

module.exports = { split, splitSeeded, shareForParty, wireDigest, reconstructChecked, reconstructByDigest };
