package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/okproxy/okproxy/internal/dbtest"
)

const failingCases = `apiVersion: okproxy/v1
kind: PolicyTest
cases:
  - name: finance reads billing
    caller: {groups: [Finance]}
    path: /billing/x
    expect: allow
  - name: wrongly expects contractors in
    caller: {groups: [Finance, Contractors]}
    path: /billing/x
    expect: allow
  - name: wrong reason
    path: /billing/x
    expect: deny
    reason: forbidden
`

// rules test --file passes and fails correctly, with --policy (no database
// at all) and against the stored policy.
func TestRulesTestFile(t *testing.T) {
	t.Parallel()
	cases, pol := testdataPolicy("cases.yaml"), testdataPolicy("policy.yaml")

	// --policy: no database configured at all.
	r := run(t, "", nil, "rules", "test", "--file", cases, "--policy", pol)
	if r.code != 0 || r.stdout != "12 cases: 12 passed, 0 failed (file "+pol+")\n" {
		t.Fatalf("cases against the policy file: %+v", r)
	}
	bad := writeFile(t, "cases.yaml", failingCases)
	r = run(t, "", nil, "rules", "test", "--file", bad, "--policy", pol)
	if r.code != ExitCheck {
		t.Fatalf("failing cases: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		`FAIL ` + bad + `:8 case "wrongly expects contractors in": expected allow, got deny (forbidden)`,
		"request: GET /billing/x as (caller) groups=[Finance, Contractors]",
		"denied by rule no-contractors: caller is in deny group Contractors",
		`FAIL ` + bad + `:12 case "wrong reason": expected deny (forbidden), got deny (unauthorized)`,
		"3 cases: 1 passed, 2 failed",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "finance reads billing") {
		t.Errorf("passing case printed:\n%s", r.stdout)
	}
	var rep caseReport
	r = run(t, "", nil, "rules", "test", "--file", bad, "--policy", pol, "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != ExitCheck || rep.Passed != 1 || rep.Failed != 2 || rep.Cases[1].Denied != "no-contractors" {
		t.Fatalf("json: %v %+v", err, rep)
	}

	// Against the database: the same cases pass once the policy is applied,
	// including a user looked up in the synced directory.
	db := dbtest.NewDatabase(t)
	syncDirectory(t, db, financeID+"=Finance", contractorsID+"=Contractors")
	sql(t, db,
		`INSERT INTO okta_users (id, login, email, status) VALUES ('00ualice', 'alice@example.com', 'alice@example.com', 'ACTIVE'),
			('00ubob', 'bob@example.com', 'bob@example.com', 'SUSPENDED')`,
		`INSERT INTO okta_memberships (group_id, user_id) VALUES ('`+financeID+`', '00ualice'), ('`+financeID+`', '00ubob')`)
	mustRun(t, db, "rules", "apply", "-f", pol)
	if r := run(t, db, nil, "rules", "test", "--file", cases); r.code != 0 || !strings.Contains(r.stdout, "12 passed, 0 failed (stored policy version 1)") {
		t.Fatalf("cases against the database: %+v", r)
	}
	users := writeFile(t, "users.yaml", `cases:
  - name: alice is in Finance
    caller: {user: alice@example.com}
    path: /billing/x
    expect: allow
  - name: bob is suspended
    caller: {user: bob@example.com}
    path: /billing/x
    expect: deny
    reason: user_inactive
`)
	if r := run(t, db, nil, "rules", "test", "--file", users); r.code != 0 {
		t.Fatalf("user cases: %+v", r)
	}
	mustRun(t, db, "rules", "disable", "no-contractors")
	if r := run(t, db, nil, "rules", "test", "--file", cases); r.code != ExitCheck || !strings.Contains(r.stdout, "contractors are denied even in finance") {
		t.Fatalf("a disabled deny must fail its case: %+v", r)
	}

	// Bad input: exit 2 with the line, before anything runs.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--file", users, "--policy", pol}, "users.yaml:2: case \"alice is in Finance\": caller.user alone needs the synced directory"},
		{[]string{"--file", writeFile(t, "ghost.yaml", "cases:\n  - {caller: {user: ghost}, path: /a, expect: deny}\n")}, `ghost.yaml:2: case #1: caller.user "ghost" is not in the synced directory`},
		{[]string{"--file", writeFile(t, "broken.yaml", "cases:\n  - {path: a, expect: allow}\n")}, `broken.yaml:2: case #1: path: "a" must start with /`},
		{[]string{"--file", cases, "--path", "/x"}, "path: --path describes one request"},
		{[]string{"--policy", pol, "--path", "/x"}, "--policy only works with --file"},
		{[]string{"--file", cases, "--policy", testdataPolicy("bad.yaml")}, "bad.yaml:35"},
	} {
		r := run(t, db, nil, append([]string{"rules", "test"}, c.args...)...)
		if r.code != ExitUsage || !strings.Contains(r.stderr, c.want) {
			t.Errorf("rules test %v: exit %d, stderr %q, want 2 and %q", c.args, r.code, r.stderr, c.want)
		}
	}
	// The single-request form still works as before.
	if r := run(t, db, nil, "rules", "test", "--path", "/healthz", "--expect", "allow"); r.code != 0 {
		t.Fatalf("single request: %+v", r)
	}
}

