#!/usr/bin/env node
'use strict';
/**
 * mpc-node: upload, run and fetch from the command line with the Node client,
 * the programs the servers offer, and an owner's calls: datasets, grants, jobs
 * and the audit trail.
 * Run without arguments for the usage text. Exit status: 0 on success, 1 when
 * a server refused or a check failed (the message names the servers and the
 * gRPC status), 2 for a usage error.
 */
const fs = require('node:fs');
const path = require('node:path');
const { EncodingError, Grant, GrantScope, Keep, MpcClient, MpcError, describeGrant, toJson } = require('../lib');

const USAGE = `usage: mpc-node <command> [arguments] [options]

commands:
  info                          each server's identity, party, ring, versions and peer links (JSON)
  programs                      the programs a job can run, with their roles, parameters (type,
                                default, range) and outputs, as the three servers list them (JSON)
  upload NAME [VALUE ...]       encode, secret-share and upload the values as dataset NAME;
                                prints the version stored (owner/name@version: what other
                                owners pin) and every grant with its id
      --values-file FILE        read the values from a JSON file (a number or a nested array)
      --shape D1,D2,...         the array's shape (default: that of the values)
      --grant RECEIVER:PROGRAM  who may receive outputs of which program (repeatable); by
                                default only from jobs whose other inputs are all your own
                                datasets, submitted by the receiver (see "grant options")
      --overwrite               replace an existing dataset of the same name
      --plain                   send all components in full instead of seed-compressed
      --fractional-bits F       the dataset's scale (default: the cluster file's)
  run PROGRAM ROLE=DATASET[,DATASET...] ...
                                run a job on all three servers; prints the job as JSON.
                                DATASET is owner/name, or a bare name of your own; the order
                                of datasets within a role matters (feature blocks are columns).
                                DATASET:COLUMN[:COLUMN...] uses only those columns of it, by
                                the names it was uploaded with, in that order
      --receiver NAME           who may fetch the outputs (default: you)
      --job-id ID               choose the job id (default: random)
      --param NAME=VALUE        a public parameter of the program (repeatable; "programs" lists
                                them). VALUE is a number (0.1, -2, 1e-3) or true/false; it is
                                sent as the type the program declares (5 is an integer for an
                                integer parameter, 5.0 for a number one), and a wrong type, an
                                unknown name or a value out of range is refused before sending.
                                NAME:TYPE=VALUE (TYPE number, integer or flag) sends it as that
                                type as given, without looking the program up
      --keep OUTPUT=DATASET     keep the output OUTPUT on the servers as your new dataset DATASET
                                instead of delivering it (repeatable; you must be the receiver);
                                the grant options below give the new datasets their grants
                                (--grant RECEIVER:PROGRAM ...), --overwrite replaces datasets
      --output-fractional-bits F
                                the outputs' scale (default: the program's natural scale;
                                lower means the servers truncate); keep outputs at the scale
                                later jobs want (e.g. the cluster's fractional_bits)
      --fetch                   you are the receiver: take the (first) output with the answer
                                (small outputs) or fetch it, check it and print the values too
  fetch JOB_ID                  fetch, check and reconstruct an output you receive (JSON; a keyed
                                output, of a job that joined keyed datasets, with row_tokens:
                                the join token of every row, as all three servers sent them)
      --output NAME             which output of the job (default: its first delivered one)
      --submitter NAME          who submitted the job (default: you); job ids are per submitter
      --digest                  receive second components as SHA-256 digests (half the traffic)
  datasets                      your datasets as the three servers hold them: versions, grants
                                and their uses, and any disagreement between the servers (JSON)
  add-grant NAME --grant RECEIVER:PROGRAM [grant options]
                                add grants to your dataset NAME on all three servers
  revoke-grant NAME GRANT_ID    revoke a grant of your dataset NAME: no later job may use it
  jobs                          the jobs you submitted or receive, newest last (JSON)
  audit [NAME]                  every job that read your datasets (NAME: one of them), newest
                                last, with each input's version and grant (JSON)
      --limit N                 jobs and audit: the newest N only (default: up to 10000)

grant options (upload, add-grant, and run --keep; they apply to every --grant of the command):
  --pin ROLE=DATASET[,DATASET...]
                                repeatable: allow exactly the job with these inputs, in this
                                order; DATASET is owner/name@version (the version voids the
                                grant when that dataset is replaced), owner/name, a bare name
                                of your own, or self (the dataset granted)
  --any-inputs                  read access: any other inputs (the receiver can compute anything
                                the program can from the data)
  --submitter NAME              who may submit the jobs (repeatable; default: the receiver)
  --role ROLE                   the role the dataset must play (default: any; the role it plays
                                in the pinned job)
  --max-uses N                  at most N jobs
  --expires-at UNIX_SECONDS     no job from then on
  --fix-param NAME=VALUE        repeatable: jobs must have exactly this parameter value (as for
                                run --param; a parameter not fixed is the submitter's choice)
  --keep-outputs                jobs must keep every output on the servers (nobody sees them)
  --grant-id HEX                the grant's id, 16 bytes in hex (default: random; one --grant)

options for every command:
  --cluster FILE                the cluster file (default: cluster.toml)
  --identity NAME               use certs/NAME.pem and certs/NAME.key
  --cert FILE --key FILE        or name the certificate and key explicitly
  --timeout SECONDS             deadline of every call (default: 60)

example:
  mpc-node upload --identity model-owner weights 0.2731 -0.5912 \\
      --grant model-owner:linear_regression.predict --any-inputs
      (prints its version: model-owner/weights@3f2a...)
  mpc-node upload --identity bank-1 income 101234.56 87000 130500.25 \\
      --grant model-owner:linear_regression.predict \\
      --pin features=self,bank-2/debt --pin weights=model-owner/weights@3f2a...
  mpc-node run --identity model-owner linear_regression.predict \\
      features=bank-1/income,bank-2/debt weights=weights
  mpc-node fetch --identity model-owner job-1234abcd
  mpc-node audit --identity bank-1 income
  mpc-node programs --identity model-owner
  mpc-node run --identity model-owner linear_regression.predict \
      features=bank-1/income,bank-2/debt weights=weights --output-fractional-bits 32 \
      --keep predictions=scores --grant model-owner:dot
      (prints outputs[0].kept_as: model-owner/scores@...; nothing is delivered)
`;

