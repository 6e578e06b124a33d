// Package auth owns roomlog's tokens and what they allow: it verifies JWTs (HS256 with a shared
// secret; RS256, ES256 and EdDSA with PEM keys or a JWKS document that can be replaced while in
// use) into Claims, turns them into the Grants that Authorize decides every room action by, and
// mints HS256 tokens for scripts, tests and backend services. It knows nothing of connections or
// HTTP; the server, the load generator and roomlog token use it.
package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Config says which tokens a Verifier accepts. At least one key must be set.
type Config struct {
	// Secret is the HS256 shared secret: empty for none, else at least MinSecretLength bytes (a
	// short secret can be guessed offline from any one token).
	Secret     []byte
	PublicKeys [][]byte // PEM public keys: RSA (RS256), ECDSA P-256 (ES256), Ed25519 (EdDSA)
	JWKS       []byte   // a JWKS document: {"keys":[...]} with RSA, EC P-256 and OKP Ed25519 keys
	Issuer     string   // when set, iss must equal it
	// Audience, when set, must be in aud. With a JWKS it is required unless AnyAudience: an
	// identity provider signs tokens for many services, and another service's token must not
	// open this one.
	Audience    string
	AnyAudience bool
	// MaxTTL bounds a token's lifetime: exp may be at most MaxTTL after iat (after now for a
	// token without iat). 0: DefaultMaxTTL (24 h); negative: no bound.
	MaxTTL time.Duration
	// Leeway is the clock skew allowed on exp, nbf and iat (an iat further in the future is
	// refused). 0: 5 s; negative: none.
	Leeway time.Duration
	Now    func() time.Time
}

// Bounds of Config.
const (
	MinSecretLength = 32
	DefaultMaxTTL   = 24 * time.Hour
)

// Claims are the token claims roomlog reads.
type Claims struct {
	jwt.RegisteredClaims
	Rooms     []string `json:"rooms,omitempty"`
	ReadRooms []string `json:"read_rooms,omitempty"`
	// SnapshotRooms lists the room patterns where the user may publish snapshots (with write
	// permission there too): snapshots decide what compaction removes and what a join from a
	// snapshot loads, so they need a trust of their own.
	SnapshotRooms []string `json:"snapshot_rooms,omitempty"`
	Admin         bool     `json:"admin,omitempty"`
}

// Grants turns the claims into what rooms authorises by.
func (c *Claims) Grants() Grants {
	return Grants{User: c.Subject, Rooms: c.Rooms, ReadRooms: c.ReadRooms, SnapshotRooms: c.SnapshotRooms, Admin: c.Admin}
}

// Expiry is the token's exp.
func (c *Claims) Expiry() time.Time {
	if c.ExpiresAt == nil {
		return time.Time{}
	}
	return c.ExpiresAt.Time
}

// Verifier checks tokens against the configured keys. Its JWKS keys can be replaced while it is
// in use (SetJWKS), for identity providers that rotate their keys.
type Verifier struct {
	cfg         Config
	pem         []verificationKey // from Config.PublicKeys, fixed
	state       atomic.Pointer[keyState]
	revocations atomic.Pointer[Revocations] // nil: none
}

// Revocations says whether a verified token has been revoked since it was issued.
type Revocations interface {
	Revoked(c *Claims) bool
}

// SetRevocations makes Verify refuse the tokens r says are revoked (ErrTokenRevoked).
func (v *Verifier) SetRevocations(r Revocations) { v.revocations.Store(&r) }

// Revoked reports whether c, verified earlier, has been revoked since (a live connection's
// token).
func (v *Verifier) Revoked(c *Claims) bool {
	r := v.revocations.Load()
	return r != nil && (*r).Revoked(c)
}

// keyState is the key set and the parser accepting its algorithms, swapped as one.
type keyState struct {
	parser *jwt.Parser
	keys   map[string][]verificationKey // by algorithm
}

type verificationKey struct {
	kid string
	key crypto.PublicKey
}

// Errors of Verify, for choosing the bye code.
var (
	ErrTokenExpired = errors.New("token expired")
	ErrTokenRevoked = errors.New("token revoked")
	ErrBadToken     = errors.New("token refused")
)

