'use strict';
// Unit tests of keyed outputs and column selection without servers: a keyed output's row
// tokens (FetchOutputResponse.row_tokens, after the header, 16 bytes per row) fetched and
// checked to be the same from all three servers, malformed token streams refused, inline
// outputs never keyed, JobInput.columns on the wire, and DatasetInfo.alignment/columns.
// The fake stubs pass every message through the real serializers.
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const { test } = require('node:test');
const lib = require('../lib');

const { Grant, MpcClient, RING64, RING128, Select } = lib;
const PREDICT = 'linear_regression.predict';
const SERVICE = lib.loadClientService().service;
const V1 = '00112233445566778899aabbccddeeff';
const invalid = (pattern) => (e) => e instanceof lib.InvalidArgumentError && pattern.test(e.message);
const through = (definition, kind, message) =>
  definition[`${kind}Deserialize`](definition[`${kind}Serialize`](message));

/**
 * An MpcClient of `model-owner` whose stubs answer from `handlers` (no network); `calls`
 * records the requests each method received, decoded from the wire.
 */
function fakeClient(handlers, ring = RING128) {
  const client = Object.create(MpcClient.prototype);
  Object.assign(client, { identity: 'model-owner', ring, cluster: { fractionalBits: 32 }, timeout: 5, programListing: null });
  const calls = { RunJob: [], FetchOutput: [], ListDatasets: [] };
  client.servers = [0, 1, 2].map((party) => {
    const name = `server-${party}`;
    const unaryMethod = (method) => (request, options, callback) => {
      const decoded = through(SERVICE[method], 'request', request);
      calls[method].push({ server: name, request: decoded });
      Promise.resolve()
        .then(() => handlers[method](decoded, party))
        .then((answer) => callback(null, through(SERVICE[method], 'response', answer)), (error) => callback(error));
    };
    return {
      name,
      party,
      stub: {
        RunJob: unaryMethod('RunJob'),
        ListDatasets: unaryMethod('ListDatasets'),
        FetchOutput: (request) => {
          const decoded = through(SERVICE.FetchOutput, 'request', request);
          calls.FetchOutput.push({ server: name, request: decoded });
          const messages = handlers.FetchOutput(decoded, party).map((m) => through(SERVICE.FetchOutput, 'response', m));
          return Object.assign((async function* stream() { yield* messages; })(), { cancel() {} });
        },
      },
    };
  });
  return { client, calls };
}

/** A keyed output of `rows` rows: its shares, its tokens, and FetchOutput answers for each server. */
function keyedOutput(ring, values, { columns = 0, tokenMessages = 2 } = {}) {
  const rows = columns ? values.length / columns : values.length;
  const shares = lib.split(ring, lib.encode(ring, values, 32));
  const tokens = crypto.randomBytes(16 * rows);
  const header = {
    name: 'predictions',
    shape: columns ? [String(rows), String(columns)] : [String(rows)],
    fractional_bits: 32,
    ring: ring.protoName,
    magnitude_bits: 40,
    keyed: true,
  };
  /** What server `party` streams; `change` alters its header, tokens or messages. */
  const answer = (request, party, change = {}) => {
    const pair = lib.shareForParty(shares, party);
    const mine = change.tokens ?? tokens;
    const cut = Math.ceil(rows / tokenMessages) * 16;
    const tokenParts = [];
    for (let offset = 0; offset < mine.length; offset += cut) tokenParts.push({ row_tokens: mine.subarray(offset, offset + cut) });
    const digest = request.second_as_digest;
    const chunk = {
      chunk: { offset: '0', first: ring.toWire(pair.first), second: digest ? Buffer.alloc(0) : ring.toWire(pair.second) },
    };
    const tail = digest ? [{ second_digest: crypto.createHash('sha256').update(ring.toWire(pair.second)).digest() }] : [];
    const head = { header: { ...header, ...change.header } };
    return change.order ? change.order(head, tokenParts, chunk, tail) : [head, ...tokenParts, chunk, ...tail];
  };
  return { rows, tokens, answer, hex: Array.from({ length: rows }, (_, r) => tokens.subarray(16 * r, 16 * r + 16).toString('hex')) };
}

for (const ring of [RING64, RING128]) {
  test(`${ring.name}: a keyed output comes with its row tokens, the same from all three servers`, async () => {
    const values = [1.5, -2.25, 8, 0.125, 1000.5];
    const output = keyedOutput(ring, values);
    const { client, calls } = fakeClient({ FetchOutput: (request, party) => output.answer(request, party) }, ring);
    for (const digest of [false, true]) {
      const got = await client.fetch('j', { digest });
      assert.deepEqual(Array.from(got.values), values);
      assert.equal(got.keyed, true);
      assert.deepEqual(got.rowTokens, output.hex);
      assert.equal(got.rowTokens.length, output.rows);
      assert.ok(got.rowTokens.every((t) => /^[0-9a-f]{32}$/.test(t)));
    }
    assert.equal(calls.FetchOutput.length, 6);
  });
}

