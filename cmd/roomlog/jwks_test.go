package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/roomlog/roomlog/auth"
)

// TestJWKSRefresh: the server fetches its JWKS URL again periodically and accepts tokens signed
// with a rotated key.
func TestJWKSRefresh(t *testing.T) {
	old, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	next, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	doc := func(kid string, k *ecdsa.PrivateKey) []byte { b, _ := auth.ECJWKS(kid, &k.PublicKey); return b }
	var mu sync.Mutex
	current := doc("k1", old)
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Write(current)
	}))
	defer jwks.Close()
	p := startProc(t, filepath.Join(t.TempDir(), "jwks.db"), "--jwks", jwks.URL, "--jwt-audience", "roomlog", "--jwks-refresh", "200ms")
	helloAud := func(k *ecdsa.PrivateKey, kid, aud string) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"sub": "a", "aud": aud, "exp": time.Now().Add(time.Hour).Unix()})
		tok.Header["kid"] = kid
		s, _ := tok.SignedString(k)
		ws, _, err := websocket.DefaultDialer.Dial("ws://"+p.addr+"/v1/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		ws.WriteJSON(map[string]any{"type": "hello", "token": s})
		var f map[string]any
		ws.ReadJSON(&f)
		return f["type"].(string)
	}
	hello := func(k *ecdsa.PrivateKey, kid string) string { return helloAud(k, kid, "roomlog") }
	if got := hello(old, "k1"); got != "welcome" {
		t.Fatalf("the published key: %s", got)
	}
	if got := helloAud(old, "k1", "other"); got != "bye" {
		t.Fatalf("another service's token (aud other): %s", got)
	}
	if got := hello(next, "k2"); got != "bye" {
		t.Fatalf("a key not yet published: %s", got)
	}
	mu.Lock()
	current = doc("k2", next)
	mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for hello(next, "k2") != "welcome" {
		if time.Now().After(deadline) {
			t.Fatalf("the rotated key was never accepted")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := hello(old, "k1"); got != "bye" {
		t.Fatalf("the retired key: %s", got)
	}
}
