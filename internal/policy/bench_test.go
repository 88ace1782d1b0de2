package policy

import (
	"math/rand/v2"
	"strconv"
	"testing"
)

// benchRules builds a realistic rule set: services/25 services, each with 25
// rules under its own prefix (group grants, scoped writes, admin areas, a
// deny, a public health check, host-scoped and wildcard rules, a few
// report-only rules), plus the odd global rule.
func benchRules(services int) []Rule {
	rules := make([]Rule, 0, services*25)
	for i := range services {
		svc := "svc" + strconv.Itoa(i)
		g := func(n int) GroupRef { return GroupRef{Name: "Group" + strconv.Itoa(n%60)} }
		add := func(r Rule) {
			r.Name = svc + "-" + r.Name
			r.Enabled = true
			rules = append(rules, r)
		}
		add(Rule{Name: "read", Path: "/" + svc + "/**", Methods: []string{"GET"}, Allow: []GroupRef{g(i), g(i + 1)}})
		add(Rule{Name: "write", Path: "/" + svc + "/items/*", Methods: []string{"POST", "PUT"}, Allow: []GroupRef{g(i)}, Scopes: []string{"write"}})
		add(Rule{Name: "admin", Path: "/" + svc + "/admin/**", Allow: []GroupRef{{ID: "00gadmin" + strconv.Itoa(i%10), Name: "Admins" + strconv.Itoa(i%10)}}})
		add(Rule{Name: "no-contractors", Path: "/" + svc + "/**", Deny: []GroupRef{{Name: "Contractors"}}})
		add(Rule{Name: "health", Path: "/" + svc + "/healthz", Methods: []string{"GET"}, Public: true})
		add(Rule{Name: "sub", Path: "/" + svc + "/items/*/sub/**", Methods: []string{"GET"}, AllowAuthenticated: true,
			Hosts: []string{"api" + strconv.Itoa(i%5) + ".example.com", "*.internal.example.com"}})
		for k := range 19 {
			r := Rule{Name: "v" + strconv.Itoa(k), Path: "/" + svc + "/v" + strconv.Itoa(k) + "/res/*", Allow: []GroupRef{g(i + k)}}
			switch k % 5 {
			case 1:
				r.Path += "/**"
				r.Methods = []string{"GET", "DELETE"}
			case 2:
				r.Mode = ModeReport
			case 3:
				r.Deny = []GroupRef{g(i + k + 7)}
			case 4:
				r.Hosts = []string{"api.example.com"}
			}
			add(r)
		}
	}
	for j, r := range []Rule{
		{Name: "global-options", Path: "/**", Methods: []string{"OPTIONS"}, AllowAuthenticated: true},
		{Name: "global-no-suspended", Path: "/**", Deny: []GroupRef{{Name: "Suspended"}}},
		{Name: "global-version", Path: "/*/version", Methods: []string{"GET"}, Public: true},
		{Name: "global-report", Path: "/*/v1/**", Deny: []GroupRef{{Name: "Group7"}}, Mode: ModeReport},
	} {
		r.Enabled = true
		rules[len(rules)-1-j*len(rules)/4] = r // replace, keeping the count exact
	}
	return rules
}

type benchCase struct {
	req    Request
	caller *Caller
}

func benchCases(services, n int) []benchCase {
	rng := rand.New(rand.NewPCG(42, 7))
	callers := []*Caller{nil}
	for c := range 32 {
		groups := make([]GroupRef, 10)
		for j := range groups {
			groups[j] = GroupRef{Name: "group" + strconv.Itoa(rng.IntN(60))}
			if c%2 == 1 { // directory-sourced callers carry ids
				groups[j].ID = "00g" + strconv.Itoa(rng.IntN(1000))
			}
		}
		if c%8 == 0 {
			groups[0] = GroupRef{Name: "Contractors"}
		}
		if c%5 == 0 {
			groups[1] = GroupRef{ID: "00gadmin3", Name: "Admins3"}
		}
		callers = append(callers, NewCaller("user"+strconv.Itoa(c), groups, []string{"openid", "write"}))
	}
	methods := []string{"GET", "GET", "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"}
	hosts := []string{"api.example.com", "api3.example.com", "x.internal.example.com", "other.test"}
	cases := make([]benchCase, n)
	for i := range cases {
		svc := "/svc" + strconv.Itoa(rng.IntN(services))
		id := strconv.Itoa(rng.IntN(100000))
		var path string
		switch rng.IntN(8) {
		case 0:
			path = svc + "/items/" + id
		case 1:
			path = svc + "/items/" + id + "/sub/a/b"
		case 2:
			path = svc + "/admin/users/" + id
		case 3:
			path = svc + "/healthz"
		case 4:
			path = svc + "/v1/res/" + id + "/deep/er/"
		case 5:
			path = svc + "/nope"
		default:
			path = svc + "/v" + strconv.Itoa(rng.IntN(19)) + "/res/" + id
		}
		cases[i] = benchCase{
			req:    Request{Method: methods[rng.IntN(len(methods))], Host: hosts[rng.IntN(len(hosts))], Path: path},
			caller: callers[rng.IntN(len(callers))],
		}
	}
	return cases
}

func benchmarkDecide(b *testing.B, services int) {
	p, err := Compile(benchRules(services))
	if err != nil {
		b.Fatal(err)
	}
	cases := benchCases(services, 4096)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c := &cases[i%len(cases)]
		_ = p.Decide(c.req, c.caller)
		i++
	}
}

// BenchmarkDecide10k is the performance bar: 10,000 rules, < 5 µs/op and at
// most 2 allocations per decision.
func BenchmarkDecide10k(b *testing.B) { benchmarkDecide(b, 400) }

// BenchmarkDecide100 shows that cost does not grow with the rule count.
func BenchmarkDecide100(b *testing.B) { benchmarkDecide(b, 4) }

func BenchmarkCanonicalPath(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_, _ = CanonicalPath("/svc12/items/12345/sub/a/b")
	}
}

// TestDecideAllocs keeps the allocation bar in the ordinary test run, where
// a regression is noticed without anyone running benchmarks.
func TestDecideAllocs(t *testing.T) {
	p, err := Compile(benchRules(400))
	if err != nil {
		t.Fatal(err)
	}
	if p.Len() != 10000 {
		t.Fatalf("Len() = %d", p.Len())
	}
	shadows, allows := 0, 0
	for _, c := range benchCases(400, 2000) {
		d := p.Decide(c.req, c.caller)
		if d.Shadow != nil {
			shadows++
		}
		if d.Effect == Allow {
			allows++
		}
		if n := testing.AllocsPerRun(5, func() { p.Decide(c.req, c.caller) }); n > 2 {
			t.Fatalf("Decide(%+v) made %v allocations, want <= 2", c.req, n)
		}
	}
	t.Logf("%d shadows, %d allows of 2000", shadows, allows)
	// The mix must exercise every branch the benchmark claims to cover.
	if shadows == 0 || allows == 0 || allows == 2000 {
		t.Errorf("unrealistic mix: %d shadows, %d allows of 2000", shadows, allows)
	}
}
