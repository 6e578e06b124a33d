// Types of @roomlog/client/file-store (src/file-store.js), for Node.
import type { Store } from './index.js';

/** The store in one JSON file, rewritten atomically (temporary file, fsync, rename). */
export interface FileStore extends Store {}
export class FileStore {
  constructor(path: string);
}
