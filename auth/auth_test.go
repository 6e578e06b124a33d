package auth_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/roomlog/roomlog/auth"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func pemOf(t *testing.T, pub any) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func claims(sub string, exp time.Duration) jwt.MapClaims {
	return jwt.MapClaims{"sub": sub, "exp": time.Now().Add(exp).Unix(), "rooms": []string{"doc:*"}}
}

func sign(t *testing.T, m jwt.SigningMethod, key any, c jwt.MapClaims, kid string) string {
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerifierAlgorithms(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, edKey, _ := ed25519.GenerateKey(rand.Reader)
	otherRSA, _ := rsa.GenerateKey(rand.Reader, 2048)

	pemVerifier, err := auth.NewVerifier(auth.Config{PublicKeys: [][]byte{pemOf(t, &rsaKey.PublicKey), pemOf(t, &ecKey.PublicKey), pemOf(t, edPub)}})
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "kid": "r1", "n": b64(rsaKey.N.Bytes()), "e": b64(big.NewInt(int64(rsaKey.E)).Bytes())},
		{"kty": "EC", "kid": "e1", "crv": "P-256", "x": b64(ecKey.X.FillBytes(make([]byte, 32))), "y": b64(ecKey.Y.FillBytes(make([]byte, 32)))},
		{"kty": "OKP", "kid": "o1", "crv": "Ed25519", "x": b64(edPub)},
		{"kty": "RSA", "kid": "enc", "use": "enc", "n": b64(otherRSA.N.Bytes()), "e": "AQAB"},
	}})
	jwksVerifier, err := auth.NewVerifier(auth.Config{JWKS: jwks, Issuer: "https://id.example", Audience: "roomlog"})
	if err != nil {
		t.Fatal(err)
	}
	withIssAud := func(c jwt.MapClaims) jwt.MapClaims { c["iss"] = "https://id.example"; c["aud"] = "roomlog"; return c }

	good := []struct {
		name string
		v    *auth.Verifier
		tok  string
	}{
		{"RS256 PEM", pemVerifier, sign(t, jwt.SigningMethodRS256, rsaKey, claims("a", time.Hour), "")},
		{"ES256 PEM", pemVerifier, sign(t, jwt.SigningMethodES256, ecKey, claims("a", time.Hour), "")},
		{"EdDSA PEM", pemVerifier, sign(t, jwt.SigningMethodEdDSA, edKey, claims("a", time.Hour), "")},
		{"RS256 JWKS", jwksVerifier, sign(t, jwt.SigningMethodRS256, rsaKey, withIssAud(claims("a", time.Hour)), "r1")},
		{"ES256 JWKS", jwksVerifier, sign(t, jwt.SigningMethodES256, ecKey, withIssAud(claims("a", time.Hour)), "e1")},
		{"EdDSA JWKS", jwksVerifier, sign(t, jwt.SigningMethodEdDSA, edKey, withIssAud(claims("a", time.Hour)), "o1")},
		{"within leeway", pemVerifier, sign(t, jwt.SigningMethodRS256, rsaKey, claims("a", -2*time.Second), "")},
	}
	for _, tc := range good {
		c, err := tc.v.Verify(tc.tok)
		if err != nil || c.Subject != "a" || len(c.Rooms) != 1 {
			t.Errorf("%s: %v %+v", tc.name, err, c)
		}
	}
	bad := []struct {
		name string
		v    *auth.Verifier
		tok  string
		want error
	}{
		{"wrong RSA key", pemVerifier, sign(t, jwt.SigningMethodRS256, otherRSA, claims("a", time.Hour), ""), auth.ErrBadToken},
		{"HS256 with no secret configured", pemVerifier, sign(t, jwt.SigningMethodHS256, []byte("s"), claims("a", time.Hour), ""), auth.ErrBadToken},
		{"RS384 not configured", pemVerifier, sign(t, jwt.SigningMethodRS384, rsaKey, claims("a", time.Hour), ""), auth.ErrBadToken},
		{"expired", pemVerifier, sign(t, jwt.SigningMethodRS256, rsaKey, claims("a", -time.Minute), ""), auth.ErrTokenExpired},
		{"not yet valid", pemVerifier, sign(t, jwt.SigningMethodRS256, rsaKey, jwt.MapClaims{"sub": "a", "exp": time.Now().Add(time.Hour).Unix(), "nbf": time.Now().Add(time.Minute).Unix()}, ""), auth.ErrBadToken},
		{"wrong issuer", jwksVerifier, sign(t, jwt.SigningMethodRS256, rsaKey, claims("a", time.Hour), "r1"), auth.ErrBadToken},
		{"unknown kid", jwksVerifier, sign(t, jwt.SigningMethodRS256, rsaKey, withIssAud(claims("a", time.Hour)), "nope"), auth.ErrBadToken},
		{"encryption key is not a signing key", jwksVerifier, sign(t, jwt.SigningMethodRS256, otherRSA, withIssAud(claims("a", time.Hour)), "enc"), auth.ErrBadToken},
	}
	for _, tc := range bad {
		if _, err := tc.v.Verify(tc.tok); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := auth.NewVerifier(auth.Config{}); err == nil {
		t.Errorf("a verifier with no key was made")
	}
	if _, err := auth.NewVerifier(auth.Config{PublicKeys: [][]byte{[]byte("not pem")}}); err == nil {
		t.Errorf("a bad PEM key was accepted")
	}
	if _, err := auth.NewVerifier(auth.Config{JWKS: []byte(`{"keys":[]}`)}); err == nil {
		t.Errorf("an empty JWKS was accepted")
	}
}

