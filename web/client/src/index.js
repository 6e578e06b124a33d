// @roomlog/client: roomlog's protocol (docs/protocol.md) for browsers, Node 20+ and React Native,
// with no runtime dependency. It keeps the server's promise on the client's side: every event of
// a joined room reaches the application once, in order, across reconnects and server restarts;
// every publish waits in an outbox under an idempotency key until the server acks it durably.

/** @typedef {import('./index.js').Event} Event */

import * as msgpack from './msgpack.js';

/** The two codecs of the protocol: JSON text frames, MessagePack binary frames. */
const CODECS = {
  json: { subprotocol: 'roomlog.v1.json', encode: (f) => JSON.stringify(f), decode: (data) => JSON.parse(data) },
  msgpack: {
    subprotocol: 'roomlog.v1.msgpack',
    encode: (f) => msgpack.encode(f),
    decode: (data) => {
      if (typeof data === 'string') throw new Error('a text frame on a MessagePack connection');
      return msgpack.decode(data);
    },
  },
};

/** Codes a request may succeed with if sent again unchanged. */
const TEMPORARY = new Set(['rate_limited', 'internal']);

/** An error frame from the server. */
export class RoomlogError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {string} [head]
   */
  constructor(code, message, head) {
    super(`roomlog: ${code}: ${message}`);
    this.name = 'RoomlogError';
    this.code = code;
    this.head = head;
  }

  /** Whether sending the request again may succeed. */
  get temporary() {
    return TEMPORARY.has(this.code);
  }
}

/**
 * Thrown for a publish the client stopped resending because it is older than the server's key
 * retention: it may be in the log or not (see the onUncertain option).
 */
export class DeliveryUncertainError extends Error {
  /** @param {Outgoing} entry */
  constructor(entry) {
    super(`roomlog: delivery uncertain: publish ${entry.key} to ${entry.room} is older than the server's key retention`);
    this.name = 'DeliveryUncertainError';
    this.entry = entry;
  }
}

/**
 * @typedef {{key: string, room: string, kind?: string, body?: unknown, expect?: string}} Outgoing
 */

/**
 * Cursors, the outbox and application state in memory: a reload starts afresh. Every store has
 * these methods (see IndexedDBStore for browsers, FileStore for Node); each returns a promise
 * that settles once the change is durable in that store.
 */
