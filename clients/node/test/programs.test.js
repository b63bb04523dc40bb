'use strict';
// Unit tests of the open program model without servers: parameters typed by the
// program's declaration and their wire encoding (integer vs number vs flag),
// programs from GetServerInfo, outputs delivered or kept, grants fixing
// parameters, job records, and a whole run/fetch against fake stubs that pass
// every message through the real serializers.
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const { test } = require('node:test');
const lib = require('../lib');

const { Grant, Keep, MpcClient, RING128 } = lib;
const PREDICT = 'linear_regression.predict';
const FIT = 'linear_regression.fit';
const V1 = '00112233445566778899aabbccddeeff';
const V2 = 'ffeeddccbbaa99887766554433221100';
const SERVICE = lib.loadClientService().service;
const invalid = (pattern) => (e) => e instanceof lib.InvalidArgumentError && e.code === 'INVALID_ARGUMENT' && pattern.test(e.message);

/** Through the real serializers, as grpc-js hands messages to a server and back. */
const wire = {
  runRequest: (r) => SERVICE.RunJob.requestDeserialize(SERVICE.RunJob.requestSerialize(r)),
  runResponse: (r) => SERVICE.RunJob.responseDeserialize(SERVICE.RunJob.responseSerialize(r)),
  info: (r) => SERVICE.GetServerInfo.responseDeserialize(SERVICE.GetServerInfo.responseSerialize(r)),
};

/** A ProgramInfo as a server lists a fitting program with parameters of every type. */
const FIT_INFO = {
  name: FIT,
  summary: 'ridge regression',
  roles: [
    { name: 'features', min_count: 1, max_count: 64 },
    { name: 'target', min_count: 1, max_count: 1 },
  ],
  parameters: [
    { name: 'l2', type: 'PARAMETER_TYPE_NUMBER', summary: 'ridge strength', default: { name: 'l2', number: 0 }, minimum: 0 },
    { name: 'fit_intercept', type: 'PARAMETER_TYPE_FLAG', summary: 'fit the intercept', default: { name: 'fit_intercept', flag: true } },
    {
      name: 'iterations',
      type: 'PARAMETER_TYPE_INTEGER',
      summary: 'solver iterations',
      default: { name: 'iterations', integer: 0 },
      minimum: 0,
      maximum: 30,
    },
    { name: 'seed', type: 'PARAMETER_TYPE_INTEGER', summary: 'required, no range' },
  ],
  outputs: ['weights', 'intercept'],
};
const PREDICT_INFO = {
  name: PREDICT,
  summary: 'y = X w + c',
  roles: [
    { name: 'features', min_count: 1, max_count: 64 },
    { name: 'weights', min_count: 1, max_count: 1 },
    { name: 'intercept', min_count: 0, max_count: 1 },
  ],
  parameters: [],
  outputs: ['predictions'],
};
const FIT_DECLARED = lib.programFromProto(wire.info({ programs: [FIT_INFO] }).programs[0]);

test('programs from GetServerInfo: roles, typed parameters with defaults and ranges, outputs', () => {
  assert.deepEqual(FIT_DECLARED.roles, [
    { name: 'features', minCount: 1, maxCount: 64 },
    { name: 'target', minCount: 1, maxCount: 1 },
  ]);
  assert.deepEqual(FIT_DECLARED.outputs, ['weights', 'intercept']);
  assert.deepEqual(
    FIT_DECLARED.parameters.map((p) => [p.name, p.type, p.default, p.required, p.minimum, p.maximum]),
    [
      ['l2', 'number', 0, false, 0, null],
      ['fit_intercept', 'flag', true, false, null, null],
      ['iterations', 'integer', 0, false, 0, 30],
      ['seed', 'integer', null, true, null, null],
    ],
  );
  assert.equal(
    lib.describeProgram(FIT_DECLARED),
    `${FIT}(features[1..64], target; l2: number = 0, fit_intercept: flag = true, iterations: integer = 0, ` +
      'seed: integer = (required)) -> weights, intercept: ridge regression',
  );
  const predict = lib.programFromProto(wire.info({ programs: [PREDICT_INFO] }).programs[0]);
  assert.equal(lib.describeProgram(predict), `${PREDICT}(features[1..64], weights, intercept[0..1]) -> predictions: y = X w + c`);
});

