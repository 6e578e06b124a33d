package hooks_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/roomlog/roomlog/auth"
	"github.com/roomlog/roomlog/hooks"
)

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
