package cli

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/okproxy/okproxy/internal/audit"
	"github.com/okproxy/okproxy/internal/dbtest"
	"github.com/okproxy/okproxy/internal/store"
)

// specFields is SPEC §6's list of machine field names, in its order.
var specFields = []string{"time", "request_id", "replica", "method", "host", "path", "status", "decision", "reason",
	"policy_version", "rules", "rule", "shadow", "subject", "user_id", "email", "groups", "client_ip",
	"user_agent", "jti", "client_id", "latency_ms"}

func insertAudit(t *testing.T, db string, evs ...*audit.Event) {
	t.Helper()
	st, err := store.Open(context.Background(), store.Config{URL: db})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, e := range evs {
		if e.ID == ([16]byte{}) {
			e.ID = audit.NewID()
		}
		e.Time = e.Time.UTC().Truncate(time.Microsecond)
	}
	if _, err := st.InsertAuditEvents(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
}

// ev builds an allowed event at age before now; tweak adjusts it.
func ev(id string, age time.Duration, tweak func(*audit.Event)) *audit.Event {
	e := &audit.Event{Time: time.Now().Add(-age), RequestID: id, Replica: "r1", Method: "GET", Host: "api.example.com",
		Path: "/billing/invoices", Status: 200, Decision: "allow", Reason: "ok", PolicyVersion: 3,
		Rules: []string{"billing-read"}, Rule: "billing-read", Subject: "alice@example.com", UserID: "00ualice",
		Email: "alice@example.com", Groups: []string{"Finance"}, ClientIP: "10.0.0.1", UserAgent: "curl/8",
		JTI: "jti-" + id, ClientID: "0oa1", LatencyMS: 2.5}
	if tweak != nil {
		tweak(e)
	}
	return e
}

func queryFixture(t *testing.T) string {
	db := dbtest.NewDatabase(t)
	insertAudit(t, db,
		ev("a1", 10*time.Minute, nil),
		ev("a2", 20*time.Minute, func(e *audit.Event) {
			e.Subject, e.Email, e.UserID, e.Groups = "Bob@Example.com", "bob@example.com", "00ubob", []string{"Engineering", "Contractors", "DevOps-Team"}
			e.Status, e.Decision, e.Reason, e.Rule, e.Rules = 403, "deny", "forbidden", "no-contractors", []string{"billing-read", "no-contractors"}
		}),
		ev("a3", 30*time.Minute, func(e *audit.Event) {
			e.Subject, e.Email, e.UserID, e.Groups, e.Rules, e.Rule = "", "", "", nil, nil, ""
			e.Path, e.Status, e.Decision, e.Reason, e.ClientIP = "/me", 401, "deny", "invalid_token", "203.0.113.9"
		}),
		ev("a4", 40*time.Minute, func(e *audit.Event) {
			e.Path, e.Status, e.Decision, e.Reason = "/billing_x/y", 502, "error", "bad_gateway"
		}),
		ev("a5", 50*time.Minute, func(e *audit.Event) {
			e.Subject, e.Email, e.UserID = "svc-export", "carol@example.com", "00ucarol"
			e.Path, e.Rules, e.Rule, e.Shadow = "/export/a", []string{"export"}, "export", "deny:forbidden:new-export (changed)"
		}),
		ev("old", 3*time.Hour, nil),
	)
	return db
}

func requestIDs(t *testing.T, jsonl string) []string {
	t.Helper()
	var ids []string
	for _, line := range strings.Split(strings.TrimSpace(jsonl), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a JSON line: %q: %v", line, err)
		}
		ids = append(ids, m["request_id"].(string))
	}
	return ids
}

func TestAuditQueryFilters(t *testing.T) {
	t.Parallel()
	db := queryFixture(t)
	cases := []struct {
		args []string
		want []string // request ids, newest first
	}{
		{nil, []string{"a1", "a2", "a3", "a4", "a5"}},
		{[]string{"--since", "4h"}, []string{"a1", "a2", "a3", "a4", "a5", "old"}},
		{[]string{"--since", "0.1d"}, []string{"a1", "a2", "a3", "a4", "a5"}}, // 2h24m
		{[]string{"--since", "0.15d"}, []string{"a1", "a2", "a3", "a4", "a5", "old"}},
		{[]string{"--since", "4h", "--until", "2h"}, []string{"old"}},
		{[]string{"--until", "150m"}, []string{"old"}},                      // --since: 1h before --until
		{[]string{"--until", "5m"}, []string{"a1", "a2", "a3", "a4", "a5"}}, //
		{[]string{"--until", "15m", "--since", "4h"}, []string{"a2", "a3", "a4", "a5", "old"}},
		{[]string{"--since", time.Now().Add(-25 * time.Minute).UTC().Format(time.RFC3339)}, []string{"a1", "a2"}},
		{[]string{"--limit", "2"}, []string{"a1", "a2"}},
		{[]string{"--user", "alice@example.com"}, []string{"a1", "a4"}},
		{[]string{"--user", "bob@example.com"}, []string{"a2"}},          // subject differs in case
		{[]string{"--user", "carol@EXAMPLE.com"}, []string{"a5"}},        // by email
		{[]string{"--user", "00ucarol"}, []string{"a5"}},                 // by user id
		{[]string{"--group", "contractors"}, []string{"a2"}},             // case-insensitive
		{[]string{"--group", "devops-team"}, []string{"a2"}},             // spelling learnt from the rule below
		{[]string{"--group", "Finance"}, []string{"a1", "a4", "a5"}},     // exact
		{[]string{"--decision", "deny"}, []string{"a2", "a3"}},           //
		{[]string{"--decision", "error"}, []string{"a4"}},                //
		{[]string{"--reason", "invalid_token"}, []string{"a3"}},          //
		{[]string{"--rule", "no-contractors"}, []string{"a2"}},           // denying rule
		{[]string{"--rule", "billing-read"}, []string{"a1", "a2", "a4"}}, // matched
		{[]string{"--path-prefix", "/billing/"}, []string{"a1", "a2"}},   // _ is literal: not /billing_x
		{[]string{"--path-prefix", "/billing_"}, []string{"a4"}},
		{[]string{"--status", "401"}, []string{"a3"}},
		{[]string{"--user", "alice@example.com", "--decision", "error"}, []string{"a4"}},
	}
	mustRun(t, db, "rules", "add", "ops", "--path", "/ops/**", "--allow", "DevOps-Team")
	for _, c := range cases {
		r := run(t, db, nil, append([]string{"audit", "query", "-o", "json"}, c.args...)...)
		if r.code != 0 {
			t.Errorf("%v: exit %d: %s", c.args, r.code, r.stderr)
			continue
		}
		if got := requestIDs(t, r.stdout); !slices.Equal(got, c.want) {
			t.Errorf("%v: got %v, want %v", c.args, got, c.want)
		}
	}
}

func TestAuditQueryOutputFormats(t *testing.T) {
	t.Parallel()
	db := queryFixture(t)
	if !slices.Equal(auditFields, specFields) {
		t.Fatalf("auditFields %v differ from SPEC %v", auditFields, specFields)
	}
	out := mustRun(t, db, "audit", "query", "-o", "json").stdout
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		var keys []string
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		want := slices.Clone(specFields)
		sort.Strings(want)
		if !slices.Equal(keys, want) {
			t.Fatalf("JSON keys %v, want exactly %v", keys, want)
		}
		var ts string
		json.Unmarshal(m["time"], &ts)
		if tm, err := time.Parse(time.RFC3339Nano, ts); err != nil || !strings.HasSuffix(ts, "Z") || tm.IsZero() {
			t.Fatalf("time %q is not RFC 3339 UTC", ts)
		}
		if string(m["rules"]) == "null" || string(m["groups"]) == "null" {
			t.Fatalf("arrays must be [] not null: %s", line)
		}
	}

	// yaml: one list with the same field names, times in UTC.
	var ys []map[string]any
	if err := yaml.Unmarshal([]byte(mustRun(t, db, "audit", "query", "-o", "yaml").stdout), &ys); err != nil || len(ys) != 5 {
		t.Fatalf("yaml: %d events, %v", len(ys), err)
	}
	for _, m := range ys {
		if len(m) != len(specFields) {
			t.Fatalf("yaml event has %d fields, want %d: %v", len(m), len(specFields), m)
		}
		if ts, _ := m["time"].(string); !strings.HasSuffix(ts, "Z") {
			t.Fatalf("yaml time %v is not RFC 3339 UTC", m["time"])
		}
	}

	recs, err := csv.NewReader(strings.NewReader(mustRun(t, db, "audit", "query", "-o", "csv").stdout)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(recs[0], specFields) || len(recs) != 6 {
		t.Fatalf("csv header %v and %d rows", recs[0], len(recs))
	}
	if !strings.HasSuffix(recs[1][0], "Z") || recs[2][16] != "Engineering;Contractors;DevOps-Team" {
		t.Fatalf("csv row: %v", recs[2])
	}

	table := mustRun(t, db, "audit", "query").stdout
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 6 || !strings.HasPrefix(lines[0], "TIME") || !strings.Contains(lines[2], "Bob@Example.com") {
		t.Fatalf("table:\n%s", table)
	}
	first, _ := time.Parse(time.RFC3339Nano, recs[1][0])
	if local := first.Local().Format("2006-01-02 15:04:05"); !strings.HasPrefix(lines[1], local) {
		t.Errorf("table time is not local time %s: %s", local, lines[1])
	}
}

func TestAuditQueryBadInput(t *testing.T) {
	t.Parallel()
	db := dbtest.NewDatabase(t)
	cases := []struct {
		args []string
		flag string
	}{
		{[]string{"--since", "yesterday"}, "--since"},
		{[]string{"--since", "-3h"}, "--since"},
		{[]string{"--until", "soon"}, "--until"},
		{[]string{"--since", "1h", "--until", "2h"}, "--until"},
		{[]string{"--decision", "maybe"}, "--decision"},
		{[]string{"--reason", "nope"}, "--reason"},
		{[]string{"--status", "42"}, "--status"},
		{[]string{"--limit", "0"}, "--limit"},
		{[]string{"--path-prefix", "billing"}, "--path-prefix"},
		{[]string{"-o", "xml"}, "-o/--output"},
		{[]string{"--follow", "--until", "1h"}, "--until"},
		{[]string{"--follow", "-o", "yaml"}, "-o/--output"},
		{[]string{"--status", "abc"}, "--status"},
		{[]string{"--status", "0"}, "--status"},
	}
	for _, c := range cases {
		r := run(t, db, nil, append([]string{"audit", "query"}, c.args...)...)
		if r.code != ExitUsage || !strings.Contains(r.stderr, c.flag) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 naming %s", c.args, r.code, r.stderr, c.flag)
		}
	}
	for _, args := range [][]string{
		{"audit", "report", "-o", "pdf"}, {"audit", "report", "--since", "x"},
		{"audit", "report", "--sigma", "NaN"}, {"audit", "report", "--sigma", "+Inf"},
		{"audit", "report", "--top", "0"}, {"audit", "report", "--top", "-1"}, {"audit", "report", "--min-denials", "-1"},
		{"audit", "admin", "--since", "x"}, {"audit", "admin", "-o", "csv"},
		{"audit", "prune"}, {"audit", "prune", "--older-than", "2h"}, {"audit", "prune", "--older-than", "ninety"},
	} {
		if r := run(t, db, nil, args...); r.code != ExitUsage {
			t.Errorf("%v: exit %d (%s), want 2", args, r.code, r.stderr)
		}
	}
}

// syncBuffer lets the test read what --follow has printed so far.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestAuditQueryFollow(t *testing.T) {
	t.Parallel()
	db := queryFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	var errb bytes.Buffer
	app := &App{Stdout: &out, Stderr: &errb, Getenv: func(k string) string {
		if k == "OKPROXY_DATABASE_URL" {
			return db
		}
		return ""
	}}
	done := make(chan int)
	go func() {
		done <- app.Run(ctx, []string{"audit", "query", "--follow", "--decision", "deny", "-o", "json"})
	}()
	waitUntil(t, "initial page", func() bool { return len(requestIDs(t, out.String())) == 2 })
	// New events, one of them stamped a little in the past as a batched
	// writer would, and one that does not match the filter.
	insertAudit(t, db,
		ev("n1", 0, func(e *audit.Event) { e.Decision, e.Reason, e.Status = "deny", "forbidden", 403 }),
		ev("n2", 3*time.Second, func(e *audit.Event) { e.Decision, e.Reason, e.Status = "deny", "unauthorized", 401 }),
		ev("n3", 0, nil))
	waitUntil(t, "new events", func() bool { return len(requestIDs(t, out.String())) == 4 })
	time.Sleep(1200 * time.Millisecond) // more polls over the same window
	insertAudit(t, db, ev("n4", 0, func(e *audit.Event) { e.Decision, e.Reason, e.Status = "deny", "forbidden", 403 }))
	waitUntil(t, "n4", func() bool { return len(requestIDs(t, out.String())) == 5 })
	// Events that happened two hours ago and arrive only now, as serve's
	// spool replays them after a database outage: printed when they arrive.
	insertAudit(t, db,
		ev("late1", 2*time.Hour, func(e *audit.Event) { e.Decision, e.Reason, e.Status = "deny", "forbidden", 403 }),
		ev("late2", 2*time.Hour-time.Second, nil))
	waitUntil(t, "late1", func() bool { return len(requestIDs(t, out.String())) == 6 })
	time.Sleep(1200 * time.Millisecond)
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("follow exit %d: %s", code, errb.String())
	}
	got := requestIDs(t, out.String())
	// Initial page oldest first, then new events as they arrive; nothing twice.
	want := []string{"a3", "a2", "n2", "n1", "n4", "late1"}
	if !slices.Equal(got, want) {
		t.Fatalf("follow printed %v, want %v", got, want)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestAuditAdmin(t *testing.T) {
	t.Parallel()
	db := dbtest.NewDatabase(t)
	mustRun(t, db, "rules", "add", "billing-read", "--path", "/billing/**", "--allow", "Finance", "--actor", "alice")
	mustRun(t, db, "rules", "add", "health", "--path", "/healthz", "--public", "--actor", "bob")
	mustRun(t, db, "rules", "disable", "billing-read", "--actor", "bob")

	var all []store.AdminEvent
	if err := json.Unmarshal([]byte(mustRun(t, db, "audit", "admin", "-o", "json").stdout), &all); err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 || all[0].Action != "rule.disable" || all[2].Actor != "alice" {
		t.Fatalf("admin events: %+v", all)
	}
	var some []store.AdminEvent
	json.Unmarshal([]byte(mustRun(t, db, "audit", "admin", "--object", "rule/billing-read", "--actor", "bob", "-o", "json").stdout), &some)
	if len(some) != 1 || some[0].Action != "rule.disable" {
		t.Fatalf("filtered: %+v", some)
	}
	if y := mustRun(t, db, "audit", "admin", "--object", "rule", "-o", "yaml").stdout; !strings.Contains(y, "actor: alice") {
		t.Fatalf("yaml:\n%s", y)
	}
	tbl := mustRun(t, db, "audit", "admin").stdout
	if !strings.Contains(tbl, "rule/billing-read") || !strings.Contains(tbl, "enabled") || !strings.Contains(tbl, "(created)") {
		t.Fatalf("table:\n%s", tbl)
	}
	if out := mustRun(t, db, "audit", "admin", "--since", "1h", "--until", time.Now().Add(-time.Hour+time.Second).Format(time.RFC3339), "-o", "json").stdout; strings.TrimSpace(out) != "[]" {
		t.Fatalf("empty window: %s", out)
	}
}

func TestAuditPruneDropsOldPartitions(t *testing.T) {
	t.Parallel()
	db := dbtest.NewDatabase(t)
	st, err := store.Open(context.Background(), store.Config{URL: db})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	day := 24 * time.Hour
	// Partitions for 100..96 days ago; 95 days ago stays in the default
	// partition, as if no partition had existed then.
	if _, err := st.Pool().Exec(ctx, `SELECT okproxy_audit_partitions(now() - interval '100 days', 5)`); err != nil {
		t.Fatal(err)
	}
	insertAudit(t, db, ev("d100", 100*day-time.Hour, nil), ev("d99", 99*day, nil), ev("d99b", 99*day, nil),
		ev("d95", 95*day, nil), ev("d89", 89*day, nil), ev("now", time.Minute, nil))
	partitions := func() []string {
		rows, _ := st.Pool().Query(ctx, `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
			WHERE i.inhparent = 'audit_events'::regclass ORDER BY 1`)
		defer rows.Close()
		var out []string
		for rows.Next() {
			var n string
			rows.Scan(&n)
			out = append(out, n)
		}
		return out
	}
	before := partitions()

	dry := mustRun(t, db, "audit", "prune", "--older-than", "90d", "--dry-run").stdout
	if !strings.Contains(dry, "would drop") || !slices.Equal(partitions(), before) {
		t.Fatalf("dry run changed something or said nothing:\n%s", dry)
	}
	var res store.PruneResult
	if err := json.Unmarshal([]byte(mustRun(t, db, "audit", "prune", "--older-than", "90d", "-o", "json", "--actor", "cron").stdout), &res); err != nil {
		t.Fatal(err)
	}
	var dropped []string
	for _, p := range res.Partitions {
		dropped = append(dropped, p.Name)
	}
	want := []string{}
	for i := 100; i >= 96; i-- {
		want = append(want, "audit_events_"+time.Now().UTC().Add(-time.Duration(i)*day).Format("20060102"))
	}
	if !slices.Equal(dropped, want) || res.Rows != 4 || res.DefaultRows != 1 {
		t.Fatalf("pruned %v (%d rows, %d from default), want %v, 4 rows, 1 from default", dropped, res.Rows, res.DefaultRows, want)
	}
	after := partitions()
	for _, p := range want {
		if slices.Contains(after, p) {
			t.Errorf("%s still exists", p)
		}
	}
	var left []string
	rows, _ := st.Pool().Query(ctx, `SELECT request_id FROM audit_events ORDER BY time`)
	for rows.Next() {
		var id string
		rows.Scan(&id)
		left = append(left, id)
	}
	rows.Close()
	if !slices.Equal(left, []string{"d89", "now"}) {
		t.Fatalf("events left: %v", left)
	}
	var admin []store.AdminEvent
	json.Unmarshal([]byte(mustRun(t, db, "audit", "admin", "--object", "audit", "-o", "json").stdout), &admin)
	if len(admin) != 1 || admin[0].Action != "audit.prune" || admin[0].Actor != "cron" || !strings.Contains(string(admin[0].After), want[0]) {
		t.Fatalf("admin event: %+v", admin)
	}
	// Nothing left to prune: a second run removes nothing.
	if out := mustRun(t, db, "audit", "prune", "--older-than", "90d").stdout; !strings.Contains(out, "0 partitions, 0 events") {
		t.Fatalf("second prune:\n%s", out)
	}
}

func TestAuditReportFindsAnomalies(t *testing.T) {
	t.Parallel()
	db := dbtest.NewDatabase(t)
	mustRun(t, db, "rules", "add", "billing-read", "--path", "/billing/**", "--method", "GET", "--allow", "Finance")
	mustRun(t, db, "rules", "add", "no-contractors", "--path", "/billing/**", "--deny", "Contractors")
	mustRun(t, db, "rules", "add", "new-export", "--path", "/export/**", "--allow", "Finance", "--mode", "report")
	mustRun(t, db, "rules", "add", "never-used", "--path", "/legacy/**", "--allow", "Finance")
	mustRun(t, db, "rules", "add", "off", "--path", "/off", "--allow", "Finance", "--disabled")

	// A 48-hour window of hourly buckets ending at a fixed hour.
	end := time.Now().UTC().Truncate(time.Hour)
	at := func(hoursBeforeEnd float64) time.Duration {
		return time.Since(end.Add(-time.Duration(hoursBeforeEnd * float64(time.Hour))))
	}
	var evs []*audit.Event
	n := 0
	add := func(age time.Duration, tweak func(*audit.Event)) {
		n++
		evs = append(evs, ev(fmt.Sprintf("r%d", n), age, tweak))
	}
	for h := 47; h >= 0; h-- {
		add(at(float64(h)+0.5), nil) // steady allowed traffic from alice
		if h%6 == 0 {
			add(at(float64(h)+0.4), func(e *audit.Event) { // spiky: a denial now and then
				e.Subject, e.Email, e.UserID, e.Groups = "spiky@example.com", "spiky@example.com", "00uspiky", []string{"Contractors", "Shadow-IT"}
				e.Status, e.Decision, e.Reason, e.Rule, e.Rules = 403, "deny", "forbidden", "no-contractors", []string{"billing-read", "no-contractors"}
			})
		}
	}
	for i := 0; i < 12; i++ { // ...and a spike in the last bucket
		add(at(0.5-float64(i)/100), func(e *audit.Event) {
			e.Subject, e.Email, e.UserID, e.Groups = "spiky@example.com", "spiky@example.com", "00uspiky", []string{"Contractors"}
			e.Status, e.Decision, e.Reason, e.Rule, e.Rules = 403, "deny", "forbidden", "no-contractors", []string{"billing-read", "no-contractors"}
		})
	}
	for i := 0; i < 25; i++ { // a burst of invalid tokens from one address
		add(at(10.5-float64(i)/100), func(e *audit.Event) {
			e.Subject, e.Email, e.UserID, e.Groups, e.Rules, e.Rule = "", "", "", nil, nil, ""
			e.Status, e.Decision, e.Reason, e.ClientIP = 401, "deny", "invalid_token", "203.0.113.9"
		})
	}
	for i := 0; i < 3; i++ { // a few invalid tokens elsewhere: no burst
		add(at(20), func(e *audit.Event) {
			e.Subject, e.Groups, e.Status, e.Decision, e.Reason, e.ClientIP = "", nil, 401, "deny", "invalid_token", "198.51.100.7"
		})
	}
	for i, who := range []string{"carol@example.com", "carol@example.com", "dave@example.com", "erin@example.com"} {
		add(at(float64(5+i)), func(e *audit.Event) { // report-only rule flips
			e.Subject, e.Email, e.Path = who, who, "/export/x"
			e.Rules, e.Rule = []string{"export-all"}, "export-all"
			e.Shadow = "deny:forbidden:new-export (changed)"
		})
	}
	add(at(3), func(e *audit.Event) { e.Path, e.Shadow = "/export/y", "allow:ok:new-export" })
	insertAudit(t, db, evs...)

	window := []string{"--since", end.Add(-48 * time.Hour).Format(time.RFC3339), "--until", end.Format(time.RFC3339)}
	var rep audit.Report
	if err := json.Unmarshal([]byte(mustRun(t, db, append([]string{"audit", "report", "-o", "json"}, window...)...).stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Bucket != "hour" || len(rep.Series) != 48 || rep.Totals.Requests != int64(len(evs)) {
		t.Fatalf("bucket %s, %d buckets, %d requests (want hour, 48, %d)", rep.Bucket, len(rep.Series), rep.Totals.Requests, len(evs))
	}
	a := rep.Anomalies
	if len(a.DenialSpikes) != 1 || a.DenialSpikes[0].Caller != "spiky@example.com" || a.DenialSpikes[0].Count != 13 {
		t.Errorf("denial spikes: %+v", a.DenialSpikes)
	}
	if len(a.InvalidTokenBursts) != 1 || a.InvalidTokenBursts[0].ClientIP != "203.0.113.9" || a.InvalidTokenBursts[0].Count != 25 {
		t.Errorf("bursts: %+v", a.InvalidTokenBursts)
	}
	if len(a.UnmatchedRules) != 1 || a.UnmatchedRules[0].Name != "never-used" {
		t.Errorf("unmatched rules (report-only new-export matched via shadow, off is disabled): %+v", a.UnmatchedRules)
	}
	if len(a.UnmentionedGroups) != 1 || a.UnmentionedGroups[0].Name != "Shadow-IT" || a.UnmentionedGroups[0].Users != 1 {
		t.Errorf("unmentioned groups: %+v", a.UnmentionedGroups)
	}
	sh := rep.Shadow
	if sh.Evaluated != 5 || sh.Changed != 4 || sh.WouldDeny != 4 || sh.Callers != 3 ||
		len(sh.ByRule) != 1 || sh.ByRule[0].Rule != "new-export" || sh.TopCallers[0].Caller != "carol@example.com" {
		t.Errorf("shadow: %+v", sh)
	}
	if len(rep.TopDenied) == 0 || rep.TopDenied[0].Caller != "anonymous@203.0.113.9" || rep.TopDenied[1].Caller != "spiky@example.com" {
		t.Errorf("top denied: %+v", rep.TopDenied)
	}
	var contractors *audit.KeyUsage
	for i := range rep.Groups {
		if rep.Groups[i].Name == "Contractors" {
			contractors = &rep.Groups[i]
		}
	}
	if contractors == nil || contractors.Denied != 20 || contractors.Users != 1 || len(contractors.Series) != 48 || contractors.Series[47].Denied != 13 {
		t.Errorf("Contractors usage: %+v", contractors)
	}

	text := mustRun(t, db, append([]string{"audit", "report"}, window...)...).stdout
	for _, want := range []string{"spiky@example.com", "203.0.113.9", "never-used", "Shadow-IT", "new-export", "4 would flip"} {
		if !strings.Contains(text, want) {
			t.Errorf("text report lacks %q:\n%s", want, text)
		}
	}
	page := mustRun(t, db, append([]string{"audit", "report", "-o", "html"}, window...)...).stdout
	for _, want := range []string{"<!DOCTYPE html>", "<svg", "spiky@example.com", "203.0.113.9", "never-used", "Shadow-IT", "new-export"} {
		if !strings.Contains(page, want) {
			t.Errorf("html report lacks %q", want)
		}
	}
	if p := os.Getenv("OKPROXY_REPORT_HTML"); p != "" {
		// scripts/report-screenshot.sh renders this page in Chromium.
		if err := os.WriteFile(p, []byte(page), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range []string{"<script", "src=", "href=", "@import", "url("} {
		if strings.Contains(page, bad) {
			t.Errorf("html report is not self-contained: contains %q", bad)
		}
	}
	// Daily buckets beyond two days.
	var week audit.Report
	json.Unmarshal([]byte(mustRun(t, db, "audit", "report", "-o", "json").stdout), &week)
	if week.Bucket != "day" || len(week.Series) < 7 {
		t.Errorf("7d report: %s buckets, %d", week.Bucket, len(week.Series))
	}
}

func TestCSVSafe(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"=HYPERLINK(\"http://x\")": "'=HYPERLINK(\"http://x\")", "+1+1": "'+1+1", "-2+3": "'-2+3", "@SUM(A1)": "'@SUM(A1)",
		"\tx": "'\tx", "\rx": "'\rx", "/billing/x": "/billing/x", "curl/8": "curl/8", "": "", "200": "200",
	} {
		if got := csvSafe(in); got != want {
			t.Errorf("csvSafe(%q) = %q, want %q", in, got, want)
		}
	}
}

// A prune that removes nothing reports "partitions": [] (not null), on
// stdout and in its admin event.
func TestAuditPruneNothingIsEmptyList(t *testing.T) {
	t.Parallel()
	db := dbtest.NewDatabase(t)
	out := mustRun(t, db, "audit", "prune", "--older-than", "90d", "-o", "json").stdout
	var res map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &res); err != nil || string(res["partitions"]) != "[]" {
		t.Fatalf("prune -o json: partitions %s (%v):\n%s", res["partitions"], err, out)
	}
	var admin []store.AdminEvent
	json.Unmarshal([]byte(mustRun(t, db, "audit", "admin", "--object", "audit", "-o", "json").stdout), &admin)
	if len(admin) != 1 {
		t.Fatalf("admin events: %+v", admin)
	}
	var after map[string]json.RawMessage
	if err := json.Unmarshal(admin[0].After, &after); err != nil || string(after["partitions"]) != "[]" {
		t.Fatalf("admin event after: %s (%v)", admin[0].After, err)
	}
}

// audit query --group takes an Okta group id too (SPEC §3): it matches the
// group's current name and the names rules knew it by before a rename.
func TestAuditQueryGroupByID(t *testing.T) {
	t.Parallel()
	db := dbtest.NewDatabase(t)
	srv := fakeOrg(t)
	mustRun(t, db, "rules", "add", "billing-read", "--path", "/billing/**", "--allow", "Finance")
	if r := run(t, db, tokenEnv, syncArgs(srv)...); r.code != 0 {
		t.Fatalf("sync: %+v", r)
	}
	// Okta renames the group; the rule stays bound to its id.
	sql(t, db, `UPDATE okta_groups SET name = 'Finance EMEA' WHERE id = '00gFinance0000000003'`)
	insertAudit(t, db,
		ev("old-name", 10*time.Minute, nil),
		ev("new-name", 5*time.Minute, func(e *audit.Event) { e.Groups = []string{"Finance EMEA"} }),
		ev("lower", 6*time.Minute, func(e *audit.Event) { e.Groups = []string{"finance emea"} }),
		ev("other", 7*time.Minute, func(e *audit.Event) { e.Groups = []string{"Developers"} }),
		ev("by-id", 8*time.Minute, func(e *audit.Event) { e.Groups = []string{"00gFinance0000000003"} }),
	)
	for group, want := range map[string][]string{
		"00gFinance0000000003": {"new-name", "lower", "by-id", "old-name"}, // a token's spelling in another case too
		"00gDevelopers0000002": {"other"},
		"00gUnknown0000000009": nil,
		"Finance EMEA":         {"new-name", "lower"},
	} {
		r := mustRun(t, db, "audit", "query", "--group", group, "-o", "json")
		if got := requestIDs(t, r.stdout); !slices.Equal(got, want) {
			t.Errorf("--group %s: got %v, want %v", group, got, want)
		}
	}
}

// --until alone moves the default window back with it (audit query: 1h,
// admin: 30d, report: 7d before --until) instead of leaving --since at its
// default back from now, which made the window empty or inverted.
func TestAuditUntilWithoutSince(t *testing.T) {
	t.Parallel()
	db := dbtest.NewDatabase(t)
	insertAudit(t, db, ev("d40", 40*24*time.Hour, nil))
	sql(t, db, `INSERT INTO admin_events (time, actor, action, object_type, object_name)
		VALUES (now() - interval '40 days', 'old', 'rule.add', 'rule', 'x')`)
	if got := requestIDs(t, mustRun(t, db, "audit", "query", "--until", "40d", "--since", "41d", "-o", "json").stdout); !slices.Equal(got, []string{"d40"}) {
		t.Fatalf("query with both bounds: %v", got)
	}
	until := time.Now().Add(-40*24*time.Hour + 30*time.Minute).UTC().Format(time.RFC3339)
	if got := requestIDs(t, mustRun(t, db, "audit", "query", "--until", until, "-o", "json").stdout); !slices.Equal(got, []string{"d40"}) {
		t.Fatalf("query --until alone: %v", got)
	}
	var evs []store.AdminEvent
	json.Unmarshal([]byte(mustRun(t, db, "audit", "admin", "--until", "35d", "-o", "json").stdout), &evs)
	if len(evs) != 1 || evs[0].Actor != "old" {
		t.Fatalf("admin --until alone: %+v", evs)
	}
	var rep audit.Report
	out := mustRun(t, db, "audit", "report", "--until", "35d", "-o", "json").stdout
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Totals.Requests != 1 {
		t.Fatalf("report --until alone: %v\n%s", err, out)
	}
	// An explicit --since after --until is still refused, naming the flag.
	for _, cmd := range []string{"query", "admin", "report"} {
		if r := run(t, db, nil, "audit", cmd, "--since", "1h", "--until", "2h"); r.code != ExitUsage || !strings.Contains(r.stderr, "--until") {
			t.Errorf("audit %s --since 1h --until 2h: %+v", cmd, r)
		}
	}
}
