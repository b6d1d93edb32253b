/**
 * Client message ids (spec section 6): 63-bit, time-ordered, with a 13-character text form.
 *
 *     bit 63: 0 | bits 62-22: milliseconds since 2024-01-01T00:00:00Z | bits 21-0: random start
 *
 * Ids are BigInts: they do not fit a Number exactly.
 */

import { randomInt } from 'node:crypto';

/** 2024-01-01T00:00:00Z in milliseconds since the Unix epoch. */
export const EPOCH_MS = 1704067200000n;
export const MAX_ID = (1n << 63n) - 1n;
const RANDOM_BITS = 22n;
const TEXT_LENGTH = 13;
const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';
const READ_ALIASES = { i: '1', l: '1', o: '0' };

function checkId(value, what) {
  if (typeof value !== 'bigint' || value < 1n || value > MAX_ID) throw new RangeError(`${what} is not a message id`);
  return value;
}

/** The text form: Crockford base32, most significant first, zero-padded, lower case. */
export function idToText(value) {
  checkId(value, value);
  let text = '';
  for (let i = 0; i < TEXT_LENGTH; i++, value >>= 5n) text = ALPHABET[Number(value & 31n)] + text;
  return text;
}

/** Reads a text form, accepting upper case and `i`, `l` for 1 and `o` for 0. */
export function idFromText(text) {
  if (typeof text !== 'string' || text.length !== TEXT_LENGTH) {
    throw new RangeError(`${JSON.stringify(text)}: a message id has ${TEXT_LENGTH} characters`);
  }
  let value = 0n;
  for (const char of text.toLowerCase()) {
    const digit = ALPHABET.indexOf(READ_ALIASES[char] ?? char);
    if (digit < 0) throw new RangeError(`${JSON.stringify(text)}: ${JSON.stringify(char)} is not a base32 digit`);
    value = (value << 5n) | BigInt(digit);
  }
  return checkId(value, JSON.stringify(text));
}

/**
 * Makes strictly increasing ids for one device. `last` is the last id this device made
 * (persisted by the application, if it can), so ids are never reused across restarts even
 * if the clock went back.
 */
export class IdGenerator {
  constructor({ last = 0n, clockMs = Date.now, randomLowBits = () => randomInt(2 ** 22) } = {}) {
    this.last = last;
    this.clockMs = clockMs;
    this.randomLowBits = randomLowBits;
  }

  next() {
    const candidate = ((BigInt(this.clockMs()) - EPOCH_MS) << RANDOM_BITS) | BigInt(this.randomLowBits());
    this.last = candidate > this.last ? candidate : this.last + 1n;
    if (this.last > MAX_ID) throw new RangeError('message ids exhausted');
    return this.last;
  }
}