export class MemoryStore {
  constructor() {
    /** @type {Map<string, string>} */
    this.cursors = new Map();
    /** @type {Map<string, Outgoing>} */
    this.outbox = new Map();
    /** @type {Map<string, unknown>} */
    this.states = new Map();
  }
  /** Application state saved under name (the Yjs provider keeps a document and its cursor). */
  async getState(name) {
    return this.states.get(name);
  }
  async setState(name, value) {
    this.states.set(name, value);
  }
  async cursor(room) {
    return this.cursors.get(room) ?? '';
  }
  async setCursor(room, id) {
    if (id > (this.cursors.get(room) ?? '')) this.cursors.set(room, id);
  }
  async addOutgoing(entry) {
    this.outbox.set(entry.key, entry);
  }
  async removeOutgoing(key) {
    this.outbox.delete(key);
  }
  async outgoing() {
    return [...this.outbox.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }
}

export { IndexedDBStore } from './indexeddb.js';

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

/** The claims of a JWT, unverified (the server verifies them): {} when it has none to read. */
function tokenClaims(token) {
  try {
    const part = token.split('.')[1];
    const claims = JSON.parse(atob(part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=')));
    return claims && typeof claims === 'object' ? claims : {};
  } catch {
    return {};
  }
}

/** The exp claim of a JWT, in ms since the epoch, or 0. */
function tokenExpiry(token) {
  const exp = tokenClaims(token).exp;
  return typeof exp === 'number' ? exp * 1000 : 0;
}

/** Whether a room pattern of a token's claims (a name, or a prefix ending in *) matches room. */
export function matchRoom(pattern, room) {
  if (typeof pattern !== 'string') return false;
  return pattern.endsWith('*') ? room.startsWith(pattern.slice(0, -1)) : pattern === room;
}

const matchAny = (patterns, room) => Array.isArray(patterns) && patterns.some((p) => matchRoom(p, room));

/**
 * A joined room. It stays joined across reconnects until leave().
 */
export class Room {
  /** @param {RoomlogClient} client @param {string} name @param {object} opts */
  constructor(client, name, opts) {
    this.client = client;
    this.name = name;
    this.onEvent = opts.onEvent ?? (() => {});
    this.onSignal = opts.onSignal ?? (() => {});
    this.onMembers = opts.onMembers ?? (() => {});
    this.onSynced = opts.onSynced ?? (() => {});
    this.fromStart = !!opts.fromStart;
    /** With no cursor, start at the room's latest snapshot (then every later event). */
    this.fromSnapshot = !!opts.fromSnapshot;
    /** The snapshot the latest (re)join's replay started with, if any. */
    this.snapshot = '';
    /** Whether the latest (re)join's cursor was older than what a compaction left. */
    this.cursorTooOld = false;
    /** Whether the client saves this room's cursor in its store (false: the application does). */
    this.persistCursor = opts.persistCursor ?? true;
    this.presence = opts.presence;
    /** The id of the last event delivered. */
    this.cursor = '';
    this.acked = '';
    /** @type {Map<string, unknown>} */
    this.members = new Map();
    /** Whether the server did not know the cursor at the latest (re)join. */
    this.unknownCursor = false;
    /** The latest joined listed only some of the room's memberCount members. */
    this.membersTruncated = false;
    this.memberCount = 0;
    this.left = false;
    this.synced = false;
    this.joinWaiter = null;
  }

  joinFrame() {
    const f = { type: 'join', ref: `join:${this.name}`, room: this.name };
    if (this.cursor === '' && this.fromSnapshot) f.from = 'snapshot';
    else if (this.cursor !== '' || this.fromStart) f.after = this.cursor;
    if (this.presence !== undefined) f.presence = this.presence;
    return f;
  }

  /**
   * Send an ephemeral signal (awareness: a cursor, a selection) to the room's other members: not
   * logged, best effort. Returns false when it could not be sent now (not connected, or the room
   * is not joined on this connection yet): signals are never queued.
   */
  signal(body) {
    if (!this.synced || this.left) return false;
    return this.client.sendNow({ type: 'signal', room: this.name, body });
  }

  /** Replace this session's presence in the room. */
  async setPresence(state) {
    await this.client.call({ type: 'presence', room: this.name, state });
    this.presence = state; // rejoins carry it
  }

  /** The room's latest snapshot event, or null when it has none. */
  async latestSnapshot() {
    const f = await this.client.call({ type: 'history', room: this.name, snapshot: true });
    return f.events?.[0] ?? null;
  }

  /** A page of the room's events before `before` (from the head when omitted). */
  async history({ before = '', limit = 100 } = {}) {
    const f = await this.client.call({ type: 'history', room: this.name, before, limit });
    return { events: f.events ?? [], more: !!f.more };
  }

  /** Leave the room. */
  async leave() {
    this.left = true;
    this.client.rooms.delete(this.name);
    try {
      await this.client.call({ type: 'leave', room: this.name });
    } catch (err) {
      if (!(err instanceof RoomlogError && err.code === 'not_joined')) throw err;
    }
  }
}

/**
 * A connection to a roomlog server that survives disconnects.
 */
export class RoomlogClient {
  /**
   * @param {object} opts
   * @param {string} opts.url ws(s)://host/v1/ws
   * @param {() => Promise<string>|string} opts.token a token for the next connection or refresh
   * @param {string} [opts.session] stable per device or installation
   * @param {MemoryStore} [opts.store] cursors and the outbox; default a MemoryStore
   * @param {'json'|'msgpack'} [opts.codec] the subprotocol: JSON text frames (default) or MessagePack binary frames
   * @param {typeof WebSocket} [opts.WebSocket] default globalThis.WebSocket
   * @param {number} [opts.minBackoff] ms, default 100
   * @param {number} [opts.maxBackoff] ms, default 10000
   * @param {number} [opts.ackInterval] ms, default 250
   * @param {number} [opts.pingInterval] ms between app-level pings, default 15000
   * @param {(entry: Outgoing) => void} [opts.onUncertain] outbox entries past the key retention
   * @param {(msg: string, fields?: object) => void} [opts.log]
   */
  constructor(opts) {
    this.opts = { minBackoff: 100, maxBackoff: 10000, ackInterval: 250, pingInterval: 15000, ...opts };
    this.opts.log ??= () => {};
    this.store = opts.store ?? new MemoryStore();
    this.codec = CODECS[opts.codec ?? 'json'];
    if (!this.codec) throw new Error(`roomlog: codec must be "json" or "msgpack", not ${JSON.stringify(opts.codec)}`);
    /** The codec's name: "json" or "msgpack". */
    this.codecName = opts.codec ?? 'json';
    this.WebSocket = opts.WebSocket ?? globalThis.WebSocket;
    /** @type {Map<string, Room>} */
    this.rooms = new Map();
    /** @type {Map<string, {entry: Outgoing, resolve: Function, reject: Function}>} */
    this.pending = new Map();
    /** @type {Map<string, {resolve: Function, reject: Function}>} */
    this.calls = new Map();
    this.refs = 0;
    this.storeSeq = 0; // publishes begun, and their outbox writes (see outboxStored)
    this.unstored = 0; // publishes whose outbox write has not finished
    this.storing = Promise.resolve();
    this.ws = null;
    this.closed = false;
    this.user = '';
    /** The claims of the token of the current connection (unverified; for what to attempt). */
    this.claims = {};
    this.keyRetention = 0;
    this.maxFrame = 0;
    this.reconnects = -1;
    this.connectedWaiters = [];
    /** @type {'connecting'|'online'|'offline'|'closed'} */
    this.status = 'connecting';
    this.paused = false;
    /** @type {Map<string, Set<Function>>} */
    this.listeners = new Map();
    this.onOnline = () => this.#kick();
    // A browser that goes offline may keep its WebSocket "open" with nothing passing (Chromium
    // does): drop it now rather than after the missed pongs, so the state shown is true.
    this.onOffline = () => this.ws && this.endConnection?.(4001, 'the browser went offline');
    globalThis.addEventListener?.('online', this.onOnline);
    globalThis.addEventListener?.('offline', this.onOffline);
  }

  /**
   * Connect and keep connected until close(). Resolves once first welcomed, or at once when
   * paused (pause() before start() starts offline: the outbox is loaded, nothing is sent).
   */
  async start() {
    for (const entry of await this.store.outgoing()) {
      this.pending.set(entry.key, { entry, resolve: () => {}, reject: () => {} });
    }
    this.#emit('outbox', this.pending.size);
    this.#run();
    if (!this.paused) await this.#waitConnected();
  }

  /**
   * Listen to the client: 'status' (connecting, online, offline, closed), 'outbox' (the number of
   * publishes waiting for their ack), 'ack' (a publish acked, as its promise resolves, but at once)
   * and 'uncertain' (an outbox entry handed back as past the key retention, as onUncertain).
   * Returns a function that stops listening.
   */
  on(name, fn) {
    if (!this.listeners.has(name)) this.listeners.set(name, new Set());
    this.listeners.get(name).add(fn);
    return () => this.listeners.get(name)?.delete(fn);
  }

  #emit(name, value) {
    for (const fn of this.listeners.get(name) ?? []) {
      try {
        fn(value);
      } catch (err) {
        this.opts.log('roomlog listener threw', { err: String(err) });
      }
    }
  }

  #setStatus(status) {
    if (this.status === status) return;
    this.status = status;
    this.#emit('status', status);
  }

  /**
   * Go offline on purpose (an "offline" switch, a metered network): the connection is closed and
   * not reopened until resume(). Publishes made meanwhile wait in the outbox.
   */
  pause() {
    this.paused = true;
    this.#setStatus('offline');
    if (this.ws) this.endConnection?.(1000, 'paused');
  }

  /** Come back from pause(): reconnect now. */
  resume() {
    if (!this.paused) return;
    this.paused = false;
    this.#setStatus('connecting');
    this.#kick();
  }

  /** Close the connection for good; unacked publishes stay in the store. */
  close() {
    this.closed = true;
    this.#setStatus('closed');
    globalThis.removeEventListener?.('online', this.onOnline);
    globalThis.removeEventListener?.('offline', this.onOffline);
    clearTimeout(this.sleepTimer);
    clearTimeout(this.refreshTimer);
    this.sleepWake?.();
    this.ws?.close(1000);
    for (const c of this.calls.values()) c.reject(new Error('roomlog: client closed'));
    this.calls.clear();
  }

  /** Join a room: events after the stored cursor first, then live ones. */
  async join(name, opts = {}) {
    const room = new Room(this, name, opts);
    room.cursor = room.acked = opts.cursor ?? (await this.store.cursor(name));
    this.rooms.set(name, room);
    const joined = new Promise((resolve, reject) => (room.joinWaiter = { resolve, reject }));
    if (this.ws && this.welcomed) this.#send(room.joinFrame());
    await joined;
    return room;
  }

  /**
   * Publish body to room; resolves with the ack ({room, id, key, duplicate}) once durable. The
   * publish waits in the outbox under its key and is resent after reconnects until acked.
   */
  async publish(room, body, { kind = '', expect } = {}) {
    const entry = { key: newKey(), room, body };
    if (kind) entry.kind = kind;
    if (expect !== undefined) entry.expect = expect;
    const stored = this.store.addOutgoing(entry);
    this.storeSeq++;
    this.storing = Promise.all([this.storing, stored.catch(() => {})]);
    this.unstored++;
    try {
      await stored;
    } finally {
      this.unstored--;
    }
    return new Promise((resolve, reject) => {
      this.pending.set(entry.key, { entry, resolve, reject });
      this.#emit('outbox', this.pending.size);
      if (this.ws && this.welcomed) this.#send(publishFrame(entry));
    });
  }

  /**
   * Resolves once every publish made so far is in the store's outbox. State an application saves
   * after it (synchronously: see the Yjs provider's save) never holds an edit the outbox lacks.
   */
  async outboxStored() {
    for (;;) {
      const seq = this.storeSeq;
      await this.storing;
      if (seq === this.storeSeq) return;
    }
  }

  /** Publishes waiting for their ack, those still being written to the outbox included. */
  get outstanding() {
    return this.pending.size + this.unstored;
  }

  /** Send a request and wait for its answer. */
  async call(frame) {
    await this.#waitConnected();
    const ref = `c${++this.refs}`;
    return new Promise((resolve, reject) => {
      this.calls.set(ref, { resolve, reject });
      this.#send({ ...frame, ref });
    });
  }

  /** Send a frame now if connected (no answer expected); false when it could not be. */
  sendNow(frame) {
    if (!this.ws || !this.welcomed) return false;
    this.#send(frame);
    return true;
  }

  #send(frame) {
    try {
      this.ws?.send(this.codec.encode(frame));
    } catch (err) {
      this.opts.log('roomlog send failed', { err: String(err) });
    }
  }

