/**
 * What the vectors do not show: decoders accept indefinite lengths (which cbor-x alone
 * refuses for strings), encoders use the shortest heads, hostile nesting is handled
 * without recursion, and values are rewritten in the deterministic encoding as a hub
 * forwards them (spec section 5).
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { MalformedError, deterministic } from '../src/cbor.js';
import { checkUpstream } from '../src/hub-check.js';
import { Packet, PacketError, decodePacket, encodePacket } from '../src/packet.js';
import { Topics } from '../src/topics.js';

const ID = '1b05007f9df76a5f3c';
const bytes = (hex) => Uint8Array.from(Buffer.from(hex.replace(/\s+/g, ''), 'hex'));
const hex = (b) => Buffer.from(b).toString('hex');

test('indefinite map and text are accepted', () => {
  // {_ 0: 1, 1: id, 2: "bob", 8: (_ "H", "i")}
  const p = decodePacket(bytes(`bf 0001 01${ID} 0263626f62 08 7f 6148 6169 ff ff`));
  assert.deepEqual([p.type, p.conv, p.body], [1, 'bob', { text: 'Hi' }]);
});

test('indefinite array is accepted', () => {
  const p = decodePacket(bytes(`a5 0001 01${ID} 0263626f62 08624869 0a 9f 656361726f6c ff`));
  assert.deepEqual(p.body.mentions, ['carol']);
});

test('a duplicate key in an indefinite map is malformed', () => {
  assert.throws(() => decodePacket(bytes('bf 0001 086148 086148 ff')), (e) => e instanceof PacketError && e.code === 'malformed');
});

test('text heads are shortest', () => {
  for (const [size, head] of [[23, '77'], [24, '7818'], [255, '78ff'], [256, '790100']]) {
    const text = 'é'.repeat(Math.floor(size / 2)) + 'x'.repeat(size % 2); // two bytes per é
    const encoded = hex(encodePacket(new Packet(1, { id: 1n, conv: 'bob', body: { text } })));
    assert.ok(encoded.includes(`08${head}`), `${size} bytes: ${encoded.slice(0, 40)}`);
  }
});

test('integers from 2^32 on take 9 bytes, below 2^32 their shortest form', () => {
  const p = new Packet(3, { conv: 'bob', ts: 2 ** 32, body: { 'up-to': 2 ** 32 - 1 } });
  assert.equal(hex(encodePacket(p)), 'a4 0003 0263626f62 041b0000000100000000 081affffffff'.replace(/ /g, ''));
});

test('deep nesting in an unknown key is kept without recursion', () => {
  const nested = new Uint8Array(50001).fill(0x81);
  nested[50000] = 0x00;
  const payload = new Uint8Array([...bytes(`a5 0001 01${ID} 0263626f62 08624869 1863`), ...nested]);
  const p = decodePacket(payload);
  assert.deepEqual(p.body, { text: 'Hi' });
  assert.equal(hex(p.unknown.get(99)), hex(nested));
  assert.equal(hex(encodePacket(p)), hex(payload));
});

test('values are rewritten in the deterministic encoding, as a hub forwards them', () => {
  for (const [item, expected] of [
    ['83 01 02 03', '83 01 02 03'],
    ['18 17', '17'],
    ['1b 0000000000000001', '01'],
    ['5f 41 01 42 0203 ff', '43 010203'],
    ['7f 61 48 61 69 ff', '62 4869'],
    ['9f 01 9f ff ff', '82 01 80'],
    ['bf 61 61 00 20 00 18 18 00 ff', 'a3 1818 00 20 00 6161 00'],
    ['d8 01 00', 'c1 00'],
    ['fb 3ff8000000000000', 'f9 3e00'],
    ['fb 40f86a0000000000', 'fa 47c35000'],
    ['fb 3ff199999999999a', 'fb 3ff199999999999a'],
    ['fa 7f800000', 'f9 7c00'],
    ['fb 8000000000000000', 'f9 8000'],
    ['fa 33800000', 'f9 0001'],
    ['fa 477fe000', 'f9 7bff'],
    ['fb 7ff8000000000001', 'f9 7e00'],
    ['f8 20', 'f8 20'],
  ]) {
    assert.equal(hex(deterministic(bytes(item))), expected.replace(/ /g, ''), item);
  }
});

test('values the hub refuses', () => {
  for (const item of ['a2 01 00 18 01 00', 'bf 01 ff', '7f 41 48 ff', '62 c328', 'f8 14', '81 ff', '01 00', '81 81 81 81 00', 'c1 c1 c1 c1 00']) {
    assert.throws(() => deterministic(bytes(item), 4), MalformedError, item);
  }
});

test('the hub refuses hostile nesting without recursion', () => {
  const payload = new Uint8Array([...bytes(`a5 0001 01${ID} 0263626f62 08624869 1863`), ...new Uint8Array(50000).fill(0x81), 0x00]);
  assert.throws(
    () => checkUpstream(new Topics('mq'), 'mq/up/alice/phone', payload),
    (e) => e instanceof PacketError && e.code === 'malformed',
  );
});
