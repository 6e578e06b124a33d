// The audit page (/audit), for admin tokens: the rooms with their counts and heads; a room's
// trail with filters, each event's detail (body, key, id, chain hash); the room's chain checked,
// alone or against a heads file (roomlog heads); the filtered trail exported as JSON lines; and
// followed live. It reads the admin API (GET /v1/rooms, /v1/events, /v1/verify) and writes
// nothing. The token is taken out of the address at once (#token=) or typed in, and kept for the
// tab only (sessionStorage).
import { ulidTime } from '@roomlog/client';

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = 'roomlog:audit-token';
const PAGE = 1000; // trail rows per request

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'dataset') Object.assign(e.dataset, v);
    else e[k] = v;
  }
  e.append(...children);
  return e;
}

function showError(msg) {
  $('error').hidden = !msg;
  $('error').textContent = msg ?? '';
}

const state = { token: '', room: '', last: '', follow: null };

async function api(path, init = {}) {
  const res = await fetch(path, { ...init, headers: { Authorization: `Bearer ${state.token}`, ...(init.headers ?? {}) } });
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    const err = new Error(body.error?.message ?? `${path}: ${res.status}`);
    err.status = res.status;
    throw err;
  }
  return res;
}

const lines = (text) => text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
const when = (ts) => (ts ? new Date(ts).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' }) : '');

async function loadRooms() {
  const rooms = lines(await (await api('/v1/rooms')).text());
  $('room-count').textContent = `${rooms.length}`;
  $('rooms').tBodies[0].replaceChildren(
    ...rooms.map((r) => {
      const tr = el('tr', { dataset: { room: r.room }, tabIndex: 0 },
        el('td', {}, r.room), el('td', {}, String(r.events)), el('td', { title: r.last ?? '' }, r.last ? when(ulidTime(r.last)) : ''), el('td', { className: 'hash', title: r.hash ?? '' }, (r.hash ?? '').slice(0, 16)));
      tr.addEventListener('click', () => openRoom(r.room));
      tr.addEventListener('keydown', (e) => e.key === 'Enter' && openRoom(r.room));
      return tr;
    }),
  );
  document.body.dataset.ready = 'true';
}

/** The trail's query: the room and the filters, as GET /v1/events takes them. */
function query(extra = {}) {
  const q = new URLSearchParams({ room: state.room });
  for (const [name, id] of [['user', 'f-user'], ['kind', 'f-kind'], ['since', 'f-since'], ['until', 'f-until']]) {
    const v = $(id).value.trim();
    if (v) q.set(name, v);
  }
  for (const [k, v] of Object.entries(extra)) q.set(k, v);
  return q;
}

async function openRoom(room) {
  stopFollowing();
  state.room = room;
  $('trail-room').textContent = room;
  $('trail-section').hidden = false;
  $('verdict').textContent = '';
  $('verdict').className = 'verdict';
  for (const tr of $('rooms').tBodies[0].rows) tr.classList.toggle('selected', tr.dataset.room === room);
  await loadTrail(true);
}

/** Reads the trail (from the start of the filters, or after what is shown), a page at a time. */
async function loadTrail(fresh) {
  showError('');
  if (fresh) {
    state.last = '';
    $('trail').tBodies[0].replaceChildren();
    $('detail').hidden = true;
  }
  const extra = { limit: String(PAGE), hashes: 'true' };
  if (state.last) extra.after = state.last;
  try {
    const events = lines(await (await api(`/v1/events?${query(extra)}`)).text());
    addRows(events);
    $('more').hidden = events.length < PAGE;
    document.body.dataset.trail = state.room;
  } catch (err) {
    showError(err.message);
  }
}

function addRows(events) {
  for (const ev of events) {
    const tr = el('tr', { dataset: { id: ev.id }, tabIndex: 0 },
      el('td', {}, when(ev.ts)), el('td', {}, ev.user), el('td', {}, ev.kind), el('td', { className: 'hash' }, ev.id));
    tr.addEventListener('click', () => showEvent(ev, tr));
    tr.addEventListener('keydown', (e) => e.key === 'Enter' && showEvent(ev, tr));
    $('trail').tBodies[0].append(tr);
    state.last = ev.id;
  }
}

function showEvent(ev, tr) {
  for (const row of $('trail').tBodies[0].rows) row.classList.toggle('selected', row === tr);
  const fields = [['id', ev.id], ['room', ev.room], ['time', ev.ts], ['user', ev.user], ['session', ev.session], ['kind', ev.kind], ['key', ev.key], ['chain hash', ev.hash]];
  $('detail-fields').replaceChildren(...fields.filter(([, v]) => v).flatMap(([k, v]) => [el('dt', {}, k), el('dd', { className: k === 'chain hash' || k === 'id' ? 'hash' : '' }, v)]));
  $('detail-body').textContent = ev.body === undefined ? '(no body)' : JSON.stringify(ev.body, null, 2);
  $('detail').hidden = false;
}

/** Checks the room's chain, against the chosen heads file when there is one. */
async function verify() {
  showError('');
  const file = $('heads').files[0];
  const verdict = $('verdict');
  verdict.textContent = 'Checking…';
  verdict.className = 'verdict';
  for (const row of $('trail').tBodies[0].rows) row.classList.remove('broken');
  try {
    const path = `/v1/verify?${new URLSearchParams({ room: state.room })}`;
    const res = file ? await api(path, { method: 'POST', body: await file.text() }) : await api(path);
    const rep = await res.json();
    if (rep.broken) {
      verdict.textContent = `Broken at ${rep.broken.id}: ${rep.broken.reason}`;
      verdict.className = 'verdict broken';
      verdict.dataset.broken = rep.broken.id;
      document.querySelector(`#trail tr[data-id="${rep.broken.id}"]`)?.classList.add('broken');
    } else {
      verdict.textContent = `The chain holds: ${rep.events} events${file ? `, and every anchor of ${file.name}` : ''}.`;
      verdict.className = 'verdict ok';
      delete verdict.dataset.broken;
    }
  } catch (err) {
    verdict.textContent = '';
    showError(err.message);
  }
  document.body.dataset.verified = 'true';
}

/** Downloads the filtered trail as JSON lines, as roomlog replay prints it. */
async function exportTrail() {
  showError('');
  try {
    const blob = await (await api(`/v1/events?${query()}`)).blob();
    const a = $('export-link');
    a.href = URL.createObjectURL(blob);
    a.download = `${state.room.replace(/[^A-Za-z0-9_.-]/g, '_')}.jsonl`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 60000);
  } catch (err) {
    showError(err.message);
  }
}

