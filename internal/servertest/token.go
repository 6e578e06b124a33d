package servertest

import (
	"testing"
	"time"

	"github.com/roomlog/roomlog/auth"
)

// Secret is the HS256 secret of the servers tests start (their --jwt-secret, or the verifier of
// an in-process server): at least auth.MinSecretLength bytes.
const Secret = "roomlog-test-secret-of-32-bytes-or-more"

// NewToken mints a token for spec signed with Secret; a zero TTL is an hour. It is safe to call
// from any goroutine (a client's token callback).
func NewToken(spec auth.TokenSpec) (string, error) {
	if spec.TTL == 0 {
		spec.TTL = time.Hour
	}
	return auth.NewToken([]byte(Secret), spec)
}

// Token is NewToken for the test's own goroutine: it fails the test when spec cannot be signed.
func Token(t testing.TB, spec auth.TokenSpec) string {
	t.Helper()
	tok, err := NewToken(spec)
	if err != nil {
		t.Fatalf("mint a token for %q: %v", spec.Subject, err)
	}
	return tok
}
