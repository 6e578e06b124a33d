package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/roomlog/roomlog/hooks"
)

// App is the application: its sharing table, and what it needs to answer roomlog and act on it.
type App struct {
	Table      *Table
	Secret     []byte // roomlog's --hook-secret
	Roomlog    string // roomlog's HTTP address
	AdminToken string // a roomlog admin token
	Logger     *slog.Logger
	Client     *http.Client // for roomlog's admin API; nil: http.DefaultClient
}

// Handler serves the hook and the sharing endpoints.
func (a *App) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /hook", a.hook)
	mux.HandleFunc("POST /share", a.share)
	mux.HandleFunc("POST /unshare", a.unshare)
	mux.HandleFunc("POST /webhook", a.webhook)
	mux.HandleFunc("GET /activity", a.activity)
	return mux
}

// decisionTTL is how long roomlog may reuse an allow. An unshare removes the person from the
// room at once (and roomlog forgets the decision then), so it can be long.
const decisionTTL = 5 * time.Minute

// hook answers roomlog's join (and publish) requests from the sharing table.
func (a *App) hook(w http.ResponseWriter, r *http.Request) {
	body, ok := a.readSigned(w, r, 1<<20)
	if !ok {
		return
	}
	var req struct{ Action, User, Room string }
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, "not a hook request", http.StatusBadRequest)
		return
	}
	access, err := a.Table.Access(req.Room, req.User)
	if err != nil {
		http.Error(w, "the sharing table is unavailable", http.StatusInternalServerError) // roomlog: unavailable
		return
	}
	answer := map[string]any{"allow": access != "", "write": access == "write", "ttl_ms": decisionTTL.Milliseconds()}
	if access == "" {
		answer = map[string]any{"allow": false, "reason": "this document is not shared with you"}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(answer)
}

// webhook takes roomlog's webhook batches (--webhook sharing=http://.../webhook) and projects
// them into the application's own table: the last activity of each document, by whom. A batch
// may come twice (delivery is at least once): the projection keeps the latest event id, so a
// repeat changes nothing.
func (a *App) webhook(w http.ResponseWriter, r *http.Request) {
	body, ok := a.readSigned(w, r, 8<<20)
	if !ok {
		return
	}
	var batch struct {
		Events []Activity `json:"events"`
	}
	if err := json.Unmarshal(body, &batch); err != nil {
		http.Error(w, "not a webhook batch", http.StatusBadRequest)
		return
	}
	if err := a.Table.Project(batch.Events); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError) // roomlog retries the batch
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// readSigned reads a request from roomlog (up to max bytes) and checks its signature: a request
// not signed with the secret, or signed long ago, is refused (anyone could otherwise send it).
func (a *App) readSigned(w http.ResponseWriter, r *http.Request, max int64) ([]byte, bool) {
	body, err := io.ReadAll(io.LimitReader(r.Body, max))
	if err != nil {
		http.Error(w, "cannot read the request", http.StatusBadRequest)
		return nil, false
	}
	if err := hooks.Verify(a.Secret, r.Header.Get(hooks.SignatureHeader), body, time.Now(), time.Minute); err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return nil, false
	}
	return body, true
}

// activity answers the projection: each document's last event and who made it.
func (a *App) activity(w http.ResponseWriter, r *http.Request) {
	all, err := a.Table.Activity()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(all)
}

type shareRequest struct {
	Room   string `json:"room"`
	User   string `json:"user"`
	Access string `json:"access"` // "write" or "read"
}

