'use strict';
// Unit tests of the Node client without servers: cluster file, both rings'
// arithmetic, sharing and the checked reveal, the UploadDataset message layout,
// the server identity check, errors and the CLI's usage.
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const { test } = require('node:test');
const lib = require('../lib');

const { RING64, RING128, encode, prgElements, split, splitSeeded, shareForParty, reconstructChecked, reconstructByDigest } =
  lib;
const RINGS = [RING64, RING128];
const F = { 64: 16, 128: 32 };

const CLUSTER = `# a comment
ca = "certs/ca.pem"   # relative to the cluster file
ring = 64
fractional_bits = 16

[[servers]]
identity = "server-0"
address = "10.0.0.10:7100"

[[servers]]
identity = "server-1"
address = "[::1]:7101"

[[servers]]
identity = "server-2"
address = "localhost:7102"
`;

test('the cluster file: servers in party order, CA relative to the file', () => {
  const cluster = lib.parseCluster(CLUSTER, '/etc/mpc');
  assert.equal(cluster.caPath, '/etc/mpc/certs/ca.pem');
  assert.equal(cluster.ring, RING64);
  assert.equal(cluster.fractionalBits, 16);
  assert.deepEqual(cluster.servers.map((s) => [s.party, s.identity, s.address]), [
    [0, 'server-0', '10.0.0.10:7100'],
    [1, 'server-1', '[::1]:7101'],
    [2, 'server-2', 'localhost:7102'],
  ]);
  assert.equal(lib.parseCluster(CLUSTER.replace('certs/ca.pem', '/abs/ca.pem'), '/etc/mpc').caPath, '/abs/ca.pem');
  assert.equal(lib.parseCluster(CLUSTER.replace('fractional_bits = 16\n', ''), '/x').fractionalBits, 16);
});

test('the cluster file: ring 128 is the default, with f = 32 by default and up to 62', () => {
  const noRing = CLUSTER.replace('ring = 64\n', '');
  const cluster = lib.parseCluster(noRing.replace('fractional_bits = 16\n', ''), '/x');
  assert.equal(cluster.ring, RING128);
  assert.equal(cluster.fractionalBits, 32);
  assert.equal(lib.parseCluster(noRing, '/x').fractionalBits, 16);
  assert.equal(lib.parseCluster(CLUSTER.replace('ring = 64', 'ring = 128'), '/x').ring, RING128);
  assert.equal(lib.parseCluster(noRing.replace('= 16', '= 62'), '/x').fractionalBits, 62);
  assert.throws(() => lib.parseCluster(noRing.replace('= 16', '= 63'), '/x'), /fractional_bits must be 1..62 in Z_2\^128/);
  assert.throws(() => lib.parseCluster(CLUSTER.replace('ring = 64', 'ring = 32'), '/x'), /ring must be 128 \(Z_2\^128\) or 64/);
  assert.throws(() => lib.parseCluster(CLUSTER.replace('ring = 64', 'ring = "128"'), '/x'), /ring must be/);
});

test('bad cluster files are refused with the offending key', () => {
  const bad = {
    'not valid TOML': CLUSTER.replace('ca = ', 'ca == '),
    'unknown keys \\["extra"\\]': `extra = 1\n${CLUSTER}`,
    'exactly 3': CLUSTER.split('[[servers]]').slice(0, 3).join('[[servers]]'),
    'servers\\[1\\]: address must be': CLUSTER.replace('[::1]:7101', '[::1]'),
    'servers\\[2\\]: address must be': CLUSTER.replace(':7102', ':70000'),
    'servers\\[0\\]: invalid server identity': CLUSTER.replace('"server-0"', '"server 0"'),
    'must be distinct': CLUSTER.replace('"server-2"', '"server-1"'),
    'fractional_bits must be 1..30 in Z_2\\^64': CLUSTER.replace('= 16', '= 31'),
    'fractional_bits must be 1..30 in Z_2\\^64$': CLUSTER.replace('= 16', '= 0'),
    "'ca' must name": CLUSTER.replace('"certs/ca.pem"', '""'),
  };
  for (const [message, text] of Object.entries(bad)) {
    const matches = (e) => e instanceof lib.ConfigError && new RegExp(message).test(e.message);
    assert.throws(() => lib.parseCluster(text, '/x'), matches, message);
  }
  assert.throws(() => lib.parseCluster(CLUSTER.replace('= 16', '= true'), '/x'), /fractional_bits/);
});

