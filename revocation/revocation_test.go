package revocation_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/eventlog"
	"github.com/roomlog/roomlog/eventlog/boltlog"
	"github.com/roomlog/roomlog/eventlog/memlog"
	"github.com/roomlog/roomlog/revocation"
	"go.uber.org/goleak"
)

func claims(user, jti string, issued time.Time) *auth.Claims {
	c := &auth.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: user, ID: jti}}
	if !issued.IsZero() {
		c.IssuedAt = jwt.NewNumericDate(issued)
	}
	return c
}

// TestRevoke: a token revoked by its jti, and a user's tokens issued before a time (and those
// without iat), are revoked; others are not; bad requests are refused and change nothing.
func TestRevoke(t *testing.T) {
	l := memlog.New(memlog.Options{})
	defer l.Close()
	list, err := revocation.Open(context.Background(), l, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer list.Close()
	ctx := context.Background()
	now := time.Now()
	for _, bad := range []revocation.Revocation{
		{}, {JTI: "a", User: "bob"}, {User: "bob"}, {JTI: "a", IssuedBefore: now}, {User: "bad\x00user", IssuedBefore: now},
	} {
		if _, err := list.Revoke(ctx, bad, "ops"); !errors.Is(err, revocation.ErrBadRevocation) {
			t.Errorf("%+v: %v, want ErrBadRevocation", bad, err)
		}
	}
	if n := len(list.Active()); n != 0 {
		t.Fatalf("%d revocations after bad requests", n)
	}
	if _, err := list.Revoke(ctx, revocation.Revocation{JTI: "leaked"}, "ops"); err != nil {
		t.Fatal(err)
	}
	if _, err := list.Revoke(ctx, revocation.Revocation{User: "bob", IssuedBefore: now}, "ops"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		c    *auth.Claims
		want bool
	}{
		{claims("alice", "leaked", now), true},
		{claims("alice", "other", now), false},
		{claims("bob", "", now.Add(-time.Minute)), true},
		{claims("bob", "", time.Time{}), true}, // no iat: counted as before
		{claims("bob", "", now.Add(time.Minute)), false},
		{claims("carol", "", now.Add(-time.Minute)), false},
	} {
		if got := list.Revoked(c.c); got != c.want {
			t.Errorf("%s/%s issued %v: revoked %v, want %v", c.c.Subject, c.c.ID, c.c.IssuedAt, got, c.want)
		}
	}
	active := list.Active()
	if len(active) != 2 || active[0].By != "ops" || active[0].Expires.IsZero() {
		t.Fatalf("active %+v", active)
	}
	for _, r := range active {
		if r.User == "bob" && (!r.Expires.Equal(r.IssuedBefore.Add(time.Hour)) || now.Sub(r.IssuedBefore).Abs() > time.Second) {
			t.Errorf("a user revocation expires at %v, want issued_before + the token lifetime", r.Expires)
		}
	}
}

// TestSharedLog: two lists on one log (two nodes on one JetStream stream, here one in-memory
// log): a revocation through one reaches the other, which calls onChange.
func TestSharedLog(t *testing.T) {
	l := memlog.New(memlog.Options{})
	defer l.Close()
	var changed atomic.Int64
	a, err := revocation.Open(context.Background(), l, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := revocation.Open(context.Background(), l, time.Hour, func() { changed.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := a.Revoke(context.Background(), revocation.Revocation{JTI: "x"}, "ops"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !b.Revoked(claims("u", "x", time.Now())) || changed.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the other list never saw the revocation")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDurable: revocations are in the data file: a list opened after a restart applies them.
func TestDurable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rev.db")
	l, err := boltlog.Open(path, boltlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	list, err := revocation.Open(context.Background(), l, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := list.Revoke(context.Background(), revocation.Revocation{JTI: "kept"}, "ops"); err != nil {
		t.Fatal(err)
	}
	list.Close()
	l.Close()
	l, err = boltlog.Open(path, boltlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	list, err = revocation.Open(context.Background(), l, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer list.Close()
	if !list.Revoked(claims("u", "kept", time.Now())) {
		t.Fatal("a revocation did not survive the restart")
	}
}

// TestMain fails the package when a test leaves a goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestForgedBodiesBounded: a revocation event whose body claims a far expiry or tokens issued in
// the future (as a client could have written in the room before it was the server's own) is
// bounded by when it was made: it covers tokens issued before then, for at most the token
// lifetime. Revoke refuses issued_before in the future.
func TestForgedBodiesBounded(t *testing.T) {
	l := memlog.New(memlog.Options{})
	defer l.Close()
	ctx := context.Background()
	far := time.Now().Add(100 * 365 * 24 * time.Hour).UTC().Format(time.RFC3339)
	for _, body := range []string{
		`{"user":"bob","issued_before":"` + far + `","expires":"` + far + `"}`,
		`{"jti":"x","expires":"` + far + `"}`,
	} {
		if _, err := l.Append(ctx, eventlog.AppendRequest{Room: revocation.Room, User: "mallory", Kind: revocation.Kind, Body: json.RawMessage(body), System: true}); err != nil {
			t.Fatal(err)
		}
	}
	list, err := revocation.Open(ctx, l, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer list.Close()
	now := time.Now()
	if list.Revoked(claims("bob", "", now.Add(time.Minute))) {
		t.Error("a token issued after the revocation was made is revoked")
	}
	if !list.Revoked(claims("bob", "", now.Add(-time.Minute))) {
		t.Error("a token issued before the revocation is not revoked")
	}
	for _, r := range list.Active() {
		if r.Expires.After(now.Add(time.Hour + time.Minute)) {
			t.Errorf("%+v lives past the token lifetime", r)
		}
	}
	if _, err := list.Revoke(ctx, revocation.Revocation{User: "bob", IssuedBefore: now.Add(time.Hour)}, "ops"); !errors.Is(err, revocation.ErrBadRevocation) {
		t.Errorf("issued_before in the future: %v", err)
	}
}
