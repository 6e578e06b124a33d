// Package hooks puts the application's backend in the loop of room actions: for rooms it covers,
// a join is decided by asking the application over HTTP (a signed JSON request, answered with
// allow or deny, write or not, and how long the decision may be reused), not by the token's room
// claims; with Config.Publish, every event published there is checked by the application too
// before it is appended. An Authorizer plugs into rooms.Hub as its Authorizer, the one place room
// actions are decided. It fails closed: no answer in time, a non-200 status or an answer that does not decode
// is auth.ErrUnavailable, never an allow.
package hooks

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/rooms"
	"golang.org/x/time/rate"
)

// Defaults and bounds of Config.
const (
	DefaultTimeout = 2 * time.Second
	// MaxAnswer bounds the body of a hook's answer; a longer one is garbage.
	MaxAnswer = 64 << 10
	// MaxTTL bounds how long an answer's ttl_ms lets a decision be reused.
	MaxTTL = time.Hour
	// DefaultUserRate is Config.UserRate's default: requests per second for one user, with
	// bursts of twice as many.
	DefaultUserRate = 10
	// MinSecretLength is the shortest hook secret accepted, as for the JWT secret.
	MinSecretLength = auth.MinSecretLength
	// SignatureHeader carries a request's signature (see Sign).
	SignatureHeader = "Roomlog-Signature"
)

// Config configures an Authorizer.
type Config struct {
	// URL is where decisions are asked (http or https). Required.
	URL string
	// Secret signs every request (SignatureHeader). Required: at least MinSecretLength bytes.
	Secret []byte
	// Timeout bounds each request, answer included. Zero or less: DefaultTimeout.
	Timeout time.Duration
	// Rooms are the patterns of the rooms the hook decides; others are decided by the token's
	// claims alone. Empty: every room ("*").
	Rooms []string
	// Publish asks the hook about every event published in its rooms too, before it is
	// appended (a per-event validation): action "publish" with the kind and body, answered
	// allow or deny. Without it a publish needs only the join decision's write.
	Publish bool
	// UserRate bounds the requests asked for one user, per second (decisions reused are not
	// asked); past it an action is unavailable, so that a client joining and leaving in a loop
	// cannot flood the application. Zero or less: DefaultUserRate.
	UserRate float64
	// CacheSize bounds the decisions kept for reuse (their ttl_ms), and the users whose request
	// rate is tracked; past it the oldest go first.
	// Zero or less: 100,000.
	CacheSize int
	// Client sends the requests. Nil: a client of its own (no cookies, no redirects followed).
	Client *http.Client
	// Observe, when set, is told of every decision: the action asked ("join"), its outcome
	// ("allow", "deny", "unavailable"), the request's time (zero when reused) and whether a
	// reused decision answered. It must not block.
	Observe func(action, outcome string, took time.Duration, cached bool)
	// Now is the clock of the cache (signatures use the real time). Nil: time.Now.
	Now func() time.Time
}

// Authorizer decides room actions in the hook's rooms by asking the application, and the others
// by the token's grants. It implements rooms.Authorizer.
type Authorizer struct {
	cfg       Config
	decisions *lru[cacheKey, reusable]    // decisions an answer's ttl_ms lets roomlog reuse
	rates     *lru[string, *rate.Limiter] // requests asked, by user
}

type cacheKey struct{ user, room string }

// reusable is a decision and when it may no longer be reused.
type reusable struct {
	d       Decision
	expires time.Time
}

var (
	_ rooms.Authorizer     = (*Authorizer)(nil)
	_ rooms.PublishChecker = (*Authorizer)(nil)
	_ rooms.Forgetter      = (*Authorizer)(nil)
)

// New checks cfg and returns its Authorizer.
func New(cfg Config) (*Authorizer, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("hooks: URL %q: want an http or https URL", cfg.URL)
	}
	if len(cfg.Secret) < MinSecretLength {
		return nil, fmt.Errorf("hooks: the secret must be at least %d bytes (it signs every request)", MinSecretLength)
	}
	if len(cfg.Rooms) == 0 {
		cfg.Rooms = []string{"*"}
	}
	for _, p := range cfg.Rooms {
		if err := eventlog.ValidPattern(p); err != nil {
			return nil, fmt.Errorf("hooks: rooms: %w", err)
		}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 100_000
	}
	if cfg.UserRate <= 0 {
		cfg.UserRate = DefaultUserRate
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Authorizer{cfg: cfg, decisions: newLRU[cacheKey, reusable](cfg.CacheSize), rates: newLRU[string, *rate.Limiter](cfg.CacheSize)}, nil
}

// Covers reports whether the hook decides actions in room.
func (a *Authorizer) Covers(room string) bool {
	for _, p := range a.cfg.Rooms {
		if eventlog.MatchRoom(p, room) {
			return true
		}
	}
	return false
}

