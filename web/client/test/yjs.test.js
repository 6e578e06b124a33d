// The Yjs provider against a real roomlog server: documents converge; edits made offline survive
// a reload (the store outlives the client, as IndexedDB does) and reach the others once;
// awareness travels by signals, not the log.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';

import * as Y from 'yjs';

import { RoomlogClient, MemoryStore } from '../src/index.js';
import { RoomlogProvider, YJS_KIND } from '../src/yjs.js';
import { buildRoomlog, token, freePort, serve, stop, until, yjsEditor } from './helpers.js';

let dir;
before(() => ({ dir } = buildRoomlog()));
after(() => rmSync(dir, { recursive: true, force: true }));

/** The room's events, read from the start by a client of its own. */
async function roomEvents(port) {
  const reader = new RoomlogClient({ url: `ws://127.0.0.1:${port}/v1/ws`, token: () => token('auditor') });
  const got = [];
  try {
    await reader.start();
    const room = await reader.join('doc:y', { fromStart: true, onEvent: (e) => got.push(e) });
    await until(() => room.synced, 'the reader synced');
    return got;
  } finally {
    reader.close();
  }
}

test('two editors (one on JSON, one on MessagePack) converge; offline edits survive a reload and arrive once; awareness by signals', async () => {
  const port = await freePort();
  const proc = await serve(join(dir, 'yjs.db'), port);
  const storeB = new MemoryStore(); // B's "IndexedDB": it outlives B's page
  const a = await yjsEditor(port, 'alice', new MemoryStore());
  let b = await yjsEditor(port, 'bob', storeB, { codec: 'msgpack' });
  try {
    await a.provider.whenSynced();
    await b.provider.whenSynced();
    a.text.insert(0, 'hello');
    await until(() => b.text.toString() === 'hello', 'bob sees hello');
    b.text.insert(5, ' world');
    await until(() => a.text.toString() === 'hello world', 'alice sees world');

    a.awareness.setLocalStateField('user', { name: 'Alice' });
    await until(() => [...b.awareness.getStates().values()].some((s) => s.user?.name === 'Alice'), 'bob sees alice in awareness');

    // Bob goes offline, edits, reloads while still offline, and comes back.
    b.client.pause();
    b.text.insert(0, '> ');
    b.text.insert(b.text.length, '!');
    a.text.insert(5, ',');
    await until(async () => (await storeB.outgoing()).length === 2, "bob's two edits in his outbox");
    await b.provider.save();
    await b.close();
    b = await yjsEditor(port, 'bob', storeB, { offline: true, codec: 'msgpack' });
    assert.equal(b.text.toString(), '> hello world!', 'the reloaded page shows the offline edits, offline');
    b.client.resume();
    await b.provider.whenSynced();
    const want = '> hello, world!';
    await until(() => a.text.toString() === want && b.text.toString() === want, `both read ${JSON.stringify(want)}`);
    await until(() => b.client.outstanding === 0, "bob's outbox empty");

    // Each update is in the log once; awareness is not in the log at all.
    const events = await roomEvents(port);
    const updates = events.filter((e) => e.kind === YJS_KIND);
    assert.equal(new Set(updates.map((e) => e.key)).size, updates.length, 'an update appended twice');
    assert.equal(updates.length, 5, 'five edits, five updates');
    assert.ok(events.every((e) => e.kind === YJS_KIND || ['join', 'leave', 'presence'].includes(e.kind)));
    const replayed = new Y.Doc();
    for (const e of updates) Y.applyUpdate(replayed, Buffer.from(e.body.u, 'base64'));
    assert.equal(replayed.getText('t').toString(), want, 'the log alone rebuilds the document');
  } finally {
    await a.close();
    await b.close();
    await stop(proc);
  }
});

test('a long replay is applied in a few transactions, and the saved cursor is never ahead of the document', async () => {
  const port = await freePort();
  const proc = await serve(join(dir, 'yjs-long.db'), port);
  const w = await yjsEditor(port, 'writer', new MemoryStore());
  try {
    await w.provider.whenSynced();
    for (let i = 0; i < 3000; i++) w.text.insert(i, 'x');
    await until(() => w.client.outstanding === 0, 'the updates acked');

    const store = new MemoryStore();
    const saves = [];
    const setState = store.setState.bind(store);
    store.setState = async (name, value) => {
      const copy = new Y.Doc();
      Y.applyUpdate(copy, Buffer.from(value.update, 'base64'));
      saves.push({ cursor: value.cursor, length: copy.getText('t').length });
      return setState(name, value);
    };
    const client = new RoomlogClient({ url: `ws://127.0.0.1:${port}/v1/ws`, token: () => token('late'), session: 'late', store });
    const doc = new Y.Doc();
    let transactions = 0;
    const provider = new RoomlogProvider(client, 'doc:y', doc, { saveDelay: 1 });
    doc.on('afterTransaction', (tr) => tr.origin === provider && transactions++);
    await client.start();
    await provider.start();
    await provider.whenSynced();
    assert.equal(doc.getText('t').length, 3000);
    assert.ok(transactions <= 10, `${transactions} transactions for a replay of 3000 updates`);
    await provider.destroy();
    client.close();
    // Each save holds exactly the updates up to its cursor: as many letters as yjs events up to it.
    const events = (await roomEvents(port)).filter((e) => e.kind === YJS_KIND);
    for (const s of saves) {
      assert.equal(s.length, events.filter((e) => e.id <= s.cursor).length, `a save at ${s.cursor}`);
    }
    assert.ok(saves.length >= 1);
  } finally {
    await w.close();
    await stop(proc);
  }
});

