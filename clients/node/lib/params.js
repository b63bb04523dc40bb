'use strict';
/**
 * Public parameters of jobs and grants, and the programs the servers list.
 *
 * Mirrors `mpc_client/_catalog.py` (param_to_proto, param_from_proto) and
 * `mpc_client/_fetch.py` (the programs of GetServerInfo) of the Python SDK.
 *
 * On the wire a parameter is a `JobParameter`: its name and one of `number`
 * (a double), `integer` (an int64) or `flag` (a bool), the type the program
 * declares (`ParameterInfo.type`, listed by GetServerInfo). Python tells an
 * integer from a float by its type; a JavaScript number is a double either
 * way, so this client types a parameter by the program's declaration:
 *
 * - `5` for an `integer` parameter goes in `integer`, for a `number` parameter
 *   in `number` (5.0); `0.5` for an `integer` parameter, `true` for a number,
 *   an unknown name, a value out of the declared range or a missing required
 *   parameter is refused here, before anything is sent, in the servers' words;
 * - a BigInt is an integer (for values beyond 2^53);
 * - `{ number: x }`, `{ integer: n }` or `{ flag: b }` is sent in that field
 *   as given, without consulting the program's declaration (the servers alone
 *   check it);
 * - for a program the servers do not list, booleans are flags, integral
 *   numbers (and BigInts) integers and other numbers numbers (the servers
 *   accept an integer for a number parameter).
 *
 * `MpcClient` reads the declarations from GetServerInfo once per client and
 * keeps them (`MpcClient.programs`).
 * @module params
 */
const { validateName } = require('./config');
const { InvalidArgumentError } = require('./errors');

/** The three parameter types, as `ParameterInfo.type` names them (and the JobParameter fields). */
const ParameterType = Object.freeze({ NUMBER: 'number', INTEGER: 'integer', FLAG: 'flag' });
const TYPES = Object.values(ParameterType);
const TYPE_FROM_PROTO = {
  PARAMETER_TYPE_NUMBER: ParameterType.NUMBER,
  PARAMETER_TYPE_INTEGER: ParameterType.INTEGER,
  PARAMETER_TYPE_FLAG: ParameterType.FLAG,
};
const ARTICLE = { number: 'a number', integer: 'an integer', flag: 'a flag' };
/** A job takes at most this many parameters (mpc_server/service/programs/params.py). */
const MAX_PARAMETERS = 32;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const SAFE_MIN = BigInt(Number.MIN_SAFE_INTEGER);
const SAFE_MAX = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * @typedef {number | bigint | boolean | {number: number} | {integer: number | bigint} | {flag: boolean}} ParamValue
 *   a parameter's value: typed by the program's declaration, or explicitly by its field
 */

/**
 * @typedef {object} ParameterDescription one public parameter of a program
 * @property {string} name
 * @property {'number' | 'integer' | 'flag' | string} type the JobParameter field it travels in
 * @property {string} summary
 * @property {number | bigint | boolean | null} default null: the job must give one
 * @property {boolean} required
 * @property {number | null} minimum inclusive (null: none)
 * @property {number | null} maximum inclusive (null: none)
 */

/**
 * @typedef {object} ProgramDescription a program the servers offer (`ProgramInfo`)
 * @property {string} name e.g. "linear_regression.predict": what grants and jobs name
 * @property {string} summary
 * @property {{name: string, minCount: number, maxCount: number}[]} roles
 * @property {ParameterDescription[]} parameters
 * @property {string[]} outputs output names in the program's order; the first is the default
 */

/** How a value is shown in a message (as the servers show client input: quoted, cut short). */
function shown(value) {
  const text = typeof value === 'bigint' ? `${value}` : typeof value === 'string' ? `'${value}'` : JSON.stringify(value);
  const limit = 64;
  return text === undefined ? String(value) : text.length <= limit ? text : `${text.slice(0, limit - 5)}...`;
}

/** Python's `format(x, "g")`, near enough for messages. */
function g(x) {
  return String(Number(x.toPrecision(6)));
}

/**
 * `{field: value}` when `value` is an explicitly typed parameter value, else null.
 * @param {unknown} value
 * @returns {{type: string, value: unknown} | null}
 */
function explicitType(value) {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return null;
  const keys = Object.keys(value);
  if (keys.length !== 1 || !TYPES.includes(keys[0])) return null;
  return { type: keys[0], value: value[keys[0]] };
}

/**
 * The type a value stands for without a declaration: flag, integer (integral or BigInt), number.
 * @param {unknown} value
 */
function typeOf(value) {
  if (typeof value === 'boolean') return ParameterType.FLAG;
  if (typeof value === 'bigint' || Number.isSafeInteger(value)) return ParameterType.INTEGER;
  return ParameterType.NUMBER;
}

/**
 * Whether `value` is a value a parameter can take at all (before its type is known).
 * @param {unknown} value
 */
function isParamValue(value) {
  const typed = explicitType(value);
  const v = typed ? typed.value : value;
  return typeof v === 'boolean' || typeof v === 'bigint' || typeof v === 'number';
}

/**
 * The JobParameter value field of `value` for a parameter declared as `spec`, checked.
 * @param {{name: string, type: string, minimum?: number | null, maximum?: number | null}} spec
 * @param {unknown} value
 * @param {string} program
 * @returns {{number: number} | {integer: string} | {flag: boolean}}
 */
function checkParameter(spec, value, program) {
  const where = `parameter ${spec.name} of ${program}`;
  if (!TYPES.includes(spec.type)) {
    throw new InvalidArgumentError(`${where} has a type this client does not know (${spec.type})`);
  }
  if (spec.type === ParameterType.FLAG) {
    if (typeof value !== 'boolean') throw new InvalidArgumentError(`${where} is a flag, got ${shown(value)}`);
    return { flag: value };
  }
  if (typeof value !== 'number' && typeof value !== 'bigint') {
    throw new InvalidArgumentError(`${where} is ${ARTICLE[spec.type]}, got ${shown(value)}`);
  }
  if (typeof value === 'number' && !Number.isFinite(value)) throw new InvalidArgumentError(`${where} must be finite`);
  if (spec.type === ParameterType.INTEGER) {
    if (typeof value === 'number' && !Number.isInteger(value)) {
      throw new InvalidArgumentError(`${where} is an integer, got ${shown(value)}`);
    }
    if (typeof value === 'number' && !Number.isSafeInteger(value)) {
      throw new InvalidArgumentError(`${where}: ${shown(value)} is beyond 2^53 as a number; give it as a BigInt`);
    }
    if (typeof value === 'bigint' && (value < INT64_MIN || value > INT64_MAX)) {
      throw new InvalidArgumentError(`${where} must be a 64-bit integer`);
    }
  }
  const numeric = Number(value);
  if (spec.minimum !== undefined && spec.minimum !== null && numeric < spec.minimum) {
    throw new InvalidArgumentError(`${where} must be at least ${g(spec.minimum)}`);
  }
  if (spec.maximum !== undefined && spec.maximum !== null && numeric > spec.maximum) {
    throw new InvalidArgumentError(`${where} must be at most ${g(spec.maximum)}`);
  }
  return spec.type === ParameterType.INTEGER ? { integer: String(value) } : { number: numeric };
}

/**
 * The wire form (`JobParameter`s, sorted by name) of a job's or a grant's parameters.
 * @param {string} program the program they are for (messages name it)
 * @param {Record<string, ParamValue> | null | undefined} parameters name -> value
 * @param {ProgramDescription | null} description the program's declaration (null: not listed)
 * @param {{complete?: boolean}} [options] complete: these are all of a job's parameters
 *   (required ones must be there); a grant fixes only some
 */
