/**
 * The CBOR layer of mqchat payloads (spec section 5).
 *
 * A payload is one CBOR map with unsigned integer keys. This module splits such a map into
 * its keys and the exact bytes of each value, so that unknown values are kept and forwarded
 * byte for byte, and assembles maps in the deterministic encoding the spec requires
 * (definite lengths, shortest heads, ascending keys). Values are decoded and encoded with
 * cbor-x, configured so that maps decode to `Map`s with integer keys and integers keep their
 * exact value and shortest form; the structure around them is walked here, because cbor-x
 * neither exposes item boundaries nor rejects duplicate keys.
 */

import { Decoder, Encoder } from 'cbor-x';

export const MAJOR = { UINT: 0, NINT: 1, BYTES: 2, TEXT: 3, ARRAY: 4, MAP: 5, TAG: 6, SIMPLE: 7 };
const INDEFINITE = 31;
const BREAK = 0xff;
const MAX_KEY = 2 ** 32 - 1;
const TWO_POW_32 = 2 ** 32;

/** The bytes are not one well-formed CBOR item of the shape a payload needs. */
export class MalformedError extends Error {}

// Maps as Maps (integer keys stay integers), no cbor-x record extension, plain byte strings.
const decoder = new Decoder({ mapsAsObjects: false, useRecords: false });
const encoder = new Encoder({
  mapsAsObjects: false,
  useRecords: false,
  variableMapSize: true,
  tagUint8Array: false,
});

/** A uint argument as a Number when it is exact, else a BigInt. */
function exact(value) {
  return typeof value === 'bigint' && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
}

/**
 * Reads the head of the item at `pos`: [major type, argument, position after the head].
 * The argument is null for an indefinite length (or a break, major type 7).
 */
export function readHead(buf, pos) {
  if (pos >= buf.length) throw new MalformedError('unexpected end of data');
  const major = buf[pos] >> 5;
  const info = buf[pos] & 0x1f;
  pos += 1;
  if (info < 24) return [major, info, pos];
  if (info <= 27) {
    const size = 1 << (info - 24);
    if (pos + size > buf.length) throw new MalformedError('unexpected end of data');
    let value = 0n;
    for (let i = 0; i < size; i++) value = (value << 8n) | BigInt(buf[pos + i]);
    return [major, exact(value), pos + size];
  }
  if (info === INDEFINITE && [MAJOR.BYTES, MAJOR.TEXT, MAJOR.ARRAY, MAJOR.MAP, MAJOR.SIMPLE].includes(major)) {
    return [major, null, pos];
  }
  throw new MalformedError(`invalid additional information ${info} for major type ${major}`);
}

function skipBytes(buf, pos, length) {
  if (typeof length === 'bigint' || pos + length > buf.length) throw new MalformedError('unexpected end of data');
  return pos + length;
}

/** The definite chunks of an indefinite-length string at `pos` (after its head), and its end. */
function stringChunks(buf, pos, major) {
  const chunks = [];
  for (;;) {
    const [chunkMajor, length, start] = readHead(buf, pos);
    if (chunkMajor === MAJOR.SIMPLE && length === null) return [chunks, start];
    if (chunkMajor !== major || length === null) throw new MalformedError('bad chunk in an indefinite-length string');
    pos = skipBytes(buf, start, length);
    chunks.push(buf.subarray(pos - length, pos));
  }
}

/**
 * Where the well-formed item starting at `pos` ends. Iterative, so hostile nesting cannot
 * exhaust the stack: `open` holds, for each container being read, how many items it still
 * needs (null: indefinite, until a break).
 */
