'use strict';
// Unit tests of the Node client without servers: cluster file, sharing and the
// checked reveal, the UploadDataset message layout, errors and the CLI's usage.
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const { test } = require('node:test');
const lib = require('../lib');

const { encode, prgWords, split, splitSeeded, shareForParty, reconstructChecked, reconstructByDigest } = lib;

const CLUSTER = `# a comment
ca = "certs/ca.pem"   # relative to the cluster file
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
  assert.equal(cluster.fractionalBits, 16);
  assert.deepEqual(cluster.servers.map((s) => [s.party, s.identity, s.address]), [
    [0, 'server-0', '10.0.0.10:7100'],
    [1, 'server-1', '[::1]:7101'],
    [2, 'server-2', 'localhost:7102'],
  ]);
  assert.equal(lib.parseCluster(CLUSTER.replace('certs/ca.pem', '/abs/ca.pem'), '/etc/mpc').caPath, '/abs/ca.pem');
  assert.equal(lib.parseCluster(CLUSTER.replace('fractional_bits = 16\n', ''), '/x').fractionalBits, 16);
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
    'fractional_bits must be 1..30': CLUSTER.replace('= 16', '= 31'),
    "'ca' must name": CLUSTER.replace('"certs/ca.pem"', '""'),
  };
  for (const [message, text] of Object.entries(bad)) {
    const matches = (e) => e instanceof lib.ConfigError && new RegExp(message).test(e.message);
    assert.throws(() => lib.parseCluster(text, '/x'), matches, message);
  }
  assert.throws(() => lib.parseCluster(CLUSTER.replace('= 16', '= true'), '/x'), /fractional_bits/);
});

test('a split sums to the secret and each server gets (x_i, x_{i+1})', () => {
  const secret = encode([1, -2.5, 1e9, 0], 16);
  const components = split(secret);
  assert.notDeepEqual(components[0], components[1]);
  const shares = [0, 1, 2].map((party) => shareForParty(components, party));
  assert.equal(shares[2].first, components[2]);
  assert.equal(shares[2].second, components[0]);
  assert.deepEqual(reconstructChecked(shares), secret);
});

test('the checked reveal names the two servers whose copies of a component differ', () => {
  const secret = encode([3.25, 4], 16);
  const names = ['server-0', 'server-1', 'server-2'];
  for (const holder of [0, 1, 2]) {
    const components = split(secret);
    const good = [0, 1, 2].map((party) => shareForParty(components, party));
    const tampered = good.map((s) => ({ first: s.first.slice(), second: s.second.slice() }));
    tampered[holder].second[1] += 1n;
    const other = names[(holder + 1) % 3];
    assert.throws(
      () => reconstructChecked(tampered, names),
      (e) => e instanceof lib.OutputIntegrityError && e.servers.join() === `${names[holder]},${other}`,
    );
  }
});

test('the digest reveal compares each second digest with the neighbour first component', () => {
  const crypto = require('node:crypto');
  const components = split(encode([1, 2, 3], 16));
  const sha = (words) => crypto.createHash('sha256').update(lib.toWire(words)).digest();
  const parts = [0, 1, 2].map((party) => ({
    server: `server-${party}`,
    first: components[party],
    secondDigest: sha(components[(party + 1) % 3]),
  }));
  assert.deepEqual(lib.decode(reconstructByDigest(parts), 16), Float64Array.from([1, 2, 3]));
  parts[2].secondDigest = sha(components[1]);
  assert.throws(
    () => reconstructByDigest(parts),
    /servers server-2 and server-0 returned different copies of share component 0/,
  );
});

/** What a server does with its UploadDataset stream (mpc_server/service/uploads.py). */
function receive(requests) {
  const [{ header }, ...rest] = requests;
  const count = header.shape.reduce((n, d) => n * Number(d), 1);
  const take = (seed, field) => {
    if (seed) return prgWords(seed, count);
    const out = new BigUint64Array(count);
    for (const { chunk } of rest) out.set(lib.fromWire(chunk[field]), Number(chunk.offset));
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

test('upload streams: plain and seed-compressed give every server its pair, in chunks of at most 2 MiB', () => {
  const count = 300_001; // three chunks of 131072 words when both components travel
  const secret = lib.randomWords(count);
  const header = { name: 'x', shape: [String(count)], fractional_bits: 16, grants: [], upload_id: Buffer.alloc(16) };
  const components = split(secret);
  const plain = [0, 1, 2].map((party) => {
    const pair = shareForParty(components, party);
    return receive([...lib.uploadRequests(header, pair.first, pair.second, count)]);
  });
  assert.deepEqual(plain.map((p) => p.chunks), [3, 3, 3]);
  assert.deepEqual(reconstructChecked(plain), secret);

  const seeded = splitSeeded(secret);
  const received = [0, 1, 2].map((party) => receive([...lib.seededRequests(header, seeded, party)]));
  assert.deepEqual(received.map((p) => p.chunks), [0, 2, 2]); // x_2 alone: 262144 words per message
  assert.equal(received[0].header.first_seed, seeded.seed0);
  assert.equal(received[0].header.second_seed, seeded.seed1);
  assert.equal(received[1].header.first_seed, seeded.seed1);
  assert.equal(received[2].header.second_seed, seeded.seed0);
  assert.deepEqual(reconstructChecked(received), secret);
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
