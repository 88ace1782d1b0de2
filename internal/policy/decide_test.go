package policy

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// mustCompile compiles rules with every rule enabled.
func mustCompile(t testing.TB, rules ...Rule) *Policy {
	t.Helper()
	for i := range rules {
		rules[i].Enabled = true
	}
	return mustCompileAsIs(t, rules...)
}

func mustCompileAsIs(t testing.TB, rules ...Rule) *Policy {
	t.Helper()
	p, err := Compile(rules)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return p
}

// tokenCaller has groups from a token's claim: names only.
func tokenCaller(groups ...string) *Caller {
	refs := make([]GroupRef, len(groups))
	for i, g := range groups {
		refs[i] = GroupRef{Name: g}
	}
	return NewCaller("alice", refs, nil)
}

func withScopes(c *Caller, scopes ...string) *Caller {
	return NewCaller(c.Subject(), c.Groups(), scopes)
}

func names(gs ...string) []GroupRef {
	out := make([]GroupRef, len(gs))
	for i, g := range gs {
		out[i] = GroupRef{Name: g}
	}
	return out
}

// specRules are the examples of SPEC §3.
func specRules() []Rule {
	return []Rule{
		{Name: "billing-read", Path: "/billing/**", Methods: []string{"GET"}, Allow: names("Finance", "Auditors")},
		{Name: "no-contractors", Path: "/billing/**", Deny: names("Contractors")},
		{Name: "health", Path: "/healthz", Methods: []string{"GET"}, Public: true},
		{Name: "me", Path: "/me", AllowAuthenticated: true, Hosts: []string{"api.example.com"}, Scopes: []string{"profile:read"}},
		{Name: "new-export", Path: "/export/**", Allow: names("Finance"), Mode: ModeReport},
	}
}

type decideCase struct {
	name    string
	req     Request
	caller  *Caller
	effect  Effect
	reason  Reason
	granted string
	denied  string
	group   string
	matched []string
}

func get(path string) Request { return Request{Method: "GET", Host: "api.example.com", Path: path} }

func req(method, path string) Request {
	return Request{Method: method, Host: "api.example.com", Path: path}
}

func runDecide(t *testing.T, p *Policy, cases []decideCase) {
	t.Helper()
	for _, tc := range cases {
		d := p.Decide(tc.req, tc.caller)
		if d.Effect != tc.effect || d.Reason != tc.reason || d.Granted != tc.granted ||
			d.Denied != tc.denied || d.DeniedGroup != tc.group {
			t.Errorf("%s: got %s/%s granted=%q denied=%q group=%q; want %s/%s granted=%q denied=%q group=%q\n%s",
				tc.name, d.Effect, d.Reason, d.Granted, d.Denied, d.DeniedGroup,
				tc.effect, tc.reason, tc.granted, tc.denied, tc.group, d.Explain())
		}
		if tc.matched != nil && !slices.Equal(d.Matched, tc.matched) {
			t.Errorf("%s: matched %q, want %q", tc.name, d.Matched, tc.matched)
		}
	}
}

