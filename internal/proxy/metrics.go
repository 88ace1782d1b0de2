package proxy

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the proxy's Prometheus series.
type Metrics struct {
	requests     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	auditRefused prometheus.Counter
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
	m.requests.WithLabelValues(decision, reason, rule).Inc()
	m.latency.WithLabelValues(decision).Observe(d.Seconds())
}