test('Z_2^128 arithmetic carries and borrows between the words, and wraps modulo 2^128', () => {
  const M = 1n << 128n;
  const values = [0n, 1n, (1n << 64n) - 1n, 1n << 64n, (1n << 127n) - 1n, 1n << 127n, M - 1n, M - (1n << 64n), 12345678901234567890123n];
  for (const a of values) {
    for (const b of values) {
      const [x, y] = [RING128.fromInts([a]), RING128.fromInts([b])];
      assert.equal(RING128.get(RING128.add(x, y), 0), (a + b) % M, `${a} + ${b}`);
      assert.equal(RING128.get(RING128.sub(x, y), 0), (((a - b) % M) + M) % M, `${a} - ${b}`);
    }
  }
  assert.deepEqual(RING128.toInts(RING128.fromInts([-1n, -(1n << 64n), M + 5n])), [M - 1n, M - (1n << 64n), 5n]);
  assert.deepEqual(RING128.toInts(RING128.fromInts([-1n, 1n << 127n]), { signed: true }), [-1n, -(1n << 127n)]);
  assert.deepEqual(RING64.toInts(RING64.fromInts([-1n]), { signed: true }), [-1n]);
  assert.equal(lib.ringForBits(128), RING128);
  assert.equal(lib.ringFromProto('RING_Z2_64'), RING64);
  assert.throws(() => lib.ringFromProto('RING_UNSPECIFIED', 'the output'), /the output names no known ring/);
});

test('small negative values in Z_2^128 get an all-ones high word; values above 2^53 convert exactly', () => {
  const [minusOne, minusTwo] = [encode(RING128, [-(2 ** -32)], 32), encode(RING128, [-1.5 * 2 ** -32], 32)];
  assert.deepEqual(Array.from(minusOne), [2n ** 64n - 1n, 2n ** 64n - 1n]);
  assert.deepEqual(Array.from(minusTwo), [2n ** 64n - 2n, 2n ** 64n - 1n]);
  // 1e20 * 2^32 is far above 2^53; its BigInt is the exact product of the double by 2^32
  assert.equal(RING128.get(encode(RING128, [1e20], 32), 0), BigInt(1e20) * 2n ** 32n);
  const big = -(2 ** 95) + 2 ** 42;
  assert.equal(RING128.signed(RING128.get(encode(RING128, [big], 32), 0)), -(2n ** 127n) + 2n ** 74n);
  assert.deepEqual(Array.from(lib.decode(RING128, encode(RING128, [big, -1e-9, 1e20], 32), 32)), [big, -4 * 2 ** -32, 1e20]);
  const { magnitudeBits } = lib.encodeBounded(RING128, [1.5, -0.25], 32);
  assert.equal(magnitudeBits, 33);
  assert.equal(lib.encodeBounded(RING64, [0, -0], 16).magnitudeBits, 0);
  assert.throws(() => encode(RING128, [2 ** 95], 32), /in Z_2\^128 \|v\| must be below 3\.96141e\+28/);
  assert.throws(() => encode(RING128, [1], 127), /fractional_bits must be within 0..126 in Z_2\^128/);
  assert.throws(() => encode(RING64, [1], 63), /fractional_bits must be within 0..62 in Z_2\^64/);
});

test('decoding rounds the signed value correctly to a double, also above 2^53', () => {
  // 2^64 + 2^62 + 2^11 + 1 lies just above the midpoint of two doubles: it rounds up
  const u = 2n ** 64n + 2n ** 62n + 2n ** 11n + 1n;
  assert.equal(lib.decode(RING128, RING128.fromInts([u]), 32)[0], (2 ** 64 + 2 ** 62 + 2 ** 12) / 2 ** 32);
  assert.equal(lib.decode(RING128, RING128.fromInts([-u]), 32)[0], -(2 ** 64 + 2 ** 62 + 2 ** 12) / 2 ** 32);
});