func TestDecideSpecExamples(t *testing.T) {
	t.Parallel()
	p := mustCompile(t, specRules()...)
	finance, auditor := tokenCaller("Finance"), tokenCaller("auditors")
	contractor := tokenCaller("Finance", "Contractors")
	me := withScopes(tokenCaller("Staff"), "profile:read", "openid")
	both := []string{"billing-read", "no-contractors"}
	runDecide(t, p, []decideCase{
		// Grants, and the combining algorithm.
		{name: "group grant", req: get("/billing/x"), caller: finance, effect: Allow, reason: ReasonOK, granted: "billing-read", matched: both},
		{name: "names compare case-insensitively", req: get("/billing/x"), caller: auditor, effect: Allow, reason: ReasonOK, granted: "billing-read"},
		{name: "deny wins over grant", req: get("/billing/x"), caller: contractor, effect: Deny, reason: ReasonForbidden, denied: "no-contractors", group: "Contractors", matched: both},
		{name: "not in any allow group", req: get("/billing/x"), caller: tokenCaller("Sales"), effect: Deny, reason: ReasonForbidden, matched: both},
		{name: "no caller groups", req: get("/billing/x"), caller: tokenCaller(), effect: Deny, reason: ReasonForbidden},
		{name: "no matching rule means deny", req: get("/payroll"), caller: finance, effect: Deny, reason: ReasonForbidden, matched: []string{}},
		// Patterns.
		{name: "** matches zero segments", req: get("/billing"), caller: finance, effect: Allow, reason: ReasonOK, granted: "billing-read"},
		{name: "** matches trailing slash", req: get("/billing/"), caller: finance, effect: Allow, reason: ReasonOK, granted: "billing-read"},
		{name: "** matches many segments", req: get("/billing/a/b"), caller: finance, effect: Allow, reason: ReasonOK, granted: "billing-read"},
		{name: "patterns are case-sensitive", req: get("/Billing/a"), caller: finance, effect: Deny, reason: ReasonForbidden},
		{name: "literal segment is whole", req: get("/billingx"), caller: finance, effect: Deny, reason: ReasonForbidden},
		// Methods.
		{name: "GET rule matches HEAD", req: req("HEAD", "/billing/x"), caller: finance, effect: Allow, reason: ReasonOK, granted: "billing-read"},
		{name: "GET rule does not match POST", req: req("POST", "/billing/x"), caller: finance, effect: Deny, reason: ReasonForbidden, matched: []string{"no-contractors"}},
		{name: "deny without methods covers POST", req: req("POST", "/billing/x"), caller: contractor, effect: Deny, reason: ReasonForbidden, denied: "no-contractors", group: "Contractors"},
		{name: "lower-case method still meets deny", req: req("delete", "/billing/x"), caller: contractor, effect: Deny, reason: ReasonForbidden, denied: "no-contractors", group: "Contractors"},
		// Anonymous callers and public rules.
		{name: "anonymous on public", req: get("/healthz"), caller: nil, effect: Allow, reason: ReasonOK, granted: "health"},
		{name: "anonymous HEAD on public GET", req: req("HEAD", "/healthz/"), caller: nil, effect: Allow, reason: ReasonOK, granted: "health"},
		{name: "anonymous POST on public GET", req: req("POST", "/healthz"), caller: nil, effect: Deny, reason: ReasonUnauthorized},
		{name: "anonymous only public", req: get("/billing/x"), caller: nil, effect: Deny, reason: ReasonUnauthorized, matched: both},
		{name: "anonymous on authenticated route", req: get("/me"), caller: nil, effect: Deny, reason: ReasonUnauthorized},
		{name: "anonymous nowhere", req: get("/nothing"), caller: nil, effect: Deny, reason: ReasonUnauthorized},
		{name: "public admits any caller", req: get("/healthz"), caller: contractor, effect: Allow, reason: ReasonOK, granted: "health"},
		// Authenticated, hosts and scopes.
		{name: "authenticated with scope", req: get("/me"), caller: me, effect: Allow, reason: ReasonOK, granted: "me"},
		{name: "missing scope", req: get("/me"), caller: tokenCaller("Staff"), effect: Deny, reason: ReasonInsufficientScope, matched: []string{"me"}},
		{name: "scope compare is exact", req: get("/me"), caller: withScopes(tokenCaller(), "Profile:Read"), effect: Deny, reason: ReasonInsufficientScope},
		{name: "other host", req: Request{Method: "GET", Host: "other.example.com", Path: "/me"}, caller: me, effect: Deny, reason: ReasonForbidden, matched: []string{}},
		{name: "no host", req: Request{Method: "GET", Path: "/me"}, caller: me, effect: Deny, reason: ReasonForbidden},
		{name: "host case, port and trailing dot", req: Request{Method: "GET", Host: "API.Example.com.:8443", Path: "/me"}, caller: me, effect: Allow, reason: ReasonOK, granted: "me"},
		{name: "rule without hosts matches any host", req: Request{Method: "GET", Host: "x.test", Path: "/healthz"}, effect: Allow, reason: ReasonOK, granted: "health"},
	})
}

