'use strict';
// Unit tests of consent and the owner's listings without servers: Grant and its
// validation, the wire form of grants (names resolved, versions pinned, "self"),
// the three-server merge of listings, and the new request fields on the wire.
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const { test } = require('node:test');
const lib = require('../lib');

const { Grant, GrantScope, SELF } = lib;
const PREDICT = 'linear_regression.predict';
const V1 = '00112233445566778899aabbccddeeff';
const V2 = 'ffeeddccbbaa99887766554433221100';
const invalid = (pattern) => (e) => e instanceof lib.InvalidArgumentError && e.code === 'INVALID_ARGUMENT' && pattern.test(e.message);

test('a grant is own-data by default, for the receiver only, with a random 16-byte id', () => {
  const a = new Grant({ receiver: 'model-owner', program: PREDICT });
  const b = Grant.from({ receiver: 'model-owner', program: PREDICT });
  assert.equal(a.scope, GrantScope.OWN_DATA);
  assert.deepEqual([a.role, a.inputs, a.submitters, a.maxUses, a.expiresAt], ['', [], [], 0, 0]);
  assert.match(a.grantId, /^[0-9a-f]{32}$/);
  assert.notEqual(a.grantId, b.grantId);
  assert.equal(Grant.from(a), a);
  assert.ok(Object.isFrozen(a));
  const wire = lib.grantToProto(a, 'bank-1', 'income');
  assert.equal(wire.scope, 'GRANT_SCOPE_OWN_DATA');
  assert.equal(wire.grant_id.toString('hex'), a.grantId);
  assert.deepEqual(wire.inputs, []);
  assert.equal(Grant.readAccess('x', PREDICT, { maxUses: 2 }).scope, GrantScope.ANY_INPUTS);
});

