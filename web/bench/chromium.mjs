// Figures in headless Chromium against a real roomlog serve (built from this tree, development
// mode, on loopback): the time for a browser client to resume 10,000 missed events, and to open
// the editor on a document of 10,000 Yjs updates, first with no local state, then again with the
// document in IndexedDB. Run from web/ after npm ci, with Chromium installed:
//   node --experimental-websocket bench/chromium.mjs
import { rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as esbuild from 'esbuild';
import { chromium } from 'playwright-core';
import * as Y from 'yjs';

import { RoomlogClient } from '../client/src/index.js';
import { RoomlogProvider } from '../client/src/yjs.js';
import { buildRoomlog, freePort, serve, stop, until } from '../client/test/helpers.js';

const N = 10000;
const RUNS = 5;
const t0 = Date.now();
const progress = (what) => console.error(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${what}`);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const { dir } = buildRoomlog();
const port = await freePort();
const server = await serve(join(dir, 'bench.db'), port, { dev: true });
const base = `http://127.0.0.1:${port}`;
const devToken = async (user) => (await (await fetch(`${base}/dev/token`, { method: 'POST', body: JSON.stringify({ user }) })).json()).token;
let browser;
try {
  // N events to miss, and a document of N Yjs updates (one keystroke each).
  const tok = await devToken('writer');
  const writer = new RoomlogClient({ url: `ws://127.0.0.1:${port}/v1/ws`, token: () => tok, session: 'writer' });
  await writer.start();
  const before = (await writer.call({ type: 'history', room: 'bench:events', limit: 1 })).events.at(-1)?.id ?? '';
  for (let i = 0; i < N; i += 500) {
    await Promise.all(Array.from({ length: 500 }, (_, k) => writer.publish('bench:events', { i: i + k, text: 'x'.repeat(50) })));
  }
  progress(`${N} events published`);
  const doc = new Y.Doc();
  const provider = await new RoomlogProvider(writer, 'doc:big', doc).start();
  await provider.whenSynced();
  const text = doc.getText('text');
  for (let i = 0; i < N; i++) text.insert(i, String.fromCharCode(97 + (i % 26)));
  await until(() => writer.outstanding === 0, 'the document published', 120000);
  await provider.destroy();
  writer.close();
  progress(`${N} Yjs updates published`);

  // The same resume from Node, for scale.
  const nodeResume = [];
  for (let run = 0; run < RUNS; run++) {
    const c = new RoomlogClient({ url: `ws://127.0.0.1:${port}/v1/ws`, token: () => tok, session: `node${run}` });
    await c.start();
    let got = 0;
    const t = performance.now();
    await new Promise((resolve) => c.join('bench:events', { cursor: before, fromStart: before === '', onEvent: (e) => e.kind === 'message' && ++got === N && resolve() }));
    nodeResume.push(performance.now() - t);
    c.close();
  }
  progress(`node resume: ${nodeResume.map((x) => x.toFixed(0)).join(', ')} ms`);

  const bundle = await esbuild.build({ entryPoints: [resolve('client/src/index.js')], bundle: true, minify: true, format: 'iife', write: false, globalName: 'R' });
  progress('bundled');
  browser = await chromium.launch({ executablePath: process.env.ROOMLOG_CHROMIUM ?? '/usr/bin/chromium', args: ['--no-sandbox'] });

  const resume = [];
  for (let run = 0; run < RUNS; run++) {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.on('console', (m) => progress(`page: ${m.text()}`));
    page.on('pageerror', (e) => progress(`page error: ${e.message}`));
    // A page of the server's own origin (Chromium lets only such a page reach a loopback
    // server), with the client added to it.
    await page.goto(`${base}/healthz`);
    await page.addScriptTag({ content: bundle.outputFiles[0].text });
    const pageToken = await devToken(`reader${run}`);
    const ms = await page.evaluate(async ({ url, token, cursor, n }) => {
      const c = new window.R.RoomlogClient({ url, token: () => token, session: `s${Math.random()}` });
      await c.start();
      let got = 0;
      const t0 = performance.now();
      await new Promise((resolve) => {
        c.join('bench:events', { cursor, fromStart: cursor === '', onEvent: (e) => e.kind === 'message' && ++got === n && resolve() });
      });
      const t = performance.now() - t0;
      c.close();
      return t;
    }, { url: `ws://127.0.0.1:${port}/v1/ws`, token: pageToken, cursor: before, n: N });
    resume.push(ms);
    progress(`resume run ${run}: ${ms.toFixed(0)} ms`);
    await context.close();
  }

  // The browser's own cost: a bare WebSocket that says hello, joins and counts frames.
  const raw = [];
  for (let run = 0; run < RUNS; run++) {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${base}/healthz`);
    const pageToken = await devToken(`raw${run}`);
    raw.push(await page.evaluate(({ url, token, n }) => new Promise((resolve) => {
      const ws = new WebSocket(url, 'roomlog.v1.json');
      let got = 0;
      let t0 = 0;
      ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', token, session: `raw${Math.random()}` }));
      ws.onmessage = (m) => {
        const f = JSON.parse(m.data);
        if (f.type === 'welcome') {
          t0 = performance.now();
          ws.send(JSON.stringify({ type: 'join', ref: 'j', room: 'bench:events', after: '' }));
        } else if (f.type === 'event' && f.kind === 'message' && ++got === n) {
          resolve(performance.now() - t0);
          ws.close();
        }
      };
    }), { url: `ws://127.0.0.1:${port}/v1/ws`, token: pageToken, n: N }));
    await context.close();
  }
  progress(`bare WebSocket in Chromium: ${raw.map((x) => x.toFixed(0)).join(', ')} ms`);

  const cold = [];
  const warm = [];
  for (let run = 0; run < RUNS; run++) {
    const context = await browser.newContext();
    const page = await context.newPage();
    const open = async () => {
      const t0 = performance.now();
      await page.goto(`${base}/?doc=doc:big`);
      await page.waitForFunction((n) => window.roomlog?.provider?.synced && window.roomlog.provider.doc.getText('text').length === n, N, { timeout: 120000, polling: 10 });
      return performance.now() - t0;
    };
    cold.push(await open());
    await page.evaluate(() => window.roomlog.provider.save());
    warm.push(await open()); // a reload: the document from IndexedDB, then only what is new
    progress(`open run ${run}: ${cold.at(-1).toFixed(0)} ms, then ${warm.at(-1).toFixed(0)} ms`);
    await context.close();
  }
  const f = (xs) => `median ${median(xs).toFixed(0)} ms (runs: ${xs.map((x) => x.toFixed(0)).join(', ')})`;
  console.log(`resume ${N} missed events (a browser client, JSON): ${f(resume)}`);
  console.log(`the same with a bare WebSocket in Chromium (no client): ${f(raw)}`);
  console.log(`the same from Node 20 (@roomlog/client, JSON): ${f(nodeResume)}`);
  console.log(`open the editor on ${N} Yjs updates, no local state: ${f(cold)}`);
  console.log(`open it again, the document in IndexedDB: ${f(warm)}`);
} finally {
  await browser?.close();
  await stop(server);
  rmSync(dir, { recursive: true, force: true });
}
