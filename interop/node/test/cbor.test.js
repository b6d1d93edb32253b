/**
 * What the vectors do not show: decoders accept indefinite lengths (which cbor-x alone
 * refuses for strings), encoders use the shortest heads, and hostile nesting is handled
 * without recursion (spec section 5).
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Packet, PacketError, decodePacket, encodePacket } from '../src/packet.js';

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
