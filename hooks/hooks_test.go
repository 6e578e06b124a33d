package hooks_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/memlog"
	"github.com/roomlog/roomlog/hooks"
	"github.com/roomlog/roomlog/rooms"
	"go.uber.org/goleak"
)

var secret = []byte("hook-test-secret-of-32-bytes-or-more")

// backend is a real HTTP server on loopback playing the application: it checks each request's
// signature as an application must, records the requests and answers with answer.
type backend struct {
	*httptest.Server
	calls atomic.Int64

	mu       sync.Mutex
	requests []hooks.JoinRequest
	badSigs  int
}

func newBackend(t *testing.T, answer func(r hooks.JoinRequest) (status int, body string)) *backend {
	b := &backend{}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		if err := hooks.Verify(secret, r.Header.Get(hooks.SignatureHeader), body, time.Now(), time.Minute); err != nil {
			b.mu.Lock()
			b.badSigs++
			b.mu.Unlock()
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var req hooks.JoinRequest
		json.Unmarshal(body, &req)
		b.mu.Lock()
		b.requests = append(b.requests, req)
		b.mu.Unlock()
		status, answer := answer(req)
		w.WriteHeader(status)
		io.WriteString(w, answer)
	}))
	t.Cleanup(b.Close)
	return b
}

func newAuthorizer(t *testing.T, url string, tweak ...func(*hooks.Config)) *hooks.Authorizer {
	cfg := hooks.Config{URL: url, Secret: secret, Timeout: 300 * time.Millisecond, Rooms: []string{"doc:*"}}
	for _, f := range tweak {
		f(&cfg)
	}
	a, err := hooks.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

var alice = auth.Grants{User: "alice", Rooms: []string{"chat:*"}}

func ctx() context.Context { return rooms.WithSession(context.Background(), "phone") }

// TestDecisions: the application's allow, write, read-only and deny (with its reason) decide
// joins and publishes in the hook's rooms, whatever the token's room claims; other rooms keep
// the claims; the request names the action, user, session, room and the token's claims.
func TestDecisions(t *testing.T) {
	b := newBackend(t, func(r hooks.JoinRequest) (int, string) {
		switch r.Room {
		case "doc:rw":
			return 200, `{"allow":true,"write":true}`
		case "doc:ro":
			return 200, `{"allow":true}`
		}
		return 200, `{"allow":false,"reason":"not shared with you"}`
	})
	a := newAuthorizer(t, b.URL)
	check := func(action auth.Action, room string, want error) {
		t.Helper()
		err := a.Authorize(ctx(), alice, action, room)
		if (want == nil) != (err == nil) || (want != nil && !errors.Is(err, want)) {
			t.Errorf("%v on %s: %v, want %v", action, room, err, want)
		}
	}
	check(auth.Join, "doc:rw", nil)
	check(auth.Publish, "doc:rw", nil)
	check(auth.Join, "doc:ro", nil)
	check(auth.History, "doc:ro", nil)
	check(auth.Publish, "doc:ro", auth.ErrForbidden)
	check(auth.Snapshot, "doc:rw", auth.ErrForbidden) // the token has no snapshot_rooms
	check(auth.Join, "doc:secret", auth.ErrForbidden)
	check(auth.Join, "chat:1", nil)              // not the hook's: the claims allow it
	check(auth.Join, "other", auth.ErrForbidden) // nor do they allow this
	var refusal *auth.Refusal
	if err := a.Authorize(ctx(), alice, auth.Join, "doc:secret"); !errors.As(err, &refusal) || refusal.Reason != "not shared with you" {
		t.Errorf("the refusal says %v, want the application's reason", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.badSigs != 0 {
		t.Errorf("%d requests did not verify", b.badSigs)
	}
	r := b.requests[0]
	if r.Action != "join" || r.User != "alice" || r.Session != "phone" || r.Room != "doc:rw" || r.Claims["sub"] != "alice" {
		t.Errorf("request %+v", r)
	}
	if n := b.calls.Load(); n != 8 { // chat:1 and other never asked; no ttl, so no reuse
		t.Errorf("%d calls, want 8", n)
	}
}

// TestFailsClosed: a hook that answers too late, with a 5xx, with something not a decision, or
// not at all gives auth.ErrUnavailable, never an allow.
func TestFailsClosed(t *testing.T) {
	answers := map[string]func(w http.ResponseWriter){
		"slow":     func(w http.ResponseWriter) { time.Sleep(time.Second); io.WriteString(w, `{"allow":true}`) },
		"5xx":      func(w http.ResponseWriter) { w.WriteHeader(502); io.WriteString(w, `{"allow":true}`) },
		"4xx":      func(w http.ResponseWriter) { w.WriteHeader(404) },
		"html":     func(w http.ResponseWriter) { io.WriteString(w, `<html>allow</html>`) },
		"no-allow": func(w http.ResponseWriter) { io.WriteString(w, `{"write":true}`) },
		"string":   func(w http.ResponseWriter) { io.WriteString(w, `{"allow":"yes"}`) },
		"neg-ttl":  func(w http.ResponseWriter) { io.WriteString(w, `{"allow":true,"ttl_ms":-1}`) },
		"huge": func(w http.ResponseWriter) {
			io.WriteString(w, `{"allow":true,"reason":"`+strings.Repeat("x", hooks.MaxAnswer)+`"}`)
		},
		"redirect": func(w http.ResponseWriter) { w.Header().Set("Location", "/elsewhere"); w.WriteHeader(302) },
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		answers[strings.TrimPrefix(r.URL.Path, "/")](w)
	}))
	defer srv.Close()
	for name := range answers {
		a := newAuthorizer(t, srv.URL+"/"+name)
		start := time.Now()
		err := a.Authorize(ctx(), alice, auth.Join, "doc:1")
		if !errors.Is(err, auth.ErrUnavailable) {
			t.Errorf("%s: %v, want unavailable", name, err)
		}
		if took := time.Since(start); took > 900*time.Millisecond {
			t.Errorf("%s: took %s, past the timeout", name, took)
		}
	}
	// Nobody listening.
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	if err := newAuthorizer(t, dead.URL).Authorize(ctx(), alice, auth.Join, "doc:1"); !errors.Is(err, auth.ErrUnavailable) {
		t.Errorf("no server: %v, want unavailable", err)
	}
}

// TestReuse: a decision is reused for its ttl_ms (bounded by MaxTTL) for that user and room, then
// asked again; Forget drops it at once; the cache stays within its bound.
func TestReuse(t *testing.T) {
	b := newBackend(t, func(hooks.JoinRequest) (int, string) { return 200, `{"allow":true,"write":true,"ttl_ms":60000}` })
	now := time.Now()
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	var hits atomic.Int64
	a := newAuthorizer(t, b.URL, func(c *hooks.Config) {
		c.Now = func() time.Time { return time.Unix(0, clock.Load()) }
		c.CacheSize = 3
		c.Observe = func(_, _ string, _ time.Duration, cached bool) {
			if cached {
				hits.Add(1)
			}
		}
	})
	for range 5 {
		if err := a.Authorize(ctx(), alice, auth.Publish, "doc:1"); err != nil {
			t.Fatal(err)
		}
	}
	if n, h := b.calls.Load(), hits.Load(); n != 1 || h != 4 {
		t.Fatalf("%d calls and %d reuses for five publishes, want 1 and 4", n, h)
	}
	a.Authorize(ctx(), auth.Grants{User: "bob"}, auth.Join, "doc:1") // another user: asked
	clock.Add(int64(61 * time.Second))
	a.Authorize(ctx(), alice, auth.Join, "doc:1") // expired: asked
	a.Forget("alice", "doc:1")
	a.Authorize(ctx(), alice, auth.Join, "doc:1") // forgotten: asked
	if n := b.calls.Load(); n != 4 {
		t.Fatalf("%d calls, want 4", n)
	}
	for i := range 10 {
		if err := a.Authorize(ctx(), alice, auth.Join, "doc:many-"+string(rune('a'+i))); err != nil {
			t.Fatal(err)
		}
	}
	if n := hooks.CacheLen(a); n != 3 {
		t.Errorf("the cache holds %d decisions, want its bound 3", n)
	}
}

// TestUserRate: the requests one user causes are bounded (a client joining a refused room in a
// loop): past the rate the action is unavailable without asking the application; another user is
// not held back, and reused decisions do not count.
func TestUserRate(t *testing.T) {
	b := newBackend(t, func(r hooks.JoinRequest) (int, string) {
		if r.Room == "doc:shared" {
			return 200, `{"allow":true,"ttl_ms":60000}`
		}
		return 200, `{"allow":false,"reason":"no"}`
	})
	a := newAuthorizer(t, b.URL, func(c *hooks.Config) { c.UserRate = 1 }) // bursts of 2
	for range 5 {
		a.Authorize(ctx(), alice, auth.Join, "doc:shared") // asked once, then reused
	}
	err1 := a.Authorize(ctx(), alice, auth.Join, "doc:secret")
	err2 := a.Authorize(ctx(), alice, auth.Join, "doc:secret")
	if !errors.Is(err1, auth.ErrForbidden) || !errors.Is(err2, auth.ErrUnavailable) {
		t.Errorf("past the rate: %v, then %v; want forbidden, then unavailable", err1, err2)
	}
	if err := a.Authorize(ctx(), auth.Grants{User: "bob"}, auth.Join, "doc:secret"); !errors.Is(err, auth.ErrForbidden) {
		t.Errorf("another user: %v, want the application's refusal", err)
	}
	if n := b.calls.Load(); n != 3 {
		t.Errorf("the application was asked %d times, want 3", n)
	}
}

// TestSignatures: Verify accepts what Sign made with the secret, and refuses another secret, a
// changed body, an old signature and garbage.
func TestSignatures(t *testing.T) {
	now := time.Now()
	body := []byte(`{"action":"join"}`)
	sig := hooks.Sign(secret, now, body)
	if err := hooks.Verify(secret, sig, body, now, time.Minute); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		secret []byte
		header string
		body   []byte
		now    time.Time
	}{
		"forged":    {[]byte("another-secret-of-32-bytes-or-more!!"), sig, body, now},
		"changed":   {secret, sig, []byte(`{"action":"leave"}`), now},
		"expired":   {secret, sig, body, now.Add(10 * time.Minute)},
		"garbage":   {secret, "v1=zz,t=x", body, now},
		"no header": {secret, "", body, now},
	} {
		if err := hooks.Verify(c.secret, c.header, c.body, c.now, time.Minute); !errors.Is(err, hooks.ErrBadSignature) {
			t.Errorf("%s: %v, want ErrBadSignature", name, err)
		}
	}
}

