// Package webhooks delivers the log's events to the application's URLs: for each webhook, the
// events of its rooms and kinds in log order, in signed batches, moving a durable cursor past a
// batch only when the receiver answered 2xx. A failing receiver is retried with a capped backoff;
// an event is never skipped or reordered, and a batch in flight when the server stops is sent
// again (delivery is at least once: receivers deduplicate by event id).
//
// The cursor is kept with the log's Cursors, so a webhook goes on where it stopped after a
// restart or a kill -9. The order is the order of ids, which is the log order of one node's data
// file.
package webhooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/hooks"
	"github.com/roomlog/roomlog/wire"
)

// Defaults of Config.
const (
	DefaultBatch      = 100
	DefaultTimeout    = 10 * time.Second
	DefaultMaxBackoff = time.Minute
	minBackoff        = 250 * time.Millisecond
)

// CursorUser and CursorRoom name a webhook's cursor among the log's cursors: the session is the
// webhook's name.
const (
	CursorUser = "roomlog"
	CursorRoom = auth.SystemRoomPrefix + "webhooks"
)

// Config configures one webhook.
type Config struct {
	Name  string   // 1-64 of A-Z a-z 0-9 _ -
	URL   string   // http or https
	Rooms []string // room patterns; empty: every room but the server's own
	Kinds []string // kinds; empty: every kind
	// Secret signs each batch (hooks.Sign, in hooks.SignatureHeader). Required.
	Secret []byte
	// Batch bounds the events per request. Zero or less: DefaultBatch.
	Batch int
	// Timeout bounds each request. Zero or less: DefaultTimeout.
	Timeout time.Duration
	// MaxBackoff caps the wait between retries of a failing batch. Zero or less:
	// DefaultMaxBackoff.
	MaxBackoff time.Duration
	// Client sends the requests. Nil: a client of its own that follows no redirects.
	Client *http.Client
	Logger *slog.Logger
}

// Store is what a webhook reads and records in the log.
type Store interface {
	eventlog.Auditor
	eventlog.Cursors
	Watch(room string) *eventlog.Watch
}

// Status is where a webhook stands (GET /v1/webhooks).
type Status struct {
	Name         string    `json:"name"`
	URL          string    `json:"url"`
	Cursor       string    `json:"cursor"`                 // the last event delivered, "" before any
	Pending      int       `json:"pending"`                // events after the cursor, counted up to 10,000
	Delivered    int64     `json:"delivered"`              // events delivered since the server started
	LastDelivery time.Time `json:"last_delivery,omitzero"` // the last 2xx
	LastError    string    `json:"last_error,omitempty"`   // the last failure, until a 2xx
	LastErrorAt  time.Time `json:"last_error_at,omitzero"` // when
}

// Webhook delivers one webhook's events until its context ends.
type Webhook struct {
	cfg   Config
	store Store

	mu     sync.Mutex
	status Status
}

