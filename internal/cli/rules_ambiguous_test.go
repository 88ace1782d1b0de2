package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/okproxy/okproxy/internal/oktaorg"
	"github.com/okproxy/okproxy/internal/oktatest"
)

const (
	carolID          = "00uCarol000000000003"
	orgSalesID       = "00gSales000000000007"
	orgContractorsID = "00gContractors000005"
)

// ambiguousSales stores rules and a quota naming "Sales" while the synced
// directory has no such group, then makes Okta hold two groups of that name
// ignoring case: a real "Sales" (carol) and Contractors renamed "SALES"
// (frank). The sync must leave the references unbound.
func ambiguousSales(t *testing.T, e *dirEnv) {
	t.Helper()
	mustRun(t, e.db, "rules", "add", "sales", "--path", "/sales/**", "--allow", "Sales")
	mustRun(t, e.db, "rules", "add", "open", "--path", "/open/**", "--allow-authenticated")
	mustRun(t, e.db, "rules", "add", "no-sales", "--path", "/open/**", "--deny", "Sales")
	mustRun(t, e.db, "rules", "add", "metered", "--path", "/q/**", "--allow-authenticated")
	mustRun(t, e.db, "quotas", "add", "sales-tier", "--group", "Sales", "--limit", "1", "--window", "1h", "--path", "/q/**")
	org := e.org.Org()
	if _, err := org.AddGroup(oktaorg.Group{ID: orgSalesID, Profile: oktaorg.GroupProfile{Name: "Sales"}}); err != nil {
		t.Fatal(err)
	}
	if err := org.AddMember(orgSalesID, carolID); err != nil {
		t.Fatal(err)
	}
	if err := org.RenameGroup(orgContractorsID, "SALES"); err != nil {
		t.Fatal(err)
	}
	e.sync()
	if out := mustRun(t, e.db, "rules", "show", "sales", "-o", "json").stdout; strings.Contains(out, `"id"`) {
		t.Fatalf("the sync bound an ambiguous name:\n%s", out)
	}
}

// An allow by a name two synced groups share grants nobody, in serve (both
// groups sources) and in `rules test`; a deny by it refuses the members of
// both; a quota by it limits nobody.
func TestServeAmbiguousGroupName(t *testing.T) {
	t.Parallel()
	for _, source := range []string{"directory", "token"} {
		t.Run(source, func(t *testing.T) {
			t.Parallel()
			e := newDirEnv(t, source)
			ambiguousSales(t, e)
			carol := oktatest.Claims{Subject: "carol@example.com", UserID: carolID, Groups: []string{"Sales"}}
			frank := oktatest.Claims{Subject: "frank@example.com", UserID: frankID, Groups: []string{"SALES"}}
			bob := oktatest.Claims{Subject: "bob@example.com", UserID: bobID, Groups: []string{"Finance"}}
			// Wait for serve to load the synced directory (carol is in
			// Sales only since the sync) and the rules marked by it.
			e.waitStatus("/open/x", carol, 403)
			// The renamed group's member is refused, and so is the real
			// group's: which of them the rule meant is unknown.
			e.waitStatus("/sales/x", frank, 403)
			if got := e.status("/sales/x", carol); got != 403 {
				t.Errorf("real group's member on an ambiguous allow: %d, want 403", got)
			}
			// The deny refuses members of both; others pass.
			e.waitStatus("/open/x", bob, 200)
			for _, c := range []oktatest.Claims{carol, frank} {
				if got := e.status("/open/x", c); got != 403 {
					t.Errorf("%s on an ambiguous deny: %d, want 403", c.Subject, got)
				}
			}
			// The quota of limit 1 applies to neither group.
			for i := range 3 {
				if got := e.status("/q/x", frank); got != 200 {
					t.Fatalf("request %d on an ambiguous quota: %d, want 200", i+1, got)
				}
			}
		})
	}
}