func TestDecideDenyWinsOverPublic(t *testing.T) {
	t.Parallel()
	p := mustCompile(t,
		Rule{Name: "open", Path: "/open/**", Public: true},
		Rule{Name: "block", Path: "/open/secret", Deny: names("Blocked")},
		Rule{Name: "public-with-deny", Path: "/pd", Public: true, Deny: names("Blocked")},
		Rule{Name: "deny-only", Path: "/d", Deny: names("Blocked")},
	)
	blocked := tokenCaller("blocked")
	runDecide(t, p, []decideCase{
		{name: "deny beats public", req: get("/open/secret"), caller: blocked, effect: Deny, reason: ReasonForbidden, denied: "block", group: "Blocked", matched: []string{"block", "open"}},
		{name: "trailing slash does not escape a deny", req: get("/open/secret/"), caller: blocked, effect: Deny, reason: ReasonForbidden, denied: "block", group: "Blocked"},
		{name: "public for others", req: get("/open/secret"), caller: tokenCaller("x"), effect: Allow, reason: ReasonOK, granted: "open"},
		{name: "anonymous is in no deny group", req: get("/open/secret"), caller: nil, effect: Allow, reason: ReasonOK, granted: "open"},
		{name: "public rule's own deny", req: get("/pd"), caller: blocked, effect: Deny, reason: ReasonForbidden, denied: "public-with-deny", group: "Blocked"},
		{name: "public rule's own deny, anonymous", req: get("/pd"), caller: nil, effect: Allow, reason: ReasonOK, granted: "public-with-deny"},
		{name: "deny only grants nothing", req: get("/d"), caller: tokenCaller("x"), effect: Deny, reason: ReasonForbidden, matched: []string{"deny-only"}},
		{name: "deny only, anonymous", req: get("/d"), caller: nil, effect: Deny, reason: ReasonUnauthorized},
	})
}

func TestDecideScopes(t *testing.T) {
	t.Parallel()
	p := mustCompile(t,
		Rule{Name: "write", Path: "/docs/**", Methods: []string{"PUT"}, Allow: names("Editors"), Scopes: []string{"docs:write", "docs:read"}},
		Rule{Name: "write-admin", Path: "/docs/**", Methods: []string{"PUT"}, Allow: names("Admins")},
		Rule{Name: "no-interns", Path: "/docs/**", Deny: names("Interns")},
	)
	editor := tokenCaller("Editors")
	runDecide(t, p, []decideCase{
		{name: "all scopes present", req: req("PUT", "/docs/a"), caller: withScopes(editor, "docs:read", "docs:write"), effect: Allow, reason: ReasonOK, granted: "write"},
		{name: "one scope missing", req: req("PUT", "/docs/a"), caller: withScopes(editor, "docs:write"), effect: Deny, reason: ReasonInsufficientScope},
		{name: "not in group: forbidden, not insufficient_scope", req: req("PUT", "/docs/a"), caller: tokenCaller("Sales"), effect: Deny, reason: ReasonForbidden},
		{name: "another rule grants without scopes", req: req("PUT", "/docs/a"), caller: tokenCaller("Editors", "Admins"), effect: Allow, reason: ReasonOK, granted: "write-admin"},
		{name: "deny applies regardless of scopes", req: req("PUT", "/docs/a"), caller: withScopes(tokenCaller("Editors", "Interns"), "docs:read", "docs:write"), effect: Deny, reason: ReasonForbidden, denied: "no-interns", group: "Interns"},
		{name: "deny beats insufficient scope", req: req("PUT", "/docs/a"), caller: tokenCaller("Editors", "Interns"), effect: Deny, reason: ReasonForbidden, denied: "no-interns", group: "Interns"},
	})
}