func TestJWKSRotation(t *testing.T) {
	old, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	next, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	doc := func(kid string, k *ecdsa.PrivateKey) []byte { b, _ := auth.ECJWKS(kid, &k.PublicKey); return b }
	v, err := auth.NewVerifier(auth.Config{JWKS: doc("k1", old), AnyAudience: true})
	if err != nil {
		t.Fatal(err)
	}
	byOld := sign(t, jwt.SigningMethodES256, old, claims("a", time.Hour), "k1")
	byNext := sign(t, jwt.SigningMethodES256, next, claims("a", time.Hour), "k2")
	if _, err := v.Verify(byOld); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(byNext); err == nil {
		t.Fatalf("a key not yet published was accepted")
	}
	if err := v.SetJWKS([]byte(`{"keys":[]}`)); err == nil {
		t.Fatalf("an empty JWKS replaced the keys")
	}
	if _, err := v.Verify(byOld); err != nil {
		t.Fatalf("a failed refresh dropped the keys: %v", err)
	}
	if err := v.SetJWKS(doc("k2", next)); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(byNext); err != nil {
		t.Fatalf("the rotated key is refused: %v", err)
	}
	if _, err := v.Verify(byOld); err == nil {
		t.Fatalf("the retired key is still accepted")
	}
}

// TestTokenHygiene: the bounds a verifier puts on tokens it would otherwise accept: a short
// secret, a JWKS with no audience, a lifetime past MaxTTL (with or without iat), an iat in the
// future, another service's audience.
func TestTokenHygiene(t *testing.T) {
	secret := []byte("a-secret-of-32-bytes-for-hygiene!")
	if _, err := auth.NewVerifier(auth.Config{Secret: []byte("short")}); err == nil {
		t.Errorf("a 5-byte secret was accepted")
	}
	if _, err := auth.NewVerifier(auth.Config{Secret: secret[:31]}); err == nil {
		t.Errorf("a 31-byte secret was accepted")
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	b64 := base64.RawURLEncoding.EncodeToString
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{{"kty": "EC", "kid": "e1", "crv": "P-256",
		"x": b64(ecKey.X.FillBytes(make([]byte, 32))), "y": b64(ecKey.Y.FillBytes(make([]byte, 32)))}}})
	if _, err := auth.NewVerifier(auth.Config{JWKS: jwks}); err == nil {
		t.Errorf("a JWKS without an audience was accepted")
	}
	withAud, err := auth.NewVerifier(auth.Config{JWKS: jwks, Audience: "roomlog"})
	if err != nil {
		t.Fatal(err)
	}
	anyAud, err := auth.NewVerifier(auth.Config{JWKS: jwks, AnyAudience: true})
	if err != nil {
		t.Fatal(err)
	}
	other := sign(t, jwt.SigningMethodES256, ecKey, jwt.MapClaims{"sub": "a", "aud": "other", "exp": time.Now().Add(time.Hour).Unix()}, "e1")
	if _, err := withAud.Verify(other); !errors.Is(err, auth.ErrBadToken) {
		t.Errorf("another service's token: %v", err)
	}
	if _, err := anyAud.Verify(other); err != nil {
		t.Errorf("AnyAudience refused aud other: %v", err)
	}

	v, err := auth.NewVerifier(auth.Config{Secret: secret, MaxTTL: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	unbounded, err := auth.NewVerifier(auth.Config{Secret: secret, MaxTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	defaults, err := auth.NewVerifier(auth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, secret, c, "") }
	cases := []struct {
		name      string
		v         *auth.Verifier
		tok       string
		ok        bool
		reasonHas string
	}{
		{"within the bound", v, tok(jwt.MapClaims{"sub": "a", "iat": now.Unix(), "exp": now.Add(2 * time.Hour).Unix()}), true, ""},
		{"a century", v, tok(jwt.MapClaims{"sub": "a", "iat": now.Unix(), "exp": now.AddDate(100, 0, 0).Unix()}), false, "longer than the server's maximum"},
		{"a century, no iat", v, tok(jwt.MapClaims{"sub": "a", "exp": now.AddDate(100, 0, 0).Unix()}), false, "longer than the server's maximum"},
		{"a day and a minute, by default", defaults, tok(jwt.MapClaims{"sub": "a", "iat": now.Unix(), "exp": now.Add(24*time.Hour + time.Minute).Unix()}), false, "longer"},
		{"a day, by default", defaults, tok(jwt.MapClaims{"sub": "a", "iat": now.Unix(), "exp": now.Add(24 * time.Hour).Unix()}), true, ""},
		{"a century, unbounded", unbounded, tok(jwt.MapClaims{"sub": "a", "iat": now.Unix(), "exp": now.AddDate(100, 0, 0).Unix()}), true, ""},
		{"issued in ten years", unbounded, tok(jwt.MapClaims{"sub": "a", "iat": now.AddDate(10, 0, 0).Unix(), "exp": now.AddDate(10, 0, 1).Unix()}), false, "used before issued"},
		{"issued a minute ahead", v, tok(jwt.MapClaims{"sub": "a", "iat": now.Add(time.Minute).Unix(), "exp": now.Add(time.Hour).Unix()}), false, "used before issued"},
		{"issued within the leeway", v, tok(jwt.MapClaims{"sub": "a", "iat": now.Add(2 * time.Second).Unix(), "exp": now.Add(time.Hour).Unix()}), true, ""},
	}
	for _, tc := range cases {
		_, err := tc.v.Verify(tc.tok)
		if tc.ok != (err == nil) || (err != nil && (!errors.Is(err, auth.ErrBadToken) || !strings.Contains(err.Error(), tc.reasonHas))) {
			t.Errorf("%s: %v (want ok=%v, a reason with %q)", tc.name, err, tc.ok, tc.reasonHas)
		}
	}
}

// FuzzVerify feeds the verifier arbitrary tokens, well-formed ones with arbitrary claims
// included: it never panics, and what it accepts is signed by the key, names a user and lives
// within MaxTTL.
func FuzzVerify(f *testing.F) {
	secret := []byte("a-secret-of-32-bytes-for-fuzzing!")
	now := time.Now()
	for _, c := range []jwt.MapClaims{
		{"sub": "a", "exp": now.Add(time.Hour).Unix()},
		{"sub": "", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()},
		{"sub": "a", "exp": "soon"},
		{"sub": 7, "exp": 1e300, "rooms": "doc:*"},
		{"sub": "a", "exp": now.Add(time.Hour).Unix(), "rooms": []any{1, nil}, "snapshot_rooms": map[string]any{}},
	} {
		tok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
		f.Add(tok, "")
		header, rest, _ := strings.Cut(tok, ".")
		payload, _, _ := strings.Cut(rest, ".")
		f.Add(header+"."+payload+".", `{"alg":"none"}`)
	}
	f.Add("", "")
	f.Add("...", `{"sub":"a"}`)
	v, err := auth.NewVerifier(auth.Config{Secret: secret, MaxTTL: time.Hour + time.Minute})
	if err != nil {
		f.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	f.Fuzz(func(t *testing.T, tok, claimsJSON string) {
		if claimsJSON != "" { // a token signed with the right key, over fuzzed claims
			s := b64([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + b64([]byte(claimsJSON))
			sig, err := jwt.SigningMethodHS256.Sign(s, secret)
			if err != nil {
				t.Fatal(err)
			}
			tok = s + "." + b64(sig)
		}
		c, err := v.Verify(tok)
		if err != nil {
			if !errors.Is(err, auth.ErrBadToken) && !errors.Is(err, auth.ErrTokenExpired) {
				t.Fatalf("an error that is neither ErrBadToken nor ErrTokenExpired: %v", err)
			}
			return
		}
		if c.Subject == "" || c.ExpiresAt == nil {
			t.Fatalf("accepted without sub or exp: %+v", c)
		}
		from := time.Now()
		if c.IssuedAt != nil {
			from = c.IssuedAt.Time
		}
		if c.ExpiresAt.Sub(from) > time.Hour+time.Minute+6*time.Second {
			t.Fatalf("accepted a token living %v", c.ExpiresAt.Sub(from))
		}
	})
}
