// Types of @roomlog/client/yjs (src/yjs.js).
import type * as Y from 'yjs';
import type { Awareness } from 'y-protocols/awareness';
import type { Event, Member, Room, RoomlogClient } from './index.js';

/** The kind of the events that carry Yjs updates; body {"u": "<base64 update>"}. */
export const YJS_KIND: 'yjs';

/** The kind of snapshot events; body {"covers": "<id>", "state": "<base64 update>", "events": n}. */
export const SNAPSHOT_KIND: 'snapshot';

export interface ProviderOptions {
  /** Shared with the room's other members by signals (not logged). */
  awareness?: Awareness;
  /** ms to gather changes before saving the document; default 200. */
  saveDelay?: number;
  /** This session's presence in the room. */
  presence?: unknown;
  onEvent?: (event: Event) => void;
  onMembers?: (members: Member[]) => void;
  /** The server removed this session from the document's room (it was unshared): it is not rejoined. */
  onRemoved?: (reason: string) => void;
  log?: (msg: string, fields?: object) => void;
}

export class RoomlogProvider {
  constructor(client: RoomlogClient, room: string, doc: Y.Doc, opts?: ProviderOptions);
  /** The id of the last event applied to the document. */
  readonly cursor: string;
  /** Events of the room the document has seen (all kinds). */
  readonly events: number;
  /** Why the server removed this session from the document's room ('' while a member). */
  readonly removed: string;
  readonly synced: boolean;
  /** Loads the saved document and its pending edits, then starts joining; resolves once loaded (offline too). */
  start(): Promise<this>;
  joined(): Promise<Room>;
  whenSynced(): Promise<void>;
  /** Saves the document with its cursor, once every edit in it is in the outbox. */
  save(): Promise<void>;
  destroy(): Promise<void>;
}

export function toBase64(bytes: Uint8Array): string;
export function fromBase64(text: string): Uint8Array;