test('snapshots: a member publishes one every N events; a newcomer starts at it; compaction keeps the document whole', async () => {
  const port = await freePort();
  const proc = await serve(join(dir, 'yjs-snap.db'), port);
  const mk = async (user, store = new MemoryStore()) => {
    // Only alice is trusted with snapshots; the others edit but never publish one.
    const claims = user === 'alice' ? { snapshot_rooms: ['doc:*'] } : {};
    const client = new RoomlogClient({ url: `ws://127.0.0.1:${port}/v1/ws`, token: () => token(user, ['*'], 3600, claims), session: `${user}-s`, store, ackInterval: 50 });
    const doc = new Y.Doc();
    const provider = new RoomlogProvider(client, 'doc:snap', doc, { snapshotEvery: 100, snapshotIdle: 200, saveDelay: 1 });
    await client.start();
    await provider.start();
    await provider.whenSynced();
    return { client, doc, provider, text: doc.getText('t'), async close() { await provider.destroy(); client.close(); } };
  };
  const a = await mk('alice');
  // A member that saved its document early on, and goes away.
  const oldStore = new MemoryStore();
  const old = await mk('olga', oldStore);
  a.text.insert(0, 'start ');
  await until(() => old.text.toString() === 'start ', 'olga has the start');
  await old.provider.save();
  await old.close();
  const members = [a];
  try {
    for (let i = 0; i < 250; i++) a.text.insert(a.text.length, String(i % 10));
    await until(() => a.client.outstanding === 0, 'the updates acked');
    const want = a.text.toString();
    const room = await a.provider.joined();
    await until(async () => (await room.latestSnapshot())?.body?.events >= 200, 'a snapshot every 100 events', 20000);
    // A newcomer with nothing saved starts at the latest snapshot.
    const b = await mk('bob');
    members.push(b);
    assert.equal(b.text.toString(), want);
    assert.ok((await b.provider.joined()).snapshot, 'bob joined from a snapshot');
    assert.ok(b.provider.events >= 250, `bob counts ${b.provider.events} events, as one who read them all`);
    // An operator compacts; olga comes back with a cursor from before it.
    const res = await fetch(`http://127.0.0.1:${port}/v1/rooms/doc:snap/compact`, { method: 'POST', headers: { Authorization: `Bearer ${token('ops', [], 3600, { admin: true })}` } });
    const compacted = await res.json();
    assert.equal(res.status, 200, JSON.stringify(compacted));
    assert.ok(compacted.removed > 200, JSON.stringify(compacted));
    const back = await mk('olga', oldStore);
    members.push(back);
    assert.equal((await back.provider.joined()).cursorTooOld, true);
    assert.equal(back.text.toString(), want, 'the snapshot fills the gap the compaction made');
    const c = await mk('carol');
    members.push(c);
    assert.equal(c.text.toString(), want);
    // Everyone goes on editing together.
    c.text.insert(0, '> ');
    await until(() => members.every((m) => m.text.toString() === `> ${want}`), 'all converge after the compaction');
  } finally {
    for (const m of members) await m.close();
    await stop(proc);
  }
});

test('snapshots: a member whose token lacks snapshot_rooms never publishes one', async () => {
  const port = await freePort();
  const proc = await serve(join(dir, 'yjs-nosnap.db'), port);
  const logs = [];
  const client = new RoomlogClient({ url: `ws://127.0.0.1:${port}/v1/ws`, token: () => token('dora'), session: 'dora-s', store: new MemoryStore(), ackInterval: 50, log: (msg) => logs.push(msg) });
  const doc = new Y.Doc();
  const provider = new RoomlogProvider(client, 'doc:nosnap', doc, { snapshotEvery: 20, snapshotIdle: 50, saveDelay: 1 });
  try {
    await client.start();
    await provider.start();
    await provider.whenSynced();
    assert.equal(client.maySnapshot('doc:nosnap'), false);
    const text = doc.getText('t');
    for (let i = 0; i < 60; i++) text.insert(text.length, String(i % 10));
    await until(() => client.outstanding === 0, 'the updates acked');
    await new Promise((r) => setTimeout(r, 300)); // past snapshotIdle, several times
    const room = await provider.joined();
    assert.equal(await room.latestSnapshot(), null, 'no snapshot was published');
    assert.deepEqual(logs.filter((m) => m.includes('snapshot')), [], 'no snapshot was even tried');
  } finally {
    await provider.destroy();
    client.close();
    await stop(proc);
  }
});
