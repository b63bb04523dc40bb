'use strict';
/**
 * The client: mutual-TLS channels to the three servers, upload, run, fetch.
 *
 * Mirrors the Python SDK (`mpc_client`). Everything secret happens here, on the
 * caller's machine: `upload` encodes in fixed point, splits with the OS CSPRNG
 * and sends each server only its pair; `fetch` collects the three pairs,
 * checks that both copies of every component agree and only then reconstructs.
 * The wire contract is `protos/mpc/v1/*.proto`, loaded at run time from the
 * repository (never copied).
 * @module client
 */
const crypto = require('node:crypto');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { checkClientCertificate, readCluster, readFile, validateName } = require('./config');
const { MpcError, OutputIntegrityError, combineFailures, errorFromStatus } = require('./errors');
const { encode, decode } = require('./fixed_point');
const { toWire, fromWire, elementCount, WORD_BYTES } = require('./ring');
const { split, splitSeeded, shareForParty, reconstructChecked, reconstructByDigest } = require('./sharing');

/** `protos/` of the repository: ../../protos relative to this package. */
const PROTO_DIR = path.resolve(__dirname, '..', '..', '..', 'protos');
const DEFAULT_TIMEOUT_SECONDS = 60;
/** At most 2 MiB of share bytes per message: 131072 words per component when both travel. */
const MESSAGE_BYTES = 2 << 20;
const UPLOAD_ID_BYTES = 16;
const CHANNEL_OPTIONS = {
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
};

/**
 * Load `mpc.v1.ClientService` from the .proto files.
 * @param {string} [protoDir] the directory holding `mpc/v1/*.proto`
 */
function loadClientService(protoDir = process.env.MPC_PROTO_DIR || PROTO_DIR) {
  const definition = protoLoader.loadSync('mpc/v1/client_service.proto', {
    includeDirs: [protoDir],
    keepCase: true, // field names as in the .proto: first_seed, job_id, ...
    longs: String, // uint64 arrive as decimal strings
    enums: String,
    defaults: true,
    oneofs: true, // `item` names the member of a oneof that is set
  });
  return grpc.loadPackageDefinition(definition).mpc.v1.ClientService;
}

/**
 * Flatten a number, a (nested, rectangular) array or a typed array.
 * @param {number | ArrayLike<any>} values
 * @returns {{flat: ArrayLike<number>, shape: number[]}}
 */
function flatten(values) {
  if (!Array.isArray(values) && !ArrayBuffer.isView(values)) return { flat: [values], shape: [] };
  if (!Array.isArray(values) || !values.some(Array.isArray)) return { flat: values, shape: [values.length] };
  const rows = values.map(flatten);
  const inner = rows[0].shape;
  if (rows.some((r) => r.shape.join() !== inner.join())) {
    throw new MpcError('nested arrays must be rectangular', { code: 'INVALID_ARGUMENT' });
  }
  return { flat: rows.flatMap((r) => Array.from(r.flat)), shape: [values.length, ...inner] };
}

/**
 * The UploadDataset messages for one server: header, then chunks of the
 * components that travel in full. `first`/`second` are null when that
 * component travels as a seed in the header (or not at all).
 * @param {object} header the UploadHeader for this server
 * @param {BigUint64Array | null} first
 * @param {BigUint64Array | null} second
 * @param {number} count number of elements
 */
function* uploadRequests(header, first, second, count) {
  yield { header };
  const sent = (first ? 1 : 0) + (second ? 1 : 0);
  if (!sent) return;
  const words = MESSAGE_BYTES / (WORD_BYTES * sent);
  for (let offset = 0; offset < count; offset += words) {
    const end = Math.min(offset + words, count);
    yield {
      chunk: {
        offset: String(offset),
        first: first ? toWire(first, offset, end) : Buffer.alloc(0),
        second: second ? toWire(second, offset, end) : Buffer.alloc(0),
      },
    };
  }
}

/**
 * One server's requests for a seed-compressed upload (`UploadHeader.first_seed`/
 * `second_seed`): server 0 gets both seeds only, server 1 `first_seed` = seed_1
 * and x_2 as `second`, server 2 x_2 as `first` and `second_seed` = seed_0.
 * @param {object} header
 * @param {import('./sharing').SeededSplit} s
 * @param {number} party
 */
function seededRequests(header, s, party) {
  const n = s.x2.length;
  if (party === 0) {
    return uploadRequests({ ...header, first_seed: s.seed0, second_seed: s.seed1 }, null, null, n);
  }
  if (party === 1) return uploadRequests({ ...header, first_seed: s.seed1 }, null, s.x2, n);
  return uploadRequests({ ...header, second_seed: s.seed0 }, s.x2, null, n);
}

