package archtest

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

type pkg struct {
	ImportPath string
	Imports    []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", "github.com/okproxy/okproxy/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var ps []pkg
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	if len(ps) < 10 {
		t.Fatalf("only %d packages listed", len(ps))
	}
	return ps
}

const mod = "github.com/okproxy/okproxy/"

func TestImportRules(t *testing.T) {
	t.Parallel()
	rules := []struct {
		importPrefix string
		allowed      []string // packages allowed to import it
		why          string
	}{
		{"github.com/jackc/pgx", []string{"internal/store", "internal/dbtest"}, "SQL stays in internal/store"},
		{"github.com/pressly/goose", []string{"internal/store"}, "migrations run through internal/store"},
		{"github.com/okta/okta-sdk-golang", []string{"internal/okta"}, "the retired v2 SDK stays behind one package"},
		{"github.com/spf13/cobra", []string{"internal/cli"}, "only the CLI knows about commands"},
		{mod + "internal/cli", []string{"cmd/okproxy"}, "nothing depends on the CLI"},
		{mod + "internal/server", []string{"internal/cli"}, "only the CLI assembles the server"},
		{mod + "internal/oktatest", nil, "test doubles are for tests and dev commands only"},
		{mod + "internal/oktaorg", nil, "test doubles are for tests and dev commands only"},
		{mod + "internal/dbtest", nil, "test helpers are for tests only"},
	}
	devCommands := map[string]bool{mod + "cmd/fakeokta": true, mod + "cmd/fakeorg": true, mod + "cmd/devtool": true}
	for _, p := range listPackages(t) {
		for _, imp := range p.Imports {
			for _, r := range rules {
				if !strings.HasPrefix(imp, r.importPrefix) {
					continue
				}
				ok := devCommands[p.ImportPath] && strings.Contains(r.why, "test doubles")
				for _, a := range r.allowed {
					if p.ImportPath == mod+a || strings.HasPrefix(p.ImportPath, mod+a+"/") {
						ok = true
					}
				}
				if !ok {
					t.Errorf("%s imports %s: not allowed (%s)", p.ImportPath, imp, r.why)
				}
			}
		}
	}
}

// TestPolicyFilesAndLintArePure: the policy-document and lint packages do no
// I/O of their own (their non-test files import no os, net, database,
// syscall or pgx), so `rules test --policy` and lint run anywhere.
func TestPolicyFilesAndLintArePure(t *testing.T) {
	t.Parallel()
	seen := 0
	for _, p := range listPackages(t) {
		if p.ImportPath != mod+"internal/policyfile" && p.ImportPath != mod+"internal/lint" {
			continue
		}
		seen++
		for _, imp := range p.Imports {
			for _, bad := range []string{"os", "net", "database", "syscall", "github.com/jackc"} {
				if imp == bad || strings.HasPrefix(imp, bad+"/") {
					t.Errorf("%s imports %s", p.ImportPath, imp)
				}
			}
		}
	}
	if seen != 2 {
		t.Fatalf("found %d of the 2 packages to check", seen)
	}
}

// TestPolicyIsPure: the decision core does no I/O.
func TestPolicyIsPure(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", mod+"internal/policy").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, bad := range []string{"net", "net/http", "os", "database/sql", "time"} {
			if dep == bad {
				t.Errorf("internal/policy depends on %s", dep)
			}
		}
		if strings.HasPrefix(dep, "github.com/") && dep != mod+"internal/policy" {
			t.Errorf("internal/policy depends on %s", dep)
		}
	}
}
