package audit

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics exports the writer's counters. Counters are read from the
// writer's atomics when scraped, so Stats and /metrics never disagree.
type metrics struct {
	reg        prometheus.Registerer
	collectors []prometheus.Collector
	batchSize  prometheus.Histogram
	batchTime  prometheus.Histogram
}

func newMetrics(w *Writer, reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reg: reg,
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "okproxy", Subsystem: "audit", Name: "batch_size",
			Help:    "Events per insert statement (direct and replayed).",
			Buckets: []float64{1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000},
		}),
		batchTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "okproxy", Subsystem: "audit", Name: "batch_duration_seconds",
			Help:    "Time to insert one batch into PostgreSQL.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "okproxy", Subsystem: "audit", Name: name, Help: help}, f)
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "okproxy", Subsystem: "audit", Name: name, Help: help}, f)
	}
	load := func(v interface{ Load() int64 }) func() float64 { return func() float64 { return float64(v.Load()) } }
	m.collectors = []prometheus.Collector{
		m.batchSize, m.batchTime,
		gauge("queue_depth", "Audit events in memory waiting to be written.", func() float64 { return float64(w.depth()) }),
		counter("events_written_total", "Audit events inserted directly into PostgreSQL.", load(&w.written)),
		counter("events_spooled_total", "Audit events written to the local spool because PostgreSQL was unreachable or busy.", load(&w.spooled)),
		counter("events_replayed_total", "Spooled audit events inserted into PostgreSQL.", load(&w.replayed)),
		counter("events_replay_duplicates_total", "Spooled audit events that were already stored when replayed (skipped).", load(&w.duplicates)),
		counter("events_dropped_total", "Audit events lost. Must stay 0.", load(&w.dropped)),
		counter("refused_total", "Requests refused with 503 because their audit event could be neither queued nor spooled.", load(&w.refused)),
		gauge("spool_segments", "Spool segment files waiting for replay.", func() float64 {
			if w.spool == nil {
				return 0
			}
			n, _ := w.spool.stats()
			return float64(n)
		}),
		gauge("spool_bytes", "Bytes in spool segment files waiting for replay.", func() float64 {
			if w.spool == nil {
				return 0
			}
			_, b := w.spool.stats()
			return float64(b)
		}),
	}
	if reg == nil {
		return m, nil
	}
	for i, c := range m.collectors {
		if err := reg.Register(c); err != nil {
			for _, r := range m.collectors[:i] {
				reg.Unregister(r)
			}
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) observeBatch(n int, d time.Duration) {
	m.batchSize.Observe(float64(n))
	m.batchTime.Observe(d.Seconds())
}

// unregister lets a replacement writer register the same names (tests, and
// a serve that restarts its writer).
func (m *metrics) unregister() {
	if m.reg == nil {
		return
	}
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
}
