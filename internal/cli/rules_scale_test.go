package cli

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/okproxy/okproxy/internal/dbtest"
)

// bigPolicy writes n rules over 50 groups, a realistic mix of grants,
// denies, methods and report-only rules.
func bigPolicy(n int) string {
	var b strings.Builder
	b.WriteString("apiVersion: okproxy/v1\nkind: Policy\nrules:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - name: svc-%05d\n    path: /svc/%d/**\n", i, i)
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "    methods: [GET]\n    allow: [Team%02d, Team%02d]\n", i%50, (i+1)%50)
		case 1:
			fmt.Fprintf(&b, "    deny: [Team%02d]\n", i%50)
		case 2:
			fmt.Fprintf(&b, "    allow_authenticated: true\n    scopes: [\"svc:%d\"]\n", i)
		case 3:
			fmt.Fprintf(&b, "    methods: [POST, PUT]\n    allow: [Team%02d]\n    mode: report\n", i%50)
		}
	}
	return b.String()
}

// TestApply10000Rules: apply of 10,000 rules to an empty database in under
// 10 s (asserted without -race), as one version; re-apply changes nothing;
// a change to one rule among 10,000 writes one event.
func TestApply10000Rules(t *testing.T) {
	t.Parallel()
	db := dbtest.NewDatabase(t)
	groups := make([]string, 50)
	for i := range groups {
		groups[i] = fmt.Sprintf("00gteam%013d=Team%02d", i, i)
	}
	syncDirectory(t, db, groups...)
	src := bigPolicy(10000)
	f := writeFile(t, "big.yaml", src)

	start := time.Now()
	r := mustRun(t, db, "rules", "apply", "-f", f)
	took := time.Since(start)
	t.Logf("rules apply of 10,000 rules: %v (race detector: %v)", took, raceEnabled)
	if !strings.Contains(r.stdout, "rules:  10000 added") || !strings.Contains(r.stdout, "applied as policy version 1") {
		t.Fatalf("apply: %s", r.stdout[max(0, len(r.stdout)-300):])
	}
	if !raceEnabled && took > 10*time.Second {
		t.Fatalf("apply of 10,000 rules took %v, budget 10s", took)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM rule_groups WHERE group_id IS NOT NULL`); n != 10000 {
		t.Fatalf("%d bound group refs, want 10000", n)
	}

	start = time.Now()
	if r := mustRun(t, db, "rules", "apply", "-f", f); !strings.Contains(r.stdout, "no changes") {
		t.Fatalf("re-apply: %s", r.stdout)
	}
	t.Logf("idempotent re-apply of 10,000 rules: %v", time.Since(start))

	one := strings.Replace(src, "path: /svc/7/**", "path: /svc/7/v2/**", 1)
	start = time.Now()
	r = mustRun(t, db, "rules", "apply", "-f", writeFile(t, "one.yaml", one))
	t.Logf("apply of one change among 10,000 rules: %v", time.Since(start))
	if !strings.Contains(r.stdout, "~ rule svc-00007\n    path: /svc/7/** → /svc/7/v2/**") || !strings.Contains(r.stdout, "applied as policy version 2") {
		t.Fatalf("one change: %s", r.stdout)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM admin_events WHERE policy_version = 2`); n != 1 {
		t.Fatalf("%d events for a one-rule change", n)
	}
}
