package policy

import (
	"slices"
	"strings"
	"testing"
)

// TestAmbiguousName: a rule stored by name ("Sales") before the sync, when
// two synced groups have names equal to it ignoring case. The allow grants
// nobody (neither group's members, by id or by a token's name); the deny
// refuses the members of both; the decision says why the allow did not grant.
func TestAmbiguousName(t *testing.T) {
	t.Parallel()
	dir := NewGroups([]GroupRef{{ID: "00gsales", Name: "Sales"}, {ID: "00gcontractors", Name: "SALES"}, {ID: "00gops", Name: "Ops"}})
	rules := []Rule{
		{Name: "sales", Path: "/sales/**", Allow: names("Sales")},
		{Name: "ops", Path: "/ops/**", Allow: names("Ops", "sales")},
		{Name: "no-sales", Path: "/ops/secret", Deny: names("sales")},
	}
	dir.MarkRules(rules)
	if got := rules[0].Allow[0].AmbiguousIDs(); !rules[0].Allow[0].IsAmbiguous() || !slices.Equal(got, []string{"00gcontractors", "00gsales"}) {
		t.Fatalf("AmbiguousIDs = %v", got)
	}
	if rules[1].Allow[0].IsAmbiguous() || rules[1].Allow[1].AmbiguousIDs() == nil {
		t.Fatalf("Ops is one group, sales two: %+v", rules[1].Allow)
	}
	if (GroupRef{Name: "Sales"}) == rules[0].Allow[0] {
		t.Fatal("GroupRef must stay comparable, and a marked ref differ from an unmarked one")
	}
	p := mustCompile(t, rules...)
	real := NewCaller("bob", []GroupRef{{ID: "00gsales", Name: "Sales"}}, nil)
	renamed := NewCaller("carol", []GroupRef{{ID: "00gcontractors", Name: "SALES"}}, nil)
	byToken := tokenCaller("Sales")
	ops := NewCaller("olga", []GroupRef{{ID: "00gops", Name: "Ops"}}, nil)
	opsAndSales := NewCaller("otto", []GroupRef{{ID: "00gops", Name: "Ops"}, {ID: "00gcontractors", Name: "SALES"}}, nil)
	for _, tc := range []struct {
		name   string
		path   string
		caller *Caller
		effect Effect
		amb    string // AmbiguousRule
		denied string
	}{
		{"real group, ambiguous allow", "/sales/x", real, Deny, "sales", ""},
		{"renamed group, ambiguous allow", "/sales/x", renamed, Deny, "sales", ""},
		{"token name, ambiguous allow", "/sales/x", byToken, Deny, "sales", ""},
		{"bound group beside it still grants", "/ops/x", ops, Allow, "", ""},
		{"ambiguous allow beside a bound one", "/ops/x", renamed, Deny, "ops", ""},
		{"deny refuses the real group", "/ops/secret", opsAndSales, Deny, "", "no-sales"},
		{"deny refuses by token name", "/ops/secret", NewCaller("t", []GroupRef{{Name: "Ops"}, {Name: "sALES"}}, nil), Deny, "", "no-sales"},
		{"deny leaves others alone", "/ops/secret", ops, Allow, "", ""},
	} {
		d := p.Decide(get(tc.path), tc.caller)
		if d.Effect != tc.effect || d.AmbiguousRule != tc.amb || d.Denied != tc.denied {
			t.Errorf("%s: %s ambiguous=%q denied=%q, want %s %q %q", tc.name, d.Effect, d.AmbiguousRule, d.Denied, tc.effect, tc.amb, tc.denied)
		}
	}
	// A deny by the ambiguous name refuses members of each group it could
	// mean, also when the caller's directory name has changed since.
	deny := mustCompile(t, Rule{Name: "all", Path: "/**", AllowAuthenticated: true},
		Rule{Name: "no-sales", Path: "/**", Deny: rules[0].Allow})
	for _, c := range []*Caller{real, renamed, byToken, NewCaller("x", []GroupRef{{ID: "00gsales", Name: "Sales EMEA"}}, nil)} {
		if d := deny.Decide(get("/x"), c); d.Effect != Deny || d.Denied != "no-sales" || d.DeniedGroup != "Sales" {
			t.Errorf("deny for %s: %+v", c.Subject(), d)
		}
	}
	if d := deny.Decide(get("/x"), ops); d.Effect != Allow {
		t.Errorf("deny must not touch Ops: %+v", d)
	}

	got := p.Decide(get("/sales/x"), renamed).Explain()
	for _, w := range []string{"deny (forbidden)", `rule sales allows group "Sales" by a name that 2 synced groups share (00gcontractors, 00gsales)`, "grants nobody"} {
		if !strings.Contains(got, w) {
			t.Errorf("Explain() =\n%s\nwant %q", got, w)
		}
	}
	if got := p.Decide(get("/ops/x"), ops).Explain(); strings.Contains(got, "synced groups share") {
		t.Errorf("a granted request must not mention the ambiguous name:\n%s", got)
	}
	if renamed.InGroup(rules[0].Allow[0]) || real.InGroup(rules[0].Allow[0]) {
		t.Error("InGroup reads an ambiguous ref as an allow does: nobody")
	}
	// Compile works on a copy: marking survives in Rules(), and a rebind
	// (the sync bound the ref to an id) clears it.
	if rs := p.Rules(); !rs[2].Allow[0].IsAmbiguous() {
		t.Error("Rules() dropped Ambiguous")
	}
	bound := rules[0].Allow[0]
	bound.ID = "00gsales"
	if bound.IsAmbiguous() || bound.AmbiguousIDs() != nil {
		t.Error("a bound ref is never ambiguous")
	}
	dir.Mark(&bound)
	if bound.IsAmbiguous() || bound.ID != "00gsales" || bound.Name != "Sales" {
		t.Error("a bound ref is never ambiguous")
	}
}

