// Idempotency keys: ULIDs, monotonic within the process.

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
let lastKeyTime = 0;
let lastKeyRandom = /** @type {number[]} */ ([]);

/**
 * A new idempotency key: a ULID, monotonic within this process (so keys sort in publish order),
 * whose time is when the publish was made.
 */
export function newKey(now = Date.now()) {
  if (now <= lastKeyTime) {
    // The same millisecond (or a clock step back): increment the random part.
    now = lastKeyTime;
    for (let i = lastKeyRandom.length - 1; i >= 0; i--) {
      if (lastKeyRandom[i] < 31) {
        lastKeyRandom[i]++;
        break;
      }
      lastKeyRandom[i] = 0;
    }
  } else {
    lastKeyTime = now;
    const bytes = new Uint8Array(16);
    globalThis.crypto.getRandomValues(bytes);
    lastKeyRandom = [...bytes].map((b) => b & 31);
    lastKeyRandom[0] &= 15; // room to increment
  }
  let time = '';
  let t = now;
  for (let i = 0; i < 10; i++) {
    time = CROCKFORD[t % 32] + time;
    t = Math.floor(t / 32);
  }
  return time + lastKeyRandom.map((v) => CROCKFORD[v]).join('');
}

/** The time (ms since the epoch) of a ULID, or 0 for a string that is not one. */
export function ulidTime(id) {
  if (typeof id !== 'string' || id.length !== 26) return 0;
  let t = 0;
  for (let i = 0; i < 10; i++) {
    const v = CROCKFORD.indexOf(id[i]);
    if (v < 0) return 0;
    t = t * 32 + v;
  }
  return t;
}


/** The id just before id (as a 128-bit number): reading after it reads id first. */
export function idBefore(id) {
  const chars = [...id];
  for (let i = chars.length - 1; i >= 0; i--) {
    const v = CROCKFORD.indexOf(chars[i]);
    if (v > 0) {
      chars[i] = CROCKFORD[v - 1];
      return chars.join('');
    }
    chars[i] = 'Z';
  }
  return id; // the zero id has none before it
}