const FLAGS = new Set(['--overwrite', '--plain', '--digest', '--fetch', '--any-inputs', '--keep-outputs', '--help']);
const OPTIONS = new Set([
  '--values-file', '--shape', '--grant', '--receiver', '--job-id', '--fractional-bits',
  '--output-fractional-bits', '--cluster', '--identity', '--cert', '--key', '--timeout',
  '--pin', '--submitter', '--role', '--max-uses', '--expires-at', '--grant-id', '--limit',
  '--param', '--keep', '--output', '--fix-param',
]);
/** Options that may be given more than once: collected in arrays. */
const REPEATABLE = new Set(['grant', 'pin', 'submitter', 'param', 'keep', 'fix-param']);
const PARAMETER_TYPES = new Set(['number', 'integer', 'flag']);

class UsageError extends Error {}

/**
 * Split argv into positionals and options. Negative numbers ("-5") are values, not options.
 * @param {string[]} argv
 */
function parseArgs(argv) {
  const positionals = [];
  const options = Object.fromEntries([...REPEATABLE].map((key) => [key, []]));
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [flag, inline] = arg.startsWith('--') ? arg.split(/=(.*)/s, 2) : [arg];
    if (FLAGS.has(flag)) options[flag.slice(2)] = true;
    else if (OPTIONS.has(flag)) {
      const value = inline ?? argv[++i];
      if (value === undefined) throw new UsageError(`${flag} needs a value`);
      const key = flag.slice(2);
      if (REPEATABLE.has(key)) options[key].push(value);
      else options[key] = value;
    } else if (arg.startsWith('--')) throw new UsageError(`unknown option ${flag}`);
    else positionals.push(arg);
  }
  return { positionals, options };
}

