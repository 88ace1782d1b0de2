package okta

import (
	"strings"
	"testing"
)

func TestEvaluate(t *testing.T) {
	t.Parallel()
	u := User{Login: "alice@example.com", Title: "Developer", Department: "Engineering"}
	groups := map[string]string{"00gA": "Auditors", "00gB": "app-billing"}
	cases := []struct {
		expr string
		want bool
		err  string
	}{
		{`user.title == "Developer"`, true, ""},
		{`user.title=="developer"`, false, ""},
		{`user.title != "Developer"`, false, ""},
		{`user.department == "Engineering" && user.title == "Developer"`, true, ""},
		{`user.department == "Finance" || user.title == 'Developer'`, true, ""},
		{`user.department == "Finance" OR (user.title == "Developer" AND !(user.login == "bob@example.com"))`, true, ""},
		{`String.stringContains(user.login, "@example.com")`, true, ""},
		{`String.startsWith(user.department, "Fin")`, false, ""},
		{`isMemberOfGroup("00gA")`, true, ""},
		{`isMemberOfAnyGroup("00gX", "00gB")`, true, ""},
		{`isMemberOfGroupNameStartsWith("app-")`, true, ""},
		{`isMemberOfGroupName("Finance")`, false, ""},
		{`user.costCenter == "1"`, false, "not synced"},
		{`Arrays.contains(user.title, "x")`, false, "not evaluated"},
		{`user.title == `, false, "ends early"},
		{`user.title`, false, "not a condition"},
	}
	for _, c := range cases {
		got, err := Evaluate(c.expr, u, groups)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: err %v, want %q", c.expr, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s = %v, %v; want %v", c.expr, got, err, c.want)
		}
	}
}

func TestExplain(t *testing.T) {
	t.Parallel()
	rules := []GroupRule{
		{ID: "r1", Name: "dev-title", Status: "ACTIVE", Expression: `user.title == "Developer"`, GroupIDs: []string{"00gD"}},
		{ID: "r2", Name: "old", Status: "INACTIVE", Expression: `true`, GroupIDs: []string{"00gD"}},
		{ID: "r3", Name: "fancy", Status: "ACTIVE", Expression: `Arrays.contains(user.x, "y")`, GroupIDs: []string{"00gF"}},
	}
	dev := User{Title: "Developer"}
	got := Explain(dev, "00gD", nil, rules)
	if len(got) != 1 || got[0].Describe("Developers") != `Developers ← rule "dev-title": user.title == "Developer"` {
		t.Fatalf("rule-assigned: %+v", got)
	}
	if got := Explain(User{Title: "Manager"}, "00gD", nil, rules); got[0].Describe("Developers") != "Developers (assigned directly in Okta)" {
		t.Fatalf("direct: %s", got[0].Describe("Developers"))
	}
	if got := Explain(dev, "00gF", nil, rules); got[0].Evaluated || !strings.Contains(got[0].Describe("F"), "if it matches") {
		t.Fatalf("unevaluated: %s", got[0].Describe("F"))
	}
}

func TestBuildPlanAndGuard(t *testing.T) {
	t.Parallel()
	cur := &State{
		Groups:  map[string]Group{"g1": {ID: "g1", Name: "A"}, "g2": {ID: "g2", Name: "B"}},
		Members: map[string]map[string]bool{"g1": {"u1": true, "u2": true}, "g2": {"u1": true}},
		Users:   map[string]User{"u1": {ID: "u1", Login: "a", Status: "ACTIVE"}, "u2": {ID: "u2", Login: "b", Status: "ACTIVE"}},
		Unbound: []RuleGroupRef{{Rule: "r", GroupName: "b2"}, {Rule: "r", GroupName: "dup"}},
	}
	want := &desired{
		groups:  map[string]Group{"g1": {ID: "g1", Name: "A"}, "g2": {ID: "g2", Name: "B2"}, "g3": {ID: "g3", Name: "dup"}, "g4": {ID: "g4", Name: "DUP"}},
		members: map[string]map[string]bool{"g1": {"u1": true}, "g2": {"u1": true}},
		users:   map[string]User{"u1": {ID: "u1", Login: "a", Status: "SUSPENDED"}},
		rules:   map[string]GroupRule{},
	}
	p := buildPlan(cur, want)
	if len(p.GroupsAdded) != 2 || len(p.GroupsRenamed) != 1 || len(p.MembershipsRemoved) != 1 || len(p.UsersChanged) != 1 || len(p.UsersRemoved) != 1 {
		t.Fatalf("plan: %+v", p)
	}
	if len(p.Bindings) != 1 || p.Bindings[0].GroupID != "g2" || len(p.Ambiguous) != 1 {
		t.Fatalf("bindings %+v ambiguous %v", p.Bindings, p.Ambiguous)
	}
	if err := p.check(0.5); err != nil {
		t.Fatalf("1 of 3 memberships under 50%%: %v", err)
	}
	if err := p.check(0.2); err == nil {
		t.Fatal("1 of 3 memberships over 20% passed the guard")
	}
	if err := p.check(0); err == nil {
		t.Fatal("zero max removal allowed a removal")
	}
}
