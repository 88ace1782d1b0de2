package quota

import (
	"errors"
	"fmt"
	"testing"

	"github.com/okproxy/okproxy/internal/policy"
)

func TestParseAndFormatWindow(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		secs int64
		out  string
	}{
		{"1s", 1, "1s"}, {"90s", 90, "1m30s"}, {"1m", 60, "1m"}, {"1h", 3600, "1h"}, {"1h30m", 5400, "1h30m"},
		{"1d", 86400, "1d"}, {"7d", 604800, "7d"}, {"1d12h", 129600, "1d12h"}, {" 2s ", 2, "2s"}, {"366d", 366 * 86400, "366d"},
	} {
		got, err := ParseWindow(c.in)
		if err != nil || got != c.secs {
			t.Errorf("ParseWindow(%q) = %d, %v; want %d", c.in, got, err, c.secs)
			continue
		}
		if f := FormatWindow(got); f != c.out {
			t.Errorf("FormatWindow(%d) = %q, want %q", got, f, c.out)
		}
		if back, err := ParseWindow(FormatWindow(got)); err != nil || back != got {
			t.Errorf("round trip of %d: %d %v", got, back, err)
		}
	}
	for _, bad := range []string{"", "0s", "500ms", "1.5s", "-1h", "1x", "d", "1h2d", "367d", "abc", "1d-1h"} {
		if s, err := ParseWindow(bad); err == nil {
			t.Errorf("ParseWindow(%q) = %d, want an error", bad, s)
		}
	}
}

func TestValidateNamesTheField(t *testing.T) {
	t.Parallel()
	ok := Quota{Name: "dev-tier", Group: policy.GroupRef{Name: "Developers"}, Limit: 10, WindowSeconds: 60}
	ok.Normalize()
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid quota: %v", err)
	}
	if ok.Path != "/**" || ok.Per != PerUser {
		t.Fatalf("defaults: %+v", ok)
	}
	for field, mutate := range map[string]func(*Quota){
		"name":   func(q *Quota) { q.Name = "Dev Tier" },
		"group":  func(q *Quota) { q.Group = policy.GroupRef{} },
		"limit":  func(q *Quota) { q.Limit = 0 },
		"window": func(q *Quota) { q.WindowSeconds = 0 },
		"path":   func(q *Quota) { q.Path = "/a/**/b" },
		"method": func(q *Quota) { q.Methods = []string{"FETCH"} },
		"per":    func(q *Quota) { q.Per = "team" },
	} {
		q := ok
		mutate(&q)
		var ve *policy.ValidationError
		if err := q.Validate(); !errors.As(err, &ve) || ve.Field != field {
			t.Errorf("%s: got %v, want a ValidationError on %q", field, err, field)
		}
	}
}

// inGroup must agree with policy.Caller.InGroup, which rules use: a quota
// and a rule naming the same group must see the same members.
func TestInGroupAgreesWithPolicy(t *testing.T) {
	t.Parallel()
	refs := []policy.GroupRef{
		{Name: "Finance"}, {Name: "finance"}, {ID: "00gfin00000000000000", Name: "Finance"},
		{ID: "00gother000000000000", Name: "Finance"}, {ID: "00gfin00000000000000"}, {Name: "ΣIGMA"}, {Name: ""},
	}
	// A name two synced groups share applies to nobody.
	amb := policy.GroupRef{Name: "finance"}
	shared := policy.NewGroups([]policy.GroupRef{{ID: "00gfin00000000000000", Name: "Finance"}, {ID: "00gother000000000000", Name: "FINANCE"}})
	shared.Mark(&amb)
	refs = append(refs, amb)
	// Bound refs whose names the two groups share ignoring case: a token's
	// name meets them only exactly.
	b1, b2 := policy.GroupRef{ID: "00gfin00000000000000", Name: "Finance"}, policy.GroupRef{ID: "00gother000000000000", Name: "FINANCE"}
	shared.Mark(&b1)
	shared.Mark(&b2)
	refs = append(refs, b1, b2)
	callers := [][]policy.GroupRef{
		nil,
		{{Name: "FINANCE"}},
		{{Name: "Finance"}},
		{{Name: "finance"}},
		{{ID: "00gfin00000000000000", Name: "Finance"}},
		{{ID: "00gother000000000000", Name: "Renamed"}},
		{{ID: "00gx0000000000000000", Name: "Finance"}},
		{{Name: "σigma"}},
		{{Name: ""}},
	}
	for _, groups := range callers {
		c := policy.NewCaller("u", groups, nil)
		for _, ref := range refs {
			got, want := inGroup(groups, ref), c.InGroup(ref)
			if got != want {
				t.Errorf("inGroup(%v, %v) = %v, policy says %v", groups, ref, got, want)
			}
			if got && ref.IsAmbiguous() {
				t.Errorf("inGroup(%v, %v): an ambiguous name matched", groups, ref)
			}
		}
	}
}