/**
 * Parse a command-line number strictly ("1e3", "-0.5"; not "", "0x10" or "abc").
 * @param {string} text
 */
function parseNumber(text) {
  if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(text) && !/^[+-]?(inf|infinity|nan)$/i.test(text)) {
    throw new UsageError(`not a number: ${JSON.stringify(text)}`);
  }
  if (/nan/i.test(text)) return NaN;
  if (/inf/i.test(text)) return text.startsWith('-') ? -Infinity : Infinity;
  return Number(text);
}

/**
 * An integer literal: a number when exact as a double, else a BigInt.
 * @param {string} text
 */
function parseInteger(text) {
  if (!/^[+-]?\d+$/.test(text)) throw new UsageError(`not an integer: ${JSON.stringify(text)}`);
  const big = BigInt(text);
  return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
}

/** @param {string} text */
function parseFlag(text) {
  if (text === 'true' || text === 'false') return text === 'true';
  throw new UsageError(`a flag is true or false, got ${JSON.stringify(text)}`);
}

/**
 * Parameters of --param (or --fix-param) NAME=VALUE / NAME:TYPE=VALUE, by name. Untyped values
 * are booleans (true/false) or numbers (integer literals beyond 2^53 as BigInts): the client
 * types them by the program's declaration. Typed ones become {type: value}, sent as given.
 * @param {string[]} texts
 * @param {string} option for messages
 */
function parametersOf(texts, option) {
  const parameters = {};
  for (const text of texts) {
    const match = /^([^=:]+)(?::([^=]*))?=(.*)$/s.exec(text);
    if (!match || !match[3]) throw new UsageError(`${option} needs NAME=VALUE or NAME:TYPE=VALUE, got ${JSON.stringify(text)}`);
    const [, name, type, value] = match;
    if (Object.hasOwn(parameters, name)) throw new UsageError(`${option} ${name} is given twice`);
    if (type === undefined) {
      parameters[name] = value === 'true' || value === 'false' ? value === 'true' : /^[+-]?\d+$/.test(value) ? parseInteger(value) : parseNumber(value);
    } else if (!PARAMETER_TYPES.has(type)) {
      throw new UsageError(`${option} ${name}: the type is number, integer or flag, got ${JSON.stringify(type)}`);
    } else {
      const parse = { number: parseNumber, integer: parseInteger, flag: parseFlag }[type];
      parameters[name] = { [type]: parse(value) };
    }
  }
  return parameters;
}

/**
 * A non-negative integer option, or undefined when not given.
 * @param {object} options
 * @param {string} key
 */
function integerOption(options, key) {
  if (options[key] === undefined) return undefined;
  if (!/^\d+$/.test(options[key])) throw new UsageError(`--${key} must be a non-negative integer`);
  return Number(options[key]);
}

/**
 * The grants of --grant RECEIVER:PROGRAM, each with the grant options of the command.
 * @param {object} options
 * @returns {Grant[]}
 */
