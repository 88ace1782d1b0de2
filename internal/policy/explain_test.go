package policy

import (
	"strings"
	"testing"
)

func TestExplain(t *testing.T) {
	t.Parallel()
	p := mustCompile(t, append(specRules(),
		Rule{Name: "report-deny", Path: "/billing/**", Deny: names("Auditors"), Mode: ModeReport})...)
	for _, tc := range []struct {
		name   string
		req    Request
		caller *Caller
		want   []string
	}{
		{"granted", get("/billing/x"), tokenCaller("Finance"),
			[]string{"allow (ok)", "granted by rule billing-read", "matched: billing-read, no-contractors",
				"report-only rules: would allow (ok), same outcome", "report-only matched: report-deny"}},
		{"denied", get("/billing/x"), tokenCaller("Finance", "contractors"),
			[]string{"deny (forbidden)", "denied by rule no-contractors: caller is in deny group Contractors"}},
		{"shadow flips", get("/billing/x"), tokenCaller("Auditors"),
			[]string{"allow (ok)", "would deny (forbidden), would change the outcome", "denied by rule report-deny: caller is in deny group Auditors"}},
		{"none granted", get("/billing/x"), tokenCaller("Sales"),
			[]string{"deny (forbidden)", "no matching rule grants access"}},
		{"nothing matched", get("/nowhere"), tokenCaller("Sales"),
			[]string{"deny (forbidden)", "matched: no rule"}},
		{"anonymous", get("/me"), nil,
			[]string{"deny (unauthorized)", "a token is required", "matched: me"}},
		{"scope", get("/me"), tokenCaller(),
			[]string{"deny (insufficient_scope)", "lacks a scope"}},
		{"bad path", get("/a/../b"), nil,
			[]string{"deny (bad_request)", "not canonical"}},
	} {
		got := p.Decide(tc.req, tc.caller).Explain()
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: Explain() =\n%s\nwant it to contain %q", tc.name, got, w)
			}
		}
		if strings.HasSuffix(got, "\n") {
			t.Errorf("%s: trailing newline", tc.name)
		}
	}
}
