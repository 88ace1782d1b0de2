package cli

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/okproxy/okproxy/internal/dbtest"
	"github.com/okproxy/okproxy/internal/oktaorg"
	"github.com/okproxy/okproxy/internal/store"
)

const cliOktaToken = "s3cr3t-okta-token-value"

func fakeOrg(t *testing.T) *oktaorg.Server {
	t.Helper()
	org, err := oktaorg.LoadFile("../../testdata/okta/small-org.json", nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := oktaorg.NewServer(oktaorg.Config{Org: org, APIToken: cliOktaToken})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func syncArgs(srv *oktaorg.Server, extra ...string) []string {
	return append([]string{"groups", "sync", "--okta-org-url", srv.URL(), "--okta-allow-http"}, extra...)
}

var tokenEnv = map[string]string{"OKTA_API_TOKEN": cliOktaToken}

func TestGroupsCLIEndToEnd(t *testing.T) {
	t.Parallel()
	db := dbtest.NewDatabase(t)
	srv := fakeOrg(t)
	mustRun(t, db, "rules", "add", "dev-api", "--path", "/dev/**", "--allow", "Developers", "--deny", "Contractors")

	r := run(t, db, tokenEnv, syncArgs(srv, "-o", "json")...)
	if r.code != 0 {
		t.Fatalf("sync: %+v", r)
	}
	var sum map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil {
		t.Fatalf("sync -o json: %v\n%s", err, r.stdout)
	}
	for _, k := range []string{"status", "started_at", "finished_at", "duration_ms", "groups_added", "groups_removed", "groups_renamed",
		"memberships_added", "memberships_removed", "users_added", "users_removed", "users_changed", "api_calls", "error"} {
		if _, ok := sum[k]; !ok {
			t.Errorf("summary lacks %q", k)
		}
	}
	if sum["status"] != "ok" || sum["groups_added"] != 6.0 || sum["rule_groups_bound"] != 2.0 {
		t.Fatalf("summary: %v", sum)
	}
	if strings.Contains(r.stdout+r.stderr, cliOktaToken) {
		t.Fatal("the API token was printed")
	}

	var list []map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, db, "groups", "list", "-o", "json").stdout), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 6 || list[0]["name"] != "Auditors" || list[0]["type"] != "OKTA_GROUP" || list[0]["members"] != 2.0 || list[0]["last_synced"] == nil {
		t.Fatalf("groups list -o json: %v", list)
	}
	recs, err := csv.NewReader(strings.NewReader(mustRun(t, db, "groups", "list", "-o", "csv").stdout)).ReadAll()
	if err != nil || len(recs) != 7 || strings.Join(recs[0], ",") != "id,name,type,members,members_total,last_synced" ||
		recs[1][0] != list[0]["id"] || recs[1][1] != "Auditors" || recs[1][3] != "2" || !strings.HasSuffix(recs[1][5], "Z") {
		t.Fatalf("groups list -o csv: %v %v", recs, err)
	}
	table := mustRun(t, db, "groups", "list").stdout
	if !strings.Contains(table, "Developers") || !strings.Contains(table, "2 (+1 inactive)") || !strings.Contains(table, "last sync: ok") {
		t.Fatalf("groups list:\n%s", table)
	}

	show := mustRun(t, db, "groups", "show", "developers").stdout
	for _, want := range []string{
		`alice@example.com`, `Developers ← rule "dev-title": user.title == "Developer"`,
		`dave@example.com`, `SUSPENDED (grants nothing)`,
		`dev-api (allow, enabled, bound to its id)`, `dev-title (ACTIVE)`,
	} {
		if !strings.Contains(show, want) {
			t.Errorf("groups show lacks %q:\n%s", want, show)
		}
	}
	user := mustRun(t, db, "users", "show", "BOB@example.com").stdout
	for _, want := range []string{`Status:       ACTIVE`, `Finance ← rule "finance-dept": user.department == "Finance"`, `Auditors (assigned directly in Okta)`} {
		if !strings.Contains(user, want) {
			t.Errorf("users show lacks %q:\n%s", want, user)
		}
	}
	if out := mustRun(t, db, "users", "show", "00uErin0000000000005").stdout; !strings.Contains(out, "DEPROVISIONED — okproxy grants this user nothing") {
		t.Fatalf("users show of a deprovisioned user:\n%s", out)
	}
	var uv map[string]any
	json.Unmarshal([]byte(mustRun(t, db, "users", "show", "alice@example.com", "-o", "json").stdout), &uv)
	if uv["status"] != "ACTIVE" || uv["active"] != true || len(uv["groups"].([]any)) != 2 {
		t.Fatalf("users show -o json: %v", uv)
	}

	// Rename in Okta: the rule follows, and shows the new name.
	srv.Org().RenameGroup("00gDevelopers0000002", "Engineering Devs")
	if r := run(t, db, tokenEnv, syncArgs(srv)...); r.code != 0 || !strings.Contains(r.stdout, "1 renamed") {
		t.Fatalf("sync after rename:\n%s", r.stdout)
	}
	if out := mustRun(t, db, "rules", "show", "dev-api").stdout; !strings.Contains(out, "Engineering Devs") {
		t.Fatalf("rule after rename:\n%s", out)
	}

	// Dry run prints the diff and writes nothing.
	srv.Org().RemoveMember("00gAuditors000000004", "00uCarol000000000003")
	dry := run(t, db, tokenEnv, syncArgs(srv, "--dry-run")...).stdout
	if !strings.Contains(dry, "dry run (nothing written)") || !strings.Contains(dry, "- Auditors ∌ carol@example.com") {
		t.Fatalf("dry run:\n%s", dry)
	}
	if show := mustRun(t, db, "groups", "show", "Auditors").stdout; !strings.Contains(show, "carol@example.com") {
		t.Fatal("dry run removed a member")
	}

	// The mass-removal guard: exit 3, nothing written; --force proceeds.
	r = run(t, db, tokenEnv, syncArgs(srv, "--group-filter", `id eq "00gNoSuchGroup0000000"`)...)
	if r.code != 3 || !strings.Contains(r.stderr, "--force") || !strings.Contains(r.stdout, "sync aborted") {
		t.Fatalf("guard: %+v", r)
	}
	r = run(t, db, tokenEnv, syncArgs(srv, "--group-filter", `type eq "BUILT_IN"`, "--force", "-o", "json")...)
	if r.code != 0 || !strings.Contains(r.stdout, `"groups_removed": 5`) {
		t.Fatalf("--force: %+v", r)
	}
}

