'use strict';
/**
 * Consent on the wire, and the owner's views (datasets, jobs, audit trail) from three servers.
 *
 * Mirrors `mpc_client/types.py` (DatasetRef, SELF, GrantScope, Grant) and
 * `mpc_client/_catalog.py` (grant_to_proto, grant_from_proto, compare) of the
 * Python SDK: the same defaults, the same validation, the same merge.
 *
 * A grant says that `receiver` may obtain outputs of `program` from jobs that
 * use the dataset, and which jobs:
 *
 * - scope `own-data` (the default, the safest): every other input of the job
 *   is a dataset of the same owner, so nobody else's data (a receiver's
 *   crafted weights, say) can be combined with it;
 * - scope `pinned` (`Grant.pinned`): exactly one job, its complete inputs
 *   pinned in order by name and, for other owners' datasets, by version
 *   (`owner/name@<hex upload id>`): replacing such a dataset voids the grant;
 * - scope `any-inputs` (`Grant.readAccess`): any inputs, which is read access.
 *
 * `submitters` says who may submit such jobs (default: the receiver only),
 * `maxUses` and `expiresAt` (Unix seconds) limit it, `role` restricts the role
 * the dataset plays, `parameters` fixes public parameters of the job to exact
 * values (e.g. `{ l2: 0.1 }`; typed as lib/params.js says), `keepOutputs`
 * allows only jobs that keep every output on the servers as datasets (nobody
 * sees them), `grantId` (16 random bytes in hex) names it on all three servers
 * (revocation, listings, the audit trail).
 *
 * Each server keeps its own record of grants, jobs and audit entries; the
 * listings ask all three and `compare` them: an item all three report alike
 * is listed once, and every difference is named in `disagreements`.
 * @module grants
 */
const crypto = require('node:crypto');
const { validateName } = require('./config');
const { InvalidArgumentError } = require('./errors');
const { MAX_PARAMETERS, isParamValue, parametersFromProto, parametersToProto, toJson } = require('./params');

const UPLOAD_ID_BYTES = 16;
const GRANT_ID_BYTES = 16;

/** In a pinned grant's inputs: the dataset the grant belongs to. */
const SELF = 'self';

/** What the other inputs of a job under a grant may be (the values are those of the Python SDK). */
const GrantScope = Object.freeze({
  OWN_DATA: 'own-data',
  PINNED: 'pinned',
  ANY_INPUTS: 'any-inputs',
});

const SCOPE_TO_PROTO = {
  [GrantScope.OWN_DATA]: 'GRANT_SCOPE_OWN_DATA',
  [GrantScope.PINNED]: 'GRANT_SCOPE_PINNED',
  [GrantScope.ANY_INPUTS]: 'GRANT_SCOPE_ANY_INPUTS',
};
const SCOPE_FROM_PROTO = Object.fromEntries(Object.entries(SCOPE_TO_PROTO).map(([k, v]) => [v, k]));
const RING_BITS = { RING_Z2_64: 64, RING_Z2_128: 128 };

/**
 * @param {unknown} value
 * @param {string} what
 */
function checkName(value, what) {
  return validateName(value, what, InvalidArgumentError);
}

/**
 * @param {unknown} hex
 * @param {number} bytes
 */
function isHex(hex, bytes) {
  return typeof hex === 'string' && hex.length === 2 * bytes && /^[0-9a-fA-F]*$/.test(hex);
}

/**
 * @typedef {object} DatasetRef a dataset on the cluster, perhaps at one version
 * @property {string} owner
 * @property {string} name
 * @property {string} version the hex upload id of one upload ('' for none)
 * @property {string} pinned `owner/name@version` (`owner/name` without a version): what grants pin
 */

/**
 * A dataset reference: its owner, its name and perhaps a version (16 bytes in hex).
 * @param {string} owner
 * @param {string} name
 * @param {string} [version]
 * @returns {DatasetRef}
 */
function datasetRef(owner, name, version = '') {
  checkName(owner, 'dataset owner');
  checkName(name, 'dataset name');
  if (version && !isHex(version, UPLOAD_ID_BYTES)) {
    throw new InvalidArgumentError(`a dataset version is ${UPLOAD_ID_BYTES} bytes in hex`);
  }
  const text = `${owner}/${name}`;
  return { owner, name, version: version.toLowerCase(), pinned: version ? `${text}@${version.toLowerCase()}` : text };
}