/** A connection to the three servers of a cluster under one client identity. */
class MpcClient {
  /**
   * Connect with a cluster file and this identity's certificate and key.
   * Channels are lazy: nothing is sent until the first call.
   * @param {string} clusterFile path of the cluster TOML file
   * @param {string} certFile PEM client certificate (urn:mpc:client:<name>)
   * @param {string} keyFile PEM private key
   * @param {{timeout?: number, protoDir?: string}} [options] timeout: default deadline in seconds
   * @returns {MpcClient}
   */
  static connect(clusterFile, certFile, keyFile, options = {}) {
    const cluster = readCluster(clusterFile);
    const credentials = checkClientCertificate(
      readFile(certFile, 'certificate'),
      readFile(keyFile, 'private key'),
      readFile(cluster.caPath, 'CA certificate'),
    );
    return new MpcClient(cluster, credentials, options);
  }

  /**
   * @param {import('./config').ClusterConfig} cluster
   * @param {{identity: string, certPem: Buffer, keyPem: Buffer, caPem: Buffer}} credentials
   * @param {{timeout?: number, protoDir?: string}} [options]
   */
  constructor(cluster, credentials, { timeout = DEFAULT_TIMEOUT_SECONDS, protoDir } = {}) {
    /** @type {string} this client's identity, from its certificate */
    this.identity = credentials.identity;
    this.cluster = cluster;
    this.timeout = timeout;
    const ClientService = loadClientService(protoDir);
    const tls = grpc.credentials.createSsl(credentials.caPem, credentials.keyPem, credentials.certPem);
    // Connect to the address, but verify the certificate against the server's identity.
    this.servers = cluster.servers.map((endpoint) => ({
      name: endpoint.identity,
      party: endpoint.party,
      stub: new ClientService(endpoint.address, tls, {
        ...CHANNEL_OPTIONS,
        'grpc.ssl_target_name_override': endpoint.identity,
      }),
    }));
  }

  /**
   * Close the channels. grpc-js (1.14) does not abort a TLS handshake still in
   * progress (a server that accepts but never answers): a process that must
   * end then should exit explicitly, as bin/mpc-node.js does.
   */
  close() {
    for (const server of this.servers) server.stub.close();
  }

  /**
   * Call options with a deadline `timeout` seconds from now.
   * @param {number | undefined} timeout
   */
  callOptions(timeout) {
    const seconds = timeout ?? this.timeout;
    if (!(seconds > 0)) throw new MpcError('timeout must be positive', { code: 'INVALID_ARGUMENT' });
    return { deadline: new Date(Date.now() + seconds * 1000) };
  }

  /**
   * Run `call` against the three servers concurrently; throw one combined error if any failed.
   * @template T
   * @param {(server: {name: string, party: number, stub: any}) => Promise<T>} call
   * @returns {Promise<T[]>}
   */
  async fanOut(call) {
    const settled = await Promise.allSettled(this.servers.map((server) => call(server)));
    const failures = new Map();
    settled.forEach((result, i) => {
      if (result.status === 'rejected') {
        const name = this.servers[i].name;
        failures.set(name, errorFromStatus(name, result.reason, grpc.status));
      }
    });
    const error = combineFailures(failures);
    if (error) throw error;
    return settled.map((result) => /** @type {PromiseFulfilledResult<T>} */ (result).value);
  }

