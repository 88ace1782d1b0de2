package audit_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/okproxy/okproxy/internal/audit"
	"github.com/okproxy/okproxy/internal/dbtest"
)

// BenchmarkIngest measures sustained inserts into PostgreSQL per batch size,
// for the plain COPY of the normal path and the temp-table COPY + INSERT ON
// CONFLICT of replays. Run: make bench, or
//
//	go test -run '^$' -bench Ingest -benchtime 200000x ./internal/audit/
func BenchmarkIngest(b *testing.B) {
	for _, mode := range []string{"copy", "idempotent"} {
		for _, size := range []int{100, 500, 2000, 5000} {
			b.Run(fmt.Sprintf("%s/batch=%d", mode, size), func(b *testing.B) {
				st := dbtest.NewStore(b)
				ctx := context.Background()
				if _, err := st.EnsureAuditPartitions(ctx, 2); err != nil {
					b.Fatal(err)
				}
				batch := make([]*audit.Event, size)
				b.ResetTimer()
				for done := 0; done < b.N; done += size {
					n := min(size, b.N-done)
					now := time.Now().UTC().Truncate(time.Microsecond)
					for i := range n {
						e := sampleEvent(done + i)
						e.ID, e.Time = audit.NewID(), now
						batch[i] = e
					}
					var err error
					if mode == "copy" {
						_, err = st.InsertAuditEvents(ctx, batch[:n])
					} else {
						_, err = st.InsertAuditEventsIdempotent(ctx, batch[:n])
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}

// BenchmarkWriter measures the whole pipeline: parallel Record calls (the
// proxy's request path) until every event is in PostgreSQL.
func BenchmarkWriter(b *testing.B) {
	for _, size := range []int{500, 2000, 5000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			st := dbtest.NewStore(b)
			w, err := audit.NewWriter(audit.WriterConfig{Store: st, BatchSize: size, SpoolDir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			go w.Run(context.Background())
			var seq atomic.Int64
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := w.Record(sampleEvent(int(seq.Add(1)))); err != nil {
						b.Error(err)
						return
					}
				}
			})
			// Sustained means until everything is in PostgreSQL, including
			// what overflowed to the spool while producers outran the insert.
			for s := w.Stats(); s.Queued > 0 || s.SpoolSegments > 0; s = w.Stats() {
				time.Sleep(5 * time.Millisecond)
			}
			if err := w.Close(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			s := w.Stats()
			if s.Dropped != 0 || s.Written+s.Replayed+s.Duplicates != int64(b.N) {
				b.Fatalf("stats %+v for %d events", s, b.N)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(s.Spooled), "spooled")
		})
	}
}

// discardStore accepts everything at once. It is not a database stand-in
// for correctness (the tests above use PostgreSQL); it isolates what
// BenchmarkRecordHotPath measures: the cost the request path pays.
type discardStore struct{}

func (discardStore) InsertAuditEvents(_ context.Context, evs []*audit.Event) (int64, error) {
	return int64(len(evs)), nil
}
func (discardStore) EnsureAuditPartitions(context.Context, int) (int, error) { return 0, nil }

// BenchmarkRecordHotPath is the per-request cost of auditing in the proxy:
// Reserve + Commit from parallel goroutines, with the flush loop draining.
func BenchmarkRecordHotPath(b *testing.B) {
	w, err := audit.NewWriter(audit.WriterConfig{Store: discardStore{}})
	if err != nil {
		b.Fatal(err)
	}
	go w.Run(context.Background())
	defer w.Close(context.Background())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		e := sampleEvent(1)
		for pb.Next() {
			ev := *e
			if w.Reserve() == nil { // producers faster than the loop can be refused: counted below
				w.Commit(&ev)
			}
		}
	})
	b.ReportMetric(float64(w.Stats().Refused), "refused")
}