func TestGroupsSyncRunningElsewhereExitsZero(t *testing.T) {
	t.Parallel()
	db := dbtest.NewDatabase(t)
	srv := fakeOrg(t)
	st, err := store.Open(context.Background(), store.Config{URL: db})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	unlock, ok, err := st.TryLockSync(context.Background())
	if err != nil || !ok {
		t.Fatalf("lock: %v %v", ok, err)
	}
	defer unlock()
	r := run(t, db, tokenEnv, syncArgs(srv)...)
	if r.code != 0 || !strings.Contains(r.stderr, "another sync is running") {
		t.Fatalf("second sync: %+v", r)
	}
}

func TestGroupsSyncFailureExitsOne(t *testing.T) {
	t.Parallel()
	db := dbtest.NewDatabase(t)
	srv := fakeOrg(t)
	r := run(t, db, map[string]string{"OKTA_API_TOKEN": "wrong-token-value"}, syncArgs(srv, "-o", "json")...)
	if r.code != 1 || !strings.Contains(r.stderr, "nothing was written") || !strings.Contains(r.stdout, `"status": "failed"`) {
		t.Fatalf("bad token: %+v", r)
	}
	if strings.Contains(r.stdout+r.stderr, "wrong-token-value") {
		t.Fatal("the API token was printed")
	}
	if out := mustRun(t, db, "groups", "list").stdout; !strings.Contains(out, "last sync: failed") || !strings.Contains(out, "no sync has ever succeeded") {
		t.Fatalf("groups list after a failure:\n%s", out)
	}
}

