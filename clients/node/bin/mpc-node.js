#!/usr/bin/env node
'use strict';
/**
 * mpc-node: upload, run and fetch from the command line with the Node client.
 * Run without arguments for the usage text. Exit status: 0 on success, 1 when
 * a server refused or a check failed (the message names the servers and the
 * gRPC status), 2 for a usage error.
 */
const fs = require('node:fs');
const path = require('node:path');
const { EncodingError, MpcClient, MpcError } = require('../lib');

const USAGE = `usage: mpc-node <command> [arguments] [options]

commands:
  info                          each server's identity, party, ring, versions and peer links (JSON)
  upload NAME [VALUE ...]       encode, secret-share and upload the values as dataset NAME
      --values-file FILE        read the values from a JSON file (a number or a nested array)
      --shape D1,D2,...         the array's shape (default: that of the values)
      --grant RECEIVER:PROGRAM  who may receive outputs of which program (repeatable)
      --overwrite               replace an existing dataset of the same name
      --plain                   send all components in full instead of seed-compressed
      --fractional-bits F       the dataset's scale (default: the cluster file's)
  run PROGRAM ROLE=DATASET[,DATASET...] ...
                                run a job on all three servers; prints the job as JSON.
                                DATASET is owner/name, or a bare name of your own; the order
                                of datasets within a role matters (feature blocks are columns)
      --receiver NAME           who may fetch the output (default: you)
      --job-id ID               choose the job id (default: random)
      --output-fractional-bits F
                                the output's scale (default: the program's natural scale;
                                lower means the servers truncate)
      --fetch                   you are the receiver: take the output with the answer (small
                                outputs) or fetch it, check it and print the values too
  fetch JOB_ID                  fetch, check and reconstruct an output you receive (JSON)
      --digest                  receive second components as SHA-256 digests (half the traffic)

options for every command:
  --cluster FILE                the cluster file (default: cluster.toml)
  --identity NAME               use certs/NAME.pem and certs/NAME.key
  --cert FILE --key FILE        or name the certificate and key explicitly
  --timeout SECONDS             deadline of every call (default: 60)

example:
  mpc-node upload --identity bank-1 income 101234.56 87000 130500.25 \\
      --grant model-owner:linear_regression.predict
  mpc-node run --identity model-owner linear_regression.predict \\
      features=bank-1/income,bank-2/debt weights=weights intercept=intercept
  mpc-node fetch --identity model-owner job-1234abcd
`;

const FLAGS = new Set(['--overwrite', '--plain', '--digest', '--fetch', '--help']);
const OPTIONS = new Set([
  '--values-file', '--shape', '--grant', '--receiver', '--job-id', '--fractional-bits',
  '--output-fractional-bits', '--cluster', '--identity', '--cert', '--key', '--timeout',
]);

class UsageError extends Error {}

/**
 * Split argv into positionals and options. Negative numbers ("-5") are values, not options.
 * @param {string[]} argv
 */
function parseArgs(argv) {
  const positionals = [];
  const options = { grant: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [flag, inline] = arg.startsWith('--') ? arg.split(/=(.*)/s, 2) : [arg];
    if (FLAGS.has(flag)) options[flag.slice(2)] = true;
    else if (OPTIONS.has(flag)) {
      const value = inline ?? argv[++i];
      if (value === undefined) throw new UsageError(`${flag} needs a value`);
      const key = flag.slice(2);
      if (key === 'grant') options.grant.push(value);
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
 * A non-negative integer option, or undefined when not given.
 * @param {object} options
 * @param {string} key
 */
function integerOption(options, key) {
  if (options[key] === undefined) return undefined;
  if (!/^\d+$/.test(options[key])) throw new UsageError(`--${key} must be a non-negative integer`);
  return Number(options[key]);
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
  const grants = options.grant.map((text) => {
    const [receiver, program] = text.split(':');
    if (!receiver || !program) throw new UsageError(`--grant needs RECEIVER:PROGRAM, got ${JSON.stringify(text)}`);
    return { receiver, program };
  });
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
    inputs[name] = datasets.split(',');
  }
  const outputFractionalBits = integerOption(options, 'output-fractional-bits');
  if (options.fetch && options.receiver !== undefined) throw new UsageError('--fetch is for your own outputs: no --receiver');
  const client = open();
  const jobOptions = { jobId: options['job-id'], outputFractionalBits };
  if (options.fetch) {
    const output = await client.runAndFetch(program, inputs, jobOptions);
    console.log(JSON.stringify({ ...jobJson(output.job), inline: output.inline, values: Array.from(output.values) }));
    return;
  }
  const job = await client.run(program, inputs, { ...jobOptions, receiver: options.receiver });
  console.log(JSON.stringify(jobJson(job)));
}

/** @param {import('../lib/client').JobResult} job */
function jobJson(job) {
  return {
    job_id: job.jobId,
    receiver: job.receiver,
    shape: job.shape,
    ring: job.ring.protoName,
    fractional_bits: job.fractionalBits,
    magnitude_bits: job.magnitudeBits,
    truncation_failure_log2: job.truncationFailureLog2,
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
  const output = await open().fetch(args[0], { digest: Boolean(options.digest) });
  console.log(JSON.stringify({ job_id: args[0], shape: output.shape, ring: output.ring.protoName,
    fractional_bits: output.fractionalBits, magnitude_bits: output.magnitudeBits, values: Array.from(output.values) }));
}

const COMMANDS = {
  info: async (args, options, open) => console.log(JSON.stringify(await open().serverInfo(), null, 2)),
  upload,
  run,
  fetch: fetchOutput,
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
