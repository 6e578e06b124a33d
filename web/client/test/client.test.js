// The client against a real roomlog server (built from this repository), over loopback WebSocket:
// delivery once and in order across a kill -9 and restart, the outbox resent under its keys, and
// permanent refusals returned, not retried, token refresh, the key retention, signals, members,
// the offline switch and the file store.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';

import { RoomlogClient, RoomlogError, MemoryStore, newKey, ulidTime } from '../src/index.js';
import { FileStore } from '../src/file-store.js';
import { buildRoomlog, token, freePort, serve, stop, until } from './helpers.js';

let dir;
before(() => ({ dir } = buildRoomlog()));
after(() => rmSync(dir, { recursive: true, force: true }));

function client(port, sub, extra = {}) {
  return new RoomlogClient({
    url: `ws://127.0.0.1:${port}/v1/ws`, token: () => token(sub), session: `${sub}-device`,
    minBackoff: 20, maxBackoff: 300, ackInterval: 50, log: process.env.ROOMLOG_JS_DEBUG ? (m, f) => console.error(sub, m, f ?? '') : undefined, ...extra,
  });
}

test('keys are ULIDs in publish order', () => {
  const keys = Array.from({ length: 1000 }, () => newKey());
  assert.deepEqual([...keys].sort(), keys);
  assert.equal(new Set(keys).size, keys.length);
  assert.ok(Math.abs(ulidTime(keys[0]) - Date.now()) < 5000);
});