test('received bytes at any offset decode (grpc-js Buffers are not 8-byte aligned)', () => {
  for (const ring of RINGS) {
    const elements = ring.fromInts([1n, -2n, 3n]);
    const backing = Buffer.alloc(3 + 3 * ring.elementBytes);
    ring.toWire(elements).copy(backing, 3);
    const unaligned = backing.subarray(3);
    assert.equal(unaligned.byteOffset % 8, 3);
    assert.throws(() => new BigUint64Array(unaligned.buffer, unaligned.byteOffset, 3), RangeError);
    assert.deepEqual(ring.toInts(ring.fromWire(unaligned, 3), { signed: true }), [1n, -2n, 3n]);
  }
  assert.throws(() => RING128.fromWire(Buffer.alloc(24)), /24 bytes is not a whole number of 16-byte elements/);
  assert.throws(() => RING64.fromWire(Buffer.alloc(24), 2), /expected 2 elements of Z_2\^64, got 3/);
});

for (const ring of RINGS) {
  const f = F[ring.bits];

  test(`${ring.name}: a split sums to the secret and each server gets (x_i, x_{i+1})`, () => {
    const secret = encode(ring, [1, -2.5, 1e9, 0, -(2 ** -f)], f);
    const components = split(ring, secret);
    assert.notDeepEqual(components[0], components[1]);
    const shares = [0, 1, 2].map((party) => shareForParty(components, party));
    assert.equal(shares[2].first, components[2]);
    assert.equal(shares[2].second, components[0]);
    assert.deepEqual(reconstructChecked(ring, shares), secret);
  });

  test(`${ring.name}: the checked reveal names the two servers whose copies of a component differ`, () => {
    const secret = encode(ring, [3.25, 4], f);
    const names = ['server-0', 'server-1', 'server-2'];
    for (const holder of [0, 1, 2]) {
      for (const word of ring.bits === 128 ? [2, 3] : [1]) {
        const components = split(ring, secret);
        const good = [0, 1, 2].map((party) => shareForParty(components, party));
        const tampered = good.map((s) => ({ first: s.first.slice(), second: s.second.slice() }));
        tampered[holder].second[word] += 1n; // the low or the high word of element 1
        const other = names[(holder + 1) % 3];
        assert.throws(
          () => reconstructChecked(ring, tampered, names),
          (e) => e instanceof lib.OutputIntegrityError && e.servers.join() === `${names[holder]},${other}`,
        );
      }
    }
  });

  test(`${ring.name}: the digest reveal compares each second digest with the neighbour first component`, () => {
    const components = split(ring, encode(ring, [1, 2, 3], f));
    const parts = [0, 1, 2].map((party) => ({
      server: `server-${party}`,
      first: components[party],
      secondDigest: lib.wireDigest(ring, components[(party + 1) % 3]),
    }));
    assert.deepEqual(lib.decode(ring, reconstructByDigest(ring, parts), f), Float64Array.from([1, 2, 3]));
    parts[2].secondDigest = lib.wireDigest(ring, components[1]);
    assert.throws(
      () => reconstructByDigest(ring, parts),
      /servers server-2 and server-0 returned different copies of share component 0/,
    );
  });

  test(`${ring.name}: the reveal refuses parts whose rings or scales differ`, () => {
    const components = split(ring, encode(ring, [1, 2], f));
    const parts = [0, 1, 2].map((party) => ({
      server: `server-${party}`,
      shape: [2],
      fractionalBits: f,
      ring,
      magnitudeBits: f + 1,
      ...shareForParty(components, party),
    }));
    assert.deepEqual(Array.from(lib.reveal(parts, false).values), [1, 2]);
    const other = ring === RING64 ? RING128 : RING64;
    assert.throws(() => lib.reveal([parts[0], { ...parts[1], ring: other }, parts[2]], false), /servers server-0 and server-1 returned different output names, shapes, rings or scales/);
    const named = parts.map((p) => ({ ...p, name: 'value' }));
    assert.equal(lib.reveal(named, false).name, 'value');
    assert.throws(() => lib.reveal([named[0], named[1], { ...named[2], name: 'other' }], false), /servers server-1 and server-2 returned different output names/);
    assert.throws(() => lib.reveal([parts[0], parts[1], { ...parts[2], fractionalBits: 2 * f }], false), /servers server-1 and server-2/);
  });
}

