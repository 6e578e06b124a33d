// The editor's history panel in headless Chromium against a real roomlog serve (built from this
// tree, on loopback): a document of 100,000 Yjs updates by two people, with a snapshot every
// 1,000 events, and the same document without snapshots. Measured: from clicking History to the
// timeline shown (the newest page of the past read) and to all of it read, and from clicking a
// version (the newest, one in the middle, an early one) to it shown with who wrote what. Run from web/ after npm ci, with Chromium installed:
//   node --experimental-websocket bench/history.mjs [updates]
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import * as Y from 'yjs';

import { RoomlogClient } from '../client/src/index.js';
import { toBase64 } from '../client/src/yjs.js';
import { buildRoomlog, freePort, serve, stop, token } from '../client/test/helpers.js';

const N = Number(process.argv[2] ?? 100000);
const SNAPSHOT_EVERY = 1000;
const RUNS = 3;
const t0 = Date.now();
const progress = (what) => console.error(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${what}`);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * Publishes a document of n one-keystroke updates by two people taking turns in runs of 500,
 * with a snapshot after every `every` updates (0: none).
 */
async function writeDocument(port, room, n, every) {
  const claims = { snapshot_rooms: ['*'] };
  const people = await Promise.all(['alice', 'bob'].map(async (user) => {
    const client = new RoomlogClient({ url: `ws://127.0.0.1:${port}/v1/ws`, token: () => token(user, ['*'], 3600, claims), session: `${user}-w` });
    await client.start();
    return { client, doc: new Y.Doc() };
  }));
  let last = '';
  for (let i = 0; i < n; i += 500) {
    const p = people[(i / 500) % 2];
    const other = people[1 - (i / 500) % 2];
    const text = p.doc.getText('text');
    const acks = [];
    for (let k = i; k < Math.min(n, i + 500); k++) {
      let update;
      const keep = (u) => (update = u);
      p.doc.on('update', keep);
      if (k % 9 === 8) text.delete(text.length - 1, 1);
      else text.insert(Math.floor(text.length * 0.6), String.fromCharCode(97 + (k % 26)));
      p.doc.off('update', keep);
      Y.applyUpdate(other.doc, update);
      acks.push(p.client.publish(room, { u: toBase64(update) }, { kind: 'yjs' }));
      if (every && (k + 1) % every === 0) {
        last = (await Promise.all(acks.splice(0))).at(-1).id;
        const state = toBase64(Y.encodeStateAsUpdate(p.doc));
        await p.client.publish(room, { covers: last, state, events: k + 1 }, { kind: 'snapshot', expect: last });
      }
    }
    await Promise.all(acks);
  }
  for (const p of people) p.client.close();
  return people[0].doc.getText('text').toString();
}

const { dir } = buildRoomlog();
const port = await freePort();
const server = await serve(join(dir, 'history.db'), port, { args: ['--max-frame', String(4 << 20)] });
const base = `http://127.0.0.1:${port}`;
let browser;
try {
  const rooms = { 'doc:snapshots': SNAPSHOT_EVERY, 'doc:nosnapshots': 0 };
  for (const [room, every] of Object.entries(rooms)) {
    const text = await writeDocument(port, room, N, every);
    progress(`${room}: ${N} updates published (${text.length} characters)`);
  }
  browser = await chromium.launch({ executablePath: process.env.ROOMLOG_CHROMIUM ?? '/usr/bin/chromium', args: ['--no-sandbox'] });
  const results = {};
  for (const room of Object.keys(rooms)) {
    const timeline = [];
    const whole = [];
    const shown = { newest: [], middle: [], early: [] };
    for (let run = 0; run < RUNS; run++) {
      const context = await browser.newContext();
      const page = await context.newPage();
      page.on('pageerror', (e) => progress(`page error: ${e.message}`));
      await page.goto(`${base}/?doc=${encodeURIComponent(room)}#token=${token(`viewer${run}`, ['*'])}`);
      await page.waitForSelector('body[data-synced]', { timeout: 300000 });
      let t = performance.now();
      await page.click('#history-toggle');
      await page.waitForSelector('body[data-history]', { timeout: 120000 }); // the newest page shown
      timeline.push(performance.now() - t);
      await page.waitForSelector('body[data-history="loaded"]', { timeout: 120000 });
      whole.push(performance.now() - t);
      const items = page.locator('#versions li');
      const count = await items.count();
      for (const [which, index] of [['newest', 0], ['middle', Math.floor(count / 2)], ['early', count - 3]]) {
        const id = await items.nth(index).getAttribute('data-version');
        t = performance.now();
        await items.nth(index).click();
        await page.waitForSelector(`#version-view[data-version="${id}"]`, { timeout: 120000 });
        shown[which].push(performance.now() - t);
      }
      progress(`${room} run ${run}: timeline ${timeline.at(-1).toFixed(0)} ms, all ${whole.at(-1).toFixed(0)} ms (${count} versions), versions ${Object.values(shown).map((xs) => xs.at(-1).toFixed(0)).join(' / ')} ms`);
      await context.close();
    }
    results[room] = { timeline, whole, ...shown };
  }
  const f = (xs) => `median ${median(xs).toFixed(0)} ms (runs: ${xs.map((x) => x.toFixed(0)).join(', ')})`;
  for (const [room, r] of Object.entries(results)) {
    console.log(`${room}, ${N} updates${rooms[room] ? `, a snapshot every ${rooms[room]}` : ', no snapshot'}:`);
    console.log(`  History clicked to the timeline shown (its newest page): ${f(r.timeline)}`);
    console.log(`  ... to every version read: ${f(r.whole)}`);
    for (const which of ['newest', 'middle', 'early']) console.log(`  the ${which} version shown, with who wrote what: ${f(r[which])}`);
  }
} finally {
  await browser?.close();
  await stop(server);
  rmSync(dir, { recursive: true, force: true });
}
