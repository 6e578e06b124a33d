// A joined room, as the application holds it.
import { RoomlogError } from './errors.js';

/**
 * A joined room. It stays joined across reconnects until leave().
 */
export class Room {
  /** @param {import('./client.js').RoomlogClient} client @param {string} name @param {object} opts */
  constructor(client, name, opts) {
    this.client = client;
    this.name = name;
    this.onEvent = opts.onEvent ?? (() => {});
    this.onSignal = opts.onSignal ?? (() => {});
    this.onMembers = opts.onMembers ?? (() => {});
    this.onSynced = opts.onSynced ?? (() => {});
    this.onRemoved = opts.onRemoved ?? (() => {});
    /** Why the server removed this session from the room ('' while a member). */
    this.removed = '';
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
    /** Joins refused as not decided now (unavailable) in a row: the next retry's backoff. */
    this.joinRetries = 0;
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

