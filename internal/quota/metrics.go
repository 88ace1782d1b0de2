package quota

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the limiter's Prometheus series. Statement counters are what
// docs/quotas.md's "statements per 1,000 limited requests" is read from.
type metrics struct {
	decisions  *prometheus.CounterVec
	statements *prometheus.CounterVec
	leased     prometheus.Counter
	returned   prometheus.Counter
	lostUsed   prometheus.Counter
	leaseTime  prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, l *Limiter) *metrics {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "okproxy_quota_decisions_total",
			Help: "Limited requests by quota and result: admitted, exceeded (429), unchecked (database unreachable, admitted), db_denied (database unreachable, refused).",
		}, []string{"quota", "result"}),
		statements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "okproxy_quota_statements_total",
			Help: "Database statements the limiter ran, by kind (lease, report, poll, load, prune) and result (ok, error).",
		}, []string{"kind", "result"}),
		leased: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "okproxy_quota_leased_total",
			Help: "Budget (requests) leased from the database.",
		}),
		returned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "okproxy_quota_returned_total",
			Help: "Unused leased budget given back (window end, idle keys, shutdown).",
		}),
		lostUsed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "okproxy_quota_reports_lost_total",
			Help: "Reports dropped because a statement failed in a way that may have applied it (never retried, see docs/quotas.md).",
		}),
		leaseTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "okproxy_quota_lease_duration_seconds",
			Help:    "Time of one lease statement, as requests waiting for it see it.",
			Buckets: []float64{.0002, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.decisions, m.statements, m.leased, m.returned, m.lostUsed, m.leaseTime,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "okproxy_quota_held",
			Help: "Leased budget this replica holds unspent; lost for the rest of its window if the replica dies.",
		}, func() float64 { return float64(l.held.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "okproxy_quota_keys",
			Help: "Quota keys (quota and user or group) this replica tracks.",
		}, func() float64 { return float64(l.keys.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "okproxy_quota_db_unreachable",
			Help: "1 while lease statements fail and --quota-on-db-error applies beyond held leases.",
		}, func() float64 {
			if l.brk.isDown() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "okproxy_quotas",
			Help: "Quotas in the set in force (-1 before one was loaded).",
		}, func() float64 {
			if s := l.set.Load(); s != nil {
				return float64(len(s.quotas))
			}
			return -1
		}),
	)
	return m
}

// perQuota resolves the per-quota decision counters once per load.
func (m *metrics) perQuota(name string) (admitted, exceeded, unchecked, dbDenied prometheus.Counter) {
	return m.decisions.WithLabelValues(name, "admitted"), m.decisions.WithLabelValues(name, "exceeded"),
		m.decisions.WithLabelValues(name, "unchecked"), m.decisions.WithLabelValues(name, "db_denied")
}

func (m *metrics) statement(kind string, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.statements.WithLabelValues(kind, result).Inc()
}