test('parameters go in the field of the declared type: 5 is an integer or 5.0, as the program says', () => {
  const encoded = lib.parametersToProto(FIT, { seed: 7, l2: 1, iterations: 5, fit_intercept: false }, FIT_DECLARED);
  // sorted by name, as the Python SDK sends them
  assert.deepEqual(encoded, [
    { name: 'fit_intercept', flag: false },
    { name: 'iterations', integer: '5' },
    { name: 'l2', number: 1 },
    { name: 'seed', integer: '7' },
  ]);
  const job = wire.runRequest({ job: { job_id: 'j', program: FIT, parameters: encoded } }).job;
  assert.deepEqual(
    job.parameters.map((p) => [p.name, p.value, p[p.value]]),
    [
      ['fit_intercept', 'flag', false], // false and 0 travel too: a oneof member is always present
      ['iterations', 'integer', '5'],
      ['l2', 'number', 1],
      ['seed', 'integer', '7'],
    ],
  );
  // The bytes: JobParameter.integer is field 3 (varint), number field 2 (a double), flag field 4.
  const bytes = SERVICE.RunJob.requestSerialize({ job: { parameters: [{ name: 'k', integer: '5' }] } });
  assert.ok(bytes.includes(Buffer.from([0x0a, 0x01, 0x6b, 0x18, 0x05])));
  const number = SERVICE.RunJob.requestSerialize({ job: { parameters: [{ name: 'l', number: 5 }] } });
  const double = Buffer.alloc(8);
  double.writeDoubleLE(5);
  assert.ok(number.includes(Buffer.concat([Buffer.from([0x0a, 0x01, 0x6c, 0x11]), double])));
  const flag = SERVICE.RunJob.requestSerialize({ job: { parameters: [{ name: 'f', flag: false }] } });
  assert.ok(flag.includes(Buffer.from([0x0a, 0x01, 0x66, 0x20, 0x00])));
  // BigInts are integers, also beyond 2^53; a number parameter takes a BigInt as its number.
  const big = lib.parametersToProto(FIT, { seed: 2n ** 60n + 1n, l2: 3n }, FIT_DECLARED);
  assert.deepEqual(big, [
    { name: 'l2', number: 3 },
    { name: 'seed', integer: '1152921504606846977' },
  ]);
  assert.equal(wire.runRequest({ job: { parameters: big } }).job.parameters[1].integer, '1152921504606846977');
});

test('parameters are refused before sending, in the servers\' words', () => {
  const refuse = (parameters, pattern) =>
    assert.throws(() => lib.parametersToProto(FIT, { seed: 1, ...parameters }, FIT_DECLARED), invalid(pattern));
  refuse({ l3: 0.1 }, /^program linear_regression.fit has no parameter 'l3' \(parameters: l2, fit_intercept, iterations, seed\)$/);
  refuse({ iterations: 2.5 }, /^parameter iterations of linear_regression.fit is an integer, got 2.5$/);
  refuse({ iterations: 31 }, /^parameter iterations of linear_regression.fit must be at most 30$/);
  refuse({ iterations: -1 }, /must be at least 0$/);
  refuse({ l2: -0.5 }, /^parameter l2 of linear_regression.fit must be at least 0$/);
  refuse({ l2: true }, /^parameter l2 of linear_regression.fit is a number, got true$/);
  refuse({ l2: Infinity }, /^parameter l2 of linear_regression.fit must be finite$/);
  refuse({ l2: NaN }, /must be finite/);
  refuse({ l2: '0.1' }, /is a number, got '0.1'/);
  refuse({ fit_intercept: 1 }, /^parameter fit_intercept of linear_regression.fit is a flag, got 1$/);
  refuse({ seed: 2 ** 60 }, /beyond 2\^53 as a number; give it as a BigInt/);
  refuse({ seed: 2n ** 63n }, /must be a 64-bit integer/);
  refuse({ 'bad name': 1 }, /invalid parameter name/);
  assert.throws(() => lib.parametersToProto(FIT, { l2: 0.1 }, FIT_DECLARED), invalid(/^program linear_regression.fit needs the parameter seed$/));
  assert.throws(() => lib.parametersToProto(FIT, [1], FIT_DECLARED), invalid(/parameters are an object/));
  // A program without parameters names none.
  const predict = lib.programFromProto(wire.info({ programs: [PREDICT_INFO] }).programs[0]);
  assert.throws(() => lib.parametersToProto(PREDICT, { l2: 0.5 }, predict), invalid(/has no parameter 'l2' \(parameters: none\)$/));
  assert.deepEqual(lib.parametersToProto(PREDICT, undefined, predict), []);
});

