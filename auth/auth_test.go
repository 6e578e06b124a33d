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
	b64 := base64.RawURLEncoding.EncodeToString
	doc := func(kid string, k *ecdsa.PrivateKey) []byte {
		b, _ := json.Marshal(map[string]any{"keys": []map[string]string{{"kty": "EC", "kid": kid, "crv": "P-256",
			"x": b64(k.X.FillBytes(make([]byte, 32))), "y": b64(k.Y.FillBytes(make([]byte, 32)))}}})
		return b
	}
	v, err := auth.NewVerifier(auth.Config{JWKS: doc("k1", old)})
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
