package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/okproxy/okproxy/internal/dbtest"
	"github.com/okproxy/okproxy/internal/store"
)

// sql runs statements against dbURL (test set-up that has no CLI, such as
// a synced directory).
func sql(t *testing.T, dbURL string, stmts ...string) {
	t.Helper()
	st, err := store.Open(context.Background(), store.Config{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, s := range stmts {
		if _, err := st.Pool().Exec(context.Background(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func queryInt(t *testing.T, dbURL, q string) int64 {
	t.Helper()
	st, err := store.Open(context.Background(), store.Config{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var n int64
	if err := st.Pool().QueryRow(context.Background(), q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// fullState extends state with quotas and snapshots.
func fullState(t *testing.T, dbURL string) string {
	t.Helper()
	return fmt.Sprintf("%s quotas=%d snapshots=%d", state(t, dbURL),
		queryInt(t, dbURL, `SELECT count(*) FROM quotas`), queryInt(t, dbURL, `SELECT count(*) FROM policy_snapshots`))
}

// syncDirectory fakes a completed Okta sync with the given id=name groups.
func syncDirectory(t *testing.T, dbURL string, groups ...string) {
	t.Helper()
	stmts := []string{`INSERT INTO sync_runs (status, finished_at) VALUES ('ok', now())`}
	for _, g := range groups {
		id, name, _ := strings.Cut(g, "=")
		stmts = append(stmts, `INSERT INTO okta_groups (id, name, type) VALUES ('`+id+`', '`+name+`', 'OKTA_GROUP')
			ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name`)
	}
	sql(t, dbURL, stmts...)
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func testdataPolicy(name string) string { return filepath.Join("..", "..", "testdata", "policy", name) }

const (
	financeID     = "00gfinance00000000000"
	auditorsID    = "00gauditors0000000000"
	contractorsID = "00gcontractors000000"
)

// Export, apply to an empty database, export again: the same bytes, in YAML
// and JSON. Applying the same file again changes nothing and says so.
func TestPolicyExportApplyRoundTrip(t *testing.T) {
	t.Parallel()
	src, dst := dbtest.NewDatabase(t), dbtest.NewDatabase(t)
	syncDirectory(t, src, financeID+"=Finance", auditorsID+"=Auditors", contractorsID+"=Contractors")
	seedRules(t, src) // billing-read binds Finance and Auditors by id; new-export too
	mustRun(t, src, "rules", "disable", "health")
	sql(t, src, `INSERT INTO quotas (name, group_id, group_name, limit_count, window_seconds, path, methods, per)
		VALUES ('dev-tier', '`+financeID+`', 'Finance', 1000, 3600, '/api/**', '{POST,GET}', 'user'),
		       ('free', NULL, 'Free Tier', 10, 90000, '/**', '{}', 'group')`)
	// A group renamed in Okta after the rule was written exports under its new name.
	syncDirectory(t, src, auditorsID+"=Internal Audit")

	y := mustRun(t, src, "rules", "export").stdout
	for _, want := range []string{"apiVersion: okproxy/v1", "kind: Policy", "  - name: billing-read\n", "- name: Internal Audit\n        id: " + auditorsID,
		"window: 1d1h", "methods: [GET, POST]", "enabled: false"} {
		if !strings.Contains(y, want) {
			t.Errorf("export lacks %q:\n%s", want, y)
		}
	}
	j := mustRun(t, src, "rules", "export", "-o", "json").stdout
	var doc map[string]any
	if err := json.Unmarshal([]byte(j), &doc); err != nil || len(doc["rules"].([]any)) != 5 || len(doc["quotas"].([]any)) != 2 {
		t.Fatalf("json export: %v\n%s", err, j)
	}

	f := writeFile(t, "policy.yaml", y)
	r := mustRun(t, dst, "rules", "apply", "-f", f, "--actor", "ci")
	if !strings.Contains(r.stdout, "+ rule billing-read") || !strings.Contains(r.stdout, "applied as policy version 1") {
		t.Fatalf("apply:\n%s", r.stdout)
	}
	if got := mustRun(t, dst, "rules", "export").stdout; got != y {
		t.Fatalf("YAML round trip differs:\n--- src\n%s\n--- dst\n%s", y, got)
	}
	if got := mustRun(t, dst, "rules", "export", "-o", "json").stdout; got != j {
		t.Fatalf("JSON round trip differs:\n--- src\n%s\n--- dst\n%s", j, got)
	}
	// One version, one admin event per object, one snapshot.
	if v := queryInt(t, dst, `SELECT version FROM versions WHERE name = 'policy'`); v != 1 {
		t.Fatalf("policy version %d, want 1", v)
	}
	if n := queryInt(t, dst, `SELECT count(*) FROM admin_events WHERE policy_version = 1 AND actor = 'ci' AND action IN ('rule.apply', 'quota.apply')`); n != 7 {
		t.Fatalf("%d admin events, want 7", n)
	}

	// Idempotent: the same file again, and the JSON export, change nothing.
	before := fullState(t, dst)
	for _, file := range []string{f, writeFile(t, "policy.json", j)} {
		r = mustRun(t, dst, "rules", "apply", "-f", file)
		if !strings.Contains(r.stdout, "no changes: the stored policy already matches") || !strings.Contains(r.stdout, "policy version 1") {
			t.Fatalf("re-apply:\n%s", r.stdout)
		}
	}
	if after := fullState(t, dst); after != before {
		t.Fatalf("re-apply wrote: %s → %s", before, after)
	}
	// Applying onto the source (same ids, one name stale in the file) is a no-op too.
	if r := mustRun(t, src, "rules", "apply", "-f", f); !strings.Contains(r.stdout, "no changes") {
		t.Fatalf("apply onto source:\n%s", r.stdout)
	}
}

// One bad rule among ten: exit 2, the rule and its line named, nothing written.
func TestPolicyApplyBadFileWritesNothing(t *testing.T) {
	t.Parallel()
	db := dbtest.NewDatabase(t)
	mustRun(t, db, "rules", "add", "existing", "--path", "/x", "--allow", "A")
	before := fullState(t, db)
	r := run(t, db, nil, "rules", "apply", "-f", testdataPolicy("bad.yaml"), "--prune")
	if r.code != ExitUsage || !strings.Contains(r.stderr, `bad.yaml:35: rule "r10-bad": path: pattern "ten/**": must start with /`) ||
		!strings.Contains(r.stderr, "1 problem(s); nothing was written") || strings.Contains(r.stderr, "r09") {
		t.Fatalf("bad file: %+v", r)
	}
	// Several problems are all reported; an ambiguous group is one too.
	syncDirectory(t, db, "00gdup1=Dup", "00gdup2=dup")
	bad := writeFile(t, "bad.yaml", `apiVersion: okproxy/v1
kind: Policy
rules:
  - {name: ok, path: /ok, allow: [Dup]}
  - {name: Bad, path: /b, public: true}
  - {name: c, path: /c, allow: [X], public: true}
quotas:
  - {name: q, group: G, limit: -1, window: 1h}
`)
	r = run(t, db, nil, "rules", "apply", "-f", bad)
	for _, want := range []string{`:5: rule "Bad": name:`, `:6: rule "c": public: cannot be combined`, `:8: quota "q": limit:`} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	ambiguous := writeFile(t, "amb.yaml", "apiVersion: okproxy/v1\nkind: Policy\nrules:\n  - {name: ok, path: /ok, allow: [Dup]}\n")
	r = run(t, db, nil, "rules", "apply", "-f", ambiguous)
	if r.code != ExitUsage || !strings.Contains(r.stderr, `amb.yaml:4: rule "ok": allow: group "Dup" matches 2 synced groups`) {
		t.Fatalf("ambiguous group: %+v", r)
	}
	for _, args := range [][]string{{"rules", "apply"}, {"rules", "apply", "-f", "/nonexistent.yaml"}, {"rules", "apply", "-f", bad, "-o", "xml"},
		{"rules", "export", "-o", "table"}, {"rules", "rollback"}, {"rules", "rollback", "--to", "99"}, {"rules", "history", "-o", "csv"}} {
		if r := run(t, db, nil, args...); r.code != ExitUsage {
			t.Errorf("%v: exit %d, want 2: %s", args, r.code, r.stderr)
		}
	}
	if after := fullState(t, db); after != before {
		t.Fatalf("bad input wrote: %s → %s", before, after)
	}
}

// Dry-run writes nothing; the diff is field by field; without --prune absent
// rules are kept and listed, with it they are removed; one version, one event
// per changed object.
func TestPolicyApplyDiffDryRunPrune(t *testing.T) {
	t.Parallel()
	db := dbtest.NewDatabase(t)
	syncDirectory(t, db, financeID+"=Finance")
	mustRun(t, db, "rules", "apply", "-f", testdataPolicy("policy.yaml"))
	mustRun(t, db, "rules", "add", "manual", "--path", "/manual", "--allow-authenticated")
	changed := writeFile(t, "p.yaml", `apiVersion: okproxy/v1
kind: Policy
rules:
  - {name: api-developers, path: /api/**, allow: [Developers]}
  - {name: billing-read, description: Finance and auditors read billing data, path: /billing/**, methods: [GET, POST], allow: [Finance]}
  - {name: health, path: /healthz, methods: [GET], public: true}
  - {name: added, path: /added, allow: [finance]}
`)
	before := fullState(t, db)
	r := mustRun(t, db, "rules", "apply", "-f", changed, "--dry-run")
	wantDiff := `+ rule added
    path: /added
    allow: [Finance (` + financeID + `)]
    mode: enforce
    enabled: true
~ rule billing-read
    methods: [GET] → [GET, POST]
    allow: [Auditors, Finance (` + financeID + `)] → [Finance (` + financeID + `)]
  rule billing-write: not in file (kept)
  rule manual: not in file (kept)
  rule me: not in file (kept)
  rule new-export: not in file (kept)
  rule no-contractors: not in file (kept)
rules:  1 added, 1 changed, 0 removed, 2 unchanged, 5 not in file (kept; --prune removes them)
dry run: nothing written (policy version stays 2)
`
	if r.stdout != wantDiff {
		t.Fatalf("dry-run diff:\n%s\nwant:\n%s", r.stdout, wantDiff)
	}
	if !strings.Contains(r.stderr, "has no quotas: section; stored quotas are left alone") {
		t.Fatalf("no note about quotas: %s", r.stderr)
	}
	if after := fullState(t, db); after != before {
		t.Fatalf("dry run wrote: %s → %s", before, after)
	}
	r = mustRun(t, db, "rules", "apply", "-f", changed, "--prune", "--actor", "bob")
	if !strings.Contains(r.stdout, "- rule manual\n") || !strings.Contains(r.stdout, "applied as policy version 3") {
		t.Fatalf("prune:\n%s", r.stdout)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM rules`); n != 4 {
		t.Fatalf("%d rules after prune, want 4", n)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM quotas`); n != 1 {
		t.Fatalf("prune without a quotas: section removed quotas")
	}
	if n := queryInt(t, db, `SELECT count(*) FROM admin_events WHERE policy_version = 3 AND actor = 'bob'`); n != 7 {
		t.Fatalf("%d events for version 3, want 7 (1 add, 1 change, 5 removes)", n)
	}
	// JSON output for CI.
	var rep applyReport
	out := mustRun(t, db, "rules", "apply", "-f", changed, "-o", "json").stdout
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Applied || rep.Version != 3 || rep.Plan.RuleCounts.Unchanged != 4 {
		t.Fatalf("json report: %v %+v", err, rep)
	}
}

// Rollback restores an earlier version as a new one, audited; history shows
// who changed what, field by field.
func TestPolicyHistoryRollback(t *testing.T) {
	t.Parallel()
	db := dbtest.NewDatabase(t)
	mustRun(t, db, "rules", "apply", "-f", testdataPolicy("policy.yaml"), "--actor", "alice") // v1
	v1 := mustRun(t, db, "rules", "export").stdout
	mustRun(t, db, "rules", "disable", "health", "--actor", "bob")                              // v2
	mustRun(t, db, "rules", "rm", "billing-write", "--actor", "bob")                            // v3
	mustRun(t, db, "rules", "add", "extra", "--path", "/extra", "--public", "--actor", "carol") // v4
	sql(t, db, `UPDATE quotas SET limit_count = 5`)                                             // outside the CLI, unversioned

	r := mustRun(t, db, "rules", "history", "--limit", "3")
	for _, want := range []string{"version 4", "carol  rules add extra", "+ rule extra (rule.add)", "version 2", "~ rule health (rule.disable)", "enabled: true → false", "- rule billing-write (rule.remove)"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("history lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "version 1 ") {
		t.Errorf("--limit 3 shows version 1:\n%s", r.stdout)
	}
	r = mustRun(t, db, "rules", "history", "health")
	if !strings.Contains(r.stdout, "version 2") || !strings.Contains(r.stdout, "version 1") || strings.Contains(r.stdout, "extra") {
		t.Fatalf("history of health:\n%s", r.stdout)
	}
	var hist []historyEntry
	if err := json.Unmarshal([]byte(mustRun(t, db, "rules", "history", "-o", "json").stdout), &hist); err != nil || len(hist) != 4 ||
		!hist[3].Restorable || len(hist[3].Changes) != 8 || hist[3].Changes[0].Op != "add" {
		t.Fatalf("json history: %v %+v", err, hist)
	}

	before := fullState(t, db)
	r = mustRun(t, db, "rules", "rollback", "--to", "1", "--dry-run")
	if !strings.Contains(r.stdout, "+ rule billing-write") || !strings.Contains(r.stdout, "- rule extra") || !strings.Contains(r.stdout, "limit: 5 → 1000") {
		t.Fatalf("rollback dry run:\n%s", r.stdout)
	}
	if after := fullState(t, db); after != before {
		t.Fatalf("rollback dry run wrote: %s → %s", before, after)
	}
	r = mustRun(t, db, "rules", "rollback", "--to", "1", "--actor", "dave")
	if !strings.Contains(r.stdout, "rolled back to version 1 as policy version 5") {
		t.Fatalf("rollback:\n%s", r.stdout)
	}
	if got := mustRun(t, db, "rules", "export").stdout; got != v1 {
		t.Fatalf("rollback did not restore version 1:\n%s\nwant:\n%s", got, v1)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM admin_events WHERE policy_version = 5 AND actor = 'dave'
		AND action IN ('rule.rollback', 'quota.rollback')`); n != 4 {
		t.Fatalf("%d rollback events, want 4 (health, billing-write, extra, dev-tier)", n)
	}
	if r := mustRun(t, db, "rules", "history", "--limit", "1"); !strings.Contains(r.stdout, "dave  rules rollback --to 1") {
		t.Fatalf("rollback not in history:\n%s", r.stdout)
	}
	// Rolling back to where we are changes nothing and makes no version.
	if r := mustRun(t, db, "rules", "rollback", "--to", "5"); !strings.Contains(r.stdout, "no changes") {
		t.Fatalf("rollback to current:\n%s", r.stdout)
	}
	// The snapshot the trigger keeps is exactly what export reads.
	if r := mustRun(t, db, "rules", "rollback", "--to", "1"); !strings.Contains(r.stdout, "no changes") {
		t.Fatalf("snapshot and live state disagree:\n%s", r.stdout)
	}
	if v := queryInt(t, db, `SELECT version FROM versions WHERE name = 'policy'`); v != 5 {
		t.Fatalf("version %d, want 5", v)
	}
}

// A rules: or quotas: key with no value (YAML null) is refused with exit 2
// naming its line: read as an empty list, it made --prune delete every rule
// or quota. An explicit [] still means "none", and an empty policy exports
// as a file that applies back.
func TestPolicyApplyRefusesNullSection(t *testing.T) {
	t.Parallel()
	db := dbtest.NewDatabase(t)
	seedRules(t, db)
	sql(t, db, `INSERT INTO quotas (name, group_name, limit_count, window_seconds) VALUES ('q', 'Finance', 10, 60)`)
	before := fullState(t, db)
	head := "apiVersion: okproxy/v1\nkind: Policy\n"
	for _, c := range []struct{ file, want string }{
		{head + "rules:\n", "3: rules: is empty; write `rules: []` to mean no rules"},
		{head + "rules: ~\nquotas: []\n", "3: rules: is empty"},
		{head + "rules: []\nquotas: null\n", "4: quotas: is empty; write `quotas: []` to mean no quotas"},
		{head + "quotas:\n# all gone\nrules: []\n", "3: quotas: is empty"},
		{`{"apiVersion": "okproxy/v1", "kind": "Policy", "rules": null}`, "1: rules: is empty"},
	} {
		f := writeFile(t, "policy.yaml", c.file)
		for _, extra := range [][]string{{"--prune"}, {"--prune", "--dry-run"}, nil} {
			r := run(t, db, nil, append([]string{"rules", "apply", "-f", f}, extra...)...)
			if r.code != ExitUsage || !strings.Contains(r.stderr, c.want) {
				t.Errorf("%q %v: exit %d, stderr %q (want 2 and %q)", c.file, extra, r.code, r.stderr, c.want)
			}
		}
	}
	if after := fullState(t, db); after != before {
		t.Fatalf("a refused file changed the policy: %s -> %s", before, after)
	}
	mustRun(t, db, "rules", "apply", "-f", writeFile(t, "policy.yaml", head+"rules: []\nquotas: []\n"), "--prune")
	if n := queryInt(t, db, `SELECT (SELECT count(*) FROM rules) + (SELECT count(*) FROM quotas)`); n != 0 {
		t.Fatalf("rules: [] and quotas: [] with --prune left %d objects", n)
	}
	for _, o := range []string{"yaml", "json"} {
		exported := mustRun(t, db, "rules", "export", "-o", o).stdout
		mustRun(t, db, "rules", "apply", "-f", writeFile(t, "policy."+o, exported), "--prune")
	}
}

// rules history NAME for a name no rule or quota has ever had is an unknown
// rule (SPEC §2: exit 2); a removed rule keeps its history.
func TestRulesHistoryUnknownName(t *testing.T) {
	t.Parallel()
	db := dbtest.NewDatabase(t)
	mustRun(t, db, "rules", "add", "gone", "--path", "/gone", "--allow-authenticated")
	mustRun(t, db, "rules", "rm", "gone")
	mustRun(t, db, "quotas", "add", "q", "--group", "Finance", "--limit", "10", "--window", "1m")
	sql(t, db, `INSERT INTO rules (name, path, allow_authenticated) VALUES ('unlogged', '/u', true)`)
	for _, o := range []string{"table", "json"} {
		if r := run(t, db, nil, "rules", "history", "nope", "-o", o); r.code != ExitUsage || !strings.Contains(r.stderr, `unknown rule "nope"`) || r.stdout != "" {
			t.Errorf("history of a name never used (-o %s): %+v", o, r)
		}
	}
	if r := mustRun(t, db, "rules", "history", "gone"); !strings.Contains(r.stdout, "- rule gone (rule.remove)") || !strings.Contains(r.stdout, "+ rule gone (rule.add)") {
		t.Errorf("history of a removed rule:\n%s", r.stdout)
	}
	if r := mustRun(t, db, "rules", "history", "q"); !strings.Contains(r.stdout, "+ quota q (quota.add)") {
		t.Errorf("history of a quota:\n%s", r.stdout)
	}
	if r := mustRun(t, db, "rules", "history", "unlogged"); !strings.Contains(r.stdout, `no policy version changed "unlogged"`) {
		t.Errorf("history of a rule with no recorded change:\n%s", r.stdout)
	}
}