test('explicitly typed values are sent as given; unlisted programs type by the JavaScript value', () => {
  assert.equal(lib.needsDeclaration({ a: { integer: 5 }, b: { flag: true } }), false);
  assert.equal(lib.needsDeclaration({ a: { integer: 5 }, b: 0.5 }), true);
  assert.equal(lib.needsDeclaration(undefined), false);
  // As given: no declaration consulted, so an unknown name reaches the servers (which refuse it).
  assert.deepEqual(lib.parametersToProto(PREDICT, { l2: { number: 1 }, k: { integer: 3 } }, null), [
    { name: 'k', integer: '3' },
    { name: 'l2', number: 1 },
  ]);
  assert.throws(() => lib.parametersToProto(PREDICT, { k: { integer: 0.5 } }, null), invalid(/is an integer, got 0.5/));
  assert.throws(() => lib.parametersToProto(PREDICT, { k: { flag: 1 } }, null), invalid(/is a flag, got 1/));
  // Without a declaration: flags, integral numbers as integers (servers accept those for numbers), else numbers.
  assert.deepEqual(lib.parametersToProto('unlisted', { a: true, b: 2, c: 0.25, d: 2n ** 62n }, null), [
    { name: 'a', flag: true },
    { name: 'b', integer: '2' },
    { name: 'c', number: 0.25 },
    { name: 'd', integer: String(2n ** 62n) },
  ]);
});

test('parameters from the wire: numbers, flags, integers (BigInts beyond 2^53), sorted by name', () => {
  const job = wire.runRequest({
    job: {
      parameters: [
        { name: 'z', integer: String(2n ** 60n) },
        { name: 'b', flag: false },
        { name: 'a', number: 0.1 },
        { name: 'i', integer: '-3' },
      ],
    },
  }).job;
  const values = lib.parametersFromProto(job.parameters);
  assert.deepEqual(Object.keys(values), ['a', 'b', 'i', 'z']);
  assert.deepEqual(values, { a: 0.1, b: false, i: -3, z: 2n ** 60n });
  assert.equal(lib.toJson(values), '{"a":0.1,"b":false,"i":-3,"z":"1152921504606846976"}');
});

