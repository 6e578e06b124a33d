// Package eventlog owns roomlog's durable, ordered, tamper-evident event log: its roles, its
// record and chain format, and the rules every backend applies the same way.
//
// Everything a room ever sees (messages, joins, leaves, presence changes) is an Event appended to
// a Log under an ID (a ULID) that the log assigns. The storage roles are small interfaces the
// rest of roomlog programs against (log.go): Log (append, read, head, watch), Cursors (where each
// client has read to), SessionIndex (who the log says is joined), Auditor (rooms, scan, verify)
// and Compactor (snapshot.go), which every backend provides together as a Store; HealthChecker
// and Membership are the optional abilities some add.
//
// The backends are peers in packages of their own, each with its own options:
//
//   - eventlog/boltlog, the embedded one: one bbolt file, one writer doing group commit;
//   - eventlog/memlog, in memory: for tests and for the code above the log;
//   - eventlog/jetstream, on a NATS JetStream stream shared by several nodes.
//
// What they share is written once here, fed by each backend's storage (in the manner of bbolt's
// freelist core): the append rules (ApplyAppend in append.go: key, then expect, then the event,
// the session index and the snapshot pointer), verification (VerifyRooms and ChainCheck in
// verify.go), the watch registry (Watchers, watch.go) and the merge of rooms in id order
// (RoomMerge, merge.go). Package eventlog/logtest is the conformance suite every backend passes.
//
// # Promises every backend keeps
//
//   - Acked means durable: Append returns only after the event is on stable storage.
//   - Order: within a room, ids strictly increase in log order (on one node, across rooms too).
//   - Exact reads: ReadAfter(room, X) returns exactly the room's events with id > X, in order.
//   - Idempotency: an append with the same (user, room, key) within the retention window appends
//     once; the repeats get the first event back with Duplicate set.
//   - Conditional append: an append with Expect applies only if the room's head equals it.
//   - Tamper evidence: each event carries a SHA-256 hash chaining it to the previous event of its
//     room; Verify recomputes the chains.
//   - Bad input gets a typed error (errors.Is) and changes nothing.
//   - Snapshots and compaction (Compactor, snapshot.go): a room's latest snapshot is one lookup
//     away; a compaction removes only what a snapshot covers, step by consistent step, and the
//     chain is verified from the floor it leaves.
//
// # Records
//
// Every backend stores an event as the same record (record.go), so that the chain hash is the
// same wherever it is computed:
//
//	hash(32) | kind code(1) [uvarint len | kind when code is 0] |
//	uvarint len | user | uvarint len | session | uvarint len | key | body (compact JSON, to the end)
//
// Kind codes: 1 message, 2 join, 3 leave, 4 presence, 0 any other kind spelled out. The hash is
// SHA-256(previous event's hash | id | uvarint len | room | record[32:]), with 32 zero bytes as the
// previous hash of a room's first event. The room and id are inside the hash, so moving an event to
// another room or another id breaks the chain as surely as changing its body.
package eventlog