// `rules test` evaluates as serve does, says why, lint fails with the
// candidate ids and a fix, and that fix works.
func TestRulesAmbiguousGroupName(t *testing.T) {
	t.Parallel()
	e := newDirEnv(t, "directory")
	ambiguousSales(t, e)

	for _, who := range [][]string{{"--groups", orgContractorsID}, {"--groups", orgSalesID}, {"--user", "frank@example.com"}, {"--user", "carol@example.com"}} {
		r := run(t, e.db, nil, append([]string{"rules", "test", "--path", "/sales/x", "--expect", "deny"}, who...)...)
		if r.code != 0 || !strings.Contains(r.stdout, `rule sales allows group "Sales" by a name that 2 synced groups share (`+orgContractorsID+", "+orgSalesID+")") ||
			!strings.Contains(r.stdout, "grants nobody until the rule names the group by id") {
			t.Errorf("rules test %v: exit %d\n%s%s", who, r.code, r.stdout, r.stderr)
		}
	}
	var res map[string]any
	out := mustRun(t, e.db, "rules", "test", "--path", "/sales/x", "--groups", orgContractorsID, "-o", "json").stdout
	if err := json.Unmarshal([]byte(out), &res); err != nil || res["decision"] != "deny" || res["ambiguous_rule"] != "sales" || res["ambiguous_group"] != "Sales" {
		t.Errorf("rules test -o json: %v\n%s", err, out)
	}
	for _, who := range []string{"carol@example.com", "frank@example.com"} {
		r := mustRun(t, e.db, "rules", "test", "--path", "/open/x", "--user", who, "--expect", "deny")
		if !strings.Contains(r.stdout, "denied by rule no-sales: caller is in deny group Sales") {
			t.Errorf("deny for %s:\n%s", who, r.stdout)
		}
	}
	mustRun(t, e.db, "rules", "test", "--path", "/open/x", "--user", "bob@example.com", "--expect", "allow")

	r := run(t, e.db, nil, "rules", "lint")
	if r.code != 3 || !strings.Contains(r.stdout, "ambiguous-group") || !strings.Contains(r.stdout, orgContractorsID+", "+orgSalesID) ||
		!strings.Contains(r.stdout, "okproxy rules export > policy.yaml") {
		t.Fatalf("rules lint: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Apply refuses the name as it stands (so export | apply alone fails);
	// lint's fix — write the id in the exported file — works.
	dir := t.TempDir()
	file := filepath.Join(dir, "policy.yaml")
	exported := mustRun(t, e.db, "rules", "export").stdout
	if err := os.WriteFile(file, []byte(exported), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := run(t, e.db, nil, "rules", "apply", "-f", file); r.code != 2 || !strings.Contains(r.stderr, "matches 2 synced groups") {
		t.Fatalf("apply of the unedited export: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if strings.Count(exported, "name: Sales\n") != 3 {
		t.Fatalf("export names the group differently than this test edits it:\n%s", exported)
	}
	edited := strings.ReplaceAll(exported, "name: Sales\n", "id: "+orgSalesID+"\n")
	if err := os.WriteFile(file, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, e.db, "rules", "apply", "-f", file)
	mustRun(t, e.db, "rules", "test", "--path", "/sales/x", "--user", "carol@example.com", "--expect", "allow")
	mustRun(t, e.db, "rules", "test", "--path", "/sales/x", "--user", "frank@example.com", "--expect", "deny")
	mustRun(t, e.db, "rules", "test", "--path", "/open/x", "--user", "frank@example.com", "--expect", "allow")
	if r := run(t, e.db, nil, "rules", "lint"); strings.Contains(r.stdout, "ambiguous-group") {
		t.Fatalf("rules lint after the fix:\n%s", r.stdout)
	}
}

// Rules bound by id to "Sales" and to Contractors, then renamed "SALES":
// a token's group name grants only the group whose exact name it is, in
// serve and in `rules test --groups` (which evaluates a shared name as a
// token's claim would); before, "SALES" and "Sales" each passed the other
// group's rule, as names compared case-insensitively.
func TestBoundRuleSharedNameInTokens(t *testing.T) {
	t.Parallel()
	e := newDirEnv(t, "token")
	org := e.org.Org()
	if _, err := org.AddGroup(oktaorg.Group{ID: orgSalesID, Profile: oktaorg.GroupProfile{Name: "Sales"}}); err != nil {
		t.Fatal(err)
	}
	e.sync()
	mustRun(t, e.db, "rules", "add", "sales-only", "--path", "/sfid/**", "--allow", orgSalesID)
	mustRun(t, e.db, "rules", "add", "contractors-only", "--path", "/ctid/**", "--allow", orgContractorsID)
	if err := org.RenameGroup(orgContractorsID, "SALES"); err != nil {
		t.Fatal(err)
	}
	e.sync()
	sales := oktatest.Claims{Subject: "carol@example.com", Groups: []string{"Sales"}}
	contractors := oktatest.Claims{Subject: "frank@example.com", Groups: []string{"SALES"}}
	e.waitStatus("/sfid/x", contractors, 403) // once serve has the renamed directory
	for _, c := range []struct {
		path   string
		claims oktatest.Claims
		want   int
	}{
		{"/sfid/x", sales, 200}, {"/sfid/x", contractors, 403},
		{"/ctid/x", contractors, 200}, {"/ctid/x", sales, 403},
	} {
		if got := e.status(c.path, c.claims); got != c.want {
			t.Errorf("token groups %v on %s: %d, want %d", c.claims.Groups, c.path, got, c.want)
		}
	}
	for _, c := range []struct{ groups, path, expect string }{
		{"SALES", "/sfid/x", "deny"}, {"Sales", "/sfid/x", "allow"}, {"SALES", "/ctid/x", "allow"}, {"sales", "/ctid/x", "deny"},
	} {
		if r := run(t, e.db, nil, "rules", "test", "--path", c.path, "--groups", c.groups, "--expect", c.expect); r.code != 0 {
			t.Errorf("rules test --groups %s %s: exit %d\n%s%s", c.groups, c.path, r.code, r.stdout, r.stderr)
		}
	}
}

// Group names resolve as serve compares them (policy.FoldName), in rules
// add, rules apply and the sync alike: "Kelvin" spelled with the Kelvin sign
// (U+212A) and with an ASCII K are the same name ignoring case, so "kelvin"
// is ambiguous everywhere. The database's lower() under a C collation folds
// ASCII only and bound rules add to the ASCII group silently.
func TestGroupNamesFoldAsServeFolds(t *testing.T) {
	t.Parallel()
	e := newDirEnv(t, "token")
	org := e.org.Org()
	for id, name := range map[string]string{"00gKelvinAscii0000001": "Kelvin", "00gKelvinSign00000002": "\u212Aelvin"} {
		if _, err := org.AddGroup(oktaorg.Group{ID: id, Profile: oktaorg.GroupProfile{Name: name}}); err != nil {
			t.Fatal(err)
		}
	}
	e.sync()
	if r := run(t, e.db, nil, "rules", "add", "k", "--path", "/k", "--allow", "kelvin"); r.code != ExitUsage || !strings.Contains(r.stderr, "matches 2 synced groups") {
		t.Fatalf("rules add --allow kelvin: %+v", r)
	}
	file := filepath.Join(t.TempDir(), "p.yaml")
	os.WriteFile(file, []byte("apiVersion: okproxy/v1\nkind: Policy\nrules:\n  - {name: k, path: /k, allow: [kelvin]}\n"), 0o644)
	if r := run(t, e.db, nil, "rules", "apply", "-f", file); r.code != ExitUsage || !strings.Contains(r.stderr, "matches 2 synced groups") {
		t.Fatalf("rules apply allow: [kelvin]: %+v", r)
	}
}
