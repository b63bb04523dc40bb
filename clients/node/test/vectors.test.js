'use strict';
// The Node client against tests/vectors/cross_language.json, the file that
// tests/vectors/test_cross_language_vectors.py checks against mpc_core.
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { test } = require('node:test');
const { EncodingError, decode, encode, fromWire, prgWords, reconstructChecked, shareForParty, splitSeeded, toWire } =
  require('../lib');

const VECTORS = JSON.parse(
  fs.readFileSync(path.resolve(__dirname, '..', '..', '..', 'tests', 'vectors', 'cross_language.json'), 'utf8'),
);
const FIXED = VECTORS.fixed_point;
const words = (decimals) => BigUint64Array.from(decimals.map(BigInt));

test('fixed-point encoding matches numpy.rint, one value at a time and all at once', () => {
  assert.ok(FIXED.encode.length > 20);
  for (const { value, encoded_u64: expected } of FIXED.encode) {
    assert.equal(encode([value], FIXED.fractional_bits)[0], BigInt(expected), `enc(${value})`);
  }
  const all = encode(FIXED.encode.map((c) => c.value), FIXED.fractional_bits);
  assert.deepEqual(Array.from(all, String), FIXED.encode.map((c) => c.encoded_u64));
});

test('NaN, infinities and out-of-range values are refused, naming the index', () => {
  for (const text of FIXED.refuse) {
    const value = Number(text);
    assert.throws(() => encode([0, 1.5, value], FIXED.fractional_bits), (error) => {
      assert.ok(error instanceof EncodingError);
      assert.equal(error.code, 'INVALID_ARGUMENT');
      assert.match(error.message, /at index 2/);
      return true;
    }, text);
  }
  assert.throws(() => encode([2 ** 47], 16), /\|v\| must be below 1\.40737e\+14/);
  assert.throws(() => encode(['1'], 16), /real numbers; found a string at index 0/);
});

test('decoding is int64(u) / 2^f', () => {
  for (const { encoded_u64: word, fractional_bits: bits, value } of FIXED.decode) {
    assert.equal(decode(words([word]), bits)[0], value, `dec(${word}, ${bits})`);
  }
});

test('checked reconstruction sums the components modulo 2^64', () => {
  for (const { components, secret_u64: secret, value_f16: value } of VECTORS.reconstruct) {
    const parts = components.map((c) => words([c]));
    const shares = [0, 1, 2].map((party) => shareForParty(parts, party));
    const result = reconstructChecked(shares);
    assert.equal(result[0], BigInt(secret));
    assert.equal(decode(result, 16)[0], value);
  }
});

test('the PRG is AES-128-CTR under the seed, zero IV, little-endian u64 words', () => {
  for (const { seed_hex: seed, words: expected } of VECTORS.prg) {
    assert.deepEqual(Array.from(prgWords(Buffer.from(seed, 'hex'), expected.length), String), expected);
    // a longer expansion starts with the same words
    assert.deepEqual(Array.from(prgWords(Buffer.from(seed, 'hex'), 1000).slice(0, expected.length), String), expected);
  }
});

test('a seeded split with given seeds reproduces x_2', () => {
  for (const c of VECTORS.seeded_split) {
    const seeds = [Buffer.from(c.seed_0_hex, 'hex'), Buffer.from(c.seed_1_hex, 'hex')];
    const { x2 } = splitSeeded(words(c.secret_u64), seeds);
    assert.deepEqual(Array.from(x2, String), c.x_2);
  }
});

test('ring vectors travel as little-endian u64 bytes; digests are SHA-256 of those bytes', () => {
  for (const c of VECTORS.wire) {
    const bytes = toWire(words(c.words));
    assert.equal(bytes.toString('hex'), c.hex);
    assert.equal(crypto.createHash('sha256').update(bytes).digest('hex'), c.sha256_hex);
    assert.deepEqual(Array.from(fromWire(Buffer.from(c.hex, 'hex')), String), c.words);
  }
});