func testSet(qs ...Quota) *set {
	for i := range qs {
		qs[i].ID = int64(i + 1)
		qs[i].Normalize()
	}
	return compileSet(&Loaded{Quotas: qs}, newMetrics(nil, nil))
}

func TestSelectQuota(t *testing.T) {
	t.Parallel()
	s := testSet(
		Quota{Name: "free", Group: policy.GroupRef{Name: "Free"}, Limit: 10, WindowSeconds: 60},
		Quota{Name: "pro", Group: policy.GroupRef{Name: "Pro"}, Limit: 100, WindowSeconds: 60},
		// 1000/day is fewer per second than 10/minute.
		Quota{Name: "daily", Group: policy.GroupRef{Name: "Daily"}, Limit: 1000, WindowSeconds: 86400},
		Quota{Name: "exports", Group: policy.GroupRef{ID: "00gexp00000000000000", Name: "Exporters"}, Limit: 5000, WindowSeconds: 60,
			Path: "/export/**", Methods: []string{"GET"}},
	)
	g := func(names ...string) []policy.GroupRef {
		var out []policy.GroupRef
		for _, n := range names {
			out = append(out, policy.GroupRef{Name: n})
		}
		return out
	}
	for _, c := range []struct {
		method, path string
		groups       []policy.GroupRef
		want         string
	}{
		{"GET", "/x", g("Free"), "free"},
		{"GET", "/x", g("free", "Pro"), "pro"},
		{"GET", "/x", g("Pro", "Free"), "pro"},
		{"GET", "/x", g("Free", "Daily"), "free"},
		{"GET", "/x", g("Daily"), "daily"},
		{"GET", "/x", g("Nobody"), ""},
		{"GET", "/x", nil, ""},
		{"GET", "/export/a", g("Exporters", "Free"), "exports"},
		{"HEAD", "/export/a", g("Exporters"), "exports"},
		{"POST", "/export/a", g("Exporters", "Free"), "free"},
		{"GET", "/other", g("Exporters"), ""},
		{"GET", "/export/a", []policy.GroupRef{{ID: "00gexp00000000000000", Name: "Renamed"}}, "exports"},
		{"GET", "/export/a", []policy.GroupRef{{ID: "00gimpostor000000000", Name: "Exporters"}}, ""},
	} {
		q := s.selectQuota(c.method, c.path, c.groups)
		got := ""
		if q != nil {
			got = q.Name
		}
		if got != c.want {
			t.Errorf("%s %s %v: quota %q, want %q", c.method, c.path, c.groups, got, c.want)
		}
	}
}

func TestMoreGenerousIsATotalOrder(t *testing.T) {
	t.Parallel()
	var qs []*compiled
	for i, lw := range [][2]int64{{10, 60}, {600, 3600}, {1, 1}, {1 << 62, 1 << 20}, {1 << 62, 1 << 21}, {60, 60}, {3600, 3600}} {
		qs = append(qs, &compiled{Quota: Quota{Name: fmt.Sprint("q", i), Limit: lw[0], WindowSeconds: lw[1]}})
	}
	for _, a := range qs {
		if moreGenerous(a, a) {
			t.Errorf("%s more generous than itself", a.Name)
		}
		for _, b := range qs {
			if a != b && moreGenerous(a, b) == moreGenerous(b, a) {
				t.Errorf("%s vs %s: not antisymmetric", a.Name, b.Name)
			}
		}
	}
	// Equal rate: the larger limit wins; 10/60s is the same rate as 600/3600s.
	if !moreGenerous(qs[1], qs[0]) {
		t.Error("600/1h should beat 10/1m at equal rate")
	}
	// No overflow: 2^62 per 2^20 s beats 2^62 per 2^21 s.
	if !moreGenerous(qs[3], qs[4]) {
		t.Error("overflowing comparison")
	}
}
