package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// SoakConfig runs the fan-out scenario for a long time (an hour at half the maximum rate), and
// samples the servers' resources and the delivery latency every Fanout.Every, so that growth
// shows: the Go heap in use, anonymous resident memory, goroutines and open files should stay
// flat after Warmup (all resident memory follows the data file's mapping too, which the kernel
// reclaims as it needs).
type SoakConfig struct {
	Fanout FanoutConfig // its Every is the sampling period (default 10 s)
	// Warmup is left out of the comparison: the first samples after it are compared with the
	// last. Default a fifth of the duration.
	Warmup time.Duration
	// Log gets a line per sample. Nil: none.
	Log io.Writer
}

// Sample is one node's state at the end of a window.
type Sample struct {
	Node       string // the node's address
	At         time.Duration
	RSS        float64 // bytes, the file-backed pages of a mapped data file included
	AnonRSS    float64 // bytes of resident memory not backed by a file (Linux); 0: not known
	Heap       float64 // bytes of Go heap in use: what grows if the server keeps what it should not
	Goroutines float64
	OpenFiles  float64
	Delivered  int // in the window, by every node
	P99        time.Duration
}

// Soak runs the soak scenario. Its figures per node: the resident memory, goroutines and open
// files at the start of the compared stretch and at its end (medians of three samples each), and
// the window p99 then and at the end.
func Soak(ctx context.Context, t *Target, cfg SoakConfig) (*Result, error) {
	if cfg.Fanout.Every <= 0 {
		cfg.Fanout.Every = 10 * time.Second
	}
	if cfg.Warmup <= 0 {
		cfg.Warmup = cfg.Fanout.Duration / 5
	}
	nodes := append([]string{t.URL}, t.Readers...)
	var samples []Sample
	var probeErr error
	cfg.Fanout.OnWindow = func(w Window) {
		for _, node := range slices.Compact(nodes) {
			s, err := probe(ctx, node)
			if err != nil {
				probeErr = err
				continue
			}
			s.At, s.Delivered, s.P99 = w.End, w.Delivered, w.P99
			samples = append(samples, s)
			if cfg.Log != nil {
				fmt.Fprintf(cfg.Log, "%8s %s rss %6.1f MiB (anon %6.1f)  heap %6.1f MiB  goroutines %6.0f  open files %5.0f  delivered %8d  p99 %7.1f ms\n",
					w.End.Round(time.Second), s.Node, s.RSS/(1<<20), s.AnonRSS/(1<<20), s.Heap/(1<<20), s.Goroutines, s.OpenFiles, s.Delivered, float64(w.P99.Microseconds())/1000)
			}
		}
	}
	res, err := Fanout(ctx, t, cfg.Fanout)
	if err != nil {
		return nil, err
	}
	res.Scenario = "soak"
	res.Params["every"] = cfg.Fanout.Every.String()
	res.Params["warmup"] = cfg.Warmup.String()
	if probeErr != nil {
		res.problem("reading a node's /metrics: %v", probeErr)
	}
	compare(res, samples, cfg.Warmup)
	return res, nil
}

// compare adds, per node, the figures at the start of the stretch after warmup and at its end.
func compare(res *Result, samples []Sample, warmup time.Duration) {
	byNode := map[string][]Sample{}
	for _, s := range samples {
		if s.At >= warmup {
			byNode[s.Node] = append(byNode[s.Node], s)
		}
	}
	for i, node := range sortedKeys(byNode) {
		ss := byNode[node]
		if len(ss) < 2 {
			res.problem("node %s: %d samples after the warmup; run longer than the warmup by two periods", node, len(ss))
			continue
		}
		n := min(3, len(ss)/2)
		first, last := ss[:n], ss[len(ss)-n:]
		prefix := fmt.Sprintf("node%d_", i)
		for _, f := range []struct {
			name string
			of   func(Sample) float64
		}{
			{"rss_mib", func(s Sample) float64 { return s.RSS / (1 << 20) }},
			{"anon_rss_mib", func(s Sample) float64 { return s.AnonRSS / (1 << 20) }},
			{"heap_mib", func(s Sample) float64 { return s.Heap / (1 << 20) }},
			{"goroutines", func(s Sample) float64 { return s.Goroutines }},
			{"open_files", func(s Sample) float64 { return s.OpenFiles }},
			{"window_p99_ms", func(s Sample) float64 { return float64(s.P99.Microseconds()) / 1000 }},
		} {
			res.Figures[prefix+f.name+"_start"] = median(first, f.of)
			res.Figures[prefix+f.name+"_end"] = median(last, f.of)
		}
	}
}

func median(ss []Sample, of func(Sample) float64) float64 {
	vs := make([]float64, len(ss))
	for i, s := range ss {
		vs[i] = of(s)
	}
	slices.Sort(vs)
	return vs[len(vs)/2]
}

func sortedKeys(m map[string][]Sample) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// probe reads a node's resources from its /metrics (the Go and process collectors).
func probe(ctx context.Context, wsURL string) (Sample, error) {
	u, err := url.Parse(wsURL)
	if err != nil {
		return Sample{}, err
	}
	u.Scheme = strings.Replace(u.Scheme, "ws", "http", 1)
	u.Path = "/metrics"
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return Sample{}, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return Sample{}, fmt.Errorf("%s: %s", u, res.Status)
	}
	s := Sample{Node: u.Host}
	want := map[string]*float64{"process_resident_memory_bytes": &s.RSS, "go_memstats_heap_inuse_bytes": &s.Heap, "go_goroutines": &s.Goroutines, "process_open_fds": &s.OpenFiles}
	found := 0
	sc := bufio.NewScanner(io.LimitReader(res.Body, 4<<20))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if name == "roomlog_process_anon_resident_bytes" { // optional: Linux only
			s.AnonRSS, _ = strconv.ParseFloat(value, 64)
			continue
		}
		if dst := want[name]; ok && dst != nil {
			if v, err := strconv.ParseFloat(value, 64); err == nil {
				*dst = v
				found++
			}
		}
	}
	if found < len(want) {
		return s, fmt.Errorf("%s: %d of the 4 metrics read (resident memory, heap in use, goroutines, open files) missing", u, len(want)-found)
	}
	return s, nil
}
