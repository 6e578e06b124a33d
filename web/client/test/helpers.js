// Test helpers shared by the client's and the editor's tests: a roomlog binary built from this
// repository, real servers on loopback, real HS256 tokens.
import { spawn, execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

import * as Y from 'yjs';
import { Awareness } from 'y-protocols/awareness';

import { RoomlogClient } from '../src/index.js';
import { RoomlogProvider } from '../src/yjs.js';

export const SECRET = 'js-client-test-secret-of-32-bytes-or-more';
export const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
let bin = '';

/** Builds roomlog from the tree into a new temporary directory; returns both paths. */
export function buildRoomlog() {
  const dir = mkdtempSync(join(tmpdir(), 'roomlog-js-'));
  bin = join(dir, 'roomlog');
  execFileSync('go', ['build', '-o', bin, './cmd/roomlog'], { cwd: repo, stdio: 'inherit' });
  return { dir, bin };
}

/** An HS256 JWT, as roomlog token makes them; claims adds others ({admin: true}). */
export function token(sub, rooms = ['*'], ttlSeconds = 3600, claims = {}) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, rooms, exp: Math.floor(Date.now() / 1000) + ttlSeconds, ...claims })}`;
  return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}

export async function freePort() {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts roomlog serve (built by buildRoomlog) on data and port; resolves once it listens. With
 * args.dev the server runs in development mode (no secret: the editor's token endpoint is on).
 */
export function serve(data, port, { dev = false, args = [] } = {}) {
  const auth = dev ? [] : ['--jwt-secret', SECRET];
  const proc = spawn(bin, ['serve', '--addr', `127.0.0.1:${port}`, '--data', data, ...auth, '--grace', '1h', '--publish-rate', '0', ...args],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  let logs = '';
  proc.logs = () => logs;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${logs}`)), 30000);
    proc.stderr.on('data', (b) => {
      logs += b;
      if (logs.includes('roomlog serving')) {
        clearTimeout(timer);
        resolve(proc);
      }
    });
    proc.on('exit', (code) => reject(new Error(`server exited with ${code}:\n${logs}`)));
  });
}

/** Stops a server this test started, by its process (kill -9 by default). */
export function stop(proc, signal = 'SIGKILL') {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
    proc.once('exit', resolve);
    proc.kill(signal);
  });
}

/** Waits for cond, polling, failing after ms. */
export async function until(cond, what, ms = 20000) {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * An editor: a client, a document, its awareness and the provider, over store; the document's
 * text is "t". claims are added to the user's token (snapshot_rooms, to publish snapshots).
 */
export async function yjsEditor(port, user, store, { offline = false, codec = 'json', room = 'doc:y', snapshotEvery, claims = {} } = {}) {
  const client = new RoomlogClient({
    url: `ws://127.0.0.1:${port}/v1/ws`, token: () => token(user, ['*'], 3600, claims), session: `${user}-tab`, store, codec,
    minBackoff: 20, maxBackoff: 300, ackInterval: 50,
  });
  if (offline) client.pause();
  const doc = new Y.Doc();
  const awareness = new Awareness(doc);
  const provider = new RoomlogProvider(client, room, doc, { awareness, saveDelay: 20, snapshotEvery });
  await client.start();
  await provider.start();
  const text = doc.getText('t');
  return { client, doc, awareness, provider, text, async close() {
    await provider.destroy();
    awareness.destroy();
    client.close();
  } };
}
