package transport

import (
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the server's Prometheus metrics, on a registry of its own (so that several servers
// can live in one process, as in tests).
type Metrics struct {
	registry      *prometheus.Registry
	connections   prometheus.Gauge
	joins         prometheus.Counter
	appends       *prometheus.CounterVec
	appendLatency prometheus.Histogram
	commitBatch   prometheus.Histogram
	deliveries    prometheus.Counter
	replayed      prometheus.Counter
	slowConsumers prometheus.Counter
	authFailures  prometheus.Counter
	badFrames     prometheus.Counter
	refusedConns  *prometheus.CounterVec
	errorReplies  *prometheus.CounterVec
	signals       *prometheus.CounterVec
	jsRequests    prometheus.Histogram
	jsConflicts   prometheus.Counter
	hookCalls     *prometheus.CounterVec
	hookLatency   prometheus.Histogram
}

// NewMetrics returns the server's collectors, registered in a registry of their own with the Go
// runtime's and the process's.
func NewMetrics() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		connections: gauge("roomlog_connections",
			"Open WebSocket connections."),
		joins: counter("roomlog_joins_total",
			"Room joins answered with joined."),
		appends: counterVec("roomlog_appends_total",
			"Publishes by outcome (appended, duplicate, conflict, refused, failed).", "outcome"),
		appendLatency: histogram("roomlog_append_seconds",
			"Time from a publish frame to its durable ack.", prometheus.ExponentialBuckets(0.0001, 2, 16)),
		commitBatch: histogram("roomlog_commit_batch_size",
			"Operations per log commit (group commit).", prometheus.ExponentialBuckets(1, 2, 14)),
		deliveries: counter("roomlog_deliveries_total",
			"Event frames written to clients."),
		replayed: counter("roomlog_replayed_events_total",
			"Events delivered from the log rather than the room feed's memory (catch-up and slow members)."),
		slowConsumers: counter("roomlog_slow_consumers_total",
			"Connections closed because they stopped reading."),
		authFailures: counter("roomlog_auth_failures_total",
			"Refused tokens (hello, refresh and HTTP API)."),
		badFrames: counter("roomlog_bad_frames_total",
			"Client frames refused as malformed or too large."),
		refusedConns: counterVec("roomlog_refused_connections_total",
			"Connections refused, by reason (unauthenticated, token_expired, too_many_connections, origin, upgrade, shutting_down; sockets closed at accept: max_conns, max_conns_per_ip).", "reason"),
		errorReplies: counterVec("roomlog_error_replies_total",
			"Client frames answered with an error frame, by code.", "code"),
		signals: counterVec("roomlog_signals_total",
			"Ephemeral signals: sent (by members), delivered (to members), dropped (a full send queue).", "outcome"),
		jsRequests: histogram("roomlog_jetstream_append_seconds",
			"JetStream append round trips (one atomic batch each), with --nats.", prometheus.ExponentialBuckets(0.0001, 2, 16)),
		jsConflicts: counter("roomlog_jetstream_conflicts_total",
			"JetStream appends refused because another node appended to the room first (each is retried), with --nats."),
	}
	m.hookCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "roomlog_hook_decisions_total", Help: "Decisions of the application's hook, by action, outcome (allow, deny, unavailable) and source (asked, reused).",
	}, []string{"action", "outcome", "source"})
	m.hookLatency = histogram("roomlog_hook_seconds",
		"Hook request round trips (decisions reused are not counted).", prometheus.ExponentialBuckets(0.0005, 2, 14))
	m.registry.MustRegister(m.hookCalls, m.hookLatency)
	m.registry.MustRegister(m.connections, m.joins, m.appends, m.appendLatency, m.commitBatch,
		m.deliveries, m.replayed, m.slowConsumers, m.authFailures, m.badFrames, m.refusedConns, m.errorReplies,
		m.signals, m.jsRequests, m.jsConflicts,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if _, ok := anonResident(); ok {
		m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "roomlog_process_anon_resident_bytes",
			Help: "Resident memory not backed by a file (Linux's RssAnon): process_resident_memory_bytes less the data file's mapped pages, which grow with the file and which the kernel reclaims as it needs.",
		}, func() float64 {
			b, _ := anonResident()
			return float64(b)
		}))
	}
	return m
}

// anonResident reads the process's anonymous resident memory (RssAnon in /proc/self/status);
// ok is false where there is none to read.
func anonResident() (bytes int64, ok bool) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(data)) {
		if v, found := strings.CutPrefix(line, "RssAnon:"); found {
			f := strings.Fields(v) // "1234 kB"
			if len(f) != 2 || f[1] != "kB" {
				return 0, false
			}
			kib, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, false
			}
			return kib << 10, true
		}
	}
	return 0, false
}

// ObserveJetStream is a jetstream.Options.OnRequest hook.
func (m *Metrics) ObserveJetStream(took time.Duration, conflict bool) {
	m.jsRequests.Observe(took.Seconds())
	if conflict {
		m.jsConflicts.Inc()
	}
}

// ObserveHook is a hooks.Config.Observe hook.
func (m *Metrics) ObserveHook(action, outcome string, took time.Duration, cached bool) {
	source := "asked"
	if cached {
		source = "reused"
	} else {
		m.hookLatency.Observe(took.Seconds())
	}
	m.hookCalls.WithLabelValues(action, outcome, source).Inc()
}

// ObserveCommit is a boltlog.Options.OnCommit hook.
func (m *Metrics) ObserveCommit(ops int, _ time.Duration) { m.commitBatch.Observe(float64(ops)) }

// The constructors of NewMetrics' collectors: a name and its help, and a histogram's buckets or a
// vector's label.

func gauge(name, help string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
}

func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
}

func counterVec(name, help, label string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{label})
}

func histogram(name, help string, buckets []float64) prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
}
