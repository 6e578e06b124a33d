// The MessagePack codec: values round-trip, and any bytes either decode or throw an Error (a bad
// frame from the network never hangs or crashes the client). Against the Go server, the
// msgpack cases of client.test.js.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { encode, decode } from '../src/msgpack.js';

/** A small seeded PRNG, so a failure names its case. */
function rng(seed) {
  let x = seed >>> 0 || 1;
  return () => ((x ^= x << 13), (x ^= x >>> 17), (x ^= x << 5), (x >>> 0) / 2 ** 32);
}

function randomValue(r, depth = 0) {
  const pick = Math.floor(r() * (depth > 3 ? 6 : 8));
  switch (pick) {
    case 0: return null;
    case 1: return r() < 0.5;
    case 2: return Math.floor((r() - 0.5) * 2 ** (r() * 53));
    case 3: return (r() - 0.5) * 1e6;
    case 4: return Array.from({ length: Math.floor(r() * 40) }, () => String.fromCodePoint(Math.floor(r() * 0x2fff))).join('');
    case 5: return Uint8Array.from({ length: Math.floor(r() * 300) }, () => Math.floor(r() * 256));
    case 6: return Array.from({ length: Math.floor(r() * 20) }, () => randomValue(r, depth + 1));
    default: return Object.fromEntries(Array.from({ length: Math.floor(r() * 20) }, (_, i) => [`k${i}`, randomValue(r, depth + 1)]));
  }
}

test('random values round-trip', () => {
  for (let seed = 1; seed <= 500; seed++) {
    const v = randomValue(rng(seed));
    assert.deepEqual(decode(encode(v)), v, `seed ${seed}`);
  }
});

test('damaged and random bytes decode or throw an Error', () => {
  for (let seed = 1; seed <= 2000; seed++) {
    const r = rng(seed);
    const good = encode(randomValue(r));
    const bad = good.slice(0, Math.floor(r() * good.length));
    if (bad.length > 0 && r() < 0.5) bad[Math.floor(r() * bad.length)] = Math.floor(r() * 256);
    try {
      decode(bad);
    } catch (err) {
      assert.ok(err instanceof Error, `seed ${seed}: threw ${err}`);
    }
  }
  assert.throws(() => decode(new Uint8Array([0xdd, 0xff, 0xff, 0xff, 0xff])), /truncated/); // a forged length allocates nothing
  assert.throws(() => decode(new Uint8Array([0x81, 0x01, 0x02])), /not a string/);
  assert.throws(() => decode(new Uint8Array([0xc1])), /not supported/);
});