export function itemEnd(buf, pos) {
  const open = [];
  for (;;) {
    const [major, arg, next] = readHead(buf, pos);
    pos = next;
    if (major === MAJOR.SIMPLE && arg === null) {
      if (open.length === 0 || open.at(-1) !== null) throw new MalformedError('break outside an indefinite-length container');
      open.pop();
    } else if (major === MAJOR.BYTES || major === MAJOR.TEXT) {
      pos = arg === null ? stringChunks(buf, pos, major)[1] : skipBytes(buf, pos, arg);
    } else if (major === MAJOR.ARRAY || major === MAJOR.MAP) {
      if (typeof arg === 'bigint') throw new MalformedError('unexpected end of data');
      const count = arg === null ? null : arg * (major === MAJOR.MAP ? 2 : 1);
      if (count !== 0) {
        open.push(count);
        continue;
      }
    } else if (major === MAJOR.TAG) {
      continue; // the tagged item follows and completes this one
    }
    // One item is complete: count it in the containers it closes.
    while (open.length > 0 && open.at(-1) !== null) {
      open[open.length - 1] -= 1;
      if (open.at(-1) > 0) break;
      open.pop();
    }
    if (open.length === 0) return pos;
  }
}

/** The items of a definite or indefinite container whose head ends at `pos`. */
function containerItems(buf, pos, count, eachItem) {
  let read = 0;
  while (count === null ? buf[pos] !== BREAK : read < count) {
    pos = eachItem(pos);
    read += 1;
  }
}

/**
 * Splits a payload into a Map {key: the bytes of its value}, in payload order. Rejects what
 * section 5 tells decoders to reject, except a missing key 0 (the caller's concern): not one
 * well-formed item, trailing bytes, not a map, a key that is not an unsigned integer below
 * 2^32, the same key twice.
 */
export function splitMap(buf) {
  const end = itemEnd(buf, 0);
  if (end !== buf.length) throw new MalformedError(`${buf.length - end} trailing bytes`);
  const [major, count, start] = readHead(buf, 0);
  if (major !== MAJOR.MAP) throw new MalformedError('the payload is not a map');
  const entries = new Map();
  containerItems(buf, start, count, (pos) => {
    const [keyMajor, key, valueStart] = readHead(buf, pos);
    if (keyMajor !== MAJOR.UINT || typeof key !== 'number' || key > MAX_KEY) {
      throw new MalformedError('a key that is not an unsigned integer below 2^32');
    }
    if (entries.has(key)) throw new MalformedError(`key ${key} twice`);
    const valueEnd = itemEnd(buf, valueStart);
    entries.set(key, buf.subarray(valueStart, valueEnd));
    return valueEnd;
  });
  return entries;
}

/** Splits an encoded array (already checked well-formed) into the bytes of its items. */
export function splitArray(raw) {
  const [major, count, start] = readHead(raw, 0);
  if (major !== MAJOR.ARRAY) throw new Error('not an array');
  const items = [];
  containerItems(raw, start, count, (pos) => {
    const end = itemEnd(raw, pos);
    items.push(raw.subarray(pos, end));
    return end;
  });
  return items;
}

export function majorType(raw) {
  return raw[0] >> 5;
}

/** The shortest head for a major type and a Number argument. */
export function encodeHead(major, arg) {
  if (arg < 24) return Uint8Array.of((major << 5) | arg);
  for (const [info, size] of [[24, 1], [25, 2], [26, 4], [27, 8]]) {
    if (BigInt(arg) < 1n << BigInt(8 * size)) {
      const out = new Uint8Array(1 + size);
      out[0] = (major << 5) | info;
      let value = BigInt(arg);
      for (let i = size; i >= 1; i--, value >>= 8n) out[i] = Number(value & 0xffn);
      return out;
    }
  }
  throw new RangeError(`${arg} does not fit 64 bits`);
}

export function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let pos = 0;
  for (const part of parts) {
    out.set(part, pos);
    pos += part.length;
  }
  return out;
}

/** A map of already encoded values (a Map key -> bytes), keys ascending, definite length. */
export function encodeMap(entries) {
  const keys = [...entries.keys()].sort((a, b) => a - b);
  return concat([encodeHead(MAJOR.MAP, keys.length), ...keys.flatMap((k) => [encodeHead(MAJOR.UINT, k), entries.get(k)])]);
}

