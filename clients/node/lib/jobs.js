'use strict';
/**
 * A job's outputs: delivered to the receiver, or kept on the servers as datasets.
 *
 * Mirrors `mpc_client/_jobs.py` and `Keep`/`OutputDescription` of
 * `mpc_client/types.py`. A program names its outputs (GetServerInfo lists
 * them, e.g. `predictions`, `value`, `weights`); a job has one OutputInfo per
 * output, in the program's order. By default each is kept for the receiver to
 * fetch by name; `run(..., { keepAs: { weights: 'model-w' } })` instead keeps
 * it on the servers as a new dataset of the receiver (nobody sees it; later
 * jobs use it under the grants the job gave it, like an upload). Only the
 * receiver may submit a job that keeps outputs.
 * @module jobs
 */
const { validateName } = require('./config');
const { InvalidArgumentError, MpcError } = require('./errors');
const { Grant, datasetRef } = require('./grants');

const VERSION_BYTES = 16;

/** Keep one output of a job on the servers as a new dataset of the receiver. */
class Keep {
  /**
   * @param {string} dataset the new dataset's name (in the receiver's namespace)
   * @param {{grants?: (Grant | object)[], overwrite?: boolean}} [options] grants: consent on the
   *   new dataset, as at upload; overwrite: replace a dataset of that name
   */
  constructor(dataset, { grants = [], overwrite = false } = {}) {
    validateName(dataset, 'kept dataset name', InvalidArgumentError);
    if (!Array.isArray(grants)) throw new InvalidArgumentError("a kept dataset's grants are an array");
    if (typeof overwrite !== 'boolean') throw new InvalidArgumentError('overwrite is true or false');
    this.dataset = dataset;
    /** @type {readonly Grant[]} */
    this.grants = Object.freeze(grants.map((g) => Grant.from(g)));
    this.overwrite = overwrite;
    Object.freeze(this);
  }

  /**
   * A Keep from a Keep, a dataset name, or `{dataset, grants, overwrite}`.
   * @param {Keep | string | {dataset: string, grants?: (Grant | object)[], overwrite?: boolean}} spec
   */
  static from(spec) {
    if (spec instanceof Keep) return spec;
    if (typeof spec === 'string') return new Keep(spec);
    if (spec && typeof spec === 'object') return new Keep(spec.dataset, spec);
    throw new InvalidArgumentError('a kept output is a dataset name, {dataset, grants, overwrite} or a Keep');
  }
}

/**
 * Some columns of a dataset, by the names it was uploaded with, in this order: a job input
 * (`JobInput.columns`), as `Select` in `mpc_client/types.py`. A plain `{dataset, columns}`
 * does the same: `{features: [{dataset: 'bank-1/accounts', columns: ['income', 'debt']}]}`.
 */
class Select {
  /**
   * @param {string | import('./grants').DatasetRef} dataset "owner/name", a bare name of the
   *   submitter's, or a reference as `upload` returns
   * @param {...string} columns at least one column name
   */
  constructor(dataset, ...columns) {
    if (!columns.length) throw new InvalidArgumentError('Select names at least one column');
    this.dataset = dataset;
    /** @type {readonly string[]} */
    this.columns = Object.freeze(columns.map((c) => validateName(c, 'column name', InvalidArgumentError)));
    Object.freeze(this);
  }

  /**
   * The dataset and the columns (none: all of them) of one job input: a dataset (string or
   * reference), a Select, or `{dataset, columns}`.
   * @param {InputSpec} spec
   * @param {string} [role] for messages
   * @returns {{dataset: string | import('./grants').DatasetRef, columns: readonly string[]}}
   */
  static of(spec, role = '') {
    if (spec instanceof Select) return spec;
    if (spec && typeof spec === 'object' && !('owner' in spec) && 'dataset' in spec) {
      const { dataset, columns = [] } = spec;
      const extra = Object.keys(spec).filter((k) => k !== 'dataset' && k !== 'columns');
      if (extra.length) throw new InvalidArgumentError(`${where(role)}an input is {dataset, columns}: unknown keys ${extra.join(', ')}`);
      if (!Array.isArray(columns)) throw new InvalidArgumentError(`${where(role)}an input's columns are an array of names`);
      return { dataset, columns: columns.map((c) => validateName(c, 'column name', InvalidArgumentError)) };
    }
    return { dataset: spec, columns: [] };
  }
}

