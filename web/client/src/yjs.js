// @roomlog/client/yjs: a Yjs provider on roomlog. Each local Yjs update is published as an event
// of kind "yjs" with an idempotency key, its bytes in the body ({"u":"<base64>"} over JSON; over
// MessagePack {"u":<bin>}, which the log keeps, as every body, as JSON: base64 text), so the
// room's log is the document's history and every member applies every update once. The document
// and its cursor are saved together in the client's store (IndexedDB in a browser), and pending
// updates wait in the client's outbox there, so edits made offline survive a reload and reach the
// others when the device is back. Awareness (cursors, names) travels in signals: ephemeral, not
// logged.
//
// yjs and y-protocols are peer dependencies: the application brings its own (one copy of Yjs).

import * as Y from 'yjs';
import * as awarenessProtocol from 'y-protocols/awareness';

/** How many replayed events are applied at once at most, and how long they may wait. */
const REPLAY_BATCH = 2000;
const REPLAY_FLUSH_MS = 50;

/** How soon a due snapshot that could not be taken exactly is tried again. */
const SNAPSHOT_RETRY_MS = 250;

/** The kind of snapshot events: body {"covers":"<id>","state":"<base64 Y.encodeStateAsUpdate>","events":<n>}. */
export const SNAPSHOT_KIND = 'snapshot';

/** The kind of the events that carry Yjs updates. */
export const YJS_KIND = 'yjs';

/** Keeps a Y.Doc in step with a roomlog room. */
export class RoomlogProvider {
  /**
   * @param {import('./index.js').RoomlogClient} client started or not; its store keeps the document
   * @param {string} room
   * @param {Y.Doc} doc
   * @param {object} [opts]
   * @param {awarenessProtocol.Awareness} [opts.awareness] shared with the room's members by signals
   * @param {number} [opts.saveDelay] ms to gather changes before saving the document, default 200
   * @param {unknown} [opts.presence] this session's presence in the room (a name, a colour)
   * @param {number} [opts.snapshotEvery] publish a snapshot after this many events since the last, default 1000 (0: never)
   * @param {number} [opts.snapshotIdle] or after this many ms without events, once 50 have come, default 5000
   * @param {(ev: import('./index.js').Event) => void} [opts.onEvent] after each event of the room is applied
   * @param {(members: {user: string, session: string, presence: unknown}[]) => void} [opts.onMembers]
   * @param {(reason: string) => void} [opts.onRemoved] the server removed this session from the room (the document was unshared)
   * @param {(msg: string, fields?: object) => void} [opts.log]
   */
  constructor(client, room, doc, opts = {}) {
    this.client = client;
    this.roomName = room;
    this.doc = doc;
    this.awareness = opts.awareness ?? null;
    this.saveDelay = opts.saveDelay ?? 200;
    this.presence = opts.presence;
    this.snapshotEvery = opts.snapshotEvery ?? 1000;
    this.snapshotIdle = opts.snapshotIdle ?? 5000;
    /** Events since the latest snapshot the document saw. */
    this.sinceSnapshot = 0;
    /** The greatest id the server acked for this provider's own updates. */
    this.ownAcked = '';
    this.idleTimer = null;
    this.onEvent = opts.onEvent ?? (() => {});
    this.onMembers = opts.onMembers ?? (() => {});
    this.onRemoved = opts.onRemoved ?? (() => {});
    /** Why the server removed this session from the document's room ('' while a member). */
    this.removed = '';
    this.log = opts.log ?? ((msg, fields) => client.log(msg, fields));
    this.stateKey = `yjs:${room}`;
    /** The id of the last event applied to the document. */
    this.cursor = '';
    /** Events of the room seen by this document (all kinds). */
    this.events = 0;
    this.synced = false;
    /** @type {import('./index.js').Room|null} */
    this.room = null;
    /** Awareness client ids by the session that sent them, to drop them when it leaves. */
    this.awarenessBySession = new Map();
    this.listeners = new Set();
    this.saveTimer = null;
    this.saving = Promise.resolve();
    /** Events of the replay not applied yet (see #apply). */
    this.replayed = [];
    this.flushTimer = null;
    this.onDocUpdate = (update, origin) => {
      if (origin === this) return; // applied from the room or the store: not ours to publish
      // A restore (history.js restoreText) says which version it restored, in the event's body.
      this.#publish(update, typeof origin?.restored === 'string' ? { restored: origin.restored } : {});
      this.#scheduleSave();
    };
    this.onAwarenessUpdate = ({ added, updated, removed }, origin) => {
      if (origin !== 'local') return;
      this.#sendAwareness([...added, ...updated, ...removed]);
    };
  }