test('grants fix parameters typed by the program, and can require every output kept', () => {
  const grant = new Grant({ receiver: 'model-owner', program: FIT, parameters: { l2: 1, iterations: 5 }, keepOutputs: true });
  assert.deepEqual(grant.parameters, { iterations: 5, l2: 1 });
  assert.ok(Object.isFrozen(grant.parameters));
  const typed = lib.grantToProto(grant, 'bank-1', 'x', FIT_DECLARED);
  // l2 = 1 is the number 1.0 for this program: the servers compare a grant's values with their types
  assert.deepEqual(typed.parameters, [
    { name: 'iterations', integer: '5' },
    { name: 'l2', number: 1 },
  ]);
  assert.equal(typed.keep_outputs, true);
  // No declaration at hand: by the JavaScript value.
  assert.deepEqual(lib.grantToProto(grant, 'bank-1', 'x').parameters[1], { name: 'l2', integer: '1' });
  // A grant fixes only some parameters: the required seed need not be among them. Unknown ones are refused.
  assert.throws(
    () => lib.grantToProto(new Grant({ receiver: 'm', program: FIT, parameters: { l3: 1 } }), 'bank-1', 'x', FIT_DECLARED),
    invalid(/has no parameter 'l3'/),
  );
  const header = { name: 'x', shape: ['1'], grants: [typed] };
  const back = SERVICE.UploadDataset.requestDeserialize(SERVICE.UploadDataset.requestSerialize({ header })).header.grants[0];
  const again = lib.grantFromProto(back, 'bank-1', 'x');
  assert.deepEqual({ ...again }, { ...grant });
  assert.equal(lib.grantFromProto({ ...back, parameters: [], keep_outputs: false }, 'bank-1', 'x').keepOutputs, false);
  assert.match(lib.describeGrant(grant), /with the parameters iterations=5, l2=1; every output kept on the servers/);
  assert.match(
    lib.describeGrant(new Grant({ receiver: 'm', program: FIT, parameters: { k: { integer: 2 } } })),
    /with the parameters k=integer:2/,
  );
  assert.throws(() => new Grant({ receiver: 'm', program: FIT, parameters: { l2: '0.1' } }), invalid(/must be a number, an integer or a flag/));
  assert.throws(() => new Grant({ receiver: 'm', program: FIT, parameters: { 'a b': 1 } }), invalid(/invalid parameter name/));
  assert.throws(() => new Grant({ receiver: 'm', program: FIT, parameters: [] }), invalid(/object of name: value/));
  assert.throws(() => new Grant({ receiver: 'm', program: FIT, keepOutputs: 'yes' }), invalid(/keepOutputs/));
  const defaults = new Grant({ receiver: 'm', program: FIT });
  assert.deepEqual([defaults.parameters, defaults.keepOutputs], [{}, false]);
  assert.deepEqual(lib.grantToProto(defaults, 'o', 'd').parameters, []);
});

test('a kept output: a dataset name or a Keep with grants and overwrite', () => {
  const kept = Keep.from('scores');
  assert.deepEqual([kept.dataset, kept.grants, kept.overwrite], ['scores', [], false]);
  const withGrants = Keep.from({ dataset: 'w', grants: [{ receiver: 'analyst', program: 'dot' }], overwrite: true });
  assert.ok(withGrants.grants[0] instanceof Grant);
  assert.equal(withGrants.overwrite, true);
  assert.equal(Keep.from(withGrants), withGrants);
  assert.ok(Object.isFrozen(withGrants));
  assert.throws(() => Keep.from('bad name'), invalid(/invalid kept dataset name/));
  assert.throws(() => Keep.from(5), invalid(/a kept output is/));
  assert.throws(() => new Keep('x', { grants: 'g' }), invalid(/grants are an array/));
});

/** A RunJob answer as a server sends it. */
function runResponse({ outputs, output_share: share } = {}) {
  const infos = outputs ?? [{ name: 'value', shape: [], fractional_bits: 64, ring: 'RING_Z2_128', magnitude_bits: 70 }];
  return wire.runResponse({
    job_id: 'j',
    output: infos[0],
    outputs: infos,
    stats: { bytes_sent_to_peers: '10', bytes_received_from_peers: '10', rounds: 1, duration_seconds: 0.1 },
    output_share: share,
  });
}

