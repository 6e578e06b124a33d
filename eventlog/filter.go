package eventlog

import "fmt"

// What a ScanFilter lets through, as every backend's Scan applies it.

// Matches reports whether e passes the filter's user, kind and id bounds (not its rooms).
func (f *ScanFilter) Matches(e *Event) bool {
	if f.User != "" && e.User != f.User {
		return false
	}
	if f.Kind != "" && e.Kind != f.Kind {
		return false
	}
	if e.ID.Compare(f.After) <= 0 || e.ID.Compare(f.Since) < 0 {
		return false
	}
	return f.Until.IsZero() || e.ID.Compare(f.Until) < 0
}

// MatchesRoom reports whether room passes the filter's room patterns.
func (f *ScanFilter) MatchesRoom(room string) bool {
	if len(f.Rooms) == 0 {
		return true
	}
	for _, p := range f.Rooms {
		if MatchRoom(p, room) {
			return true
		}
	}
	return false
}

// Check validates the filter's room patterns and limit, as Scan does before it reads.
func (f *ScanFilter) Check() error {
	for _, p := range f.Rooms {
		if err := ValidPattern(p); err != nil {
			return fmt.Errorf("eventlog: scan: %w", err)
		}
	}
	if f.Limit < 0 {
		return fmt.Errorf("eventlog: scan: %w: %d", ErrBadLimit, f.Limit)
	}
	return nil
}

// InRange reports whether id is before the filter's Until (always, when Until is zero).
func (f *ScanFilter) InRange(id ID) bool {
	return f.Until.IsZero() || id.Compare(f.Until) < 0
}