/** What a server does with its UploadDataset stream (mpc_server/service/uploads.py). */
function receive(ring, requests) {
  const [{ header }, ...rest] = requests;
  const count = header.shape.reduce((n, d) => n * Number(d), 1);
  const take = (seed, field) => {
    if (seed) return prgElements(ring, seed, count);
    const out = ring.alloc(count);
    for (const { chunk } of rest) ring.copyInto(out, ring.fromWire(chunk[field]), Number(chunk.offset));
    return out;
  };
  for (const { chunk } of rest) {
    assert.ok(chunk.first.length + chunk.second.length <= 2 << 20, 'at most 2 MiB of shares per message');
    assert.equal(chunk.first.length > 0, !header.first_seed, 'a seeded component travels empty');
    assert.equal(chunk.second.length > 0, !header.second_seed, 'a seeded component travels empty');
  }
  const first = take(header.first_seed, 'first');
  return { header, chunks: rest.length, first, second: take(header.second_seed, 'second') };
}

for (const [ring, count, plainChunks, seededChunks] of [
  [RING64, 300_001, 3, 2], // 131072 elements per message when both components travel, 262144 when one does
  [RING128, 150_001, 3, 2], // 65536 and 131072
]) {
  test(`${ring.name} upload streams: plain and seed-compressed give every server its pair, 2 MiB per message`, () => {
    assert.equal(lib.chunkElements(ring, 2), ring.bits === 64 ? 131072 : 65536);
    assert.equal(lib.chunkElements(ring, 1), ring.bits === 64 ? 262144 : 131072);
    const secret = lib.randomElements(ring, count);
    const header = { name: 'x', shape: [String(count)], fractional_bits: 0, grants: [], upload_id: Buffer.alloc(16) };
    const components = split(ring, secret);
    const plain = [0, 1, 2].map((party) => {
      const pair = shareForParty(components, party);
      return receive(ring, [...lib.uploadRequests(ring, header, pair.first, pair.second, count)]);
    });
    assert.deepEqual(plain.map((p) => p.chunks), [plainChunks, plainChunks, plainChunks]);
    assert.deepEqual(reconstructChecked(ring, plain), secret);

    const seeded = splitSeeded(ring, secret);
    const received = [0, 1, 2].map((party) => receive(ring, [...lib.seededRequests(header, seeded, party)]));
    assert.deepEqual(received.map((p) => p.chunks), [0, seededChunks, seededChunks]);
    assert.equal(received[0].header.first_seed, seeded.seed0);
    assert.equal(received[0].header.second_seed, seeded.seed1);
    assert.equal(received[1].header.first_seed, seeded.seed1);
    assert.equal(received[1].header.second_seed, undefined);
    assert.equal(received[2].header.first_seed, undefined);
    assert.equal(received[2].header.second_seed, seeded.seed0);
    assert.deepEqual(reconstructChecked(ring, received), secret);
  });
}

test('upload headers serialize ring, fractional_bits and magnitude_bits, also when they are 0', () => {
  const service = lib.loadClientService();
  const serialize = service.service.UploadDataset.requestSerialize;
  const deserialize = service.service.UploadDataset.requestDeserialize;
  const header = { name: 'x', shape: ['1'], fractional_bits: 0, magnitude_bits: 0, ring: 'RING_Z2_128', upload_id: Buffer.alloc(16) };
  const back = deserialize(serialize({ header })).header;
  assert.equal(back.ring, 'RING_Z2_128');
  assert.equal(back._fractional_bits, 'fractional_bits'); // present (proto3 optional), though 0
  assert.equal(back._magnitude_bits, 'magnitude_bits');
  const job = service.service.RunJob.requestDeserialize(
    service.service.RunJob.requestSerialize({ job: { job_id: 'j', output_fractional_bits: 0 } }),
  ).job;
  assert.equal(job._output_fractional_bits, 'output_fractional_bits');
});