// Bad input: exit 2, a message naming the flag, nothing synced.
func TestGroupsCLIBadInput(t *testing.T) {
	t.Parallel()
	db := dbtest.NewDatabase(t)
	srv := fakeOrg(t)
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	os.WriteFile(keyFile, []byte("not a key"), 0o600)
	cases := []struct {
		env   map[string]string
		args  []string
		field string
	}{
		{tokenEnv, []string{"groups", "sync"}, "okta-org-url"},
		{tokenEnv, []string{"groups", "sync", "--okta-org-url", srv.URL()}, "okta-org-url"},
		{tokenEnv, []string{"groups", "sync", "--okta-org-url", "http://example.okta.com", "--okta-allow-http"}, "okta-allow-http"},
		{nil, syncArgs(srv), "OKTA_API_TOKEN"},
		{nil, syncArgs(srv, "--okta-client-id", "0oa1"), "okta-private-key-file"},
		{nil, syncArgs(srv, "--okta-private-key-file", keyFile), "okta-client-id"},
		{nil, syncArgs(srv, "--okta-client-id", "0oa1", "--okta-private-key-file", keyFile), "okta-private-key-file"},
		{nil, syncArgs(srv, "--okta-client-id", "0oa1", "--okta-private-key-file", "/nonexistent/key.pem"), "okta-private-key-file"},
		{tokenEnv, syncArgs(srv, "--max-removal", "1.5"), "max-removal"},
		{tokenEnv, syncArgs(srv, "--max-removal", "lots"), "max-removal"},
		// NaN passes both "< 0" and "> 1" and would switch the guard off.
		{tokenEnv, syncArgs(srv, "--max-removal", "NaN"), "max-removal"},
		{tokenEnv, syncArgs(srv, "--max-removal", "-Inf"), "max-removal"},
		{map[string]string{"OKTA_API_TOKEN": tokenEnv["OKTA_API_TOKEN"], "OKPROXY_MAX_REMOVAL": "nan"}, syncArgs(srv), "max-removal"},
		{tokenEnv, syncArgs(srv, "-o", "yaml"), "output"},
		{tokenEnv, syncArgs(srv, "--group-filter", `type eq "OKTA_GROUP"`, "--group-search", `profile.name sw "a"`), "group-filter"},
		{tokenEnv, syncArgs(srv, "--group-filter", `profile.name eq "x"`), "group-filter"},
		{tokenEnv, syncArgs(srv, "extra"), "no arguments"},
		{nil, []string{"groups", "list", "-o", "xml"}, "output"},
		{nil, []string{"groups", "show"}, "NAME|ID"},
		{nil, []string{"groups", "show", "NoSuchGroup"}, "unknown group"},
		{nil, []string{"users", "show", "nobody@example.com"}, "unknown user"},
		{nil, []string{"users", "show", "a", "b"}, "LOGIN|ID"},
	}
	for _, c := range cases {
		r := run(t, db, c.env, c.args...)
		if r.code != 2 || !strings.Contains(r.stderr, c.field) {
			t.Errorf("okproxy %s: exit %d, stderr %q (want 2 naming %q)", strings.Join(c.args, " "), r.code, r.stderr, c.field)
		}
	}
	st, err := store.Open(context.Background(), store.Config{URL: db})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var groups int
	st.Pool().QueryRow(context.Background(), `SELECT count(*) FROM okta_groups`).Scan(&groups)
	if groups != 0 {
		t.Fatal("bad input synced something")
	}
}

// audit admin --object takes the types its help names: sync finds the
// groups.sync events (stored against directory/okta); an unknown type is
// refused rather than silently matching nothing.
func TestAuditAdminObjectSync(t *testing.T) {
	t.Parallel()
	db := dbtest.NewDatabase(t)
	srv := fakeOrg(t)
	mustRun(t, db, "rules", "add", "dev-api", "--path", "/dev/**", "--allow", "Developers")
	if r := run(t, db, tokenEnv, syncArgs(srv, "--actor", "cron")...); r.code != 0 {
		t.Fatalf("sync: %+v", r)
	}
	for _, object := range []string{"sync", "sync/okta", "directory"} {
		var evs []store.AdminEvent
		if err := json.Unmarshal([]byte(mustRun(t, db, "audit", "admin", "--object", object, "-o", "json").stdout), &evs); err != nil {
			t.Fatal(err)
		}
		if len(evs) != 1 || evs[0].Action != "groups.sync" || evs[0].Actor != "cron" {
			t.Errorf("--object %s: %+v", object, evs)
		}
	}
	if r := run(t, db, nil, "audit", "admin", "--object", "rules"); r.code != ExitUsage || !strings.Contains(r.stderr, "--object") {
		t.Fatalf("--object rules: %+v", r)
	}
}