  /**
   * Loads the saved document and its pending edits, then joins the room after the saved cursor
   * (from the room's start when nothing is saved). Resolves once the local document is loaded,
   * offline too; joined() once the room is joined, whenSynced() once caught up with it.
   */
  async start() {
    const saved = await this.client.store.getState(this.stateKey);
    if (saved?.update) {
      Y.applyUpdate(this.doc, fromBase64(saved.update), this);
      this.cursor = saved.cursor ?? '';
      this.events = saved.events ?? 0;
    }
    // Edits not yet acked are in the outbox: show them at once, even offline.
    for (const entry of await this.client.store.outgoing()) {
      if (entry.room === this.roomName && entry.kind === YJS_KIND) Y.applyUpdate(this.doc, updateBytes(entry.body.u), this);
    }
    this.doc.on('update', this.onDocUpdate);
    this.awareness?.on('update', this.onAwarenessUpdate);
    // Own acks as they come (see snapshot), not as promises settle: in Node several frames may be
    // handled before a promise's callbacks run.
    this.offAck = this.client.on('ack', (ack) => {
      if (ack.room === this.roomName && ack.id > this.ownAcked) this.ownAcked = ack.id;
    });
    this.offUncertain = this.client.on('uncertain', (entry) => {
      // Yjs updates are idempotent: one whose fate is unknown is safely published again.
      if (entry.room === this.roomName && entry.kind === YJS_KIND) this.#publish(updateBytes(entry.body.u));
    });
    this.joining = this.client.join(this.roomName, {
      cursor: this.cursor,
      fromSnapshot: this.cursor === '', // nothing saved: the latest snapshot, then what follows
      persistCursor: false, // saved with the document, in one write
      presence: this.presence,
      onEvent: (ev) => this.#apply(ev),
      onSignal: (sig) => this.#signal(sig),
      onSynced: () => this.#synced(),
      onMembers: (members) => this.#members(members),
      onRemoved: (reason) => {
        this.removed = reason;
        this.onRemoved(reason);
      },
    });
    this.joining.then(
      (room) => (this.room = room),
      (err) => this.log('roomlog could not join the document', { room: this.roomName, err: String(err) }),
    );
    return this;
  }

  /** Resolves with the room once joined. */
  joined() {
    return this.joining;
  }

  /** Resolves once the document has every event of the room up to the join (at once if it has). */
  whenSynced() {
    if (this.synced) return Promise.resolve();
    return new Promise((resolve) => this.listeners.add(resolve));
  }

  /** Stops following the room (it stays joined for the client) and saves the document. */
  async destroy() {
    this.#flush();
    clearTimeout(this.idleTimer);
    this.doc.off('update', this.onDocUpdate);
    this.offUncertain?.();
    this.offAck?.();
    if (this.awareness) {
      this.awareness.off('update', this.onAwarenessUpdate);
      awarenessProtocol.removeAwarenessStates(this.awareness, [this.doc.clientID], 'destroy');
      this.#sendAwareness([this.doc.clientID]);
    }
    clearTimeout(this.saveTimer);
    await this.save();
  }

