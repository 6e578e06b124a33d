// Package jetstream is the event log on NATS JetStream: the backend of roomlog past one machine.
// Every roomlog node opens the same stream, so any node serves any room, and a cursor taken on
// one node resumes exactly on another. It implements the storage roles of package eventlog (Log,
// Cursors, SessionIndex, Auditor, Compactor) and those of a log several nodes share
// (Membership, Feeder, Leaser), and passes the conformance suite in eventlog/logtest.
//
// # Layout
//
// One stream (Options.Stream, default ROOMLOG) holds everything that must change atomically with
// the events; a room is a subject, its name encoded as one subject token (base64url without
// padding: room names may hold '.', which separates tokens). With P the subject prefix
// (Options.Prefix, default "roomlog") and R the encoded room:
//
//	P.ev.R            the room's events, in order. Headers Rl-Id (the event's id) and Rl-N (its
//	                  position in the room, from 1); the data is the event record, byte for byte
//	                  the record of the embedded backend (eventlog.EncodeRecord), hash included.
//	P.key.H           an idempotency key marker, H = base64url(SHA-256(room, user, key)): its
//	                  event's time, id and (when written after it) stream sequence. Nats-TTL
//	                  removes it after the key retention (and an hour to spare).
//	P.key.w.R         the room's key watermark: the stream sequence up to which every keyed event
//	                  of the room has its marker (keys.go). One message (a rollup).
//	P.snap.R          the id of the room's latest snapshot event.
//	P.floor.R         the room's floor after a compaction (id, hash, position).
//	P.sess.R.S        a session's membership, S = base64url(SHA-256(user, session)): its join
//	                  event, the node serving it and its presence (members.go); empty after its
//	                  leave, and then removed (forget.go).
//
// Markers are published in one atomic batch (nats-server 2.12's allow_atomic) with the event they
// belong to, so no crash separates them; except the key marker of a lone keyed append on a stream
// of one replica, written after its event: there an atomic batch is staged on disk and costs more
// than the publish (keys.go says how a key whose marker a crash lost is found again). Client cursors (Cursors) live in the key-value bucket
// <Stream>_ACKS: they change often, and apart from the events. Nodes tell each other they are
// alive in <Stream>_NODES, and the survivors write the leaves of a dead node's sessions
// (nodes.go). Leases (eventlog.Leaser: which node delivers a webhook, and its cursor) live in
// <Stream>_LEASES (lease.go), and Feed reads P.ev.> in stream order (feed.go). Event headers also carry Rl-Hash, so that the republished headers alone tell a
// node a room's new head.
//
// # Order across nodes
//
// Node clocks differ, so a node's clock cannot order a room. Every append is conditional on the
// room's head (Nats-Expected-Last-Subject-Sequence): the room's order, its hash chain and
// eventlog.AppendRequest.Expect are decided by the stream, never by a node. A node that loses the
// race reads the new head and tries again (a bounded number of times). A node appends a room's
// waiting requests in one batch, so a busy room costs one round trip per batch, not per event;
// on a stream of one replica only from minDiskBatch waiting requests, one by one below.
//
// An id is a ULID whose 48-bit time is the node's clock, raised to the room head's time when
// that is ahead; its next 56 bits are a stream sequence already assigned when the id was made,
// at least the room head's (so ids increase within a room whatever the clocks say), and below
// the event's own sequence (so the id tells where to start looking for it); 24 random bits end
// it. On one node, ids also increase across rooms.
//
// # Reads
//
// Reads use batched direct gets (allow_direct): a page of a room is one request. An id is found
// from the sequence in it, checked against the event before, and, for an id this log did not
// make, by binary search over the stream. Replicas answer direct gets too, and one may lag the
// leader by a moment; a read that ends before the last sequence this node knows of the room goes
// on from the leader. Catch-up reads go through a read-ahead cache (cache.go).
//
// # Durability
//
// An append returns once JetStream has acknowledged it: stored by the stream leader and, on a
// replicated stream, by a quorum of its replicas. Whether stored means on disk is the JetStream
// server's sync setting (sync_interval, default 2 minutes; "always" fsyncs every write): see the
// operator's notes in README.md. roomlog never sets persist_mode async.
package jetstream
