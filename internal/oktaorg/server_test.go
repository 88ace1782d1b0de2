package oktaorg

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

type fixture struct {
	clock *Clock
	srv   *Server
	hs    *httptest.Server
}

func newFixture(t *testing.T, mod func(*Config)) *fixture {
	t.Helper()
	clock := NewClock(time.Date(2026, 3, 1, 12, 0, 30, 0, time.UTC))
	org, err := LoadFile("../../testdata/okta/small-org.json", clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Org: org, APIToken: "tok", Now: clock.Now}
	if mod != nil {
		mod(&cfg)
	}
	f := &fixture{clock: clock, srv: NewHandler(cfg)}
	f.hs = httptest.NewServer(f.srv)
	t.Cleanup(f.hs.Close)
	return f
}

func (f *fixture) get(t *testing.T, path string, auth string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", f.hs.URL+path, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestPaginationLinks(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	var ids []string
	path := "/api/v1/groups?limit=4"
	for pages := 0; path != ""; pages++ {
		if pages > 5 {
			t.Fatal("too many pages")
		}
		resp, body := f.get(t, path, "SSWS tok")
		var gs []Group
		if err := json.Unmarshal(body, &gs); err != nil {
			t.Fatal(err)
		}
		for _, g := range gs {
			ids = append(ids, g.ID)
		}
		links := resp.Header.Values("Link")
		path = ""
		for _, l := range links {
			if strings.Contains(l, ",") {
				t.Fatalf("Link headers must be separate: %q", l)
			}
			if strings.HasSuffix(l, `rel="next"`) {
				u, _ := url.Parse(strings.Trim(strings.Split(l, ";")[0], "<>"))
				path = u.RequestURI()
			}
		}
		if !strings.HasSuffix(links[0], `rel="self"`) {
			t.Fatalf("first link is not self: %v", links)
		}
	}
	if len(ids) != 6 || ids[0] != "00gAuditors000000004" {
		t.Fatalf("paged groups: %v", ids)
	}
}

func TestAuthErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	for _, auth := range []string{"", "SSWS nope", "Bearer nope", "tok"} {
		resp, body := f.get(t, "/api/v1/groups", auth)
		if resp.StatusCode != 401 || !strings.Contains(string(body), `"errorCode":"E0000011"`) {
			t.Errorf("auth %q: %d %s", auth, resp.StatusCode, body)
		}
	}
	resp, body := f.get(t, "/api/v1/groups/00gNope0000000000000", "SSWS tok")
	if resp.StatusCode != 404 || !strings.Contains(string(body), "E0000007") {
		t.Fatalf("missing group: %d %s", resp.StatusCode, body)
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *Config) { c.RateLimit = 2 })
	for i := range 2 {
		resp, _ := f.get(t, "/api/v1/groups", "SSWS tok")
		if resp.StatusCode != 200 || resp.Header.Get("X-Rate-Limit-Remaining") != []string{"1", "0"}[i] {
			t.Fatalf("request %d: %d remaining %s", i, resp.StatusCode, resp.Header.Get("X-Rate-Limit-Remaining"))
		}
	}
	resp, body := f.get(t, "/api/v1/groups", "SSWS tok")
	if resp.StatusCode != 429 || !strings.Contains(string(body), `"errorCode":"E0000047"`) {
		t.Fatalf("over budget: %d %s", resp.StatusCode, body)
	}
	date, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil || !date.Equal(f.clock.Now().Truncate(time.Second)) {
		t.Fatalf("Date %q must come from the fake clock", resp.Header.Get("Date"))
	}
	if resp.Header.Get("X-Rate-Limit-Reset") != "1772366460" || resp.Header.Get("X-Rate-Limit-Limit") != "2" {
		t.Fatalf("headers: %v", resp.Header)
	}
	f.clock.Advance(30 * time.Second) // into the next minute
	if resp, _ := f.get(t, "/api/v1/groups", "SSWS tok"); resp.StatusCode != 200 {
		t.Fatalf("after reset: %d", resp.StatusCode)
	}
	if n := f.srv.Count(OpListGroups); n != 4 {
		t.Fatalf("counted %d", n)
	}
}