  /**
   * Secret-share `values` and upload one share pair to each server.
   * Values are checked (numbers, finite, within the fixed-point range, non-empty)
   * before anything is sent.
   * @param {string} name dataset name, unique per owner
   * @param {number | ArrayLike<any>} values a number, an array (nested for matrices) or a Float64Array
   * @param {object} [options]
   * @param {{receiver: string, program: string}[]} [options.grants] who may receive outputs of which programs
   * @param {boolean} [options.overwrite] replace an existing dataset of the same name
   * @param {boolean} [options.compress] send two components as 16-byte PRG seeds (default true)
   * @param {number[]} [options.shape] shape of the flat `values` (default: inferred)
   * @param {number} [options.timeout] deadline in seconds
   * @returns {Promise<{owner: string, name: string, elementCount: number}>}
   * @throws {EncodingError} before sending, for bad values
   * @throws {MpcError} a server refused; the message names every server and what it said
   */
  async upload(name, values, { grants = [], overwrite = false, compress = true, shape, timeout } = {}) {
    validateName(name, 'dataset name', MpcError);
    const flattened = flatten(values);
    const dims = shape ?? flattened.shape;
    const count = flattened.flat.length;
    if (count === 0) throw new MpcError('cannot upload an empty array', { code: 'INVALID_ARGUMENT' });
    if (elementCount(dims) !== count) {
      throw new MpcError(`shape [${dims}] does not hold ${count} values`, { code: 'INVALID_ARGUMENT' });
    }
    const encoded = encode(flattened.flat, this.cluster.fractionalBits, { scalar: dims.length === 0 });
    const header = {
      name,
      shape: dims.map(String),
      fractional_bits: this.cluster.fractionalBits,
      grants: grants.map(({ receiver, program }) => ({ receiver, program })),
      upload_id: crypto.randomBytes(UPLOAD_ID_BYTES),
      overwrite,
    };
    const options = this.callOptions(timeout);
    let streams;
    if (compress) {
      const s = splitSeeded(encoded);
      streams = this.servers.map((server) => seededRequests(header, s, server.party));
    } else {
      const components = split(encoded);
      streams = this.servers.map((server) => {
        const pair = shareForParty(components, server.party);
        return uploadRequests(header, pair.first, pair.second, count);
      });
    }
    const responses = await this.fanOut((server) => sendStream(server.stub, streams[server.party], options));
    return { owner: this.identity, name, elementCount: Number(responses[0].element_count) };
  }

  /**
   * Run `program` on the named inputs on all three servers; the output is kept for `receiver`.
   * @param {string} program e.g. "linear_regression.predict"
   * @param {Record<string, string | string[]>} inputs role -> "owner/name" (or a bare name of
   *   this client's), or a list of them, e.g. {features: ["bank-1/x", "bank-2/z"], weights: "w"}
   * @param {{receiver?: string, jobId?: string, timeout?: number}} [options] receiver defaults to this client
   * @returns {Promise<{jobId: string, receiver: string, shape: number[], fractionalBits: number, stats: object}>}
   */
  async run(program, inputs, { receiver, jobId, timeout } = {}) {
    const job = {
      job_id: jobId ? validateName(jobId, 'job id', MpcError) : `job-${crypto.randomBytes(8).toString('hex')}`,
      program,
      inputs: this.jobInputs(inputs),
      receiver: validateName(receiver ?? this.identity, 'receiver', MpcError),
    };
    const options = this.callOptions(timeout);
    const request = { job, return_output: false };
    const responses = await this.fanOut((server) => unary(server.stub, 'RunJob', request, options));
    const stats = {};
    responses.forEach((r, i) => {
      stats[this.servers[i].name] = {
        bytesSentToPeers: Number(r.stats.bytes_sent_to_peers),
        bytesReceivedFromPeers: Number(r.stats.bytes_received_from_peers),
        rounds: r.stats.rounds,
        durationSeconds: r.stats.duration_seconds,
      };
    });
    const output = responses[0].output;
    return {
      jobId: job.job_id,
      receiver: job.receiver,
      shape: output.shape.map(Number),
      fractionalBits: output.fractional_bits,
      stats,
    };
  }

  /**
   * @param {Record<string, string | string[]>} inputs
   */
  jobInputs(inputs) {
    const items = [];
    for (const [role, spec] of Object.entries(inputs)) {
      for (const ref of Array.isArray(spec) ? spec : [spec]) {
        if (typeof ref !== 'string') {
          throw new MpcError(`role ${role}: datasets are named by strings`, { code: 'INVALID_ARGUMENT' });
        }
        const slash = ref.indexOf('/');
        const [owner, name] = slash < 0 ? [this.identity, ref] : [ref.slice(0, slash), ref.slice(slash + 1)];
        validateName(owner, 'dataset owner', MpcError);
        validateName(name, 'dataset name', MpcError);
        items.push({ role, dataset: { owner, name } });
      }
    }
    return items;
  }