// Authorize implements rooms.Authorizer. In the hook's rooms, joining, reading (history,
// receipts, the HTTP reads) need the application's allow; publishing needs its write, and a
// snapshot also the token's snapshot_rooms claim or, with Config.Publish, the application's
// consent to the event (a snapshot decides what compaction removes).
// Operations on the log (admin) are decided by the token alone, as everywhere.
func (a *Authorizer) Authorize(ctx context.Context, g auth.Grants, action auth.Action, room string) error {
	if action == auth.Operate || !a.Covers(room) || (action == auth.Read && g.Admin) {
		return g.Authorize(action, room)
	}
	d, err := a.decide(ctx, g, room)
	if err != nil {
		return err
	}
	if !d.Allow {
		return &auth.Refusal{Reason: cmp.Or(d.Reason, fmt.Sprintf("the application does not let you into %q", room))}
	}
	switch action {
	case auth.Publish, auth.Snapshot:
		if !d.Write {
			return &auth.Refusal{Reason: fmt.Sprintf("the application lets you read %q, not write to it", room)}
		}
		// A snapshot decides what compaction removes: it needs the token's snapshot_rooms claim,
		// or, with Config.Publish, the application's consent to the event itself (CheckPublish).
		if action == auth.Snapshot && !g.CanSnapshot(room) && !a.cfg.Publish {
			return &auth.Refusal{Reason: fmt.Sprintf("publishing a snapshot to %q needs the token claim snapshot_rooms (snapshots decide what compaction removes)", room)}
		}
	}
	return nil
}

// CheckPublish implements rooms.PublishChecker: with Config.Publish, an event published in the
// hook's rooms is appended only when the application allows it.
func (a *Authorizer) CheckPublish(ctx context.Context, g auth.Grants, room, kind string, body json.RawMessage) error {
	if !a.cfg.Publish || !a.Covers(room) {
		return nil
	}
	req := PublishRequest{Action: "publish", User: g.User, Session: rooms.SessionOf(ctx), Room: room, Kind: cmp.Or(kind, eventlog.KindMessage), Body: body}
	d, err := a.askObserved(ctx, g.User, req.Action, &req)
	if err != nil {
		return err
	}
	if !d.Allow {
		return &auth.Refusal{Reason: cmp.Or(d.Reason, fmt.Sprintf("the application refused this event in %q", room))}
	}
	return nil
}

// PublishRequest is the body of a publish request (Config.Publish).
type PublishRequest struct {
	Action  string          `json:"action"` // "publish"
	User    string          `json:"user"`
	Session string          `json:"session"`
	Room    string          `json:"room"`
	Kind    string          `json:"kind"`
	Body    json.RawMessage `json:"body,omitempty"`
}

// Forget drops the reusable decision for user in room, so that the next action is decided afresh.
func (a *Authorizer) Forget(user, room string) { a.decisions.forget(cacheKey{user, room}) }

// Decision is the application's answer to a join request.
type Decision struct {
	Allow  bool   `json:"allow"`
	Write  bool   `json:"write"`
	TTLMS  int64  `json:"ttl_ms"`
	Reason string `json:"reason"`
}

// JoinRequest is the body of a join request.
type JoinRequest struct {
	Action  string         `json:"action"` // "join"
	User    string         `json:"user"`
	Session string         `json:"session"` // "" for an HTTP request
	Room    string         `json:"room"`
	Claims  map[string]any `json:"claims"` // the token's roomlog claims
}

// decide returns the decision for g's user in room: a reusable one, or the application's answer.
func (a *Authorizer) decide(ctx context.Context, g auth.Grants, room string) (Decision, error) {
	key := cacheKey{g.User, room}
	now := a.cfg.Now()
	if r, ok := a.decisions.get(key); ok {
		if now.Before(r.expires) {
			a.observe("join", r.d, 0, true)
			return r.d, nil
		}
		a.decisions.forget(key)
	}
	req := JoinRequest{Action: "join", User: g.User, Session: rooms.SessionOf(ctx), Room: room, Claims: claimsOf(g)}
	d, err := a.askObserved(ctx, g.User, req.Action, &req)
	if err != nil {
		return Decision{}, err
	}
	if ttl := min(time.Duration(d.TTLMS)*time.Millisecond, MaxTTL); ttl > 0 {
		a.decisions.put(key, reusable{d, now.Add(ttl)})
	}
	return d, nil
}

