// The history panel of the editor page: the open document's versions (one person's run of edits),
// live as edits arrive; any version shown read-only with who wrote what; two versions compared;
// a version restored as one new edit. The document's past is read over HTTP
// (@roomlog/client/history); nothing here writes but the restore, which goes through the
// document like any edit.
import { diffChars } from 'diff';
import { readEvents, loadSnapshotFor, versions, docAt, clientUsers, authorship, restoreText } from '@roomlog/client/history';
import { ulidTime } from '@roomlog/client';

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k === 'style') e.style.cssText = v;
    else e[k] = v;
  }
  e.append(...children);
  return e;
}

/** Bodies larger than this are left out of the pages read (snapshots' states, mostly). */
const SNAPSHOT_BODIES_OVER = 4096;

const when = (ms) => new Date(ms).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

export class HistoryPanel {
  /**
   * @param {object} opts
   * @param {string} opts.room the document's room
   * @param {() => Promise<string>} opts.token a token that may read it
   * @param {import('yjs').Text} opts.text the live text (restores are made on it)
   * @param {(user: string) => {color: string, light: string}} opts.colour
   */
  constructor({ room, token, text, colour }) {
    this.room = room;
    this.token = token;
    this.text = text;
    this.colour = colour;
    this.events = [];
    this.loaded = false;
    this.selected = '';
    this.renderQueued = false;
    this.pages = 0; // pages of the past read so far
    this.waiting = []; // versions to show once more of the past is read
    $('history-toggle').addEventListener('click', () => (this.isOpen() ? this.close() : this.open()));
    $('compare-with').addEventListener('change', () => this.show(this.selected));
    $('restore').addEventListener('click', () => this.restore(this.selected));
  }

  isOpen() {
    return !$('history').hidden;
  }

  /** Opens the panel, reading the document's past the first time. */
  async open() {
    $('history').hidden = false;
    document.querySelector('main').classList.add('history-open');
    $('history-toggle').setAttribute('aria-pressed', 'true');
    if (this.loaded || this.loading) return this.loading;
    this.loading = this.#load();
    return this.loading;
  }

  close() {
    $('history').hidden = true;
    document.querySelector('main').classList.remove('history-open');
    $('history-toggle').setAttribute('aria-pressed', 'false');
  }

