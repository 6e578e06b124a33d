// MessagePack (https://github.com/msgpack/msgpack/blob/master/spec.md) for the roomlog.v1.msgpack
// subprotocol: the subset a JSON-shaped frame needs, plus bin. No dependency. Integers decode to
// numbers (a 64-bit one past 2^53 loses precision, as it would in JSON), bin to Uint8Array; ext
// types are refused.

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder('utf-8', { fatal: true });

/** Encodes a value: null/undefined, booleans, numbers, strings, Uint8Array, arrays, plain objects. */
export function encode(value) {
  const w = new Writer();
  w.value(value);
  return w.bytes();
}

class Writer {
  constructor() {
    this.buf = new Uint8Array(256);
    this.view = new DataView(this.buf.buffer);
    this.n = 0;
  }
  bytes() {
    return this.buf.subarray(0, this.n);
  }
  room(k) {
    if (this.n + k <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.n + k));
    next.set(this.buf.subarray(0, this.n));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(b) {
    this.room(1);
    this.buf[this.n++] = b;
  }
  head(byte, size, len) {
    this.room(1 + size);
    this.buf[this.n++] = byte;
    if (size === 1) this.view.setUint8(this.n, len);
    else if (size === 2) this.view.setUint16(this.n, len);
    else this.view.setUint32(this.n, len);
    this.n += size;
  }
  raw(bytes) {
    this.room(bytes.length);
    this.buf.set(bytes, this.n);
    this.n += bytes.length;
  }
  value(v) {
    if (v === null || v === undefined) return this.u8(0xc0);
    if (v === false) return this.u8(0xc2);
    if (v === true) return this.u8(0xc3);
    if (typeof v === 'number') return this.number(v);
    if (typeof v === 'string') return this.string(v);
    if (v instanceof Uint8Array) {
      if (v.length < 0x100) this.head(0xc4, 1, v.length);
      else if (v.length < 0x10000) this.head(0xc5, 2, v.length);
      else this.head(0xc6, 4, v.length);
      return this.raw(v);
    }
    if (Array.isArray(v)) {
      if (v.length < 16) this.u8(0x90 | v.length);
      else if (v.length < 0x10000) this.head(0xdc, 2, v.length);
      else this.head(0xdd, 4, v.length);
      for (const x of v) this.value(x);
      return undefined;
    }
    if (typeof v === 'object') {
      const keys = Object.keys(v).filter((k) => v[k] !== undefined);
      if (keys.length < 16) this.u8(0x80 | keys.length);
      else if (keys.length < 0x10000) this.head(0xde, 2, keys.length);
      else this.head(0xdf, 4, keys.length);
      for (const k of keys) {
        this.string(k);
        this.value(v[k]);
      }
      return undefined;
    }
    throw new TypeError(`roomlog: MessagePack cannot encode a ${typeof v}`);
  }
  number(v) {
    if (Number.isInteger(v) && Number.isSafeInteger(v)) {
      if (v >= 0 && v < 0x80) return this.u8(v);
      if (v < 0 && v >= -32) return this.u8(v & 0xff);
      if (v >= 0 && v <= 0xffffffff) return this.head(0xce, 4, v);
      if (v < 0 && v >= -0x80000000) {
        this.room(5);
        this.buf[this.n++] = 0xd2;
        this.view.setInt32(this.n, v);
        this.n += 4;
        return undefined;
      }
      this.room(9);
      this.buf[this.n++] = v < 0 ? 0xd3 : 0xcf;
      if (v < 0) this.view.setBigInt64(this.n, BigInt(v));
      else this.view.setBigUint64(this.n, BigInt(v));
      this.n += 8;
      return undefined;
    }
    this.room(9);
    this.buf[this.n++] = 0xcb;
    this.view.setFloat64(this.n, v);
    this.n += 8;
    return undefined;
  }
  string(s) {
    const b = utf8.encode(s);
    if (b.length < 32) this.u8(0xa0 | b.length);
    else if (b.length < 0x100) this.head(0xd9, 1, b.length);
    else if (b.length < 0x10000) this.head(0xda, 2, b.length);
    else this.head(0xdb, 4, b.length);
    this.raw(b);
  }
}

