// Types of @roomlog/client/history (src/history.js).
import type * as Y from 'yjs';

/** An event as GET /v1/rooms/{room}/events answers it. */
export interface HistoryEvent {
  id: string;
  room: string;
  kind: string;
  user: string;
  session?: string;
  key?: string;
  body: any;
  /** The body's size when it was left out (maxBody). */
  body_size?: number;
}

/** The longest pause within one version, in ms (5 minutes). */
export const DEFAULT_PAUSE_MS: number;

export interface ReadOptions {
  /** The server's address, http(s)://host:port. */
  base: string;
  room: string;
  /** A token that may read the room. */
  token: string;
  /** Read after this id (exclusive); default from the start. */
  after?: string;
  /** Read before this id (exclusive); default to the end. */
  until?: string;
  signal?: AbortSignal;
  /** Leave bodies larger than this many bytes out (snapshots' states; edits are read whole). */
  maxBody?: number;
  /** Events per page, at most 10,000 (the default). */
  pageSize?: number;
  /** Read the pages from the end of the range back (each page still oldest first). */
  newestFirst?: boolean;
  /** Called with each page as it arrives, and what is known of a compaction so far. */
  onPage?: (events: HistoryEvent[], cut: { floor: string; cursorTooOld: boolean }) => void;
  fetch?: typeof fetch;
}

/** Reads a room's events over HTTP, oldest first; floor and cursorTooOld say where a compaction cut it. */
export function readEvents(opts: ReadOptions): Promise<{ events: HistoryEvent[]; floor: string; cursorTooOld: boolean }>;

/** Fetches the state of the snapshot docAt(events, id) starts from, when maxBody left it out. */
export function loadSnapshotFor(events: HistoryEvent[], id: string, opts: { base: string; room: string; token: string; signal?: AbortSignal; fetch?: typeof fetch }): Promise<void>;

/** The latest snapshot at or before the event at, or null. */
export function snapshotAt(opts: { base: string; room: string; token: string; at: string; signal?: AbortSignal; fetch?: typeof fetch }): Promise<HistoryEvent | null>;

/** What a "yjs" event changed: characters inserted and deleted, and the Yjs clients it carries; null for others. */
export function editOf(ev: HistoryEvent): { inserted: number; deleted: number; clients: number[] } | null;

/** A run of one person's edits, named by its last event. */
export interface Version {
  id: string;
  first: string;
  user: string;
  /** ms since the epoch, of the first and last edits. */
  start: number;
  end: number;
  edits: number;
  inserted: number;
  deleted: number;
  /** The version this one restored, when it is a restore. */
  restored?: string;
}

/** Groups a document's edits into versions, oldest first. */
export function versions(events: HistoryEvent[], opts?: { pauseMs?: number }): Version[];

/** The document as it was after the event id, from the nearest snapshot at or before it. */
export function docAt(events: HistoryEvent[], id: string): Y.Doc;

/** Who made each Yjs client's items, among events up to id. */
export function clientUsers(events: HistoryEvent[], id?: string): Map<number, string>;

/** A text's visible characters as spans, each with the user who inserted them ("" when unknown). */
export function authorship(text: Y.Text, users: Map<number, string>): { from: number; to: number; user: string }[];

/** Makes text equal to target in one transaction published with "restored": version; false when it already was. */
export function restoreText(text: Y.Text, target: string, version: string): boolean;