  async #load() {
    $('history-note').textContent = 'Reading the history…';
    try {
      // Newest first, so the latest versions show at once while older pages come; without the
      // snapshots' states: the timeline needs the edits, and a version shown fetches the one
      // snapshot it starts from.
      const { floor, cursorTooOld } = await readEvents({
        base: location.origin, room: this.room, token: await this.token(), maxBody: SNAPSHOT_BODIES_OVER, newestFirst: true,
        onPage: (page) => this.#older(page),
      });
      this.loaded = true;
      this.#wake();
      $('history-note').textContent = cursorTooOld
        ? `Versions before ${when(ulidTime(floor))} were compacted away, by design: the history starts at the snapshot they were folded into.`
        : '';
      $('history').dataset.compacted = String(cursorTooOld);
      this.#render();
      if (this.selected) this.show(this.selected); // who wrote what, now that every edit is known
      document.body.setAttribute('data-history', 'loaded');
    } catch (err) {
      $('history-note').textContent = `The history could not be read: ${err.message ?? err}`;
      this.loading = null;
    }
  }

  /** A page of older events, read back from the end. */
  #older(page) {
    if (page.length === 0) return;
    const first = this.pages === 0;
    this.pages = (this.pages ?? 0) + 1;
    // Live events already kept that the newest page holds too are the page's.
    const last = page.at(-1).id;
    this.events = first ? [...page, ...this.events.filter((e) => e.id > last)] : [...page, ...this.events];
    this.#render();
    this.#wake();
    if (first) document.body.setAttribute('data-history', 'shown');
  }

  /** Resolves once the events a version at id is built from are read: back to a snapshot at or before it, or all. */
  #readBackTo(id) {
    const ready = () => this.loaded || this.events.some((e) => e.kind === 'snapshot' && e.id <= id);
    if (ready()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => (ready() ? resolve() : this.waiting.push(check));
      this.waiting.push(check);
    });
  }

  #wake() {
    const waiting = this.waiting;
    this.waiting = [];
    for (const check of waiting) check();
  }

  /** An event of the room, as it arrives live (kept once the history is being read). */
  add(ev) {
    if (!this.loading || (this.events.length > 0 && ev.id <= this.events.at(-1).id)) return;
    this.events.push(ev);
    if (this.pages > 0 && this.isOpen() && !this.renderQueued) {
      this.renderQueued = true;
      requestAnimationFrame(() => {
        this.renderQueued = false;
        this.#render();
      });
    }
  }

  /** The timeline, newest first, and the compare list. */
  #render() {
    const vs = versions(this.events).reverse();
    this.versions = vs;
    $('versions').replaceChildren(
      ...vs.map((v) => {
        const { color } = this.colour(v.user);
        const what = v.restored ? `restored the version of ${when(ulidTime(v.restored))}` : `${v.edits} ${v.edits === 1 ? 'edit' : 'edits'}`;
        const item = el('li', { dataset: { version: v.id, user: v.user }, tabIndex: 0 },
          el('span', { className: 'dot', style: `background:${color}` }),
          el('span', { className: 'who' }, v.user),
          el('span', { className: 'when' }, when(v.end)),
          el('span', { className: 'what' }, what),
          el('span', { className: 'size' }, ...[v.inserted && el('ins', {}, `+${v.inserted}`), v.deleted && el('del', {}, `−${v.deleted}`)].filter(Boolean)));
        if (v.id === this.selected) item.classList.add('selected');
        item.addEventListener('click', () => this.show(v.id));
        item.addEventListener('keydown', (e) => e.key === 'Enter' && this.show(v.id));
        return item;
      }),
    );
    const chosen = $('compare-with').value;
    $('compare-with').replaceChildren(
      el('option', { value: '' }, 'nothing: show who wrote what'),
      ...vs.map((v) => el('option', { value: v.id, selected: v.id === chosen }, `${v.user}, ${when(v.end)}`)),
    );
    $('history-count').textContent = `${vs.length} ${vs.length === 1 ? 'version' : 'versions'}`;
  }

  /** Shows the version id read-only: with who wrote what, or compared with the version chosen. */
  async show(id) {
    if (!id) return;
    this.selected = id;
    for (const li of $('versions').children) li.classList.toggle('selected', li.dataset.version === id);
    const other = $('compare-with').value;
    for (const v of [id, other]) if (v) await this.#readBackTo(v);
    await this.#loadSnapshots(id, other);
    if (this.selected !== id) return; // another was chosen meanwhile
    const doc = docAt(this.events, id);
    const text = doc.getText('text');
    const version = this.versions.find((v) => v.id === id);
    $('version-title').textContent = version ? `${version.user}, ${when(version.end)}` : id;
    $('version-view').hidden = false;
    if (other && other !== id) this.#showDiff(docAt(this.events, other).getText('text').toString(), text.toString());
    else this.#showAuthors(text, clientUsers(this.events, id));
    $('version-view').dataset.version = id; // shown
    doc.destroy();
  }

  #showAuthors(text, users) {
    const s = text.toString();
    // Edits not among those read: before a compaction's floor, or older pages still coming.
    const unknown = this.loaded ? 'before the compaction' : 'still reading the history';
    const spans = authorship(text, users);
    $('version-text').replaceChildren(
      ...spans.map((sp) => el('span', { className: 'by', dataset: { user: sp.user }, style: `background:${this.colour(sp.user || 'unknown').light}`, title: sp.user || unknown }, s.slice(sp.from, sp.to))),
    );
    const who = [...new Set(spans.map((sp) => sp.user))];
    $('legend').replaceChildren(
      ...who.map((u) => el('li', { dataset: { user: u } }, el('span', { className: 'dot', style: `background:${this.colour(u || 'unknown').color}` }), u || unknown)),
    );
    $('version-view').dataset.mode = 'authors';
  }

  /** What changed from the text before to the text after. */
  #showDiff(before, after) {
    $('version-text').replaceChildren(
      ...diffChars(before, after).map((part) => (part.added ? el('ins', {}, part.value) : part.removed ? el('del', {}, part.value) : document.createTextNode(part.value))),
    );
    $('legend').replaceChildren(el('li', {}, el('ins', {}, 'added')), el('li', {}, el('del', {}, 'removed')));
    $('version-view').dataset.mode = 'compare';
  }

  /** Fetches the snapshots the versions ids start from (their states were not read). */
  async #loadSnapshots(...ids) {
    const opts = { base: location.origin, room: this.room, token: await this.token() };
    for (const id of ids) if (id) await loadSnapshotFor(this.events, id, opts);
  }

  /** Makes the document equal to the version id: one new edit, which every open editor gets. */
  async restore(id) {
    if (!id) return false;
    await this.#readBackTo(id);
    await this.#loadSnapshots(id);
    const doc = docAt(this.events, id);
    const target = doc.getText('text').toString();
    doc.destroy();
    return restoreText(this.text, target, id);
  }
}