function parametersToProto(program, parameters, description, { complete = true } = {}) {
  if (parameters === undefined || parameters === null) parameters = {};
  if (typeof parameters !== 'object' || Array.isArray(parameters)) {
    throw new InvalidArgumentError('parameters are an object of name: value');
  }
  const names = Object.keys(parameters).sort();
  if (names.length > MAX_PARAMETERS) throw new InvalidArgumentError(`a job takes at most ${MAX_PARAMETERS} parameters`);
  const declared = new Map((description?.parameters ?? []).map((p) => [p.name, p]));
  const wire = names.map((name) => {
    validateName(name, 'parameter name', InvalidArgumentError);
    const typed = explicitType(parameters[name]);
    const value = typed ? typed.value : parameters[name];
    let spec;
    if (typed) spec = { name, type: typed.type };
    else if (description) {
      spec = declared.get(name);
      if (!spec) {
        const known = [...declared.keys()].join(', ') || 'none';
        throw new InvalidArgumentError(`program ${program} has no parameter ${shown(name)} (parameters: ${known})`);
      }
    } else spec = { name, type: typeOf(value) };
    return { name, ...checkParameter(spec, value, program) };
  });
  if (description && complete) {
    for (const p of description.parameters) {
      if (p.required && !names.includes(p.name)) {
        throw new InvalidArgumentError(`program ${program} needs the parameter ${p.name}`);
      }
    }
  }
  return wire;
}

/**
 * Whether any value needs the program's declaration to be typed (is not explicitly typed).
 * @param {Record<string, ParamValue> | null | undefined} parameters
 */
function needsDeclaration(parameters) {
  return Object.values(parameters ?? {}).some((value) => explicitType(value) === null);
}

/**
 * A parameter's value from the wire: a number, a flag, or an integer (a number, or a BigInt beyond 2^53).
 * @param {any} message a `JobParameter` as proto-loader decodes it
 * @returns {number | bigint | boolean}
 */
function paramValueFromProto(message) {
  if (message.value === 'flag') return Boolean(message.flag);
  if (message.value === 'integer') {
    const big = BigInt(message.integer);
    return big >= SAFE_MIN && big <= SAFE_MAX ? Number(big) : big;
  }
  if (message.value === 'number') return message.number;
  return 0;
}

/**
 * Parameters from the wire, by name (keys sorted).
 * @param {any[]} messages
 * @returns {Record<string, number | bigint | boolean>}
 */
function parametersFromProto(messages) {
  const pairs = (messages ?? []).map((m) => [m.name, paramValueFromProto(m)]);
  pairs.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return Object.fromEntries(pairs);
}

/**
 * A program of a GetServerInfo answer.
 * @param {any} message an `mpc.v1.ProgramInfo`
 * @returns {ProgramDescription}
 */
function programFromProto(message) {
  return {
    name: message.name,
    summary: message.summary,
    roles: (message.roles ?? []).map((r) => ({ name: r.name, minCount: r.min_count, maxCount: r.max_count })),
    parameters: (message.parameters ?? []).map((p) => ({
      name: p.name,
      type: TYPE_FROM_PROTO[p.type] ?? p.type,
      summary: p.summary,
      default: p.default ? paramValueFromProto(p.default) : null,
      required: !p.default,
      minimum: p._minimum === 'minimum' ? p.minimum : null,
      maximum: p._maximum === 'maximum' ? p.maximum : null,
    })),
    outputs: [...(message.outputs ?? [])],
  };
}

/**
 * One line about a program, for people: `name(role, role[0..1]; param=default) -> outputs: summary`.
 * @param {ProgramDescription} program
 */
function describeProgram(program) {
  const roles = program.roles
    .map((r) => (r.minCount === 1 && r.maxCount === 1 ? r.name : `${r.name}[${r.minCount}..${r.maxCount}]`))
    .join(', ');
  const params = program.parameters.map((p) => `${p.name}: ${p.type} = ${p.required ? '(required)' : String(p.default)}`);
  const signature = params.length ? `${roles}; ${params.join(', ')}` : roles;
  return `${program.name}(${signature}) -> ${program.outputs.join(', ')}: ${program.summary}`;
}

/**
 * `JSON.stringify` that writes BigInts (large integer parameters) as decimal strings.
 * @param {unknown} value
 * @param {number} [indent]
 */
function toJson(value, indent) {
  return JSON.stringify(value, (key, v) => (typeof v === 'bigint' ? v.toString() : v), indent);
}

module.exports = {
  ParameterType,
  MAX_PARAMETERS,
  parametersToProto,
  parametersFromProto,
  paramValueFromProto,
  needsDeclaration,
  isParamValue,
  programFromProto,
  describeProgram,
  toJson,
};
