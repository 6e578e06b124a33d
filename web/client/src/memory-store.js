// The store of cursors, the outbox and application state in memory.

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