func TestDecideMethodsAndHosts(t *testing.T) {
	t.Parallel()
	p := mustCompile(t,
		Rule{Name: "head-only", Path: "/h", Methods: []string{"HEAD"}, AllowAuthenticated: true},
		Rule{Name: "any-method", Path: "/any", AllowAuthenticated: true},
		Rule{Name: "wild", Path: "/w", AllowAuthenticated: true, Hosts: []string{"*.example.com"}},
	)
	c := tokenCaller()
	runDecide(t, p, []decideCase{
		{name: "HEAD rule does not match GET", req: get("/h"), caller: c, effect: Deny, reason: ReasonForbidden},
		{name: "HEAD rule matches HEAD", req: req("HEAD", "/h"), caller: c, effect: Allow, reason: ReasonOK, granted: "head-only"},
		{name: "unknown method, rule without methods", req: req("PROPFIND", "/any"), caller: c, effect: Allow, reason: ReasonOK, granted: "any-method"},
		{name: "unknown method, rule with methods", req: req("PROPFIND", "/h"), caller: c, effect: Deny, reason: ReasonForbidden},
		{name: "wildcard host, one label", req: Request{Method: "GET", Host: "a.example.com", Path: "/w"}, caller: c, effect: Allow, reason: ReasonOK, granted: "wild"},
		{name: "wildcard host, two labels", req: Request{Method: "GET", Host: "a.b.example.com", Path: "/w"}, caller: c, effect: Allow, reason: ReasonOK, granted: "wild"},
		{name: "wildcard host, not apex", req: Request{Method: "GET", Host: "example.com", Path: "/w"}, caller: c, effect: Deny, reason: ReasonForbidden},
		{name: "wildcard host, not a lookalike", req: Request{Method: "GET", Host: "badexample.com", Path: "/w"}, caller: c, effect: Deny, reason: ReasonForbidden},
	})
}

func TestDecideDisabledRulesIgnored(t *testing.T) {
	t.Parallel()
	p := mustCompileAsIs(t,
		Rule{Name: "grant", Path: "/a", Allow: names("G"), Enabled: true},
		Rule{Name: "off-deny", Path: "/a", Deny: names("G")},
		Rule{Name: "off-grant", Path: "/b", AllowAuthenticated: true},
		Rule{Name: "off-report", Path: "/a", Deny: names("G"), Mode: ModeReport},
	)
	if p.Len() != 4 {
		t.Errorf("Len() = %d, want 4 (disabled rules count)", p.Len())
	}
	runDecide(t, p, []decideCase{
		{name: "disabled deny", req: get("/a"), caller: tokenCaller("G"), effect: Allow, reason: ReasonOK, granted: "grant", matched: []string{"grant"}},
		{name: "disabled grant", req: get("/b"), caller: tokenCaller("G"), effect: Deny, reason: ReasonForbidden, matched: []string{}},
	})
	if d := p.Decide(get("/a"), tokenCaller("G")); d.Shadow != nil {
		t.Errorf("disabled report rule produced a shadow: %+v", d.Shadow)
	}
}

func TestDecideGroupIDsAndNames(t *testing.T) {
	t.Parallel()
	// The rule is bound to 00gFIN, whose current name is "Money" (renamed
	// from "Finance" in Okta and synced since).
	p := mustCompile(t,
		Rule{Name: "bound", Path: "/bound", Allow: []GroupRef{{ID: "00gFIN", Name: "Money"}}},
		Rule{Name: "by-name", Path: "/byname", Allow: names("Équipe")},
		Rule{Name: "deny-bound", Path: "/bound", Deny: []GroupRef{{ID: "00gBAD", Name: "Bad"}}},
	)
	dir := func(id, name string) *Caller { return NewCaller("bob", []GroupRef{{ID: id, Name: name}}, nil) }
	runDecide(t, p, []decideCase{
		{name: "directory group by id, stale name", req: get("/bound"), caller: dir("00gFIN", "Finance"), effect: Allow, reason: ReasonOK, granted: "bound"},
		{name: "token with current name", req: get("/bound"), caller: tokenCaller("money"), effect: Allow, reason: ReasonOK, granted: "bound"},
		{name: "token with the old name", req: get("/bound"), caller: tokenCaller("Finance"), effect: Deny, reason: ReasonForbidden},
		{name: "other directory group sharing the name", req: get("/bound"), caller: dir("00gOTHER", "Money"), effect: Deny, reason: ReasonForbidden},
		{name: "ids compare exactly", req: get("/bound"), caller: dir("00gfin", "x"), effect: Deny, reason: ReasonForbidden},
		{name: "deny by id", req: get("/bound"), caller: NewCaller("c", []GroupRef{{ID: "00gFIN", Name: "Money"}, {ID: "00gBAD", Name: "Renamed"}}, nil), effect: Deny, reason: ReasonForbidden, denied: "deny-bound", group: "Bad"},
		{name: "unbound ref matches directory group by name", req: get("/byname"), caller: dir("00gEQ", "équipe"), effect: Allow, reason: ReasonOK, granted: "by-name"},
		{name: "unicode case folding", req: get("/byname"), caller: tokenCaller("ÉQUIPE"), effect: Allow, reason: ReasonOK, granted: "by-name"},
	})
}

