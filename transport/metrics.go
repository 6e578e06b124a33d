package transport

import (
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
}

func NewMetrics() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "roomlog_connections", Help: "Open WebSocket connections.",
		}),
		joins: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "roomlog_joins_total", Help: "Room joins answered with joined.",
		}),
		appends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roomlog_appends_total", Help: "Publishes by outcome (appended, duplicate, conflict, refused, failed).",
		}, []string{"outcome"}),
		appendLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "roomlog_append_seconds", Help: "Time from a publish frame to its durable ack.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		commitBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "roomlog_commit_batch_size", Help: "Operations per log commit (group commit).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
		deliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "roomlog_deliveries_total", Help: "Event frames written to clients.",
		}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "roomlog_replayed_events_total", Help: "Events delivered from the log rather than the room feed's memory (catch-up and slow members).",
		}),
		slowConsumers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "roomlog_slow_consumers_total", Help: "Connections closed because they stopped reading.",
		}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "roomlog_auth_failures_total", Help: "Refused tokens (hello, refresh and HTTP API).",
		}),
		badFrames: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "roomlog_bad_frames_total", Help: "Client frames refused as malformed or too large.",
		}),
		refusedConns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roomlog_refused_connections_total", Help: "Connections refused, by reason (unauthenticated, token_expired, too_many_connections, origin, upgrade, shutting_down; sockets closed at accept: max_conns, max_conns_per_ip).",
		}, []string{"reason"}),
		errorReplies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roomlog_error_replies_total", Help: "Client frames answered with an error frame, by code.",
		}, []string{"code"}),
		signals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roomlog_signals_total", Help: "Ephemeral signals: sent (by members), delivered (to members), dropped (a full send queue).",
		}, []string{"outcome"}),
		jsRequests: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "roomlog_jetstream_append_seconds", Help: "JetStream append round trips (one atomic batch each), with --nats.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		jsConflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "roomlog_jetstream_conflicts_total", Help: "JetStream appends refused because another node appended to the room first (each is retried), with --nats.",
		}),
	}
	m.registry.MustRegister(m.connections, m.joins, m.appends, m.appendLatency, m.commitBatch,
		m.deliveries, m.replayed, m.slowConsumers, m.authFailures, m.badFrames, m.refusedConns, m.errorReplies,
		m.signals, m.jsRequests, m.jsConflicts,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveJetStream is a jetstream.Options.OnRequest hook.
func (m *Metrics) ObserveJetStream(took time.Duration, conflict bool) {
	m.jsRequests.Observe(took.Seconds())
	if conflict {
		m.jsConflicts.Inc()
	}
}

// ObserveCommit is an boltlog.Options.OnCommit hook.
func (m *Metrics) ObserveCommit(ops int, _ time.Duration) { m.commitBatch.Observe(float64(ops)) }