test('job outputs: every one by name, kept ones with their dataset version; servers must agree', () => {
  const servers = ['server-0', 'server-1', 'server-2'];
  const kept = {
    name: 'weights',
    shape: ['3'],
    fractional_bits: 32,
    ring: 'RING_Z2_128',
    magnitude_bits: 40,
    kept_as: { owner: 'model-owner', name: 'w' },
    kept_version: Buffer.from(V1, 'hex'),
  };
  const delivered = { name: 'intercept', shape: [], fractional_bits: 32, ring: 'RING_Z2_128', magnitude_bits: 35, truncation_failure_log2: -42.5 };
  const response = runResponse({ outputs: [kept, delivered] });
  const outputs = lib.jobOutputs(servers, [response, response, response], 'j');
  assert.deepEqual(outputs, [
    {
      name: 'weights',
      shape: [3],
      fractionalBits: 32,
      magnitudeBits: 40,
      truncationFailureLog2: null,
      keptAs: lib.datasetRef('model-owner', 'w', V1),
      keyed: false,
    },
    { name: 'intercept', shape: [], fractionalBits: 32, magnitudeBits: 35, truncationFailureLog2: -42.5, keptAs: null, keyed: false },
  ]);
  const job = { jobId: 'j', outputs };
  assert.deepEqual(lib.delivered(job), ['intercept']);
  assert.equal(lib.deliveredOutput(job, 'intercept'), outputs[1]);
  assert.throws(() => lib.deliveredOutput(job, 'weights'), invalid(/output weights of job j was kept on the servers as model-owner\/w@0011.*: nothing to fetch/));
  assert.throws(() => lib.deliveredOutput(job, 'bias'), invalid(/job j has no output 'bias' \(outputs: weights, intercept\)/));
  assert.throws(() => lib.delivered({ jobId: 'j', outputs: [outputs[0]] }), invalid(/job j kept all its outputs on the servers: nothing to fetch/));
  // One server describing them differently, or a kept output without its version: refused.
  const other = runResponse({ outputs: [kept, { ...delivered, magnitude_bits: 36 }] });
  assert.throws(() => lib.jobOutputs(servers, [response, other, response], 'j'), /server-0, server-1, server-2 describe the outputs of job j differently/);
  const unversioned = runResponse({ outputs: [{ ...kept, kept_version: Buffer.alloc(3) }] });
  assert.throws(() => lib.jobOutputs(servers, [unversioned, unversioned, unversioned], 'j'), /server-0 named a kept output without a 16-byte version/);
  // Servers before named outputs sent `output` only.
  const old = wire.runResponse({ output: { shape: ['2'], fractional_bits: 16, ring: 'RING_Z2_64' } });
  assert.deepEqual(lib.jobOutputs(servers, [old, old, old], 'j').map((o) => [o.name, o.shape]), [['', [2]]]);
});

test('job records carry the parameters and the outputs kept; the servers must agree on both', () => {
  const message = (parameters, kept) => ({
    job_id: 'j',
    submitter: 'model-owner',
    receiver: 'model-owner',
    program: FIT,
    inputs: [],
    started_at: 1,
    finished_at: 2,
    status: 'OK',
    error: '',
    parameters,
    kept,
  });
  const kept = [{ output: 'weights', dataset: { owner: 'model-owner', name: 'w' }, upload_id: Buffer.from(V1, 'hex') }];
  const record = lib.jobRecord(message([{ name: 'l2', number: 0.1, value: 'number' }, { name: 'fit_intercept', flag: true, value: 'flag' }], kept));
  assert.deepEqual(record.parameters, { fit_intercept: true, l2: 0.1 });
  assert.deepEqual(record.kept, [{ output: 'weights', dataset: lib.datasetRef('model-owner', 'w', V1) }]);
  const other = lib.jobRecord(message([{ name: 'l2', number: 0.2, value: 'number' }], kept));
  const unkept = lib.jobRecord(message([{ name: 'l2', number: 0.1, value: 'number' }, { name: 'fit_intercept', flag: true, value: 'flag' }], []));
  const listing = lib.compareRecords(['s0', 's1', 's2'], [[record], [other], [unkept]]);
  assert.equal(listing.disagreements.length, 1);
  assert.match(listing.disagreements[0], /^job j of model-owner: s0 agree; s1 agree; s2 agree$/);
  // An old record: none of either.
  const old = lib.jobRecord({ ...message([], []), parameters: undefined, kept: undefined });
  assert.deepEqual([old.parameters, old.kept], [{}, []]);
});

/**
 * An MpcClient whose three stubs answer from `handlers` (no network). Requests and answers pass
 * through the real serializers; `calls` records the requests each method received.
 */