func TestDecideFirstByName(t *testing.T) {
	t.Parallel()
	p := mustCompile(t,
		Rule{Name: "c-grant", Path: "/x", AllowAuthenticated: true},
		Rule{Name: "a-grant", Path: "/*", AllowAuthenticated: true},
		Rule{Name: "b-grant", Path: "/x/**", Allow: names("G")},
		Rule{Name: "z-deny", Path: "/**", Deny: names("D1")},
		Rule{Name: "y-deny", Path: "/x", Deny: names("D2", "D1")},
	)
	runDecide(t, p, []decideCase{
		{name: "first grant by name", req: get("/x"), caller: tokenCaller("G"), effect: Allow, reason: ReasonOK, granted: "a-grant",
			matched: []string{"a-grant", "b-grant", "c-grant", "y-deny", "z-deny"}},
		{name: "first deny by name, first group in it", req: get("/x"), caller: tokenCaller("D1", "D2"), effect: Deny, reason: ReasonForbidden, denied: "y-deny", group: "D1"},
	})
}

func TestDecideOrderIndependent(t *testing.T) {
	t.Parallel()
	rules := append(specRules(),
		Rule{Name: "flip", Path: "/billing/**", Deny: names("Auditors"), Mode: ModeReport},
		Rule{Name: "all", Path: "/**", AllowAuthenticated: true, Methods: []string{"OPTIONS"}},
	)
	reqs := []Request{get("/billing/x"), req("OPTIONS", "/billing"), get("/export/a"), get("/me"), get("/healthz")}
	callers := []*Caller{nil, tokenCaller("Finance"), tokenCaller("Auditors", "Contractors"), withScopes(tokenCaller(), "profile:read")}
	base := mustCompile(t, slices.Clone(rules)...)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		shuffled := slices.Clone(rules)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		p := mustCompile(t, shuffled...)
		for _, r := range reqs {
			for _, c := range callers {
				if a, b := base.Decide(r, c).Explain(), p.Decide(r, c).Explain(); a != b {
					t.Fatalf("order changed the decision for %v:\n%s\nvs\n%s", r, a, b)
				}
			}
		}
	}
}

func TestDecideShadow(t *testing.T) {
	t.Parallel()
	p := mustCompile(t, append(specRules(),
		Rule{Name: "report-deny-auditors", Path: "/billing/**", Deny: names("Auditors"), Mode: ModeReport},
		Rule{Name: "report-same", Path: "/healthz", Public: true, Mode: ModeReport},
	)...)
	for _, tc := range []struct {
		name     string
		req      Request
		caller   *Caller
		real     Effect
		shadow   *Shadow
		realRule string
	}{
		{name: "flip to allow", req: get("/export/x"), caller: tokenCaller("Finance"), real: Deny,
			shadow: &Shadow{Effect: Allow, Reason: ReasonOK, Matched: []string{"new-export"}, Granted: "new-export", Changed: true}},
		{name: "flip to deny", req: get("/billing/x"), caller: tokenCaller("Auditors"), real: Allow, realRule: "billing-read",
			shadow: &Shadow{Effect: Deny, Reason: ReasonForbidden, Matched: []string{"report-deny-auditors"}, Denied: "report-deny-auditors", DeniedGroup: "Auditors", Changed: true}},
		{name: "no change", req: get("/billing/x"), caller: tokenCaller("Finance"), real: Allow, realRule: "billing-read",
			shadow: &Shadow{Effect: Allow, Reason: ReasonOK, Matched: []string{"report-deny-auditors"}, Granted: "billing-read"}},
		{name: "no change, both allow", req: get("/healthz"), caller: nil, real: Allow, realRule: "health",
			shadow: &Shadow{Effect: Allow, Reason: ReasonOK, Matched: []string{"report-same"}, Granted: "health"}},
		{name: "no report rule matched", req: get("/me"), caller: nil, real: Deny, shadow: nil},
		{name: "report rule not matched by anonymous reason", req: get("/export/x"), caller: nil, real: Deny,
			shadow: &Shadow{Effect: Deny, Reason: ReasonUnauthorized, Matched: []string{"new-export"}}},
	} {
		d := p.Decide(tc.req, tc.caller)
		if d.Effect != tc.real || d.Granted != tc.realRule {
			t.Errorf("%s: real decision %s granted=%q, want %s granted=%q", tc.name, d.Effect, d.Granted, tc.real, tc.realRule)
		}
		for _, m := range d.Matched {
			if m == "new-export" || m == "report-deny-auditors" || m == "report-same" {
				t.Errorf("%s: report rule %s in enforced Matched", tc.name, m)
			}
		}
		switch {
		case tc.shadow == nil && d.Shadow != nil:
			t.Errorf("%s: unexpected shadow %+v", tc.name, *d.Shadow)
		case tc.shadow != nil && d.Shadow == nil:
			t.Errorf("%s: no shadow, want %+v", tc.name, *tc.shadow)
		case tc.shadow != nil:
			if !reflect.DeepEqual(d.Shadow, tc.shadow) {
				t.Errorf("%s: shadow %+v, want %+v", tc.name, *d.Shadow, *tc.shadow)
			}
		}
	}
}

