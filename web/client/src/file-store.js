// FileStore: the client's store in Node, in one JSON file, so a service or a CLI resumes where it
// stopped across restarts. Each change rewrites the file atomically (a temporary file, fsync,
// rename, fsync of the directory): after a crash the file holds the state before or after the
// change, never a torn one. Bytes (a Uint8Array in a body) are kept as {"$bytes":"<base64>"}.

import { open, readFile, rename } from 'node:fs/promises';
import { dirname } from 'node:path';

export class FileStore {
  /** @param {string} path created on the first change */
  constructor(path) {
    this.path = path;
    this.data = readFile(path, 'utf8').then(
      (text) => {
        const d = JSON.parse(text, (_, v) => (v && typeof v === 'object' && typeof v.$bytes === 'string' ? Buffer.from(v.$bytes, 'base64') : v));
        return { cursors: d.cursors ?? {}, outbox: d.outbox ?? {}, state: d.state ?? {} };
      },
      (err) => {
        if (err.code === 'ENOENT') return { cursors: {}, outbox: {}, state: {} };
        throw new Error(`roomlog: cannot read ${path}: ${err.message}`);
      },
    );
    this.writes = Promise.resolve();
  }

  /** Applies change to the data and writes the file; changes are written one at a time, in order. */
  async #change(change) {
    const d = await this.data;
    change(d);
    const text = JSON.stringify(d, (_, v) => (v instanceof Uint8Array ? { $bytes: Buffer.from(v).toString('base64') } : v));
    const write = this.writes.then(() => this.#write(text));
    this.writes = write.catch(() => {});
    return write;
  }

  async #write(text) {
    const tmp = `${this.path}.tmp`;
    const f = await open(tmp, 'w', 0o600);
    try {
      await f.writeFile(text);
      await f.sync();
    } finally {
      await f.close();
    }
    await rename(tmp, this.path);
    const dir = await open(dirname(this.path), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }

  async cursor(room) {
    return (await this.data).cursors[room] ?? '';
  }
  async setCursor(room, id) {
    if (id <= (await this.cursor(room))) return;
    await this.#change((d) => (d.cursors[room] = id));
  }
  async addOutgoing(entry) {
    await this.#change((d) => (d.outbox[entry.key] = entry));
  }
  async removeOutgoing(key) {
    if (!((await this.data).outbox[key])) return;
    await this.#change((d) => delete d.outbox[key]);
  }
  async outgoing() {
    const d = await this.data;
    return Object.keys(d.outbox).sort().map((k) => d.outbox[k]);
  }
  async getState(name) {
    return (await this.data).state[name];
  }
  async setState(name, value) {
    await this.#change((d) => (d.state[name] = value));
  }
}