function fakeClient(handlers) {
  const client = Object.create(MpcClient.prototype);
  const calls = { RunJob: [], GetServerInfo: [], FetchOutput: [], UploadDataset: [] };
  Object.assign(client, {
    identity: 'model-owner',
    ring: RING128,
    cluster: { fractionalBits: 32 },
    timeout: 5,
    programListing: null,
  });
  client.servers = [0, 1, 2].map((party) => {
    const name = `server-${party}`;
    const unaryMethod = (method) => (request, options, callback) => {
      const definition = SERVICE[method];
      const decoded = definition.requestDeserialize(definition.requestSerialize(request));
      calls[method].push({ server: name, request: decoded });
      Promise.resolve()
        .then(() => handlers[method](decoded, party))
        .then(
          (answer) => callback(null, definition.responseDeserialize(definition.responseSerialize(answer))),
          (error) => callback(error),
        );
    };
    return {
      name,
      party,
      stub: {
        RunJob: unaryMethod('RunJob'),
        GetServerInfo: unaryMethod('GetServerInfo'),
        FetchOutput: (request) => {
          const decoded = SERVICE.FetchOutput.requestDeserialize(SERVICE.FetchOutput.requestSerialize(request));
          calls.FetchOutput.push({ server: name, request: decoded });
          const messages = handlers.FetchOutput(decoded, party).map((m) =>
            SERVICE.FetchOutput.responseDeserialize(SERVICE.FetchOutput.responseSerialize(m)),
          );
          return Object.assign((async function* stream() { yield* messages; })(), { cancel() {} });
        },
      },
    };
  });
  return { client, calls };
}

const serverInfo = (programs) => () => ({ ring: 'RING_Z2_128', programs });

test('run: parameters typed by the declaration read once per client, keepAs with grants, outputs back', async () => {
  const scores = () => ({
    name: 'predictions',
    shape: ['3'],
    fractional_bits: 32,
    ring: 'RING_Z2_128',
    magnitude_bits: 40,
    kept_as: { owner: 'model-owner', name: 'scores' },
    kept_version: Buffer.from(V2, 'hex'),
  });
  const { client, calls } = fakeClient({
    GetServerInfo: serverInfo([FIT_INFO, PREDICT_INFO]),
    RunJob: () => runResponse({ outputs: [scores()] }),
  });
  const job = { features: 'x', weights: 'bank-1/w' };
  const dotGrant = new Grant({ receiver: 'analyst', program: 'dot', submitters: ['model-owner'] });
  const result = await client.run(FIT, job, {
    parameters: { l2: 1, iterations: 5, seed: 3 },
    keepAs: { predictions: new Keep('scores', { grants: [dotGrant], overwrite: true }) },
    outputFractionalBits: 32,
  });
  assert.equal(calls.GetServerInfo.length, 3); // one question to each server
  assert.equal(calls.RunJob.length, 3);
  const sent = calls.RunJob[0].request.job;
  assert.deepEqual(
    sent.parameters.map((p) => [p.name, p.value, p[p.value]]),
    [
      ['iterations', 'integer', '5'],
      ['l2', 'number', 1],
      ['seed', 'integer', '3'],
    ],
  );
  assert.equal(sent.keep.length, 1);
  assert.deepEqual([sent.keep[0].output, sent.keep[0].dataset, sent.keep[0].overwrite], ['predictions', 'scores', true]);
  assert.equal(sent.keep[0].grants[0].receiver, 'analyst');
  assert.equal(sent.keep[0].grants[0].grant_id.toString('hex'), dotGrant.grantId);
  assert.equal(sent.output_fractional_bits, 32);
  assert.deepEqual(calls.RunJob.map((c) => c.request.job), [sent, sent, sent]); // the same spec everywhere
  assert.equal(result.outputs.length, 1);
  assert.equal(result.outputs[0].keptAs.pinned, `model-owner/scores@${V2}`);
  assert.deepEqual([result.shape, result.fractionalBits, result.ring], [[3], 32, RING128]);
  await assert.rejects(() => client.fetch(result), invalid(/kept all its outputs on the servers: nothing to fetch/));
  await assert.rejects(() => client.fetchAll(result), invalid(/nothing to fetch/));
  assert.equal(calls.FetchOutput.length, 0);

  // The declaration is kept: the next job asks no server again, and refuses locally.
  await assert.rejects(() => client.run(FIT, job, { parameters: { l2: 0.1, iterations: 0.5, seed: 1 } }), invalid(/is an integer, got 0.5/));
  await assert.rejects(() => client.run(PREDICT, job, { parameters: { l2: 0.5 } }), invalid(/has no parameter 'l2' \(parameters: none\)/));
  assert.equal(calls.GetServerInfo.length, 3);
  assert.equal(calls.RunJob.length, 3); // nothing was sent
  // No parameters, or only explicitly typed ones: no declaration needed.
  await client.run(PREDICT, job, { parameters: { l2: { number: 0.5 } } });
  assert.deepEqual(calls.RunJob[3].request.job.parameters.map((p) => [p.name, p.value]), [['l2', 'number']]);
  assert.deepEqual(calls.RunJob[3].request.job.keep, []);
  // A program the servers did not list is asked about once more (they may have been upgraded).
  await client.run('new.program', job, { parameters: { k: 2 } });
  assert.equal(calls.GetServerInfo.length, 6);
  assert.deepEqual(calls.RunJob[6].request.job.parameters.map((p) => [p.name, p.value, p[p.value]]), [['k', 'integer', '2']]);
  await assert.rejects(() => client.runAndFetch(PREDICT, job, { keepAs: { predictions: 's' } }), invalid(/no receiver or keepAs/));
  await assert.rejects(() => client.run(PREDICT, job, { keepAs: { 'bad name': 's' } }), invalid(/invalid output name/));
});