/** An array of already encoded items, definite length. */
export function encodeArray(items) {
  return concat([encodeHead(MAJOR.ARRAY, items.length), ...items]);
}

/**
 * Decodes one encoded value with cbor-x: integers as Numbers when exact (BigInt otherwise),
 * maps as Maps. cbor-x refuses indefinite-length strings, which the spec makes every decoder
 * accept, so their chunks are decoded here.
 */
export function decodeValue(raw) {
  const [major, length, start] = readHead(raw, 0);
  if ((major === MAJOR.TEXT || major === MAJOR.BYTES) && length === null) {
    const chunks = stringChunks(raw, start, major)[0];
    if (major === MAJOR.BYTES) return concat(chunks);
    return new TextDecoder('utf-8', { fatal: true }).decode(concat(chunks));
  }
  try {
    return exact(decoder.decode(raw));
  } catch (e) {
    throw new MalformedError(e.message);
  }
}

/**
 * Encodes a value with cbor-x in its shortest form. cbor-x writes Numbers of 2^32 and more as
 * floats and BigInts always in 8 bytes, so integers are passed as Numbers below 2^32 and as
 * BigInts from there on.
 */
export function encodeValue(value) {
  return encoder.encode(wireInts(value));
}

function wireInts(value) {
  if (typeof value === 'bigint') return value < TWO_POW_32 ? Number(value) : value;
  if (typeof value === 'number' && Number.isInteger(value) && value >= TWO_POW_32) return BigInt(value);
  if (Array.isArray(value)) return value.map(wireInts);
  if (value instanceof Map) return new Map([...value].map(([k, v]) => [wireInts(k), wireInts(v)]));
  return value;
}

/** Levels a packet sent to the hub may nest, its map being level 1 (section 5). */
export const MAX_NESTING = 16;
/** Levels a decoder accepts: the hub's results wrap stored packets up to 3 levels deeper. */
export const MAX_NESTING_DECODED = 32;

/** The half precision bits of a Number that has them exactly (NaN aside), else null. */
function halfBits(value) {
  const sign = value < 0 || Object.is(value, -0) ? 0x8000 : 0;
  const abs = Math.abs(value);
  if (abs === 0) return sign;
  if (abs === Infinity) return sign | 0x7c00;
  if (abs < 2 ** -14) {
    const mantissa = abs / 2 ** -24; // subnormal: in units of 2^-24
    return Number.isInteger(mantissa) ? sign | mantissa : null;
  }
  let exponent = Math.floor(Math.log2(abs));
  while (2 ** exponent > abs) exponent -= 1;
  while (2 ** (exponent + 1) <= abs) exponent += 1;
  const mantissa = (abs / 2 ** exponent - 1) * 1024;
  return exponent <= 15 && Number.isInteger(mantissa) ? sign | ((exponent + 15) << 10) | mantissa : null;
}

/** A float in the shortest of half, single and double precision that keeps it; NaN as f97e00. */
function encodeFloat(value) {
  if (Number.isNaN(value)) return Uint8Array.of(0xf9, 0x7e, 0x00);
  const half = halfBits(value);
  if (half !== null) return Uint8Array.of(0xf9, half >> 8, half & 0xff);
  const view = new DataView(new ArrayBuffer(9));
  if (Object.is(Math.fround(value), value)) {
    view.setUint8(0, 0xfa);
    view.setFloat32(1, value);
    return new Uint8Array(view.buffer, 0, 5);
  }
  view.setUint8(0, 0xfb);
  view.setFloat64(1, value);
  return new Uint8Array(view.buffer);
}

/** A simple value or float (major type 7) whose head starts at `start`, in its deterministic form. */
function simple(buf, start, arg) {
  const info = buf[start] & 0x1f;
  if (info < 24) return Uint8Array.of(0xe0 | info);
  if (info === 24) {
    if (arg < 32) throw new MalformedError('a simple value below 32 in two bytes');
    return Uint8Array.of(0xf8, arg);
  }
  const view = new DataView(buf.buffer, buf.byteOffset + start + 1, 1 << (info - 24));
  if (info === 25) {
    const bits = view.getUint16(0);
    return (bits & 0x7c00) === 0x7c00 && (bits & 0x3ff) !== 0 ? encodeFloat(NaN) : Uint8Array.of(0xf9, bits >> 8, bits & 0xff);
  }
  return encodeFloat(info === 26 ? view.getFloat32(0) : view.getFloat64(0));
}

