// The past of a Yjs document kept in a roomlog room, for a history view: its events read over
// HTTP in pages, grouped into versions (one person's run of edits), the document as it was after
// any event (from the nearest snapshot at or before it, then the updates after it), who wrote
// what in it, and the change that restores an old version.
//
// Everything here works on the room's events as GET /v1/rooms/{room}/events answers them,
// oldest first: {id, kind, user, body}. A "yjs" event's body is {"u":"<base64 update>"} (a
// restore adds "restored":"<id>"); a "snapshot" event's is {"covers","state","events"}.
import * as Y from 'yjs';

import { fromBase64, YJS_KIND, SNAPSHOT_KIND } from './yjs.js';
import { idBefore, ulidTime } from './ids.js';

/** The longest pause within one version: a person's edits further apart start a new one. */
export const DEFAULT_PAUSE_MS = 5 * 60 * 1000;

/** The events asked for per page (the server's maximum), and in the first page. */
const PAGE = 10000;
const FIRST_PAGE = 1000;

/**
 * Reads a room's events over HTTP, oldest first, page by page: those after `after` and before
 * `until` (ids, both optional). The answer says where a compaction cut the room (`floor`, with
 * `cursorTooOld` when part of the range is gone). With maxBody (bytes), larger bodies are left
 * out of the pages (`body_size` says theirs): a document's snapshots, whose states a timeline
 * does not need (loadSnapshotFor fetches the one a version needs); edits are always read whole.
 * With newestFirst, pages are read from the end of the range back (each page oldest first, given
 * to onPage as it comes), so a history view shows its newest versions first; the answer is still
 * oldest first.
 * @param {{base: string, room: string, token: string, after?: string, until?: string,
 *   maxBody?: number, newestFirst?: boolean, pageSize?: number, signal?: AbortSignal,
 *   onPage?: (events: object[], cut: object) => void, fetch?: typeof fetch}} opts
 * @returns {Promise<{events: object[], floor: string, cursorTooOld: boolean}>}
 */
export async function readEvents({ base, room, token, after = '', until = '', maxBody, newestFirst = false, pageSize = PAGE, signal, onPage, fetch: get = fetch }) {
  const pages = [];
  let floor = '';
  let cursorTooOld = false;
  const url = (q) => `${base}/v1/rooms/${encodeURIComponent(room)}/events?${q}`;
  const done = () => ({ events: (newestFirst ? pages.reverse() : pages).flat(), floor, cursorTooOld });
  // Pages grow from a small first one, so the first comes soon, to pageSize.
  let size = Math.min(pageSize, FIRST_PAGE);
  for (let cursor = newestFirst ? until : after; ; size = Math.min(pageSize, size * 4)) {
    const q = new URLSearchParams({ limit: String(size) });
    if (newestFirst) {
      q.set('from', 'end');
      if (after) q.set('after', after);
      if (cursor) q.set('until', cursor);
    } else {
      if (cursor) q.set('after', cursor);
      if (until) q.set('until', until);
    }
    if (maxBody !== undefined) q.set('max_body', String(maxBody));
    const page = await getJSON(get, url(q), token, signal);
    if (page.cursor_too_old) {
      cursorTooOld = true;
      floor = page.floor;
    }
    // The edits whose bodies were left out (a large paste) are needed whole: one by one.
    for (const [i, ev] of page.events.entries()) {
      if (ev.kind !== YJS_KIND || ev.body_size === undefined) continue;
      const one = await getJSON(get, url(new URLSearchParams({ limit: '1', after: idBefore(ev.id) })), token, signal);
      if (one.events[0]?.id === ev.id) page.events[i] = one.events[0];
    }
    pages.push(page.events);
    onPage?.(page.events, { floor, cursorTooOld });
    if (!page.more || page.events.length === 0) return done();
    cursor = newestFirst ? page.events[0].id : page.events[page.events.length - 1].id;
  }
}