/**
 * Parse `owner/name`, `owner/name@version`, or a bare `name` owned by `defaultOwner`.
 * @param {string} text
 * @param {string} defaultOwner
 * @returns {DatasetRef}
 */
function parseDatasetRef(text, defaultOwner) {
  if (typeof text !== 'string') throw new InvalidArgumentError('datasets are named by strings');
  const at = text.indexOf('@');
  const [path, version] = at < 0 ? [text, ''] : [text.slice(0, at), text.slice(at + 1)];
  const slash = path.indexOf('/');
  if (slash < 0) return datasetRef(defaultOwner, path, version);
  const [owner, name] = [path.slice(0, slash), path.slice(slash + 1)];
  if (name.includes('/')) throw new InvalidArgumentError(`dataset reference ${JSON.stringify(path)} must be 'owner/name'`);
  return datasetRef(owner, name, version);
}

/**
 * A dataset as a pinned grant names it: "self", a string, or a reference such as `upload` returns.
 * @param {string | {owner: string, name: string, version?: string}} spec
 */
function pinText(spec) {
  if (typeof spec === 'string') return spec;
  if (spec && typeof spec === 'object' && !('owner' in spec) && 'dataset' in spec) {
    // a job input that selects columns ({dataset, columns}, a Select): the columns are pinned too
    const columns = Array.isArray(spec.columns) && spec.columns.length ? `#${spec.columns.join(',')}` : '';
    return pinText(spec.dataset) + columns;
  }
  if (spec && typeof spec === 'object' && typeof spec.owner === 'string' && typeof spec.name === 'string') {
    return datasetRef(spec.owner, spec.name, spec.version ?? '').pinned;
  }
  throw new InvalidArgumentError('a pinned input is "self", "owner/name[@version]", a bare name or a dataset reference');
}

/**
 * Consent: `receiver` may get outputs of `program` from jobs that use the dataset as the scope says.
 * `new Grant({receiver, program})` is the safe default (own data only). Use
 * `Grant.pinned` for one exact job and `Grant.readAccess` for any inputs.
 */
