package transport

import (
	"crypto/sha256"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// tokenRates limits HTTP publishes per token, at the rate a connection has (Config.PublishRate,
// with an equal burst), shared by every request that carries the same token: a backend cannot
// get around the limit by making a request per publish.
//
// It keeps a bucket per token it has seen. Once it holds maxTokenRates of them, it forgets, at
// most once a second, the buckets that are full again (forgetting one of those changes nothing).
type tokenRates struct {
	rate float64 // per second; 0 or less: no limit

	mu        sync.Mutex
	buckets   map[[32]byte]*rate.Limiter // by the token's SHA-256
	lastSweep time.Time
}

const maxTokenRates = 10000

func newTokenRates(perSecond float64) *tokenRates {
	return &tokenRates{rate: perSecond, buckets: map[[32]byte]*rate.Limiter{}}
}

// allow takes one from the token's bucket, reporting false when it is empty.
func (t *tokenRates) allow(token string) bool {
	if t.rate <= 0 {
		return true
	}
	key := sha256.Sum256([]byte(token))
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buckets[key]
	if b == nil {
		if len(t.buckets) >= maxTokenRates {
			t.sweepLocked(time.Now())
		}
		b = rate.NewLimiter(rate.Limit(t.rate), int(max(t.rate, 1)))
		t.buckets[key] = b
	}
	return b.Allow()
}

func (t *tokenRates) sweepLocked(now time.Time) {
	if now.Sub(t.lastSweep) < time.Second {
		return
	}
	t.lastSweep = now
	for k, b := range t.buckets {
		if b.TokensAt(now) >= float64(b.Burst()) {
			delete(t.buckets, k)
		}
	}
}