test('programs: merged from the three servers, disagreements named; serverInfo refreshes them', async () => {
  let version = 0;
  const { client, calls } = fakeClient({
    GetServerInfo: (request, party) => ({
      ring: 'RING_Z2_128',
      programs: party === 2 && version > 0 ? [PREDICT_INFO] : [FIT_INFO, PREDICT_INFO],
    }),
  });
  const listing = await client.programs();
  assert.deepEqual(listing.items.map((p) => p.name), [FIT, PREDICT]);
  assert.deepEqual(listing.disagreements, []);
  assert.equal(await client.programs(), listing); // kept
  assert.equal(calls.GetServerInfo.length, 3);
  version = 1;
  const infos = await client.serverInfo();
  assert.equal(infos[0].programs[0].name, FIT); // raw answers carry them too
  const refreshed = await client.programs();
  assert.deepEqual(refreshed.disagreements, [`program ${FIT}: server-0, server-1 agree; server-2 report nothing`]);
  assert.equal((await client.programInfo(FIT)).name, FIT);
  assert.equal(await client.programInfo('nothing'), null);
});

test('upload and addGrant type grant parameters by the grant\'s program', async () => {
  const { client, calls } = fakeClient({ GetServerInfo: serverInfo([FIT_INFO]), AddGrant: () => ({}) });
  const added = [];
  for (const server of client.servers) {
    server.stub.AddGrant = (request, options, callback) => {
      added.push(SERVICE.AddGrant.requestDeserialize(SERVICE.AddGrant.requestSerialize(request)));
      callback(null, {});
    };
  }
  const grant = new Grant({ receiver: 'analyst', program: FIT, parameters: { l2: 2, fit_intercept: false } });
  assert.equal(await client.addGrant('x', grant), grant);
  assert.equal(calls.GetServerInfo.length, 3);
  assert.deepEqual(
    added[0].grant.parameters.map((p) => [p.name, p.value, p[p.value]]),
    [
      ['fit_intercept', 'flag', false],
      ['l2', 'number', 2],
    ],
  );
  await assert.rejects(
    () => client.addGrant('x', { receiver: 'analyst', program: FIT, parameters: { l2: -1 } }),
    invalid(/parameter l2 of linear_regression.fit must be at least 0/),
  );
  assert.equal(added.length, 3);
});

