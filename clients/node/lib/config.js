'use strict';
/**
 * The cluster file and the certificates, read with the semantics of
 * `mpc_core/cluster.py` and `mpc_core/certificates.py`.
 *
 * The cluster file (TOML) names the CA (relative paths resolve against the
 * cluster file's directory), optionally `revoked` (the certificate revocation
 * list, relative like `ca`), the `ring` (128, the default, for Z_2^128 or 64
 * for Z_2^64), `fractional_bits` (the scale of new datasets; default 32 in
 * Z_2^128 and 16 in Z_2^64, allowed 1..bits/2-2) and exactly three
 * `[[servers]]` tables with `identity` and `address` ("host:port"), in party
 * order. Identities live in certificate URI SubjectAltNames:
 * `urn:mpc:client:<name>` for clients, `urn:mpc:server:<name>` for servers.
 *
 * The revocation list (`mpc_core.certificates.RevocationList`) holds
 * `sha256:<hex>` (the SHA-256 fingerprint of a certificate's DER encoding)
 * and/or `serial:<hex>` entries, any number per line, hex digits perhaps
 * separated by colons; `#` starts a comment. The client reads it at connect
 * (refusing its own certificate if listed), checks every server certificate
 * against it at each TLS handshake, and re-reads it when it changes (looked at
 * at most once a second); a list that cannot be read or parsed fails closed.
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
 * @property {string | null} revokedPath the certificate revocation list (`revoked`), if the file names one
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
  const unknown = Object.keys(data).filter((k) => !['ca', 'revoked', 'ring', 'fractional_bits', 'servers'].includes(k));
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
  if (data.revoked !== undefined && (typeof data.revoked !== 'string' || !data.revoked)) {
    throw new ConfigError("cluster file: 'revoked' must name the certificate revocation list file");
  }
  const revokedPath = data.revoked === undefined ? null : path.resolve(baseDir, data.revoked);
  return { servers, caPath: path.resolve(baseDir, data.ca), revokedPath, ring, fractionalBits: bits };
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

/** The largest revocation list read (as `mpc_core.certificates.MAX_REVOCATION_LIST_BYTES`). */
const MAX_REVOCATION_LIST_BYTES = 1 << 20;
/** The revocation list is looked at at most this often (milliseconds), as in the Python SDK. */
const REVOCATION_RELOAD_MS = 1000;
/** Line breaks as Python's `str.splitlines` knows them. */
const LINE_BREAKS = /\r\n|[\n\v\f\r\x1c-\x1e\x85\u2028\u2029]/;
/** Whitespace as Python's `str.split()` knows it. */
const WHITESPACE = /[\t\n\v\f\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/;

/**
 * @typedef {object} CertificateInfo what a revocation list is checked against
 * @property {string} fingerprint SHA-256 of the DER encoding, lowercase hex
 * @property {bigint} serial the serial number
 */

/**
 * The fingerprint and serial number of a certificate.
 * @param {import('node:tls').PeerCertificate | crypto.X509Certificate | Buffer} cert a peer
 *   certificate (as `checkServerIdentity` gets it), an X509Certificate, or PEM/DER bytes
 * @returns {CertificateInfo}
 */
function certificateInfo(cert) {
  const x509 = cert instanceof crypto.X509Certificate ? cert : Buffer.isBuffer(cert) ? new crypto.X509Certificate(cert) : null;
  const der = x509 ? x509.raw : cert.raw;
  const serial = x509 ? x509.serialNumber : cert.serialNumber;
  if (!Buffer.isBuffer(der) || typeof serial !== 'string' || !/^[0-9A-Fa-f]+$/.test(serial)) {
    throw new ConfigError('the certificate carries no DER encoding or serial number to check');
  }
  return { fingerprint: crypto.createHash('sha256').update(der).digest('hex'), serial: BigInt(`0x${serial}`) };
}

/** Certificates no server accepts and no client trusts, by fingerprint or serial number. */
class RevocationList {
  /**
   * @param {Iterable<string>} [fingerprints] lowercase hex SHA-256 fingerprints
   * @param {Iterable<bigint>} [serials]
   */
  constructor(fingerprints = [], serials = []) {
    /** @type {ReadonlySet<string>} */
    this.fingerprints = new Set(fingerprints);
    /** @type {ReadonlySet<bigint>} */
    this.serials = new Set(serials);
    Object.freeze(this);
  }

  /** The number of entries. */
  get size() {
    return this.fingerprints.size + this.serials.size;
  }

  /**
   * Whether the certificate `info` describes is on the list.
   * @param {CertificateInfo} info
   */
  revokes(info) {
    return this.fingerprints.has(info.fingerprint) || this.serials.has(info.serial);
  }
}

/**
 * Parse a revocation list as `mpc_core.certificates.parse_revocation_list` does; any bad line is an error.
 * @param {string} text
 * @param {string} [what] names the list in messages
 * @returns {RevocationList}
 * @throws {ConfigError} naming `what` and the line
 */
function parseRevocationList(text, what = 'revocation list') {
  if (Buffer.byteLength(text, 'utf8') > MAX_REVOCATION_LIST_BYTES) {
    throw new ConfigError(`${what} is larger than ${MAX_REVOCATION_LIST_BYTES} bytes`);
  }
  const fingerprints = [];
  const serials = [];
  const lines = text.split(LINE_BREAKS);
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  lines.forEach((line, index) => {
    const where = `${what}, line ${index + 1}`;
    for (const token of line.split('#', 1)[0].split(WHITESPACE).filter(Boolean)) {
      const colon = token.indexOf(':');
      const kind = colon < 0 ? '' : token.slice(0, colon).toLowerCase();
      if (kind !== 'sha256' && kind !== 'serial') {
        throw new ConfigError(`${where}: expected sha256:<hex> or serial:<hex>, got ${JSON.stringify(token.slice(0, 80))}`);
      }
      const value = token.slice(colon + 1);
      const digits = value.replaceAll(':', '').toLowerCase();
      if (!/^[0-9a-f]+$/.test(digits) || (kind === 'sha256' && digits.length !== 64)) {
        const expected = kind === 'sha256' ? '64 hex digits' : 'hex digits';
        throw new ConfigError(`${where}: ${kind}: needs ${expected}, got ${JSON.stringify(value.slice(0, 80))}`);
      }
      if (kind === 'sha256') fingerprints.push(digits);
      else serials.push(BigInt(`0x${digits}`));
    }
  });
  return new RevocationList(fingerprints, serials);
}

/** The cluster's revocation list file, re-read when it changes (fails closed). */
class RevocationFile {
  /**
   * Read the list now.
   * @param {string} file
   * @param {{intervalMs?: number}} [options] how long a reading is trusted (default 1 s)
   * @throws {ConfigError} the file cannot be read or parsed
   */
  constructor(file, { intervalMs = REVOCATION_RELOAD_MS } = {}) {
    this.path = file;
    this.intervalMs = intervalMs;
    /** @type {string | null} mtime, size and inode of the file last read; null: unusable */
    this.stamp = null;
    this.list = new RevocationList();
    this.checkedAt = -Infinity;
    this.current();
  }

  /**
   * The list as of at most `intervalMs` ago.
   * @returns {RevocationList}
   * @throws {ConfigError} the file cannot be read or parsed (checked again at the next call)
   */
  current() {
    const now = performance.now();
    if (this.stamp !== null && now - this.checkedAt < this.intervalMs) return this.list;
    this.checkedAt = now;
    let status;
    try {
      status = fs.statSync(this.path, { bigint: true });
    } catch (error) {
      this.stamp = null;
      throw new ConfigError(`cannot read the revocation list ${this.path}: ${error.code ?? error.message}`);
    }
    const stamp = `${status.mtimeNs}:${status.size}:${status.ino}`;
    if (stamp === this.stamp) return this.list;
    try {
      const text = new TextDecoder('utf-8', { fatal: true }).decode(fs.readFileSync(this.path));
      this.list = parseRevocationList(text, this.path);
      this.stamp = stamp;
    } catch (error) {
      this.stamp = null;
      if (error instanceof ConfigError) throw new ConfigError(`the revocation list is unusable: ${error.message}`);
      if (error instanceof TypeError) throw new ConfigError(`the revocation list is unusable: ${this.path} is not UTF-8 text`);
      throw new ConfigError(`cannot read the revocation list ${this.path}: ${error.code ?? error.message}`);
    }
    return this.list;
  }

  /**
   * Whether the list, as of now, names the certificate `info` describes.
   * @param {CertificateInfo} info
   * @throws {ConfigError} the list is unusable
   */
  revokes(info) {
    return this.current().revokes(info);
  }
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
 * asks for), then that the certificate's one mpc identity is exactly
 * `urn:mpc:server:<identity>`, then (with `revocation`) that the cluster's
 * revocation list does not name it. The DNS check alone does not pin the server:
 * server certificates also carry `localhost`, `127.0.0.1`, the host of the
 * server's address and any extra `--host` names as SANs, so a name that two
 * certificates share would let one server stand in for another. The URI SAN
 * is the identity the cluster's roles are built on; it is unique per server.
 * grpc-js calls it at every handshake (every (re)connection), so a certificate
 * revoked meanwhile is refused at the next one.
 * @param {string} identity e.g. "server-0"
 * @param {object} [options]
 * @param {RevocationFile | null} [options.revocation] the cluster's revocation list
 * @param {string} [options.address] the server's address, for messages
 * @param {(info: CertificateInfo | null) => void} [options.onAccepted] told the certificate of every
 *   handshake that passed (null without a revocation list)
 * @param {(error: Error & {code: string}) => void} [options.onRefused] told every refusal of a
 *   certificate that carries the right identity (revoked, or the list unusable)
 * @returns {(host: string, cert: import('node:tls').PeerCertificate) => Error | undefined}
 */
function serverIdentityCheck(identity, { revocation = null, address, onAccepted, onRefused } = {}) {
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
    if (!revocation) {
      onAccepted?.(null);
      return undefined;
    }
    let info;
    let refusal = null;
    try {
      info = certificateInfo(cert);
      if (revocation.revokes(info)) {
        const where = address ? ` at ${address}` : '';
        refusal = new Error(
          `the certificate${where} (sha256:${info.fingerprint}, serial ${info.serial.toString(16)}) has been revoked: ` +
            `it is on the revocation list ${revocation.path}; nothing is sent to it`,
        );
        refusal.code = 'ERR_MPC_REVOKED';
      }
    } catch (error) {
      refusal = new Error(error.message); // the list is unusable: fail closed
      refusal.code = 'ERR_MPC_REVOCATION_LIST';
    }
    if (refusal) {
      onRefused?.(refusal);
      return refusal;
    }
    onAccepted?.(info);
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
  MAX_REVOCATION_LIST_BYTES,
  REVOCATION_RELOAD_MS,
  RevocationList,
  RevocationFile,
  parseRevocationList,
  certificateInfo,
};
