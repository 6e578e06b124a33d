// @roomlog/client: roomlog's protocol (docs/protocol.md) for browsers, Node 20+ and React Native,
// with no runtime dependency. It keeps the server's promise on the client's side: every event of
// a joined room reaches the application once, in order, across reconnects and server restarts;
// every publish waits in an outbox under an idempotency key until the server acks it durably.
//
// The modules: client.js (the connection, rooms and the outbox), room.js (a joined room),
// codecs.js, ids.js (keys), tokens.js (claims read unverified), errors.js, memory-store.js,
// indexeddb.js and file-store.js (stores), tabs.js (one session per tab).

// The types are declared in index.d.ts.

export { RoomlogClient } from './client.js';
export { Room } from './room.js';
export { RoomlogError, DeliveryUncertainError } from './errors.js';
export { MemoryStore } from './memory-store.js';
export { IndexedDBStore } from './indexeddb.js';
export { newKey, ulidTime } from './ids.js';
export { matchRoom } from './tokens.js';
export { claimTab, adoptOrphanOutboxes } from './tabs.js';
