// A document's past read back from a real roomlog server: versions built from snapshots equal
// the document built from every update; who wrote what; restoring an old version.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';

import * as Y from 'yjs';

import { MemoryStore } from '../src/index.js';
import { fromBase64, SNAPSHOT_KIND, YJS_KIND } from '../src/yjs.js';
import { readEvents, snapshotAt, loadSnapshotFor, versions, docAt, clientUsers, authorship, restoreText, editOf } from '../src/history.js';
import { buildRoomlog, token, freePort, serve, stop, until, yjsEditor } from './helpers.js';

let dir;
before(() => ({ dir } = buildRoomlog()));
after(() => rmSync(dir, { recursive: true, force: true }));

const ROOM = 'doc:h';
const trusted = { snapshot_rooms: ['*'] };

/** The document after event id, built with no snapshot: every update from the start, one by one. */
function replayed(events, id) {
  const doc = new Y.Doc();
  for (const ev of events) {
    if (ev.kind === YJS_KIND) Y.applyUpdate(doc, fromBase64(ev.body.u));
    if (ev.id === id) break;
  }
  return doc.getText('t').toString();
}

/** What each user wrote in the text, by the spans authorship gives. */
function byUser(text, spans) {
  const out = {};
  for (const s of spans) out[s.user] = (out[s.user] ?? '') + text.slice(s.from, s.to);
  return out;
}

test('versions from snapshots equal the document replayed; authorship after concurrent and offline edits; restore and undo it', async () => {
  const port = await freePort();
  const proc = await serve(join(dir, 'history.db'), port);
  const base = `http://127.0.0.1:${port}`;
  const opts = { room: ROOM, snapshotEvery: 7, claims: trusted };
  const a = await yjsEditor(port, 'alice', new MemoryStore(), opts);
  const b = await yjsEditor(port, 'bob', new MemoryStore(), opts);
  const read = async () => (await readEvents({ base, room: ROOM, token: token('reader') })).events;
  const snapshots = async () => (await read()).filter((e) => e.kind === SNAPSHOT_KIND).length;
  try {
    for (const c of 'Hello ') a.text.insert(a.text.length, c);
    await until(() => b.text.toString() === 'Hello ', 'bob sees alice');
    a.text.insert(a.text.length, '.'); // the seventh edit: a snapshot is due
    await until(async () => (await snapshots()) === 1, 'a first snapshot');
    a.text.delete(a.text.length - 1, 1);
    // Concurrent: both type at once, at either end.
    for (let i = 0; i < 5; i++) {
      a.text.insert(0, '>');
      b.text.insert(b.text.length, 'world'[i]);
    }
    await until(() => a.text.toString() === b.text.toString() && a.text.length === 16, 'convergence');
    // Offline: bob edits alone for a while, then comes back.
    b.client.pause();
    b.text.insert(b.text.length, '!!');
    a.text.delete(0, 2);
    b.client.resume();
    await until(() => a.text.toString() === b.text.toString() && a.text.length === 16, 'convergence after offline');
    await until(async () => (await snapshots()) >= 2, 'a second snapshot');
    const text = a.text.toString();

    const events = await read();
    const ids = events.filter((e) => e.kind === YJS_KIND || e.kind === SNAPSHOT_KIND).map((e) => e.id);
    for (const id of ids) {
      assert.equal(docAt(events, id).getText('t').toString(), replayed(events, id), `the version at ${id}`);
    }
    assert.equal(docAt(events, ids[ids.length - 1]).getText('t').toString(), text);

    const vs = versions(events);
    assert.equal(vs.reduce((n, v) => n + v.edits, 0), events.filter((e) => editOf(e)).length, 'every edit in one version');
    assert.deepEqual([...new Set(vs.map((v) => v.user))].sort(), ['alice', 'bob']);
    assert.ok(vs.every((v) => v.start <= v.end && v.inserted + v.deleted > 0));

    const last = docAt(events, ids[ids.length - 1]).getText('t');
    const who = byUser(last.toString(), authorship(last, clientUsers(events)));
    assert.deepEqual(who, { alice: '>>>Hello ', bob: 'world!!' }, 'each span by the one who typed it');

    // Restore the document as it was after alice typed "Hello " (her sixth edit): both editors
    // converge to it, and the log holds one restore.
    const first = { id: events.filter((e) => e.kind === YJS_KIND)[5].id };
    const old = docAt(events, first.id).getText('t').toString();
    assert.equal(old, 'Hello ');
    assert.equal(restoreText(b.text, old, first.id), true);
    await until(() => a.text.toString() === 'Hello ' && b.text.toString() === 'Hello ', 'both restored');
    let after = await read();
    await until(async () => (after = await read()).some((e) => e.body?.restored === first.id), 'the restore logged');
    assert.equal(after.filter((e) => e.body?.restored).length, 1, 'logged once');
    const restore = versions(after).at(-1);
    assert.equal(restore.restored, first.id);
    assert.equal(restore.user, 'bob');

    // Undo it: restore the version just before the restore.
    const before = versions(after).at(-2);
    assert.equal(restoreText(a.text, docAt(after, before.id).getText('t').toString(), before.id), true);
    await until(() => a.text.toString() === text && b.text.toString() === text, 'the restore undone');
    assert.equal(restoreText(a.text, text, before.id), false, 'nothing to restore');
  } finally {
    await a.close();
    await b.close();
    await stop(proc);
  }
});

