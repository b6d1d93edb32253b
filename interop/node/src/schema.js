/**
 * Field schemas: what a key of a packet map may hold, and how it is decoded, encoded and
 * shown in the JSON rendering (spec sections 2, 5 and 7).
 *
 * A schema is an array of fields `{ key, name, kind, required }`; each kind checks the encoded
 * value (its CBOR major type, its range or size, its pattern) and converts it to a JavaScript
 * value. Integers are Numbers when below 2^53, BigInts above.
 */

import * as cbor from './cbor.js';

export const USER_ID = /^[a-z0-9][a-z0-9._-]{0,31}$/;
export const DEVICE_ID = /^[a-z0-9][a-z0-9_-]{0,15}$/;
/**
 * An address outside mqchat in its canonical form (section 2): `sip:user@host[:port]`,
 * lower-case host, no port 5060, no parameters, at most 128 bytes.
 */
export const SIP_ADDRESS = /^(?=.{7,128}$)sip:[A-Za-z0-9\-_.!~*'()%&=+$,]+@(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:.]+\])(?::(?!5060$)(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?$/;
export const CONV = new RegExp(`^(?:#?[a-z0-9][a-z0-9._-]{0,31}|${SIP_ADDRESS.source.slice(1, -1)})$`);

export const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const MAX_UINT = (1n << 64n) - 1n;

/** A field has the wrong type or a value out of range, or a required field is missing. */
export class InvalidError extends Error {}

function expectMajor(raw, major, what) {
  if (cbor.majorType(raw) !== major) throw new InvalidError(`expected ${what}`);
}

function decodeOrInvalid(raw) {
  try {
    return cbor.decodeValue(raw);
  } catch (e) {
    throw new InvalidError(e.message);
  }
}

/** Kinds convert values; `toJson` and `fromJson` are the identity unless a kind says otherwise. */
export class Kind {
  toJson(value) {
    return value;
  }

  fromJson(value) {
    return value;
  }
}

/** An unsigned integer (major type 0) in [low, high] (BigInt bounds). */
export class UInt extends Kind {
  constructor(low = 0n, high = MAX_UINT) {
    super();
    this.low = low;
    this.high = high;
  }

  check(value) {
    const integer = typeof value === 'bigint' || Number.isInteger(value);
    if (!integer || BigInt(value) < this.low || BigInt(value) > this.high) {
      throw new InvalidError(`expected an integer in ${this.low}..${this.high}, got ${String(value)}`);
    }
    return BigInt(value) <= MAX_SAFE ? Number(value) : BigInt(value);
  }

  decode(raw) {
    expectMajor(raw, cbor.MAJOR.UINT, 'an unsigned integer');
    return this.check(decodeOrInvalid(raw));
  }

  encode(value) {
    return cbor.encodeValue(this.check(value));
  }
}

/** A UTF-8 text string of minBytes to maxBytes (if given), matching `pattern` if given. */
export class Text extends Kind {
  constructor({ maxBytes = null, pattern = null, minBytes = 0 } = {}) {
    super();
    this.maxBytes = maxBytes;
    this.pattern = pattern;
    this.minBytes = minBytes;
  }

  check(value) {
    if (typeof value !== 'string') throw new InvalidError(`expected text, got ${String(value)}`);
    const size = Buffer.byteLength(value, 'utf8');
    if (size < this.minBytes || (this.maxBytes !== null && size > this.maxBytes)) {
      throw new InvalidError(`text of ${size} bytes, not ${this.minBytes}..${this.maxBytes}`);
    }
    if (this.pattern && !this.pattern.test(value)) throw new InvalidError(`${JSON.stringify(value)} does not match ${this.pattern}`);
    return value;
  }

  decode(raw) {
    expectMajor(raw, cbor.MAJOR.TEXT, 'a text string');
    return this.check(decodeOrInvalid(raw));
  }

  encode(value) {
    return cbor.encodeValue(this.check(value));
  }
}

export class Bool extends Kind {
  decode(raw) {
    if (raw.length !== 1 || (raw[0] !== 0xf4 && raw[0] !== 0xf5)) throw new InvalidError('expected a boolean');
    return raw[0] === 0xf5;
  }

  encode(value) {
    if (typeof value !== 'boolean') throw new InvalidError(`expected a boolean, got ${String(value)}`);
    return cbor.encodeValue(value);
  }
}

/** An enumeration: an unsigned integer on the wire, its name everywhere else. */
export class Choice extends Kind {
  constructor(names) {
    super();
    this.names = names;
    this.index = new UInt(0n, BigInt(names.length - 1));
  }

  decode(raw) {
    return this.names[this.index.decode(raw)];
  }

  encode(value) {
    const index = this.names.indexOf(value);
    if (index < 0) throw new InvalidError(`${JSON.stringify(value)} is not one of ${this.names.join(', ')}`);
    return cbor.encodeValue(index);
  }
}

/** An array of values of one kind, at most maxItems of them if given. */
export class ListOf extends Kind {
  constructor(item, maxItems = null) {
    super();
    this.item = item;
    this.maxItems = maxItems;
  }

  checkLength(count) {
    if (this.maxItems !== null && count > this.maxItems) throw new InvalidError(`more than ${this.maxItems} items`);
  }

  decode(raw) {
    expectMajor(raw, cbor.MAJOR.ARRAY, 'an array');
    const items = cbor.splitArray(raw);
    this.checkLength(items.length);
    return items.map((item) => this.item.decode(item));
  }

  encode(value) {
    if (!Array.isArray(value)) throw new InvalidError(`expected an array, got ${String(value)}`);
    this.checkLength(value.length);
    return cbor.encodeArray(value.map((item) => this.item.encode(item)));
  }

  toJson(value) {
    return value.map((item) => this.item.toJson(item));
  }

  fromJson(value) {
    return value.map((item) => this.item.fromJson(item));
  }
}

export const SEQ = new UInt(1n, MAX_SAFE);
export const COUNT = new UInt(0n, MAX_SAFE);
export const TIME = new UInt();

export function field(key, name, kind, required = false) {
  return { key, name, kind, required };
}

export function checkRequired(values, schema) {
  for (const f of schema) {
    if (f.required && !(f.name in values)) throw new InvalidError(`field ${f.key} (${f.name}): is required`);
  }
}

/** Decodes the keys a schema knows (by name) and keeps the others as raw bytes. */
export function decodeFields(entries, schema) {
  const byKey = new Map(schema.map((f) => [f.key, f]));
  const values = {};
  const unknown = new Map();
  for (const [key, raw] of entries) {
    const f = byKey.get(key);
    if (!f) {
      unknown.set(key, raw);
      continue;
    }
    try {
      values[f.name] = f.kind.decode(raw);
    } catch (e) {
      if (!(e instanceof InvalidError || e instanceof cbor.MalformedError)) throw e;
      throw new InvalidError(`field ${key} (${f.name}): ${e.message}`);
    }
  }
  checkRequired(values, schema);
  return [values, unknown];
}

/** Encodes named values to a Map key -> bytes; a name the schema does not know is an error. */
export function encodeFields(values, schema) {
  const byName = new Map(schema.map((f) => [f.name, f]));
  const out = new Map();
  for (const [name, value] of Object.entries(values)) {
    const f = byName.get(name);
    if (!f) throw new InvalidError(`no field named ${JSON.stringify(name)}`);
    out.set(f.key, f.kind.encode(value));
  }
  checkRequired(values, schema);
  return out;
}

export function fieldsToJson(values, schema) {
  const out = {};
  for (const f of schema) if (f.name in values) out[f.name] = f.kind.toJson(values[f.name]);
  return out;
}

export function fieldsFromJson(obj, schema) {
  const out = {};
  for (const f of schema) if (f.name in obj) out[f.name] = f.kind.fromJson(obj[f.name]);
  return out;
}

const toHex = (bytes) => Buffer.from(bytes).toString('hex');

export function unknownToJson(unknown) {
  const keys = [...unknown.keys()].sort((a, b) => a - b);
  return Object.fromEntries(keys.map((k) => [String(k), toHex(unknown.get(k))]));
}

export function unknownFromJson(obj = {}) {
  return new Map(Object.entries(obj).map(([k, hex]) => [Number(k), Uint8Array.from(Buffer.from(hex, 'hex'))]));
}

/** Adds kept keys to encoded known ones; a kept key may not shadow a known one. */
export function mergeUnknown(entries, unknown) {
  const clash = [...unknown.keys()].filter((k) => entries.has(k));
  if (clash.length > 0) throw new InvalidError(`unknown keys ${clash} are known fields`);
  return new Map([...entries, ...unknown]);
}

/** Refuses JSON names that are neither in the schema nor in `extra`. */
export function checkNames(obj, schema, extra) {
  const allowed = new Set([...schema.map((f) => f.name), ...extra]);
  const stray = Object.keys(obj).filter((name) => !allowed.has(name));
  if (stray.length > 0) throw new InvalidError(`unknown names ${stray}`);
}

/** A map that is not a packet (a sync-result conversation, a group member). */
export class Record {
  constructor(values = {}, unknown = new Map()) {
    this.values = values;
    this.unknown = unknown;
  }
}

/** A nested map with its own schema. */
export class RecordKind extends Kind {
  constructor(schema) {
    super();
    this.schema = schema;
  }

  decode(raw) {
    expectMajor(raw, cbor.MAJOR.MAP, 'a map');
    let entries;
    try {
      entries = cbor.splitMap(raw);
    } catch (e) {
      throw new InvalidError(e.message);
    }
    return new Record(...decodeFields(entries, this.schema));
  }

  encode(value) {
    return cbor.encodeMap(mergeUnknown(encodeFields(value.values, this.schema), value.unknown));
  }

  toJson(value) {
    const out = fieldsToJson(value.values, this.schema);
    if (value.unknown.size > 0) out.unknown = unknownToJson(value.unknown);
    return out;
  }

  fromJson(value) {
    checkNames(value, this.schema, ['unknown']);
    return new Record(fieldsFromJson(value, this.schema), unknownFromJson(value.unknown));
  }
}