/**
 * Makes sure the snapshot docAt(events, id) starts from has its state: read with maxBody, a
 * snapshot's state was left out; this fetches the one needed (GET .../snapshot?at=).
 * @param {object[]} events as readEvents read them
 * @param {string} id the event whose version is wanted
 * @param {{base: string, room: string, token: string, signal?: AbortSignal, fetch?: typeof fetch}} opts
 */
export async function loadSnapshotFor(events, id, opts) {
  const end = events.findIndex((ev) => ev.id === id);
  for (let i = end; i >= 0; i--) {
    const ev = events[i];
    if (ev.kind !== SNAPSHOT_KIND) continue;
    if (typeof ev.body?.state === 'string') return;
    const snap = await snapshotAt({ ...opts, at: ev.id });
    if (snap?.id === ev.id) events[i] = snap;
    return;
  }
}

/**
 * The room's latest snapshot at or before the event `at` (GET /v1/rooms/{room}/snapshot?at=),
 * or null when there is none.
 * @param {{base: string, room: string, token: string, at: string, signal?: AbortSignal, fetch?: typeof fetch}} opts
 */
export async function snapshotAt({ base, room, token, at, signal, fetch: get = fetch }) {
  try {
    return await getJSON(get, `${base}/v1/rooms/${encodeURIComponent(room)}/snapshot?at=${encodeURIComponent(at)}`, token, signal);
  } catch (err) {
    if (err.status === 404) return null;
    throw err;
  }
}

async function getJSON(get, url, token, signal) {
  const res = await get(url, { headers: { Authorization: `Bearer ${token}` }, signal });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    const err = new Error(body.error?.message ?? `${url}: ${res.status}`);
    err.status = res.status;
    throw err;
  }
  return body;
}

/**
 * What one "yjs" event changed, read from its update without applying it: characters inserted
 * and deleted, and the Yjs clients whose items it carries. Null for other events and for bodies
 * that are not updates.
 * @returns {{inserted: number, deleted: number, clients: number[]} | null}
 */
export function editOf(ev) {
  if (ev.kind !== YJS_KIND || typeof ev.body?.u !== 'string') return null;
  let edit = edits.get(ev);
  if (edit === undefined) edits.set(ev, (edit = decodeEdit(ev)));
  return edit;
}

/** editOf's answers, kept with the events: a history view asks for each many times. */
const edits = new WeakMap();

function decodeEdit(ev) {
  let decoded;
  try {
    decoded = Y.decodeUpdate(fromBase64(ev.body.u));
  } catch {
    return null;
  }
  let inserted = 0;
  const clients = new Set();
  for (const s of decoded.structs) {
    clients.add(s.id.client);
    if (s instanceof Y.Item && s.content instanceof Y.ContentString) inserted += s.length;
  }
  let deleted = 0;
  for (const ranges of decoded.ds.clients.values()) for (const r of ranges) deleted += r.len;
  return { inserted, deleted, clients: [...clients] };
}

/**
 * Groups a document's edits into versions: a run of one person's "yjs" events with no pause
 * longer than pauseMs between them (by their ids' times). Each version ends at its last event,
 * which names it; restores are versions of their own.
 * @returns {{id: string, first: string, user: string, start: number, end: number,
 *   edits: number, inserted: number, deleted: number, restored?: string}[]}
 */
export function versions(events, { pauseMs = DEFAULT_PAUSE_MS } = {}) {
  const out = [];
  let cur = null;
  for (const ev of events) {
    const edit = editOf(ev);
    if (!edit) continue;
    const at = ulidTime(ev.id);
    const restored = typeof ev.body.restored === 'string' ? ev.body.restored : undefined;
    if (!cur || cur.user !== ev.user || at - cur.end > pauseMs || restored || cur.restored) {
      cur = { id: ev.id, first: ev.id, user: ev.user, start: at, end: at, edits: 0, inserted: 0, deleted: 0 };
      if (restored) cur.restored = restored;
      out.push(cur);
    }
    cur.id = ev.id;
    cur.end = at;
    cur.edits++;
    cur.inserted += edit.inserted;
    cur.deleted += edit.deleted;
  }
  return out;
}