test('bad input: ids not in the room, ranges past the head, a compacted room', async () => {
  const port = await freePort();
  const proc = await serve(join(dir, 'history-bad.db'), port);
  const base = `http://127.0.0.1:${port}`;
  const a = await yjsEditor(port, 'alice', new MemoryStore(), { room: ROOM, snapshotEvery: 5, claims: trusted });
  const tok = token('reader');
  try {
    let events = [];
    for (const [i, chunk] of ['abcdef', 'ghijkl'].entries()) {
      for (const c of chunk) a.text.insert(a.text.length, c);
      await until(async () => (events = (await readEvents({ base, room: ROOM, token: tok })).events).filter((e) => e.kind === SNAPSHOT_KIND).length > i, 'a snapshot');
    }
    // Read without the snapshots' states (max_body): a large edit still comes whole, and the
    // one snapshot a version needs is fetched.
    a.text.insert(0, 'p'.repeat(500));
    await until(async () => (await readEvents({ base, room: ROOM, token: tok })).events.some((e) => e.body?.u?.length > 500), 'the paste');
    const lean = await readEvents({ base, room: ROOM, token: tok, maxBody: 50 });
    assert.ok(lean.events.filter((e) => e.kind === SNAPSHOT_KIND).every((e) => e.body === undefined && e.body_size > 50), 'snapshot states left out');
    assert.ok(lean.events.filter((e) => e.kind === YJS_KIND).every((e) => typeof e.body.u === 'string'), 'edits whole');
    const leanLast = lean.events.filter((e) => e.kind === YJS_KIND).at(-1).id;
    await loadSnapshotFor(lean.events, leanLast, { base, room: ROOM, token: tok });
    assert.equal(docAt(lean.events, leanLast).getText('t').toString(), a.text.toString());
    // A writer's body that is no Yjs update is passed over, by the versions as by the editors.
    const bad = await fetch(`${base}/v1/rooms/${ROOM}/events`, {
      method: 'POST', headers: { Authorization: `Bearer ${token('mallory')}` }, body: JSON.stringify({ kind: YJS_KIND, body: { u: 'AQIDBAUG' } }),
    });
    assert.equal(bad.status, 201);
    events = (await readEvents({ base, room: ROOM, token: tok })).events;
    assert.equal(editOf(events.at(-1)), null);
    assert.equal(docAt(events, events.at(-1).id).getText('t').toString(), a.text.toString(), 'the garbage passed over');
    assert.ok(versions(events).every((v) => v.user !== 'mallory'));
    const head = events.at(-1).id;
    // Newest first, in small pages: each page as it comes, the same events in the end.
    const pages = [];
    const back = await readEvents({ base, room: ROOM, token: tok, maxBody: 50, newestFirst: true, pageSize: 3, onPage: (p) => pages.push(p.map((e) => e.id)) });
    assert.deepEqual(back.events.map((e) => e.id), events.map((e) => e.id));
    assert.deepEqual(pages[0], events.slice(-3).map((e) => e.id), 'the newest page first');
    assert.ok(back.events.filter((e) => e.kind === YJS_KIND).every((e) => typeof e.body.u === 'string'), 'edits whole, read back');
    assert.throws(() => docAt(events, '01JZZZZZZZZZZZZZZZZZZZZZZZ'), /no event/);
    assert.equal(await snapshotAt({ base, room: ROOM, token: tok, at: '01JZZZZZZZZZZZZZZZZZZZZZZZ' }), null);
    await assert.rejects(snapshotAt({ base, room: ROOM, token: tok, at: 'garbage' }), (err) => err.status === 400);
    await assert.rejects(readEvents({ base, room: ROOM, token: token('stranger', ['chat:*']) }), (err) => err.status === 403);
    const past = await readEvents({ base, room: ROOM, token: tok, after: head });
    assert.deepEqual(past.events, [], 'nothing after the head');
    const snap = await snapshotAt({ base, room: ROOM, token: tok, at: head });
    assert.equal(snap.kind, SNAPSHOT_KIND);

    const res = await fetch(`${base}/v1/rooms/${ROOM}/compact`, { method: 'POST', headers: { Authorization: `Bearer ${token('ops', [], 3600, { admin: true })}` } });
    assert.equal(res.status, 200);
    const cut = await readEvents({ base, room: ROOM, token: tok });
    assert.equal(cut.cursorTooOld, true);
    assert.ok(cut.floor, 'the floor is named');
    assert.equal(cut.events[0].kind, SNAPSHOT_KIND, 'the remaining history starts at the snapshot compacted to');
    const text = a.text.toString();
    assert.equal(docAt(cut.events, cut.events.at(-1).id).getText('t').toString(), text, 'the versions after the floor build');
    const removed = events[1].id;
    assert.equal(await snapshotAt({ base, room: ROOM, token: tok, at: removed }), null, 'a compacted event has no version');
  } finally {
    await a.close();
    await stop(proc);
  }
});
