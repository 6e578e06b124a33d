// Types of @roomlog/client (src/index.js).

/** An event delivered to the application. */
export interface Event {
  room: string;
  id: string;
  kind: string;
  user: string;
  session: string;
  key: string;
  /** RFC 3339 with milliseconds, UTC. */
  ts: string;
  body?: unknown;
}

/** A publish waiting in the outbox. */
export interface Outgoing {
  key: string;
  room: string;
  kind?: string;
  body?: unknown;
  expect?: string;
}

/** The server's durable acknowledgment of a publish. */
export interface Ack {
  room: string;
  id: string;
  key: string;
  /** The server had this key already: a resend. */
  duplicate: boolean;
}

/** Where cursors, the outbox and application state are kept; each promise settles once durable. */
export interface Store {
  cursor(room: string): Promise<string>;
  /** Saves id unless the saved cursor is greater. */
  setCursor(room: string, id: string): Promise<void>;
  addOutgoing(entry: Outgoing): Promise<void>;
  removeOutgoing(key: string): Promise<void>;
  /** The outbox in key order (the order publishes were made). */
  outgoing(): Promise<Outgoing[]>;
  /** Application state under a name (the Yjs provider keeps "yjs:<room>"). */
  getState(name: string): Promise<unknown>;
  setState(name: string, value: unknown): Promise<void>;
}

// Each store class declares only what it adds: its Store methods come from an interface of the
// same name, which TypeScript merges into the class.

/** In memory: a reload starts afresh. */
export interface MemoryStore extends Store {}
export class MemoryStore {}

/** In IndexedDB (database "roomlog:" + name), for browsers. */
export interface IndexedDBStore extends Store {}
export class IndexedDBStore {
  constructor(name: string, factory?: IDBFactory);
  close(): Promise<void>;
}

/** A tab's slot: its session and store are its own while it is open. */
export interface TabSlot {
  slot: number;
  session: string;
  release(): void;
}

/** Takes the lowest free slot of app (Web Locks), held until release() or the tab's end. */
export function claimTab(
  app: string,
  opts?: { locks?: LockManager; storage?: Storage; tabStorage?: Storage; maxSlots?: number; reloadWait?: number },
): Promise<TabSlot>;

/** Moves the outboxes of slots no open tab holds into store; resolves with how many entries. */
export function adoptOrphanOutboxes(
  app: string,
  ownSlot: number,
  store: Store,
  storeOf: (slot: number) => Store,
  opts?: { locks?: LockManager; storage?: Storage },
): Promise<number>;

export class RoomlogError extends Error {
  code: string;
  head?: string;
  /** Whether sending the request again may succeed (rate_limited, internal). */
  readonly temporary: boolean;
}

export class DeliveryUncertainError extends Error {
  entry: Outgoing;
}

export interface ClientOptions {
  /** ws(s)://host/v1/ws */
  url: string;
  /** A token for the next connection or refresh. */
  token: () => string | Promise<string>;
  /** Stable per device or installation. */
  session?: string;
  store?: Store;
  /** JSON text frames (default) or MessagePack binary frames (bodies may hold Uint8Array: bin). */
  codec?: 'json' | 'msgpack';
  WebSocket?: typeof WebSocket;
  /** Reconnect backoff bounds, ms (full jitter). Defaults 100 and 10000. */
  minBackoff?: number;
  maxBackoff?: number;
  /** How often delivered events are acked and cursors saved, ms. Default 250. */
  ackInterval?: number;
  /** Interval of app-level pings, ms. Default 15000. */
  pingInterval?: number;
  /** Outbox entries older than the server's key retention, handed back unsent. */
  onUncertain?: (entry: Outgoing) => void;
  log?: (msg: string, fields?: object) => void;
}

/** A room member session and its presence. */
export interface Member {
  user: string;
  session: string;
  presence?: unknown;
}

/** An ephemeral signal from another member. */
export interface Signal {
  room: string;
  user: string;
  session: string;
  body: unknown;
}