/** Follows the trail live: the stream of GET /v1/events?follow=true after what is shown. */
async function follow() {
  state.follow?.abort();
  const ctrl = new AbortController();
  state.follow = ctrl;
  const extra = { follow: 'true', hashes: 'true' };
  if (state.last) extra.after = state.last;
  try {
    const res = await api(`/v1/events?${query(extra)}`, { signal: ctrl.signal });
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      const cut = buf.lastIndexOf('\n');
      if (cut < 0) continue;
      addRows(lines(buf.slice(0, cut)));
      buf = buf.slice(cut + 1);
    }
  } catch (err) {
    if (err.name !== 'AbortError') showError(err.message);
  }
}

function stopFollowing() {
  state.follow?.abort();
  state.follow = null;
  $('follow').checked = false;
}

async function useToken(token) {
  state.token = token;
  sessionStorage.setItem(TOKEN_KEY, token);
  try {
    await loadRooms();
    showError('');
  } catch (err) {
    document.body.dataset.ready = 'refused';
    showError(err.status === 401 || err.status === 403 ? `This page needs an admin token: ${err.message}` : err.message);
  }
}

function main() {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get('token');
  if (fromHash) history.replaceState(history.state, '', location.pathname + location.search);
  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    useToken($('token').value.trim());
    $('token').value = '';
  });
  $('filters').addEventListener('submit', (e) => {
    e.preventDefault();
    stopFollowing();
    loadTrail(true);
  });
  $('more').addEventListener('click', () => loadTrail(false));
  $('verify').addEventListener('click', verify);
  $('heads').addEventListener('change', verify);
  $('export').addEventListener('click', exportTrail);
  $('follow').addEventListener('change', () => ($('follow').checked ? follow() : stopFollowing()));
  const token = fromHash || sessionStorage.getItem(TOKEN_KEY);
  if (token) useToken(token);
}

main();
