'use strict';
// Unit tests of the cluster file's revocation list and of the client's TLS: the list's
// syntax (as mpc_core/certificates.py parses it), re-reading it when it changes (failing
// closed), the server identity check refusing listed certificates, and against three
// local grpc-js servers with test certificates made by test/fixtures/make-certs.sh: TLS
// 1.3 only, a listed server certificate refused (by fingerprint or serial, before first
// use and when listed later), and the client's own certificate refused at connect.
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { after, before, test } = require('node:test');
const grpc = require('@grpc/grpc-js');
const lib = require('../lib');

// The test certificates are made at run time (private keys are never committed), by
// fixtures/make-certs.sh with openssl, in a directory removed when the tests end.
function makeFixtures() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mpc-node-certs-'));
  execFileSync('sh', [path.join(__dirname, 'fixtures', 'make-certs.sh')], { cwd: dir, stdio: 'pipe' });
  return dir;
}
const FIXTURES = makeFixtures();
after(() => fs.rmSync(FIXTURES, { recursive: true, force: true }));
const fixture = (name) => fs.readFileSync(path.join(FIXTURES, name));
const SHA = 'ab'.repeat(32);
const configError = (pattern) => (e) => e instanceof lib.ConfigError && pattern.test(e.message);

const CLUSTER = `ca = "certs/ca.pem"
revoked = "certs/revoked.txt"

[[servers]]
identity = "server-0"
address = "127.0.0.1:7100"

[[servers]]
identity = "server-1"
address = "127.0.0.1:7101"

[[servers]]
identity = "server-2"
address = "127.0.0.1:7102"
`;

function tmpdir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'mpc-node-tls-'));
}

test('the cluster file may name a revocation list, relative to the file like the CA', () => {
  const cluster = lib.parseCluster(CLUSTER, '/etc/mpc');
  assert.equal(cluster.revokedPath, '/etc/mpc/certs/revoked.txt');
  assert.equal(lib.parseCluster(CLUSTER.replace('"certs/revoked.txt"', '"/srv/deny.txt"'), '/etc/mpc').revokedPath, '/srv/deny.txt');
  assert.equal(lib.parseCluster(CLUSTER.replace('revoked = "certs/revoked.txt"\n', ''), '/etc/mpc').revokedPath, null);
  for (const bad of ['""', '1', 'true', '["a"]']) {
    assert.throws(
      () => lib.parseCluster(CLUSTER.replace('"certs/revoked.txt"', bad), '/x'),
      configError(/'revoked' must name the certificate revocation list file/),
      bad,
    );
  }
  assert.throws(() => lib.parseCluster(`revocation = "x"\n${CLUSTER}`, '/x'), configError(/unknown keys \["revocation"\]/));
});

test('revocation lists: sha256 and serial entries, colons, any case, comments; bad lines named', () => {
  const colons = SHA.toUpperCase().match(/../g).join(':');
  const list = lib.parseRevocationList(
    `# header\nsha256:${colons} serial:0A  # bank-1, revoked today\n\n  SERIAL:ff:01\r\nSha256:${'0'.repeat(64)}\n`,
  );
  assert.equal(list.size, 4);
  assert.deepEqual([...list.fingerprints], [SHA, '0'.repeat(64)]);
  assert.deepEqual([...list.serials], [10n, 0xff01n]);
  assert.ok(list.revokes({ fingerprint: SHA, serial: 1n }));
  assert.ok(list.revokes({ fingerprint: 'cd'.repeat(32), serial: 0xff01n }));
  assert.ok(!list.revokes({ fingerprint: 'cd'.repeat(32), serial: 11n }));
  assert.equal(lib.parseRevocationList('').size, 0);
  assert.equal(lib.parseRevocationList('# nothing revoked yet\n').size, 0);
  const bad = {
    'revocation list, line 2: expected sha256:<hex> or serial:<hex>, got "md5:00"': `serial:1\nmd5:00`,
    'revocation list, line 1: expected sha256:<hex> or serial:<hex>, got "deadbeef"': 'deadbeef',
    'revocation list, line 1: sha256: needs 64 hex digits, got "abc"': 'sha256:abc',
    'revocation list, line 3: serial: needs hex digits, got "xyz"': '\n\nserial:xyz',
    'revocation list, line 1: serial: needs hex digits, got ""': 'serial:',
  };
  for (const [message, text] of Object.entries(bad)) {
    assert.throws(() => lib.parseRevocationList(text), (e) => e instanceof lib.ConfigError && e.message === message, message);
  }
  assert.throws(() => lib.parseRevocationList('#'.repeat(lib.MAX_REVOCATION_LIST_BYTES + 1), 'deny.txt'), configError(/^deny.txt is larger than 1048576 bytes$/));
});

