/**
 * The shared test vectors (crates/proto/tests/vectors, spec section 18), both ways.
 *
 * valid/: the payload decodes to the JSON rendering given, the JSON rendering encodes to
 * exactly the payload (its `canonical` form, when given), re-encoding each value as a hub
 * does yields that form, and an upstream payload gets the route given; cbor-x, as configured,
 * reads the payload as a Map with integer keys and writes it back identically. invalid/:
 * the hub's edge check refuses the payload with the error given.
 */

import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { MAX_NESTING, decodeValue, deterministic, encodeMap, encodeValue, splitMap } from '../src/cbor.js';
import { DEFAULT_MAX_PAYLOAD, checkUpstream } from '../src/hub-check.js';
import { PacketError, decodePacket, encodePacket, packetFromJson, packetToJson } from '../src/packet.js';
import { Topics } from '../src/topics.js';

const VECTORS = fileURLToPath(new URL('../../../crates/proto/tests/vectors/', import.meta.url));
const TOPICS = new Topics('mq');

function load(kind) {
  const files = readdirSync(VECTORS + kind).filter((f) => f.endsWith('.json')).sort();
  assert.ok(files.length > 0, `no vectors under ${VECTORS + kind}`);
  return files.map((f) => [f.replace(/\.json$/, ''), JSON.parse(readFileSync(`${VECTORS}${kind}/${f}`, 'utf8'))]);
}

const payload = (vector, field = 'cbor') => Uint8Array.from(Buffer.from(vector[field].replace(/\s+/g, ''), 'hex'));
const hex = (bytes) => Buffer.from(bytes).toString('hex');
/** The deterministic encoding: `canonical` when `cbor` is in another one. */
const canonical = (vector) => payload(vector, vector.canonical === undefined ? 'cbor' : 'canonical');

/** This client keeps unknown values as received; a hub forwards them re-encoded. */
function withDeterministicUnknowns(json) {
  if (json.unknown === undefined) return json;
  const unknown = Object.fromEntries(
    Object.entries(json.unknown).map(([k, v]) => [k, hex(deterministic(Uint8Array.from(Buffer.from(v, 'hex'))))]),
  );
  return { ...json, unknown };
}

describe('valid vectors', () => {
  for (const [name, vector] of load('valid')) {
    test(`${name}: decodes to its JSON`, () => {
      assert.deepEqual(packetToJson(decodePacket(canonical(vector))), vector.packet);
      assert.deepEqual(withDeterministicUnknowns(packetToJson(decodePacket(payload(vector)))), vector.packet);
    });

    test(`${name}: encodes to its bytes`, () => {
      assert.equal(hex(encodePacket(packetFromJson(vector.packet))), hex(canonical(vector)));
    });

    test(`${name}: re-encoding each value as a hub does gives its bytes`, () => {
      const entries = splitMap(payload(vector));
      const forwarded = encodeMap(new Map([...entries].map(([k, v]) => [k, deterministic(v, MAX_NESTING)])));
      assert.equal(hex(forwarded), hex(canonical(vector)));
    });

    test(`${name}: has its route upstream`, () => {
      const place = TOPICS.parse(vector.topic);
      assert.ok(place, vector.topic);
      if (place.kind !== 'upstream') {
        assert.equal(vector.route, undefined);
        return;
      }
      assert.equal(checkUpstream(TOPICS, vector.topic, payload(vector)).route, vector.route);
    });

    test(`${name}: cbor-x reads integer keys and writes the same bytes`, () => {
      const value = decodeValue(canonical(vector));
      assert.ok(value instanceof Map);
      assert.ok([...value.keys()].every((k) => Number.isInteger(k)), 'integer keys');
      if (vector.canonical === undefined) {
        assert.equal(hex(encodeValue(value)), hex(canonical(vector)));
      } else {
        // cbor-x writes every float as a double (the vectors in other encodings have one), so
        // only the packet round-trips; this client's packets carry no floats of their own.
        assert.deepEqual(withDeterministicUnknowns(packetToJson(decodePacket(encodeValue(value)))), vector.packet);
      }
    });
  }
});

describe('invalid vectors', () => {
  for (const [name, vector] of load('invalid')) {
    test(`${name}: refused with ${vector.error}`, () => {
      const maxPayload = vector['max-payload'] ?? DEFAULT_MAX_PAYLOAD;
      assert.throws(() => checkUpstream(TOPICS, vector.topic, payload(vector), maxPayload), (e) => {
        assert.ok(e instanceof PacketError, String(e));
        assert.equal(e.code, vector.error, e.detail);
        return true;
      });
    });
  }
});
