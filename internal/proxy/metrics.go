package proxy

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the proxy's Prometheus series.
type Metrics struct {
	requests     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	auditRefused prometheus.Counter

	// series memoises the children of requests and latency per label set:
	// WithLabelValues hashes every label value and takes the vector's lock
	// on every call, ~1 µs per request. The label sets are the vectors' own
	// (decisions × reasons × rules), so this holds nothing they do not.
	series sync.Map // seriesKey → *seriesPair
}

type seriesKey struct{ decision, reason, rule string }

type seriesPair struct {
	requests prometheus.Counter
	latency  prometheus.Observer
}

// NewMetrics registers the proxy's series with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "okproxy_requests_total",
			Help: "Requests answered, by decision, reason code and the granting or denying rule.",
		}, []string{"decision", "reason", "rule"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "okproxy_request_duration_seconds",
			Help:    "Time from request arrival to the end of the answer, by decision.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"decision"}),
		auditRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "okproxy_audit_refused_requests_total",
			Help: "Requests refused with 503 because their audit event could be neither queued nor spooled.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.latency, m.auditRefused)
	}
	return m
}

func (m *Metrics) observe(decision, reason, rule string, d time.Duration) {
	k := seriesKey{decision, reason, rule}
	p, ok := m.series.Load(k)
	if !ok {
		p, _ = m.series.LoadOrStore(k, &seriesPair{
			requests: m.requests.WithLabelValues(decision, reason, rule),
			latency:  m.latency.WithLabelValues(decision),
		})
	}
	s := p.(*seriesPair)
	s.requests.Inc()
	s.latency.Observe(d.Seconds())
}