test('the server identity check wants the DNS name and the urn:mpc:server URI of the expected server', () => {
  const check = lib.serverIdentityCheck('server-0');
  const cert = (san) => ({ subject: { CN: 'x' }, subjectaltname: san });
  const own = 'URI:urn:mpc:server:server-0, DNS:server-0, IP Address:127.0.0.1, DNS:localhost';
  assert.equal(check('server-0', cert(own)), undefined);
  // server-1's certificate that also carries the DNS name server-0 (e.g. an extra --host): TLS
  // host-name verification alone would accept it.
  const confusable = 'URI:urn:mpc:server:server-1, DNS:server-1, IP Address:127.0.0.1, DNS:localhost, DNS:server-0';
  assert.equal(require('node:tls').checkServerIdentity('server-0', cert(confusable)), undefined);
  assert.match(check('server-0', cert(confusable)).message, /carries urn:mpc:server:server-1, not urn:mpc:server:server-0/);
  assert.match(check('server-0', cert('URI:urn:mpc:server:server-1, DNS:server-1')).message, /server-0/);
  assert.match(check('server-0', cert('DNS:server-0')).message, /carries no mpc identity/);
  assert.match(check('server-0', cert('URI:urn:mpc:client:server-0, DNS:server-0')).message, /urn:mpc:client:server-0/);
});

test('values: scalars, vectors and rectangular matrices', () => {
  assert.deepEqual(lib.flatten(2.5), { flat: [2.5], shape: [] });
  assert.deepEqual(lib.flatten([1, 2]), { flat: [1, 2], shape: [2] });
  assert.deepEqual(lib.flatten([[1, 2, 3], [4, 5, 6]]), { flat: [1, 2, 3, 4, 5, 6], shape: [2, 3] });
  assert.throws(() => lib.flatten([[1, 2], [3]]), /rectangular/);
});

test('failures of several servers combine into one error naming each server', () => {
  const failures = new Map([
    ['server-0', new lib.MpcError('server-0: no grant', { code: 'PERMISSION_DENIED' })],
    ['server-1', new lib.MpcError('server-1: gone', { code: 'UNAVAILABLE' })],
    ['server-2', new lib.MpcError('server-2: no grant', { code: 'PERMISSION_DENIED' })],
  ]);
  const error = lib.combineFailures(failures);
  assert.equal(error.code, 'PERMISSION_DENIED');
  assert.equal(error.message, 'server-0, server-2: no grant; server-1: gone');
  assert.equal(lib.combineFailures(new Map()), null);
});

test('the CLI prints its usage and refuses bad arguments with exit status 2', () => {
  const cli = path.join(__dirname, '..', 'bin', 'mpc-node.js');
  const run = (...args) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
  const help = run('--help');
  assert.equal(help.status, 0);
  assert.match(help.stdout, /usage: mpc-node <command>/);
  assert.equal(run().status, 2);
  const unknown = run('frobnicate', '--identity', 'x');
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /unknown command "frobnicate"/);
  const badNumber = run('upload', 'x', '1', 'abc', '--identity', 'x');
  assert.equal(badNumber.status, 2);
  assert.match(badNumber.stderr, /not a number: "abc"/);
  const noCluster = run('info', '--identity', 'x', '--cluster', '/nonexistent/cluster.toml');
  assert.equal(noCluster.status, 1);
  assert.match(noCluster.stderr, /cannot read cluster file \/nonexistent\/cluster.toml/);
  const badScale = run('upload', 'x', '1', '--fractional-bits', '-3', '--identity', 'x');
  assert.equal(badScale.status, 2);
  assert.match(badScale.stderr, /--fractional-bits must be a non-negative integer/);
});

test('a failed call becomes an MpcError with the status name and the server it blames', () => {
  const grpc = require('@grpc/grpc-js');
  const metadata = new grpc.Metadata();
  metadata.set('mpc-server', 'server-2');
  const error = lib.errorFromStatus('server-0', { code: 14, details: 'lost peer', metadata }, grpc.status);
  assert.equal(error.code, 'UNAVAILABLE');
  assert.equal(error.server, 'server-2');
  assert.equal(error.message, 'server-0: lost peer');
  const local = lib.errorFromStatus('server-1', new lib.MpcError('bad chunk', { code: 'INVALID_ARGUMENT' }), grpc.status);
  assert.equal(local.message, 'server-1: bad chunk');
  assert.equal(local.server, 'server-1');
});
