package lint

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/okproxy/okproxy/internal/policy"
)

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func g(name, id string) policy.GroupRef { return policy.GroupRef{Name: name, ID: id} }

var (
	finance     = g("Finance", "00gF")
	auditors    = g("Auditors", "00gA")
	contractors = g("Contractors", "00gC")
	developers  = g("Developers", "00gD")
)

func directory() Directory {
	return Directory{Synced: true, Groups: map[string]string{
		"00gF": "Finance", "00gA": "Auditors", "00gC": "Contractors", "00gD": "Developers", "00gO": "Platform Ops",
	}}
}

func mkRule(r policy.Rule) Rule {
	if r.Mode == "" {
		r.Mode = policy.ModeEnforce
	}
	r.Enabled = true
	return Rule{Rule: r, CreatedAt: now.Add(-time.Hour), UpdatedAt: now.Add(-time.Hour)}
}

// clean is a policy lint has nothing to say about.
func clean() Input {
	return Input{
		Directory: directory(),
		Now:       now,
		Rules: []Rule{
			mkRule(policy.Rule{Name: "billing-read", Path: "/billing/**", Methods: []string{"GET"}, Allow: []policy.GroupRef{finance, auditors}}),
			mkRule(policy.Rule{Name: "no-contractors", Path: "/billing/**", Deny: []policy.GroupRef{contractors}}),
			mkRule(policy.Rule{Name: "health", Path: "/healthz", Methods: []string{"GET"}, Public: true}),
			mkRule(policy.Rule{Name: "api", Path: "/api/**", Allow: []policy.GroupRef{developers}}),
			mkRule(policy.Rule{Name: "new-export", Path: "/export/**", Allow: []policy.GroupRef{finance}, Mode: policy.ModeReport}),
		},
		Quotas: []Quota{{Name: "dev-tier", Group: developers, Path: "/api/**"}},
	}
}

func TestClean(t *testing.T) {
	t.Parallel()
	if fs := Run(clean()); len(fs) != 0 {
		t.Fatalf("findings on a clean policy: %+v", fs)
	}
	// Never synced: every group is reported as not yet known (and failing),
	// once per group; nothing is concluded about rules never granting.
	in := clean()
	in.Directory = Directory{}
	in.Rules = append(in.Rules, mkRule(policy.Rule{Name: "x", Path: "/x", Allow: []policy.GroupRef{g("Nobody", "")}}))
	fs := Run(in)
	if !Failed(fs) {
		t.Fatalf("unsynced directory: lint passes: %+v", fs)
	}
	seen := map[string]bool{}
	for _, f := range fs {
		if f.Check != UnknownGroup || len(f.Groups) != 1 || !strings.Contains(f.Message, "never been synced") {
			t.Errorf("unsynced directory: unexpected finding %+v", f)
			continue
		}
		if seen[f.Groups[0]] {
			t.Errorf("group %s reported twice", f.Groups[0])
		}
		seen[f.Groups[0]] = true
	}
	if !seen["Nobody"] {
		t.Errorf("unsynced directory: Nobody not reported: %+v", fs)
	}
}

