package webhooks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/boltlog"
	"github.com/roomlog/roomlog/eventlog/jetstream"
	"github.com/roomlog/roomlog/eventlog/logtest"
	"github.com/roomlog/roomlog/hooks"
	"github.com/roomlog/roomlog/internal/natstest"
	"github.com/roomlog/roomlog/webhooks"
	"go.uber.org/goleak"
)

var secret = []byte("webhook-test-secret-of-32-bytes-or-more")

// receiver is an application's webhook endpoint on loopback: it checks signatures, fails the
// first failFirst requests, and records the ids of the batches it accepted.
type receiver struct {
	*httptest.Server
	failFirst int64
	requests  atomic.Int64

	mu       sync.Mutex
	accepted [][]string
	forged   int
}

func newReceiver(t *testing.T, failFirst int64) *receiver {
	r := &receiver{failFirst: failFirst}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if hooks.Verify(secret, req.Header.Get(hooks.SignatureHeader), body, time.Now(), time.Minute) != nil {
			r.mu.Lock()
			r.forged++
			r.mu.Unlock()
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if r.requests.Add(1) <= r.failFirst {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		var batch struct {
			Webhook string
			Events  []struct{ ID, Room, Kind string }
		}
		if err := json.Unmarshal(body, &batch); err != nil || batch.Webhook != "app" {
			http.Error(w, "bad batch", http.StatusBadRequest)
			return
		}
		var ids []string
		for _, e := range batch.Events {
			ids = append(ids, e.ID)
		}
		r.mu.Lock()
		r.accepted = append(r.accepted, ids)
		r.mu.Unlock()
	}))
	t.Cleanup(r.Close)
	return r
}

// got is every id the receiver accepted, in order, repeats included.
func (r *receiver) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var all []string
	for _, b := range r.accepted {
		all = append(all, b...)
	}
	return all
}

func appendN(t *testing.T, l eventlog.Log, room, kind string, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		res, err := l.Append(context.Background(), eventlog.AppendRequest{Room: room, User: "u", Kind: kind, Body: json.RawMessage(fmt.Sprint(i))})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.Event.ID.String())
	}
	return ids
}

func start(t *testing.T, l webhooks.Store, cfg webhooks.Config) (*webhooks.Webhook, context.CancelFunc, chan struct{}) {
	t.Helper()
	cfg.Name, cfg.Secret, cfg.MaxBackoff = "app", secret, 200*time.Millisecond
	w, err := webhooks.New(cfg, l)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	return w, cancel, done
}