test('the revocation list file is re-read when it changes, and fails closed while unusable', () => {
  const dir = tmpdir();
  const file = path.join(dir, 'revoked.txt');
  assert.throws(() => new lib.RevocationFile(file), configError(/cannot read the revocation list .*revoked.txt: ENOENT/));
  fs.writeFileSync(file, '# empty\n');
  const revocation = new lib.RevocationFile(file, { intervalMs: 0 });
  const info = { fingerprint: SHA, serial: 7n };
  assert.equal(revocation.revokes(info), false);
  fs.writeFileSync(file, `# now with an entry\nserial:7\n`);
  assert.equal(revocation.revokes(info), true);
  fs.writeFileSync(file, 'serial:7\nnot an entry\n');
  assert.throws(() => revocation.current(), configError(/the revocation list is unusable: .*revoked.txt, line 2: expected sha256/));
  assert.throws(() => revocation.revokes(info), configError(/unusable/)); // still: not trusted
  fs.writeFileSync(file, Buffer.from([0x73, 0xff, 0x0a]));
  assert.throws(() => revocation.current(), configError(/is not UTF-8 text/));
  fs.rmSync(file);
  assert.throws(() => revocation.current(), configError(/cannot read the revocation list/));
  fs.writeFileSync(file, `sha256:${SHA}\n`);
  assert.equal(revocation.revokes({ fingerprint: SHA, serial: 1n }), true);
  // Read at most once per interval (default one second): a change shows after it.
  const slow = new lib.RevocationFile(file);
  fs.writeFileSync(file, '\n');
  assert.equal(slow.revokes({ fingerprint: SHA, serial: 1n }), true);
});

test('certificate fingerprints and serials are those openssl prints', () => {
  const pem = fixture('server-0.pem');
  const x509 = new crypto.X509Certificate(pem);
  const info = lib.certificateInfo(pem);
  assert.equal(info.fingerprint, x509.fingerprint256.replaceAll(':', '').toLowerCase());
  assert.equal(info.serial, BigInt(`0x${x509.serialNumber}`));
  assert.deepEqual(lib.certificateInfo(x509), info);
  assert.deepEqual(lib.certificateInfo({ raw: x509.raw, serialNumber: x509.serialNumber }), info);
});

test('the server identity check refuses a listed certificate, and fails closed on an unusable list', () => {
  const dir = tmpdir();
  const file = path.join(dir, 'revoked.txt');
  const x509 = new crypto.X509Certificate(fixture('server-0.pem'));
  const peer = { subject: { CN: 'server-0' }, subjectaltname: x509.subjectAltName, raw: x509.raw, serialNumber: x509.serialNumber };
  const info = lib.certificateInfo(x509);
  fs.writeFileSync(file, 'serial:1  # some other certificate\n');
  const revocation = new lib.RevocationFile(file, { intervalMs: 0 });
  const seen = { accepted: [], refused: [] };
  const check = lib.serverIdentityCheck('server-0', {
    revocation,
    address: '10.0.0.10:7100',
    onAccepted: (i) => seen.accepted.push(i),
    onRefused: (e) => seen.refused.push(e),
  });
  assert.equal(check('server-0', peer), undefined);
  assert.deepEqual(seen.accepted, [info]);
  for (const entry of [`sha256:${info.fingerprint}`, `serial:${info.serial.toString(16)}`]) {
    fs.writeFileSync(file, `${entry}  # server-0\n`);
    const error = check('server-0', peer);
    assert.equal(error.code, 'ERR_MPC_REVOKED');
    assert.equal(
      error.message,
      `the certificate at 10.0.0.10:7100 (sha256:${info.fingerprint}, serial ${info.serial.toString(16)}) has been revoked: ` +
        `it is on the revocation list ${file}; nothing is sent to it`,
    );
  }
  fs.writeFileSync(file, 'garbage\n');
  assert.equal(check('server-0', peer).code, 'ERR_MPC_REVOCATION_LIST');
  assert.equal(seen.refused.length, 3);
  assert.equal(seen.accepted.length, 1);
  // The identity checks come first: another server's certificate is refused as before.
  assert.match(lib.serverIdentityCheck('server-1', { revocation })('server-1', peer).message, /server-1/);
});

// Three grpc-js servers with the fixture certificates: enough ClientService for serverInfo.
const servers = [];
let calls = 0;

async function startServer(party, { maxVersion } = {}) {
  const server = new grpc.Server();
  server.addService(lib.loadClientService().service, {
    GetServerInfo: (call, callback) => {
      calls += 1;
      callback(null, { identity: `server-${party}`, party, ring: 'RING_Z2_128' });
    },
  });
  const credentials = grpc.ServerCredentials.createSsl(
    fixture('ca.pem'),
    [{ private_key: fixture(`server-${party}.key`), cert_chain: fixture(`server-${party}.pem`) }],
    true,
  );
  if (maxVersion) credentials.updateSecureContextOptions({ ...credentials._getSecureContextOptions(), maxVersion });
  const port = await new Promise((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', credentials, (error, bound) => (error ? reject(error) : resolve(bound)));
  });
  servers.push(server);
  return `127.0.0.1:${port}`;
}

let addresses;
let tls12Address;

before(async () => {
  addresses = await Promise.all([0, 1, 2].map((party) => startServer(party)));
  tls12Address = await startServer(1, { maxVersion: 'TLSv1.2' });
});

after(() => {
  for (const server of servers) server.forceShutdown();
});

