package boltlog

// SetCompactChunk sets how many events one compaction step of l removes (a test hook: small
// steps make a compaction many commits long, to crash in the middle of).
func SetCompactChunk(l *Log, n int) { l.compactChunk = n }

// SetVerifyChunk sets how many events Verify checks per read transaction (small: a verification
// many transactions long, for a compaction to run in between).
func SetVerifyChunk(l *Log, n int) { l.verifyChunk = n }
