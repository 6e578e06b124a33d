package client

import (
	"encoding/json"
	"sort"
	"sync"
)

// Outgoing is a publish that has not been acked yet.
type Outgoing struct {
	Key    string          `json:"key"` // the idempotency key; also orders the outbox
	Room   string          `json:"room"`
	Kind   string          `json:"kind,omitempty"`
	Body   json.RawMessage `json:"body,omitempty"`
	Expect *string         `json:"expect,omitempty"`
}

// Store keeps what must survive a restart of the application: each room's cursor (the id of the
// last event delivered) and the outbox (publishes not yet acked). Implementations must be safe
// for concurrent use.
type Store interface {
	Cursor(room string) (string, error)
	SetCursor(room, id string) error
	AddOutgoing(o Outgoing) error
	RemoveOutgoing(key string) error
	// Outgoing lists the outbox in key order (the order publishes were made).
	Outgoing() ([]Outgoing, error)
	Close() error
}

// MemoryStore keeps cursors and the outbox in memory: a restarted process starts afresh. The zero
// value is not usable; call NewMemoryStore.
type MemoryStore struct {
	mu      sync.Mutex
	cursors map[string]string
	out     map[string]Outgoing
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{cursors: map[string]string{}, out: map[string]Outgoing{}}
}

func (m *MemoryStore) Cursor(room string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cursors[room], nil
}

func (m *MemoryStore) SetCursor(room, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if id > m.cursors[room] {
		m.cursors[room] = id
	}
	return nil
}

func (m *MemoryStore) AddOutgoing(o Outgoing) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.out[o.Key] = o
	return nil
}

func (m *MemoryStore) RemoveOutgoing(key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.out, key)
	return nil
}

func (m *MemoryStore) Outgoing() ([]Outgoing, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Outgoing, 0, len(m.out))
	for _, o := range m.out {
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func (m *MemoryStore) Close() error { return nil }
