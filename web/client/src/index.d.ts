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

/** Where cursors and the outbox are kept. */
export interface Store {
  cursor(room: string): Promise<string>;
  setCursor(room: string, id: string): Promise<void>;
  addOutgoing(entry: Outgoing): Promise<void>;
  removeOutgoing(key: string): Promise<void>;
  /** The outbox in key order (the order publishes were made). */
  outgoing(): Promise<Outgoing[]>;
}

export class MemoryStore implements Store {
  cursor(room: string): Promise<string>;
  setCursor(room: string, id: string): Promise<void>;
  addOutgoing(entry: Outgoing): Promise<void>;
  removeOutgoing(key: string): Promise<void>;
  outgoing(): Promise<Outgoing[]>;
}

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

export interface JoinOptions {
  onEvent?: (event: Event) => void;
  /** Replay the room from its first event when there is no cursor for it. */
  fromStart?: boolean;
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
  setPresence(state: unknown): Promise<void>;
  history(opts?: { before?: string; limit?: number }): Promise<{ events: object[]; more: boolean }>;
  leave(): Promise<void>;
}

export class RoomlogClient {
  constructor(opts: ClientOptions);
  /** Connects; resolves once welcomed, rejects when the server refuses the token. */
  start(): Promise<void>;
  close(): void;
  join(room: string, opts?: JoinOptions): Promise<Room>;
  publish(room: string, body: unknown, opts?: { kind?: string; expect?: string }): Promise<Ack>;
  readonly outstanding: number;
  readonly user: string;
  /** Reconnects since the first connection. */
  readonly reconnects: number;
}

/** A new idempotency key (a ULID, monotonic within the process). */
export function newKey(now?: number): string;
/** The time of a ULID in ms since the epoch, or 0. */
export function ulidTime(id: string): number;