// Each kind of problem is found, names its rules and says what to do.
func TestFindings(t *testing.T) {
	t.Parallel()
	in := clean()
	in.Rules = append(in.Rules,
		// unknown + deleted groups; with no other allow group, never grants.
		mkRule(policy.Rule{Name: "typo", Path: "/typo", Allow: []policy.GroupRef{g("Finanse", ""), g("Old Team", "00gGONE")}}),
		// renamed: stored "Operations", directory says "Platform Ops".
		mkRule(policy.Rule{Name: "ops", Path: "/ops/**", Allow: []policy.GroupRef{g("Operations", "00gO")}}),
		// shadowed: the only group it allows is denied on a wider route.
		mkRule(policy.Rule{Name: "contractor-billing", Path: "/billing/invoices", Methods: []string{"GET"}, Allow: []policy.GroupRef{contractors}}),
		// a duplicate of billing-read, apart from name and description.
		mkRule(policy.Rule{Name: "billing-read-2", Description: "copy", Path: "/billing/**", Methods: []string{"GET"}, Allow: []policy.GroupRef{auditors, finance}}),
		// a public route overlapping the contractors deny.
		mkRule(policy.Rule{Name: "billing-status", Path: "/billing/status", Public: true}),
	)
	// unbound: stored by name before the first sync; the directory has it now.
	in.Rules = append(in.Rules, mkRule(policy.Rule{Name: "legacy", Path: "/legacy", Allow: []policy.GroupRef{g("finance", "")}}))
	old := mkRule(policy.Rule{Name: "stale-watch", Path: "/stale", Allow: []policy.GroupRef{finance}, Mode: policy.ModeReport})
	old.UpdatedAt = now.Add(-20 * 24 * time.Hour)
	in.Rules = append(in.Rules, old)
	in.Quotas = append(in.Quotas, Quota{Name: "finance-api", Group: finance, Path: "/api/**"})

	fs := Run(in)
	want := []struct {
		check Check
		rules string
		text  string
	}{
		{UnknownGroup, "typo", `group "Finanse" is not in the synced Okta directory (used by rule "typo")`},
		{DeletedGroup, "typo", `group "Old Team" (00gGONE) is no longer in the synced Okta directory`},
		{NeverGrants, "contractor-billing,no-contractors", `every group it allows ("Contractors") is denied by rule "no-contractors"`},
		{NeverGrants, "typo", `all its allow groups ("Finanse", "Old Team") are unknown to or deleted from Okta`},
		{Duplicate, "billing-read,billing-read-2", `rules "billing-read", "billing-read-2" are identical`},
		{PublicOverDeny, "billing-status,no-contractors", `anyone without one is still admitted by "billing-status"`},
		{StaleReportOnly, "stale-watch", `has been report-only for 20d (since 2026-02-09), longer than 14d`},
		{QuotaNotGranted, "", `quota "finance-api" limits group "Finance" on /api/**`},
		{RenamedGroup, "ops", `group 00gO was "Operations" when the rules were written and is now "Platform Ops"`},
		{UnboundGroup, "legacy", `group "finance" is named by name only, although the synced directory has it (00gF)`},
	}
	if len(fs) != len(want) {
		for _, f := range fs {
			t.Logf("%s %v %s", f.Check, f.Rules, f.Message)
		}
		t.Fatalf("got %d findings, want %d", len(fs), len(want))
	}
	for i, w := range want {
		f := fs[i]
		if f.Check != w.check || strings.Join(f.Rules, ",") != w.rules || !strings.Contains(f.Message, w.text) || f.Fix == "" {
			t.Errorf("finding %d: %s %v %q (fix %q)\nwant %s %s %q", i, f.Check, f.Rules, f.Message, f.Fix, w.check, w.rules, w.text)
		}
	}
	if !Failed(fs) || Failed(fs[len(fs)-2:]) {
		t.Fatal("warnings must fail the lint, info alone must not")
	}
}