/** A container's deterministic encoding, once all its items are read. */
function close([major, , tag, items]) {
  if (major === MAJOR.ARRAY) return concat([encodeHead(MAJOR.ARRAY, items.length), ...items]);
  if (major === MAJOR.TAG) return concat([encodeHead(MAJOR.TAG, tag), items[0]]);
  if (items.length % 2 !== 0) throw new MalformedError('a map ends after a key');
  const entries = [];
  for (let i = 0; i < items.length; i += 2) entries.push([items[i], items[i + 1]]);
  entries.sort((a, b) => Buffer.compare(a[0], b[0]));
  if (entries.some((entry, i) => i > 0 && Buffer.compare(entries[i - 1][0], entry[0]) === 0)) {
    throw new MalformedError('a map with the same key twice');
  }
  return concat([encodeHead(MAJOR.MAP, entries.length), ...entries.flat()]);
}

/**
 * Re-encodes one item in the deterministic encoding of section 5 (RFC 8949 4.2.1), as a hub
 * forwards it. `raw` is a value inside containers `level` deep (1: a value of a packet's map).
 * Throws MalformedError if it is not exactly one well-formed item, nests past `maxNesting`,
 * or has a map with the same key twice. Iterative: `open` holds, for each container being
 * read, [major type, items still needed (null: until a break), tag, items so far].
 */
export function deterministic(raw, maxNesting = MAX_NESTING_DECODED, level = 1) {
  const open = [];
  let pos = 0;
  for (;;) {
    const start = pos;
    const [major, arg, next] = readHead(raw, pos);
    pos = next;
    if (major === MAJOR.TAG || ((major === MAJOR.ARRAY || major === MAJOR.MAP) && arg !== 0)) {
      if (level + open.length + 1 > maxNesting) throw new MalformedError(`nests deeper than ${maxNesting} levels`);
      if (typeof arg === 'bigint' && major !== MAJOR.TAG) throw new MalformedError('unexpected end of data');
      const needed = major === MAJOR.TAG ? 1 : arg === null ? null : arg * (major === MAJOR.MAP ? 2 : 1);
      open.push([major, needed, arg, []]);
      continue;
    }
    let item;
    if (major === MAJOR.SIMPLE && arg === null) {
      if (open.length === 0 || open.at(-1)[1] !== null) throw new MalformedError('break outside an indefinite-length container');
      item = close(open.pop());
    } else if (major === MAJOR.BYTES || major === MAJOR.TEXT) {
      let chunks;
      if (arg === null) {
        [chunks, pos] = stringChunks(raw, pos, major);
      } else {
        pos = skipBytes(raw, pos, arg);
        chunks = [raw.subarray(pos - arg, pos)];
      }
      if (major === MAJOR.TEXT) {
        for (const chunk of chunks) {
          try {
            new TextDecoder('utf-8', { fatal: true }).decode(chunk);
          } catch {
            throw new MalformedError('text that is not UTF-8');
          }
        }
      }
      const content = concat(chunks);
      item = concat([encodeHead(major, content.length), content]);
    } else if (major === MAJOR.SIMPLE) {
      item = simple(raw, start, arg);
    } else {
      item = encodeHead(major, arg); // integers, and empty arrays and maps
    }
    // One item is complete: add it to its container, closing those it completes.
    for (;;) {
      if (open.length === 0) {
        if (pos !== raw.length) throw new MalformedError('trailing bytes after the item');
        return item;
      }
      const container = open.at(-1);
      container[3].push(item);
      if (container[1] === null) break;
      container[1] -= 1;
      if (container[1] > 0) break;
      item = close(open.pop());
    }
  }
}
