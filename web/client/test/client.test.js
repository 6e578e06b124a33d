// The client against a real roomlog server (built from this repository), over loopback WebSocket:
// delivery once and in order across a kill -9 and restart, the outbox resent under its keys, and
// permanent refusals returned, not retried.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

import { RoomlogClient, RoomlogError, MemoryStore, newKey, ulidTime } from '../src/index.js';

const SECRET = 'js-client-test-secret';
const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
let dir, bin;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'roomlog-js-'));
  bin = join(dir, 'roomlog');
  execFileSync('go', ['build', '-o', bin, './cmd/roomlog'], { cwd: repo, stdio: 'inherit' });
});

after(() => rmSync(dir, { recursive: true, force: true }));

/** An HS256 JWT, as roomlog token makes them. */
function token(sub, rooms = ['*'], ttlSeconds = 3600) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, rooms, exp: Math.floor(Date.now() / 1000) + ttlSeconds })}`;
  return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}

async function freePort() {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Starts roomlog serve on data and port; resolves once it listens. */
function serve(data, port) {
  const proc = spawn(bin, ['serve', '--addr', `127.0.0.1:${port}`, '--data', data, '--jwt-secret', SECRET, '--grace', '1h', '--publish-rate', '0'],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  let logs = '';
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

function stop(proc, signal = 'SIGKILL') {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
    proc.once('exit', resolve);
    proc.kill(signal);
  });
}

function client(port, sub, extra = {}) {
  return new RoomlogClient({
    url: `ws://127.0.0.1:${port}/v1/ws`, token: () => token(sub), session: `${sub}-device`,
    minBackoff: 20, maxBackoff: 300, ackInterval: 50, log: process.env.ROOMLOG_JS_DEBUG ? (m, f) => console.error(sub, m, f ?? '') : undefined, ...extra,
  });
}

async function until(cond, what, ms = 20000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('keys are ULIDs in publish order', () => {
  const keys = Array.from({ length: 1000 }, () => newKey());
  assert.deepEqual([...keys].sort(), keys);
  assert.equal(new Set(keys).size, keys.length);
  assert.ok(Math.abs(ulidTime(keys[0]) - Date.now()) < 5000);
});

test('join, publish, receive; history; presence; refusals are returned, not retried', async () => {
  const port = await freePort();
  const proc = await serve(join(dir, 'basic.db'), port);
  const alice = client(port, 'alice');
  const bob = client(port, 'bob', { token: () => token('bob', ['doc:*']) });
  try {
    await alice.start();
    await bob.start();
    const got = [];
    const room = await alice.join('doc:1', { onEvent: (e) => got.push(e), presence: { name: 'Alice' } });
    for (let i = 0; i < 5; i++) {
      const ack = await bob.publish('doc:1', { i });
      assert.equal(ack.room, 'doc:1');
      assert.equal(ack.duplicate, false);
    }
    await until(() => got.filter((e) => e.kind === 'message').length === 5, 'five messages');
    assert.deepEqual(got.filter((e) => e.kind === 'message').map((e) => e.body.i), [0, 1, 2, 3, 4]);
    assert.ok(got.every((e) => e.id > '' && e.ts.endsWith('Z')));
    await room.setPresence({ name: 'Alice', typing: true });
    const page = await room.history({ limit: 3 });
    assert.equal(page.events.length, 3);
    assert.equal(page.more, true);
    await assert.rejects(bob.publish('secret', 1), (err) => err instanceof RoomlogError && err.code === 'forbidden' && !err.temporary);
    await assert.rejects(bob.publish('doc:1', 1, { kind: 'join' }), (err) => err.code === 'bad_frame');
    assert.equal(bob.outstanding, 0);
  } finally {
    alice.close();
    bob.close();
    await stop(proc);
  }
});

test('a bad token is refused at start', async () => {
  const port = await freePort();
  const proc = await serve(join(dir, 'refused.db'), port);
  const c = client(port, 'eve', { token: () => 'not.a.jwt' });
  try {
    await assert.rejects(c.start(), (err) => err instanceof RoomlogError && err.code === 'unauthenticated');
  } finally {
    c.close();
    await stop(proc);
  }
});

test('every event once, in order, across kill -9 and restart; the outbox is resent once', async () => {
  const port = await freePort();
  const data = join(dir, 'crash.db');
  let proc = await serve(data, port);
  const store = new MemoryStore();
  const got = [];
  const sub = client(port, 'sub', { store });
  const pub = client(port, 'pub');
  try {
    await sub.start();
    await pub.start();
    await sub.join('doc:c', { onEvent: (e) => e.kind === 'message' && got.push(e) });
    const acks = [];
    for (let i = 0; i < 20; i++) acks.push(pub.publish('doc:c', { i }));
    await Promise.all(acks);
    await stop(proc); // kill -9
    // Publishes made while the server is down wait in the outbox.
    const offline = [];
    for (let i = 20; i < 30; i++) offline.push(pub.publish('doc:c', { i }));
    await new Promise((r) => setTimeout(r, 300));
    proc = await serve(data, port);
    const offlineAcks = await Promise.all(offline);
    for (let i = 30; i < 40; i++) await pub.publish('doc:c', { i });
    await until(() => got.length >= 40, '40 messages');
    await new Promise((r) => setTimeout(r, 200)); // and no duplicates after
    assert.deepEqual(got.map((e) => e.body.i), Array.from({ length: 40 }, (_, i) => i));
    assert.equal(new Set(got.map((e) => e.id)).size, 40);
    assert.ok(offlineAcks.every((a) => a.id));
    assert.ok(sub.reconnects >= 1 && pub.reconnects >= 1);
    await until(() => store.cursors.get('doc:c') === got[39].id, 'the cursor saved');
  } finally {
    sub.close();
    pub.close();
    await stop(proc);
  }
});
