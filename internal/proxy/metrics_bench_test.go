package proxy

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func BenchmarkMetricsObserve(b *testing.B) {
	m := NewMetrics(prometheus.NewRegistry())
	b.ReportAllocs()
	for b.Loop() {
		m.observe("allow", "ok", "bench", 300*time.Microsecond)
	}
}
