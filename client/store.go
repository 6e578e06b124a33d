package client

import (
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
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

// FileStore keeps cursors and the outbox in a bbolt file, so that a restarted application resumes
// where it left off and loses no unsent message. Every change is fsynced before it returns.
type FileStore struct{ db *bolt.DB }

var (
	bucketCursors = []byte("cursors")
	bucketOutbox  = []byte("outbox")
)

// OpenFileStore opens (creating it if needed) the store at path.
func OpenFileStore(path string) (*FileStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("client: open store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketCursors, bucketOutbox} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("client: open store %s: %w", path, err)
	}
	return &FileStore{db: db}, nil
}

func (f *FileStore) Cursor(room string) (string, error) {
	var id string
	err := f.db.View(func(tx *bolt.Tx) error {
		id = string(tx.Bucket(bucketCursors).Get([]byte(room)))
		return nil
	})
	return id, err
}

func (f *FileStore) SetCursor(room, id string) error {
	return f.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCursors)
		if cur := string(b.Get([]byte(room))); id <= cur {
			return nil
		}
		return b.Put([]byte(room), []byte(id))
	})
}

func (f *FileStore) AddOutgoing(o Outgoing) error {
	v, err := json.Marshal(o)
	if err != nil {
		return err
	}
	return f.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketOutbox).Put([]byte(o.Key), v) })
}

func (f *FileStore) RemoveOutgoing(key string) error {
	return f.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketOutbox).Delete([]byte(key)) })
}

func (f *FileStore) Outgoing() ([]Outgoing, error) {
	var out []Outgoing
	err := f.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOutbox).ForEach(func(k, v []byte) error {
			var o Outgoing
			if err := json.Unmarshal(v, &o); err != nil {
				return fmt.Errorf("client: outbox entry %s: %w", k, err)
			}
			out = append(out, o)
			return nil
		})
	})
	return out, err
}

func (f *FileStore) Close() error { return f.db.Close() }
