// Package filestore is a client.Store in a bbolt file: a restarted application resumes each room
// where it left off and loses no publish it had not sent. It is a package of its own so that
// applications keeping their state elsewhere do not pull in bbolt.
package filestore

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/roomlog/roomlog/client"
)

var _ client.Store = (*Store)(nil)

// Store keeps cursors and the outbox in a bbolt file, so that a restarted application resumes
// where it left off and loses no unsent message. Every change is fsynced before it returns.
type Store struct{ db *bolt.DB }

var (
	bucketCursors = []byte("cursors")
	bucketOutbox  = []byte("outbox")
)

// Open opens (creating it if needed) the store at path. One process at a time holds it: a second
// Open waits a second for the first to close it, then fails.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("filestore: open %s: %w", path, err)
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
		return nil, fmt.Errorf("filestore: open %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

func (f *Store) Cursor(room string) (string, error) {
	var id string
	err := f.db.View(func(tx *bolt.Tx) error {
		id = string(tx.Bucket(bucketCursors).Get([]byte(room)))
		return nil
	})
	return id, err
}

func (f *Store) SetCursor(room, id string) error {
	return f.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCursors)
		if cur := string(b.Get([]byte(room))); id <= cur {
			return nil
		}
		return b.Put([]byte(room), []byte(id))
	})
}

func (f *Store) AddOutgoing(o client.Outgoing) error {
	v, err := json.Marshal(o)
	if err != nil {
		return err
	}
	return f.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketOutbox).Put([]byte(o.Key), v) })
}

func (f *Store) RemoveOutgoing(key string) error {
	return f.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketOutbox).Delete([]byte(key)) })
}

func (f *Store) Outgoing() ([]client.Outgoing, error) {
	var out []client.Outgoing
	err := f.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOutbox).ForEach(func(k, v []byte) error {
			var o client.Outgoing
			if err := json.Unmarshal(v, &o); err != nil {
				return fmt.Errorf("filestore: outbox entry %s: %w", k, err)
			}
			out = append(out, o)
			return nil
		})
	})
	return out, err
}

func (f *Store) Close() error { return f.db.Close() }
