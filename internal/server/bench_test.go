package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/okproxy/okproxy/internal/audit"
	"github.com/okproxy/okproxy/internal/authn"
	"github.com/okproxy/okproxy/internal/dbtest"
	"github.com/okproxy/okproxy/internal/oktatest"
	"github.com/okproxy/okproxy/internal/policy"
	"github.com/okproxy/okproxy/internal/proxy"
	"github.com/okproxy/okproxy/internal/snapshot"
	"github.com/okproxy/okproxy/internal/store"
)

type discard struct{}

func (discard) Reserve() error            { return nil }
func (discard) Commit(*audit.Event)       {}
func (discard) Record(*audit.Event) error { return nil }

type fixedSnap struct{ s *snapshot.Snapshot }

func (f fixedSnap) Current() *snapshot.Snapshot { return f.s }

// BenchmarkAuditCost runs okproxy's handler over a real loopback upstream
// with auditing off (events discarded) and on (the real writer, COPY into
// PostgreSQL on this machine), in the same run. The ratio of the two is the
// cost of auditing; docs/PERFORMANCE.md reports it.
func BenchmarkAuditCost(b *testing.B) {
	ctx := context.Background()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) }))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	iss, err := oktatest.New()
	if err != nil {
		b.Fatal(err)
	}
	defer iss.Close()
	v, err := authn.New(ctx, authn.Config{Issuer: iss.Issuer(), Audiences: []string{"api://default"}})
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	rules := make([]policy.Rule, 0, 200)
	for i := 0; i < 199; i++ {
		rules = append(rules, policy.Rule{Name: fmt.Sprintf("svc-%d", i), Path: fmt.Sprintf("/svc%d/**", i), Allow: []policy.GroupRef{{Name: fmt.Sprintf("Team%d", i)}}, Enabled: true})
	}
	rules = append(rules, policy.Rule{Name: "bench", Path: "/bench", Allow: []policy.GroupRef{{Name: "Finance"}}, Enabled: true})
	pol, err := policy.Compile(rules)
	if err != nil {
		b.Fatal(err)
	}
	snap := fixedSnap{&snapshot.Snapshot{PolicyVersion: 1, Policy: pol}}
	token := iss.Mint(oktatest.Claims{Subject: "load@example.com", Groups: []string{"Finance", "Team7"}})

	st, err := store.Open(ctx, store.Config{URL: dbtest.NewDatabase(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	// Measurement knob: OKPROXY_BENCH_AUDIT_DROP_INDEXES=all (or a comma list
	// of index names) shows how much of auditing's cost is index maintenance.
	if drop := os.Getenv("OKPROXY_BENCH_AUDIT_DROP_INDEXES"); drop != "" {
		rows, err := st.Pool().Query(ctx, `SELECT indexname FROM pg_indexes WHERE tablename = 'audit_events'
			AND indexname NOT LIKE '%pkey' AND ($1 = 'all' OR indexname = ANY(string_to_array($1, ',')))`, drop)
		if err != nil {
			b.Fatal(err)
		}
		var names []string
		for rows.Next() {
			var n string
			rows.Scan(&n)
			names = append(names, n)
		}
		rows.Close()
		for _, n := range names {
			if _, err := st.Pool().Exec(ctx, "DROP INDEX "+n); err != nil {
				b.Fatal(err)
			}
		}
		b.Logf("dropped %v", names)
	}
	w, err := audit.NewWriter(audit.WriterConfig{Store: st, SpoolDir: b.TempDir(), Replica: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	go w.Run(wctx)
	defer func() { w.Close(ctx); cancel() }()

	for _, c := range []struct {
		name string
		sink audit.Sink
	}{{"off", discard{}}, {"on", w}, {"off", discard{}}, {"on", w}} {
		h, err := proxy.New(proxy.Config{Upstream: u, Verifier: v, Snapshots: snap, Audit: c.sink})
		if err != nil {
			b.Fatal(err)
		}
		b.Run("audit="+c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req := httptest.NewRequest("GET", "/bench", nil)
					req.RemoteAddr = "127.0.0.1:40000"
					req.Header.Set("Authorization", "Bearer "+token)
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					if rec.Code != 200 {
						b.Fatalf("status %d", rec.Code)
					}
				}
			})
			if c.name == "on" {
				// Count the database's share too: wait until the writer has
				// stored what this sub-benchmark produced.
				deadline := time.Now().Add(30 * time.Second)
				for w.Stats().Queued > 0 && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
				}
			}
		})
	}
}