class Grant {
  /**
   * @param {object} spec
   * @param {string} spec.receiver who may receive the outputs
   * @param {string} spec.program e.g. "linear_regression.predict"
   * @param {string} [spec.role] the role the dataset must play ('' any)
   * @param {'own-data' | 'pinned' | 'any-inputs'} [spec.scope] default 'own-data'
   * @param {{role: string, dataset: string}[]} [spec.inputs] for a pinned grant: every input of the
   *   job in order; dataset is "owner/name[@version]", a bare name of the uploader's, or "self"
   * @param {string[]} [spec.submitters] who may submit jobs under it (default: the receiver only)
   * @param {number} [spec.maxUses] at most this many jobs (0: no limit)
   * @param {number} [spec.expiresAt] Unix time (seconds) from which it allows no job (0: never)
   * @param {Record<string, import('./params').ParamValue>} [spec.parameters] public parameters the
   *   job must have exactly these values of, e.g. {l2: 0.1}; a parameter not named is the submitter's
   * @param {boolean} [spec.keepOutputs] allow only jobs that keep every output on the servers
   * @param {string} [spec.grantId] 16 bytes in hex (default: drawn from the CSPRNG)
   */
  constructor({
    receiver,
    program,
    role = '',
    scope = GrantScope.OWN_DATA,
    inputs = [],
    submitters = [],
    maxUses = 0,
    expiresAt = 0,
    parameters = {},
    keepOutputs = false,
    grantId,
  } = {}) {
    checkName(receiver, 'grant receiver');
    if (typeof program !== 'string' || !program) throw new InvalidArgumentError('a grant names a program');
    if (typeof role !== 'string') throw new InvalidArgumentError('a grant role is a string');
    if (!Object.values(GrantScope).includes(scope)) {
      throw new InvalidArgumentError(
        `unknown grant scope ${JSON.stringify(scope)} (scopes: ${Object.values(GrantScope).join(', ')})`,
      );
    }
    if (!Array.isArray(inputs) || !Array.isArray(submitters)) {
      throw new InvalidArgumentError('a grant\'s inputs and submitters are arrays');
    }
    for (const submitter of submitters) checkName(submitter, 'grant submitter');
    if ((scope === GrantScope.PINNED) !== (inputs.length > 0)) {
      throw new InvalidArgumentError("a pinned grant lists the job's inputs, and only a pinned grant does");
    }
    const pins = inputs.map((item) => {
      if (!item || typeof item.role !== 'string' || !item.role) {
        throw new InvalidArgumentError('every pinned input is {role, dataset}');
      }
      const dataset = pinText(item.dataset);
      // "self" and bare names are resolved at upload; check the rest of the reference now
      const [reference] = dataset.split('#'); // "#col,col": the columns the job selects
      if (reference !== SELF) parseDatasetRef(reference, 'self');
      return Object.freeze({ role: item.role, dataset });
    });
    if (!Number.isInteger(maxUses) || maxUses < 0 || maxUses > 0xffffffff) {
      throw new InvalidArgumentError('maxUses must be a non-negative integer (0: no limit)');
    }
    if (typeof expiresAt !== 'number' || !Number.isFinite(expiresAt) || expiresAt < 0) {
      throw new InvalidArgumentError('expiresAt must be a non-negative Unix time (0: never)');
    }
    if (!parameters || typeof parameters !== 'object' || Array.isArray(parameters)) {
      throw new InvalidArgumentError("a grant's parameters are an object of name: value");
    }
    const fixed = Object.keys(parameters).sort();
    if (fixed.length > MAX_PARAMETERS) throw new InvalidArgumentError(`a grant fixes at most ${MAX_PARAMETERS} parameters`);
    for (const key of fixed) {
      checkName(key, 'parameter name');
      if (!isParamValue(parameters[key])) {
        throw new InvalidArgumentError(`parameter ${key} of a grant must be a number, an integer or a flag`);
      }
    }
    if (typeof keepOutputs !== 'boolean') throw new InvalidArgumentError('keepOutputs is true or false');
    const id = grantId ?? crypto.randomBytes(GRANT_ID_BYTES).toString('hex');
    if (!isHex(id, GRANT_ID_BYTES)) throw new InvalidArgumentError(`a grant id is ${GRANT_ID_BYTES} bytes in hex`);
    this.receiver = receiver;
    this.program = program;
    this.role = role;
    this.scope = scope;
    /** @type {readonly {role: string, dataset: string}[]} */
    this.inputs = Object.freeze(pins);
    /** @type {readonly string[]} */
    this.submitters = Object.freeze([...submitters]);
    this.maxUses = maxUses;
    this.expiresAt = expiresAt;
    /** @type {Readonly<Record<string, import('./params').ParamValue>>} by name, sorted */
    this.parameters = Object.freeze(Object.fromEntries(fixed.map((key) => [key, freezeValue(parameters[key])])));
    this.keepOutputs = keepOutputs;
    /** names the grant on all three servers (revocation, listings, the audit trail) */
    this.grantId = id.toLowerCase();
    Object.freeze(this);
  }

  /**
   * Allow exactly one job: its inputs by role, in order, as the job will name them.
   * `jobInputs` is the job's input mapping (as for `run`); the dataset the grant is
   * given on must be among them (by name, or as "self"), so one grant can serve
   * every dataset of the job. Other owners' datasets are best given with their
   * version (`owner/name@version`, or the reference their upload returned):
   * replacing such a dataset then voids the grant. The role defaults to the
   * role the dataset plays in the job. Inputs that select columns (`{dataset, columns}`, a
   * `Select`) pin their dataset: a grant pins datasets, not columns.
   * @param {string} receiver
   * @param {string} program
   * @param {Record<string, import('./jobs').InputSpec | import('./jobs').InputSpec[]>} jobInputs
   * @param {object} [options] role, submitters, maxUses, expiresAt, parameters, keepOutputs, grantId
   */
  static pinned(receiver, program, jobInputs, options = {}) {
    if (!jobInputs || typeof jobInputs !== 'object' || Array.isArray(jobInputs)) {
      throw new InvalidArgumentError("a pinned grant lists the job's inputs by role");
    }
    const inputs = [];
    for (const [role, spec] of Object.entries(jobInputs)) {
      for (const ref of Array.isArray(spec) ? spec : [spec]) inputs.push({ role, dataset: pinText(ref) });
    }
    if (!inputs.length) throw new InvalidArgumentError("a pinned grant lists the job's inputs");
    return new Grant({ ...options, receiver, program, scope: GrantScope.PINNED, inputs });
  }