func (a *App) share(w http.ResponseWriter, r *http.Request) {
	var in shareRequest
	if !decode(w, r, &in) {
		return
	}
	if in.Access != "write" && in.Access != "read" {
		http.Error(w, `access must be "write" or "read"`, http.StatusBadRequest)
		return
	}
	if err := a.Table.Share(in.Room, in.User, in.Access); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// unshare takes the share out of the table, then has roomlog remove the person from the room:
// their open sessions are told and stop receiving it, and a rejoin asks the hook again.
func (a *App) unshare(w http.ResponseWriter, r *http.Request) {
	var in shareRequest
	if !decode(w, r, &in) {
		return
	}
	if err := a.Table.Unshare(in.Room, in.User); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := a.removeFromRoom(r, in.Room, in.User); err != nil {
		a.Logger.Warn("unshared, but roomlog did not remove the person", "room", in.Room, "user", in.User, "err", err)
		http.Error(w, "unshared; removing the person from the open document failed: "+err.Error(), http.StatusBadGateway)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *App) removeFromRoom(r *http.Request, room, user string) error {
	u := a.Roomlog + "/v1/rooms/" + url.PathEscape(room) + "/members/" + url.PathEscape(user) + "/remove"
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, u, strings.NewReader(`{"reason":"the document was unshared"}`))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.AdminToken)
	c := a.Client
	if c == nil {
		c = http.DefaultClient
	}
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 1024))
		return fmt.Errorf("roomlog answered %s: %s", res.Status, b)
	}
	return nil
}

func decode(w http.ResponseWriter, r *http.Request, v *shareRequest) bool {
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(v); err != nil || v.Room == "" || v.User == "" {
		http.Error(w, `the body must be {"room":..,"user":..}`, http.StatusBadRequest)
		return false
	}
	return true
}

// Table is the sharing table: who may open which room, and how.
type Table struct{ db *bolt.DB }

var (
	bucketShares   = []byte("shares")
	bucketActivity = []byte("activity")
)

func openTable(path string) (*Table, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketShares); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(bucketActivity)
		return err
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &Table{db: db}, nil
}

func shareKey(room, user string) ([]byte, error) {
	if room == "" || user == "" || strings.ContainsRune(room, 0) || strings.ContainsRune(user, 0) {
		return nil, errors.New("a room and a user, without NUL")
	}
	return []byte(room + "\x00" + user), nil
}

// Access is "write", "read" or "" (not shared).
func (t *Table) Access(room, user string) (string, error) {
	k, err := shareKey(room, user)
	if err != nil {
		return "", nil
	}
	var access string
	err = t.db.View(func(tx *bolt.Tx) error {
		access = string(tx.Bucket(bucketShares).Get(k))
		return nil
	})
	return access, err
}

// Share records that user may open room with access.
func (t *Table) Share(room, user, access string) error {
	k, err := shareKey(room, user)
	if err != nil {
		return err
	}
	return t.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketShares).Put(k, []byte(access)) })
}

// Unshare forgets user's access to room.
func (t *Table) Unshare(room, user string) error {
	k, err := shareKey(room, user)
	if err != nil {
		return err
	}
	return t.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketShares).Delete(k) })
}

// Activity is a document's last event, as the webhook delivered it.
type Activity struct {
	Room string `json:"room"`
	ID   string `json:"id"`
	Kind string `json:"kind"`
	User string `json:"user"`
}

// Project records each event as its room's last activity, unless a later one is recorded
// already (ids grow in log order, so a repeated batch changes nothing).
func (t *Table) Project(events []Activity) error {
	return t.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketActivity)
		for _, e := range events {
			var cur Activity
			if v := b.Get([]byte(e.Room)); v != nil && json.Unmarshal(v, &cur) == nil && cur.ID >= e.ID {
				continue
			}
			v, err := json.Marshal(e)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(e.Room), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// Activity lists every document's last activity, by room.
func (t *Table) Activity() ([]Activity, error) {
	var out []Activity
	err := t.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketActivity).ForEach(func(_, v []byte) error {
			var a Activity
			if err := json.Unmarshal(v, &a); err != nil {
				return err
			}
			out = append(out, a)
			return nil
		})
	})
	return out, err
}

// Close closes the table's file.
func (t *Table) Close() error { return t.db.Close() }
