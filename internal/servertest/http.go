package servertest

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// Request sends an HTTP request with body to url, with tok as its bearer token when not empty,
// and returns the answer's status and body. It fails the test when no answer comes.
func Request(t testing.TB, method, url, tok, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return Do(t, req)
}

// Do sends req and returns the answer's status and body. It fails the test when no answer comes.
func Do(t testing.TB, req *http.Request) (int, string) {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", req.Method, req.URL, err)
	}
	return res.StatusCode, string(b)
}