// A deny only shadows a grant when it covers every request the grant
// matches, and only for the groups it names.
func TestNeverGrantsCoverage(t *testing.T) {
	t.Parallel()
	deny := mkRule(policy.Rule{Name: "deny", Path: "/a/*/c", Methods: []string{"GET"}, Hosts: []string{"*.example.com"}, Deny: []policy.GroupRef{contractors}})
	cases := []struct {
		grant policy.Rule
		never bool
	}{
		{policy.Rule{Path: "/a/b/c", Methods: []string{"GET"}, Hosts: []string{"api.example.com"}, Allow: []policy.GroupRef{contractors}}, true},
		{policy.Rule{Path: "/a/b/c", Methods: []string{"GET"}, Hosts: []string{"*.eu.example.com"}, Allow: []policy.GroupRef{contractors}}, true},
		{policy.Rule{Path: "/a/b/c", Methods: []string{"GET"}, Hosts: []string{"example.com"}, Allow: []policy.GroupRef{contractors}}, false},
		{policy.Rule{Path: "/a/b/c", Hosts: []string{"api.example.com"}, Allow: []policy.GroupRef{contractors}}, false},
		{policy.Rule{Path: "/a/b/c/**", Methods: []string{"GET"}, Hosts: []string{"api.example.com"}, Allow: []policy.GroupRef{contractors}}, false},
		{policy.Rule{Path: "/a/b/c", Methods: []string{"GET"}, Hosts: []string{"api.example.com"}, Allow: []policy.GroupRef{contractors, finance}}, false},
		{policy.Rule{Path: "/a/b/c", Methods: []string{"GET"}, Hosts: []string{"api.example.com"}, AllowAuthenticated: true}, false},
		// The same group named by name only still counts as denied.
		{policy.Rule{Path: "/a/x/c", Methods: []string{"GET"}, Hosts: []string{"api.example.com"}, Allow: []policy.GroupRef{g("contractors", "")}}, true},
	}
	for i, c := range cases {
		c.grant.Name = "grant"
		in := Input{Directory: Directory{}, Now: now, Rules: []Rule{deny, mkRule(c.grant)}}
		got := false
		for _, f := range Run(in) {
			got = got || f.Check == NeverGrants
		}
		if got != c.never {
			t.Errorf("case %d (%s %v %v): never-grants %v, want %v", i, c.grant.Path, c.grant.Methods, c.grant.Hosts, got, c.never)
		}
	}
}

func TestPatterns(t *testing.T) {
	t.Parallel()
	covers := []struct {
		d, r string
		want bool
	}{
		{"/**", "/", true}, {"/**", "/a/*/b/**", true}, {"/a/**", "/a", true}, {"/a/**", "/b", false},
		{"/a/*", "/a/b", true}, {"/a/b", "/a/*", false}, {"/a/*", "/a/**", false}, {"/a/b/**", "/a", false},
		{"/", "/", true}, {"/a", "/a/b", false},
	}
	for _, c := range covers {
		if got := parsePattern(c.d).covers(parsePattern(c.r)); got != c.want {
			t.Errorf("%s covers %s = %v", c.d, c.r, got)
		}
	}
	overlaps := []struct {
		a, b string
		want bool
	}{
		{"/a/*", "/*/b", true}, {"/a/**", "/b/**", false}, {"/a", "/a/**", true}, {"/a/b", "/a", false}, {"/**", "/x/y", true},
	}
	for _, c := range overlaps {
		if got := parsePattern(c.a).overlaps(parsePattern(c.b)); got != c.want {
			t.Errorf("%s overlaps %s = %v", c.a, c.b, got)
		}
	}
}