  /**
   * Saves the document with the cursor it reflects, in one write.
   *
   * Invariant: a saved document holds no local edit that is not in the outbox too, else a crash
   * right after the save would keep the edit on this device and never send it. So the document is
   * encoded only once the outbox has every publish begun so far, with nothing between but
   * microtasks: local edits come from input events, tasks, so none can slip in.
   */
  save() {
    clearTimeout(this.saveTimer);
    this.saveTimer = null;
    this.saving = this.saving
      .then(async () => {
        await this.client.outboxStored();
        const value = { update: toBase64(Y.encodeStateAsUpdate(this.doc)), cursor: this.cursor, events: this.events };
        await this.client.store.setState(this.stateKey, value);
      })
      .catch((err) => {
        this.log('roomlog could not save the document', { room: this.roomName, err: String(err) });
      });
    return this.saving;
  }

  #scheduleSave() {
    if (this.saveTimer === null) this.saveTimer = setTimeout(() => this.save(), this.saveDelay);
  }

  #publish(update, extra = {}) {
    // Over MessagePack the bytes go as bin; the log keeps every body as JSON, so they come back
    // (to every member, on either codec) as the base64 text JSON gives them.
    const u = this.client.codecName === 'msgpack' ? update : toBase64(update);
    this.client.publish(this.roomName, { u, ...extra }, { kind: YJS_KIND }).catch((err) => {
      if (err?.name !== 'DeliveryUncertainError') this.log('roomlog refused a Yjs update', { room: this.roomName, err: String(err) });
    });
  }

  /**
   * An event of the room. While the room replays (before synced), updates are gathered and
   * applied together, in one Yjs transaction: a document of 10,000 updates then redraws an editor
   * a few times, not 10,000. Live ones are applied at once.
   */
  #apply(ev) {
    this.replayed.push(ev);
    if (this.synced || this.replayed.length >= REPLAY_BATCH) this.#flush();
    else this.flushTimer ??= setTimeout(() => this.#flush(), REPLAY_FLUSH_MS);
  }

  /** Applies the gathered events; the cursor moves with them, so a save never runs ahead. */
  #flush() {
    clearTimeout(this.flushTimer);
    this.flushTimer = null;
    const evs = this.replayed;
    if (evs.length === 0) return;
    this.replayed = [];
    Y.transact(this.doc, () => {
      for (const ev of evs) {
        const bytes = ev.kind === YJS_KIND ? ev.body?.u : ev.kind === SNAPSHOT_KIND ? ev.body?.state : undefined;
        this.sinceSnapshot = ev.kind === SNAPSHOT_KIND ? 0 : this.sinceSnapshot + 1;
        if (bytes === undefined) continue;
        try {
          Y.applyUpdate(this.doc, updateBytes(bytes), this);
        } catch (err) {
          this.log('roomlog could not apply a Yjs update', { room: this.roomName, id: ev.id, err: String(err) });
        }
      }
    }, this);
    for (const ev of evs) {
      if (ev.kind === SNAPSHOT_KIND && Number.isInteger(ev.body?.events) && this.events < ev.body.events) {
        this.events = ev.body.events; // started at this snapshot: count what it covers
      }
      this.events++;
    }
    this.cursor = evs[evs.length - 1].id;
    this.#scheduleSave();
    for (const ev of evs) this.onEvent(ev);
    this.#considerSnapshot();
  }

  /**
   * Publishes a snapshot once enough events came since the last one (or the room went idle after
   * some). A snapshot must cover exactly what it says: the document then holds nothing but the
   * events up to the cursor, so none of this provider's edits may be waiting to be sent or to come
   * back. Every member may try; expect lets one win, and the others' conflicts are ignored.
   */
  #considerSnapshot() {
    clearTimeout(this.idleTimer);
    // Only a token trusted with snapshots (snapshot_rooms) may publish them; others never try.
    if (!this.snapshotEvery || !this.synced || !this.client.maySnapshot(this.roomName)) return;
    const due = this.sinceSnapshot >= this.snapshotEvery;
    if (due && this.snapshot()) return;
    if (due || this.sinceSnapshot >= 50) {
      // Not exact now (own edits on their way), or not due yet: look again when things settle.
      this.idleTimer = setTimeout(() => this.snapshot() || this.#considerSnapshot(), due ? SNAPSHOT_RETRY_MS : this.snapshotIdle);
    }
  }

  /** Publishes a snapshot of the document covering the cursor, when it is exact now; see #considerSnapshot. */
  snapshot() {
    clearTimeout(this.idleTimer);
    if (!this.client.maySnapshot(this.roomName)) return false;
    const mine = this.client.hasPending(this.roomName);
    if (this.cursor === '' || mine || this.ownAcked > this.cursor || this.replayed.length > 0) return false;
    const covers = this.cursor;
    const update = Y.encodeStateAsUpdate(this.doc);
    const state = this.client.codecName === 'msgpack' ? update : toBase64(update);
    if (this.client.maxFrame && update.length * 1.4 + 200 > this.client.maxFrame) {
      this.log('roomlog: the document is larger than a frame: no snapshot (raise --max-frame)', { room: this.roomName, bytes: update.length });
      return false;
    }
    this.sinceSnapshot = 0; // one try per threshold, won or lost
    // events: how many events the room had up to covers, so that a member who starts at this
    // snapshot counts the room's events as one who read it all does.
    this.client.publish(this.roomName, { covers, state, events: this.events }, { kind: SNAPSHOT_KIND, expect: covers }).catch((err) => {
      if (err?.code !== 'conflict') this.log('roomlog snapshot refused', { room: this.roomName, err: String(err) });
    });
    return true;
  }

  #synced() {
    this.#flush();
    this.synced = true;
    this.#considerSnapshot();
    this.#sendAwareness([this.doc.clientID]);
    for (const resolve of this.listeners) resolve();
    this.listeners.clear();
  }

  #sendAwareness(clients) {
    if (!this.awareness || !this.room) return;
    this.room.signal({ a: toBase64(awarenessProtocol.encodeAwarenessUpdate(this.awareness, clients)) });
  }

  #signal(sig) {
    if (!this.awareness || typeof sig.body?.a !== 'string') return;
    const update = fromBase64(sig.body.a);
    const ids = this.awarenessBySession.get(sig.session) ?? new Set();
    for (const id of awarenessClients(update)) ids.add(id);
    this.awarenessBySession.set(sig.session, ids);
    awarenessProtocol.applyAwarenessUpdate(this.awareness, update, this);
  }

  #members(members) {
    this.onMembers(members);
    if (!this.awareness) return;
    const present = new Set(members.map((m) => m.session));
    for (const [session, ids] of this.awarenessBySession) {
      if (present.has(session)) continue;
      awarenessProtocol.removeAwarenessStates(this.awareness, [...ids], this);
      this.awarenessBySession.delete(session);
    }
    if (this.synced) this.#sendAwareness([this.doc.clientID]); // a newcomer sees us at once
  }
}

/** The client ids an awareness update speaks of (its format: a count, then id, clock, state). */
function awarenessClients(update) {
  const ids = [];
  let pos = 0;
  const readVar = () => {
    let n = 0;
    let mult = 1;
    for (;;) {
      const b = update[pos++];
      n += (b & 0x7f) * mult;
      if (b < 0x80) return n;
      mult *= 128;
    }
  };
  const count = readVar();
  for (let i = 0; i < count && pos < update.length; i++) {
    ids.push(readVar());
    readVar(); // clock
    const len = readVar();
    pos += len; // the state, a JSON string
  }
  return ids;
}

/** An update as a body holds it: base64 text (JSON, and the log), or bytes (sent over MessagePack). */
function updateBytes(u) {
  return u instanceof Uint8Array ? u : fromBase64(u);
}

/** Standard base64, as the body of a "yjs" event carries an update. */
export function toBase64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

export function fromBase64(text) {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}