// Completion scripts generate, and names come from the database.
func TestCompletion(t *testing.T) {
	t.Parallel()
	db := dbtest.NewDatabase(t)
	syncDirectory(t, db, financeID+"=Finance", auditorsID+"=Auditors")
	mustRun(t, db, "rules", "add", "billing-read", "--path", "/b", "--allow", "Finance")
	mustRun(t, db, "rules", "add", "beta", "--path", "/beta", "--allow", "Unsynced Team")
	mustRun(t, db, "rules", "add", "health", "--path", "/h", "--public")
	mustRun(t, db, "quotas", "add", "free", "--group", "Finance", "--limit", "10", "--window", "1m")
	mustRun(t, db, "quotas", "add", "pro", "--group", "Auditors", "--limit", "100", "--window", "1m")
	for shell, want := range map[string]string{"bash": "__start_okproxy", "zsh": "#compdef okproxy", "fish": "complete -c okproxy"} {
		if r := mustRun(t, "", "completion", shell); !strings.Contains(r.stdout, want) {
			t.Errorf("%s script lacks %q", shell, want)
		}
	}
	if r := run(t, "", nil, "completion", "tcsh"); r.code != ExitUsage {
		t.Errorf("completion tcsh: %+v", r)
	}
	complete := func(args ...string) []string {
		r := mustRun(t, db, append([]string{"__complete"}, args...)...)
		var out []string
		for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
			if !strings.HasPrefix(l, ":") {
				out = append(out, strings.SplitN(l, "\t", 2)[0])
			}
		}
		return out
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"rules", "show", "b"}, "beta,billing-read"},
		{[]string{"rules", "rm", ""}, "beta,billing-read,health"},
		{[]string{"rules", "history", "he"}, "health"},
		{[]string{"rules", "show", "health", ""}, ""},
		{[]string{"rules", "add", "x", "--allow", "f"}, "Finance"},
		{[]string{"rules", "add", "x", "--deny", ""}, "Auditors,Finance,Unsynced Team"},
		{[]string{"rules", "test", "--groups", "Finance,a"}, "Finance,Auditors"},
		{[]string{"rules", "add", "x", "--mode", ""}, "enforce,report"},
		{[]string{"quotas", "add", "x", "--group", "a"}, "Auditors"},
		{[]string{"quotas", "add", "x", "--per", ""}, "user,group"},
		{[]string{"quotas", "show", "p"}, "pro"},
		{[]string{"quotas", "rm", ""}, "free,pro"},
		{[]string{"quotas", "usage", "f"}, "free"},
	} {
		if got := strings.Join(complete(c.args...), ","); got != c.want {
			t.Errorf("complete %v = %q, want %q", c.args, got, c.want)
		}
	}
	// No database: no names, and no error either.
	if r := run(t, "", nil, "__complete", "rules", "show", ""); r.code != 0 || strings.TrimSpace(r.stdout) != ":4" {
		t.Errorf("completion without a database: %+v", r)
	}
}