// openBolt opens a data file in a temporary directory, closed when the test ends.
func openBolt(t testing.TB) *boltlog.Log {
	l, err := boltlog.Open(filepath.Join(t.TempDir(), "wh.db"), boltlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// openJetStream opens a log on a JetStream server of its own, closed when the test ends.
func openJetStream(t testing.TB, opts jetstream.Options, servers ...*natstest.Server) *jetstream.Log {
	if len(servers) == 0 {
		servers = []*natstest.Server{natstest.Start(t)}
	}
	l, err := jetstream.Open(context.Background(), natstest.Connect(t, servers...), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestDeliversInOrderThroughFailures: a receiver that fails for a while gets, once it recovers,
// every event of the webhook's rooms and kinds exactly once and in log order (a failed batch is
// not accepted, so nothing repeats), including events appended while it was failing; the status
// says so; other rooms, other kinds and the server's own rooms are not sent.
func TestDeliversInOrderThroughFailures(t *testing.T) {
	l := openBolt(t)
	r := newReceiver(t, 3)
	want := appendN(t, l, "doc:1", "message", 250)
	appendN(t, l, "chat:1", "message", 5)
	appendN(t, l, "doc:2", "cursor", 5)
	w, cancel, done := start(t, l, webhooks.Config{URL: r.URL, Rooms: []string{"doc:*"}, Kinds: []string{"message", "yjs"}, Batch: 40})
	defer func() { cancel(); <-done }()
	waitFor(t, "a failure in the status", func() bool { return w.Status(context.Background()).LastError != "" })
	want = append(want, appendN(t, l, "doc:2", "yjs", 30)...)
	waitFor(t, "every event", func() bool { return len(r.got()) >= len(want) })
	time.Sleep(100 * time.Millisecond)
	logtest.SameIDs(t, r.got(), want)
	st := w.Status(context.Background())
	if st.Cursor != want[len(want)-1] || st.Pending != 0 || st.LagMS != 0 || st.Delivered != int64(len(want)) || st.LastError != "" {
		t.Errorf("status %+v", st)
	}
	if r.forged != 0 {
		t.Errorf("%d batches did not verify", r.forged)
	}
}

// TestResumesFromTheDurableCursor: a webhook stopped part way (as by a restart) and started
// again on the same file goes on after the last batch acknowledged: nothing is skipped, and
// nothing before the cursor is sent again.
func TestResumesFromTheDurableCursor(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wh.db")
	l, err := boltlog.Open(path, boltlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := newReceiver(t, 0)
	want := appendN(t, l, "doc:1", "message", 100)
	_, cancel, done := start(t, l, webhooks.Config{URL: r.URL, Batch: 10})
	waitFor(t, "some batches", func() bool { return len(r.got()) >= 30 })
	cancel()
	<-done
	l.Close()
	l, err = boltlog.Open(path, boltlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	want = append(want, appendN(t, l, "doc:1", "message", 20)...)
	_, cancel, done = start(t, l, webhooks.Config{URL: r.URL, Batch: 10})
	defer func() { cancel(); <-done }()
	waitFor(t, "every event", func() bool { return len(slices.Compact(r.got())) >= len(want) })
	time.Sleep(100 * time.Millisecond)
	// At least once: a stop leaves the write of the cursor done, so only the batch in flight at
	// the stop may come again.
	got := r.got()
	if repeats := len(got) - len(want); repeats < 0 || repeats > 10 {
		t.Errorf("%d events repeated, want at most the one batch in flight (10)", repeats)
	}
	logtest.SameIDs(t, logtest.FirstArrivals(got), want)
}

// TestReceiverBounds: a receiver that holds a request past the timeout, or answers with a
// redirect, has not taken the batch: it is not followed elsewhere, and it is sent again.
func TestReceiverBounds(t *testing.T) {
	l := openBolt(t)
	appendN(t, l, "doc:1", "message", 3)
	elsewhere := newReceiver(t, 0) // where the redirect points: it would accept
	var slow, redirected atomic.Int64
	release := make(chan struct{})
	defer close(release)
	for name, handler := range map[string]http.HandlerFunc{
		"slow": func(w http.ResponseWriter, r *http.Request) {
			slow.Add(1)
			io.ReadAll(r.Body) // then the server notices the client hanging up
			select {           // held past the webhook's timeout
			case <-release:
			case <-r.Context().Done():
			}
		},
		"redirect": func(w http.ResponseWriter, r *http.Request) {
			redirected.Add(1)
			http.Redirect(w, r, elsewhere.URL, http.StatusTemporaryRedirect)
		},
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(handler)
			defer srv.Close()
			w, cancel, done := start(t, l, webhooks.Config{URL: srv.URL, Timeout: 100 * time.Millisecond})
			defer func() { cancel(); <-done }()
			var st webhooks.Status
			waitFor(t, "two failed attempts", func() bool {
				st = w.Status(context.Background())
				return slow.Load()+redirected.Load() >= 2 && st.LastError != ""
			})
			want := map[string]string{"slow": "deadline exceeded", "redirect": "307 Temporary Redirect"}[name]
			if !strings.Contains(st.LastError, want) || st.Cursor != "" || st.Pending != 3 || st.LagMS <= 0 || st.Delivered != 0 {
				t.Errorf("status %+v; want the batch pending and an error saying %q", st, want)
			}
			slow.Store(0)
			redirected.Store(0)
		})
	}
	if got := elsewhere.got(); len(got) != 0 {
		t.Errorf("the redirect was followed: %d events delivered elsewhere", len(got))
	}
}

func TestConfigRefused(t *testing.T) {
	for name, cfg := range map[string]webhooks.Config{
		"bad name":  {Name: "a b", URL: "http://127.0.0.1/", Secret: secret},
		"bad url":   {Name: "a", URL: "mailto:x", Secret: secret},
		"no secret": {Name: "a", URL: "http://127.0.0.1/"},
		"bad room":  {Name: "a", URL: "http://127.0.0.1/", Secret: secret, Rooms: []string{"d*c"}},
		"bad kind":  {Name: "a", URL: "http://127.0.0.1/", Secret: secret, Kinds: []string{"Bad Kind"}},
	} {
		if _, err := webhooks.New(cfg, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// BenchmarkDeliver is a webhook's throughput to a receiver on loopback that accepts every batch
// at once: 20,000 stored events of 200 bytes, batches of 100, from a data file and from a
// JetStream stream (one server, in this process).
//
//	go test -run '^$' -bench BenchmarkDeliver -benchtime 3x ./webhooks/
func BenchmarkDeliver(b *testing.B) {
	b.Run("log=boltlog", func(b *testing.B) {
		benchDeliver(b, func() eventlog.Store { return openBolt(b) })
	})
	b.Run("log=jetstream", func(b *testing.B) {
		benchDeliver(b, func() eventlog.Store { return openJetStream(b, jetstream.Options{}) })
	})
}

func benchDeliver(b *testing.B, open func() eventlog.Store) {
	const n = 20000
	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		l := open()
		body := json.RawMessage(`{"pad":"` + strings.Repeat("x", 190) + `"}`)
		pending := make([]*eventlog.Pending, 0, n)
		for range n {
			pending = append(pending, l.AppendAsync(eventlog.AppendRequest{Room: "doc:1", User: "u", Body: body}))
		}
		for _, p := range pending {
			if _, err := p.Wait(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
		var got atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var batch struct{ Events []json.RawMessage }
			json.NewDecoder(r.Body).Decode(&batch)
			got.Add(int64(len(batch.Events)))
		}))
		w, err := webhooks.New(webhooks.Config{Name: "app", URL: srv.URL, Secret: secret}, l)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		b.StartTimer()
		start := time.Now()
		go func() { defer close(done); w.Run(ctx) }()
		for deadline := time.Now().Add(time.Minute); got.Load() < n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d events delivered in a minute", got.Load(), n)
			}
		}
		total += time.Since(start)
		b.StopTimer()
		cancel()
		<-done
		srv.Close()
		l.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "events/s")
}

// TestMain fails the package when a test leaves a goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
