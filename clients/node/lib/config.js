'use strict';
/**
 * The cluster file and the certificates, read with the semantics of
 * `mpc_core/cluster.py` and `mpc_core/certificates.py`.
 *
 * The cluster file (TOML) names the CA (relative paths resolve against the
 * cluster file's directory), the `ring` (128, the default, for Z_2^128 or 64
 * for Z_2^64), `fractional_bits` (the scale of new datasets; default 32 in
 * Z_2^128 and 16 in Z_2^64, allowed 1..bits/2-2) and exactly three
 * `[[servers]]` tables with `identity` and `address` ("host:port"), in party
 * order. Identities live in certificate URI SubjectAltNames:
 * `urn:mpc:client:<name>` for clients, `urn:mpc:server:<name>` for servers.
 * @module config
 */
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const tls = require('node:tls');
const TOML = require('smol-toml');
const { ConfigError } = require('./errors');
const { defaultFractionalBits } = require('./fixed_point');
const { ringForBits } = require('./ring');

/** Identities, dataset names and job ids: 1-128 chars of [A-Za-z0-9._-], starting with a letter or digit. */
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** The ring of a cluster whose file names none. */
const DEFAULT_RING_BITS = 128;

/**
 * The largest cluster scale of `ring`: products carry 2f bits, f <= k/2 - 2
 * leaves them an integer part of at least 3 bits.
 * @param {import('./ring').Ring} ring
 */
function maxClusterFractionalBits(ring) {
  return ring.bits / 2 - 2;
}

/**
 * @typedef {object} ServerEndpoint
 * @property {number} party 0, 1 or 2
 * @property {string} identity e.g. "server-0": the name its certificate must carry
 * @property {string} address "host:port" to connect to
 */

/**
 * @typedef {object} ClusterConfig
 * @property {ServerEndpoint[]} servers in party order
 * @property {string} caPath the CA certificate file
 * @property {import('./ring').Ring} ring the ring the cluster computes in
 * @property {number} fractionalBits f, the scale of new datasets
 */

/**
 * Return `value` if it is a valid name, else throw naming `what`.
 * @param {unknown} value
 * @param {string} what e.g. "dataset name"
 * @param {typeof Error} [ErrorClass]
 * @returns {string}
 */
function validateName(value, what, ErrorClass = ConfigError) {
  if (typeof value !== 'string' || !NAME_PATTERN.test(value)) {
    throw new ErrorClass(
      `invalid ${what} ${JSON.stringify(value)}: use 1-128 characters of letters, digits, ` +
        "'.', '_' and '-', starting with a letter or digit",
    );
  }
  return value;
}

/**
 * @param {unknown} address
 * @param {string} where
 */
function checkAddress(address, where) {
  const match = typeof address === 'string' ? /^(.+):(\d+)$/.exec(address) : null;
  const port = match ? Number(match[2]) : 0;
  if (!match || !(port > 0 && port < 65536)) {
    throw new ConfigError(`${where}: address must be 'host:port' with port 1-65535, got ${JSON.stringify(address)}`);
  }
  return address;
}

/**
 * Parse cluster-file text; a relative `ca` resolves against `baseDir`.
 * @param {string} text TOML
 * @param {string} baseDir directory of the cluster file
 * @returns {ClusterConfig}
 * @throws {ConfigError} naming the offending key
 */
function parseCluster(text, baseDir) {
  let data;
  try {
    data = TOML.parse(text);
  } catch (error) {
    throw new ConfigError(`cluster file is not valid TOML: ${error.message.split('\n')[0]}`);
  }
  const unknown = Object.keys(data).filter((k) => !['ca', 'ring', 'fractional_bits', 'servers'].includes(k));
  if (unknown.length) throw new ConfigError(`cluster file: unknown keys ${JSON.stringify(unknown.sort())}`);
  if (!Array.isArray(data.servers) || data.servers.length !== 3) {
    throw new ConfigError('cluster file must list exactly 3 [[servers]]');
  }
  const servers = data.servers.map((table, party) => {
    const where = `servers[${party}]`;
    if (typeof table !== 'object' || table === null || Array.isArray(table)) {
      throw new ConfigError(`${where} must be a table with identity and address`);
    }
    const extra = Object.keys(table).filter((k) => k !== 'identity' && k !== 'address');
    if (extra.length) throw new ConfigError(`${where}: unknown keys ${JSON.stringify(extra.sort())}`);
    let identity;
    try {
      identity = validateName(table.identity ?? '', 'server identity');
    } catch (error) {
      throw new ConfigError(`${where}: ${error.message}`);
    }
    return { party, identity, address: checkAddress(table.address, where) };
  });
  if (new Set(servers.map((s) => s.identity)).size !== 3) {
    throw new ConfigError('cluster file: server identities must be distinct');
  }
  if (typeof data.ca !== 'string' || !data.ca) {
    throw new ConfigError("cluster file: 'ca' must name the CA certificate file");
  }
  const ringBits = data.ring ?? DEFAULT_RING_BITS;
  if (ringBits !== 64 && ringBits !== 128) {
    throw new ConfigError(`cluster file: ring must be 128 (Z_2^128) or 64 (Z_2^64), got ${JSON.stringify(ringBits)}`);
  }
  const ring = ringForBits(ringBits);
  const bits = data.fractional_bits ?? defaultFractionalBits(ring);
  const limit = maxClusterFractionalBits(ring);
  if (!Number.isInteger(bits) || bits < 1 || bits > limit) {
    throw new ConfigError(`cluster file: fractional_bits must be 1..${limit} in ${ring.name}`);
  }
  return { servers, caPath: path.resolve(baseDir, data.ca), ring, fractionalBits: bits };
}

