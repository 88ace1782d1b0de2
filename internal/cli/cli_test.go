package cli

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/okproxy/okproxy/internal/dbtest"
	"github.com/okproxy/okproxy/internal/oktatest"
	"github.com/okproxy/okproxy/internal/store"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

type result struct {
	stdout, stderr string
	code           int
}

// run executes okproxy with args against dbURL, with env as the only environment.
func run(t *testing.T, dbURL string, env map[string]string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	app := &App{Stdout: &out, Stderr: &errb, Getenv: func(k string) string {
		if k == "OKPROXY_DATABASE_URL" && dbURL != "" {
			return dbURL
		}
		return env[k]
	}}
	code := app.Run(context.Background(), args)
	return result{out.String(), errb.String(), code}
}

func mustRun(t *testing.T, dbURL string, args ...string) result {
	t.Helper()
	r := run(t, dbURL, nil, args...)
	if r.code != 0 {
		t.Fatalf("okproxy %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read golden %s (run go test ./internal/cli -update): %v", p, err)
	}
	if got != string(want) {
		t.Errorf("%s differs from golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// state summarises what the database holds, to prove "nothing written".
func state(t *testing.T, dbURL string) string {
	t.Helper()
	st, err := store.Open(context.Background(), store.Config{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var rules, groups, events int
	var version int64
	err = st.Pool().QueryRow(context.Background(), `SELECT (SELECT count(*) FROM rules), (SELECT count(*) FROM rule_groups),
		(SELECT count(*) FROM admin_events), (SELECT version FROM versions WHERE name = 'policy')`).Scan(&rules, &groups, &events, &version)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal([]any{rules, groups, events, version})
	return string(b)
}

func seedRules(t *testing.T, db string) {
	t.Helper()
	mustRun(t, db, "rules", "add", "billing-read", "--path", "/billing/**", "--method", "GET", "--allow", "Finance", "--allow", "Auditors", "--actor", "alice")
	mustRun(t, db, "rules", "add", "no-contractors", "--path", "/billing/**", "--deny", "Contractors")
	mustRun(t, db, "rules", "add", "health", "--path", "/healthz", "--method", "GET", "--public")
	mustRun(t, db, "rules", "add", "me", "--path", "/me", "--allow-authenticated", "--host", "api.example.com", "--scope", "profile:read")
	mustRun(t, db, "rules", "add", "new-export", "--path", "/export/**", "--allow", "Finance", "--mode", "report")
}

func TestRulesCLIEndToEnd(t *testing.T) {
	t.Parallel()
	db := dbtest.NewDatabase(t)
	r := run(t, db, nil, "rules", "add", "billing-read", "--path", "/billing/**", "--method", "GET", "--allow", "Finance", "--allow", "Auditors", "--actor", "alice")
	if r.code != 0 || !strings.Contains(r.stdout, "policy version 1") {
		t.Fatalf("add: %+v", r)
	}
	// Unknown groups are accepted, stored by name, with a warning on stderr.
	if !strings.Contains(r.stderr, `"Finance" is not in the synced directory`) {
		t.Fatalf("no unknown-group warning: %q", r.stderr)
	}
	mustRun(t, db, "rules", "add", "no-contractors", "--path", "/billing/**", "--deny", "Contractors")
	mustRun(t, db, "rules", "add", "health", "--path", "/healthz", "--method", "GET", "--public")
	mustRun(t, db, "rules", "add", "me", "--path", "/me", "--allow-authenticated", "--host", "api.example.com", "--scope", "profile:read")
	mustRun(t, db, "rules", "add", "new-export", "--path", "/export/**", "--allow", "Finance", "--mode", "report")

	// A refused add warns about nothing it did not store.
	if r := run(t, db, nil, "rules", "add", "billing-read", "--path", "/x", "--allow", "Nobody"); r.code != ExitUsage ||
		!strings.Contains(r.stderr, "already exists") || strings.Contains(r.stderr, "warning") {
		t.Fatalf("duplicate add: %+v", r)
	}

	golden(t, "rules_list.txt", mustRun(t, db, "rules", "list").stdout)

	var list []map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, db, "rules", "list", "-o", "json").stdout), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 5 || list[0]["name"] != "billing-read" {
		t.Fatalf("json list: %v", list)
	}
	recs, err := csv.NewReader(strings.NewReader(mustRun(t, db, "rules", "list", "-o", "csv").stdout)).ReadAll()
	if err != nil || len(recs) != 6 || strings.Join(recs[0], ",") !=
		"name,path,methods,hosts,allow,allow_authenticated,public,deny,scopes,description,enabled,mode,created_at,updated_at" {
		t.Fatalf("csv list: %q %v", recs, err)
	}
	for i, want := range []string{
		"billing-read|/billing/**|GET||Auditors;Finance|false|false|||",
		"health|/healthz|GET|||false|true|||",
		"me|/me||api.example.com||true|false||profile:read|",
		"new-export|/export/**|||Finance|false|false|||",
		"no-contractors|/billing/**||||false|false|Contractors||",
	} {
		if got := strings.Join(recs[i+1][:10], "|"); got != want || recs[i+1][12] == "" {
			t.Errorf("csv row %d: %q, want %q and a created_at", i+1, recs[i+1], want)
		}
	}
	y := mustRun(t, db, "rules", "show", "billing-read", "-o", "yaml").stdout
	if !strings.Contains(y, "name: billing-read") || !strings.Contains(y, "- GET") {
		t.Fatalf("yaml show:\n%s", y)
	}

	// rules test: decisions and exit codes.
	cases := []struct {
		args   []string
		code   int
		output string
	}{
		{[]string{"--path", "/billing/x", "--groups", "Finance", "--expect", "allow"}, 0, "granted by rule billing-read"},
		{[]string{"--path", "/billing/x", "--method", "HEAD", "--groups", "finance", "--expect", "allow"}, 0, "allow"},
		{[]string{"--path", "/billing/x", "--groups", "Finance,Contractors", "--expect", "deny"}, 0, "Contractors"},
		{[]string{"--path", "/billing/x", "--groups", "Finance,Contractors", "--expect", "allow"}, 3, "forbidden"},
		{[]string{"--path", "/billing/x", "--method", "POST", "--groups", "Finance", "--expect", "deny"}, 0, "forbidden"},
		{[]string{"--path", "/billing/x", "--expect", "deny"}, 0, "unauthorized"},
		{[]string{"--path", "/healthz", "--expect", "allow"}, 0, "health"},
		{[]string{"--path", "/me", "--host", "api.example.com:443", "--groups", "X", "--expect", "deny"}, 0, "insufficient_scope"},
		{[]string{"--path", "/me", "--host", "api.example.com", "--groups", "X", "--scope", "profile:read", "--expect", "allow"}, 0, "me"},
		// No identity is anonymous (SPEC §3), also with --scope: no token, no scopes.
		{[]string{"--path", "/me", "--host", "api.example.com", "--scope", "profile:read", "--expect", "deny"}, 0, "unauthorized"},
		{[]string{"--path", "/bil%6Cing/x", "--groups", "Finance", "--expect", "allow"}, 0, "/billing/x"},
		{[]string{"--path", "/billing/%2e%2e/admin", "--groups", "Finance", "--expect", "deny"}, 0, "bad_request"},
		{[]string{"--path", "/export/a", "--groups", "Finance", "--expect", "deny"}, 0, "forbidden"},
	}
	for _, c := range cases {
		r := run(t, db, nil, append([]string{"rules", "test"}, c.args...)...)
		if r.code != c.code || !strings.Contains(r.stdout, c.output) {
			t.Errorf("rules test %v: exit %d (want %d), stdout:\n%s\nstderr: %s", c.args, r.code, c.code, r.stdout, r.stderr)
		}
	}
	var tr testResult
	out := mustRun(t, db, "rules", "test", "--path", "/export/a", "--groups", "Finance", "-o", "json").stdout
	if err := json.Unmarshal([]byte(out), &tr); err != nil {
		t.Fatal(err)
	}
	if tr.Shadow == nil || tr.Shadow.Effect != "allow" || !tr.Shadow.Changed || tr.Status != 403 {
		t.Fatalf("report-only rule shadow: %+v", tr)
	}
	golden(t, "rules_test_deny.txt", mustRun(t, db, "rules", "test", "--path", "/billing/x", "--groups", "Finance,Contractors").stdout)

	mustRun(t, db, "rules", "disable", "no-contractors")
	if r := run(t, db, nil, "rules", "test", "--path", "/billing/x", "--groups", "Finance,Contractors", "--expect", "allow"); r.code != 0 {
		t.Fatalf("disabled deny still applied: %+v", r)
	}
	if r := mustRun(t, db, "rules", "disable", "no-contractors"); !strings.Contains(r.stdout, "nothing changed") {
		t.Fatalf("second disable: %q", r.stdout)
	}
	mustRun(t, db, "rules", "enable", "no-contractors")
	mustRun(t, db, "rules", "rm", "no-contractors", "--actor", "bob")
	if r := run(t, db, nil, "rules", "show", "no-contractors"); r.code != 2 || !strings.Contains(r.stderr, "unknown rule") {
		t.Fatalf("show removed rule: %+v", r)
	}
}

// Bad input to every command: a message naming the field, exit 2, nothing written.
func TestRulesCLIBadInput(t *testing.T) {
	t.Parallel()
	db := dbtest.NewDatabase(t)
	mustRun(t, db, "rules", "add", "existing", "--path", "/x", "--allow", "A")
	before := state(t, db)
	cases := []struct {
		args  []string
		field string
	}{
		{[]string{"rules", "add", "r", "--allow", "A"}, "path"},
		{[]string{"rules", "add", "r", "--path", "billing/**", "--allow", "A"}, "path"},
		{[]string{"rules", "add", "r", "--path", "/a/**/b", "--allow", "A"}, "path"},
		{[]string{"rules", "add", "r", "--path", "/a/b**", "--allow", "A"}, "path"},
		{[]string{"rules", "add", "r", "--path", "/a//b", "--allow", "A"}, "path"},
		{[]string{"rules", "add", "r", "--path", "/a"}, "grant"},
		{[]string{"rules", "add", "r", "--path", "/a", "--public", "--allow", "A"}, "public"},
		{[]string{"rules", "add", "r", "--path", "/a", "--allow", "A", "--method", "FETCH"}, "method"},
		{[]string{"rules", "add", "r", "--path", "/a", "--allow", "A", "--mode", "audit"}, "mode"},
		{[]string{"rules", "add", "r", "--path", "/a", "--allow", "A", "--host", "http://x"}, "host"},
		// An empty value (an unset shell variable) would widen the rule to all.
		{[]string{"rules", "add", "r", "--path", "/a", "--allow", "A", "--host", ""}, "host"},
		{[]string{"rules", "add", "r", "--path", "/a", "--allow", "A", "--host", "a.example.com,,b.example.com"}, "host"},
		{[]string{"rules", "add", "r", "--path", "/a", "--allow", "A", "--method", ""}, "method"},
		{[]string{"rules", "add", "r", "--path", "/a", "--allow", "A", "--method", "GET,"}, "method"},
		{[]string{"rules", "add", "r", "--path", "/a", "--allow", "A", "--scope", ""}, "scope"},
		{[]string{"rules", "add", "r", "--path", "/a", "--allow", ""}, "allow"},
		{[]string{"rules", "add", "r", "--path", "/a", "--allow", "A", "--deny", " "}, "deny"},
		{[]string{"rules", "add", "Bad Name", "--path", "/a", "--allow", "A"}, "name"},
		{[]string{"rules", "add", "existing", "--path", "/a", "--allow", "A"}, "already exists"},
		{[]string{"rules", "add", "r", "--path", "/a", "--allow", "A", "--bogus"}, "bogus"},
		{[]string{"rules", "add"}, "NAME"},
		{[]string{"rules", "rm", "nope"}, "unknown rule"},
		{[]string{"rules", "enable", "nope"}, "unknown rule"},
		{[]string{"rules", "disable", "nope"}, "unknown rule"},
		{[]string{"rules", "show", "nope"}, "unknown rule"},
		{[]string{"rules", "list", "-o", "xml"}, "output"},
		{[]string{"rules", "test"}, "path"},
		{[]string{"rules", "test", "--path", "/a", "--expect", "maybe"}, "expect"},
		{[]string{"rules", "test", "--path", "/a", "--user", "u", "--groups", "g"}, "alternatives"},
		{[]string{"rules", "test", "--path", "/a", "--user", "ghost@example.com"}, "user"},
		// Empty values (unset variables in CI) would test an anonymous caller or check nothing.
		{[]string{"rules", "test", "--path", "/a", "--user", ""}, "user"},
		{[]string{"rules", "test", "--path", "/a", "--groups", ""}, "groups"},
		{[]string{"rules", "test", "--path", "/a", "--groups", "A", "--expect", ""}, "expect"},
		{[]string{"rules", "test", "--path", "/a", "--token", " "}, "token"},
		{[]string{"rules", "history", ""}, "name"},
		{[]string{"migrate", "up", "extra"}, "no arguments"},
		{[]string{"nosuchcommand"}, "unknown command"},
	}
	for _, c := range cases {
		r := run(t, db, nil, c.args...)
		if r.code != ExitUsage || !strings.Contains(r.stderr, c.field) {
			t.Errorf("okproxy %s: exit %d (want 2), stderr %q should name %q", strings.Join(c.args, " "), r.code, r.stderr, c.field)
		}
	}
	if after := state(t, db); after != before {
		t.Fatalf("bad input wrote to the database: before %s after %s", before, after)
	}
}

func TestEnvironmentAndDatabaseErrors(t *testing.T) {
	t.Parallel()
	db := dbtest.NewDatabase(t)
	// OKPROXY_<FLAG> sets flags; DATABASE_URL is the fallback for the URL.
	r := run(t, "", map[string]string{"DATABASE_URL": db, "OKPROXY_ACTOR": "env-actor"}, "rules", "add", "r1", "--path", "/a", "--allow-authenticated")
	if r.code != 0 {
		t.Fatalf("add via env: %+v", r)
	}
	st, err := store.Open(context.Background(), store.Config{URL: db})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	evs, err := st.ListAdminEvents(context.Background(), "rule", "r1", timeZero, 1)
	if err != nil || len(evs) != 1 || evs[0].Actor != "env-actor" {
		t.Fatalf("actor from env: %+v %v", evs, err)
	}
	// No database configured: usage error; unreachable database: runtime failure, password redacted.
	if r := run(t, "", nil, "rules", "list"); r.code != ExitUsage || !strings.Contains(r.stderr, "DATABASE_URL") {
		t.Fatalf("no database: %+v", r)
	}
	r = run(t, "postgres://u:hunter2@127.0.0.1:1/db?connect_timeout=2", nil, "rules", "list")
	if r.code != ExitFailure || strings.Contains(r.stderr, "hunter2") || !strings.Contains(r.stderr, "***") {
		t.Fatalf("unreachable database: %+v", r)
	}
	// migrate status on a migrated database lists applied migrations.
	if r := mustRun(t, db, "migrate", "status"); !strings.Contains(r.stdout, "00001_policy.sql") || !strings.Contains(r.stdout, "applied") {
		t.Fatalf("migrate status: %s", r.stdout)
	}
	var ms []struct {
		Version   int64      `json:"version"`
		File      string     `json:"file"`
		State     string     `json:"state"`
		AppliedAt *time.Time `json:"applied_at"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, db, "migrate", "status", "-o", "json").stdout), &ms); err != nil || len(ms) < 8 {
		t.Fatalf("migrate status -o json: %d migrations, %v", len(ms), err)
	}
	for i, m := range ms {
		if m.Version != int64(i+1) || m.State != "applied" || m.AppliedAt == nil || !strings.HasSuffix(m.File, ".sql") {
			t.Fatalf("migrate status -o json: %+v", m)
		}
	}
	if r := run(t, db, nil, "migrate", "status", "-o", "xml"); r.code != ExitUsage {
		t.Fatalf("migrate status -o xml: %+v", r)
	}
}

func TestRulesTestWithToken(t *testing.T) {
	t.Parallel()
	db := dbtest.NewDatabase(t)
	seedRules(t, db)
	iss, err := oktatest.New()
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	flags := []string{"rules", "test", "--path", "/billing/x", "--issuer", iss.Issuer(), "--audience", "api://default"}
	good := iss.Mint(oktatest.Claims{Subject: "alice@example.com", Groups: []string{"Finance"}})
	if r := run(t, db, nil, append(flags, "--token", good, "--expect", "allow")...); r.code != 0 || !strings.Contains(r.stdout, "alice@example.com") {
		t.Fatalf("valid token: %+v", r)
	}
	bad := iss.Forge(oktatest.ForgeExpired, oktatest.Claims{Subject: "alice@example.com", Groups: []string{"Finance"}})
	r := run(t, db, nil, append(flags, "--token", bad, "--expect", "deny")...)
	if r.code != 0 || !strings.Contains(r.stdout, "invalid_token") || strings.Contains(r.stdout+r.stderr, bad) {
		t.Fatalf("expired token: %+v", r)
	}
	if r := run(t, db, nil, "rules", "test", "--path", "/x", "--token", good); r.code != 2 || !strings.Contains(r.stderr, "--issuer") {
		t.Fatalf("token without issuer: %+v", r)
	}
	// A bad issuer URL is invalid input; an unreachable issuer is a runtime failure.
	if r := run(t, db, nil, "rules", "test", "--path", "/x", "--token", good, "--issuer", "http://example.com/oauth2/default", "--audience", "a"); r.code != 2 || !strings.Contains(r.stderr, "issuer") {
		t.Fatalf("http issuer off loopback: %+v", r)
	}
	if r := run(t, db, nil, "rules", "test", "--path", "/x", "--token", good, "--issuer", "http://127.0.0.1:1/oauth2/default", "--audience", "a"); r.code != 1 || !strings.Contains(r.stderr, "issuer") {
		t.Fatalf("unreachable issuer: %+v", r)
	}
}

// serve refuses bad configuration with exit 2 and a message naming the flag.
func TestServeBadFlags(t *testing.T) {
	t.Parallel()
	db := dbtest.NewDatabase(t)
	base := []string{"serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}
	ok := []string{"--upstream", "http://127.0.0.1:1", "--issuer", "http://127.0.0.1:1/oauth2/default", "--audience", "api://default"}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--issuer", "http://127.0.0.1:1/oauth2/default", "--audience", "a"}, "upstream"},
		{[]string{"--upstream", "ftp://x", "--issuer", "http://127.0.0.1:1/o", "--audience", "a"}, "upstream"},
		{[]string{"--upstream", "http://127.0.0.1:1", "--audience", "a"}, "issuer"},
		{[]string{"--upstream", "http://127.0.0.1:1", "--issuer", "http://example.com/oauth2/default", "--audience", "a"}, "https"},
		{[]string{"--upstream", "http://127.0.0.1:1", "--issuer", "http://127.0.0.1:1/o"}, "audience"},
		{append(append([]string{}, ok...), "--groups-source", "ldap"), "groups-source"},
		{append(append([]string{}, ok...), "--allowed-alg", "none"), "none"},
		{append(append([]string{}, ok...), "--allowed-alg", "HS256"), "HS256"},
		{append(append([]string{}, ok...), "--trusted-proxy", "10.0.0.0/33"), "trusted-proxy"},
		{append(append([]string{}, ok...), "--tls-cert", "/nonexistent.pem"), "tls"},
		{append(append([]string{}, ok...), "--clock-skew", "soon"), "clock-skew"},
		{append(append([]string{}, ok...), "--clock-skew", "-1ns"), "clock-skew"},
		{append(append([]string{}, ok...), "--clock-skew", "6m"), "clock-skew"},
		{append(append([]string{}, ok...), "--quota-on-db-error", "maybe"), "quota-on-db-error"},
		{append(append([]string{}, ok...), "--log-level", "loud"), "log-level"},
	}
	for _, c := range cases {
		r := run(t, db, nil, append(append([]string{}, base...), c.args...)...)
		if r.code != ExitUsage || !strings.Contains(strings.ToLower(r.stderr), strings.ToLower(c.want)) {
			t.Errorf("serve %v: exit %d, stderr %q (want exit 2 naming %q)", c.args, r.code, r.stderr, c.want)
		}
	}
	// Environment variables set serve's flags too.
	r := run(t, db, map[string]string{"OKPROXY_UPSTREAM": "http://127.0.0.1:1", "OKPROXY_ISSUER": "http://127.0.0.1:1/o", "OKPROXY_GROUPS_SOURCE": "ldap", "OKPROXY_AUDIENCE": "a"}, base...)
	if r.code != ExitUsage || !strings.Contains(r.stderr, "groups-source") {
		t.Errorf("serve from environment: %+v", r)
	}
}

// --allow and --deny take a group name whole: Okta names may contain commas,
// and splitting "Developers, EMEA" would grant Developers.
func TestRulesAddGroupNameWithComma(t *testing.T) {
	t.Parallel()
	db := dbtest.NewDatabase(t)
	r := run(t, db, nil, "rules", "add", "comma", "--path", "/comma", "--allow", "Developers, EMEA")
	if r.code != 0 || !strings.Contains(r.stderr, "never split on commas") {
		t.Fatalf("add: %+v", r)
	}
	out := mustRun(t, db, "rules", "show", "comma", "-o", "json").stdout
	if !strings.Contains(out, `"Developers, EMEA"`) {
		t.Fatalf("stored groups: %s", out)
	}
	if r := run(t, db, nil, "rules", "test", "--path", "/comma", "--groups", "Developers", "--expect", "deny"); r.code != 0 {
		t.Fatalf("Developers alone must not be granted: %+v", r)
	}
}

// --actor (and OKPROXY_ACTOR) is recorded and printed: one line of at most
// 200 bytes, no control characters, else exit 2 naming actor and nothing
// written.
func TestActorValidated(t *testing.T) {
	t.Parallel()
	db := dbtest.NewDatabase(t)
	before := state(t, db)
	add := []string{"rules", "add", "r", "--path", "/a", "--allow-authenticated"}
	for _, c := range []struct {
		flag, env string
	}{
		{flag: "alice\nversion 99  root  rules apply"},
		{flag: "alice\x1b[2J"},
		{flag: "alice\rbob"},
		{flag: "alice\tbob"},
		{flag: "alice\u0085bob"},
		{flag: "alice\x7f"},
		{flag: "alice\u202ebob"},
		{flag: "alice\xff"},
		{flag: strings.Repeat("a", 201)},
		{env: "ci\x1b]0;x\x07"},
		{env: strings.Repeat("é", 101)},
	} {
		args := add
		if c.flag != "" {
			args = append(append([]string{}, add...), "--actor", c.flag)
		}
		r := run(t, db, map[string]string{"OKPROXY_ACTOR": c.env}, args...)
		if r.code != ExitUsage || !strings.Contains(r.stderr, "actor") || strings.ContainsAny(r.stderr, "\x1b\r\x07\x7f") {
			t.Errorf("actor %q / env %q: %+v", c.flag, c.env, r)
		}
	}
	if after := state(t, db); after != before {
		t.Fatalf("a refused actor wrote to the database: before %s after %s", before, after)
	}
	long := strings.Repeat("a", 200)
	mustRun(t, db, append(append([]string{}, add...), "--actor", long)...)
	var evs []store.AdminEvent
	json.Unmarshal([]byte(mustRun(t, db, "audit", "admin", "-o", "json").stdout), &evs)
	if len(evs) != 1 || evs[0].Actor != long {
		t.Fatalf("200-byte actor: %+v", evs)
	}
}