test('grants are validated as the Python SDK validates them', () => {
  const base = { receiver: 'model-owner', program: PREDICT };
  assert.throws(() => new Grant({ ...base, receiver: 'a b' }), invalid(/grant receiver/));
  assert.throws(() => new Grant({ ...base, submitters: ['ok', '-bad'] }), invalid(/grant submitter/));
  assert.throws(() => new Grant({ ...base, scope: GrantScope.PINNED }), invalid(/a pinned grant lists the job's inputs/));
  assert.throws(() => new Grant({ ...base, inputs: [{ role: 'x', dataset: SELF }] }), invalid(/only a pinned grant does/));
  assert.throws(() => new Grant({ ...base, scope: 'everything' }), invalid(/unknown grant scope/));
  assert.throws(() => new Grant({ ...base, maxUses: -1 }), invalid(/maxUses/));
  assert.throws(() => new Grant({ ...base, maxUses: 1.5 }), invalid(/maxUses/));
  assert.throws(() => new Grant({ ...base, expiresAt: -1 }), invalid(/expiresAt/));
  assert.throws(() => new Grant({ ...base, grantId: 'abcd' }), invalid(/a grant id is 16 bytes in hex/));
  assert.throws(() => new Grant({ ...base, grantId: 'z'.repeat(32) }), invalid(/16 bytes in hex/));
  assert.throws(() => Grant.pinned('m', PREDICT, {}), invalid(/lists the job's inputs/));
  assert.throws(() => Grant.pinned('m', PREDICT, { w: 'model-owner/w@abc' }), invalid(/a dataset version is 16 bytes/));
  assert.throws(() => Grant.pinned('m', PREDICT, { w: 'a/b/c' }), invalid(/must be 'owner\/name'/));
  assert.equal(new Grant({ ...base, grantId: V1.toUpperCase() }).grantId, V1);
});

test('a pinned grant: the job mapping, "self", bare names, versions and upload results', () => {
  const weights = { ...lib.datasetRef('model-owner', 'weights', V1), elementCount: 2 }; // as upload returns
  const job = { features: ['self', 'bank-2/debt'], weights, intercept: `model-owner/intercept@${V2}` };
  const grant = Grant.pinned('model-owner', PREDICT, job, { submitters: ['analyst'], maxUses: 3 });
  assert.equal(grant.scope, GrantScope.PINNED);
  assert.deepEqual(grant.inputs, [
    { role: 'features', dataset: 'self' },
    { role: 'features', dataset: 'bank-2/debt' },
    { role: 'weights', dataset: `model-owner/weights@${V1}` },
    { role: 'intercept', dataset: `model-owner/intercept@${V2}` },
  ]);
  const wire = lib.grantToProto(grant, 'bank-1', 'income');
  assert.equal(wire.scope, 'GRANT_SCOPE_PINNED');
  assert.equal(wire.role, 'features'); // the role the dataset plays in the job
  assert.deepEqual(wire.submitters, ['analyst']);
  assert.equal(wire.max_uses, 3);
  assert.deepEqual(
    wire.inputs.map((p) => [p.role, `${p.dataset.owner}/${p.dataset.name}`, p.upload_id.toString('hex')]),
    [
      ['features', 'bank-1/income', ''],
      ['features', 'bank-2/debt', ''],
      ['weights', 'model-owner/weights', V1],
      ['intercept', 'model-owner/intercept', V2],
    ],
  );
  // One grant naming every input can be given on each dataset of the job: on the model's
  // weights, the weights are the granting dataset, named without their version.
  const shared = Grant.pinned('model-owner', PREDICT, { ...job, features: ['bank-1/income', 'bank-2/debt'] });
  const own = lib.grantToProto(shared, 'model-owner', 'weights');
  assert.equal(own.role, 'weights');
  assert.deepEqual(own.inputs[2].upload_id, Buffer.alloc(0));
  assert.equal(own.inputs[3].upload_id.toString('hex'), V2);
  assert.equal(lib.grantToProto(shared, 'bank-1', 'income').role, 'features');
  // "self" is whichever dataset the grant is given on.
  assert.deepEqual(lib.grantToProto(grant, 'model-owner', 'weights').inputs[0].dataset, { owner: 'model-owner', name: 'weights' });
  // Bare names are the uploader's own datasets.
  const bare = lib.grantToProto(Grant.pinned('m', PREDICT, { features: 'x', weights: 'w' }), 'bank-1', 'x');
  assert.deepEqual(bare.inputs.map((p) => p.dataset.owner), ['bank-1', 'bank-1']);
  // A pinned grant on a dataset that is not among its inputs is refused before sending.
  assert.throws(() => lib.grantToProto(shared, 'bank-2', 'other'), invalid(/must list bank-2\/other among its inputs/));
  // Twice in the job: no single role; an explicit role wins.
  const twice = Grant.pinned('m', PREDICT, { features: ['self'], weights: ['self'] });
  assert.equal(lib.grantToProto(twice, 'o', 'd').role, '');
  assert.equal(lib.grantToProto(Grant.pinned('m', PREDICT, { features: 'self' }, { role: 'x' }), 'o', 'd').role, 'x');
});

test('grants survive the wire both ways, the granting dataset shown as "self"', () => {
  const service = lib.loadClientService();
  const grant = Grant.pinned('model-owner', PREDICT, { features: ['self', `bank-2/debt@${V2}`] }, { expiresAt: 1.5e9 });
  const header = { name: 'income', shape: ['1'], grants: [lib.grantToProto(grant, 'bank-1', 'income')] };
  const { serialize, deserialize } = {
    serialize: service.service.UploadDataset.requestSerialize,
    deserialize: service.service.UploadDataset.requestDeserialize,
  };
  const back = deserialize(serialize({ header })).header.grants[0];
  assert.equal(back.scope, 'GRANT_SCOPE_PINNED');
  assert.equal(back.expires_at, 1.5e9);
  const again = lib.grantFromProto(back, 'bank-1', 'income');
  assert.deepEqual({ ...again }, { ...grant, role: 'features' });
  // An unspecified scope reads as own data, the safe default.
  const unspecified = lib.grantFromProto({ ...back, scope: 'GRANT_SCOPE_UNSPECIFIED', inputs: [] }, 'bank-1', 'income');
  assert.equal(unspecified.scope, GrantScope.OWN_DATA);
});

test('fetch names the submitter (field 5); server info has only the caller\'s own traffic', () => {
  const service = lib.loadClientService();
  const fetch = service.service.FetchOutput;
  const bytes = fetch.requestSerialize({ job_id: 'j', submitter: 'bank-1' });
  assert.ok(bytes.includes(Buffer.from([(5 << 3) | 2, 6, ...Buffer.from('bank-1')])));
  assert.equal(fetch.requestDeserialize(bytes).submitter, 'bank-1');
  const info = service.service.GetServerInfo.responseDeserialize(
    service.service.GetServerInfo.responseSerialize({ transport: { client_bytes_sent: '7' } }),
  );
  assert.deepEqual(Object.keys(info.transport).sort(), ['client_bytes_received', 'client_bytes_sent']);
  const upload = service.service.UploadDataset.responseDeserialize(
    service.service.UploadDataset.responseSerialize({ element_count: '3', upload_id: Buffer.from(V1, 'hex') }),
  );
  assert.equal(upload.upload_id.toString('hex'), V1);
});

test('listings: one item per key as most servers report it, every disagreement named', () => {
  const servers = ['server-0', 'server-1', 'server-2'];
  const record = (jobId, status = 'OK', submitter = 'bank-1') => ({
    jobId, submitter, receiver: 'model-owner', program: PREDICT, inputs: [], startedAt: Math.random(),
    finishedAt: 0, status, error: '',
  });
  const agreed = lib.compareRecords(servers, [[record('a')], [record('a')], [record('a')]]);
  assert.equal(agreed.items.length, 1);
  assert.deepEqual(agreed.disagreements, []); // times are each server's own: not compared
  const listing = lib.compareRecords(servers, [
    [record('a'), record('b'), record('a', 'OK', 'bank-2')],
    [record('a', 'ABORTED'), record('b')],
    [record('a')],
  ]);
  assert.deepEqual(listing.items.map((r) => [r.jobId, r.submitter, r.status]), [
    ['a', 'bank-1', 'OK'],
    ['b', 'bank-1', 'OK'],
    ['a', 'bank-2', 'OK'],
  ]);
  assert.deepEqual(listing.disagreements, [
    `job a of bank-1: server-0, server-2 agree; server-1 agree`,
    `job b of bank-1: server-0, server-1 agree; server-2 report nothing`,
    `job a of bank-2: server-0 agree; server-1, server-2 report nothing`,
  ]);
});

test('dataset listings decode versions, bounds and grants, and compare without creation times', () => {
  const grant = new Grant({ receiver: 'model-owner', program: PREDICT, grantId: V2 });
  const message = (createdAt, uses) => ({
    name: 'income', shape: ['3'], upload_id: Buffer.from(V1, 'hex'), created_at: createdAt, ring: 'RING_Z2_64',
    fractional_bits: 16, magnitude_bits: 0, _magnitude_bits: 'magnitude_bits',
    grants: [{ grant: lib.grantToProto(grant, 'bank-1', 'income'), uses }],
  });
  const info = lib.datasetInfo('bank-1', message(1, 0));
  assert.equal(info.ref.pinned, `bank-1/income@${V1}`);
  assert.deepEqual([info.shape, info.ringBits, info.fractionalBits, info.magnitudeBits], [[3], 64, 16, 0]);
  assert.equal(info.grants[0].grant.grantId, V2);
  assert.equal(lib.datasetInfo('bank-1', { ...message(1, 0), _magnitude_bits: undefined }).magnitudeBits, null);
  const listing = lib.compareDatasets(
    ['s0', 's1', 's2'],
    [[info], [lib.datasetInfo('bank-1', message(2, 0))], [lib.datasetInfo('bank-1', message(3, 1))]],
  );
  assert.deepEqual(listing.disagreements, ['dataset bank-1/income: s0, s1 agree; s2 agree']);
  assert.equal(listing.items[0].grants[0].uses, 0);
});

test('the CLI refuses bad grant options before connecting', () => {
  const cli = path.join(__dirname, '..', 'bin', 'mpc-node.js');
  const run = (...args) => spawnSync(process.execPath, [cli, ...args, '--identity', 'x'], { encoding: 'utf8' });
  const noGrant = run('upload', 'x', '1', '--pin', 'features=self');
  assert.equal(noGrant.status, 2);
  assert.match(noGrant.stderr, /grant options need a --grant RECEIVER:PROGRAM/);
  const both = run('upload', 'x', '1', '--grant', `m:${PREDICT}`, '--pin', 'features=self', '--any-inputs');
  assert.equal(both.status, 2);
  assert.match(both.stderr, /--pin and --any-inputs exclude each other/);
  const badPin = run('upload', 'x', '1', '--grant', `m:${PREDICT}`, '--pin', 'features');
  assert.equal(badPin.status, 2);
  assert.match(badPin.stderr, /--pin needs ROLE=DATASET/);
  const twoIds = run('add-grant', 'x', '--grant', `m:${PREDICT}`, '--grant', `n:${PREDICT}`, '--grant-id', V1);
  assert.equal(twoIds.status, 2);
  assert.match(twoIds.stderr, /--grant-id names one grant/);
  const badId = run('upload', 'x', '1', '--grant', `m:${PREDICT}`, '--grant-id', 'abc');
  assert.equal(badId.status, 1);
  assert.match(badId.stderr, /INVALID_ARGUMENT: a grant id is 16 bytes in hex/);
  const revoke = run('revoke-grant', 'x');
  assert.equal(revoke.status, 2);
  assert.match(revoke.stderr, /revoke-grant needs a dataset NAME and a GRANT_ID/);
  const fetchTwo = run('fetch', 'j', '--submitter', 'a', '--submitter', 'b');
  assert.equal(fetchTwo.status, 2);
});
