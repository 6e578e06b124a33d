// IndexedDBStore: the client's store in a browser, so cursors, the outbox and application state
// survive a reload, a closed tab and a browser restart. No dependency: IndexedDB as browsers give
// it (and fake-indexeddb or similar elsewhere, passed as the factory).

const VERSION = 1;

/** Cursors, the outbox and application state in one IndexedDB database. */
export class IndexedDBStore {
  /**
   * @param {string} name the database is "roomlog:" + name; give each tab slot its own (see claimTab)
   * @param {IDBFactory} [factory] default globalThis.indexedDB
   */
  constructor(name, factory = globalThis.indexedDB) {
    if (!factory) throw new Error('roomlog: IndexedDBStore needs IndexedDB (a browser, or a factory)');
    this.name = `roomlog:${name}`;
    this.db = new Promise((resolve, reject) => {
      const req = factory.open(this.name, VERSION);
      req.onupgradeneeded = () => {
        const db = req.result;
        for (const store of ['cursors', 'outbox', 'state']) {
          if (!db.objectStoreNames.contains(store)) db.createObjectStore(store);
        }
      };
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(new Error(`roomlog: cannot open IndexedDB ${this.name}: ${req.error}`));
      req.onblocked = () => reject(new Error(`roomlog: IndexedDB ${this.name} is blocked by another tab's older version`));
    });
  }

  /** Runs fn on one object store in one transaction; resolves with its request's result once committed. */
  async #tx(store, mode, fn) {
    const db = await this.db;
    return new Promise((resolve, reject) => {
      const tx = db.transaction(store, mode, { durability: 'strict' });
      let result;
      const req = fn(tx.objectStore(store));
      if (req) req.onsuccess = () => (result = req.result);
      tx.oncomplete = () => resolve(result);
      tx.onerror = () => reject(new Error(`roomlog: IndexedDB ${this.name}/${store}: ${tx.error}`));
      tx.onabort = () => reject(new Error(`roomlog: IndexedDB ${this.name}/${store} aborted: ${tx.error}`));
    });
  }

  async cursor(room) {
    return (await this.#tx('cursors', 'readonly', (s) => s.get(room))) ?? '';
  }

  /** Saves id as the room's cursor unless the saved one is greater (a cursor never goes back). */
  async setCursor(room, id) {
    await this.#tx('cursors', 'readwrite', (s) => {
      const get = s.get(room);
      get.onsuccess = () => {
        if (id > (get.result ?? '')) s.put(id, room);
      };
    });
  }

  async addOutgoing(entry) {
    await this.#tx('outbox', 'readwrite', (s) => s.put(entry, entry.key));
  }

  async removeOutgoing(key) {
    await this.#tx('outbox', 'readwrite', (s) => s.delete(key));
  }

  /** The outbox in key order, which is publish order (keys are monotonic ULIDs). */
  async outgoing() {
    return (await this.#tx('outbox', 'readonly', (s) => s.getAll())) ?? [];
  }

  async getState(name) {
    return this.#tx('state', 'readonly', (s) => s.get(name));
  }

  async setState(name, value) {
    await this.#tx('state', 'readwrite', (s) => s.put(value, name));
  }

  /** Closes the database. */
  async close() {
    (await this.db).close();
  }
}