test('a keyed matrix output has one token per row; an output that is not keyed has none', async () => {
  const output = keyedOutput(RING128, [1, 2, 3, 4, 5, 6], { columns: 2, tokenMessages: 1 });
  const { client } = fakeClient({ FetchOutput: (request, party) => output.answer(request, party) });
  const got = await client.fetch('j');
  assert.deepEqual(got.shape, [3, 2]);
  assert.deepEqual(got.rowTokens, output.hex);
  const plain = fakeClient({
    FetchOutput: (request, party) => output.answer(request, party, { header: { keyed: false }, order: (h, t, c) => [h, c] }),
  });
  const unkeyed = await plain.client.fetch('j');
  assert.deepEqual([unkeyed.keyed, unkeyed.rowTokens], [false, null]);
  assert.deepEqual(Array.from(unkeyed.values), [1, 2, 3, 4, 5, 6]);
});

test('row tokens that differ between servers are refused, naming two servers that disagree', async () => {
  const output = keyedOutput(RING128, [1, 2, 3, 4]);
  for (const liar of [0, 1, 2]) {
    const other = Buffer.from(output.tokens);
    other[16 * 3 + 5] ^= 1; // the last row's token, one bit
    const { client } = fakeClient({
      FetchOutput: (request, party) => output.answer(request, party, party === liar ? { tokens: other } : {}),
    });
    await assert.rejects(
      () => client.fetch('j'),
      (e) => {
        assert.ok(e instanceof lib.OutputIntegrityError);
        assert.equal(e.code, 'DATA_LOSS');
        assert.ok(e.servers.includes(`server-${liar}`), `${e.servers} names server-${liar}`);
        assert.match(e.message, /^output integrity check failed: servers server-\d and server-\d returned different row tokens$/);
        return true;
      },
    );
  }
  // One server saying the output is not keyed (and sending no tokens): refused too.
  const { client } = fakeClient({
    FetchOutput: (request, party) =>
      output.answer(request, party, party === 2 ? { header: { keyed: false }, order: (h, t, c) => [h, c] } : {}),
  });
  await assert.rejects(() => client.fetch('j'), /servers server-1 and server-2 returned different answers on whether the output is keyed/);
});

test('malformed token streams are refused: too few, too many, after a chunk, for an output not keyed', async () => {
  const output = keyedOutput(RING128, [1, 2, 3, 4], { tokenMessages: 2 });
  const cases = {
    'sent 2 row tokens for 4 rows of a keyed output': { order: (h, t, c) => [h, t[0], c] },
    'row tokens out of place or too many': { order: (h, t, c) => [h, ...t, t[1], c] },
    'row tokens out of place or too many$': { order: (h, t, c) => [h, t[0], c, t[1]] },
    'row tokens of an output that is not keyed': { header: { keyed: false } },
  };
  for (const [message, change] of Object.entries(cases)) {
    const { client } = fakeClient({ FetchOutput: (request, party) => output.answer(request, party, party === 1 ? change : {}) });
    await assert.rejects(() => client.fetch('j'), new RegExp(`server-1: malformed output stream: ${message}`), message);
  }
});

test('inline outputs are never keyed: a keyed one is refused', async () => {
  const ring = RING128;
  const shares = lib.split(ring, lib.encode(ring, [1, 2], 32));
  const info = { name: 'predictions', shape: ['2'], fractional_bits: 32, ring: 'RING_Z2_128', magnitude_bits: 40 };
  const answer = (party, keyed) => {
    const pair = lib.shareForParty(shares, party);
    const output = { ...info, keyed };
    return {
      job_id: 'j',
      output,
      outputs: [output],
      stats: { bytes_sent_to_peers: '1', bytes_received_from_peers: '1', rounds: 1, duration_seconds: 0.1 },
      output_share: { offset: '0', first: ring.toWire(pair.first), second: ring.toWire(pair.second) },
    };
  };
  const inline = fakeClient({ RunJob: (request, party) => answer(party, false) });
  const got = await inline.client.runAndFetch(PREDICT, { features: 'x', weights: 'w' });
  assert.deepEqual([got.inline, got.keyed, got.rowTokens, Array.from(got.values)], [true, false, null, [1, 2]]);
  assert.equal(got.job.outputs[0].keyed, false);
  const keyed = fakeClient({ RunJob: (request, party) => answer(party, true) });
  await assert.rejects(() => keyed.client.runAndFetch(PREDICT, { features: 'x', weights: 'w' }), /an inline output that is keyed/);
});

test('a job that joined keyed datasets says which outputs are keyed; the fetch returns their tokens', async () => {
  const output = keyedOutput(RING128, [3, 4, 5]);
  const info = { name: 'predictions', shape: ['3'], fractional_bits: 32, ring: 'RING_Z2_128', magnitude_bits: 40, keyed: true };
  const stats = { bytes_sent_to_peers: '1', bytes_received_from_peers: '1', rounds: 1, duration_seconds: 0.1 };
  const { client, calls } = fakeClient({
    RunJob: () => ({ job_id: 'j', output: info, outputs: [info], stats }), // no output_share: keyed
    FetchOutput: (request, party) => output.answer(request, party),
  });
  const result = await client.run(PREDICT, { features: ['bank-1/a', 'bank-2/b'], weights: 'w' });
  assert.equal(result.outputs[0].keyed, true);
  const fetched = await client.runAndFetch(PREDICT, { features: ['bank-1/a', 'bank-2/b'], weights: 'w' });
  assert.deepEqual([fetched.inline, fetched.rowTokens], [false, output.hex]);
  assert.deepEqual(Array.from(fetched.values), [3, 4, 5]);
  assert.equal(calls.FetchOutput.length, 3);
});