func TestFiltersAndShapes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	f.clock.Advance(time.Hour)
	f.srv.Org().AddMember("00gFinance0000000003", "00uAlice000000000001")
	cases := map[string]int{
		`filter=type eq "OKTA_GROUP"`:                                                           4,
		`filter=type eq "APP_GROUP" or type eq "BUILT_IN"`:                                      2,
		`filter=lastMembershipUpdated gt "2026-01-01T00:00:00.000Z"`:                            1,
		`search=profile.name sw "dev"`:                                                          1,
		`search=type eq "OKTA_GROUP" and (profile.name co "o" or id eq "00gEveryone000000001")`: 3,
		`q=Fin`: 1,
	}
	for q, want := range cases {
		k, v, _ := strings.Cut(q, "=")
		resp, body := f.get(t, "/api/v1/groups?"+k+"="+url.QueryEscape(v), "SSWS tok")
		var gs []map[string]any
		json.Unmarshal(body, &gs)
		if resp.StatusCode != 200 || len(gs) != want {
			t.Errorf("%s: %d, %d groups, want %d: %s", q, resp.StatusCode, len(gs), want, body)
		}
	}
	if resp, body := f.get(t, "/api/v1/groups?filter="+url.QueryEscape(`profile.name eq "x"`), "SSWS tok"); resp.StatusCode != 400 || !strings.Contains(string(body), "E0000031") {
		t.Fatalf("unsupported filter attribute: %d %s", resp.StatusCode, body)
	}
	// Members include DEPROVISIONED users; the plain users listing does not.
	_, body := f.get(t, "/api/v1/groups/00gContractors000005/users", "SSWS tok")
	if !strings.Contains(string(body), `"status":"DEPROVISIONED"`) || !strings.Contains(string(body), `"login":"erin@example.com"`) {
		t.Fatalf("members: %s", body)
	}
	_, body = f.get(t, "/api/v1/users", "SSWS tok")
	if strings.Contains(string(body), "DEPROVISIONED") {
		t.Fatal("users listing without search returned a DEPROVISIONED user")
	}
	_, body = f.get(t, "/api/v1/users?search="+url.QueryEscape(`status eq "DEPROVISIONED"`), "SSWS tok")
	if !strings.Contains(string(body), "erin@example.com") {
		t.Fatalf("users search: %s", body)
	}
	_, body = f.get(t, "/api/v1/groups/rules", "SSWS tok")
	var rules []GroupRule
	json.Unmarshal(body, &rules)
	if len(rules) != 3 || rules[0].Conditions.Expression.Value == "" || len(rules[0].Actions.AssignUserToGroups.GroupIDs) != 1 {
		t.Fatalf("rules: %s", body)
	}
	if resp, body := f.get(t, "/api/v1/users/alice@example.com", "SSWS tok"); resp.StatusCode != 200 || !strings.Contains(string(body), `"title":"Developer"`) {
		t.Fatalf("user by login: %d %s", resp.StatusCode, body)
	}
}

func TestFaults(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	f.srv.InjectFault(Fault{Op: OpGetGroup, After: 1, Count: 2})
	want := []int{200, 500, 500, 200}
	for i, w := range want {
		if resp, _ := f.get(t, "/api/v1/groups/00gFinance0000000003", "SSWS tok"); resp.StatusCode != w {
			t.Fatalf("request %d: %d, want %d", i, resp.StatusCode, w)
		}
	}
}

func TestGenerateDefaults(t *testing.T) {
	t.Parallel()
	o := Generate(GenerateConfig{})
	groups, users, memberships := o.Counts()
	if groups != 300 || users != 5000 || memberships < 5000 {
		t.Fatalf("generated %d groups, %d users, %d memberships", groups, users, memberships)
	}
	u, ok := o.UserByLogin("power.user@example.com")
	if !ok {
		t.Fatal("no power user")
	}
	n := 0
	for _, g := range o.Fixture().Groups {
		for _, id := range o.Members(g.ID) {
			if id == u.ID {
				n++
			}
		}
	}
	if n != 150 {
		t.Fatalf("power user in %d groups", n)
	}
	// Reproducible.
	if a, b := Generate(GenerateConfig{Users: 50, Groups: 10}).Fixture().Users[3].ID, Generate(GenerateConfig{Users: 50, Groups: 10}).Fixture().Users[3].ID; a != b {
		t.Fatal("generation is not deterministic")
	}
}

func TestCheckLoopback(t *testing.T) {
	t.Parallel()
	for addr, ok := range map[string]bool{"127.0.0.1:0": true, "localhost:80": true, "[::1]:1": true, "0.0.0.0:80": false, ":80": false, "10.0.0.1:80": false} {
		if err := CheckLoopback(addr); (err == nil) != ok {
			t.Errorf("%s: %v", addr, err)
		}
	}
}
