'use strict';
/**
 * The client: mutual-TLS channels to the three servers, upload, run, fetch,
 * the programs the servers offer, and the owner's calls: datasets, grants,
 * jobs, the audit trail.
 *
 * Mirrors the Python SDK (`mpc_client`). Everything secret happens here, on the
 * caller's machine: `upload` encodes in fixed point, splits with the OS CSPRNG
 * and sends each server only its pair; `fetch` collects the three pairs,
 * checks that both copies of every component agree and only then reconstructs.
 * Consent travels with the data (`Grant`, lib/grants.js); each server keeps its
 * own record of grants, jobs and audit entries, and the listings ask all three
 * and report where they disagree. Jobs name a program with its public
 * parameters (typed by the program's declaration, lib/params.js) and say which
 * outputs to keep on the servers as datasets (lib/jobs.js); job inputs may select
 * columns by name, and outputs of jobs that joined keyed tables come with their rows'
 * join tokens. Channels speak TLS 1.3 only and check each server's certificate
 * against its identity and the cluster's revocation list (lib/config.js).
 * The wire contract is `protos/mpc/v1/*.proto`, loaded at run time from the
 * repository (never copied).
 * @module client
 */
const crypto = require('node:crypto');
const path = require('node:path');
const tls = require('node:tls');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const {
  RevocationFile,
  certificateInfo,
  checkClientCertificate,
  readCluster,
  readFile,
  serverIdentityCheck,
  validateName,
} = require('./config');
const {
  ConfigError,
  InvalidArgumentError,
  MpcError,
  OutputIntegrityError,
  combineFailures,
  errorFromStatus,
} = require('./errors');
const { decode, encodeBounded, maxFractionalBits } = require('./fixed_point');
const {
  Grant,
  GRANT_ID_BYTES,
  compare,
  compareDatasets,
  compareRecords,
  datasetInfo,
  datasetRef,
  grantToProto,
  jobRecord,
  parseDatasetRef,
} = require('./grants');
const { Keep, Select, delivered, deliveredOutput, jobOutputs } = require('./jobs');
const { needsDeclaration, parametersToProto, programFromProto } = require('./params');
const { elementCount, ringFromProto } = require('./ring');
const { split, splitSeeded, shareForParty, reconstructChecked, reconstructByDigest } = require('./sharing');

/** `protos/` of the repository: ../../protos relative to this package. */
const PROTO_DIR = path.resolve(__dirname, '..', '..', '..', 'protos');
const DEFAULT_TIMEOUT_SECONDS = 60;
/**
 * At most 2 MiB of share bytes per message (receivers accept 4 MiB, gRPC's
 * default): in Z_2^64 131072 elements per component when both travel, 262144
 * when one does; in Z_2^128 65536 and 131072.
 */
const MESSAGE_BYTES = 2 << 20;
/** Outputs up to this many elements can come back inside the RunJob answer. */
const INLINE_OUTPUT_ELEMENTS = 1 << 16;
const UPLOAD_ID_BYTES = 16;
/** A keyed output's join token per row (`FetchOutputResponse.row_tokens`). */
const TOKEN_BYTES = 16;
/**
 * The oldest TLS version the client speaks. The servers refuse every call on an older
 * connection anyway (UNAUTHENTICATED); the client does not even offer one.
 */
const MIN_TLS_VERSION = 'TLSv1.3';
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
 * Elements per chunk message: 2 MiB of share bytes in all.
 * @param {import('./ring').Ring} ring
 * @param {number} components how many components travel in chunks: 1 or 2
 */
function chunkElements(ring, components) {
  return MESSAGE_BYTES / (ring.elementBytes * components);
}

/**
 * The UploadDataset messages for one server: header, then chunks of the
 * components that travel in full. `first`/`second` are null when that
 * component travels as a seed in the header (it is then empty in every chunk).
 * @param {import('./ring').Ring} ring
 * @param {object} header the UploadHeader for this server
 * @param {BigUint64Array | null} first
 * @param {BigUint64Array | null} second
 * @param {number} count number of elements
 */
