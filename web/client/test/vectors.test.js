// The client test vectors (testdata/client-vectors at the repository's root, played by the Go
// package internal/clientvectors): scripted conversations with a server over a real WebSocket,
// each saying what the application does, what the server sends and expects, and what the
// application must end up seeing. The Go client's tests play the same vectors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { RoomlogClient, RoomlogError } from '../src/index.js';
import { repo, until } from './helpers.js';

const vectorsDir = join(repo, 'testdata', 'client-vectors');
const vectors = readdirSync(vectorsDir).filter((f) => f.endsWith('.json')).sort()
  .map((f) => ({ name: f.slice(0, -'.json'.length), ...JSON.parse(readFileSync(join(vectorsDir, f), 'utf8')) }));

let dir, player, addr;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'roomlog-vectors-'));
  const bin = join(dir, 'play');
  execFileSync('go', ['build', '-o', bin, './internal/clientvectors/play'], { cwd: repo, stdio: 'inherit' });
  player = spawn(bin, ['--dir', vectorsDir], { stdio: ['ignore', 'pipe', 'inherit'] });
  addr = await new Promise((resolve, reject) => {
    let out = '';
    player.stdout.on('data', (b) => {
      out += b;
      const m = /listening (\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    player.on('exit', (code) => reject(new Error(`the vector player exited with ${code}`)));
  });
});
after(() => {
  player?.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

const result = async (name) => (await fetch(`http://${addr}/result/${name}`)).json();

/** Waits for the player to reach the end of the script, and a little longer (a connection the client should not open). */
async function played(name) {
  let res;
  await until(async () => {
    res = await result(name);
    if (res.error) throw new Error(`the script did not play through: ${res.error}`);
    return res.done;
  }, `the script of ${name}`, 15000);
  await new Promise((r) => setTimeout(r, 200));
  res = await result(name);
  assert.equal(res.error, '', `after the script: ${res.error}`);
}

/** p, or a rejection after ms: no step of a vector may hang the suite. */
const bounded = (p, what, ms = 15000) => Promise.race([p, new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms).unref())]);

const codeOf = (err) => (err instanceof RoomlogError ? err.code : String(err));

/** Plays vector v with a new client; returns what the application saw. */
async function play(v) {
  const seen = { delivered: {}, published: [], rooms: {}, states: {}, refused: '', stopped: '' };
  const client = new RoomlogClient({
    url: `ws://${addr}/v/${v.name}`, token: () => 't', session: 's1', minBackoff: 10, maxBackoff: 50,
    log: process.env.ROOMLOG_JS_DEBUG ? (m, f) => console.error(v.name, m, f ?? '') : undefined,
  });
  try {
    try {
      await bounded(client.start(), 'start');
    } catch (err) {
      seen.refused = codeOf(err);
      await played(v.name);
      return seen;
    }
    const publishes = [];
    for (const step of v.app) {
      if (step.join) {
        const { room, from_start: fromStart, from_snapshot: fromSnapshot } = step.join;
        try {
          seen.rooms[room] = await bounded(client.join(room, {
            fromStart, fromSnapshot,
            onEvent: (e) => (seen.delivered[e.room] ??= []).push(e.id),
          }), `join ${room}`);
        } catch (err) {
          seen.states[room] = { join_error: codeOf(err) };
        }
      } else {
        publishes.push(client.publish(step.publish.room, step.publish.body).then(
          (ack) => `${ack.duplicate ? 'duplicate' : 'ack'} ${ack.id}`,
          (err) => `error ${codeOf(err)}`,
        ));
      }
    }
    seen.published = await bounded(Promise.all(publishes), 'the publishes');
    await played(v.name);
    const want = v.expect.delivered ?? {};
    await until(() => Object.entries(want).every(([room, ids]) => (seen.delivered[room] ?? []).length >= ids.length), 'the deliveries', 2000)
      .catch(() => {}); // compared below
    seen.stopped = client.error?.code ?? '';
    return seen;
  } finally {
    client.close();
  }
}

/** What the application can tell of a room, with only the fields a vector may check. */
function stateOf(seen, name) {
  const r = seen.rooms[name];
  if (!r) return seen.states[name] ?? {};
  const s = { unknown_cursor: r.unknownCursor, cursor_too_old: r.cursorTooOld, snapshot: r.snapshot, cursor: r.cursor, removed: r.removed };
  return Object.fromEntries(Object.entries(s).filter(([, x]) => x));
}

for (const v of vectors) test(`vector ${v.name}: ${v.about}`, async () => {
  const seen = await play(v);
  const want = v.expect;
  assert.equal(seen.refused, want.refused ?? '', 'refused');
  assert.equal(seen.stopped, want.stopped ?? '', 'stopped');
  for (const [room, ids] of Object.entries(want.delivered ?? {})) assert.deepEqual(seen.delivered[room] ?? [], ids, `delivered in ${room}`);
  assert.deepEqual(seen.published, want.published ?? [], 'publishes settled');
  for (const [room, members] of Object.entries(want.members ?? {})) {
    const got = [...seen.rooms[room].members.keys()].map((k) => k.replace('\u0000', '/')).sort();
    assert.deepEqual(got, members, `members of ${room}`);
  }
  for (const [room, state] of Object.entries(want.rooms ?? {})) assert.deepEqual(stateOf(seen, room), state, `room ${room}`);
});