// An org URL with credentials is refused (exit 2) without printing them,
// whatever else is wrong with it and wherever it came from.
func TestGroupsSyncOrgURLSecretNeverPrinted(t *testing.T) {
	t.Parallel()
	db := dbtest.NewDatabase(t)
	for _, u := range []string{
		"ftp://user:SECRETPW@host",
		"https://user:SECRETPW@example.okta.com",
		"http://user:SECRETPW@example.okta.com",
		"https://user:SECRETPW@example.okta.com:badport",
		"https://user:SECRETPW@example-admin.okta.com",
		"https://SECRETPW@example.okta.com/path",
		"user:SECRETPW@example.okta.com",
		"https://us/er:SECRETPW@example.okta.com",
		"https://user:SECRET\"PW@example.okta.com",
		"https://example.okta.com?token=SECRETPW",
		"https://u:SECRETPW@example.okta.com/x?token=SECRETQ",
		"https://example.okta.com/#SECRETPW",
	} {
		for _, viaEnv := range []bool{false, true} {
			env := map[string]string{"OKTA_API_TOKEN": cliOktaToken}
			args := []string{"groups", "sync", "-o", "json"}
			if viaEnv {
				env["OKTA_ORG_URL"] = u
			} else {
				args = append(args, "--okta-org-url", u)
			}
			r := run(t, db, env, args...)
			if r.code != ExitUsage || !strings.Contains(r.stderr, "okta-org-url") {
				t.Errorf("%s (env %v): %+v", u, viaEnv, r)
			}
			if out := r.stdout + r.stderr; strings.Contains(out, "SECRET") || strings.Contains(out, cliOktaToken) {
				t.Errorf("%s (env %v): the secret was printed: %+v", u, viaEnv, r)
			}
		}
	}
}

// groups sync -o json prints one summary object also when it fails before
// the sync starts (docs/sync.md), with the exit code of the failure.
func TestGroupsSyncJSONFailureBeforeStart(t *testing.T) {
	t.Parallel()
	db := dbtest.NewDatabase(t)
	srv := fakeOrg(t)
	cases := []struct {
		db   string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"postgres://u:hunter2@127.0.0.1:1/db?connect_timeout=2", tokenEnv, syncArgs(srv, "-o", "json"), ExitFailure, "***"},
		{"", tokenEnv, syncArgs(srv, "-o", "json"), ExitUsage, "DATABASE_URL"},
		{db, nil, syncArgs(srv, "-o", "json"), ExitUsage, "OKTA_API_TOKEN"},
		{db, tokenEnv, syncArgs(srv, "-o", "json", "--max-removal", "2"), ExitUsage, "max-removal"},
		{db, tokenEnv, []string{"groups", "sync", "-o", "json", "--okta-org-url", "ftp://user:SECRETPW@host"}, ExitUsage, "okta-org-url"},
	}
	for _, c := range cases {
		r := run(t, c.db, c.env, c.args...)
		var sum map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil {
			t.Errorf("%v: stdout is not one JSON object (%v): %+v", c.args, err, r)
			continue
		}
		msg, _ := sum["error"].(string)
		if r.code != c.code || sum["status"] != "failed" || !strings.Contains(msg, c.want) || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: exit %d (want %d), summary %v, stderr %q (want both to say %q)", c.args, r.code, c.code, sum, r.stderr, c.want)
		}
		if strings.Contains(r.stdout+r.stderr, "hunter2") || strings.Contains(r.stdout+r.stderr, "SECRETPW") {
			t.Errorf("%v: a secret was printed: %+v", c.args, r)
		}
	}
}
