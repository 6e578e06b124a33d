// Package boltlog is the embedded backend of eventlog: one bbolt file, which it opens with
// Open, checks page by page before bbolt maps it, and writes from one goroutine doing group
// commit. Log has every role of eventlog.Store and HealthChecker; it applies the shared append
// rules (eventlog.ApplyAppend) in its transactions and verifies through eventlog.VerifyRooms.
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
// Event records (the values of rooms/<room>) are eventlog's record format; see the eventlog
// package comment.
//
// Idempotency keys live in generations rather than next to each event so that expiring them is
// deleting old generations, without an index by time: a generation is dropped, a bounded number
// of keys per commit, once the generation after it started more than the retention ago.
package boltlog
