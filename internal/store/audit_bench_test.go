//go:build auditbench

package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/okproxy/okproxy/internal/audit"
	"github.com/okproxy/okproxy/internal/dbtest"
	"github.com/okproxy/okproxy/internal/store"
)

// BenchmarkAuditQueryLatency1M loads OKPROXY_AUDIT_BENCH events (default,
// or 1: 1,000,000) spread over 30 days through the COPY path, then times the
// queries `okproxy audit query` runs and prints each one's latency and
// EXPLAIN ANALYZE plan. It is a measurement, not part of `make test` or
// `make bench`: the auditbench build tag keeps it out of every other build,
// so it is never skipped, only not compiled.
//
//	go test -tags auditbench -run '^$' -bench AuditQueryLatency1M -benchtime 1x -v -timeout 30m ./internal/store/
//
// or scripts/audit-bench.sh. OKPROXY_AUDIT_BENCH_DB reuses (and, if empty,
// fills) a named database instead of a throw-away one, to iterate on indexes.
func BenchmarkAuditQueryLatency1M(b *testing.B) {
	var t testing.TB = b
	v := os.Getenv("OKPROXY_AUDIT_BENCH")
	n := 1_000_000
	if v != "" && v != "1" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			t.Fatalf("OKPROXY_AUDIT_BENCH=%q: %v", v, err)
		}
	}
	ctx := context.Background()
	url := ""
	if name := os.Getenv("OKPROXY_AUDIT_BENCH_DB"); name != "" {
		url = dbtest.WithDatabase(t, dbtest.BaseURL(t), name)
	} else {
		url = dbtest.NewDatabase(t)
	}
	st, err := store.Open(ctx, store.Config{URL: url, StatementTimeout: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	end := time.Now().UTC().Truncate(time.Second)
	var have int
	if err := st.Pool().QueryRow(ctx, `SELECT count(*) FROM audit_events`).Scan(&have); err != nil {
		t.Fatal(err)
	}
	if have == 0 {
		if _, err := st.Pool().Exec(ctx, `SELECT okproxy_audit_partitions($1, 32)`, end.Add(-31*24*time.Hour)); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		loadBenchEvents(t, st, n, end)
		el := time.Since(start)
		t.Logf("loaded %d events in %v (%.0f events/s through InsertAuditEvents, batches of 5000)", n, el.Round(time.Millisecond), float64(n)/el.Seconds())
		if _, err := st.Pool().Exec(ctx, `VACUUM ANALYZE audit_events`); err != nil {
			t.Fatal(err)
		}
	} else {
		t.Logf("reusing %d events", have)
		var last time.Time
		st.Pool().QueryRow(ctx, `SELECT max(time) FROM audit_events`).Scan(&last)
		end = last.Add(time.Second)
	}
	var size string
	st.Pool().QueryRow(ctx, `SELECT pg_size_pretty(sum(pg_total_relation_size(inhrelid))) FROM pg_inherits WHERE inhparent = 'audit_events'::regclass`).Scan(&size)
	t.Logf("audit_events total size incl. indexes: %s", size)

	d30, h1 := end.Add(-30*24*time.Hour), end.Add(-time.Hour)
	queries := []struct {
		name string
		f    audit.Filter
	}{
		{"default (--since 1h)", audit.Filter{Since: h1}},
		{"--since 30d, no filter", audit.Filter{Since: d30}},
		{"--since 30d --user (common user)", audit.Filter{Since: d30, User: "user1@example.com"}},
		{"--since 30d --user (rare user, by user id)", audit.Filter{Since: d30, User: "00u0000001999"}},
		{"--since 30d --user (unknown: no match)", audit.Filter{Since: d30, User: "nobody@example.com"}},
		{"--since 30d --group (common)", audit.Filter{Since: d30, Group: "finance"}},
		{"--since 30d --group (rare)", audit.Filter{Since: d30, Group: "Team-39"}},
		{"--since 30d --group (unknown: no match)", audit.Filter{Since: d30, Group: "nosuch"}},
		{"--since 30d --decision deny", audit.Filter{Since: d30, Decision: "deny"}},
		{"--since 30d --reason invalid_token", audit.Filter{Since: d30, Reason: "invalid_token"}},
		{"--since 30d --decision error --reason gateway_timeout", audit.Filter{Since: d30, Decision: "error", Reason: "gateway_timeout"}},
		{"--since 30d --rule (matched, common)", audit.Filter{Since: d30, Rule: "billing-read"}},
		{"--since 30d --rule (unknown: no match)", audit.Filter{Since: d30, Rule: "nosuch"}},
		{"--since 30d --path-prefix /billing/", audit.Filter{Since: d30, PathPrefix: "/billing/"}},
		{"--since 30d --path-prefix (rare)", audit.Filter{Since: d30, PathPrefix: "/svc29/items/99"}},
		{"--since 30d --path-prefix (unknown: no match)", audit.Filter{Since: d30, PathPrefix: "/nosuch/"}},
		{"--since 30d --status 504", audit.Filter{Since: d30, Status: 504}},
		{"--since 30d --status 418 (no match)", audit.Filter{Since: d30, Status: 418}},
		{"--since 30d --decision error", audit.Filter{Since: d30, Decision: "error"}},
		{"--since 30d --reason user_inactive (no match)", audit.Filter{Since: d30, Reason: "user_inactive"}},
		{"--since 30d --user X --group G (both common)", audit.Filter{Since: d30, User: "user1@example.com", Group: "Everyone"}},
		{"--since 30d --group G --rule R", audit.Filter{Since: d30, Group: "Team-5", Rule: "rule-7"}},
		{"--since 7d --user X --decision deny", audit.Filter{Since: end.Add(-7 * 24 * time.Hour), User: "user7@example.com", Decision: "deny"}},
		{"--since 30d --group G --path-prefix P --status 403", audit.Filter{Since: d30, Group: "Team-3", PathPrefix: "/svc3/", Status: 403}},
	}
	fmt.Printf("\n| query | rows | median | max | plan |\n|---|---|---|---|---|\n")
	var plans strings.Builder
	for _, q := range queries {
		q.f.Limit = 100
		var times []time.Duration
		var rows int
		for i := 0; i < 7; i++ {
			start := time.Now()
			evs, err := st.QueryAuditEvents(ctx, q.f)
			if err != nil {
				t.Fatalf("%s: %v", q.name, err)
			}
			times = append(times, time.Since(start))
			rows = len(evs)
		}
		slices.Sort(times)
		plan, err := st.ExplainAuditQuery(ctx, q.f)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("| %s | %d | %.1f ms | %.1f ms | %s |\n", q.name, rows, ms(times[3]), ms(times[6]), planSummary(plan))
		fmt.Fprintf(&plans, "\n### %s\n\n```\n%s\n```\n", q.name, plan)
		if times[3] > 200*time.Millisecond {
			t.Errorf("%s: median %v over the 200 ms budget", q.name, times[3])
		}
	}
	if os.Getenv("OKPROXY_AUDIT_BENCH_PLANS") != "" {
		fmt.Print(plans.String())
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// planSummary names the scan nodes of a plan, for the table.
func planSummary(plan string) string {
	seen := map[string]bool{}
	var out []string
	for _, line := range strings.Split(plan, "\n") {
		l := strings.TrimLeft(line, " ->")
		for _, kind := range []string{"Index Scan Backward using", "Index Scan using", "Index Only Scan using", "Bitmap Index Scan on", "Parallel Seq Scan on", "Seq Scan on"} {
			rest, ok := strings.CutPrefix(l, kind+" ")
			if !ok {
				continue
			}
			key := kind + " " + genericIndex(strings.Fields(rest)[0])
			if !seen[key] {
				seen[key] = true
				out = append(out, key)
			}
			break
		}
	}
	return strings.Join(out, "; ")
}

// genericIndex maps a partition's index name (audit_events_20250101_lower_idx)
// to the day-independent part.
func genericIndex(name string) string {
	parts := strings.Split(name, "_")
	var keep []string
	for _, p := range parts {
		if len(p) == 8 && strings.Trim(p, "0123456789") == "" {
			continue
		}
		keep = append(keep, p)
	}
	return strings.Join(keep, "_")
}

// loadBenchEvents writes n events with realistic skew: 2,000 users (a few
// very active), 40 groups, 30 rules over 30 services, ~88% allowed.
func loadBenchEvents(t testing.TB, st *store.Store, n int, end time.Time) {
	r := rand.New(rand.NewPCG(1, 2))
	zipf := rand.NewZipf(r, 1.2, 1, 1999)
	span := 30 * 24 * time.Hour
	batch := make([]*audit.Event, 0, 5000)
	flush := func() {
		if _, err := st.InsertAuditEvents(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
		batch = batch[:0]
	}
	for i := 0; i < n; i++ {
		u := int(zipf.Uint64())
		svc := r.IntN(30)
		e := &audit.Event{
			ID:        audit.NewID(),
			Time:      end.Add(-time.Duration(r.Int64N(int64(span)))).Truncate(time.Microsecond),
			RequestID: fmt.Sprintf("req-%d", i), Replica: fmt.Sprintf("r%d", i%3), Method: "GET",
			Host: "api.example.com", Path: fmt.Sprintf("/svc%d/items/%d", svc, r.IntN(1000)),
			PolicyVersion: 42, Subject: fmt.Sprintf("user%d@example.com", u), UserID: fmt.Sprintf("00u%010d", u),
			Email: fmt.Sprintf("user%d@example.com", u), Groups: []string{"Everyone", fmt.Sprintf("Team-%d", u%40)},
			ClientIP: fmt.Sprintf("10.%d.%d.%d", u%5, u%250, svc), UserAgent: "client/1.0",
			JTI: fmt.Sprintf("jti-%d", i), ClientID: "0oa1", LatencyMS: 1 + r.Float64()*20,
		}
		if svc == 0 {
			e.Path = fmt.Sprintf("/billing/%d", r.IntN(1000))
		}
		if u%4 == 0 {
			e.Groups = append(e.Groups, "Finance")
		}
		rule := fmt.Sprintf("rule-%d", svc)
		if svc == 0 {
			rule = "billing-read"
		}
		switch p := r.IntN(1000); {
		case p < 880:
			e.Status, e.Decision, e.Reason, e.Rule, e.Rules = 200, "allow", "ok", rule, []string{rule}
		case p < 940:
			e.Status, e.Decision, e.Reason, e.Rules = 403, "deny", "forbidden", []string{rule}
		case p < 970:
			e.Status, e.Decision, e.Reason, e.Subject, e.UserID, e.Email, e.Groups = 401, "deny", "unauthorized", "", "", "", nil
		case p < 985:
			e.Status, e.Decision, e.Reason, e.Subject, e.UserID, e.Email, e.Groups = 401, "deny", "invalid_token", "", "", "", nil
		case p < 993:
			e.Status, e.Decision, e.Reason, e.Rule, e.Rules = 429, "deny", "quota_exceeded", rule, []string{rule}
		case p < 998:
			e.Status, e.Decision, e.Reason, e.Rule, e.Rules = 502, "error", "bad_gateway", rule, []string{rule}
		default:
			e.Status, e.Decision, e.Reason, e.Rule, e.Rules = 504, "error", "gateway_timeout", rule, []string{rule}
		}
		batch = append(batch, e)
		if len(batch) == cap(batch) {
			flush()
		}
	}
	flush()
}