// askObserved asks the application (ask) for user, within the user's request rate, and tells
// Config.Observe the outcome.
func (a *Authorizer) askObserved(ctx context.Context, user, action string, req any) (Decision, error) {
	limit := a.rates.getOrPut(user, func() *rate.Limiter {
		return rate.NewLimiter(rate.Limit(a.cfg.UserRate), max(1, int(2*a.cfg.UserRate)))
	})
	if !limit.Allow() {
		if a.cfg.Observe != nil {
			a.cfg.Observe(action, "unavailable", 0, false)
		}
		return Decision{}, unavailable("%q asked more than %g decisions a second", user, a.cfg.UserRate)
	}
	start := time.Now()
	d, err := a.ask(ctx, req)
	if err != nil && a.cfg.Observe != nil {
		a.cfg.Observe(action, "unavailable", time.Since(start), false)
	} else if err == nil {
		a.observe(action, d, time.Since(start), false)
	}
	return d, err
}

func (a *Authorizer) observe(action string, d Decision, took time.Duration, cached bool) {
	if a.cfg.Observe == nil {
		return
	}
	outcome := "deny"
	if d.Allow {
		outcome = "allow"
	}
	a.cfg.Observe(action, outcome, took, cached)
}

// ask sends req (a JoinRequest or a PublishRequest) and decodes the answer; every failure wraps
// auth.ErrUnavailable.
func (a *Authorizer) ask(ctx context.Context, req any) (Decision, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return Decision{}, unavailable("encoding the request: %v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.Timeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, a.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return Decision{}, unavailable("%v", err)
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set(SignatureHeader, Sign(a.cfg.Secret, time.Now(), body))
	res, err := a.cfg.Client.Do(hr)
	if err != nil {
		return Decision{}, unavailable("no answer: %v", err)
	}
	defer res.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(res.Body, MaxAnswer+1))
	if err != nil {
		return Decision{}, unavailable("reading the answer: %v", err)
	}
	if res.StatusCode != http.StatusOK {
		return Decision{}, unavailable("the hook answered %s", res.Status)
	}
	return DecodeDecision(answer)
}

// DecodeDecision decodes a hook's answer: a JSON object with a boolean allow, an optional
// boolean write, a ttl_ms from 0 up and a reason string; anything else wraps
// auth.ErrUnavailable.
func DecodeDecision(b []byte) (Decision, error) {
	if len(b) > MaxAnswer {
		return Decision{}, unavailable("the answer is over %d bytes", MaxAnswer)
	}
	var raw struct {
		Allow  *bool  `json:"allow"`
		Write  *bool  `json:"write"`
		TTLMS  *int64 `json:"ttl_ms"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return Decision{}, unavailable("the answer is not a decision: %v", err)
	}
	if raw.Allow == nil {
		return Decision{}, unavailable("the answer has no allow")
	}
	d := Decision{Allow: *raw.Allow, Reason: raw.Reason}
	if raw.Write != nil {
		d.Write = *raw.Write
	}
	if raw.TTLMS != nil {
		if *raw.TTLMS < 0 {
			return Decision{}, unavailable("ttl_ms is negative")
		}
		d.TTLMS = *raw.TTLMS
	}
	if len(d.Reason) > 500 {
		d.Reason = d.Reason[:500]
	}
	return d, nil
}

func unavailable(format string, args ...any) error {
	return fmt.Errorf("hooks: %w: %s", auth.ErrUnavailable, fmt.Sprintf(format, args...))
}

// claimsOf is the token's roomlog claims, as the request gives them to the application.
func claimsOf(g auth.Grants) map[string]any {
	c := map[string]any{"sub": g.User}
	if len(g.Rooms) > 0 {
		c["rooms"] = g.Rooms
	}
	if len(g.ReadRooms) > 0 {
		c["read_rooms"] = g.ReadRooms
	}
	if len(g.SnapshotRooms) > 0 {
		c["snapshot_rooms"] = g.SnapshotRooms
	}
	if g.Admin {
		c["admin"] = true
	}
	return c
}

// Sign is the SignatureHeader value of a request with body sent at t: "t=<unix seconds>,v1=<hex
// HMAC-SHA256 of "<t>.<body>" keyed by secret>".
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// ErrBadSignature is returned by Verify for a request that was not signed with the secret, or
// was signed too long ago.
var ErrBadSignature = errors.New("hooks: bad signature")

// Verify checks, for the application, that header (the SignatureHeader of a request whose body is
// body) was made with secret no more than maxAge before now: what a hook or webhook receiver
// does before believing a request.
func Verify(secret []byte, header string, body []byte, now time.Time, maxAge time.Duration) error {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: no time", ErrBadSignature)
	}
	if age := now.Sub(time.Unix(sec, 0)); age > maxAge || age < -maxAge {
		return fmt.Errorf("%w: signed %s ago", ErrBadSignature, age.Round(time.Second))
	}
	want, err := hex.DecodeString(sig)
	if err != nil || !hmac.Equal(want, mac(secret, ts, body)) {
		return fmt.Errorf("%w: the signature does not match", ErrBadSignature)
	}
	return nil
}
