// The client: one connection at a time to a roomlog server, reconnecting, rejoining every room
// after its cursor and resending its outbox (docs/protocol.md, "Client behaviour").

/** @typedef {import('./index.js').Event} Event */
/** @typedef {import('./index.js').Outgoing} Outgoing */

import { CODECS } from './codecs.js';
import { RoomlogError, DeliveryUncertainError } from './errors.js';
import { MemoryStore } from './memory-store.js';
import { newKey, ulidTime } from './ids.js';
import { tokenClaims, tokenExpiry, matchAny } from './tokens.js';
import { Room } from './room.js';

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
    /** Why the client stopped by itself (a refused first hello, a revoked token), or null. */
    this.error = null;
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
        if (err instanceof RoomlogError && (this.reconnects < 0 || err.code === 'token_revoked')) {
          // The server refused the first hello (a bad token), or a hello whose token the token
          // callback gave after a revocation: retrying will not help; stop and say so.
          this.error = err;
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
          if (!this.welcomed && (f.code === 'unauthenticated' || f.code === 'token_expired' || f.code === 'token_revoked')) {
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

  /**
   * What the client does with each frame after welcome, by type (docs/protocol.md, "Client
   * behaviour"); a frame of any other type (ok, pong, history) answers a pending call.
   */
  #handlers = {
    event: (f) => this.#deliver(f),
    joined: (f) => this.#joined(f),
    synced: (f) => this.#synced(f),
    signal: (f) => this.#signal(f),
    ack: (f) => this.#acked(f),
    error: (f) => {
      if (f.ref?.startsWith('join:')) this.#joinFailed(f);
      else if (!this.#publishFailed(f)) this.#answer(f);
    },
    left: (f) => {
      if (!f.ref) this.rooms.delete(f.room); // the server left it for us (token refresh)
      this.#answer(f);
    },
    removed: (f) => this.#removed(f),
  };

  /** The server took this session out of a room (an administrator removed the user): never rejoined by itself. */
  #removed(f) {
    const room = this.rooms.get(f.room);
    if (!room) return;
    this.rooms.delete(f.room);
    room.left = true;
    room.removed = f.reason || 'removed';
    this.opts.log('roomlog removed this session from the room; it is not rejoined', { room: f.room, reason: f.reason });
    try {
      room.onRemoved(room.removed);
    } catch (err) {
      this.opts.log('roomlog removed handler threw', { err: String(err) });
    }
  }

  #frame(f) {
    this.lastHeard = Date.now();
    const handle = Object.hasOwn(this.#handlers, f.type) ? this.#handlers[f.type] : (g) => this.#answer(g);
    handle(f);
  }

  #synced(f) {
    const room = this.rooms.get(f.room);
    if (!room) return;
    room.synced = true;
    try {
      room.onSynced(f.cursor);
    } catch (err) {
      this.opts.log('roomlog synced handler threw', { err: String(err) });
    }
  }

  #signal(f) {
    const room = this.rooms.get(f.room);
    if (!room || room.left) return;
    try {
      room.onSignal({ room: f.room, user: f.user, session: f.session, body: f.body });
    } catch (err) {
      this.opts.log('roomlog signal handler threw', { err: String(err) });
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
    room.joinRetries = 0;
    room.joinWaiter?.resolve();
    room.joinWaiter = null;
  }

  #joinFailed(f) {
    const name = f.ref.slice('join:'.length);
    const room = this.rooms.get(name);
    if (!room) return;
    if (new RoomlogError(f.code, f.message).temporary) {
      // Not decided now (unavailable), or the server is busy: the same join again after a
      // backoff, on whatever connection is current then; the application keeps waiting.
      this.opts.log('roomlog join not decided; retrying', { room: name, code: f.code });
      setTimeout(() => {
        if (this.rooms.get(name) === room && this.ws && this.welcomed) this.#send(room.joinFrame());
      }, this.#backoff(++room.joinRetries));
      return;
    }
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