for (const codec of ['json', 'msgpack']) test(`${codec}: join, publish, receive; history; presence; refusals are returned, not retried`, async () => {
  const port = await freePort();
  const proc = await serve(join(dir, `basic-${codec}.db`), port);
  const alice = client(port, 'alice', { codec });
  const bob = client(port, 'bob', { codec, token: () => token('bob', ['doc:*']) });
  try {
    await alice.start();
    await bob.start();
    const got = [];
    const room = await alice.join('doc:1', { onEvent: (e) => got.push(e), presence: { name: 'Alice' } });
    const odd = { text: 'café ☕', n: [-1, 2 ** 40, 1.5, 0], nested: { ok: true, none: null } };
    await bob.publish('doc:1', odd);
    for (let i = 0; i < 5; i++) {
      const ack = await bob.publish('doc:1', { i });
      assert.equal(ack.room, 'doc:1');
      assert.equal(ack.duplicate, false);
    }
    await until(() => got.filter((e) => e.kind === 'message').length === 6, 'six messages');
    const messages = got.filter((e) => e.kind === 'message');
    assert.deepEqual(messages[0].body, odd, 'a body survives the codec both ways');
    assert.deepEqual(messages.slice(1).map((e) => e.body.i), [0, 1, 2, 3, 4]);
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

for (const codec of ['json', 'msgpack']) test(`${codec}: every event once, in order, across kill -9 and restart; the outbox is resent once`, async () => {
  const port = await freePort();
  const data = join(dir, `crash-${codec}.db`);
  let proc = await serve(data, port);
  const store = new MemoryStore();
  const got = [];
  const sub = client(port, 'sub', { store, codec });
  const pub = client(port, 'pub', { codec });
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

/** A key (a ULID) made ms milliseconds ago, as a publish made then would carry. */
function keyFrom(msAgo) {
  const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
  let t = Date.now() - msAgo;
  let time = '';
  for (let i = 0; i < 10; i++) {
    time = CROCKFORD[t % 32] + time;
    t = Math.floor(t / 32);
  }
  return time + newKey().slice(10);
}

test('the token is refreshed before it expires: the connection outlives it', async () => {
  const port = await freePort();
  const proc = await serve(join(dir, 'refresh.db'), port);
  let minted = 0;
  const c = client(port, 'shortlived', { token: () => (minted++, token('shortlived', ['*'], 3)) });
  try {
    await c.start();
    await new Promise((r) => setTimeout(r, 5000)); // past the first token's exp
    assert.equal(c.reconnects, 0, 'the server closed the connection: the token was not refreshed');
    assert.ok(minted >= 2, `token() called ${minted} times`);
    const ack = await c.publish('doc:r', 'still here');
    assert.ok(ack.id);
  } finally {
    c.close();
    await stop(proc);
  }
});

test('an outbox entry older than the key retention is handed back, not resent', async () => {
  const port = await freePort();
  const proc = await serve(join(dir, 'retention.db'), port, { args: ['--key-retention', '1m'] });
  const store = new MemoryStore();
  const stale = { key: keyFrom(2 * 60 * 1000), room: 'doc:k', body: 'two minutes old' };
  const fresh = { key: keyFrom(1000), room: 'doc:k', body: 'a second old' };
  await store.addOutgoing(stale);
  await store.addOutgoing(fresh);
  const uncertain = [];
  const c = client(port, 'k', { store, onUncertain: (e) => uncertain.push(e) });
  const reader = client(port, 'reader');
  try {
    await c.start();
    await until(() => c.outstanding === 0, 'the fresh entry acked');
    assert.deepEqual(uncertain.map((e) => e.key), [stale.key]);
    assert.deepEqual(await store.outgoing(), []);
    await reader.start();
    const got = [];
    await reader.join('doc:k', { fromStart: true, onEvent: (e) => e.kind === 'message' && got.push(e.body) });
    await until(() => got.length >= 1, 'the fresh entry delivered');
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(got, ['a second old']);
  } finally {
    c.close();
    reader.close();
    await stop(proc);
  }
});

test('signals reach the other members; members follow joins and leaves; the offline switch', async () => {
  const port = await freePort();
  const proc = await serve(join(dir, 'signals.db'), port);
  const alice = client(port, 'alice');
  const bob = client(port, 'bob');
  const statuses = [];
  const outbox = [];
  alice.on('status', (s) => statuses.push(s));
  alice.on('outbox', (n) => outbox.push(n));
  try {
    await alice.start();
    await bob.start();
    const heard = [];
    let bobMembers = [];
    const aliceRoom = await alice.join('doc:s', { presence: { name: 'Alice' } });
    await bob.join('doc:s', { onSignal: (s) => heard.push(s), onMembers: (m) => (bobMembers = m) });
    await until(() => aliceRoom.synced, 'alice synced');
    assert.deepEqual(bobMembers.map((m) => m.user), ['alice', 'bob']);
    assert.equal(aliceRoom.signal({ cursor: 3 }), true);
    await until(() => heard.length === 1, 'the signal');
    assert.deepEqual(heard[0], { room: 'doc:s', user: 'alice', session: 'alice-device', body: { cursor: 3 } });
    await aliceRoom.leave();
    await until(() => bobMembers.length === 1, 'alice gone from the members');

    alice.pause();
    assert.equal(alice.status, 'offline');
    assert.equal(aliceRoom.signal({ cursor: 4 }), false, 'a signal is not queued while offline');
    const ack = alice.publish('doc:s', 'written offline');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(alice.outstanding, 1, 'published while paused: it waits');
    alice.resume();
    assert.ok((await ack).id);
    assert.equal(alice.status, 'online');
    assert.deepEqual(statuses, ['online', 'offline', 'connecting', 'online']);
    assert.deepEqual(outbox.slice(-2), [1, 0]);
  } finally {
    alice.close();
    bob.close();
    await stop(proc);
  }
});

test('FileStore: the outbox and cursors survive the client process', async () => {
  const port = await freePort();
  const data = join(dir, 'filestore.db');
  const path = join(dir, 'client-state.json');
  let proc = await serve(data, port);
  let got = [];
  let c = client(port, 'svc', { store: new FileStore(path) });
  try {
    await c.start();
    await c.join('doc:f', { fromStart: true, onEvent: (e) => e.kind === 'message' && got.push(e.body) });
    await c.publish('doc:f', 1);
    await until(() => got.length === 1, 'the first message');
    await new Promise((r) => setTimeout(r, 200)); // the cursor is saved
    await stop(proc);
    c.publish('doc:f', 2).catch(() => {}); // waits in the file's outbox
    await new Promise((r) => setTimeout(r, 100));
    c.close(); // the process "exits" with it unsent
    proc = await serve(data, port);
    got = [];
    c = client(port, 'svc', { store: new FileStore(path) });
    await c.start();
    await c.join('doc:f', { onEvent: (e) => e.kind === 'message' && got.push(e.body) });
    await until(() => got.length === 1, 'the resent message');
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(got, [2], 'after the saved cursor: the resent publish only, once');
    assert.equal(c.outstanding, 0);
  } finally {
    c.close();
    await stop(proc);
  }
});

test('a room whose members the server lists only in part says so, with their count', async () => {
  const port = await freePort();
  const proc = await serve(join(dir, 'truncated.db'), port, { args: ['--max-members-listed', '2'] });
  const clients = ['m0', 'm1', 'm2', 'newcomer'].map((sub) => client(port, sub));
  try {
    for (const c of clients.slice(0, 3)) {
      await c.start();
      await c.join('crowd');
    }
    const last = clients[3];
    await last.start();
    const room = await last.join('crowd');
    assert.equal(room.membersTruncated, true);
    assert.equal(room.memberCount, 4);
    assert.ok(room.members.size < 4, `${room.members.size} members listed`);
  } finally {
    for (const c of clients) c.close();
    await stop(proc);
  }
});