func TestConfigRefused(t *testing.T) {
	for name, cfg := range map[string]hooks.Config{
		"no url":       {Secret: secret},
		"ftp":          {URL: "ftp://x/", Secret: secret},
		"short secret": {URL: "http://127.0.0.1/", Secret: []byte("short")},
		"bad pattern":  {URL: "http://127.0.0.1/", Secret: secret, Rooms: []string{"d*c"}},
	} {
		if _, err := hooks.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzDecodeDecision: whatever a hook answers, decoding it never panics, and an answer it
// accepts had an allow.
func FuzzDecodeDecision(f *testing.F) {
	for _, s := range []string{`{"allow":true,"write":true,"ttl_ms":5}`, `{"allow":false,"reason":"no"}`, `{}`, `[]`, `null`, `{"allow":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := hooks.DecodeDecision(b)
		if err != nil {
			if !errors.Is(err, auth.ErrUnavailable) {
				t.Fatalf("error %v does not wrap ErrUnavailable", err)
			}
			return
		}
		if d.TTLMS < 0 || !strings.Contains(string(b), "allow") {
			t.Fatalf("accepted %q as %+v", b, d)
		}
	})
}

// TestPublishHook: with Publish set, every event published in the hook's rooms through a real
// hub is shown to the application (kind and body) and appended only when it allows it; a refusal
// carries its reason, a failing hook is unavailable, and nothing is appended for either. Rooms
// outside the hook are not asked.
func TestPublishHook(t *testing.T) {
	var published atomic.Int64
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if hooks.Verify(secret, r.Header.Get(hooks.SignatureHeader), body, time.Now(), time.Minute) != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var req hooks.PublishRequest
		json.Unmarshal(body, &req)
		switch {
		case req.Action == "join":
			io.WriteString(w, `{"allow":true,"write":true,"ttl_ms":60000}`)
		case req.Kind == "snapshot": // the application's consent to a snapshot, by its content
			if strings.Contains(string(req.Body), "trusted") {
				io.WriteString(w, `{"allow":true}`)
			} else {
				io.WriteString(w, `{"allow":false,"reason":"not a snapshot of ours"}`)
			}
		case req.Session != "phone" || req.Kind != "message":
			io.WriteString(w, `{"allow":false,"reason":"who is this?"}`)
		case strings.Contains(string(req.Body), "swear"):
			published.Add(1)
			io.WriteString(w, `{"allow":false,"reason":"mind your language"}`)
		case strings.Contains(string(req.Body), "crash"):
			w.WriteHeader(500)
		default:
			published.Add(1)
			io.WriteString(w, `{"allow":true}`)
		}
	}))
	defer b.Close()
	a := newAuthorizer(t, b.URL, func(c *hooks.Config) { c.Publish = true })
	l := memlog.New(memlog.Options{})
	defer l.Close()
	h := rooms.NewHub(l, rooms.Options{Authorizer: a})
	defer h.Close(context.Background())
	publish := func(room, body string) error {
		t.Helper()
		p, err := h.AuthorizePublish(ctx(), alice, room, "")
		if err != nil {
			return err
		}
		pending, err := h.Publish(p, eventlog.AppendRequest{Room: room, Body: json.RawMessage(body)})
		if err != nil {
			return err
		}
		_, err = pending.Wait(context.Background())
		return err
	}
	if err := publish("doc:1", `{"text":"hello"}`); err != nil {
		t.Fatal(err)
	}
	var refusal *auth.Refusal
	if err := publish("doc:1", `{"text":"swear"}`); !errors.As(err, &refusal) || refusal.Reason != "mind your language" {
		t.Errorf("a refused event: %v", err)
	}
	if err := publish("doc:1", `{"text":"crash"}`); !errors.Is(err, auth.ErrUnavailable) {
		t.Errorf("a failing hook: %v, want unavailable", err)
	}
	if err := publish("chat:1", `{"text":"swear"}`); err != nil { // not the hook's room
		t.Errorf("chat: %v", err)
	}
	// A snapshot without the token's snapshot_rooms claim: the application's consent decides.
	snapshotPermit, err := h.AuthorizePublish(ctx(), alice, "doc:1", "snapshot")
	if err != nil {
		t.Fatalf("a snapshot was refused before the application was asked: %v", err)
	}
	if _, err := h.Publish(snapshotPermit, eventlog.AppendRequest{Room: "doc:1", Kind: "snapshot", Body: json.RawMessage(`{"state":"forged"}`)}); !errors.As(err, &refusal) || refusal.Reason != "not a snapshot of ours" {
		t.Errorf("a snapshot the application refused: %v", err)
	}
	if err := a.CheckPublish(ctx(), alice, "doc:1", "snapshot", json.RawMessage(`{"state":"trusted"}`)); err != nil {
		t.Errorf("a snapshot the application allowed: %v", err)
	}
	if n := published.Load(); n != 2 {
		t.Errorf("the application saw %d events, want 2 (not the other room's)", n)
	}
	for room, want := range map[string]int{"doc:1": 1, "chat:1": 1} {
		if evs, _ := l.ReadAfter(context.Background(), room, eventlog.ID{}, 10); len(evs) != want {
			t.Errorf("%s holds %d events, want %d", room, len(evs), want)
		}
	}
}

// BenchmarkDecide is the time a join decision takes with a hook on loopback that answers at
// once: asked every time (no ttl), and reused (a ttl); p50 and p99 reported.
//
//	go test -run '^$' -bench BenchmarkDecide -benchtime 5000x ./hooks/
func BenchmarkDecide(b *testing.B) {
	for _, c := range []struct {
		name, answer string
	}{{"asked", `{"allow":true,"write":true}`}, {"reused", `{"allow":true,"write":true,"ttl_ms":600000}`}} {
		b.Run(c.name, func(b *testing.B) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				io.WriteString(w, c.answer)
			}))
			defer srv.Close()
			a, err := hooks.New(hooks.Config{URL: srv.URL, Secret: secret, Rooms: []string{"doc:*"}})
			if err != nil {
				b.Fatal(err)
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				if err := a.Authorize(ctx(), alice, auth.Join, "doc:1"); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}

// TestMain fails the package when a test leaves a goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
