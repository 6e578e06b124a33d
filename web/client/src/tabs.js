// Tabs: several tabs (or windows) of one application in one browser profile share its storage,
// so without care they would write one outbox at once and connect as one session, each
// connection's acks and leaves undoing the other's. claimTab gives each open tab a slot of its
// own, held with the Web Locks API (navigator.locks) until the tab goes away: a slot names the
// tab's session and its store, so no two live tabs ever share either. A reloaded tab takes its
// slot back (remembered in sessionStorage, which a reload keeps), and with it its outbox.
//
// Web Locks rather than BroadcastChannel: a lock is released by the browser when its tab closes or
// crashes, so a slot cannot stay taken by a tab that is gone, and taking one is atomic across
// tabs; a BroadcastChannel election would need timeouts and could elect two leaders.

const DEVICE_KEY = (app) => `roomlog:${app}:device`;
const SLOTS_KEY = (app) => `roomlog:${app}:slots`;
const TAB_KEY = (app) => `roomlog:${app}:slot`;
const lockName = (app, slot) => `roomlog:${app}:slot:${slot}`;

/**
 * Takes the lowest free slot of app for this tab, held until release() or the tab's end.
 *
 * @param {string} app the application's name (one set of slots per name)
 * @param {object} [opts]
 * @param {LockManager} [opts.locks] default navigator.locks
 * @param {Storage} [opts.storage] where the device id and the used slots are kept; default localStorage
 * @param {Storage} [opts.tabStorage] where this tab remembers its slot across reloads; default sessionStorage
 * @param {number} [opts.maxSlots] default 32
 * @param {number} [opts.reloadWait] ms a reloaded tab waits for its slot's lock, default 3000
 * @returns {Promise<{slot: number, session: string, release: () => void}>}
 */
export async function claimTab(app, opts = {}) {
  const locks = opts.locks ?? globalThis.navigator?.locks;
  const storage = opts.storage ?? globalThis.localStorage;
  const tabStorage = opts.tabStorage ?? globalThis.sessionStorage;
  const maxSlots = opts.maxSlots ?? 32;
  if (!locks) throw new Error('roomlog: claimTab needs the Web Locks API (navigator.locks)');
  let device = storage?.getItem(DEVICE_KEY(app));
  if (!device) {
    device = randomId();
    storage?.setItem(DEVICE_KEY(app), device);
  }
  const taken = (slot, release) => {
    const used = usedSlots(storage, app);
    if (!used.includes(slot)) storage?.setItem(SLOTS_KEY(app), JSON.stringify([...used, slot].sort((a, b) => a - b)));
    tabStorage?.setItem(TAB_KEY(app), String(slot));
    return { slot, session: `${device}-${slot}`, release };
  };
  // A reloaded tab wants its own slot back (its outbox is there), but the page it replaces may
  // hold the lock for a moment yet: wait for that one a little before looking elsewhere.
  const mine = Number.parseInt(tabStorage?.getItem(TAB_KEY(app)) ?? '', 10);
  if (Number.isInteger(mine) && mine >= 0 && mine < maxSlots) {
    const release = await holdWithin(locks, lockName(app, mine), opts.reloadWait ?? 3000);
    if (release) return taken(mine, release);
  }
  for (let slot = 0; slot < maxSlots; slot++) {
    const release = await holdIfFree(locks, lockName(app, slot));
    if (release) return taken(slot, release);
  }
  throw new Error(`roomlog: all ${maxSlots} tab slots of ${app} are taken`);
}

/**
 * Moves into store the outboxes of the slots of app that no open tab holds (a tab closed while
 * offline left its publishes there), so they are sent. Each is taken with its lock held, so no
 * tab that opens meanwhile can take that slot's outbox too.
 *
 * @param {string} app
 * @param {number} ownSlot
 * @param {{addOutgoing: Function}} store this tab's store
 * @param {(slot: number) => {outgoing: Function, removeOutgoing: Function}} storeOf another slot's store
 * @returns {Promise<number>} how many publishes were adopted
 */
export async function adoptOrphanOutboxes(app, ownSlot, store, storeOf, opts = {}) {
  const locks = opts.locks ?? globalThis.navigator?.locks;
  const storage = opts.storage ?? globalThis.localStorage;
  let adopted = 0;
  for (const slot of usedSlots(storage, app)) {
    if (slot === ownSlot) continue;
    const release = await holdIfFree(locks, lockName(app, slot));
    if (!release) continue; // a live tab: its outbox is its own
    try {
      const other = storeOf(slot);
      for (const entry of await other.outgoing()) {
        await store.addOutgoing(entry); // first: a crash in between leaves it in both, and keys dedupe
        await other.removeOutgoing(entry.key);
        adopted++;
      }
      await other.close?.();
    } finally {
      release();
    }
  }
  return adopted;
}

/** Takes the lock, waiting at most ms for it; resolves with a function that releases it, or null. */
function holdWithin(locks, name, ms) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), ms);
  return new Promise((resolve) => {
    locks
      .request(name, { signal: abort.signal }, () => {
        clearTimeout(timer);
        return new Promise((release) => resolve(release));
      })
      .catch(() => resolve(null)); // timed out: someone else holds it
  });
}

/** Takes the lock if nobody holds it; resolves with a function that releases it, or null. */
function holdIfFree(locks, name) {
  return new Promise((resolve, reject) => {
    locks
      .request(name, { ifAvailable: true }, (lock) => {
        if (!lock) {
          resolve(null);
          return undefined;
        }
        return new Promise((release) => resolve(release)); // held until release() is called
      })
      .catch(reject);
  });
}

function usedSlots(storage, app) {
  try {
    const v = JSON.parse(storage?.getItem(SLOTS_KEY(app)) ?? '[]');
    return Array.isArray(v) ? v.filter((n) => Number.isInteger(n)) : [];
  } catch {
    return [];
  }
}

function randomId() {
  const b = new Uint8Array(8);
  globalThis.crypto.getRandomValues(b);
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
}