function grantsOf(options) {
  const modifiers = options.pin.length || options['any-inputs'] || options.role !== undefined ||
    options['max-uses'] !== undefined || options['expires-at'] !== undefined || options['grant-id'] !== undefined ||
    options['fix-param'].length || options['keep-outputs'];
  if (!options.grant.length) {
    if (modifiers || options.submitter.length) throw new UsageError('grant options need a --grant RECEIVER:PROGRAM');
    return [];
  }
  if (options.pin.length && options['any-inputs']) throw new UsageError('--pin and --any-inputs exclude each other');
  if (options['grant-id'] !== undefined && options.grant.length > 1) {
    throw new UsageError('--grant-id names one grant: give one --grant');
  }
  const inputs = [];
  for (const text of options.pin) {
    const [role, datasets] = text.split(/=(.*)/s, 2);
    if (!role || !datasets) throw new UsageError(`--pin needs ROLE=DATASET[,DATASET...], got ${JSON.stringify(text)}`);
    for (const dataset of datasets.split(',')) {
      if (!dataset) throw new UsageError(`--pin ${text}: an empty dataset`);
      inputs.push({ role, dataset });
    }
  }
  let expiresAt = 0;
  if (options['expires-at'] !== undefined) {
    expiresAt = Number(options['expires-at']);
    if (!/^\d+(\.\d+)?$/.test(options['expires-at'])) throw new UsageError('--expires-at must be a Unix time in seconds');
  }
  const parameters = parametersOf(options['fix-param'], '--fix-param');
  let scope = GrantScope.OWN_DATA;
  if (inputs.length) scope = GrantScope.PINNED;
  else if (options['any-inputs']) scope = GrantScope.ANY_INPUTS;
  return options.grant.map((text) => {
    const [receiver, program] = text.split(':');
    if (!receiver || !program) throw new UsageError(`--grant needs RECEIVER:PROGRAM, got ${JSON.stringify(text)}`);
    return new Grant({
      receiver,
      program,
      scope,
      inputs,
      role: options.role ?? '',
      submitters: options.submitter,
      maxUses: integerOption(options, 'max-uses') ?? 0,
      expiresAt,
      parameters,
      keepOutputs: Boolean(options['keep-outputs']),
      grantId: options['grant-id'],
    });
  });
}

/** @param {ReturnType<typeof parseArgs>['options']} options */
function connect(options) {
  const cluster = options.cluster ?? 'cluster.toml';
  const cert = options.cert ?? (options.identity && path.join('certs', `${options.identity}.pem`));
  const key = options.key ?? (options.identity && path.join('certs', `${options.identity}.key`));
  if (!cert || !key) throw new UsageError('name your identity: --identity NAME, or --cert FILE --key FILE');
  const timeout = options.timeout === undefined ? undefined : Number(options.timeout);
  if (timeout !== undefined && !(timeout > 0)) throw new UsageError('--timeout must be a positive number');
  return MpcClient.connect(cluster, cert, key, { timeout });
}

/**
 * @param {string[]} args
 * @param {object} options
 * @param {() => MpcClient} open connects, after the arguments were checked
 */
async function upload(args, options, open) {
  const [name, ...texts] = args;
  if (!name) throw new UsageError('upload needs a dataset NAME');
  if (options['values-file'] && texts.length) throw new UsageError('give VALUEs or --values-file, not both');
  const values = options['values-file']
    ? JSON.parse(fs.readFileSync(options['values-file'], 'utf8'))
    : texts.map(parseNumber);
  if (!options['values-file'] && !values.length) throw new UsageError('upload needs VALUEs or --values-file');
  const grants = grantsOf(options);
  const shape = options.shape === undefined ? undefined : options.shape.split(',').filter(Boolean).map(Number);
  const fractionalBits = integerOption(options, 'fractional-bits');
  const client = open();
  const ref = await client.upload(name, values, {
    grants,
    shape,
    fractionalBits,
    overwrite: Boolean(options.overwrite),
    compress: !options.plain,
  });
  const how = options.plain ? 'in full' : 'seed-compressed';
  console.log(`${client.identity}: uploaded ${ref.owner}/${ref.name} (${ref.elementCount} elements, ${how}, ` +
    `${client.ring.name}, f = ${ref.fractionalBits}, magnitude 2^${ref.magnitudeBits}) ` +
    'as secret shares to the three servers');
  console.log(`version: ${ref.pinned}`);
  for (const grant of ref.grants) console.log(`grant ${grant.grantId}: ${describeGrant(grant)}`);
}

/**
 * @param {string[]} args
 * @param {object} options
 * @param {() => MpcClient} open
 */
