'use strict';
// The Node client against tests/vectors/cross_language.json, the file that
// tests/vectors/test_cross_language_vectors.py checks against mpc_core and exact
// arithmetic, in both rings (Z_2^64 at f = 16, Z_2^128 at f = 32).
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { test } = require('node:test');
const {
  EncodingError,
  decode,
  encode,
  encodeBounded,
  prgElements,
  reconstructChecked,
  ringForBits,
  shareForParty,
  splitSeeded,
} = require('../lib');

const VECTORS = JSON.parse(
  fs.readFileSync(path.resolve(__dirname, '..', '..', '..', 'tests', 'vectors', 'cross_language.json'), 'utf8'),
);

test('the file has both rings', () => {
  assert.deepEqual(VECTORS.rings.map((r) => [r.ring, r.ring_bits, r.element_bytes]), [
    ['RING_Z2_64', 64, 8],
    ['RING_Z2_128', 128, 16],
  ]);
});

for (const section of VECTORS.rings) {
  const ring = ringForBits(section.ring_bits);
  const FIXED = section.fixed_point;
  const f = FIXED.fractional_bits;
  const elements = (decimals) => ring.fromInts(decimals.map(BigInt));
  const decimals = (vector) => ring.toInts(vector).map(String);
  const name = ring.name;

  test(`${name}: fixed-point encoding matches numpy.rint, one value at a time and all at once`, () => {
    assert.equal(section.ring, ring.protoName);
    assert.ok(FIXED.encode.length > 30);
    for (const { value, encoded, magnitude_bits: magnitude } of FIXED.encode) {
      const result = encodeBounded(ring, [value], f);
      assert.equal(ring.get(result.elements, 0), BigInt(encoded), `enc(${value})`);
      assert.equal(result.magnitudeBits, magnitude, `magnitude bits of ${value}`);
    }
    const all = encode(ring, FIXED.encode.map((c) => c.value), f);
    assert.deepEqual(decimals(all), FIXED.encode.map((c) => c.encoded));
  });

  test(`${name}: the magnitude bits of encoded vectors`, () => {
    for (const { values, encoded, magnitude_bits: magnitude } of FIXED.magnitude_bits) {
      const result = encodeBounded(ring, values, f);
      assert.deepEqual(decimals(result.elements), encoded);
      assert.equal(result.magnitudeBits, magnitude, JSON.stringify(values));
    }
  });

  test(`${name}: NaN, infinities and out-of-range values are refused, naming the index`, () => {
    for (const text of FIXED.refuse) {
      const value = Number(text);
      assert.throws(() => encode(ring, [0, 1.5, value], f), (error) => {
        assert.ok(error instanceof EncodingError);
        assert.equal(error.code, 'INVALID_ARGUMENT');
        assert.match(error.message, /at index 2/);
        return true;
      }, text);
    }
    assert.throws(() => encode(ring, ['1'], f), /real numbers; found a string at index 0/);
  });

  test(`${name}: decoding is signed(u) / 2^f, correctly rounded`, () => {
    for (const { encoded, fractional_bits: bits, value } of FIXED.decode) {
      assert.equal(decode(ring, elements([encoded]), bits)[0], value, `dec(${encoded}, ${bits})`);
    }
  });

  test(`${name}: checked reconstruction sums the components modulo 2^k`, () => {
    for (const { components, secret, fractional_bits: bits, value } of section.reconstruct) {
      const parts = components.map((c) => elements([c]));
      const shares = [0, 1, 2].map((party) => shareForParty(parts, party));
      const result = reconstructChecked(ring, shares);
      assert.equal(ring.get(result, 0), BigInt(secret));
      assert.equal(decode(ring, result, bits)[0], value);
    }
  });

  test(`${name}: the PRG is AES-128-CTR under the seed, zero IV, little-endian elements`, () => {
    for (const { seed_hex: seed, elements: expected } of section.prg) {
      assert.deepEqual(decimals(prgElements(ring, Buffer.from(seed, 'hex'), expected.length)), expected);
      // a longer expansion starts with the same elements
      assert.deepEqual(decimals(prgElements(ring, Buffer.from(seed, 'hex'), 1000)).slice(0, expected.length), expected);
    }
  });

  test(`${name}: a seeded split with given seeds reproduces x_2, each server's part and the reconstruction`, () => {
    for (const c of section.seeded_split) {
      const { elements: secret, magnitudeBits } = encodeBounded(ring, c.values, c.fractional_bits);
      assert.deepEqual(decimals(secret), c.secret);
      assert.equal(magnitudeBits, c.magnitude_bits);
      const seeds = [Buffer.from(c.seed_0_hex, 'hex'), Buffer.from(c.seed_1_hex, 'hex')];
      const split = splitSeeded(ring, secret, seeds);
      assert.deepEqual(decimals(split.x2), c.x_2);
      const n = c.secret.length;
      assert.deepEqual(decimals(prgElements(ring, seeds[0], n)), c.x_0);
      assert.deepEqual(decimals(prgElements(ring, seeds[1], n)), c.x_1);
      // What each server receives, and the pair it expands from it.
      const pairs = c.servers.map((server, party) => {
        assert.equal(server.party, party);
        const take = (seedHex, data) => {
          if (seedHex) {
            assert.deepEqual(data, [], 'a seeded component travels empty');
            return prgElements(ring, Buffer.from(seedHex, 'hex'), n);
          }
          return elements(data);
        };
        return { first: take(server.first_seed_hex, server.first), second: take(server.second_seed_hex, server.second) };
      });
      assert.equal(c.servers[0].first_seed_hex, c.seed_0_hex);
      assert.equal(c.servers[0].second_seed_hex, c.seed_1_hex);
      assert.equal(c.servers[1].first_seed_hex, c.seed_1_hex);
      assert.equal(c.servers[2].second_seed_hex, c.seed_0_hex);
      const back = reconstructChecked(ring, pairs);
      assert.deepEqual(decimals(back), c.reconstructed);
      assert.deepEqual(Array.from(decode(ring, back, c.fractional_bits)), c.decoded);
    }
  });

  test(`${name}: ring vectors travel as little-endian ${ring.elementBytes}-byte elements; digests are SHA-256 of those bytes`, () => {
    for (const c of section.wire) {
      const bytes = ring.toWire(elements(c.elements));
      assert.equal(bytes.toString('hex'), c.hex);
      assert.equal(crypto.createHash('sha256').update(bytes).digest('hex'), c.sha256_hex);
      assert.deepEqual(decimals(ring.fromWire(Buffer.from(c.hex, 'hex'))), c.elements);
      // the same bytes at an odd offset (as grpc-js may hand them over) decode the same
      const shifted = Buffer.concat([Buffer.alloc(5), Buffer.from(c.hex, 'hex')]).subarray(5);
      assert.deepEqual(decimals(ring.fromWire(shifted)), c.elements);
    }
  });
}