test('fetch names the output (field 6), checks that every server sends that one; fetchAll takes each', async () => {
  const ring = RING128;
  const secrets = { weights: lib.encode(ring, [1.5, -2], 32), intercept: lib.encode(ring, [0.25], 32) };
  const shares = Object.fromEntries(Object.entries(secrets).map(([k, v]) => [k, lib.split(ring, v)]));
  let lie = null;
  const { client, calls } = fakeClient({
    FetchOutput: (request, party) => {
      const name = request.output || 'weights';
      const pair = lib.shareForParty(shares[name], party);
      const count = ring.size(pair.first);
      const said = lie === party ? 'other' : name;
      return [
        { header: { name: said, shape: [String(count)], fractional_bits: 32, ring: 'RING_Z2_128', magnitude_bits: 34 } },
        { chunk: { offset: '0', first: ring.toWire(pair.first), second: ring.toWire(pair.second) } },
      ];
    },
  });
  const info = (name) => ({ name, shape: [1], fractionalBits: 32, magnitudeBits: 34, truncationFailureLog2: null, keptAs: null });
  const job = { jobId: 'j', submitter: 'model-owner', outputs: [info('weights'), info('intercept')] };
  const all = await client.fetchAll(job);
  assert.deepEqual(Object.keys(all), ['weights', 'intercept']);
  assert.deepEqual(Array.from(all.weights.values), [1.5, -2]);
  assert.deepEqual(Array.from(all.intercept.values), [0.25]);
  assert.equal(all.intercept.name, 'intercept');
  assert.deepEqual(calls.FetchOutput.map((c) => c.request.output), ['weights', 'weights', 'weights', 'intercept', 'intercept', 'intercept']);
  const bytes = SERVICE.FetchOutput.requestSerialize({ job_id: 'j', output: 'weights' });
  assert.ok(bytes.includes(Buffer.from([(6 << 3) | 2, 7, ...Buffer.from('weights')])));
  // A job id alone: the servers pick the first delivered output ('' on the wire).
  assert.equal((await client.fetch('j')).name, 'weights');
  assert.equal(calls.FetchOutput.at(-1).request.output, '');
  assert.deepEqual(Array.from((await client.fetch('j', { output: 'intercept' })).values), [0.25]);
  await assert.rejects(() => client.fetch(job, { output: 'bias' }), invalid(/job j has no output 'bias'/));
  await assert.rejects(() => client.fetch('j', { output: 'a b' }), invalid(/invalid output name/));
  lie = 1; // a server answering with another output than asked
  await assert.rejects(() => client.fetch(job, { output: 'intercept' }), /server-1: malformed output stream: asked for output intercept, got other/);
});

test('the CLI refuses bad --param, --keep and --fix-param before connecting', () => {
  const cli = path.join(__dirname, '..', 'bin', 'mpc-node.js');
  const run = (...args) => spawnSync(process.execPath, [cli, ...args, '--identity', 'x'], { encoding: 'utf8' });
  const refused = (args, pattern) => {
    const completed = run(...args);
    assert.equal(completed.status, 2, completed.stderr);
    assert.match(completed.stderr, pattern);
  };
  const job = ['run', PREDICT, 'features=x', 'weights=w'];
  refused([...job, '--param', 'l2'], /--param needs NAME=VALUE or NAME:TYPE=VALUE, got "l2"/);
  refused([...job, '--param', 'l2='], /--param needs NAME=VALUE/);
  refused([...job, '--param', 'l2=abc'], /not a number: "abc"/);
  refused([...job, '--param', 'l2=1', '--param', 'l2=2'], /--param l2 is given twice/);
  refused([...job, '--param', 'k:int=5'], /the type is number, integer or flag, got "int"/);
  refused([...job, '--param', 'k:integer=1.5'], /not an integer: "1.5"/);
  refused([...job, '--param', 'f:flag=yes'], /a flag is true or false, got "yes"/);
  refused([...job, '--keep', 'predictions'], /--keep needs OUTPUT=DATASET/);
  refused([...job, '--keep', 'a=x', '--keep', 'a=y'], /--keep a is given twice/);
  refused([...job, '--grant', 'm:dot'], /on run, --grant gives grants to kept outputs: it needs --keep/);
  refused([...job, '--overwrite'], /--overwrite replaces kept datasets: it needs --keep/);
  refused([...job, '--keep', 'predictions=s', '--fetch'], /--fetch delivers the output to you: no --keep/);
  refused([...job, '--keep', 'predictions=s', '--keep-outputs'], /grant options need a --grant/);
  refused(['upload', 'x', '1', '--fix-param', 'l2=0.1'], /grant options need a --grant RECEIVER:PROGRAM/);
  refused(['upload', 'x', '1', '--grant', `m:${FIT}`, '--fix-param', 'l2'], /--fix-param needs NAME=VALUE/);
  refused(['programs', 'extra'], /too many arguments: extra/);
  const help = run('--help');
  for (const text of ['programs', '--param NAME=VALUE', '--keep OUTPUT=DATASET', '--output NAME', '--fix-param', '--keep-outputs']) {
    assert.ok(help.stdout.includes(text), text);
  }
});