// TestAmbiguousGroup: a rule and a quota stored by name ("Sales") when two
// synced groups have that name ignoring case ("Sales" and "SALES"). Decide
// grants nothing by such a name, so it is a warning (exit 3) naming both ids
// and a fix that works (export, edit in the id, apply), not the info
// unbound-group whose export | apply fix the ambiguous name makes fail.
func TestAmbiguousGroup(t *testing.T) {
	t.Parallel()
	in := clean()
	in.Directory.Groups["00gS"] = "Sales"
	in.Directory.Groups["00gX"] = "SALES"
	in.Rules = append(in.Rules,
		mkRule(policy.Rule{Name: "sales", Path: "/sales/**", Allow: []policy.GroupRef{g("Sales", "")}}),
		mkRule(policy.Rule{Name: "no-sales", Path: "/billing/**", Deny: []policy.GroupRef{g("sales", "")}}))
	in.Quotas = append(in.Quotas, Quota{Name: "sales-tier", Group: g("Sales", ""), Path: "/sales/**"})
	fs := Run(in)
	var checks []string
	for _, f := range fs {
		checks = append(checks, string(f.Check)+" "+strings.Join(f.Rules, ","))
	}
	if got, want := strings.Join(checks, "; "), "ambiguous-group sales,no-sales; never-grants sales"; got != want {
		for _, f := range fs {
			t.Logf("%s %v %s", f.Check, f.Rules, f.Message)
		}
		t.Fatalf("findings: %s\nwant %s", got, want)
	}
	f := fs[0]
	if f.Severity != Warning || !Failed(fs) {
		t.Errorf("an ambiguous name must fail the lint: %+v", f)
	}
	if strings.Join(f.Groups, ",") != "Sales,00gS,00gX" || strings.Join(f.Quotas, ",") != "sales-tier" {
		t.Errorf("groups %v quotas %v", f.Groups, f.Quotas)
	}
	for _, w := range []string{`group "Sales" is named by name only, and 2 synced groups have that name (00gS, 00gX)`,
		"as an allow or a quota it applies to nobody, as a deny to the members of each"} {
		if !strings.Contains(f.Message, w) {
			t.Errorf("message %q\nwant %q", f.Message, w)
		}
	}
	for _, w := range []string{"okproxy rules export > policy.yaml", `replace "Sales" with that id`, "okproxy rules apply -f policy.yaml",
		"okproxy quotas add NAME --group ID"} {
		if !strings.Contains(f.Fix, w) {
			t.Errorf("fix %q\nwant %q", f.Fix, w)
		}
	}
	if !strings.Contains(fs[1].Message, "named by a name several synced groups share") {
		t.Errorf("never-grants: %s", fs[1].Message)
	}
}

// An id that differs from a synced group's only in letter case was never a
// synced group: lint says so, instead of calling it deleted.
func TestMistypedIDCase(t *testing.T) {
	t.Parallel()
	in := clean()
	in.Rules = append(in.Rules, mkRule(policy.Rule{Name: "lower", Path: "/lower", Allow: []policy.GroupRef{g("00gf", "00gf")}}))
	var found bool
	for _, f := range Run(in) {
		if f.Check == DeletedGroup {
			found = true
			if !strings.Contains(f.Message, `synced group "Finance" has id 00gF, which differs only in letter case`) || !strings.Contains(f.Fix, "00gF") {
				t.Errorf("finding: %s / %s", f.Message, f.Fix)
			}
		}
	}
	if !found {
		t.Fatal("no finding for the mistyped id")
	}
}

// Path patterns that read like regular expressions are literal: lint warns,
// since a deny written that way never fires.
func TestRegexLikePath(t *testing.T) {
	t.Parallel()
	in := clean()
	for i, p := range []string{"/admin/(users|groups)", "/v[0-9]/x", "/files/.*", "/a/^b$", "/users/{id}"} {
		in.Rules = append(in.Rules, mkRule(policy.Rule{Name: fmt.Sprintf("re%d", i), Path: p, Deny: []policy.GroupRef{finance}}))
	}
	in.Rules = append(in.Rules, mkRule(policy.Rule{Name: "plain", Path: "/files/a+b/*", Deny: []policy.GroupRef{finance}}),
		mkRule(policy.Rule{Name: "odata", Path: "/v1/$metadata", Deny: []policy.GroupRef{finance}}),
		mkRule(policy.Rule{Name: "price", Path: "/price/$5/x", Deny: []policy.GroupRef{finance}}))
	fs := Run(in)
	var got []string
	for _, f := range fs {
		if f.Check == RegexLike {
			if f.Severity != Warning || f.Fix == "" {
				t.Errorf("finding %+v", f)
			}
			got = append(got, f.Rules...)
		}
	}
	if !slices.Equal(got, []string{"re0", "re1", "re2", "re3", "re4"}) || !Failed(fs) {
		t.Fatalf("regex-like findings for %v", got)
	}
}