function* uploadRequests(ring, header, first, second, count) {
  yield { header };
  const sent = (first ? 1 : 0) + (second ? 1 : 0);
  if (!sent) return;
  const step = chunkElements(ring, sent);
  for (let offset = 0; offset < count; offset += step) {
    const end = Math.min(offset + step, count);
    yield {
      chunk: {
        offset: String(offset), // offsets count elements
        first: first ? ring.toWire(first, offset, end) : Buffer.alloc(0),
        second: second ? ring.toWire(second, offset, end) : Buffer.alloc(0),
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
  const { ring } = s;
  const n = ring.size(s.x2);
  if (party === 0) {
    return uploadRequests(ring, { ...header, first_seed: s.seed0, second_seed: s.seed1 }, null, null, n);
  }
  if (party === 1) return uploadRequests(ring, { ...header, first_seed: s.seed1 }, null, s.x2, n);
  return uploadRequests(ring, { ...header, second_seed: s.seed0 }, s.x2, null, n);
}

/** A connection to the three servers of a cluster under one client identity. */
class MpcClient {
  /** The client's certificate, key and CA (PEM): private, so that no listing or log shows the key. */
  #credentials;

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
   * @throws {ConfigError} the revocation list the cluster file names is unusable, or lists our certificate
   */
  constructor(cluster, credentials, { timeout = DEFAULT_TIMEOUT_SECONDS, protoDir } = {}) {
    /** @type {string} this client's identity, from its certificate */
    this.identity = credentials.identity;
    this.cluster = cluster;
    /** @type {import('./ring').Ring} the cluster's ring, from the cluster file */
    this.ring = cluster.ring;
    this.timeout = timeout;
    /** @type {import('./grants').Listing | null} the programs, once asked (`programs`) */
    this.programListing = null;
    /** @type {RevocationFile | null} the cluster file's `revoked` list, re-read when it changes */
    this.revocation = cluster.revokedPath ? new RevocationFile(cluster.revokedPath) : null;
    if (this.revocation) {
      const own = certificateInfo(credentials.certPem);
      if (this.revocation.revokes(own)) {
        throw new ConfigError(
          `the client certificate (urn:mpc:client:${this.identity}, serial ${own.serial.toString(16)}) is on the ` +
            `revocation list ${cluster.revokedPath}: ask the CA operator for a new one`,
        );
      }
    }
    this.#credentials = credentials;
    this.ClientService = loadClientService(protoDir);
    this.servers = cluster.servers.map((endpoint) => {
      const server = {
        name: endpoint.identity,
        party: endpoint.party,
        address: endpoint.address,
        /** @type {import('./config').CertificateInfo | null} the certificate of the last handshake that passed */
        certificate: null,
        /** @type {(Error & {code: string}) | null} why the last refused handshake was refused */
        refusal: null,
        stub: null,
      };
      server.stub = this.openStub(server);
      return server;
    });
  }

  /**
   * A stub on a new channel to `server`: mutual TLS 1.3 only, connecting to the address but
   * verifying the certificate against the server's identity (its DNS SAN, by the target-name
   * override, and its urn:mpc:server:<identity> URI SAN) and the revocation list, at every
   * handshake. A fresh TLS context per channel: grpc-js shares connections only between
   * channels with the same one, so a new channel really handshakes again.
   * @param {{name: string, address: string, certificate: object | null, refusal: Error | null}} server
   */
  openStub(server) {
    const { caPem, keyPem, certPem } = this.#credentials;
    const context = tls.createSecureContext({ ca: caPem, key: keyPem, cert: certPem, minVersion: MIN_TLS_VERSION });
    const check = serverIdentityCheck(server.name, {
      revocation: this.revocation,
      address: server.address,
      onAccepted: (info) => {
        server.certificate = info;
        server.refusal = null;
      },
      onRefused: (error) => {
        server.refusal = error;
      },
    });
    const credentials = grpc.credentials.createFromSecureContext(context, { checkServerIdentity: check });
    return new this.ClientService(server.address, credentials, {
      ...CHANNEL_OPTIONS,
      'grpc.ssl_target_name_override': server.name,
    });
  }

  /**
   * Before any call: refuse, without sending anything, if a server's certificate (as its
   * last handshake presented it) is on the revocation list as of now, and drop that
   * server's channel, so that the next call handshakes (and checks) again. A list that
   * cannot be read fails closed.
   * @throws {MpcError} UNAUTHENTICATED naming every such server; ConfigError for an unusable list
   */
  checkRevoked() {
    if (!this.revocation) return;
    const list = this.revocation.current();
    const failures = new Map();
    for (const server of this.servers) {
      if (!server.certificate || !list.revokes(server.certificate)) continue;
      const { serial } = server.certificate;
      server.certificate = null;
      server.stub.close();
      server.stub = this.openStub(server);
      failures.set(
        server.name,
        new MpcError(
          `${server.name}: its certificate (serial ${serial.toString(16)}) has been revoked since it was checked: ` +
            `it is on the revocation list ${this.revocation.path}; nothing was sent`,
          { code: 'UNAUTHENTICATED', server: server.name },
        ),
      );
    }
    const error = combineFailures(failures);
    if (error) throw error;
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
    this.checkRevoked();
    const settled = await Promise.allSettled(this.servers.map((server) => call(server)));
    const failures = new Map();
    settled.forEach((result, i) => {
      if (result.status === 'rejected') {
        const server = this.servers[i];
        failures.set(server.name, handshakeError(server, result.reason) ?? errorFromStatus(server.name, result.reason, grpc.status));
      }
    });
    const error = combineFailures(failures);
    if (error) throw error;
    return settled.map((result) => /** @type {PromiseFulfilledResult<T>} */ (result).value);
  }

  /**
   * Secret-share `values` and upload one share pair to each server.
   * Values are checked (numbers, finite, within the fixed-point range, non-empty)
   * before anything is sent. They are encoded in the cluster's ring at
   * `fractionalBits` (default: the cluster file's `fractional_bits`); the header
   * states the ring, the scale and the magnitude bits of what was encoded (the
   * public bound the servers plan jobs with).
   *
   * `grants` says who may receive outputs of which programs from jobs that use
   * this dataset, and how (`Grant`, or plain `{receiver, program, ...}` specs):
   * `{receiver, program}` allows only jobs whose other inputs are this owner's
   * own datasets; `Grant.pinned(receiver, program, jobInputs)` one exact job
   * with pinned inputs (for example the model owner's weights at one version);
   * `Grant.readAccess` any inputs. Returns the dataset's reference with its
   * new `version` (which other owners pin in their grants) and the grants as
   * sent, each with its `grantId`. A grant that fixes parameters
   * (`parameters: {l2: 0.1}`) has them typed by the program's declaration, read
   * from the servers once (`programs`).
   * @param {string} name dataset name, unique per owner
   * @param {number | ArrayLike<any>} values a number, an array (nested for matrices) or a Float64Array
   * @param {object} [options]
   * @param {(Grant | object)[]} [options.grants] consent, see above
   * @param {boolean} [options.overwrite] replace an existing dataset of the same name
   * @param {boolean} [options.compress] send two components as 16-byte PRG seeds (default true)
   * @param {number[]} [options.shape] shape of the flat `values` (default: inferred)
   * @param {number} [options.fractionalBits] the dataset's scale, 0..bits-2 (default: the cluster's)
   * @param {number} [options.timeout] deadline in seconds
   * @returns {Promise<UploadResult>}
   * @throws {EncodingError} before sending, for bad values
   * @throws {InvalidArgumentError} before sending, for a bad grant
   * @throws {MpcError} a server refused; the message names every server and what it said
   */
  async upload(name, values, { grants = [], overwrite = false, compress = true, shape, fractionalBits, timeout } = {}) {
    validateName(name, 'dataset name', InvalidArgumentError);
    if (!Array.isArray(grants)) throw new InvalidArgumentError('grants is an array of grants');
    const grantList = grants.map((g) => Grant.from(g));
    const flattened = flatten(values);
    const dims = shape ?? flattened.shape;
    const count = flattened.flat.length;
    if (count === 0) throw new MpcError('cannot upload an empty array', { code: 'INVALID_ARGUMENT' });
    if (elementCount(dims) !== count) {
      throw new MpcError(`shape [${dims}] does not hold ${count} values`, { code: 'INVALID_ARGUMENT' });
    }
    const { ring } = this;
    const scale = fractionalBits ?? this.cluster.fractionalBits;
    const { elements, magnitudeBits } = encodeBounded(ring, flattened.flat, scale, { scalar: dims.length === 0 });
    const wireGrants = await this.wireGrants(grantList, this.identity, name, timeout);
    const header = {
      name,
      shape: dims.map(String),
      fractional_bits: scale,
      grants: wireGrants,
      // one random id, the same on all three servers (they check their copies under it)
      upload_id: crypto.randomBytes(UPLOAD_ID_BYTES),
      overwrite,
      ring: ring.protoName,
      magnitude_bits: magnitudeBits,
    };
    const options = this.callOptions(timeout);
    let streams;
    if (compress) {
      const s = splitSeeded(ring, elements);
      streams = this.servers.map((server) => seededRequests(header, s, server.party));
    } else {
      const components = split(ring, elements);
      streams = this.servers.map((server) => {
        const pair = shareForParty(components, server.party);
        return uploadRequests(ring, header, pair.first, pair.second, count);
      });
    }
    const responses = await this.fanOut((server) => sendStream(server.stub, streams[server.party], options));
    // Every server must have stored this upload: the version sent, all the elements.
    const version = header.upload_id.toString('hex');
    const wrong = responses
      .map((r, i) => [this.servers[i].name, Buffer.from(r.upload_id ?? []).toString('hex'), Number(r.element_count)])
      .filter(([, stored, elements]) => stored !== version || elements !== count);
    if (wrong.length) {
      const said = wrong.map(([server, stored, elements]) => `${server} stored version ${stored || '(none)'} of ${elements} elements`);
      throw new MpcError(`upload of ${this.identity}/${name}: sent version ${version} of ${count} elements, but ${said.join(', ')}`, {
        code: 'DATA_LOSS',
        server: wrong[0][0],
      });
    }
    return {
      ...datasetRef(this.identity, name, version),
      elementCount: count,
      fractionalBits: scale,
      magnitudeBits,
      grants: grantList,
    };
  }

  /**
   * Run `program` on the named inputs on all three servers; its outputs are kept for `receiver`.
   * @param {string} program e.g. "linear_regression.predict"
   * @param {Record<string, string | string[]>} inputs role -> "owner/name" (or a bare name of
   *   this client's), or a list of them, e.g. {features: ["bank-1/x", "bank-2/z"], weights: "w"};
   *   the order within a role matters (feature blocks are the columns in that order)
   * @param {object} [options]
   * @param {string} [options.receiver] who may fetch the outputs (default: this client)
   * @param {string} [options.jobId] default: random
   * @param {Record<string, import('./params').ParamValue>} [options.parameters] the program's
   *   public parameters, e.g. {l2: 0.1, iterations: 5} (`programs()` lists each program's). Each
   *   is sent in the field of the type the program declares (read from the servers once):
   *   `5` is an integer for an integer parameter and 5.0 for a number; a wrong type, an unknown
   *   name or a value out of range is refused before anything is sent; `{integer: 5}` and the
   *   like are sent as given (lib/params.js)
   * @param {Record<string, string | Keep | {dataset: string, grants?: object[], overwrite?: boolean}>} [options.keepAs]
   *   outputs to keep on the servers as new datasets of the receiver instead of delivering
   *   them, e.g. {weights: "model-w"} or {weights: new Keep("model-w", {grants: [...]})}: nobody
   *   sees them, later jobs use them under their grants (only the receiver may submit such a job)
   * @param {number} [options.outputFractionalBits] the outputs' scale (default: the program's
   *   natural scale, exact; lower means the servers truncate, which they refuse when it could
   *   fail with probability above 2^-40); keep outputs at the scale later jobs want
   * @param {number} [options.timeout] deadline in seconds
   * @returns {Promise<JobResult>}
   */
  async run(program, inputs, options = {}) {
    const { result } = await this.submit(program, inputs, options, { returnOutput: false });
    return result;
  }

  /**
   * Run a job for this client and reconstruct its (first) output. Outputs of up
   * to 65536 elements of single-output programs come back inside the RunJob
   * answers (saving the fetch); others are fetched. Either way the three shares
   * go through the same checked reveal, and the servers drop their copies unless
   * `keep` (the delivered output stays fetchable until it expires; to keep
   * outputs as datasets, `run` with `keepAs`).
   * @param {string} program
   * @param {Record<string, string | string[]>} inputs
   * @param {{jobId?: string, parameters?: Record<string, import('./params').ParamValue>, keep?: boolean,
   *   outputFractionalBits?: number, timeout?: number}} [options]
   * @returns {Promise<{job: JobResult, inline: boolean, name: string, shape: number[], fractionalBits: number,
   *   ring: import('./ring').Ring, values: Float64Array, keyed: boolean, rowTokens: string[] | null}>}
   *   a keyed output (never inline) with its row tokens, as `fetch` returns it
   */
  async runAndFetch(program, inputs, { keep = false, ...options } = {}) {
    if (options.keepAs !== undefined || options.receiver !== undefined) {
      throw new InvalidArgumentError('runAndFetch delivers to this client: no receiver or keepAs (use run)');
    }
    const { result, parts } = await this.submit(
      program,
      inputs,
      { ...options, receiver: this.identity },
      { returnOutput: true, release: !keep },
    );
    if (parts === null) {
      // Not returned inline (too large): fetch it like any other output.
      const output = await this.fetch(result, { timeout: options.timeout, release: !keep });
      return { job: result, inline: false, ...output };
    }
    return { job: result, inline: true, ...reveal(parts, false) };
  }

  /**
   * Send one RunJob to every server; the inline output parts if all three returned one.
   * @param {string} program
   * @param {Record<string, string | string[]>} inputs
   * @param {{receiver?: string, jobId?: string, parameters?: object, keepAs?: object,
   *   outputFractionalBits?: number, timeout?: number}} options
   * @param {{returnOutput: boolean, release?: boolean}} flags
   */
  async submit(
    program,
    inputs,
    { receiver, jobId, parameters, keepAs, outputFractionalBits, timeout },
    { returnOutput, release = false },
  ) {
    if (typeof program !== 'string' || !program) throw new InvalidArgumentError('a job names a program');
    const job = {
      job_id: jobId ? validateName(jobId, 'job id', InvalidArgumentError) : `job-${crypto.randomBytes(8).toString('hex')}`,
      program,
      inputs: this.jobInputs(inputs),
      receiver: validateName(receiver ?? this.identity, 'receiver', InvalidArgumentError),
    };
    if (outputFractionalBits !== undefined) {
      const limit = maxFractionalBits(this.ring);
      if (!Number.isInteger(outputFractionalBits) || outputFractionalBits < 0 || outputFractionalBits > limit) {
        throw new MpcError(`outputFractionalBits must be within 0..${limit} in ${this.ring.name}`, {
          code: 'INVALID_ARGUMENT',
        });
      }
      job.output_fractional_bits = outputFractionalBits;
    }
    const keeps = this.keepRequests(keepAs);
    // The declaration types the parameters: read it only when some value needs it.
    const declaration = needsDeclaration(parameters) ? await this.programInfo(program, { timeout }) : null;
    job.parameters = parametersToProto(program, parameters, declaration);
    job.keep = [];
    for (const [output, kept] of keeps) {
      job.keep.push({
        output,
        dataset: kept.dataset,
        grants: await this.wireGrants(kept.grants, job.receiver, kept.dataset, timeout),
        overwrite: kept.overwrite,
      });
    }
    const options = this.callOptions(timeout);
    const request = { job, return_output: returnOutput, release };
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
    const outputs = jobOutputs(this.serverNames(), responses, job.job_id);
    const [first] = outputs;
    const ringOf = (r) => (r.outputs?.length ? r.outputs[0] : r.output).ring;
    /** @type {JobResult} */
    const result = {
      jobId: job.job_id,
      receiver: job.receiver,
      submitter: this.identity,
      shape: first.shape,
      fractionalBits: first.fractionalBits,
      ring: ringFromProto(ringOf(responses[0]), `${this.servers[0].name}: the output`),
      magnitudeBits: first.magnitudeBits,
      truncationFailureLog2: first.truncationFailureLog2,
      outputs,
      stats,
    };
    // The servers return shares inline only to the receiver, only when the job delivers one
    // output, and only up to 65536 elements; otherwise output_share is absent (no error): fetch.
    if (!returnOutput || !responses.every((r) => r.output_share)) return { result, parts: null };
    const parts = responses.map((r, i) => {
      const infos = r.outputs?.length ? r.outputs : [r.output];
      const info = infos.find((o) => !o.kept_as) ?? infos[0]; // the one output the job delivers
      return inlinePart(this.servers[i].name, info, r.output_share);
    });
    return { result, parts };
  }

  /**
   * The outputs to keep, checked: output name -> Keep.
   * @param {Record<string, string | Keep | object> | undefined} keepAs
   * @returns {[string, Keep][]}
   */
  keepRequests(keepAs) {
    if (keepAs === undefined || keepAs === null) return [];
    if (typeof keepAs !== 'object' || Array.isArray(keepAs)) {
      throw new InvalidArgumentError('keepAs is an object of output name: dataset name (or Keep)');
    }
    return Object.entries(keepAs).map(([output, spec]) => [
      validateName(output, 'output name', InvalidArgumentError),
      Keep.from(spec),
    ]);
  }

  /**
   * The wire form of grants on dataset `owner/name`; grants that fix untyped parameters are
   * typed by their program's declaration.
   * @param {readonly Grant[]} grants
   * @param {string} owner
   * @param {string} name
   * @param {number | undefined} timeout
   */
  async wireGrants(grants, owner, name, timeout) {
    const wire = [];
    for (const grant of grants) {
      const declaration = needsDeclaration(grant.parameters) ? await this.programInfo(grant.program, { timeout }) : null;
      wire.push(grantToProto(grant, owner, name, declaration));
    }
    return wire;
  }

  /**
   * The JobInputs of an input mapping. A dataset is "owner/name", a bare name of
   * this client's, or a reference as `upload` returns; a version
   * ("owner/name@version") is ignored here, so that the mapping given to
   * `Grant.pinned` can be run as it is. `{dataset, columns}` (or a `Select`)
   * uses only the named columns of a matrix dataset, in that order, by the names
   * it was uploaded with (`JobInput.columns`; none named: all of them).
   * @param {Record<string, import('./jobs').InputSpec | import('./jobs').InputSpec[]>} inputs
   */
  jobInputs(inputs) {
    if (!inputs || typeof inputs !== 'object' || Array.isArray(inputs)) {
      throw new InvalidArgumentError('a job\'s inputs are an object of role: dataset(s)');
    }
    const items = [];
    for (const [role, spec] of Object.entries(inputs)) {
      for (const item of Array.isArray(spec) ? spec : [spec]) {
        const { dataset: ref, columns } = Select.of(item, role);
        let parsed;
        if (typeof ref === 'string') parsed = parseDatasetRef(ref, this.identity);
        else if (ref && typeof ref === 'object' && typeof ref.owner === 'string') parsed = datasetRef(ref.owner, ref.name);
        else throw new InvalidArgumentError(`role ${role}: datasets are named by strings or dataset references`);
        items.push({ role, dataset: { owner: parsed.owner, name: parsed.name }, columns: [...columns] });
      }
    }
    return items;
  }

  /**
   * Fetch one output's shares from the three servers, check them and reconstruct.
   * Only the job's receiver may do this: for anyone else the servers answer
   * NOT_FOUND, exactly as for an output that does not exist. Outputs are
   * keyed by (submitter, job id): `submitter` defaults to the submitter of a
   * JobResult, else to this client; name it when another identity submitted
   * the job for you.
   * @param {string | {jobId: string, submitter?: string, outputs?: import('./jobs').OutputDescription[]}} job
   *   a job id or the result of `run`
   * @param {{output?: string, submitter?: string, digest?: boolean, release?: boolean, timeout?: number}} [options]
   *   output: which output, by name (default: the job's first delivered one; with a JobResult an
   *   output it kept or does not have is refused here); digest: receive each server's second
   *   component as a SHA-256 digest only (half the traffic, the same check); release: the servers
   *   delete the output once sent
   * @returns {Promise<FetchedOutput>} values decoded in the ring and at the scale the output's
   *   OutputInfo states; for a keyed output (`keyed`, a job that joined keyed datasets) also
   *   `rowTokens`, the join token of every row in hex (row r belongs to the customer whose token
   *   is the r-th), which all three servers must have sent alike
   * @throws {OutputIntegrityError} two servers' copies of a component (or of the name, shape, ring,
   *   scale or row tokens) differ
   */
  async fetch(job, { output = '', submitter, digest = false, release = false, timeout } = {}) {
    const jobId = validateName(typeof job === 'string' ? job : job?.jobId, 'job id', InvalidArgumentError);
    const by = validateName(
      submitter || (typeof job === 'object' && job.submitter) || this.identity,
      'submitter',
      InvalidArgumentError,
    );
    if (output) validateName(output, 'output name', InvalidArgumentError);
    const outputs = typeof job === 'object' && Array.isArray(job.outputs) && job.outputs.length ? job : null;
    if (outputs && output) deliveredOutput(outputs, output);
    else if (outputs) output = delivered(outputs)[0];
    const options = this.callOptions(timeout);
    const request = { job_id: jobId, submitter: by, output, second_as_digest: digest, release };
    const parts = await this.fanOut((server) => fetchPart(server, request, digest, options));
    return reveal(parts, digest);
  }

  /**
   * Every output a job delivered, by name, each fetched and checked as by `fetch`.
   * @param {JobResult} job the result of `run`
   * @param {{digest?: boolean, release?: boolean, timeout?: number}} [options]
   * @returns {Promise<Record<string, FetchedOutput>>}
   */
  async fetchAll(job, options = {}) {
    if (!job || typeof job !== 'object' || !Array.isArray(job.outputs)) {
      throw new InvalidArgumentError('fetchAll takes the result of run (it names the outputs)');
    }
    const fetched = {};
    for (const name of delivered(job)) fetched[name] = await this.fetch(job, { ...options, output: name });
    return fetched;
  }

  /**
   * The programs the servers offer, each with its roles, parameters (type, default, range)
   * and outputs, from all three servers (GetServerInfo) and merged like the other listings:
   * a program as most servers list it, and every difference in `disagreements`. Read once
   * per client (parameters are typed with it); `refresh` asks again.
   * @param {{refresh?: boolean, timeout?: number}} [options]
   * @returns {Promise<import('./grants').Listing>} items: ProgramDescription (lib/params.js)
   */
  async programs({ refresh = false, timeout } = {}) {
    if (refresh || this.programListing === null) await this.serverInfo({ timeout });
    return /** @type {import('./grants').Listing} */ (this.programListing);
  }

  /**
   * The declaration of `program` as the servers list it, or null if they do not (asks again
   * once when the programs known so far do not include it: the servers may have been upgraded).
   * @param {string} program
   * @param {{timeout?: number}} [options]
   * @returns {Promise<import('./params').ProgramDescription | null>}
   */
  async programInfo(program, { timeout } = {}) {
    const known = this.programListing;
    const find = (listing) => listing.items.find((p) => p.name === program) ?? null;
    const found = known ? find(known) : null;
    if (found) return found;
    return find(await this.programs({ refresh: true, timeout }));
  }

  /**
   * This client's datasets, as the three servers hold them: each a DatasetInfo
   * (shape, version, ring, scale, bound, grants with their uses). Items are
   * listed as most servers report them; `disagreements` names every dataset
   * the servers do not agree on.
   * @param {{timeout?: number}} [options]
   * @returns {Promise<import('./grants').Listing>}
   */
  async listDatasets({ timeout } = {}) {
    const options = this.callOptions(timeout);
    const replies = await this.fanOut((server) => unary(server.stub, 'ListDatasets', {}, options));
    const lists = replies.map((reply) => reply.datasets.map((d) => datasetInfo(this.identity, d)));
    return compareDatasets(this.serverNames(), lists);
  }

  /**
   * Add `grant` to this client's dataset `name` on all three servers. A grant
   * that reached only some servers allows no job until it reaches all.
   * @param {string} name
   * @param {Grant | object} grant
   * @param {{timeout?: number}} [options]
   * @returns {Promise<Grant>} the grant as sent, with its grantId
   */
  async addGrant(name, grant, { timeout } = {}) {
    validateName(name, 'dataset name', InvalidArgumentError);
    const chosen = Grant.from(grant);
    const [wire] = await this.wireGrants([chosen], this.identity, name, timeout);
    const request = { name, grant: wire };
    const options = this.callOptions(timeout);
    await this.fanOut((server) => unary(server.stub, 'AddGrant', request, options));
    return chosen;
  }

  /**
   * Revoke a grant (or grant id, hex) of this client's dataset `name` on all three
   * servers: no later job may use it.
   * @param {string} name
   * @param {Grant | {grantId: string} | string} grant
   * @param {{timeout?: number}} [options]
   */
  async revokeGrant(name, grant, { timeout } = {}) {
    validateName(name, 'dataset name', InvalidArgumentError);
    const grantId = typeof grant === 'string' ? grant : grant?.grantId;
    if (typeof grantId !== 'string' || !/^[0-9a-fA-F]*$/.test(grantId) || grantId.length !== 2 * GRANT_ID_BYTES) {
      throw new InvalidArgumentError(`a grant id is ${GRANT_ID_BYTES} bytes in hex`);
    }
    const request = { name, grant_id: Buffer.from(grantId, 'hex') };
    const options = this.callOptions(timeout);
    await this.fanOut((server) => unary(server.stub, 'RevokeGrant', request, options));
  }

  /**
   * The jobs this client submitted or receives (each a JobRecord), newest last,
   * from all three servers.
   * @param {{limit?: number, timeout?: number}} [options] limit: the newest this many (0: up to 10000)
   * @returns {Promise<import('./grants').Listing>}
   */
  async listJobs({ limit = 0, timeout } = {}) {
    const request = { limit: checkLimit(limit) };
    const options = this.callOptions(timeout);
    const replies = await this.fanOut((server) => unary(server.stub, 'ListJobs', request, options));
    return compareRecords(this.serverNames(), replies.map((reply) => reply.jobs.map(jobRecord)));
  }

  /**
   * Every job that read this client's datasets (`name`: one of them), newest
   * last, from all three servers: submitter, receiver, program, every input
   * with the version read and the grant that allowed it. `disagreements`
   * names any job a server recorded differently or not at all: each server
   * keeps its own append-only trail.
   * @param {string} [name] one of this client's datasets ('' all of them)
   * @param {{limit?: number, timeout?: number}} [options]
   * @returns {Promise<import('./grants').Listing>}
   */
  async auditTrail(name = '', { limit = 0, timeout } = {}) {
    if (name) validateName(name, 'dataset name', InvalidArgumentError);
    const request = { name, limit: checkLimit(limit) };
    const options = this.callOptions(timeout);
    const replies = await this.fanOut((server) => unary(server.stub, 'GetAuditTrail', request, options));
    return compareRecords(this.serverNames(), replies.map((reply) => reply.records.map(jobRecord)));
  }

  /** The servers' identities, in party order. */
  serverNames() {
    return this.servers.map((server) => server.name);
  }

  /**
   * Ask each server about itself and its peer links: the raw GetServerInfo
   * answers, in party order. `transport` holds this client's own traffic with
   * the server only (`client_bytes_received`, `client_bytes_sent`); peer
   * traffic is for operators (the servers' metrics endpoint), or per job in
   * `JobResult.stats`; `programs` the programs the server offers (as on the
   * wire; `programs()` decodes and merges them). Every server must compute in
   * the ring of the cluster file (FAILED_PRECONDITION otherwise).
   * @param {{timeout?: number}} [options]
   */
  async serverInfo({ timeout } = {}) {
    const options = this.callOptions(timeout);
    const infos = await this.fanOut((server) => unary(server.stub, 'GetServerInfo', {}, options));
    const wrong = infos
      .map((info, i) => [this.servers[i].name, info.ring])
      .filter(([, ring]) => ring !== this.ring.protoName);
    if (wrong.length) {
      const said = wrong.map(([name, ring]) => `${name} computes in ${ring}`).join(', ');
      throw new ConfigError(`the cluster file names ${this.ring.protoName}, but ${said}`);
    }
    this.programListing = compare(
      this.serverNames(),
      infos.map((info) => (info.programs ?? []).map(programFromProto)),
      (p) => p.name,
      (p) => p,
      (p) => `program ${p.name}`,
    );
    return infos;
  }
}

/** What a TLS stack says when the other side offers no common protocol version. */
const PROTOCOL_VERSION_ERROR = /protocol[ _]version|unsupported[ _]protocol|wrong[ _]version[ _]number/i;

/**
 * A failed call that failed in the TLS handshake for a reason of ours, as the Python SDK
 * reports it: a server certificate on the revocation list (UNAUTHENTICATED), an unusable
 * list (ConfigError), a server without TLS 1.3 (UNAUTHENTICATED); null for anything else.
 * grpc-js reports a refused handshake as UNAVAILABLE with the reason in the details.
 * @param {{name: string, address: string, refusal: (Error & {code: string}) | null}} server
 * @param {any} error the grpc-js error
 * @returns {MpcError | null}
 */
function handshakeError(server, error) {
  if (error instanceof MpcError || error?.code !== grpc.status.UNAVAILABLE) return null;
  const details = String(error.details ?? error.message ?? '');
  const { refusal } = server;
  if (refusal && details.includes(refusal.message)) {
    if (refusal.code === 'ERR_MPC_REVOKED') {
      return new MpcError(`${server.name}: ${refusal.message}`, { code: 'UNAUTHENTICATED', server: server.name });
    }
    const config = new ConfigError(`${server.name}: ${refusal.message}`);
    config.server = server.name;
    return config;
  }
  if (PROTOCOL_VERSION_ERROR.test(details)) {
    return new MpcError(`${server.name}: the server at ${server.address} does not offer TLS 1.3 (${details})`, {
      code: 'UNAUTHENTICATED',
      server: server.name,
    });
  }
  return null;
}

/**
 * @param {unknown} limit
 */
function checkLimit(limit) {
  if (!Number.isInteger(limit) || limit < 0 || limit > 0xffffffff) {
    throw new InvalidArgumentError('limit must be a non-negative integer (0: up to 10000)');
  }
  return limit;
}

/**
 * @typedef {object} UploadResult what `upload` stored: the dataset's reference with its version
 * @property {string} owner
 * @property {string} name
 * @property {string} version the hex upload id all three servers stored
 * @property {string} pinned `owner/name@version`: what other owners pin in their grants
 * @property {number} elementCount
 * @property {number} fractionalBits
 * @property {number} magnitudeBits
 * @property {Grant[]} grants the grants given, each with its grantId
 */

/**
 * @typedef {object} JobResult
 * @property {string} jobId
 * @property {string} receiver
 * @property {string} submitter who submitted the job (this client): outputs are keyed by it
 * @property {number[]} shape
 * @property {number} fractionalBits the output's scale: decode with it
 * @property {import('./ring').Ring} ring the output's ring: decode in it
 * @property {number} magnitudeBits the servers' bound: |encoded output| <= 2^magnitudeBits
 * @property {number | null} truncationFailureLog2 log2 of the truncation failure bound, null if none
 * @property {import('./jobs').OutputDescription[]} outputs every output, in the program's order (the
 *   fields above are the first's), each delivered (fetch it by name) or kept as a dataset (`keptAs`)
 * @property {object} stats per server
 */

/**
 * @typedef {object} FetchedOutput one output, checked and decoded
 * @property {string} name the output's name, as the servers stated it
 * @property {number[]} shape
 * @property {number} fractionalBits
 * @property {import('./ring').Ring} ring
 * @property {number} magnitudeBits
 * @property {Float64Array} values
 * @property {boolean} keyed whether the rows carry join tokens (the job joined keyed datasets)
 * @property {string[] | null} rowTokens a keyed output's join token per row (16 bytes in hex),
 *   in row order, as all three servers sent them; null when not keyed
 */

/**
 * @typedef {object} OutputPart one server's share of an output, as it arrived
 * @property {string} server
 * @property {string} [name] the output's name in the server's header
 * @property {number[]} shape
 * @property {number} fractionalBits
 * @property {import('./ring').Ring} ring
 * @property {number} magnitudeBits
 * @property {BigUint64Array} first
 * @property {BigUint64Array} second empty in digest mode
 * @property {Buffer | null} secondDigest
 * @property {Buffer | undefined} firstDigest
 * @property {boolean} keyed the header's `keyed`
 * @property {Buffer} rowTokens a keyed output's row tokens as the server sent them (empty if not keyed)
 */

/**
 * The checked reveal: the three headers agree (name, shape, scale, ring, keyed), both
 * copies of every component agree, a keyed output's three servers sent the same row
 * tokens, then decode in the stated ring and scale.
 * @param {OutputPart[]} parts in party order
 * @param {boolean} digest whether the second components came as digests
 * @returns {FetchedOutput}
 */
function reveal(parts, digest) {
  for (let i = 0; i < 3; i++) {
    const [a, b] = [parts[i], parts[(i + 1) % 3]];
    if (
      a.shape.join() !== b.shape.join() ||
      a.fractionalBits !== b.fractionalBits ||
      a.ring !== b.ring ||
      (a.name ?? '') !== (b.name ?? '')
    ) {
      throw new OutputIntegrityError([a.server, b.server], 'output names, shapes, rings or scales');
    }
    if (Boolean(a.keyed) !== Boolean(b.keyed)) {
      throw new OutputIntegrityError([a.server, b.server], 'answers on whether the output is keyed');
    }
  }
  const keyed = Boolean(parts[0].keyed);
  if (keyed) {
    for (let i = 0; i < 3; i++) {
      const [a, b] = [parts[i], parts[(i + 1) % 3]];
      if (!a.rowTokens.equals(b.rowTokens)) throw new OutputIntegrityError([a.server, b.server], 'row tokens');
    }
  }
  const { shape, fractionalBits, ring, magnitudeBits } = parts[0];
  const names = parts.map((p) => p.server);
  const secret = digest ? reconstructByDigest(ring, parts) : reconstructChecked(ring, parts, names);
  const name = parts[0].name ?? '';
  const rowTokens = keyed ? splitTokens(parts[0].rowTokens) : null;
  return { name, shape, fractionalBits, ring, magnitudeBits, values: decode(ring, secret, fractionalBits), keyed, rowTokens };
}

/**
 * Row tokens, 16 bytes each, as hex strings.
 * @param {Buffer} bytes
 */
function splitTokens(bytes) {
  const tokens = [];
  for (let offset = 0; offset < bytes.length; offset += TOKEN_BYTES) {
    tokens.push(bytes.subarray(offset, offset + TOKEN_BYTES).toString('hex'));
  }
  return tokens;
}

/**
 * The number of rows of an output of `shape` (a scalar is one row), as the row tokens count them.
 * @param {number[]} shape
 */
function rowCount(shape) {
  return shape.length ? shape[0] : 1;
}

/**
 * A server's whole share returned inside its RunJob answer (`output_share`, both components).
 * @param {string} server
 * @param {object} info the OutputInfo
 * @param {{first: Buffer, second: Buffer}} chunk
 * @returns {OutputPart}
 */
function inlinePart(server, info, chunk) {
  const shape = info.shape.map(Number);
  const ring = ringFromProto(info.ring, `${server}: the output`);
  const count = elementCount(shape);
  if (count > INLINE_OUTPUT_ELEMENTS) {
    throw new MpcError(`${server}: an inline output of ${count} elements`, { code: 'INVALID_ARGUMENT' });
  }
  if (info.keyed) {
    // a keyed output's row tokens come only with FetchOutput: servers never return one inline
    throw new MpcError(`${server}: an inline output that is keyed (its row tokens are missing)`, { code: 'INVALID_ARGUMENT' });
  }
  return {
    server,
    name: info.name ?? '',
    shape,
    fractionalBits: info.fractional_bits,
    ring,
    magnitudeBits: info.magnitude_bits,
    first: ring.fromWire(chunk.first, count),
    second: ring.fromWire(chunk.second, count),
    secondDigest: null,
    firstDigest: undefined,
    keyed: false,
    rowTokens: Buffer.alloc(0),
  };
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
 * @param {{job_id: string, submitter: string, output: string, second_as_digest: boolean, release: boolean}} request
 * @param {boolean} digest
 * @param {object} options call options (deadline)
 */
async function fetchPart(server, request, digest, options) {
  const call = server.stub.FetchOutput(request, options);
  const malformed = (what) => {
    call.cancel();
    return new MpcError(`malformed output stream: ${what}`, { code: 'INVALID_ARGUMENT' });
  };
  let shape = null;
  let name = '';
  let fractionalBits = 0;
  let magnitudeBits = 0;
  let ring;
  let first;
  let second;
  let filled = 0;
  let secondDigest = null;
  let keyed = false;
  let tokenBytes = 0;
  const tokens = [];
  const hasher = crypto.createHash('sha256');
  for await (const message of call) {
    if (shape === null) {
      if (message.item !== 'header') throw malformed('the first message is not the header');
      shape = message.header.shape.map(Number);
      name = message.header.name ?? '';
      if (request.output && name && name !== request.output) {
        throw malformed(`asked for output ${request.output}, got ${name}`);
      }
      fractionalBits = message.header.fractional_bits;
      magnitudeBits = message.header.magnitude_bits;
      try {
        ring = ringFromProto(message.header.ring, 'the output');
      } catch (error) {
        throw malformed(error.message);
      }
      first = ring.alloc(elementCount(shape));
      second = ring.alloc(digest ? 0 : elementCount(shape));
      keyed = Boolean(message.header.keyed);
    } else if (message.item === 'row_tokens') {
      // a keyed output's tokens: right after the header, before any chunk, 16 bytes per row
      const expected = keyed ? TOKEN_BYTES * rowCount(shape) : 0;
      if (!keyed || filled > 0 || secondDigest !== null || tokenBytes + message.row_tokens.length > expected) {
        throw malformed(keyed ? 'row tokens out of place or too many' : 'row tokens of an output that is not keyed');
      }
      tokens.push(Buffer.from(message.row_tokens));
      tokenBytes += message.row_tokens.length;
    } else if (message.item === 'second_digest' && digest && secondDigest === null) {
      secondDigest = message.second_digest;
    } else if (message.item === 'chunk' && secondDigest === null) {
      const chunk = message.chunk;
      const size = chunk.first.length / ring.elementBytes;
      const total = ring.size(first);
      if (Number(chunk.offset) !== filled || !Number.isInteger(size) || filled + size > total || size === 0) {
        throw malformed(`chunk at element ${chunk.offset}, expected ${filled}`);
      }
      // chunk.first/second are Buffers at arbitrary offsets: fromWire copies, never views in place
      ring.copyInto(first, ring.fromWire(chunk.first, size), filled);
      if (digest) hasher.update(chunk.first);
      else ring.copyInto(second, ring.fromWire(chunk.second, size), filled);
      filled += size;
    } else {
      throw malformed(`unexpected ${message.item}`);
    }
  }
  if (shape === null || filled !== ring.size(first) || (digest && secondDigest === null)) {
    throw malformed(`sent ${filled} of ${first ? ring.size(first) : '?'} output elements`);
  }
  if (keyed && tokenBytes !== TOKEN_BYTES * rowCount(shape)) {
    throw malformed(`sent ${tokenBytes / TOKEN_BYTES} row tokens for ${rowCount(shape)} rows of a keyed output`);
  }
  return {
    server: server.name,
    name,
    shape,
    fractionalBits,
    ring,
    magnitudeBits,
    first,
    second,
    secondDigest,
    firstDigest: digest ? hasher.digest() : undefined,
    keyed,
    rowTokens: Buffer.concat(tokens),
  };
}

module.exports = {
  MpcClient,
  PROTO_DIR,
  MESSAGE_BYTES,
  INLINE_OUTPUT_ELEMENTS,
  TOKEN_BYTES,
  MIN_TLS_VERSION,
  loadClientService,
  chunkElements,
  uploadRequests,
  seededRequests,
  flatten,
  reveal,
};