func TestDecideNilAndEmptyPolicy(t *testing.T) {
	t.Parallel()
	empty := mustCompile(t)
	for _, p := range []*Policy{nil, empty} {
		if d := p.Decide(get("/x"), nil); d.Effect != Deny || d.Reason != ReasonUnauthorized {
			t.Errorf("anonymous on empty policy: %s/%s", d.Effect, d.Reason)
		}
		if d := p.Decide(get("/x"), tokenCaller("G")); d.Effect != Deny || d.Reason != ReasonForbidden {
			t.Errorf("caller on empty policy: %s/%s", d.Effect, d.Reason)
		}
	}
}

func TestCallerAccessors(t *testing.T) {
	t.Parallel()
	var anon *Caller
	if anon.Subject() != "" || anon.Groups() != nil || anon.Scopes() != nil || anon.HasScope("x") || anon.InGroup(GroupRef{Name: "x"}) {
		t.Error("nil Caller must be anonymous")
	}
	groups := []GroupRef{{Name: "Straße"}, {ID: "00g1", Name: "Ops"}}
	c := NewCaller("s", groups, []string{"a"})
	groups[0].Name = "changed" // NewCaller must have copied
	if !c.InGroup(GroupRef{Name: "STRASSE"}) && !c.InGroup(GroupRef{Name: "straße"}) {
		t.Error("case-insensitive name lookup failed")
	}
	if !c.InGroup(GroupRef{Name: "straße"}) || !c.InGroup(GroupRef{ID: "00g1"}) || c.InGroup(GroupRef{ID: "00g2", Name: "Ops"}) {
		t.Error("InGroup disagrees with the documented id/name semantics")
	}
	if !c.HasScope("a") || c.HasScope("A") || c.Subject() != "s" || len(c.Groups()) != 2 {
		t.Error("accessors")
	}
}

func TestFoldKey(t *testing.T) {
	t.Parallel()
	words := []string{"finance", "FINANCE", "Finance", "K", "k", "\u212a", "ſ", "s", "S", "Σ", "σ", "ς", "é", "É", "ǅ", "ǆ", "Ǆ", "ß", "ẞ"}
	for _, a := range words {
		for _, b := range words {
			if eq, fold := foldKey(a) == foldKey(b), strings.EqualFold(a, b); eq != fold {
				t.Errorf("foldKey(%q)==foldKey(%q) is %v, EqualFold says %v", a, b, eq, fold)
			}
		}
	}
	// Stricter than EqualFold on purpose: invalid bytes are not all one rune.
	if foldKey("\xff") == foldKey("\xfe") {
		t.Error("distinct invalid names must not fold together")
	}
	if foldKey("finance") != "finance" || foldKey("FinAnce") != "finance" {
		t.Error("ASCII names must fold to lower case")
	}
}

func TestDecideConcurrent(t *testing.T) {
	t.Parallel()
	p := mustCompile(t, specRules()...)
	c := tokenCaller("Finance")
	done := make(chan bool)
	for range 4 {
		go func() {
			ok := true
			for range 200 {
				ok = ok && p.Decide(get("/billing/x"), c).Effect == Allow
			}
			done <- ok
		}()
	}
	for range 4 {
		if !<-done {
			t.Error("concurrent Decide disagreed")
		}
	}
}