test('job inputs select columns by name: {dataset, columns} or a Select, on the wire as JobInput.columns', async () => {
  const info = { name: 'predictions', shape: ['3'], fractional_bits: 32, ring: 'RING_Z2_128', magnitude_bits: 40 };
  const stats = { bytes_sent_to_peers: '1', bytes_received_from_peers: '1', rounds: 1, duration_seconds: 0.1 };
  const { client, calls } = fakeClient({ RunJob: () => ({ job_id: 'j', output: info, outputs: [info], stats }) });
  const job = {
    features: [{ dataset: 'bank-1/t', columns: ['a', 'b'] }, 'bank-2/x', new Select('bank-3/y', 'c')],
    weights: { dataset: 'w' }, // no columns: all of them
  };
  await client.run(PREDICT, job);
  const sent = calls.RunJob[0].request.job.inputs;
  assert.deepEqual(
    sent.map((i) => [i.role, `${i.dataset.owner}/${i.dataset.name}`, i.columns]),
    [
      ['features', 'bank-1/t', ['a', 'b']],
      ['features', 'bank-2/x', []],
      ['features', 'bank-3/y', ['c']],
      ['weights', 'model-owner/w', []],
    ],
  );
  const bytes = SERVICE.RunJob.requestSerialize({ job: { inputs: [{ role: 'r', columns: ['ab'] }] } });
  assert.ok(bytes.includes(Buffer.from([(3 << 3) | 2, 2, ...Buffer.from('ab')])), 'JobInput.columns is field 3');
  // The same mapping pins a grant: datasets and the columns the job selects (owner/name#col,col).
  const grant = Grant.pinned('model-owner', PREDICT, { ...job, weights: `model-owner/w@${V1}` });
  assert.deepEqual(grant.inputs.map((i) => [i.role, i.dataset]), [
    ['features', 'bank-1/t#a,b'],
    ['features', 'bank-2/x'],
    ['features', 'bank-3/y#c'],
    ['weights', `model-owner/w@${V1}`],
  ]);
  assert.throws(() => new Select('bank-1/t'), invalid(/Select names at least one column/));
  assert.throws(() => new Select('bank-1/t', 'bad name'), invalid(/invalid column name "bad name"/));
  await assert.rejects(() => client.run(PREDICT, { features: [{ dataset: 't', columns: ['a b'] }] }), invalid(/invalid column name/));
  await assert.rejects(() => client.run(PREDICT, { features: [{ dataset: 't', columns: 'a' }] }), invalid(/columns are an array of names/));
  await assert.rejects(() => client.run(PREDICT, { features: [{ dataset: 't', colums: ['a'] }] }), invalid(/unknown keys colums/));
  assert.equal(calls.RunJob.length, 3); // nothing more was sent
});

test('dataset listings show a keyed table\'s alignment and every dataset\'s column names; servers must agree', async () => {
  const message = (columns) => ({
    name: 't',
    shape: ['4', '2'],
    upload_id: Buffer.from(V1, 'hex'),
    created_at: 1,
    ring: 'RING_Z2_128',
    fractional_bits: 32,
    magnitude_bits: 40,
    grants: [],
    alignment: 'model-owner/q4',
    columns,
  });
  const { client } = fakeClient({ ListDatasets: (request, party) => ({ datasets: [message(party === 2 ? ['a', 'c'] : ['a', 'b'])] }) });
  const listing = await client.listDatasets();
  const [info] = listing.items;
  assert.deepEqual([info.alignment, info.columns], ['model-owner/q4', ['a', 'b']]);
  assert.deepEqual(listing.disagreements, ['dataset model-owner/t: server-0, server-1 agree; server-2 agree']);
  const plain = lib.datasetInfo('bank-1', { ...message([]), alignment: '' });
  assert.deepEqual([plain.alignment, plain.columns], ['', []]);
});

test('the CLI reads DATASET:COLUMN:COLUMN as a column selection and refuses empty ones', () => {
  const cli = path.join(__dirname, '..', 'bin', 'mpc-node.js');
  const run = (...args) => spawnSync(process.execPath, [cli, ...args, '--identity', 'x'], { encoding: 'utf8' });
  for (const bad of ['features=t:', 'features=t::a', 'features=:a']) {
    const refused = run('run', PREDICT, bad, 'weights=w');
    assert.equal(refused.status, 2, bad);
    assert.match(refused.stderr, /expected DATASET or DATASET:COLUMN\[:COLUMN\.\.\.\]/);
  }
  assert.match(run('--help').stdout, /DATASET:COLUMN\[:COLUMN\.\.\.\] uses only those columns/);
});
