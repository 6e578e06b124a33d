// Types of @roomlog/client/file-store (src/file-store.js), for Node.
import type { Outgoing, Store } from './index.js';

/** The store in one JSON file, rewritten atomically (temporary file, fsync, rename). */
export class FileStore implements Store {
  constructor(path: string);
  cursor(room: string): Promise<string>;
  setCursor(room: string, id: string): Promise<void>;
  addOutgoing(entry: Outgoing): Promise<void>;
  removeOutgoing(key: string): Promise<void>;
  outgoing(): Promise<Outgoing[]>;
  getState(name: string): Promise<unknown>;
  setState(name: string, value: unknown): Promise<void>;
}