  #waitConnected() {
    if (this.ws && this.welcomed) return Promise.resolve();
    if (this.closed) return Promise.reject(new Error('roomlog: client closed'));
    return new Promise((resolve, reject) => this.connectedWaiters.push({ resolve, reject }));
  }

  #kick() {
    this.sleepWake?.();
  }

  async #sleep(ms) {
    await new Promise((resolve) => {
      this.sleepWake = resolve;
      this.sleepTimer = setTimeout(resolve, ms);
    });
  }

  /** Full jitter: a random wait in [0, min(max, min*2^attempt)]. */
  #backoff(attempt) {
    const cap = Math.min(this.opts.maxBackoff, this.opts.minBackoff * 2 ** Math.min(attempt, 20));
    return Math.random() * cap;
  }

  async #run() {
    let attempt = 0;
    while (!this.closed) {
      while (this.paused && !this.closed) await this.#sleep(60000); // resume() kicks
      if (this.closed) return;
      let hint = 0;
      try {
        hint = await this.#connection();
        attempt = 0;
      } catch (err) {
        this.opts.log('roomlog connection failed', { err: String(err) });
        if (err instanceof RoomlogError && this.reconnects < 0) {
          // The server refused the first hello (a bad token): retrying will not help; say so.
          const waiters = this.connectedWaiters;
          this.connectedWaiters = [];
          waiters.forEach((w) => w.reject(err));
          this.close();
          return;
        }
        attempt++;
      }
      if (this.closed || this.paused) continue;
      this.#setStatus('connecting');
      await this.#sleep(Math.max(hint, this.#backoff(attempt)));
    }
  }

  /**
   * One connection: hello, rejoin every room, resend the outbox, then read until it ends. Resolves
   * with how long the server asked to wait before reconnecting.
   */
  async #connection() {
    const token = await this.opts.token();
    const ws = new this.WebSocket(this.opts.url, this.codec.subprotocol);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    this.welcomed = false;
    let reconnectAfter = 0;
    const timers = [];
    const done = new Promise((resolve, reject) => {
      let ended = false;
      const end = (code, reason) => {
        if (ended) return;
        ended = true;
        ws.onmessage = null; // a late frame of a connection given up is not this client's any more
        timers.forEach(clearInterval);
        if (this.ws === ws) {
          this.ws = null;
          this.welcomed = false;
        }
        for (const c of this.calls.values()) c.reject(new Error('roomlog: connection lost before the answer'));
        this.calls.clear();
        if (!this.closed) this.opts.log('roomlog connection closed; reconnecting', { code, reason });
        resolve(reconnectAfter);
      };
      ws.onopen = () => ws.send(this.codec.encode({ type: 'hello', token, session: this.opts.session, client: 'roomlog-js/0.1' }));
      // A connection that fails to open may report only an error (Node's WebSocket does).
      ws.onerror = () => {
        if (ws.readyState !== 1) end(1006, 'connection failed');
      };
      ws.onclose = (ev) => end(ev.code, ev.reason);
      this.endConnection = (code, reason) => {
        ws.close(code, reason);
        end(code, reason); // without waiting for a closing handshake that may never come
      };
      ws.onmessage = (msg) => {
        let f;
        try {
          f = this.codec.decode(msg.data);
        } catch {
          this.opts.log('roomlog got an undecodable frame');
          return;
        }
        if (f.type === 'bye') {
          this.opts.log('roomlog server said bye', { code: f.code, reason: f.reason });
          reconnectAfter = f.reconnect_ms ?? 0;
          if (!this.welcomed && (f.code === 'unauthenticated' || f.code === 'token_expired')) {
            reject(new RoomlogError(f.code, f.reason ?? ''));
          }
          return;
        }
        if (f.type === 'welcome') {
          this.#welcomed(f, token);
          timers.push(setInterval(() => this.#sendAcks(), this.opts.ackInterval));
          timers.push(setInterval(() => this.#heartbeat(ws), this.opts.pingInterval));
          return;
        }
        this.#frame(f);
      };
    });
    return done;
  }

  #welcomed(f, token) {
    this.welcomed = true;
    this.reconnects++;
    this.user = f.user;
    this.claims = tokenClaims(token);
    this.keyRetention = f.key_retention_ms ?? 0;
    this.maxFrame = f.max_frame ?? 0;
    this.lastHeard = Date.now();
    this.#scheduleRefresh(token);
    for (const room of this.rooms.values()) this.#send(room.joinFrame());
    this.#handBackUncertain();
    for (const { entry } of this.pending.values()) this.#send(publishFrame(entry));
    this.#setStatus('online');
    const waiters = this.connectedWaiters;
    this.connectedWaiters = [];
    waiters.forEach((w) => w.resolve());
  }

  /**
   * Whether any publish to room is on its way: in the outbox and not acked yet, or not yet
   * written to the outbox.
   * @param {string} room
   */
  hasPending(room) {
    if (this.unstored > 0) return true;
    for (const p of this.pending.values()) if (p.entry.room === room) return true;
    return false;
  }

  /** Logs through ClientOptions.log. @param {string} msg @param {object} [fields] */
  log(msg, fields) {
    this.opts.log(msg, fields);
  }

  /**
   * Whether this connection's token lets it publish snapshots to room: write permission there
   * and the claim snapshot_rooms (the server refuses snapshots from anyone else).
   * @param {string} room
   */
  maySnapshot(room) {
    return matchAny(this.claims.rooms, room) && matchAny(this.claims.snapshot_rooms, room);
  }

  /** Refresh the token a third of its lifetime before it expires (at most 30 s before). */
  #scheduleRefresh(token) {
    clearTimeout(this.refreshTimer);
    const exp = tokenExpiry(token);
    if (!exp) return;
    const lead = Math.min(30000, (exp - Date.now()) / 3);
    this.refreshTimer = setTimeout(async () => {
      if (this.closed) return;
      try {
        const fresh = await this.opts.token();
        await this.call({ type: 'refresh', token: fresh });
        this.#scheduleRefresh(fresh);
      } catch (err) {
        this.opts.log('roomlog token refresh failed', { err: String(err) });
      }
    }, Math.max(0, exp - lead - Date.now()));
  }

  /** App-level ping: a browser cannot see WebSocket pings, so a dead connection shows here. */
  #heartbeat(ws) {
    if (Date.now() - this.lastHeard > 2.5 * this.opts.pingInterval) {
      this.opts.log('roomlog heard nothing for too long; reconnecting');
      ws.close(4000, 'no pong');
      return;
    }
    ws.send(this.codec.encode({ type: 'ping' }));
  }

  /** Outbox entries older than the server's key retention are handed back, not resent. */
  #handBackUncertain() {
    if (!this.keyRetention) return;
    const cutoff = Date.now() - this.keyRetention + Math.min(60000, this.keyRetention / 10);
    for (const [key, p] of this.pending) {
      if (ulidTime(key) >= cutoff) continue;
      this.pending.delete(key);
      this.store.removeOutgoing(key);
      p.reject(new DeliveryUncertainError(p.entry));
      this.opts.onUncertain?.(p.entry);
      this.#emit('uncertain', p.entry);
    }
    this.#emit('outbox', this.pending.size);
  }

  #frame(f) {
    this.lastHeard = Date.now();
    switch (f.type) {
      case 'event':
        this.#deliver(f);
        return;
      case 'joined':
        this.#joined(f);
        return;
      case 'synced': {
        const room = this.rooms.get(f.room);
        if (!room) return;
        room.synced = true;
        try {
          room.onSynced(f.cursor);
        } catch (err) {
          this.opts.log('roomlog synced handler threw', { err: String(err) });
        }
        return;
      }
      case 'signal': {
        const room = this.rooms.get(f.room);
        if (!room || room.left) return;
        try {
          room.onSignal({ room: f.room, user: f.user, session: f.session, body: f.body });
        } catch (err) {
          this.opts.log('roomlog signal handler threw', { err: String(err) });
        }
        return;
      }
      case 'ack':
        this.#acked(f);
        return;
      case 'error':
        if (f.ref?.startsWith('join:')) this.#joinFailed(f);
        else if (!this.#publishFailed(f)) this.#answer(f);
        return;
      case 'left':
        if (!f.ref) this.rooms.delete(f.room); // the server left it for us (token refresh)
        this.#answer(f);
        return;
      default: // ok, pong, history
        this.#answer(f);
    }
  }

  #answer(f) {
    const call = f.ref && this.calls.get(f.ref);
    if (!call) return;
    this.calls.delete(f.ref);
    if (f.type === 'error') call.reject(new RoomlogError(f.code, f.message, f.head));
    else call.resolve(f);
  }

  #joined(f) {
    const room = this.rooms.get(f.room);
    if (!room) return;
    room.synced = false; // events up to synced are a replay: older than the members listed here
    room.members = new Map((f.members ?? []).map((m) => [`${m.user}\u0000${m.session}`, m.presence]));
    this.#membersChanged(room);
    if (room.cursor === '' && f.resumed_from) {
      room.cursor = f.resumed_from; // the server resumes from the cursor it recorded
    } else if (room.cursor === '' && !room.fromStart && !room.fromSnapshot) {
      room.cursor = f.head; // a live join: a rejoin after a drop starts here
    }
    room.unknownCursor = !!f.unknown_cursor;
    // The server lists a bounded number of members (--max-members-listed): the rest are not here.
    room.membersTruncated = !!f.members_truncated;
    room.memberCount = f.members_truncated ? f.member_count ?? 0 : room.members.size;
    room.snapshot = f.snapshot ?? '';
    room.cursorTooOld = !!f.cursor_too_old;
    if (room.cursorTooOld) this.opts.log('roomlog: the cursor is older than a compaction; the replay starts at the latest snapshot', { room: room.name, snapshot: room.snapshot });
    if (room.unknownCursor) {
      this.opts.log('roomlog does not know this cursor: events may have been missed', { room: room.name, cursor: room.cursor });
      if (room.cursor > f.head) room.cursor = f.head;
    }
    room.joinWaiter?.resolve();
    room.joinWaiter = null;
  }

  #joinFailed(f) {
    const name = f.ref.slice('join:'.length);
    const room = this.rooms.get(name);
    if (!room) return;
    this.rooms.delete(name);
    room.left = true;
    const err = new RoomlogError(f.code, f.message);
    if (room.joinWaiter) room.joinWaiter.reject(err);
    else this.opts.log('roomlog rejoin refused; the room is dropped', { room: name, code: f.code });
    room.joinWaiter = null;
  }

  #membersChanged(room) {
    try {
      room.onMembers(memberList(room.members));
    } catch (err) {
      this.opts.log('roomlog members handler threw', { err: String(err) });
    }
  }

  /** Keep a room's member list current from its live join, leave and presence events. */
  #trackMembers(room, f) {
    if (!room.synced) return; // a replayed event is older than the list joined gave
    const id = `${f.user}\u0000${f.session ?? ''}`;
    if (f.kind === 'join' || f.kind === 'presence') room.members.set(id, f.body);
    else if (f.kind === 'leave') room.members.delete(id);
    else return;
    this.#membersChanged(room);
  }

  /** Hand an event to the application once: one at or before the cursor was delivered already. */
  #deliver(f) {
    const room = this.rooms.get(f.room);
    if (!room || room.left || f.id <= room.cursor) return;
    room.cursor = f.id;
    this.#trackMembers(room, f);
    /** @type {Event} */
    const ev = { room: f.room, id: f.id, kind: f.kind, user: f.user, session: f.session ?? '', key: f.key ?? '', ts: f.ts, body: f.body };
    try {
      room.onEvent(ev);
    } catch (err) {
      this.opts.log('roomlog event handler threw', { err: String(err) });
    }
  }

  #acked(f) {
    const p = this.pending.get(f.ref);
    if (!p) return; // a resend's second ack
    this.pending.delete(f.ref);
    this.store.removeOutgoing(f.ref);
    const ack = { room: f.room, id: f.id, key: f.ref, duplicate: !!f.duplicate, kind: p.entry.kind ?? '' };
    this.#emit('ack', ack); // at once: a promise's callbacks may run only after later frames
    this.#emit('outbox', this.pending.size);
    p.resolve(ack);
  }

  #publishFailed(f) {
    const p = f.ref && this.pending.get(f.ref);
    if (!p) return false;
    const err = new RoomlogError(f.code, f.message, f.head);
    if (err.temporary) {
      setTimeout(() => {
        if (this.pending.has(f.ref) && this.ws && this.welcomed) this.#send(publishFrame(p.entry));
      }, this.#backoff(3));
      return true;
    }
    this.pending.delete(f.ref);
    this.store.removeOutgoing(f.ref);
    this.#emit('outbox', this.pending.size);
    p.reject(err); // permanent: not retried
    return true;
  }

  /** Ack each room's delivered events to the server (one frame per room) and save the cursors. */
  #sendAcks() {
    for (const room of this.rooms.values()) {
      if (room.cursor === '' || room.cursor === room.acked) continue;
      if (room.persistCursor) this.store.setCursor(room.name, room.cursor);
      this.#send({ type: 'ack', room: room.name, id: room.cursor });
      room.acked = room.cursor;
    }
  }
}

/** A room's members as a list, by user then session. */
function memberList(members) {
  return [...members.entries()]
    .map(([id, presence]) => {
      const [user, session] = id.split('\u0000');
      return { user, session, presence };
    })
    .sort((a, b) => (a.user === b.user ? (a.session < b.session ? -1 : 1) : a.user < b.user ? -1 : 1));
}

function publishFrame(entry) {
  const f = { type: 'publish', ref: entry.key, room: entry.room, key: entry.key };
  if (entry.kind) f.kind = entry.kind;
  if (entry.body !== undefined) f.body = entry.body;
  if (entry.expect !== undefined) f.expect = entry.expect;
  return f;
}
export { claimTab, adoptOrphanOutboxes } from './tabs.js';