  /**
   * Allow `program` with **any** other inputs: the receiver can compute anything from the data.
   * @param {string} receiver
   * @param {string} program
   * @param {object} [options] role, submitters, maxUses, expiresAt, parameters, keepOutputs, grantId
   */
  static readAccess(receiver, program, options = {}) {
    return new Grant({ ...options, receiver, program, scope: GrantScope.ANY_INPUTS, inputs: [] });
  }

  /**
   * A Grant from a Grant or a plain spec object (`{receiver, program, ...}`, as for the constructor).
   * @param {Grant | object} spec
   */
  static from(spec) {
    return spec instanceof Grant ? spec : new Grant(spec);
  }
}

/**
 * An explicitly typed value ({integer: 5}) frozen; plain values as they are.
 * @param {import('./params').ParamValue} value
 */
function freezeValue(value) {
  return value && typeof value === 'object' ? Object.freeze({ ...value }) : value;
}

/**
 * The wire form (`mpc.v1.Grant`) of `grant` on dataset `owner/name` ("self" and bare names resolved).
 * Its parameters are typed by `program`, the declaration of the grant's program
 * (`MpcClient` passes the one the servers list); without one, as lib/params.js
 * says for unlisted programs.
 * @param {Grant} grant
 * @param {string} owner
 * @param {string} name
 * @param {import('./params').ProgramDescription | null} [program]
 */
function grantToProto(grant, owner, name, program = null) {
  const ownRoles = new Set();
  const pins = grant.inputs.map(({ role, dataset: pinned }) => {
    const [dataset, selected = ''] = pinned.split('#');
    const columns = selected ? selected.split(',') : [];
    for (const column of columns) checkName(column, 'column name');
    let ref = dataset === SELF ? datasetRef(owner, name) : parseDatasetRef(dataset, owner);
    if (ref.owner === owner && ref.name === name) {
      ownRoles.add(role);
      ref = datasetRef(owner, name); // the granting dataset itself: always its current version
    }
    return {
      role,
      dataset: { owner: ref.owner, name: ref.name },
      upload_id: ref.version ? Buffer.from(ref.version, 'hex') : Buffer.alloc(0),
      columns,
    };
  });
  if (grant.scope === GrantScope.PINNED && ownRoles.size === 0) {
    throw new InvalidArgumentError(`a pinned grant on ${owner}/${name} must list ${owner}/${name} among its inputs`);
  }
  return {
    receiver: grant.receiver,
    program: grant.program,
    role: grant.role || (ownRoles.size === 1 ? [...ownRoles][0] : ''),
    scope: SCOPE_TO_PROTO[grant.scope],
    inputs: pins,
    submitters: [...grant.submitters],
    max_uses: grant.maxUses,
    expires_at: grant.expiresAt,
    grant_id: Buffer.from(grant.grantId, 'hex'),
    parameters: parametersToProto(grant.program, grant.parameters, program, { complete: false }),
    keep_outputs: grant.keepOutputs,
  };
}

/**
 * A Grant from the wire (the dataset itself shown as "self").
 * @param {any} message an `mpc.v1.Grant` as proto-loader decodes it
 * @param {string} owner
 * @param {string} name
 */
function grantFromProto(message, owner, name) {
  const inputs = (message.inputs ?? []).map((pin) => {
    const ref = datasetRef(pin.dataset.owner, pin.dataset.name, hex(pin.upload_id));
    const own = ref.owner === owner && ref.name === name;
    const columns = pin.columns && pin.columns.length ? `#${pin.columns.join(',')}` : '';
    return { role: pin.role, dataset: (own ? SELF : ref.pinned) + columns };
  });
  return new Grant({
    receiver: message.receiver,
    program: message.program,
    role: message.role,
    scope: SCOPE_FROM_PROTO[message.scope] ?? GrantScope.OWN_DATA,
    inputs,
    submitters: message.submitters ?? [],
    maxUses: message.max_uses ?? 0,
    expiresAt: message.expires_at ?? 0,
    parameters: parametersFromProto(message.parameters ?? []),
    keepOutputs: Boolean(message.keep_outputs),
    grantId: hex(message.grant_id),
  });
}

