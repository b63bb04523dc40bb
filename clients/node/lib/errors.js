'use strict';
/**
 * Errors of the MPC client, mirroring `mpc_core.errors` of the Python SDK.
 *
 * Every error carries `code`, the gRPC status name the servers use for it
 * (`PERMISSION_DENIED`, `NOT_FOUND`, ...), and, where known, `server`: the
 * server that failed or was waited for. Messages never contain share values.
 * @module errors
 */

/** Base class of every error this client raises on purpose. */
class MpcError extends Error {
  /**
   * @param {string} message what went wrong, naming servers but no secrets
   * @param {{code?: string, server?: string}} [options]
   */
  constructor(message, { code = 'INTERNAL', server } = {}) {
    super(message);
    this.name = this.constructor.name;
    /** @type {string} gRPC status name */
    this.code = code;
    /** @type {string | undefined} */
    this.server = server;
  }
}

/** A value cannot be encoded in fixed point (NaN, infinite, out of range, not a number). */
class EncodingError extends MpcError {
  /** @param {string} message */
  constructor(message) {
    super(message, { code: 'INVALID_ARGUMENT' });
  }
}

/** A request is malformed before anything is sent (a bad name, grant or option). */
class InvalidArgumentError extends MpcError {
  /** @param {string} message */
  constructor(message) {
    super(message, { code: 'INVALID_ARGUMENT' });
  }
}

/** A cluster file, certificate or key is unusable. */
class ConfigError extends MpcError {
  /** @param {string} message */
  constructor(message) {
    super(message, { code: 'FAILED_PRECONDITION' });
  }
}

/** The servers' answers do not fit together: at least one of `servers` is faulty. */
class OutputIntegrityError extends MpcError {
  /**
   * @param {[string, string]} servers the two servers whose copies differ
   * @param {string} what what differs, e.g. "copies of share component 1"
   */
  constructor(servers, what) {
    super(
      `output integrity check failed: servers ${servers[0]} and ${servers[1]} returned different ${what}`,
      { code: 'DATA_LOSS' },
    );
    /** @type {[string, string]} */
    this.servers = servers;
  }
}

/** When several servers fail, the most telling status wins (as in the Python SDK). */
const PRIORITY = [
  'INVALID_ARGUMENT',
  'NOT_FOUND',
  'PERMISSION_DENIED',
  'UNAUTHENTICATED',
  'ALREADY_EXISTS',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'UNAVAILABLE',
  'DEADLINE_EXCEEDED',
  'ABORTED',
];

/** Trailing-metadata key in which servers name an unavailable or aborting server. */
const SERVER_METADATA_KEY = 'mpc-server';

/**
 * Translate one server's failed call (a grpc-js ServiceError) into an MpcError.
 * @param {string} server identity of the server that was called
 * @param {any} error the grpc-js error (`code`, `details`, `metadata`)
 * @param {Record<number, string>} statusNames grpc.status, reverse-mapped
 * @returns {MpcError}
 */
function errorFromStatus(server, error, statusNames) {
  if (error instanceof MpcError) {
    // raised locally while talking to `server` (e.g. a malformed answer): say which server
    if (!error.message.startsWith(`${server}: `)) error.message = `${server}: ${error.message}`;
    error.server ??= server;
    return error;
  }
  const code = typeof error?.code === 'number' ? statusNames[error.code] ?? 'UNKNOWN' : 'UNKNOWN';
  const details = error?.details || error?.message || code;
  const named = error?.metadata?.get?.(SERVER_METADATA_KEY)?.[0];
  const blamed = typeof named === 'string' ? named : server;
  return new MpcError(`${server}: ${details}`, { code, server: blamed });
}

/**
 * One error for the failures of several servers, or null if none failed.
 * The message names every server and what it said; servers that said the
 * same thing are listed together.
 * @param {Map<string, MpcError>} failures by server identity
 * @returns {MpcError | null}
 */
function combineFailures(failures) {
  if (failures.size === 0) return null;
  const rank = (e) => (PRIORITY.includes(e.code) ? PRIORITY.indexOf(e.code) : PRIORITY.length);
  const ordered = [...failures.entries()].sort((a, b) => rank(a[1]) - rank(b[1]));
  const chosen = ordered[0][1];
  if (failures.size > 1) {
    const said = new Map();
    for (const [server, error] of ordered) {
      const prefix = `${server}: `;
      const text = error.message.startsWith(prefix) ? error.message.slice(prefix.length) : error.message;
      said.set(text, [...(said.get(text) ?? []), server]);
    }
    chosen.message = [...said.entries()].map(([text, servers]) => `${servers.join(', ')}: ${text}`).join('; ');
  }
  return chosen;
}

module.exports = {
  MpcError,
  EncodingError,
  InvalidArgumentError,
  ConfigError,
  OutputIntegrityError,
  SERVER_METADATA_KEY,
  errorFromStatus,
  combineFailures,
};