/** Decodes one value that fills bytes (an ArrayBuffer or Uint8Array); throws on anything else. */
export function decode(bytes) {
  const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const r = { b, v: new DataView(b.buffer, b.byteOffset, b.byteLength), i: 0 };
  const value = read(r, 0);
  if (r.i !== b.length) throw new Error('roomlog: MessagePack: bytes after the value');
  return value;
}

function need(r, k) {
  if (r.i + k > r.b.length) throw new Error('roomlog: MessagePack: truncated');
}

function read(r, depth) {
  if (depth > 100) throw new Error('roomlog: MessagePack: nested too deep');
  need(r, 1);
  const t = r.b[r.i++];
  if (t < 0x80) return t;
  if (t >= 0xe0) return t - 0x100;
  if ((t & 0xf0) === 0x80) return map(r, t & 0x0f, depth);
  if ((t & 0xf0) === 0x90) return array(r, t & 0x0f, depth);
  if ((t & 0xe0) === 0xa0) return str(r, t & 0x1f);
  const u = (size) => {
    need(r, size);
    const x = size === 1 ? r.v.getUint8(r.i) : size === 2 ? r.v.getUint16(r.i) : r.v.getUint32(r.i);
    r.i += size;
    return x;
  };
  const fixed = (size, get) => {
    need(r, size);
    const x = get(r.i);
    r.i += size;
    return x;
  };
  switch (t) {
    case 0xc0: return null;
    case 0xc2: return false;
    case 0xc3: return true;
    case 0xc4: return bin(r, u(1));
    case 0xc5: return bin(r, u(2));
    case 0xc6: return bin(r, u(4));
    case 0xca: return fixed(4, (i) => r.v.getFloat32(i));
    case 0xcb: return fixed(8, (i) => r.v.getFloat64(i));
    case 0xcc: return u(1);
    case 0xcd: return u(2);
    case 0xce: return u(4);
    case 0xcf: return Number(fixed(8, (i) => r.v.getBigUint64(i)));
    case 0xd0: return fixed(1, (i) => r.v.getInt8(i));
    case 0xd1: return fixed(2, (i) => r.v.getInt16(i));
    case 0xd2: return fixed(4, (i) => r.v.getInt32(i));
    case 0xd3: return Number(fixed(8, (i) => r.v.getBigInt64(i)));
    case 0xd9: return str(r, u(1));
    case 0xda: return str(r, u(2));
    case 0xdb: return str(r, u(4));
    case 0xdc: return array(r, u(2), depth);
    case 0xdd: return array(r, u(4), depth);
    case 0xde: return map(r, u(2), depth);
    case 0xdf: return map(r, u(4), depth);
    default: throw new Error(`roomlog: MessagePack: type 0x${t.toString(16)} is not supported`);
  }
}

function bin(r, n) {
  need(r, n);
  const out = r.b.slice(r.i, r.i + n);
  r.i += n;
  return out;
}

function str(r, n) {
  need(r, n);
  const s = fromUtf8.decode(r.b.subarray(r.i, r.i + n));
  r.i += n;
  return s;
}

function array(r, n, depth) {
  need(r, n); // each element takes a byte at least: a forged length cannot allocate past the frame
  const out = new Array(n);
  for (let k = 0; k < n; k++) out[k] = read(r, depth + 1);
  return out;
}

function map(r, n, depth) {
  need(r, n * 2);
  const out = {};
  for (let k = 0; k < n; k++) {
    const key = read(r, depth + 1);
    if (typeof key !== 'string') throw new Error('roomlog: MessagePack: a map key is not a string');
    const value = read(r, depth + 1);
    if (key === '__proto__') Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
    else out[key] = value;
  }
  return out;
}
