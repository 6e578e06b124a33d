// Package eventlog owns roomlog's durable, ordered, tamper-evident event log.
//
// Everything a room ever sees (messages, joins, leaves, presence changes) is an Event appended to
// a Log under an ID (a ULID) that the log assigns. The storage roles are small interfaces the
// rest of roomlog programs against: Log (append, read, head, watch), Cursors (client acks),
// SessionIndex (who the log says is joined), and the optional abilities Auditor (rooms, scan,
// verify) and HealthChecker. This package also holds two backends, the embedded one (Open, on
// one bbolt file) and an in-memory one (NewMemLog, for tests and for code above the log), and,
// in package logtest, the conformance suite every backend must pass.
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
// # Group commit
//
// The embedded backend has a single writer goroutine. Callers queue their appends; the writer takes
// every append waiting, applies them in queue order in one bbolt transaction, commits (bbolt
// fsyncs), and only then completes them all and wakes the room watchers. Throughput therefore
// grows with the number of concurrent appenders while latency stays near one commit. There is no
// artificial delay and NoSync is never set.
//
// # Durability under storage faults
//
//   - Reads stop at the durable watermark: a read transaction whose snapshot is the commit being
//     fsynced waits for that fsync (durable.go), so no reader sees what a power cut could take.
//   - A failed commit stops the log (failure.go): ErrFailed for the batch, the queue and the
//     reads, until the writer has reopened the file from disk and fsynced it; then reads resume,
//     and appends after a backoff. Health reports it.
//   - A damaged file is refused at Open (pagecheck.go): its pages are walked with pread before
//     bbolt maps it, so bbolt never faults or panics on it.
//
// # On-disk layout (format 1)
//
// One bbolt file. Top-level buckets:
//
//	meta                  "format" -> uint32 big-endian format number (1)
//	                      "last"   -> the last id assigned on this file (16 bytes), so ids keep
//	                                  increasing after a restart even if the clock went back
//	rooms/<room>          one bucket per room, keys:
//	                      id(16)     -> event record (below)
//	                      0xff x 17  -> room head: id(16) | hash(32) | count(8, big-endian); it
//	                                    sorts after every id, so it shares the last leaf page
//	                                    with the newest events and a commit dirties one leaf
//	                      0xfe x 17  -> id(16) of the room's latest snapshot event, if any
//	                      0xfd x 17  -> the room's floor after a compaction, encoded as a head:
//	                                    the last event removed, its hash and its position
//	keys/<start>          idempotency generations; <start> is the generation's first use in unix
//	                      milliseconds (8 bytes, big-endian). Keys: room 0x00 user 0x00 key -> id(16)
//	acks                  user 0x00 session 0x00 room -> id(16): the highest id acknowledged
//	sessions              room 0x00 user 0x00 session -> id(16) of the session's join: who is a
//	                      member
//
// An event record is
//
//	hash(32) | kind code(1) [uvarint len | kind when code is 0] |
//	uvarint len | user | uvarint len | session | uvarint len | key | body (compact JSON, to the end)
//
// Kind codes: 1 message, 2 join, 3 leave, 4 presence, 0 any other kind spelled out. The hash is
// SHA-256(previous event's hash | id | uvarint len | room | record[32:]), with 32 zero bytes as the
// previous hash of a room's first event. The room and id are inside the hash, so moving an event to
// another room or another id breaks the chain as surely as changing its body.
//
// Idempotency keys live in generations rather than next to each event so that expiring them is
// deleting old generations, without an index by time: a generation is dropped, a bounded number
// of keys per commit, once the generation after it started more than the retention ago.
package eventlog
