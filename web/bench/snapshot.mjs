// The time to open a document of 100,000 Yjs updates, without and with a snapshot, from Node and
// in the editor page in headless Chromium, against a real roomlog serve (built from this tree,
// development mode, loopback). Run from web/ after npm ci, with Chromium installed:
//   node --experimental-websocket bench/snapshot.mjs
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import * as Y from 'yjs';

import { RoomlogClient } from '../client/src/index.js';
import { RoomlogProvider } from '../client/src/yjs.js';
import { buildRoomlog, freePort, serve, stop, until } from '../client/test/helpers.js';

const N = Number(process.env.N ?? 100000);
const RUNS = 3;
const t0 = Date.now();
const progress = (what) => console.error(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${what}`);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const f = (xs) => `median ${median(xs).toFixed(0)} ms (runs: ${xs.map((x) => x.toFixed(0)).join(', ')})`;

const { dir } = buildRoomlog();
const port = await freePort();
const server = await serve(join(dir, 'snap.db'), port, { dev: true, args: ['--max-frame', String(4 << 20)] });
const base = `http://127.0.0.1:${port}`;
const devToken = async (user) => (await (await fetch(`${base}/dev/token`, { method: 'POST', body: JSON.stringify({ user }) })).json()).token;
const url = `ws://127.0.0.1:${port}/v1/ws`;
let browser;
try {
  const tok = await devToken('writer');
  const writer = new RoomlogClient({ url, token: () => tok, session: 'writer' });
  await writer.start();
  const doc = new Y.Doc();
  const provider = await new RoomlogProvider(writer, 'doc:long', doc, { snapshotEvery: 0 }).start();
  await provider.whenSynced();
  const text = doc.getText('text');
  for (let i = 0; i < N; i += 1000) {
    for (let k = 0; k < 1000; k++) text.insert(text.length, String.fromCharCode(97 + ((i + k) % 26)));
    await until(() => writer.outstanding < 2000, 'the outbox drains', 120000);
  }
  await until(() => writer.outstanding === 0 && provider.cursor >= '' && text.length === N, 'the document published', 300000);
  await until(() => provider.synced && provider.events >= N, 'every update back', 300000);
  progress(`${N} Yjs updates published`);

  /** Opens the document from Node with a client and provider of its own; ms to synced. */
  const openNode = async (session) => {
    const c = new RoomlogClient({ url, token: () => tok, session });
    await c.start();
    const d = new Y.Doc();
    const t = performance.now();
    const p = await new RoomlogProvider(c, 'doc:long', d, { snapshotEvery: 0 }).start();
    await p.whenSynced();
    const ms = performance.now() - t;
    if (d.getText('text').length !== N) throw new Error(`opened ${d.getText('text').length} of ${N}`);
    await p.destroy();
    c.close();
    return ms;
  };
  browser = await chromium.launch({ executablePath: process.env.ROOMLOG_CHROMIUM ?? '/usr/bin/chromium', args: ['--no-sandbox'] });
  /** Opens the editor page in a new context (nothing saved); ms to the whole text. */
  const openPage = async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const t = performance.now();
    await page.goto(`${base}/?doc=doc:long`);
    await page.waitForFunction((n) => window.roomlog?.provider?.synced && window.roomlog.provider.doc.getText('text').length === n, N, { timeout: 300000, polling: 20 });
    const ms = performance.now() - t;
    await context.close();
    return ms;
  };
  // The editor page snapshots a document it opened from the start (as every member does after
  // 1,000 events): after the first page, the document has a snapshot. So without a snapshot the
  // page is measured once.
  const measure = async (label, pages) => {
    const node = [];
    const page = [];
    for (let r = 0; r < RUNS; r++) node.push(await openNode(`${label}-node-${r}`));
    for (let r = 0; r < pages; r++) page.push(await openPage());
    progress(`${label}: node ${f(node)}; chromium ${f(page)}`);
    return { node, page };
  };
  const without = await measure('no snapshot', 1);
  await until(async () => (await (await provider.joined()).latestSnapshot()) !== null, 'the snapshot the page took', 60000);
  const withSnap = await measure('with a snapshot', RUNS);
  console.log(`open a document of ${N} Yjs updates (nothing saved locally):`);
  console.log(`  Node, no snapshot:          ${f(without.node)}`);
  console.log(`  Node, from the snapshot:    ${f(withSnap.node)}`);
  console.log(`  Chromium, no snapshot:      ${f(without.page)} (one run: that page then published a snapshot)`);
  console.log(`  Chromium, from the snapshot: ${f(withSnap.page)}`);
  await provider.destroy();
  writer.close();
} finally {
  await browser?.close();
  await stop(server);
  rmSync(dir, { recursive: true, force: true });
}