/**
 * A parameter value as text: 5, 0.1, true; an explicitly typed one as integer:5.
 * @param {import('./params').ParamValue} value
 */
function paramText(value) {
  if (value && typeof value === 'object') {
    const [[field, v]] = Object.entries(value);
    return `${field}:${v}`;
  }
  return String(value);
}

/** @param {Buffer | Uint8Array | undefined} bytes */
function hex(bytes) {
  return bytes ? Buffer.from(bytes).toString('hex') : '';
}

/**
 * One sentence about a grant, for people (the CLI prints it).
 * @param {Grant} grant
 */
function describeGrant(grant) {
  let scope;
  if (grant.scope === GrantScope.PINNED) {
    scope = `in the one job ${grant.inputs.map((pin) => `${pin.role}=${pin.dataset}`).join(', ')}`;
  } else if (grant.scope === GrantScope.ANY_INPUTS) scope = 'with any other inputs (read access)';
  else scope = "with the owner's own datasets only";
  const parts = [`${grant.receiver} may receive ${grant.program} ${scope}`];
  if (grant.role) parts.push(`in the role ${grant.role}`);
  const fixed = Object.entries(grant.parameters).map(([key, value]) => `${key}=${paramText(value)}`);
  if (fixed.length) parts.push(`with the parameters ${fixed.join(', ')}`);
  if (grant.keepOutputs) parts.push('every output kept on the servers');
  parts.push(`submitted by ${(grant.submitters.length ? grant.submitters : [grant.receiver]).join(', ')}`);
  if (grant.maxUses) parts.push(`at most ${grant.maxUses} jobs`);
  if (grant.expiresAt) parts.push(`until ${new Date(grant.expiresAt * 1000).toISOString()}`);
  return parts.join('; ');
}

/**
 * @typedef {object} DatasetInfo one of the caller's datasets, as the servers hold it
 * @property {DatasetRef} ref with `version`: the upload id of the version stored
 * @property {number[]} shape
 * @property {number} createdAt Unix time (each server's own clock)
 * @property {number} ringBits 64 or 128
 * @property {number} fractionalBits
 * @property {number | null} magnitudeBits null for a dataset stored before bounds existed
 * @property {{grant: Grant, uses: number}[]} grants with the jobs the server ran under each
 * @property {string} alignment for a keyed table: the alignment of its row tokens
 *   ("opener/alignment_id"); '' for a positional dataset
 * @property {string[]} columns the names of its columns (of the last dimension), if uploaded with
 *   names: what a job input can select (`{dataset, columns}`)
 */

/**
 * One dataset of a server's ListDatasets answer.
 * @param {string} owner
 * @param {any} message an `mpc.v1.DatasetInfo`
 * @returns {DatasetInfo}
 */
function datasetInfo(owner, message) {
  return {
    ref: datasetRef(owner, message.name, hex(message.upload_id)),
    shape: message.shape.map(Number),
    createdAt: message.created_at,
    ringBits: RING_BITS[message.ring] ?? 0,
    fractionalBits: message.fractional_bits,
    magnitudeBits: message._magnitude_bits === 'magnitude_bits' ? message.magnitude_bits : null,
    grants: message.grants.map((state) => ({
      grant: grantFromProto(state.grant, owner, message.name),
      uses: state.uses,
    })),
    alignment: message.alignment ?? '',
    columns: [...(message.columns ?? [])],
  };
}

/**
 * @typedef {object} JobRecord what a server recorded for one job
 * @property {string} jobId
 * @property {string} submitter
 * @property {string} receiver
 * @property {string} program
 * @property {{role: string, dataset: DatasetRef, grantId: string}[]} inputs each with the version
 *   read and the grant that allowed it
 * @property {number} startedAt
 * @property {number} finishedAt 0 while the job runs
 * @property {string} status "OK", "RUNNING", or the gRPC status name of the job's error
 * @property {string} error
 * @property {Record<string, number | bigint | boolean>} parameters the job's public parameters
 *   (as the servers resolved them: defaults filled in), by name
 * @property {{output: string, dataset: DatasetRef}[]} kept the outputs kept on the servers as
 *   datasets, each with the version it was kept as
 */