// NewVerifier checks cfg and returns a Verifier.
func NewVerifier(cfg Config) (*Verifier, error) {
	if n := len(cfg.Secret); n > 0 && n < MinSecretLength {
		return nil, fmt.Errorf("the HS256 secret is %d bytes; at least %d are needed (openssl rand -hex 32 makes one)", n, MinSecretLength)
	}
	if len(cfg.JWKS) > 0 && cfg.Audience == "" && !cfg.AnyAudience {
		return nil, errors.New("with a JWKS, an audience is required (the aud your identity provider puts in tokens for roomlog), or AnyAudience to accept every service's tokens")
	}
	switch {
	case cfg.MaxTTL == 0:
		cfg.MaxTTL = DefaultMaxTTL
	case cfg.MaxTTL < 0:
		cfg.MaxTTL = 0
	}
	switch {
	case cfg.Leeway == 0:
		cfg.Leeway = 5 * time.Second
	case cfg.Leeway < 0:
		cfg.Leeway = 0
	}
	v := &Verifier{cfg: cfg}
	for i, p := range cfg.PublicKeys {
		k, err := parsePEMPublicKey(p)
		if err != nil {
			return nil, fmt.Errorf("public key %d: %w", i+1, err)
		}
		v.pem = append(v.pem, verificationKey{"", k})
	}
	var jwks []verificationKey
	if len(cfg.JWKS) > 0 {
		var err error
		if jwks, err = parseJWKS(cfg.JWKS); err != nil {
			return nil, fmt.Errorf("JWKS: %w", err)
		}
	}
	st, err := v.build(jwks)
	if err != nil {
		return nil, err
	}
	v.state.Store(st)
	return v, nil
}

// SetJWKS replaces the JWKS keys with those of doc. On an error the current keys stay.
func (v *Verifier) SetJWKS(doc []byte) error {
	jwks, err := parseJWKS(doc)
	if err != nil {
		return fmt.Errorf("JWKS: %w", err)
	}
	st, err := v.build(jwks)
	if err != nil {
		return err
	}
	v.state.Store(st)
	return nil
}

// build makes the key state for the fixed keys plus jwks.
func (v *Verifier) build(jwks []verificationKey) (*keyState, error) {
	st := &keyState{keys: map[string][]verificationKey{}}
	for _, k := range append(append([]verificationKey(nil), v.pem...), jwks...) {
		if alg := algorithmOf(k.key); alg != "" {
			st.keys[alg] = append(st.keys[alg], k)
		}
	}
	var methods []string
	if len(v.cfg.Secret) > 0 {
		methods = append(methods, "HS256")
	}
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		if len(st.keys[alg]) > 0 {
			methods = append(methods, alg)
		}
	}
	if len(methods) == 0 {
		return nil, errors.New("no token key configured: set a secret, a public key or a JWKS")
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(methods), jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithLeeway(v.cfg.Leeway)}
	if v.cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(v.cfg.Issuer))
	}
	if v.cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(v.cfg.Audience))
	}
	if v.cfg.Now != nil {
		opts = append(opts, jwt.WithTimeFunc(v.cfg.Now))
	}
	st.parser = jwt.NewParser(opts...)
	return st, nil
}

// algorithmOf is the JWT algorithm a public key verifies, "" for an unsupported key.
func algorithmOf(k crypto.PublicKey) string {
	switch k := k.(type) {
	case *rsa.PublicKey:
		return "RS256"
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return "ES256"
		}
	case ed25519.PublicKey:
		return "EdDSA"
	}
	return ""
}

// Verify parses and checks a token. The error wraps ErrTokenExpired, ErrTokenRevoked or
// ErrBadToken.
func (v *Verifier) Verify(token string) (*Claims, error) {
	st := v.state.Load()
	var c Claims
	_, err := st.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) { return v.keyFor(st, t) })
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, fmt.Errorf("%w: %v", ErrTokenExpired, err)
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	case c.Subject == "":
		return nil, fmt.Errorf("%w: no sub claim", ErrBadToken)
	}
	if err := v.checkLifetime(&c); err != nil {
		return nil, err
	}
	if v.Revoked(&c) {
		return nil, fmt.Errorf("%w: the token of %q was revoked", ErrTokenRevoked, c.Subject)
	}
	return &c, nil
}

// checkLifetime refuses a token that lives longer than MaxTTL: a token leaked from a log or a
// browser's history must not open rooms for a century.
func (v *Verifier) checkLifetime(c *Claims) error {
	if v.cfg.MaxTTL <= 0 {
		return nil
	}
	from := v.now()
	if c.IssuedAt != nil {
		from = c.IssuedAt.Time
	}
	if life := c.ExpiresAt.Sub(from); life > v.cfg.MaxTTL+v.cfg.Leeway {
		return fmt.Errorf("%w: it is valid for %v, longer than the server's maximum of %v (--max-token-ttl)", ErrBadToken, life.Round(time.Second), v.cfg.MaxTTL)
	}
	return nil
}