export interface JoinOptions {
  onEvent?: (event: Event) => void;
  onSignal?: (signal: Signal) => void;
  /** The members at each (re)join, then after each live join, leave or presence change. */
  onMembers?: (members: Member[]) => void;
  /** The replay is over (at each (re)join); cursor is the room's head then. */
  onSynced?: (cursor: string) => void;
  /** The server removed this session from the room (the document was unshared): it is not rejoined. */
  onRemoved?: (reason: string) => void;
  /** Replay the room from its first event when there is no cursor for it. */
  fromStart?: boolean;
  /** With no cursor, start at the room's latest snapshot, then every later event (from the start without one). */
  fromSnapshot?: boolean;
  /** Start after this id instead of the stored cursor. */
  cursor?: string;
  /** Save the cursor in the store (default true); false when the application saves it with its state. */
  persistCursor?: boolean;
  presence?: unknown;
}

export class Room {
  readonly name: string;
  /** The id of the last event delivered. */
  cursor: string;
  /** Members by "user\u0000session", with their presence. */
  members: Map<string, unknown>;
  /** The server did not know the cursor at the latest (re)join. */
  unknownCursor: boolean;
  /** The latest (re)join listed only some of the room's members (the server's bound). */
  membersTruncated: boolean;
  /** How many members the room had at the latest (re)join. */
  memberCount: number;
  /** Caught up since the latest (re)join. */
  synced: boolean;
  /** The snapshot the latest (re)join's replay started with, or "". */
  snapshot: string;
  /** The latest (re)join's cursor was older than a compaction left: the replay started at the snapshot. */
  cursorTooOld: boolean;
  /** Why the server removed this session from the room ('' while a member); a removed room is not rejoined. */
  removed: string;
  /** The room's latest snapshot event, or null. */
  latestSnapshot(): Promise<object | null>;
  /** Sends an ephemeral signal to the other members now; false when it cannot (never queued). */
  signal(body: unknown): boolean;
  setPresence(state: unknown): Promise<void>;
  history(opts?: { before?: string; limit?: number }): Promise<{ events: object[]; more: boolean }>;
  leave(): Promise<void>;
}

export class RoomlogClient {
  constructor(opts: ClientOptions);
  /** Connects; resolves once welcomed (at once when paused), rejects when the server refuses the token. */
  start(): Promise<void>;
  close(): void;
  /** Goes offline on purpose until resume(); publishes wait in the outbox. */
  pause(): void;
  resume(): void;
  readonly status: 'connecting' | 'online' | 'offline' | 'closed';
  on(name: 'status', fn: (status: RoomlogClient['status']) => void): () => void;
  on(name: 'outbox', fn: (waiting: number) => void): () => void;
  on(name: 'uncertain', fn: (entry: Outgoing) => void): () => void;
  on(name: 'ack', fn: (ack: Ack & { kind: string }) => void): () => void;
  /** Resolves once every publish made so far is in the store's outbox. */
  outboxStored(): Promise<void>;
  join(room: string, opts?: JoinOptions): Promise<Room>;
  publish(room: string, body: unknown, opts?: { kind?: string; expect?: string }): Promise<Ack>;
  readonly outstanding: number;
  readonly user: string;
  /** The claims of the current connection's token, unverified ({} before the first welcome). */
  readonly claims: Record<string, unknown>;
  /** Whether the token allows publishing snapshots to room (rooms and snapshot_rooms claims). */
  maySnapshot(room: string): boolean;
  /** Whether a publish to room is on its way (in the outbox, or being written to it). */
  hasPending(room: string): boolean;
  /** The codec of the connection: 'json' or 'msgpack' (ClientOptions.codec). */
  readonly codecName: 'json' | 'msgpack';
  /** The store of the outbox and cursors (ClientOptions.store). */
  readonly store: Store;
  /** Logs through ClientOptions.log. */
  log(msg: string, fields?: object): void;
  /** The server's largest frame (welcome's max_frame); 0 before the first welcome. */
  readonly maxFrame: number;
  /** Reconnects since the first connection. */
  readonly reconnects: number;
  /** Why the client stopped by itself: the server refused its first hello, or a token the token callback gave after a revocation (code token_revoked); null while it runs. */
  readonly error: RoomlogError | null;
}

/** Whether a room pattern (a name, or a prefix ending in *) matches room. */
export function matchRoom(pattern: string, room: string): boolean;

/** A new idempotency key (a ULID, monotonic within the process). */
export function newKey(now?: number): string;
/** The time of a ULID in ms since the epoch, or 0. */
export function ulidTime(id: string): number;
