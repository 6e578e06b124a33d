// Package webhooks delivers the log's events to the application's URLs: for each webhook, the
// events of its rooms and kinds in log order, in signed batches, moving a durable cursor past a
// batch only when the receiver answered 2xx. A failing receiver is retried with a capped backoff;
// an event is never skipped or reordered. The cursor is written behind the deliveries, one
// batch deep (deliverFrom), so a crash sends again at most the two batches after the durable
// cursor (delivery is at least once: receivers deduplicate by event id).
//
// The cursor is durable, so a webhook goes on where it stopped after a restart or a kill -9. On
// one node's data file the order is the order of ids and the cursor is kept with the log's
// Cursors. On a log several nodes share (eventlog.Feeder and eventlog.Leaser: JetStream), the
// order is the log's feed, and exactly one node delivers each webhook at a time: the one
// holding the webhook's lease, whose value is the cursor. When that node dies, another takes
// the lease over and goes on from the cursor; a node that lost its lease cannot move the cursor
// (see reader.go).
package webhooks

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/hooks"
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

// Store is what a webhook reads and records in the log. A Store that is also an
// eventlog.Feeder and an eventlog.Leaser is a log several nodes share, read by its feed.
type Store interface {
	eventlog.Auditor
	eventlog.Cursors
	Watch(room string) *eventlog.Watch
}

// Status is where a webhook stands (GET /v1/webhooks).
type Status struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	// Cursor is where delivery stands: the id of the last event read (on one node) or the
	// log's feed position (on JetStream); "" before any.
	Cursor string `json:"cursor"`
	// Pending counts the events after the cursor the webhook delivers, among the next 10,000.
	Pending int `json:"pending"`
	// LagMS is how long ago the oldest pending event was appended, in milliseconds (by its id's
	// time, so on JetStream by the clock of the node that appended it); 0 when none is.
	LagMS int64 `json:"lag_ms"`
	// Node is the node delivering the webhook, on a log several nodes share ("" while none
	// holds its lease, and on one node).
	Node string `json:"node,omitempty"`
	// What this node did since it started:
	Delivered    int64     `json:"delivered"`              // events delivered
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
// events when it has caught up and retrying a failing batch with a capped backoff. On a log
// several nodes share, it first waits for the webhook's lease, and delivers while it holds it.
func (w *Webhook) Run(ctx context.Context) {
	watch := w.store.Watch("")
	defer watch.Close()
	for ctx.Err() == nil {
		r, err := w.openReader(ctx)
		if errors.Is(err, eventlog.ErrClosed) {
			return
		}
		if err != nil {
			if ctx.Err() == nil { // the log is recovering: try again
				w.failed(err)
				sleep(ctx, time.Second)
			}
			continue
		}
		w.mu.Lock()
		w.status.Cursor = r.cursor()
		w.mu.Unlock()
		w.deliverFrom(ctx, r, watch)
		r.close()
	}
}

// wants reports whether the webhook delivers e, whose room it already matched: not the
// server's own rooms, and its kinds.
func (w *Webhook) wants(e *eventlog.Event) bool {
	return !auth.IsSystemRoom(e.Room) && w.wantsKind(e.Kind)
}

// wantsRoom reports whether room matches the webhook's room patterns.
func (w *Webhook) wantsRoom(room string) bool {
	return (&eventlog.ScanFilter{Rooms: w.cfg.Rooms}).MatchesRoom(room)
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

func (w *Webhook) delivered(cursor string, n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.status.Cursor = cursor
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

// maxPending bounds the events Status reads to count those pending.
const maxPending = 10000

// Status reports where the webhook stands, counting the events after its cursor (up to
// maxPending read). On a shared log the cursor and the delivering node are read from the
// webhook's lease, so every node reports them alike.
func (w *Webhook) Status(ctx context.Context) Status {
	w.mu.Lock()
	s := w.status
	w.mu.Unlock()
	if shared, ok := w.store.(sharedStore); ok {
		value, holder, err := shared.LeaseState(ctx, w.cfg.Name)
		pos, perr := parsePosition(value)
		if err != nil || perr != nil {
			s.LastError = fmt.Sprintf("reading the webhook's lease: %v", cmp.Or(err, perr))
			return s
		}
		s.Cursor, s.Node = positionText(pos), holder
		shared.Feed(ctx, pos, maxPending, func(e *eventlog.Event) error {
			if w.wantsRoom(e.Room) && w.wants(e) {
				s.pending(e)
			}
			return nil
		})
		return s
	}
	after, _ := eventlog.ParseID(s.Cursor)
	f := eventlog.ScanFilter{Rooms: w.cfg.Rooms, After: after, Limit: maxPending}
	w.store.Scan(ctx, f, func(e eventlog.Event) error {
		if w.wants(&e) {
			s.pending(&e)
		}
		return nil
	})
	return s
}

// pending counts e, an event after the cursor, among those pending.
func (s *Status) pending(e *eventlog.Event) {
	if s.Pending == 0 {
		s.LagMS = max(time.Since(e.ID.Time()).Milliseconds(), 1)
	}
	s.Pending++
}

// Name is the webhook's name.
func (w *Webhook) Name() string { return w.cfg.Name }

// HasDelivered reports whether the webhook has gone past the event id of room: a compaction
// that would remove it asks first (never a skipped event). A room the webhook does not
// deliver is past. On a shared log the answer is read from the feed after the cursor, up to
// maxPending events: further behind than that counts as not past.
func (w *Webhook) HasDelivered(ctx context.Context, room string, id eventlog.ID) (bool, error) {
	if !w.wantsRoom(room) || auth.IsSystemRoom(room) {
		return true, nil
	}
	if shared, ok := w.store.(sharedStore); ok {
		value, _, err := shared.LeaseState(ctx, w.cfg.Name)
		if err != nil {
			return false, err
		}
		pos, err := parsePosition(value)
		if err != nil {
			return false, err
		}
		found, read := false, 0
		_, err = shared.Feed(ctx, pos, maxPending, func(e *eventlog.Event) error {
			read++
			if e.Room == room && e.ID == id {
				found = true
				return errFound
			}
			return nil
		})
		if err != nil && !errors.Is(err, errFound) {
			return false, err
		}
		return !found && read < maxPending, nil
	}
	cursor, err := w.store.Cursor(ctx, CursorUser, w.cfg.Name, CursorRoom)
	return err == nil && cursor.Compare(id) >= 0, err
}

var errFound = errors.New("found")

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