// TestBoundRefSharedName: rules bound by id to "Sales" and to "SALES" (two
// synced groups whose names differ only in case), and callers known only by
// a token's group names. A token name grants a bound group only by its exact
// name, or not at all when the exact name is shared too ("Ops" twice); a
// deny still compares names case-insensitively, so a shared name is denied
// rather than let through.
func TestBoundRefSharedName(t *testing.T) {
	t.Parallel()
	dir := NewGroups([]GroupRef{{ID: "00gsales", Name: "Sales"}, {ID: "00gcontractors", Name: "SALES"},
		{ID: "00gops1", Name: "Ops"}, {ID: "00gops2", Name: "Ops"}, {ID: "00gfin", Name: "Finance"}})
	rules := []Rule{
		{Name: "sales", Path: "/sales/**", Allow: []GroupRef{{ID: "00gsales", Name: "Sales"}}},
		{Name: "contractors", Path: "/contractors/**", Allow: []GroupRef{{ID: "00gcontractors", Name: "SALES"}}},
		{Name: "ops", Path: "/ops/**", Allow: []GroupRef{{ID: "00gops1", Name: "Ops"}}},
		{Name: "finance", Path: "/finance/**", Allow: []GroupRef{{ID: "00gfin", Name: "Finance"}}},
		{Name: "no-contractors", Path: "/sales/secret", Deny: []GroupRef{{ID: "00gcontractors", Name: "SALES"}}},
	}
	dir.MarkRules(rules)
	p := mustCompile(t, rules...)
	for _, tc := range []struct {
		path   string
		token  string
		effect Effect
	}{
		{"/sales/x", "Sales", Allow},
		{"/sales/x", "SALES", Deny}, // the other group: never the cross-group grant
		{"/sales/x", "sales", Deny}, // neither exact name: which group is unknown
		{"/contractors/x", "SALES", Allow},
		{"/contractors/x", "Sales", Deny},
		{"/ops/x", "Ops", Deny},          // two groups named exactly "Ops"
		{"/finance/x", "FINANCE", Allow}, // an unshared name still compares case-insensitively
		{"/sales/secret", "Sales", Deny}, // the deny reads names case-insensitively: shared means denied
	} {
		if d := p.Decide(get(tc.path), tokenCaller(tc.token)); d.Effect != tc.effect {
			t.Errorf("token group %q on %s: %s, want %s", tc.token, tc.path, d.Effect, tc.effect)
		}
		ref := rules[0].Allow[0]
		if tc.path == "/sales/x" && ref.TokenNameGrants(tc.token) != (tc.effect == Allow) {
			t.Errorf("TokenNameGrants(%q) disagrees with Decide", tc.token)
		}
	}
	// Directory callers match by id as ever.
	if d := p.Decide(get("/sales/x"), NewCaller("d", []GroupRef{{ID: "00gsales", Name: "Sales"}}, nil)); d.Effect != Allow {
		t.Errorf("directory caller: %+v", d)
	}
	if d := p.Decide(get("/ops/x"), NewCaller("d", []GroupRef{{ID: "00gops1", Name: "Ops"}}, nil)); d.Effect != Allow {
		t.Errorf("directory caller of ops1: %+v", d)
	}
}
