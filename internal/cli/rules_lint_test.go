package cli

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/okproxy/okproxy/internal/dbtest"
	"github.com/okproxy/okproxy/internal/lint"
)

// lintFixture has one of each problem rules lint looks for.
const lintFixture = `apiVersion: okproxy/v1
kind: Policy
rules:
  - {name: api, path: /api/**, allow: [Developers]}
  - {name: billing-read, path: /billing/**, methods: [GET], allow: [Finance, Auditors]}
  - {name: billing-read-copy, description: same again, path: /billing/**, methods: [GET], allow: [Auditors, Finance]}
  - {name: billing-status, path: /billing/status, methods: [GET], public: true}
  - {name: contractor-invoices, path: /billing/invoices, methods: [GET], allow: [Contractors]}
  - {name: no-contractors, path: /billing/**, deny: [Contractors]}
  - {name: ops, path: /ops/**, allow: [Ops]}
  - {name: typo, path: /typo, allow: [Finanse]}
  - {name: watch, path: /export/**, allow: [Finance], mode: report}
quotas:
  - {name: dev-tier, group: Developers, limit: 100, window: 1h, path: /api/**}
  - {name: finance-api, group: Finance, limit: 100, window: 1h, path: /api/**}
`

// Lint finds each kind of problem on a fixture and nothing on a clean policy.
func TestRulesLint(t *testing.T) {
	t.Parallel()
	db := dbtest.NewDatabase(t)
	mustRun(t, db, "rules", "add", "early", "--path", "/early", "--allow", "Finance") // before any sync: stored by name
	syncDirectory(t, db, financeID+"=Finance", auditorsID+"=Auditors", contractorsID+"=Contractors",
		"00gdevelopers00000000=Developers", "00gops000000000000000=Ops", "00gtemp00000000000000=Temp")
	mustRun(t, db, "rules", "add", "temp-access", "--path", "/temp", "--allow", "Temp")
	mustRun(t, db, "rules", "apply", "-f", writeFile(t, "lint.yaml", lintFixture))
	sql(t, db,
		`DELETE FROM okta_groups WHERE id = '00gtemp00000000000000'`,      // deleted in Okta
		`UPDATE okta_groups SET name = 'Platform Ops' WHERE name = 'Ops'`, // renamed in Okta
		`UPDATE rules SET updated_at = now() - interval '20 days' WHERE name = 'watch'`)

	r := run(t, db, nil, "rules", "lint")
	if r.code != ExitCheck {
		t.Fatalf("lint exit %d, want 3:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		`warning [unknown-group] group "Finanse" is not in the synced Okta directory (used by rule "typo")`,
		`warning [deleted-group] group "Temp" (00gtemp00000000000000) is no longer in the synced Okta directory`,
		`warning [never-grants] rule "contractor-invoices" can never grant anyone: every group it allows ("Contractors") is denied by rule "no-contractors"`,
		`warning [never-grants] rule "temp-access" can never grant anyone`,
		`warning [never-grants] rule "typo" can never grant anyone`,
		`warning [duplicate] rules "billing-read", "billing-read-copy" are identical apart from their names`,
		`warning [public-overlaps-deny] public rule "billing-status" and deny rule "no-contractors"`,
		`warning [stale-report-only] rule "watch" has been report-only for 20d`,
		`warning [quota-never-applies] quota "finance-api" limits group "Finance" on /api/**`,
		`info [renamed-group] group 00gops000000000000000 was "Ops" when the rules were written and is now "Platform Ops"`,
		`info [unbound-group] group "Finance" is named by name only, although the synced directory has it (` + financeID + `) (used by rule "early")`,
		"    fix: ",
		"11 finding(s): 9 warning(s), 2 info (11 rules, 2 quotas checked)",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("lint output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(r.stdout)
	}
	// The fix the unbound-group finding suggests works: export | apply binds it.
	export := mustRun(t, db, "rules", "export").stdout
	if r := mustRun(t, db, "rules", "apply", "-f", writeFile(t, "export.yaml", export)); !strings.Contains(r.stdout, "~ rule early\n    allow: [Finance] → [Finance ("+financeID+")]") {
		t.Fatalf("re-apply of the export did not bind the group:\n%s", r.stdout)
	}
	if r := run(t, db, nil, "rules", "lint"); strings.Contains(r.stdout, "unbound-group") {
		t.Fatalf("still unbound:\n%s", r.stdout)
	}

	var fs []lint.Finding
	out := run(t, db, nil, "rules", "lint", "-o", "json", "--report-max-age", "30d")
	if err := json.Unmarshal([]byte(out.stdout), &fs); err != nil || out.code != ExitCheck {
		t.Fatalf("json: %v %+v", err, out)
	}
	if slices.ContainsFunc(fs, func(f lint.Finding) bool { return f.Check == lint.StaleReportOnly }) {
		t.Fatal("--report-max-age 30d still flags a 20-day-old report-only rule")
	}

	// The clean example policy, on a fresh database with its groups synced.
	clean := dbtest.NewDatabase(t)
	syncDirectory(t, clean, financeID+"=Finance", auditorsID+"=Auditors", contractorsID+"=Contractors", "00gdevelopers00000000=Developers")
	mustRun(t, clean, "rules", "apply", "-f", testdataPolicy("policy.yaml"))
	r = run(t, clean, nil, "rules", "lint")
	if r.code != 0 || !strings.Contains(r.stdout, "no findings (7 rules, 1 quotas checked)") {
		t.Fatalf("clean policy: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := run(t, clean, nil, "rules", "lint", "-o", "json"); r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("clean json: %+v", r)
	}
	if r := run(t, clean, nil, "rules", "lint", "--report-max-age", "soon"); r.code != ExitUsage {
		t.Fatalf("bad --report-max-age: %+v", r)
	}

	// Never synced: a name nobody has checked (here a typo) is reported, not
	// passed as clean.
	unsynced := dbtest.NewDatabase(t)
	mustRun(t, unsynced, "rules", "add", "typo", "--path", "/b", "--allow", "Finanse")
	r = run(t, unsynced, nil, "rules", "lint")
	if r.code != ExitCheck || !strings.Contains(r.stdout, `[unknown-group] group "Finanse" is not known: the Okta directory has never been synced`) ||
		!strings.Contains(r.stderr, "never been synced") {
		t.Fatalf("unsynced directory: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