/**
 * The document as it was after the event id: a new Y.Doc from the nearest snapshot at or before
 * it, then every update after that snapshot up to it. Throws when id is not among events.
 * @returns {Y.Doc}
 */
export function docAt(events, id) {
  const end = events.findIndex((ev) => ev.id === id);
  if (end < 0) throw new Error(`no event ${id} in the history read`);
  // Bodies are any writer's: one that is not an update is passed over, as the provider does.
  const apply = (doc, text) => {
    try {
      Y.applyUpdate(doc, fromBase64(text));
      return true;
    } catch {
      return false;
    }
  };
  let start = 0;
  let doc = new Y.Doc();
  for (let i = end; i >= 0; i--) {
    if (events[i].kind !== SNAPSHOT_KIND || typeof events[i].body?.state !== 'string') continue;
    if (apply(doc, events[i].body.state)) {
      start = i + 1;
      break;
    }
    doc = new Y.Doc(); // a state that does not decode: an earlier snapshot, or the start
  }
  // One by one in one transaction: Y.mergeUpdates of them all costs far more (7 s against
  // 0.16 s for 20,000 keystrokes, in Node).
  doc.transact(() => {
    for (let i = start; i <= end; i++) {
      if (events[i].kind === YJS_KIND && typeof events[i].body?.u === 'string') apply(doc, events[i].body.u);
    }
  });
  return doc;
}

/**
 * Who made each Yjs client's items: the user of the first event whose update carried it, among
 * events up to and including the event id (all of them when id is omitted). A client id is
 * random per document instance, so it names one person.
 * @returns {Map<number, string>}
 */
export function clientUsers(events, id) {
  const users = new Map();
  for (const ev of events) {
    const edit = editOf(ev);
    if (edit) for (const c of edit.clients) if (!users.has(c)) users.set(c, ev.user);
    if (ev.id === id) break;
  }
  return users;
}

/**
 * Who wrote what in a text: its visible characters as spans, each with the user whose edit
 * inserted them ("" when the edit is not in the history read: before a compaction's floor).
 * @param {Y.Text} text
 * @param {Map<number, string>} users from clientUsers
 * @returns {{from: number, to: number, user: string}[]}
 */
export function authorship(text, users) {
  const spans = [];
  let pos = 0;
  for (let item = text._start; item !== null; item = item.right) {
    if (item.deleted || !item.countable) continue;
    const user = users.get(item.id.client) ?? '';
    const last = spans[spans.length - 1];
    if (last && last.user === user && last.to === pos) last.to += item.length;
    else spans.push({ from: pos, to: pos + item.length, user });
    pos += item.length;
  }
  return spans;
}

/**
 * Makes text equal to target in one transaction, whose origin names the version restored (the
 * provider publishes it with "restored" in the event's body): the differing middle (after the
 * common beginning, before the common end) is replaced. Returns whether anything changed.
 * @param {Y.Text} text a text of a document a RoomlogProvider keeps
 * @param {string} target the text of the version restored
 * @param {string} version the id of the version's last event
 */
export function restoreText(text, target, version) {
  const current = text.toString();
  if (current === target) return false;
  let start = 0;
  while (start < current.length && start < target.length && current[start] === target[start]) start++;
  let end = 0;
  while (end < current.length - start && end < target.length - start && current[current.length - 1 - end] === target[target.length - 1 - end]) end++;
  // Never between the halves of a surrogate pair.
  const high = (s, i) => i > 0 && i <= s.length && s.charCodeAt(i - 1) >= 0xd800 && s.charCodeAt(i - 1) <= 0xdbff;
  if (high(current, start)) start--;
  while (end > 0 && (high(current, current.length - end) || high(target, target.length - end))) end--;
  text.doc.transact(() => {
    text.delete(start, current.length - start - end);
    text.insert(start, target.slice(start, target.length - end));
  }, { restored: version });
  return true;
}