func (v *Verifier) now() time.Time {
	if v.cfg.Now != nil {
		return v.cfg.Now()
	}
	return time.Now()
}

func (v *Verifier) keyFor(st *keyState, t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	if alg == "HS256" {
		return v.cfg.Secret, nil
	}
	kid, _ := t.Header["kid"].(string)
	var set jwt.VerificationKeySet
	for _, k := range st.keys[alg] {
		if kid == "" || k.kid == "" || k.kid == kid {
			set.Keys = append(set.Keys, k.key)
		}
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("no %s key with kid %q", alg, kid)
	}
	return set, nil
}

func parsePEMPublicKey(p []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(p)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if k, err := jwt.ParseRSAPublicKeyFromPEM(p); err == nil {
		return k, nil
	}
	if k, err := jwt.ParseECPublicKeyFromPEM(p); err == nil {
		return k, nil
	}
	if k, err := jwt.ParseEdPublicKeyFromPEM(p); err == nil {
		return k, nil
	}
	return nil, fmt.Errorf("PEM block %q is not an RSA, ECDSA or Ed25519 public key", block.Type)
}

// parseJWKS reads the RSA, EC P-256 and Ed25519 keys of a JWKS document; other keys are skipped.
func parseJWKS(doc []byte) ([]verificationKey, error) {
	var set struct {
		Keys []struct {
			Kty, Kid, Crv, N, E, X, Y, Use string
		} `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		return nil, err
	}
	b64 := base64.RawURLEncoding.DecodeString
	var out []verificationKey
	for i, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		var key crypto.PublicKey
		switch {
		case k.Kty == "RSA":
			n, err1 := b64(k.N)
			e, err2 := b64(k.E)
			if err := errors.Join(err1, err2); err != nil || len(e) > 4 {
				return nil, fmt.Errorf("key %d: bad RSA modulus or exponent", i)
			}
			key = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		case k.Kty == "EC" && k.Crv == "P-256":
			x, err1 := b64(k.X)
			y, err2 := b64(k.Y)
			if err := errors.Join(err1, err2); err != nil || len(x) != 32 || len(y) != 32 {
				return nil, fmt.Errorf("key %d: bad P-256 point", i)
			}
			pk, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
			if err != nil {
				return nil, fmt.Errorf("key %d: %v", i, err)
			}
			key = pk
		case k.Kty == "OKP" && k.Crv == "Ed25519":
			x, err := b64(k.X)
			if err != nil || len(x) != ed25519.PublicKeySize {
				return nil, fmt.Errorf("key %d: bad Ed25519 key", i)
			}
			key = ed25519.PublicKey(x)
		default:
			continue
		}
		out = append(out, verificationKey{k.Kid, key})
	}
	if len(out) == 0 {
		return nil, errors.New("no usable signing key")
	}
	return out, nil
}

// TokenSpec describes a token for NewToken.
type TokenSpec struct {
	Subject       string
	Rooms         []string
	ReadRooms     []string
	SnapshotRooms []string
	Admin         bool
	TTL           time.Duration
	Issuer        string
	Audience      string
	ID            string // the jti claim, by which the token can be revoked alone
}

// NewToken signs an HS256 token with secret: what `roomlog token` prints and tests use.
func NewToken(secret []byte, s TokenSpec) (string, error) {
	if s.Subject == "" {
		return "", errors.New("a token needs a subject")
	}
	if len(secret) == 0 {
		return "", errors.New("a token needs a secret")
	}
	now := time.Now()
	c := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject: s.Subject, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(s.TTL)), Issuer: s.Issuer, ID: s.ID,
		},
		Rooms: s.Rooms, ReadRooms: s.ReadRooms, SnapshotRooms: s.SnapshotRooms, Admin: s.Admin,
	}
	if s.Audience != "" {
		c.Audience = jwt.ClaimStrings{s.Audience}
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}

// ECJWKS is a JWKS document (RFC 7517) publishing one P-256 public key under kid, as Config.JWKS
// and SetJWKS take it (and roomlog serve fetches from its JWKS URL): what tests rotate keys with.
func ECJWKS(kid string, pub *ecdsa.PublicKey) ([]byte, error) {
	if pub.Curve != elliptic.P256() {
		return nil, errors.New("auth: ECJWKS: only P-256 keys")
	}
	raw, err := pub.Bytes() // 0x04 | x(32) | y(32)
	if err != nil {
		return nil, fmt.Errorf("auth: ECJWKS: %w", err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	return json.Marshal(map[string]any{"keys": []map[string]string{{"kty": "EC", "kid": kid, "crv": "P-256",
		"x": b64(raw[1:33]), "y": b64(raw[33:])}}})
}