/**
 * Read a file or throw a ConfigError saying which one.
 * @param {string} file
 * @param {string} what
 * @returns {Buffer}
 */
function readFile(file, what) {
  try {
    return fs.readFileSync(file);
  } catch (error) {
    throw new ConfigError(`cannot read ${what} ${file}: ${error.code ?? error.message}`);
  }
}

/**
 * Read and parse a cluster file.
 * @param {string} file
 * @returns {ClusterConfig}
 */
function readCluster(file) {
  return parseCluster(readFile(file, 'cluster file').toString('utf8'), path.dirname(path.resolve(file)));
}

/**
 * The `urn:mpc:<role>:<name>` identities in a certificate's URI SANs.
 * @param {string | undefined} subjectAltName as Node writes it: `X509Certificate.subjectAltName`
 *   or `PeerCertificate.subjectaltname`, e.g. "URI:urn:mpc:server:server-0, DNS:server-0"
 * @returns {{role: string, name: string}[]}
 */
function identities(subjectAltName) {
  const found = [];
  for (const entry of (subjectAltName ?? '').split(/,\s*/)) {
    const match = /^URI:"?urn:mpc:(server|client):([^"]*)"?$/.exec(entry);
    if (match && NAME_PATTERN.test(match[2])) found.push({ role: match[1], name: match[2] });
  }
  return found;
}

/**
 * Check a client certificate (one client identity, issued by the CA, valid now,
 * matching the key) and return its identity with the PEM material.
 * @param {Buffer} certPem
 * @param {Buffer} keyPem
 * @param {Buffer} caPem
 * @returns {{identity: string, certPem: Buffer, keyPem: Buffer, caPem: Buffer}}
 * @throws {ConfigError} naming the problem
 */
function checkClientCertificate(certPem, keyPem, caPem) {
  let cert;
  let ca;
  try {
    cert = new crypto.X509Certificate(certPem);
    ca = new crypto.X509Certificate(caPem);
  } catch {
    throw new ConfigError('client certificate or CA certificate is not a PEM certificate');
  }
  const found = identities(cert.subjectAltName);
  if (found.length !== 1) {
    throw new ConfigError(`client certificate must carry exactly one urn:mpc:<role>:<name> URI, found ${found.length}`);
  }
  const [{ role, name }] = found;
  if (role !== 'client') throw new ConfigError(`urn:mpc:${role}:${name} is not a client certificate`);
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) {
    throw new ConfigError(`client certificate (${name}) was not issued by the cluster CA`);
  }
  const now = Date.now();
  if (now < Date.parse(cert.validFrom) || now > Date.parse(cert.validTo)) {
    throw new ConfigError(`client certificate (${name}) is not valid now: valid ${cert.validFrom} to ${cert.validTo}`);
  }
  let key;
  try {
    key = crypto.createPrivateKey(keyPem);
  } catch {
    throw new ConfigError(`private key for ${name} is not an unencrypted PEM key`);
  }
  if (!cert.checkPrivateKey(key)) throw new ConfigError(`private key does not match the certificate of ${name}`);
  return { identity: name, certPem, keyPem, caPem };
}

/**
 * The TLS `checkServerIdentity` for the server `identity`: the usual host-name
 * check against `identity` (the DNS SAN that `grpc.ssl_target_name_override`
 * asks for), and then that the certificate's one mpc identity is exactly
 * `urn:mpc:server:<identity>`. The DNS check alone does not pin the server:
 * server certificates also carry `localhost`, `127.0.0.1`, the host of the
 * server's address and any extra `--host` names as SANs, so a name that two
 * certificates share would let one server stand in for another. The URI SAN
 * is the identity the cluster's roles are built on; it is unique per server.
 * @param {string} identity e.g. "server-0"
 * @returns {(host: string, cert: import('node:tls').PeerCertificate) => Error | undefined}
 */
function serverIdentityCheck(identity) {
  return (host, cert) => {
    const hostError = tls.checkServerIdentity(identity, cert);
    if (hostError) return hostError;
    const found = identities(cert.subjectaltname);
    const expected = `urn:mpc:server:${identity}`;
    if (found.length !== 1 || found[0].role !== 'server' || found[0].name !== identity) {
      const carried = found.map(({ role, name }) => `urn:mpc:${role}:${name}`).join(', ') || 'no mpc identity';
      const error = new Error(`the server certificate carries ${carried}, not ${expected}`);
      error.code = 'ERR_MPC_SERVER_IDENTITY';
      return error;
    }
    return undefined;
  };
}

module.exports = {
  NAME_PATTERN,
  DEFAULT_RING_BITS,
  maxClusterFractionalBits,
  validateName,
  parseCluster,
  readCluster,
  readFile,
  identities,
  checkClientCertificate,
  serverIdentityCheck,
};