  /**
   * Fetch a job output's shares from the three servers, check them and reconstruct.
   * Only the job's receiver may do this (PERMISSION_DENIED otherwise).
   * @param {string | {jobId: string}} job a job id or the result of `run`
   * @param {{digest?: boolean, timeout?: number}} [options] digest: receive each server's second
   *   component as a SHA-256 digest only (half the traffic, the same check)
   * @returns {Promise<{shape: number[], fractionalBits: number, values: Float64Array}>}
   * @throws {OutputIntegrityError} two servers' copies of a component (or of the shape) differ
   */
  async fetch(job, { digest = false, timeout } = {}) {
    const jobId = typeof job === 'string' ? job : job.jobId;
    const options = this.callOptions(timeout);
    const parts = await this.fanOut((server) => fetchPart(server, jobId, digest, options));
    for (let i = 0; i < 3; i++) {
      const [a, b] = [parts[i], parts[(i + 1) % 3]];
      if (a.shape.join() !== b.shape.join() || a.fractionalBits !== b.fractionalBits) {
        throw new OutputIntegrityError([a.server, b.server], 'output shapes or scales');
      }
    }
    const names = parts.map((p) => p.server);
    const secret = digest ? reconstructByDigest(parts) : reconstructChecked(parts, names);
    const { shape, fractionalBits } = parts[0];
    return { shape, fractionalBits, values: decode(secret, fractionalBits) };
  }

  /**
   * Ask each server about itself and its peer links.
   * @param {{timeout?: number}} [options]
   */
  async serverInfo({ timeout } = {}) {
    const options = this.callOptions(timeout);
    return this.fanOut((server) => unary(server.stub, 'GetServerInfo', {}, options));
  }
}

/**
 * A unary call as a promise.
 * @param {any} stub
 * @param {string} method
 * @param {object} request
 * @param {object} options call options (deadline)
 */
function unary(stub, method, request, options) {
  return new Promise((resolve, reject) => {
    stub[method](request, options, (error, response) => (error ? reject(error) : resolve(response)));
  });
}

/**
 * Stream the UploadDataset requests, respecting flow control; resolves with the response.
 * @param {any} stub
 * @param {Iterable<object>} requests
 * @param {object} options call options (deadline)
 */
function sendStream(stub, requests, options) {
  return new Promise((resolve, reject) => {
    let finished = false;
    let wake = () => {};
    const call = stub.UploadDataset(options, (error, response) => {
      finished = true;
      wake();
      if (error) reject(error);
      else resolve(response);
    });
    (async () => {
      for (const request of requests) {
        if (finished) return; // the server already answered (an error): stop sending
        if (!call.write(request)) {
          await new Promise((resume) => {
            wake = resume;
            call.once('drain', resume);
          });
        }
      }
      call.end();
    })().catch((error) => {
      call.cancel();
      reject(error);
    });
  });
}

/**
 * Stream one server's output share: header, chunks, and (digest mode) the second digest.
 * @param {{name: string, stub: any}} server
 * @param {string} jobId
 * @param {boolean} digest
 * @param {object} options call options (deadline)
 */
async function fetchPart(server, jobId, digest, options) {
  const call = server.stub.FetchOutput({ job_id: jobId, second_as_digest: digest }, options);
  const malformed = (what) => {
    call.cancel();
    return new MpcError(`malformed output stream: ${what}`, { code: 'INVALID_ARGUMENT' });
  };
  let shape = null;
  let fractionalBits = 0;
  let first;
  let second;
  let filled = 0;
  let secondDigest = null;
  const hasher = crypto.createHash('sha256');
  for await (const message of call) {
    if (shape === null) {
      if (message.item !== 'header') throw malformed('the first message is not the header');
      shape = message.header.shape.map(Number);
      fractionalBits = message.header.fractional_bits;
      first = new BigUint64Array(elementCount(shape));
      second = new BigUint64Array(digest ? 0 : first.length);
    } else if (message.item === 'second_digest' && digest && secondDigest === null) {
      secondDigest = message.second_digest;
    } else if (message.item === 'chunk' && secondDigest === null) {
      const chunk = message.chunk;
      const size = chunk.first.length / WORD_BYTES;
      if (Number(chunk.offset) !== filled || filled + size > first.length || size === 0) {
        throw malformed(`chunk at element ${chunk.offset}, expected ${filled}`);
      }
      first.set(fromWire(chunk.first, size), filled);
      if (digest) hasher.update(chunk.first);
      else second.set(fromWire(chunk.second, size), filled);
      filled += size;
    } else {
      throw malformed(`unexpected ${message.item}`);
    }
  }
  if (shape === null || filled !== first.length || (digest && secondDigest === null)) {
    throw malformed(`sent ${filled} of ${first ? first.length : '?'} output elements`);
  }
  return {
    server: server.name,
    shape,
    fractionalBits,
    first,
    second,
    secondDigest,
    firstDigest: digest ? hasher.digest() : undefined,
  };
}

module.exports = { MpcClient, PROTO_DIR, loadClientService, uploadRequests, seededRequests, flatten };