async function run(args, options, open) {
  const [program, ...roles] = args;
  if (!program || !roles.length) throw new UsageError('run needs a PROGRAM and ROLE=DATASET arguments');
  const inputs = {};
  for (const role of roles) {
    const [name, datasets] = role.split('=', 2);
    if (!name || !datasets) throw new UsageError(`expected ROLE=DATASET[,DATASET], got ${JSON.stringify(role)}`);
    inputs[name] = datasets.split(',').map((text) => {
      const [dataset, ...columns] = text.split(':');
      if (!dataset || columns.some((c) => !c)) {
        throw new UsageError(`expected DATASET or DATASET:COLUMN[:COLUMN...], got ${JSON.stringify(text)}`);
      }
      return columns.length ? { dataset, columns } : dataset;
    });
  }
  const outputFractionalBits = integerOption(options, 'output-fractional-bits');
  if (options.fetch && options.receiver !== undefined) throw new UsageError('--fetch is for your own outputs: no --receiver');
  if (options.fetch && options.keep.length) throw new UsageError('--fetch delivers the output to you: no --keep');
  const parameters = parametersOf(options.param, '--param');
  const keepAs = keepsOf(options);
  const client = open();
  const jobOptions = { jobId: options['job-id'], outputFractionalBits, parameters };
  if (options.fetch) {
    const output = await client.runAndFetch(program, inputs, jobOptions);
    console.log(toJson({ ...jobJson(output.job), inline: output.inline, output: output.name, values: Array.from(output.values),
      ...keyedJson(output) }));
    return;
  }
  const job = await client.run(program, inputs, { ...jobOptions, keepAs, receiver: options.receiver });
  console.log(toJson(jobJson(job)));
}

/**
 * The outputs of --keep OUTPUT=DATASET, each with the grant options' grants and --overwrite.
 * @param {object} options
 */
function keepsOf(options) {
  if (!options.keep.length) {
    if (options.grant.length) throw new UsageError('on run, --grant gives grants to kept outputs: it needs --keep OUTPUT=DATASET');
    if (options.overwrite) throw new UsageError('on run, --overwrite replaces kept datasets: it needs --keep OUTPUT=DATASET');
    grantsOf(options); // grant options without --grant: refused there
    return undefined;
  }
  const grants = grantsOf(options);
  const keepAs = {};
  for (const text of options.keep) {
    const [output, dataset] = text.split(/=(.*)/s, 2);
    if (!output || !dataset) throw new UsageError(`--keep needs OUTPUT=DATASET, got ${JSON.stringify(text)}`);
    if (Object.hasOwn(keepAs, output)) throw new UsageError(`--keep ${output} is given twice`);
    keepAs[output] = new Keep(dataset, { grants, overwrite: Boolean(options.overwrite) });
  }
  return keepAs;
}

/** @param {import('../lib/client').JobResult} job */
function jobJson(job) {
  return {
    job_id: job.jobId,
    submitter: job.submitter,
    receiver: job.receiver,
    shape: job.shape,
    ring: job.ring.protoName,
    fractional_bits: job.fractionalBits,
    magnitude_bits: job.magnitudeBits,
    truncation_failure_log2: job.truncationFailureLog2,
    outputs: job.outputs.map((o) => ({
      name: o.name,
      shape: o.shape,
      fractional_bits: o.fractionalBits,
      magnitude_bits: o.magnitudeBits,
      truncation_failure_log2: o.truncationFailureLog2,
      kept_as: o.keptAs ? o.keptAs.pinned : null,
      keyed: o.keyed,
    })),
    stats: job.stats,
  };
}

/**
 * @param {string[]} args
 * @param {object} options
 * @param {() => MpcClient} open
 */
async function fetchOutput(args, options, open) {
  if (args.length !== 1) throw new UsageError('fetch needs exactly one JOB_ID');
  if (options.submitter.length > 1) throw new UsageError('fetch takes one --submitter');
  const output = await open().fetch(args[0], {
    output: options.output,
    submitter: options.submitter[0],
    digest: Boolean(options.digest),
  });
  console.log(JSON.stringify({ job_id: args[0], output: output.name, shape: output.shape, ring: output.ring.protoName,
    fractional_bits: output.fractionalBits, magnitude_bits: output.magnitudeBits, values: Array.from(output.values),
    ...keyedJson(output) }));
}

