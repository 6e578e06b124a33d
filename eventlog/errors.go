package eventlog

import (
	"errors"
	"fmt"
)

// Errors for bad input. Each is returned wrapped with what was wrong and where; test with
// errors.Is. A request that fails with one of them changed nothing.
var (
	ErrBadRoom      = errors.New("bad room name")
	ErrBadKind      = errors.New("bad kind")
	ErrReservedKind = errors.New("reserved kind")
	ErrBadUser      = errors.New("bad user")
	ErrBadSession   = errors.New("bad session")
	ErrBadKey       = errors.New("bad idempotency key")
	ErrBadBody      = errors.New("bad body")
	ErrBodyTooLarge = errors.New("body too large")
	ErrBadCursor    = errors.New("bad cursor")
	ErrBadLimit     = errors.New("bad limit")
)

// Errors of state.
var (
	// ErrConflict: a conditional append found another head. The error is a *ConflictError.
	ErrConflict = errors.New("conflict")
	// ErrClosed: the log was closed.
	ErrClosed = errors.New("event log closed")
	// ErrFailed: a commit to storage failed (a failed fsync, a full disk, an I/O error), so the
	// open file could not be trusted. The appends of the failed commit have an unknown outcome:
	// they are durable if the file on disk holds them when it is reopened, and a retry with the
	// same idempotency key then finds them. Until the log has reopened the file from disk, reads
	// fail with ErrFailed too; appends stay refused for a short backoff after that. See
	// boltlog.Log.Health.
	ErrFailed = errors.New("event log failed")
	// ErrLeaseLost: a Lease is no longer this node's (Lease.Store).
	ErrLeaseLost = errors.New("lease lost")
)

// ErrCorrupt: stored data does not decode, or contradicts itself (a record, a head entry, a
// snapshot's body).
var ErrCorrupt = errors.New("data file is corrupt")

// ConflictError is returned when AppendRequest.Expect does not match the room's head.
type ConflictError struct {
	Room string
	Head ID // the room's current last id (zero when the room is empty)
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("eventlog: conflict in room %q: head is %q", e.Room, e.Head.String())
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }
