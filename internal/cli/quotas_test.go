package cli

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"

	"github.com/okproxy/okproxy/internal/dbtest"
	"github.com/okproxy/okproxy/internal/quota"
	"github.com/okproxy/okproxy/internal/store"
)

func TestQuotasCLIEndToEnd(t *testing.T) {
	t.Parallel()
	db := dbtest.NewDatabase(t)
	r := run(t, db, nil, "quotas", "add", "dev-tier", "--group", "Developers", "--limit", "1000", "--window", "1h", "--path", "/api/**", "--actor", "alice")
	if r.code != 0 || !strings.Contains(r.stdout, "1000 requests per 1h per user of Developers (policy version 1)") ||
		!strings.Contains(r.stderr, `"Developers" is not in the synced directory`) {
		t.Fatalf("add: %+v", r)
	}
	mustRun(t, db, "quotas", "add", "team", "--group", "Analytics", "--limit", "50", "--window", "1d", "--method", "post,get", "--per", "group")
	if r := run(t, db, nil, "quotas", "add", "team", "--group", "Nobody", "--limit", "5", "--window", "1h"); r.code != ExitUsage ||
		!strings.Contains(r.stderr, "already exists") || strings.Contains(r.stderr, "warning") {
		t.Fatalf("duplicate add: %+v", r)
	}

	out := mustRun(t, db, "quotas", "list").stdout
	for _, want := range []string{"NAME", "dev-tier  Developers  1000", "1h", "/api/**", "team", "1d", "group", "GET,POST"} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, db, "quotas", "list", "-o", "json").stdout), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0]["name"] != "dev-tier" || list[0]["window"] != "1h" || list[0]["window_seconds"] != 3600.0 || list[1]["per"] != "group" {
		t.Fatalf("json list: %v", list)
	}
	recs, err := csv.NewReader(strings.NewReader(mustRun(t, db, "quotas", "list", "-o", "csv").stdout)).ReadAll()
	if err != nil || len(recs) != 3 || strings.Join(recs[0], ",") != "name,group,limit,window,window_seconds,per,path,methods,created_at" ||
		strings.Join(recs[1][:8], ",") != "dev-tier,Developers,1000,1h,3600,user,/api/**," ||
		strings.Join(recs[2][:8], ",") != "team,Analytics,50,1d,86400,group,/**,GET;POST" || recs[2][8] == "" {
		t.Fatalf("csv list: %q %v", recs, err)
	}
	if y := mustRun(t, db, "quotas", "show", "team", "-o", "yaml").stdout; !strings.Contains(y, "window: 1d") || !strings.Contains(y, "- POST") {
		t.Fatalf("yaml show:\n%s", y)
	}
	if s := mustRun(t, db, "quotas", "show", "dev-tier").stdout; !strings.Contains(s, "(epoch-aligned)") || !strings.Contains(s, "by name only, not bound to a synced group") {
		t.Fatalf("show:\n%s", s)
	}

	// Usage: counts written by replicas' leases, shown for the current window.
	st, err := store.Open(context.Background(), store.Config{URL: db})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	q, err := st.GetQuota(context.Background(), "dev-tier")
	if err != nil {
		t.Fatal(err)
	}
	_, _, now, err := st.QuotaVersions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	w := now.Unix() - now.Unix()%3600
	if _, err := st.LeaseQuota(context.Background(), quota.Lease{QuotaID: q.ID, Key: "00ualice", Label: "alice@example.com", Window: w,
		WindowSeconds: 3600, Limit: 1000, Block: 40, Used: 0}); err != nil {
		t.Fatal(err)
	}
	if err := st.ReportQuotas(context.Background(), []quota.Report{{QuotaID: q.ID, Key: "00ualice", Window: w, Unused: 10, Used: 25}}); err != nil {
		t.Fatal(err)
	}
	if out := mustRun(t, db, "quotas", "usage").stdout; !strings.Contains(out, "alice@example.com") || !strings.Contains(out, " 30 ") || !strings.Contains(out, " 970 ") {
		t.Fatalf("usage table:\n%s", out)
	}
	var us []quota.Usage
	if err := json.Unmarshal([]byte(mustRun(t, db, "quotas", "usage", "dev-tier", "--user", "Alice@Example.com", "-o", "json").stdout), &us); err != nil {
		t.Fatal(err)
	}
	if len(us) != 1 || us[0].Granted != 30 || us[0].Used != 25 || us[0].Remaining != 970 || us[0].WindowEnd.Sub(us[0].WindowStart).Hours() != 1 {
		t.Fatalf("usage json: %+v", us)
	}
	recs, err = csv.NewReader(strings.NewReader(mustRun(t, db, "quotas", "usage", "dev-tier", "-o", "csv").stdout)).ReadAll()
	if err != nil || len(recs) != 2 || strings.Join(recs[0], ",") != "quota,per,key,subject,limit,granted,used,remaining,window_start,window_end" ||
		strings.Join(recs[1][:8], ",") != "dev-tier,user,00ualice,alice@example.com,1000,30,25,970" {
		t.Fatalf("usage csv: %v %v", recs, err)
	}
	if out := mustRun(t, db, "quotas", "usage", "--user", "bob@example.com", "-o", "json").stdout; strings.TrimSpace(out) != "[]" {
		t.Fatalf("usage of a user with no counts: %s", out)
	}

	mustRun(t, db, "quotas", "rm", "team", "--actor", "bob")
	evs, err := st.ListAdminEvents(context.Background(), "quota", "", timeZero, 10)
	if err != nil || len(evs) != 3 || evs[0].Action != "quota.remove" || evs[0].Actor != "bob" || evs[0].Before == nil || evs[0].After != nil ||
		evs[2].Actor != "alice" || evs[2].After == nil || evs[0].PolicyVersion != 3 {
		t.Fatalf("admin events: %+v %v", evs, err)
	}
	if r := run(t, db, nil, "quotas", "show", "team"); r.code != ExitUsage || !strings.Contains(r.stderr, "unknown quota") {
		t.Fatalf("show removed quota: %+v", r)
	}
}

// Bad input: a message naming the field, exit 2, nothing written.
func TestQuotasCLIBadInput(t *testing.T) {
	t.Parallel()
	db := dbtest.NewDatabase(t)
	mustRun(t, db, "quotas", "add", "existing", "--group", "G", "--limit", "5", "--window", "1m")
	before := state(t, db) + quotaState(t, db)
	add := func(extra ...string) []string {
		return append([]string{"quotas", "add", "q", "--group", "G", "--limit", "5", "--window", "1h"}, extra...)
	}
	cases := []struct {
		args  []string
		field string
	}{
		{[]string{"quotas", "add", "q", "--limit", "5", "--window", "1h"}, "group"},
		{[]string{"quotas", "add", "q", "--group", "G", "--window", "1h"}, "limit"},
		{[]string{"quotas", "add", "q", "--group", "G", "--limit", "5"}, "window"},
		{add("--limit", "0"), "limit"},
		{add("--limit", "-3"), "limit"},
		{add("--limit", "many"), "limit"},
		{add("--window", "0s"), "window"},
		{add("--window", "1.5s"), "window"},
		{add("--window", "soon"), "window"},
		{add("--window", "400d"), "window"},
		{add("--path", "api/**"), "path"},
		{add("--path", "/a/**/b"), "path"},
		{add("--method", "FETCH"), "method"},
		{add("--method", ""), "method"},
		{add("--per", "team"), "per"},
		{add("--per", ""), "per"},
		{add("--path", ""), "path"},
		{add("--group", ""), "group"},
		{[]string{"quotas", "add", "Bad Name", "--group", "G", "--limit", "5", "--window", "1h"}, "name"},
		{[]string{"quotas", "add", "existing", "--group", "G", "--limit", "5", "--window", "1h"}, "already exists"},
		{[]string{"quotas", "add"}, "NAME"},
		{[]string{"quotas", "rm", "nope"}, "unknown quota"},
		{[]string{"quotas", "show", "nope"}, "unknown quota"},
		{[]string{"quotas", "usage", "nope"}, "unknown quota"},
		{[]string{"quotas", "usage", "a", "b"}, "at most one"},
		{[]string{"quotas", "usage", "--user", " "}, "user"},
		{[]string{"quotas", "list", "-o", "xml"}, "output"},
		{[]string{"quotas", "usage", "-o", "xml"}, "output"},
	}
	for _, c := range cases {
		r := run(t, db, nil, c.args...)
		if r.code != ExitUsage || !strings.Contains(r.stderr, c.field) {
			t.Errorf("okproxy %s: exit %d (want 2), stderr %q should name %q", strings.Join(c.args, " "), r.code, r.stderr, c.field)
		}
	}
	if after := state(t, db) + quotaState(t, db); after != before {
		t.Fatalf("bad input wrote to the database: before %s after %s", before, after)
	}
}

func quotaState(t *testing.T, db string) string {
	t.Helper()
	st, err := store.Open(context.Background(), store.Config{URL: db})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var n int
	if err := st.Pool().QueryRow(context.Background(), `SELECT count(*) FROM quotas`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return strings.Repeat("q", n)
}
