/** Client message ids (spec section 6): layout, text form, monotonic generation. */

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { EPOCH_MS, IdGenerator, idFromText, idToText } from '../src/ids.js';

const clock = (...times) => () => Number(EPOCH_MS) + times.shift();

test('the spec example', () => {
  assert.equal(idToText(360428286627176252n), '0a03zkqvpmqsw');
  assert.equal(idFromText('0a03zkqvpmqsw'), 360428286627176252n);
});

test('readers accept upper case, o for 0, i and l for 1', () => {
  for (const text of ['0A03ZKQVPMQSW', 'oa03zkqvpmqsw', 'OA03ZKQVPMQSW']) assert.equal(idFromText(text), 360428286627176252n);
  assert.equal(idFromText('000000000000i'), 1n);
  assert.equal(idFromText('000000000000l'), 1n);
});

test('readers refuse what is not an id', () => {
  for (const text of ['0a03zkqvpmqs', '0a03zkqvpmqsww', '0a03zkqvpmqsu', '8000000000000', '0000000000000']) {
    assert.throws(() => idFromText(text), RangeError, text);
  }
});

test('layout is milliseconds then 22 random bits', () => {
  const ids = new IdGenerator({ clockMs: clock(1000), randomLowBits: () => 5 });
  assert.equal(ids.next(), (1000n << 22n) | 5n);
});

test('ids strictly increase when the clock stands still or goes back', () => {
  const ids = new IdGenerator({ clockMs: clock(2000, 2000, 1000), randomLowBits: () => 7 });
  const first = ids.next();
  assert.deepEqual([ids.next(), ids.next()], [first + 1n, first + 2n]);
});

test('a generator continues after the last persisted id', () => {
  const last = (5000n << 22n) | 99n;
  const ids = new IdGenerator({ last, clockMs: clock(10), randomLowBits: () => 0 });
  assert.equal(ids.next(), last + 1n);
});
