// The editor page: one document (?doc=name, default doc:welcome) in CodeMirror 6, kept in step
// by Yjs over roomlog. The document and unsent edits live in IndexedDB (one store per tab slot,
// see claimTab), so the page works offline and across reloads. In development mode the page
// gets its token from /dev/token; otherwise pass one as #token=<JWT>.
import { Compartment, EditorState } from '@codemirror/state';
import { EditorView, keymap, drawSelection } from '@codemirror/view';
import { defaultKeymap } from '@codemirror/commands';
import * as Y from 'yjs';
import { Awareness } from 'y-protocols/awareness';
import { yCollab, yUndoManagerKeymap } from 'y-codemirror.next';

import { RoomlogClient, IndexedDBStore, claimTab, adoptOrphanOutboxes } from '@roomlog/client';
import { RoomlogProvider } from '@roomlog/client/yjs';

import { HistoryPanel } from './history-panel.js';

const APP = 'roomlog-editor';
const $ = (id) => document.getElementById(id);

/** A colour of the user's own, from the name, as #rrggbb (the only form the page accepts from others). */
function colour(name) {
  let h = 0;
  for (const c of name) h = (h * 31 + c.charCodeAt(0)) % 360;
  const f = (n) => {
    const k = (n + h / 30) % 12;
    const v = 0.45 - 0.65 * Math.min(0.45, 1 - 0.45) * Math.max(-1, Math.min(k - 3, 9 - k, 1));
    return Math.round(v * 255).toString(16).padStart(2, '0');
  };
  const color = `#${f(0)}${f(8)}${f(4)}`;
  return { color, light: `${color}33` };
}

const SAFE_COLOUR = /^#[0-9a-fA-F]{6}$/;

/**
 * Other members' awareness is untrusted input: the cursor plugin puts its colours into style
 * attributes and its name on the page. Before anything renders a remote state, a colour that is
 * not #rrggbb is replaced (its light variant is derived here, never taken), and a name that is
 * not a short string becomes "someone".
 */
function sanitizeAwareness(awareness) {
  awareness.on('change', ({ added, updated }) => {
    for (const id of [...added, ...updated]) {
      if (id === awareness.clientID) continue;
      const state = awareness.getStates().get(id);
      if (!state || state.user === undefined) continue;
      const u = state.user ?? {};
      const name = typeof u.name === 'string' && u.name.length <= 64 ? u.name : 'someone';
      const color = typeof u.color === 'string' && SAFE_COLOUR.test(u.color) ? u.color : colour(name).color;
      state.user = { name, color, colorLight: `${color}33` };
    }
  });
}

/**
 * Tokens: #token=<JWT> when given, else the development endpoint, one user per window. The token
 * is taken out of the address at once, so it stays out of the history and of copied links.
 */
function tokenSource() {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get('token');
  if (fromHash) history.replaceState(history.state, '', location.pathname + location.search);
  return async () => {
    if (fromHash) return fromHash;
    const user = sessionStorage.getItem('roomlog:user') ?? '';
    const res = await fetch('/dev/token', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(user ? { user } : {}),
    });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(body.error?.message ?? `/dev/token: ${res.status}`);
    sessionStorage.setItem('roomlog:user', body.user);
    return body.token;
  };
}

function showError(msg) {
  $('error').hidden = false;
  $('error').textContent = msg;
}

function renderMembers(members, me) {
  const ul = $('members');
  ul.replaceChildren(
    ...members.map((m) => {
      const li = document.createElement('li');
      const dot = document.createElement('span');
      dot.className = 'dot';
      const name = m.presence?.name ?? m.user;
      dot.style.background = colour(name).color;
      li.append(dot, `${name}${m.session === me ? ' (you)' : ''}`);
      li.dataset.user = m.user;
      return li;
    }),
  );
}

async function main() {
  const docName = new URLSearchParams(location.search).get('doc') || 'doc:welcome';
  $('doc').textContent = docName;
  if ('serviceWorker' in navigator) navigator.serviceWorker.register('/sw.js').catch(() => {});

  const tab = await claimTab(APP);
  const store = new IndexedDBStore(`${APP}:${tab.slot}`);
  await adoptOrphanOutboxes(APP, tab.slot, store, (slot) => new IndexedDBStore(`${APP}:${slot}`));

  const token = tokenSource();
  try {
    await token(); // learn this window's user name before joining, when online
  } catch (err) {
    if (!sessionStorage.getItem('roomlog:user')) showError(String(err.message ?? err));
  }
  const user = sessionStorage.getItem('roomlog:user') ?? 'me';
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const client = new RoomlogClient({ url: `${scheme}://${location.host}/v1/ws`, token, session: tab.session, store });
  window.roomlog = { client }; // for the curious, and for tests

  const status = (s) => {
    $('status').textContent = s;
    $('status').className = `status ${s}`;
  };
  client.on('status', status);
  client.on('outbox', (n) => ($('outbox').textContent = `${n} ${n === 1 ? 'edit' : 'edits'} waiting`));
  $('offline').checked = sessionStorage.getItem('roomlog:offline') === '1';
  if ($('offline').checked) client.pause();
  $('offline').addEventListener('change', () => {
    sessionStorage.setItem('roomlog:offline', $('offline').checked ? '1' : '0');
    if ($('offline').checked) client.pause();
    else client.resume();
  });
  status(client.status);

  const doc = new Y.Doc();
  const awareness = new Awareness(doc);
  sanitizeAwareness(awareness); // first, so it runs before the cursors plugin's listener
  const { color, light } = colour(user);
  awareness.setLocalStateField('user', { name: user, color, colorLight: light });
  const editable = new Compartment();
  let view = null; // made once the document is loaded
  // Removed from the document (it was unshared): say so plainly, and take no more edits.
  const unshared = (reason) => {
    showError(`This document is no longer shared with you${reason && reason !== 'removed' ? `: ${reason}` : ''}.`);
    view?.dispatch({ effects: editable.reconfigure(EditorView.editable.of(false)) });
    $('members').replaceChildren(); // no longer among them
    document.body.setAttribute('data-removed', 'true');
  };
  let history = null; // the history panel, once the document is loaded
  const provider = new RoomlogProvider(client, docName, doc, {
    awareness,
    presence: { name: user },
    onEvent: (ev) => {
      $('events').textContent = `${provider.events} events`;
      history?.add(ev);
    },
    onMembers: (members) => renderMembers(members, tab.session),
    onRemoved: (reason) => unshared(reason),
  });
  window.roomlog.provider = provider;
  client.start().catch((err) => showError(String(err.message ?? err)));
  await provider.start();
  $('events').textContent = `${provider.events} events`;

  const ytext = doc.getText('text');
  const undoManager = new Y.UndoManager(ytext);
  view = new EditorView({
    parent: $('editor'),
    state: EditorState.create({
      doc: ytext.toString(),
      extensions: [
        keymap.of([...yUndoManagerKeymap, ...defaultKeymap]),
        drawSelection(),
        EditorView.lineWrapping,
        yCollab(ytext, awareness, { undoManager }),
        editable.of(EditorView.editable.of(true)),
      ],
    }),
  });
  history = new HistoryPanel({ room: docName, token, text: ytext, colour });
  window.roomlog.history = history;
  if (provider.removed) unshared(provider.removed);
  addEventListener('pagehide', () => provider.save());
  provider.whenSynced().then(() => document.body.setAttribute('data-synced', 'true'));
}

main().catch((err) => showError(String(err.message ?? err)));