/** @param {string} role */
function where(role) {
  return role ? `role ${role}: ` : '';
}

/**
 * @typedef {string | import('./grants').DatasetRef | Select |
 *   {dataset: string | import('./grants').DatasetRef, columns?: string[]}} InputSpec
 *   one input of a job: a dataset, or some of its columns by name
 */

/**
 * @typedef {object} OutputDescription one output of a job
 * @property {string} name the program's name for it, e.g. "predictions"
 * @property {number[]} shape
 * @property {number} fractionalBits its scale: decode with it
 * @property {number} magnitudeBits the servers' bound: |encoded output| <= 2^magnitudeBits
 * @property {number | null} truncationFailureLog2 log2 of the truncation failure bound, null if none
 * @property {import('./grants').DatasetRef | null} keptAs with its version: the dataset the output
 *   became (nothing of it can be fetched); null: delivered
 * @property {boolean} keyed its rows carry join tokens (the job joined keyed datasets): `fetch`
 *   returns them as `rowTokens`
 */

/**
 * One OutputInfo of a RunJob answer.
 * @param {string} server
 * @param {any} info an `mpc.v1.OutputInfo`
 * @returns {OutputDescription}
 */
function outputDescription(server, info) {
  let keptAs = null;
  if (info.kept_as) {
    const version = Buffer.from(info.kept_version ?? []);
    if (version.length !== VERSION_BYTES) {
      throw new MpcError(`${server} named a kept output without a ${VERSION_BYTES}-byte version`, {
        code: 'ABORTED',
        server,
      });
    }
    keptAs = datasetRef(info.kept_as.owner, info.kept_as.name, version.toString('hex'));
  }
  return {
    name: info.name,
    shape: info.shape.map(Number),
    fractionalBits: info.fractional_bits,
    magnitudeBits: info.magnitude_bits,
    truncationFailureLog2: info._truncation_failure_log2 === 'truncation_failure_log2' ? info.truncation_failure_log2 : null,
    keptAs,
    keyed: Boolean(info.keyed),
  };
}

/**
 * Every output of a job as the three servers describe it; they must agree.
 * @param {string[]} servers in party order
 * @param {any[]} responses their RunJob answers
 * @param {string} jobId
 * @returns {OutputDescription[]}
 */
function jobOutputs(servers, responses, jobId) {
  const described = responses.map((r, i) => {
    const infos = r.outputs?.length ? r.outputs : r.output ? [r.output] : []; // servers before named outputs sent one
    return infos.map((info) => outputDescription(servers[i], info));
  });
  const first = JSON.stringify(described[0]);
  if (described.some((d) => JSON.stringify(d) !== first)) {
    throw new MpcError(`${servers.join(', ')} describe the outputs of job ${jobId} differently`, { code: 'ABORTED' });
  }
  if (!described[0].length) {
    throw new MpcError(`${servers[0]} reported no output of job ${jobId}`, { code: 'ABORTED', server: servers[0] });
  }
  return described[0];
}

/**
 * The names of the outputs a job delivered (not kept as datasets).
 * @param {{jobId: string, outputs: OutputDescription[]}} job
 * @returns {string[]}
 */
function delivered(job) {
  const names = job.outputs.filter((o) => o.keptAs === null).map((o) => o.name);
  if (!names.length) {
    throw new InvalidArgumentError(`job ${job.jobId} kept all its outputs on the servers: nothing to fetch`);
  }
  return names;
}

/**
 * The output `name` of a job result, checked to be delivered.
 * @param {{jobId: string, outputs: OutputDescription[]}} job
 * @param {string} name
 */
function deliveredOutput(job, name) {
  const output = job.outputs.find((o) => o.name === name);
  if (!output) {
    const names = job.outputs.map((o) => o.name).join(', ');
    throw new InvalidArgumentError(`job ${job.jobId} has no output '${name}' (outputs: ${names})`);
  }
  if (output.keptAs) {
    throw new InvalidArgumentError(
      `output ${name} of job ${job.jobId} was kept on the servers as ${output.keptAs.pinned}: nothing to fetch`,
    );
  }
  return output;
}

module.exports = { Keep, Select, outputDescription, jobOutputs, delivered, deliveredOutput };