/**
 * A keyed output's row tokens for the JSON answer (nothing for an output that is not keyed).
 * @param {import('../lib/client').FetchedOutput} output
 */
function keyedJson(output) {
  return output.keyed ? { keyed: true, row_tokens: output.rowTokens } : {};
}

/**
 * @param {string[]} args
 * @param {object} options
 * @param {() => MpcClient} open
 */
async function addGrant(args, options, open) {
  if (args.length !== 1) throw new UsageError('add-grant needs exactly one dataset NAME');
  const grants = grantsOf(options);
  if (!grants.length) throw new UsageError('add-grant needs a --grant RECEIVER:PROGRAM');
  const client = open();
  for (const grant of grants) {
    await client.addGrant(args[0], grant);
    console.log(`${client.identity}/${args[0]}: added grant ${grant.grantId}: ${describeGrant(grant)}`);
  }
}

/**
 * @param {string[]} args
 * @param {object} options
 * @param {() => MpcClient} open
 */
async function revokeGrant(args, options, open) {
  if (args.length !== 2) throw new UsageError('revoke-grant needs a dataset NAME and a GRANT_ID');
  const client = open();
  await client.revokeGrant(args[0], args[1]);
  console.log(`${client.identity}: revoked grant ${args[1].toLowerCase()} of ${client.identity}/${args[0]}`);
}

/**
 * A listing command: prints {items, disagreements} as JSON.
 * @param {(client: MpcClient, args: string[], limit: number) => Promise<object>} call
 * @param {number} most how many positional arguments it takes
 */
function listing(call, most) {
  return async (args, options, open) => {
    if (args.length > most) throw new UsageError(`too many arguments: ${args.join(' ')}`);
    const limit = integerOption(options, 'limit') ?? 0;
    console.log(toJson(await call(open(), args, limit), 2));
  };
}

const COMMANDS = {
  info: async (args, options, open) => console.log(toJson(await open().serverInfo(), 2)),
  programs: listing((client) => client.programs(), 0),
  upload,
  run,
  fetch: fetchOutput,
  datasets: listing((client) => client.listDatasets(), 0),
  'add-grant': addGrant,
  'revoke-grant': revokeGrant,
  jobs: listing((client, args, limit) => client.listJobs({ limit }), 0),
  audit: listing((client, args, limit) => client.auditTrail(args[0] ?? '', { limit }), 1),
};

async function main(argv) {
  let client;
  try {
    const { positionals, options } = parseArgs(argv);
    const [command, ...args] = positionals;
    if (options.help || !command) {
      process.stdout.write(USAGE);
      return options.help ? 0 : 2;
    }
    if (!COMMANDS[command]) throw new UsageError(`unknown command ${JSON.stringify(command)}`);
    await COMMANDS[command](args, options, () => (client = connect(options)));
    return 0;
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`mpc-node: ${error.message}\n\n${USAGE}`);
      return 2;
    }
    if (error instanceof MpcError) {
      const note = error instanceof EncodingError ? ' (nothing was sent)' : '';
      process.stderr.write(`mpc-node: ${error.code}: ${error.message}${note}\n`);
      return 1;
    }
    if (error instanceof SyntaxError || error.code === 'ENOENT') {
      process.stderr.write(`mpc-node: ${error.message}\n`);
      return 1;
    }
    throw error;
  } finally {
    client?.close();
  }
}

main(process.argv.slice(2)).then((code) => {
  // Exit explicitly once the output is flushed: grpc-js (1.14) keeps a socket open
  // after close() while a TLS handshake is pending, e.g. with a server that
  // accepts connections but never answers, which would keep the process alive.
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
});