// Grants as a user writes them, and the mpc.v1.Grant each must become on the wire.
const { Grant, InvalidArgumentError, grantToProto } = require('../lib');
const GRANTS = VECTORS.grants;

function grantOf(spec) {
  const options = {
    role: spec.role ?? '',
    submitters: spec.submitters ?? [],
    maxUses: spec.max_uses ?? 0,
    expiresAt: spec.expires_at ?? 0,
    grantId: spec.grant_id ?? GRANTS.default_grant_id,
  };
  if (spec.pinned) return Grant.pinned(spec.receiver, spec.program, spec.pinned, options);
  if (spec.read_access) return Grant.readAccess(spec.receiver, spec.program, options);
  return new Grant({ receiver: spec.receiver, program: spec.program, ...options });
}

function wireOf(message) {
  return {
    receiver: message.receiver,
    program: message.program,
    role: message.role,
    scope: message.scope,
    inputs: message.inputs.map((p) => ({
      role: p.role,
      owner: p.dataset.owner,
      name: p.dataset.name,
      upload_id: Buffer.from(p.upload_id).toString('hex'),
      columns: [...(p.columns ?? [])],
    })),
    submitters: [...message.submitters],
    max_uses: message.max_uses,
    expires_at: message.expires_at,
    grant_id: Buffer.from(message.grant_id).toString('hex'),
  };
}

for (const c of GRANTS.cases) {
  test(`grant on the wire: ${c.about}`, () => {
    const { owner, name } = GRANTS.dataset;
    assert.deepEqual(wireOf(grantToProto(grantOf(c.grant), owner, name)), c.wire);
  });
}

for (const c of GRANTS.refused) {
  test(`grant refused: ${c.about}`, () => {
    const { owner, name } = GRANTS.dataset;
    assert.throws(
      () => grantToProto(grantOf(c.grant), owner, name),
      (error) => error instanceof InvalidArgumentError && error.message.includes(c.message),
    );
  });
}