/**
 * A cluster directory for the local servers: the fixture CA, a revocation list with `entries`.
 * @param {string[]} entries
 * @param {string[]} [at] the servers' addresses
 */
function clusterDir(entries, at = addresses) {
  const dir = tmpdir();
  fs.writeFileSync(path.join(dir, 'revoked.txt'), ['# the cluster revocation list', ...entries, ''].join('\n'));
  const tables = at.map((address, party) => `[[servers]]\nidentity = "server-${party}"\naddress = "${address}"\n`);
  fs.writeFileSync(path.join(dir, 'cluster.toml'), [`ca = "${path.join(FIXTURES, 'ca.pem')}"`, 'revoked = "revoked.txt"', '', ...tables].join('\n'));
  return dir;
}

function connect(dir) {
  return lib.MpcClient.connect(path.join(dir, 'cluster.toml'), path.join(FIXTURES, 'tester.pem'), path.join(FIXTURES, 'tester.key'), {
    timeout: 10,
  });
}

const info = (name) => lib.certificateInfo(fixture(`${name}.pem`));
const entry = (name) => `sha256:${info(name).fingerprint}`;
const unauthenticated = (pattern) => (e) => e instanceof lib.MpcError && e.code === 'UNAUTHENTICATED' && pattern.test(e.message);

test('a cluster file with a revocation list that names none of the servers works, over TLS 1.3', async () => {
  assert.equal(lib.MIN_TLS_VERSION, 'TLSv1.3');
  const client = connect(clusterDir(['serial:1  # another certificate', `sha256:${SHA}`]));
  try {
    const answers = await client.serverInfo();
    assert.deepEqual(answers.map((a) => a.identity), ['server-0', 'server-1', 'server-2']);
    assert.deepEqual(client.servers.map((s) => s.certificate), ['server-0', 'server-1', 'server-2'].map(info));
  } finally {
    client.close();
  }
});

test('a server that does not offer TLS 1.3 is refused', async () => {
  const client = connect(clusterDir([], [addresses[0], tls12Address, addresses[2]]));
  try {
    await assert.rejects(() => client.serverInfo(), (e) => {
      assert.equal(e.code, 'UNAUTHENTICATED');
      assert.equal(e.server, 'server-1');
      assert.match(e.message, new RegExp(`^server-1: the server at ${tls12Address} does not offer TLS 1.3 \\(`));
      assert.doesNotMatch(e.message, /server-[02]/);
      return true;
    });
  } finally {
    client.close();
  }
});

test('a server certificate on the revocation list is refused at the handshake, by fingerprint or serial', async () => {
  for (const listed of [entry('server-2'), `serial:${info('server-2').serial.toString(16).toUpperCase()}`]) {
    const client = connect(clusterDir([listed]));
    try {
      await assert.rejects(
        () => client.serverInfo(),
        unauthenticated(
          new RegExp(
            `^server-2: the certificate at ${addresses[2]} \\(sha256:${info('server-2').fingerprint}, serial [0-9a-f]+\\) ` +
              'has been revoked: it is on the revocation list .*revoked.txt; nothing is sent to it$',
          ),
        ),
      );
    } finally {
      client.close();
    }
  }
});

test('a server certificate listed after it was checked is refused before the next call sends anything', async () => {
  const dir = clusterDir([]);
  const client = connect(dir);
  try {
    await client.serverInfo();
    fs.appendFileSync(path.join(dir, 'revoked.txt'), `${entry('server-1')}  # server-1\n`);
    await new Promise((resolve) => setTimeout(resolve, lib.REVOCATION_RELOAD_MS + 100)); // the list is looked at once a second
    const before = calls;
    await assert.rejects(
      () => client.serverInfo(),
      unauthenticated(/^server-1: its certificate \(serial [0-9a-f]+\) has been revoked since it was checked: .*; nothing was sent$/),
    );
    assert.equal(calls, before); // no server was called
    // The channel was dropped: the next call handshakes again, and the check refuses it.
    await assert.rejects(() => client.serverInfo(), unauthenticated(/^server-1: the certificate at .* has been revoked/));
    // An unusable list fails closed: nothing is sent.
    fs.writeFileSync(path.join(dir, 'revoked.txt'), 'not a list\n');
    await new Promise((resolve) => setTimeout(resolve, lib.REVOCATION_RELOAD_MS + 100));
    const stopped = calls;
    await assert.rejects(() => client.serverInfo(), configError(/the revocation list is unusable: .*line 1/));
    assert.equal(calls, stopped);
  } finally {
    client.close();
  }
});

test('connect refuses a client certificate on the revocation list, and a list it cannot read', () => {
  const dir = clusterDir([`serial:${info('tester').serial.toString(16)}  # tester`]);
  assert.throws(
    () => connect(dir),
    configError(/^the client certificate \(urn:mpc:client:tester, serial [0-9a-f]+\) is on the revocation list .*revoked.txt: ask the CA operator for a new one$/),
  );
  fs.rmSync(path.join(dir, 'revoked.txt'));
  assert.throws(() => connect(dir), configError(/cannot read the revocation list .*revoked.txt: ENOENT/));
});