// New checks cfg and returns its webhook; Run delivers.
func New(cfg Config, store Store) (*Webhook, error) {
	if !validName(cfg.Name) {
		return nil, fmt.Errorf("webhooks: name %q: want 1-64 of A-Z a-z 0-9 _ -", cfg.Name)
	}
	if u, err := url.Parse(cfg.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("webhooks: %s: URL %q: want an http or https URL", cfg.Name, cfg.URL)
	}
	if len(cfg.Secret) < hooks.MinSecretLength {
		return nil, fmt.Errorf("webhooks: %s: the secret must be at least %d bytes (it signs every batch)", cfg.Name, hooks.MinSecretLength)
	}
	for _, p := range cfg.Rooms {
		if err := eventlog.ValidPattern(p); err != nil {
			return nil, fmt.Errorf("webhooks: %s: rooms: %w", cfg.Name, err)
		}
	}
	for _, k := range cfg.Kinds {
		if err := eventlog.ValidKind(k); err != nil {
			return nil, fmt.Errorf("webhooks: %s: kinds: %w", cfg.Name, err)
		}
	}
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Webhook{cfg: cfg, store: store, status: Status{Name: cfg.Name, URL: cfg.URL}}, nil
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Run delivers until ctx ends: from the durable cursor, a batch at a time, waiting for new
// events when it has caught up and retrying a failing batch with a capped backoff.
func (w *Webhook) Run(ctx context.Context) {
	watch := w.store.Watch("")
	defer watch.Close()
	cursor, err := w.store.Cursor(ctx, CursorUser, w.cfg.Name, CursorRoom)
	for err != nil && ctx.Err() == nil { // the log is recovering: try again
		w.failed(fmt.Errorf("reading the cursor: %w", err))
		sleep(ctx, time.Second)
		cursor, err = w.store.Cursor(ctx, CursorUser, w.cfg.Name, CursorRoom)
	}
	w.mu.Lock()
	if !cursor.IsZero() {
		w.status.Cursor = cursor.String()
	}
	w.mu.Unlock()
	failures := 0
	for ctx.Err() == nil {
		batch, scanned, err := w.next(ctx, cursor)
		if err == nil && scanned.IsZero() {
			select { // caught up: wait for an append (or a minute, as a backstop)
			case <-watch.C():
			case <-ctx.Done():
			case <-time.After(time.Minute):
			}
			continue
		}
		if err == nil && len(batch) > 0 {
			err = w.deliver(ctx, batch)
		}
		if err == nil {
			// Recorded even when ctx ends meanwhile: the receiver has the batch.
			setCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			err = w.store.SetCursor(setCtx, CursorUser, w.cfg.Name, CursorRoom, scanned)
			cancel()
			if err == nil {
				cursor, failures = scanned, 0
				w.delivered(scanned, len(batch))
				continue
			}
		}
		if ctx.Err() != nil {
			return
		}
		failures++
		w.failed(err)
		sleep(ctx, min(w.cfg.MaxBackoff, minBackoff<<min(failures, 16)))
	}
}

// next reads the batch after cursor: up to Batch events, of which those of the webhook's rooms
// and kinds are the batch; scanned is the last id read (the cursor moves past it once the batch
// is delivered, or at once when the batch is empty).
func (w *Webhook) next(ctx context.Context, cursor eventlog.ID) (batch []eventlog.Event, scanned eventlog.ID, err error) {
	f := eventlog.ScanFilter{Rooms: w.cfg.Rooms, After: cursor, Limit: w.cfg.Batch}
	if len(w.cfg.Kinds) == 1 {
		f.Kind = w.cfg.Kinds[0]
	}
	err = w.store.Scan(ctx, f, func(e eventlog.Event) error {
		scanned = e.ID
		if w.wants(&e) {
			batch = append(batch, e)
		}
		return nil
	})
	return batch, scanned, err
}

// wants reports whether the webhook delivers e: not the server's own rooms, and its kinds.
func (w *Webhook) wants(e *eventlog.Event) bool {
	return !auth.IsSystemRoom(e.Room) && w.wantsKind(e.Kind)
}

func (w *Webhook) wantsKind(kind string) bool {
	if len(w.cfg.Kinds) == 0 {
		return true
	}
	for _, k := range w.cfg.Kinds {
		if k == kind {
			return true
		}
	}
	return false
}

// deliver posts one batch, signed; nil only for a 2xx answer.
func (w *Webhook) deliver(ctx context.Context, batch []eventlog.Event) error {
	body := Encode(w.cfg.Name, batch)
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(hooks.SignatureHeader, hooks.Sign(w.cfg.Secret, time.Now(), body))
	res, err := w.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("the receiver answered %s", res.Status)
	}
	return nil
}

// Encode is a batch's body: {"webhook":"<name>","events":[<event objects, as GET /v1/events
// prints them>]}.
func Encode(name string, batch []eventlog.Event) []byte {
	b := []byte(`{"webhook":`)
	b = appendQuoted(b, name)
	b = append(b, `,"events":[`...)
	for i := range batch {
		if i > 0 {
			b = append(b, ',')
		}
		e := &batch[i]
		b = wire.AppendEventJSON(b, &wire.StoredEvent{ID: e.ID, Room: e.Room, Kind: e.Kind, User: e.User, Session: e.Session, Key: e.Key, Body: e.Body})
	}
	return append(b, "]}"...)
}

func appendQuoted(b []byte, s string) []byte {
	return append(append(append(b, '"'), s...), '"') // names are validated: nothing to escape
}

func (w *Webhook) delivered(last eventlog.ID, n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.status.Cursor = last.String()
	if n > 0 {
		w.status.Delivered += int64(n)
		w.status.LastDelivery = time.Now().UTC()
	}
	w.status.LastError, w.status.LastErrorAt = "", time.Time{}
}

func (w *Webhook) failed(err error) {
	w.cfg.Logger.Warn("webhook delivery failed; retrying", "webhook", w.cfg.Name, "err", err)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.status.LastError = err.Error()
	w.status.LastErrorAt = time.Now().UTC()
}

// Status reports where the webhook stands, counting the events after its cursor (up to 10,000).
func (w *Webhook) Status(ctx context.Context) Status {
	w.mu.Lock()
	s := w.status
	w.mu.Unlock()
	var after eventlog.ID
	if s.Cursor != "" {
		after, _ = eventlog.ParseID(s.Cursor)
	}
	f := eventlog.ScanFilter{Rooms: w.cfg.Rooms, After: after, Limit: 10000}
	w.store.Scan(ctx, f, func(e eventlog.Event) error {
		if w.wants(&e) {
			s.Pending++
		}
		return nil
	})
	return s
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// ParseFlag parses a NAME=VALUE flag value.
func ParseFlag(v string) (name, value string, err error) {
	name, value, ok := strings.Cut(v, "=")
	if !ok || !validName(name) || value == "" {
		return "", "", errors.New("want NAME=VALUE, NAME 1-64 of A-Z a-z 0-9 _ -")
	}
	return name, value, nil
}