// Every rules and completion command's --help has an example (the other
// commands belong to other issues).
func TestEveryCommandHasExample(t *testing.T) {
	t.Parallel()
	root := (&App{}).rootCommand()
	var missing []string
	stack := []*cobra.Command{}
	for _, c := range root.Commands() {
		if c.Name() == "rules" || c.Name() == "completion" {
			stack = append(stack, c)
		}
	}
	for len(stack) > 0 {
		cmd := stack[len(stack)-1]
		stack = append(stack[:len(stack)-1], cmd.Commands()...)
		if !cmd.HasExample() && !cmd.Hidden && cmd.Runnable() {
			missing = append(missing, cmd.CommandPath())
		}
	}
	if len(missing) > 0 {
		t.Fatalf("commands without an Example: %v", missing)
	}
}

// A case file must test something, name each case once, and read expect as
// the command line does (allow/deny in any case).
func TestRulesTestFileStrictness(t *testing.T) {
	t.Parallel()
	pol := testdataPolicy("policy.yaml")
	head := "apiVersion: okproxy/v1\nkind: PolicyTest\n"
	for _, c := range []struct{ file, want string }{
		{head + "cases: []\n", "3: cases: has no cases"},
		{head + "cases:\n", "3: cases: has no cases"},
		{"cases: ~\n", "1: cases: has no cases"},
		{head + `cases:
  - {name: health, path: /healthz, expect: allow}
  - {name: billing, path: /billing/x, expect: deny}
  - {name: health, path: /healthz, method: HEAD, expect: allow}
`, `6: case "health": name: "health" is also the name of the case on line 4`},
		// An empty caller value would make the caller anonymous or scope-less.
		{head + "cases:\n  - {name: a, path: /billing/x, expect: deny, caller: {user: \"\"}}\n", "caller.user: is empty"},
		{head + "cases:\n  - {name: a, path: /billing/x, expect: deny, caller: {groups: [\"\"]}}\n", "caller.groups: holds an empty group name"},
		{head + "cases:\n  - {name: a, path: /billing/x, expect: deny, caller: {groups: []}}\n", "caller.groups: holds an empty group name, or none"},
		{head + "cases:\n  - {name: a, path: /me, expect: deny, caller: {scopes: [\" \"]}}\n", "caller.scopes: holds an empty scope"},
	} {
		f := writeFile(t, "cases.yaml", c.file)
		r := run(t, "", nil, "rules", "test", "--file", f, "--policy", pol)
		if r.code != ExitUsage || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%q: exit %d, stderr %q (want 2 and %q)", c.file, r.code, r.stderr, c.want)
		}
	}
	upper := writeFile(t, "cases.yaml", head+"cases:\n  - {name: health, path: /healthz, expect: ALLOW}\n  - {path: /billing/x, expect: Deny}\n")
	if r := run(t, "", nil, "rules", "test", "--file", upper, "--policy", pol); r.code != 0 {
		t.Fatalf("expect in upper case in a file: %+v", r)
	}
	db := dbtest.NewDatabase(t)
	mustRun(t, db, "rules", "apply", "-f", pol)
	for expect, code := range map[string]int{"ALLOW": 0, "Allow": 0, " allow ": 0, "DENY": ExitCheck, "maybe": ExitUsage} {
		if r := run(t, db, nil, "rules", "test", "--path", "/healthz", "--expect", expect); r.code != code {
			t.Errorf("--expect %q: exit %d, want %d: %+v", expect, r.code, code, r)
		}
	}
}