/**
 * One job of a server's ListJobs or GetAuditTrail answer.
 * @param {any} message an `mpc.v1.JobRecord`
 * @returns {JobRecord}
 */
function jobRecord(message) {
  return {
    jobId: message.job_id,
    submitter: message.submitter,
    receiver: message.receiver,
    program: message.program,
    inputs: message.inputs.map((item) => ({
      role: item.role,
      dataset: datasetRef(item.dataset.owner, item.dataset.name, hex(item.upload_id)),
      grantId: hex(item.grant_id),
    })),
    startedAt: message.started_at,
    finishedAt: message.finished_at,
    status: message.status,
    error: message.error,
    parameters: parametersFromProto(message.parameters ?? []),
    kept: (message.kept ?? []).map((k) => ({
      output: k.output,
      dataset: datasetRef(k.dataset.owner, k.dataset.name, hex(k.upload_id)),
    })),
  };
}

/**
 * @typedef {object} Listing what the three servers returned
 * @property {any[]} items one per key, as most servers report it
 * @property {string[]} disagreements one line per item the servers do not agree on, naming the
 *   servers (empty: all agree)
 */

/**
 * Merge three servers' lists: one item per key, and every disagreement named.
 * An item is listed as most servers report it; a key some servers lack, or
 * report differently, gives a line in `disagreements`.
 * @template T
 * @param {string[]} servers
 * @param {T[][]} lists in the order of `servers`
 * @param {(item: T) => string} key
 * @param {(item: T) => unknown} content what must agree (compared as JSON)
 * @param {(item: T) => string} describe
 * @returns {Listing}
 */
function compare(servers, lists, key, content, describe) {
  /** @type {Map<string, Map<string, T>>} */
  const seen = new Map();
  servers.forEach((server, i) => {
    for (const item of lists[i]) {
      const k = key(item);
      if (!seen.has(k)) seen.set(k, new Map());
      seen.get(k).set(server, item);
    }
  });
  const items = [];
  const disagreements = [];
  for (const byServer of seen.values()) {
    /** @type {Map<string, string[]>} */
    const versions = new Map();
    for (const [server, item] of byServer) {
      const c = toJson(content(item));
      versions.set(c, [...(versions.get(c) ?? []), server]);
    }
    let best = null;
    for (const names of versions.values()) if (best === null || names.length > best.length) best = names;
    const chosen = byServer.get(best[0]);
    items.push(chosen);
    const missing = servers.filter((s) => !byServer.has(s));
    if (missing.length || versions.size > 1) {
      const groups = [...versions.values()].map((names) => `${names.join(', ')} agree`).join('; ');
      const absent = missing.length ? `; ${missing.join(', ')} report nothing` : '';
      disagreements.push(`${describe(chosen)}: ${groups}${absent}`);
    }
  }
  return { items, disagreements };
}

/**
 * What must agree between servers for a dataset (the creation time is each server's clock).
 * @param {DatasetInfo} info
 */
function datasetContent(info) {
  return [info.ref, info.shape, info.ringBits, info.fractionalBits, info.magnitudeBits, info.grants, info.alignment, info.columns];
}

/**
 * What must agree between servers for a job record (times are each server's own).
 * @param {JobRecord} record
 */
function recordContent(record) {
  return [
    record.jobId,
    record.submitter,
    record.receiver,
    record.program,
    record.inputs,
    record.status,
    record.parameters,
    record.kept,
  ];
}

/**
 * @param {string[]} servers
 * @param {JobRecord[][]} lists
 */
function compareRecords(servers, lists) {
  return compare(
    servers,
    lists,
    (r) => JSON.stringify([r.submitter, r.jobId]),
    recordContent,
    (r) => `job ${r.jobId} of ${r.submitter}`,
  );
}

/**
 * @param {string[]} servers
 * @param {DatasetInfo[][]} lists
 */
function compareDatasets(servers, lists) {
  return compare(servers, lists, (d) => d.ref.name, datasetContent, (d) => `dataset ${d.ref.owner}/${d.ref.name}`);
}

module.exports = {
  SELF,
  GrantScope,
  Grant,
  GRANT_ID_BYTES,
  datasetRef,
  parseDatasetRef,
  grantToProto,
  grantFromProto,
  describeGrant,
  datasetInfo,
  jobRecord,
  compare,
  compareDatasets,
  compareRecords,
};
