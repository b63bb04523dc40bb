'use strict';
/**
 * The cluster file and the client's certificate, read with the semantics of
 * `mpc_core/cluster.py` and `mpc_core/certificates.py`.
 *
 * The cluster file (TOML) names the CA (relative paths resolve against the
 * cluster file's directory), `fractional_bits` (default 16, 1..30) and exactly
 * three `[[servers]]` tables with `identity` and `address` ("host:port"), in
 * party order. Identities live in certificate URI SubjectAltNames:
 * `urn:mpc:client:<name>` for clients, `urn:mpc:server:<name>` for servers.
 * @module config
 */
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const TOML = require('smol-toml');
const { ConfigError } = require('./errors');

/** Identities, dataset names and job ids: 1-128 chars of [A-Za-z0-9._-], starting alphanumeric. */
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const MAX_FRACTIONAL_BITS = 30;

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
 * @property {number} fractionalBits f
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
  const unknown = Object.keys(data).filter((k) => !['ca', 'fractional_bits', 'servers'].includes(k));
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
  const bits = data.fractional_bits ?? 16;
  if (!Number.isInteger(bits) || bits < 1 || bits > MAX_FRACTIONAL_BITS) {
    throw new ConfigError(`cluster file: fractional_bits must be 1..${MAX_FRACTIONAL_BITS}`);
  }
  return { servers, caPath: path.resolve(baseDir, data.ca), fractionalBits: bits };
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
 * @param {crypto.X509Certificate} cert
 * @returns {{role: string, name: string}[]}
 */
function identities(cert) {
  const found = [];
  for (const entry of (cert.subjectAltName ?? '').split(/,\s*/)) {
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
  const found = identities(cert);
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

module.exports = { NAME_PATTERN, validateName, parseCluster, readCluster, readFile, checkClientCertificate };
