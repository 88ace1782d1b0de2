package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/okproxy/okproxy/internal/audit"
	"github.com/okproxy/okproxy/internal/authn"
	"github.com/okproxy/okproxy/internal/directory"
	"github.com/okproxy/okproxy/internal/oktatest"
	"github.com/okproxy/okproxy/internal/policy"
	"github.com/okproxy/okproxy/internal/snapshot"
)

// memSink is an in-memory audit.Sink for handler tests; the real writer is
// tested against Postgres in internal/audit and end to end in internal/server.
type memSink struct {
	mu     sync.Mutex
	events []audit.Event
	fail   bool
}

func (s *memSink) Reserve() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return errors.New("queue full and spool unwritable")
	}
	return nil
}
func (s *memSink) Commit(e *audit.Event) { s.mu.Lock(); s.events = append(s.events, *e); s.mu.Unlock() }
func (s *memSink) Record(e *audit.Event) error {
	if err := s.Reserve(); err != nil {
		return err
	}
	s.Commit(e)
	return nil
}
func (s *memSink) all() []audit.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]audit.Event(nil), s.events...)
}

type staticSnap struct{ s *snapshot.Snapshot }

func (s *staticSnap) Current() *snapshot.Snapshot { return s.s }

// seen is what the test upstream reports back about a request.
type seen struct {
	Method     string              `json:"method"`
	RequestURI string              `json:"request_uri"`
	Path       string              `json:"path"`
	Query      string              `json:"query"`
	Header     map[string][]string `json:"header"`
}

type env struct {
	t        *testing.T
	iss      *oktatest.Server
	upstream *httptest.Server
	proxy    *httptest.Server
	sink     *memSink
	snap     *staticSnap
	h        *Handler
}

// testRules returns fresh rules each call: Normalize sorts their slices in
// place, and parallel tests must not share them.
func testRules() []policy.Rule {
	return []policy.Rule{
		{Name: "billing-read", Path: "/billing/**", Methods: []string{"GET"}, Allow: []policy.GroupRef{{Name: "Finance"}, {Name: "Auditors"}}, Enabled: true},
		{Name: "billing-write", Path: "/billing/**", Methods: []string{"POST"}, Allow: []policy.GroupRef{{Name: "Finance"}}, Enabled: true},
		{Name: "no-contractors", Path: "/billing/**", Deny: []policy.GroupRef{{Name: "Contractors"}}, Enabled: true},
		{Name: "health", Path: "/healthz", Methods: []string{"GET"}, Public: true, Enabled: true},
		{Name: "me", Path: "/me", AllowAuthenticated: true, Scopes: []string{"profile:read"}, Enabled: true},
		{Name: "ws", Path: "/ws", AllowAuthenticated: true, Enabled: true},
		{Name: "slow", Path: "/slow", AllowAuthenticated: true, Enabled: true},
		{Name: "big-org", Path: "/org/**", Allow: []policy.GroupRef{{ID: "00gbigorg00000000000", Name: "BigOrg"}}, Enabled: true},
	}
}

func compile(t *testing.T, rules []policy.Rule) *policy.Policy {
	t.Helper()
	for i := range rules {
		rules[i].Normalize()
	}
	p, err := policy.Compile(rules)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newEnv(t *testing.T, mutate func(*Config)) *env {
	t.Helper()
	iss, err := oktatest.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { iss.Close() })
	v, err := authn.New(context.Background(), authn.Config{Issuer: iss.Issuer(), Audiences: []string{"api://default"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(300 * time.Millisecond)
		}
		if r.URL.Path == "/ws" && strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			accept := ""
			if r.URL.Query().Get("blind") == "" { // a real WebSocket server answers the key; ?blind=1 does not
				sum := sha1.Sum([]byte(r.Header.Get("Sec-Websocket-Key") + websocketGUID))
				accept = "Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(sum[:]) + "\r\n"
			}
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" + accept + "\r\n")
			brw.Flush()
			line, _ := brw.ReadString('\n')
			brw.WriteString("echo:" + line)
			brw.Flush()
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(seen{Method: r.Method, RequestURI: r.RequestURI, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header})
	}))
	t.Cleanup(up.Close)
	u, _ := url.Parse(up.URL)
	e := &env{t: t, iss: iss, upstream: up, sink: &memSink{},
		snap: &staticSnap{&snapshot.Snapshot{PolicyVersion: 7, Policy: compile(t, testRules())}}}
	cfg := Config{Upstream: u, Verifier: v, Snapshots: e.snap, Audit: e.sink, Replica: "test-1",
		Transport: NewTransport(TransportConfig{ResponseHeaderTimeout: 150 * time.Millisecond})}
	if mutate != nil {
		mutate(&cfg)
	}
	e.h, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.proxy = httptest.NewServer(e.h)
	t.Cleanup(e.proxy.Close)
	return e
}

func (e *env) token(sub string, groups []string, scopes ...string) string {
	return e.iss.Mint(oktatest.Claims{Subject: sub, Groups: groups, Scopes: scopes})
}

type resp struct {
	status int
	header http.Header
	body   string
	seen   *seen
	err    errorBody
}

// raw sends target exactly as given, bypassing Go's client-side URL handling.
func (e *env) raw(method, target string, headers map[string]string) resp {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.proxy.Listener.Addr().String())
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n", method, target)
	for k, v := range headers {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n")
	conn.Write([]byte(b.String()))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	r := resp{status: res.StatusCode, header: res.Header, body: string(body)}
	if res.Header.Get("X-Okproxy-Test-Upstream") == "" && strings.Contains(r.body, `"request_uri"`) {
		r.seen = &seen{}
		json.Unmarshal(body, r.seen)
	} else {
		json.Unmarshal(body, &r.err)
	}
	return r
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

func TestResponseTable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	fin := e.token("alice@example.com", []string{"Finance"})
	con := e.token("carl@example.com", []string{"Finance", "Contractors"})
	eng := e.token("erin@example.com", []string{"Engineering"})
	cases := []struct {
		name, method, target string
		headers              map[string]string
		status               int
		code, wwwAuth        string
	}{
		{"allowed", "GET", "/billing/x", bearer(fin), 200, "", ""},
		{"HEAD as GET", "HEAD", "/billing/x", bearer(fin), 200, "", ""},
		{"public without token", "GET", "/healthz", nil, 200, "", ""},
		{"no token", "GET", "/billing/x", nil, 401, "unauthorized", "Bearer"},
		{"basic auth is not a bearer token", "GET", "/billing/x", map[string]string{"Authorization": "Basic YTpi"}, 401, "invalid_token", `Bearer error="invalid_token"`},
		{"garbage token", "GET", "/billing/x", bearer("not.a.jwt"), 401, "invalid_token", `Bearer error="invalid_token"`},
		{"invalid token on public route", "GET", "/healthz", bearer("x.y.z"), 401, "invalid_token", `Bearer error="invalid_token"`},
		{"deny list", "GET", "/billing/x", bearer(con), 403, "forbidden", ""},
		{"no grant", "GET", "/billing/x", bearer(eng), 403, "forbidden", ""},
		{"no rule at all", "GET", "/elsewhere", bearer(fin), 403, "forbidden", ""},
		{"method not granted", "DELETE", "/billing/x", bearer(fin), 403, "forbidden", ""},
		{"missing scope", "GET", "/me", bearer(eng), 403, "insufficient_scope", `Bearer error="insufficient_scope"`},
		{"scope present", "GET", "/me", bearer(e.token("erin@example.com", nil, "profile:read")), 200, "", ""},
		{"bad path", "GET", "/billing/%2e%2e/admin", bearer(fin), 400, "bad_request", ""},
	}
	for _, c := range cases {
		r := e.raw(c.method, c.target, c.headers)
		if r.status != c.status {
			t.Errorf("%s: status %d, want %d (body %s)", c.name, r.status, c.status, r.body)
			continue
		}
		if got := r.header.Get("WWW-Authenticate"); got != c.wwwAuth {
			t.Errorf("%s: WWW-Authenticate %q, want %q", c.name, got, c.wwwAuth)
		}
		if c.code != "" {
			if r.err.Error != c.code || r.err.RequestID == "" || r.err.Message == "" {
				t.Errorf("%s: body %s, want error %q with message and request_id", c.name, r.body, c.code)
			}
			for _, g := range []string{"Finance", "Auditors", "Contractors", "billing-read"} {
				if strings.Contains(r.body, g) {
					t.Errorf("%s: refusal reveals %q: %s", c.name, g, r.body)
				}
			}
		}
	}
	// Every answered request is exactly one audit event; raw tokens are nowhere in them.
	evs := e.sink.all()
	if len(evs) != len(cases) {
		t.Fatalf("%d audit events for %d requests", len(evs), len(cases))
	}
	for _, ev := range evs {
		b, _ := json.Marshal(ev)
		for _, tok := range []string{fin, con, eng} {
			if strings.Contains(string(b), tok) || strings.Contains(string(b), tok[strings.LastIndex(tok, ".")+1:]) {
				t.Fatalf("raw token in audit event: %s", b)
			}
		}
	}
	first := evs[0]
	if first.Decision != "allow" || first.Reason != "ok" || first.Rule != "billing-read" || first.Subject != "alice@example.com" ||
		first.PolicyVersion != 7 || first.Replica != "test-1" || first.Status != 200 || first.Path != "/billing/x" ||
		len(first.Groups) != 1 || first.JTI == "" || first.ClientIP != "127.0.0.1" || first.Host != "api.example.com" {
		t.Fatalf("allowed event: %+v", first)
	}
	deny := evs[7]
	if deny.Decision != "deny" || deny.Reason != "forbidden" || deny.Rule != "no-contractors" || len(deny.Rules) != 2 {
		t.Fatalf("deny event: %+v", deny)
	}
	if ev := evs[3]; ev.Decision != "deny" || ev.Reason != "unauthorized" || ev.Status != 401 {
		t.Fatalf("401 event: %+v", ev)
	}
}

func TestEveryForgeryIsRejected(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	for _, f := range oktatest.Forgeries() {
		tok := e.iss.Forge(f, oktatest.Claims{Subject: "mallory@example.com", Groups: []string{"Finance"}})
		r := e.raw("GET", "/billing/x", bearer(tok))
		valid := f == oktatest.ForgeMissingGroups || f == oktatest.ForgeHundredGroups
		if valid {
			if r.status == 401 {
				t.Errorf("%v: a valid token was rejected", f)
			}
			continue
		}
		if r.status != 401 || r.err.Error != "invalid_token" {
			t.Errorf("%v: status %d body %s, want 401 invalid_token", f, r.status, r.body)
		}
	}
}

func TestHostilePathsRejected(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	fin := bearer(e.token("alice@example.com", []string{"Finance"}))
	for _, target := range []string{
		"/billing/%2e%2e/admin", "/billing/..%2Fadmin", "//admin", "/admin;x=1", "/a%00b", "/a%5Cb",
		"/billing/../admin", "/billing/./x", "/billing//x", "/billing/x%2fy", "/billing/%2E%2E/x", "/a%3bb",
		"/billing/x\\y", "/%zz", "/billing/%", "/billing/%0ax", "*", "example.com:443",
	} {
		r := e.raw("GET", target, fin)
		// net/http itself refuses a target that is not a parseable URI
		// (malformed escapes) with a plain 400 before any handler runs.
		malformed := target == "/%zz" || target == "/billing/%"
		if r.status != 400 || (!malformed && r.err.Error != "bad_request") {
			t.Errorf("GET %s: status %d, want 400 bad_request (body %s)", target, r.status, r.body)
		}
		if r.seen != nil {
			t.Errorf("GET %s reached the upstream", target)
		}
	}
	// Decoded-path matching and canonical re-escaping upstream; query untouched.
	r := e.raw("GET", "/bil%6Cing/x?q=%2e%2e&a=b%20c", fin)
	if r.status != 200 || r.seen == nil {
		t.Fatalf("encoded path: %d %s", r.status, r.body)
	}
	if r.seen.RequestURI != "/billing/x?q=%2e%2e&a=b%20c" {
		t.Fatalf("upstream saw %q", r.seen.RequestURI)
	}
	// Characters that end a path (?, #) or start an escape (%) arrive decoded
	// in the matched path and must reach the upstream re-escaped, or the
	// upstream would route a different path than the one decided on.
	for target, want := range map[string]string{
		"/billing/a%3Fadmin=1": "/billing/a%3Fadmin=1",
		"/billing/a%23frag":    "/billing/a%23frag",
		"/billing/%252e%252e":  "/billing/%252e%252e",
		"/billing/caf%C3%A9":   "/billing/caf%C3%A9",
	} {
		r := e.raw("GET", target, fin)
		if r.status != 200 || r.seen == nil || r.seen.RequestURI != want {
			t.Errorf("GET %s: status %d, upstream saw %+v, want %s", target, r.status, r.seen, want)
		}
	}
	// Absolute-form targets are judged by their path.
	if r := e.raw("GET", "http://api.example.com/billing/%2e%2e/admin", fin); r.status != 400 {
		t.Fatalf("absolute-form dot-dot: %d", r.status)
	}
	// A trailing slash does not escape a deny.
	con := bearer(e.token("carl@example.com", []string{"Finance", "Contractors"}))
	if r := e.raw("GET", "/billing/", con); r.status != 403 {
		t.Fatalf("trailing slash: %d", r.status)
	}
	if r := e.raw("GET", "/billing", con); r.status != 403 {
		t.Fatalf("bare prefix: %d", r.status)
	}
}

func TestHeadersToUpstream(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tok := e.iss.Mint(oktatest.Claims{Subject: "alice@example.com", UserID: "00ualice000000000000", Groups: []string{"Finance", "Auditors"}})
	r := e.raw("POST", "/billing/x", map[string]string{
		"Authorization":          "Bearer " + tok,
		"X-Okproxy-User":         "admin@example.com",
		"X-Okproxy-Groups":       "Admins",
		"X-OKPROXY-RULE":         "spoofed",
		"X-Okproxy-Anything":     "x",
		"X-Http-Method-Override": "DELETE",
		"X-Http-Method":          "DELETE",
		"X-Method-Override":      "DELETE",
		"X-Forwarded-For":        "6.6.6.6",
		"X-Request-Id":           "req-abc_123",
		"Content-Length":         "0",
	})
	if r.status != 200 || r.seen == nil {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	h := http.Header(r.seen.Header)
	want := map[string]string{
		"X-Okproxy-User": "alice@example.com", "X-Okproxy-User-Id": "00ualice000000000000",
		"X-Okproxy-Groups": "Finance,Auditors", "X-Okproxy-Rule": "billing-write",
		"X-Request-Id": "req-abc_123", "X-Forwarded-For": "127.0.0.1", "X-Forwarded-Host": "api.example.com",
		"X-Forwarded-Proto": "http", "X-Okproxy-Anything": "", "X-Http-Method-Override": "",
		"X-Http-Method": "", "X-Method-Override": "",
	}
	for k, v := range want {
		if got := strings.Join(h.Values(k), ","); got != v {
			t.Errorf("upstream %s = %q, want %q", k, got, v)
		}
	}
	if r.seen.Method != "POST" {
		t.Errorf("method changed to %s", r.seen.Method)
	}
	if h.Get("Authorization") == "" {
		t.Errorf("Authorization should reach the upstream (it may want the token)")
	}
	// A comma inside a group name cannot forge a second group for an
	// upstream that splits X-Okproxy-Groups on commas.
	tok = e.iss.Mint(oktatest.Claims{Subject: "alice@example.com", Groups: []string{"Finance", "Ops,Admins", "100%", "Admins%2C"}})
	r = e.raw("GET", "/billing/x", map[string]string{"Authorization": "Bearer " + tok})
	if r.status != 200 || r.seen == nil {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if got := http.Header(r.seen.Header).Get("X-Okproxy-Groups"); got != "Finance,Ops%2CAdmins,100%25,Admins%252C" {
		t.Errorf("X-Okproxy-Groups = %q", got)
	}
	// A hostile X-Request-Id is replaced, not forwarded.
	r = e.raw("GET", "/healthz", map[string]string{"X-Request-Id": "bad id\twith<junk>"})
	if got := http.Header(r.seen.Header).Get("X-Request-Id"); got == "" || strings.ContainsAny(got, " <>") {
		t.Fatalf("request id %q", got)
	}
}

func TestTrustedProxyForwardedFor(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} })
	r := e.raw("GET", "/healthz", map[string]string{"X-Forwarded-For": "203.0.113.9, 10.0.0.1", "X-Forwarded-Proto": "https"})
	h := http.Header(r.seen.Header)
	if got := h.Get("X-Forwarded-For"); got != "203.0.113.9, 10.0.0.1, 127.0.0.1" {
		t.Fatalf("XFF %q", got)
	}
	if h.Get("X-Forwarded-Proto") != "https" {
		t.Fatalf("proto %q", h.Get("X-Forwarded-Proto"))
	}
	evs := e.sink.all()
	if ip := evs[len(evs)-1].ClientIP; ip != "10.0.0.1" {
		t.Fatalf("client ip %q, want the right-most untrusted hop 10.0.0.1", ip)
	}
}

func TestUpstreamFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tok := bearer(e.token("a@example.com", nil))
	if r := e.raw("GET", "/slow", tok); r.status != 504 || r.err.Error != "gateway_timeout" {
		t.Fatalf("slow upstream: %d %s", r.status, r.body)
	}
	e.upstream.Close()
	if r := e.raw("GET", "/slow", tok); r.status != 502 || r.err.Error != "bad_gateway" {
		t.Fatalf("closed upstream: %d %s", r.status, r.body)
	}
	evs := e.sink.all()
	if len(evs) != 2 || evs[0].Decision != "error" || evs[0].Reason != "gateway_timeout" || evs[1].Reason != "bad_gateway" || evs[1].Status != 502 {
		t.Fatalf("events: %+v", evs)
	}
}

func TestFailClosedAndAuditUnavailable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tok := bearer(e.token("alice@example.com", []string{"Finance"}))
	e.snap.s = nil
	if r := e.raw("GET", "/healthz", nil); r.status != 503 || r.err.Error != "unavailable" {
		t.Fatalf("no snapshot: %d %s", r.status, r.body)
	}
	e.snap.s = &snapshot.Snapshot{PolicyVersion: 1, Policy: compile(t, testRules())}
	e.sink.fail = true
	for _, target := range []string{"/billing/x", "/elsewhere"} {
		r := e.raw("GET", target, tok)
		if r.status != 503 || r.err.Error != "unavailable" || r.seen != nil {
			t.Fatalf("%s with audit unavailable: %d %s", target, r.status, r.body)
		}
	}
}

func TestWebSocketUpgradePassthrough(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	conn, br, res := e.websocket("/ws")
	if res.StatusCode != 101 {
		t.Fatalf("upgrade: %v", res)
	}
	fmt.Fprintf(conn, "hello\n")
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := br.ReadString('\n')
	if err != nil || line != "echo:hello\n" {
		t.Fatalf("echo %q %v", line, err)
	}
	conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if evs := e.sink.all(); len(evs) == 1 {
			if evs[0].Status != 101 || evs[0].Decision != "allow" {
				t.Fatalf("upgrade event %+v", evs[0])
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no audit event for the upgraded connection")
}

type fakeLimiter struct{ allowed int }

func (f *fakeLimiter) Admit(_ context.Context, c QuotaCheck) QuotaDecision {
	f.allowed--
	return QuotaDecision{Limited: true, Allowed: f.allowed >= 0, Quota: "dev-tier", Limit: 1, Remaining: max(int64(f.allowed), 0), Reset: 1500 * time.Millisecond}
}

func TestQuotaExceededAnswer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.Quota = &fakeLimiter{allowed: 1} })
	tok := bearer(e.token("alice@example.com", []string{"Finance"}))
	r := e.raw("GET", "/billing/x", tok)
	if r.status != 200 || r.header.Get("RateLimit-Limit") != "1" || r.header.Get("RateLimit-Remaining") != "0" {
		t.Fatalf("first: %d %v", r.status, r.header)
	}
	r = e.raw("GET", "/billing/x", tok)
	if r.status != 429 || r.err.Error != "quota_exceeded" || r.header.Get("Retry-After") != "2" || r.header.Get("RateLimit-Reset") != "2" {
		t.Fatalf("second: %d %v %s", r.status, r.header, r.body)
	}
	// Denied requests never reach the limiter.
	if r := e.raw("GET", "/elsewhere", tok); r.status != 403 {
		t.Fatalf("denied: %d", r.status)
	}
}

func TestGroupsSourceAndInactiveUsers(t *testing.T) {
	t.Parallel()
	big := make([]string, OktaGroupsCap)
	for i := range big {
		big[i] = fmt.Sprintf("g%03d", i)
	}
	dir := directory.New(3, true, []directory.User{
		{ID: "00ubig00000000000000", Login: "big@example.com", Status: "ACTIVE", Groups: []policy.GroupRef{{ID: "00gbigorg00000000000", Name: "BigOrg"}}},
		{ID: "00ugone0000000000000", Login: "gone@example.com", Status: "DEPROVISIONED", Groups: []policy.GroupRef{{Name: "Finance"}}},
		{ID: "00usus00000000000000", Login: "sus@example.com", Status: "SUSPENDED", Groups: []policy.GroupRef{{Name: "Finance"}}},
	})
	for _, src := range []GroupsSource{GroupsAuto, GroupsToken, GroupsDirectory, GroupsUnion} {
		e := newEnv(t, func(c *Config) { c.GroupsSource = src })
		e.snap.s.Directory = dir
		// A claim holding exactly 100 groups may be truncated: auto uses the directory.
		full := e.iss.Mint(oktatest.Claims{Subject: "big@example.com", UserID: "00ubig00000000000000", Groups: big})
		want := map[GroupsSource]int{GroupsAuto: 200, GroupsToken: 403, GroupsDirectory: 200, GroupsUnion: 200}[src]
		if r := e.raw("GET", "/org/x", bearer(full)); r.status != want {
			t.Errorf("%s: 100-group token on a directory-only grant: %d, want %d", src, r.status, want)
		}
		// Missing claim: auto falls back to the directory too (looked up by sub when uid is absent).
		noClaim := e.iss.Mint(oktatest.Claims{Subject: "big@example.com", Omit: []string{"groups", "uid"}})
		want = map[GroupsSource]int{GroupsAuto: 200, GroupsToken: 403, GroupsDirectory: 200, GroupsUnion: 200}[src]
		if r := e.raw("GET", "/org/x", bearer(noClaim)); r.status != want {
			t.Errorf("%s: no groups claim: %d, want %d", src, r.status, want)
		}
		// Deprovisioned and suspended users are refused while their token is still valid.
		for _, u := range []string{"gone@example.com", "sus@example.com"} {
			r := e.raw("GET", "/billing/x", bearer(e.token(u, []string{"Finance"})))
			if r.status != 403 || r.err.Error != "forbidden" {
				t.Errorf("%s: inactive %s: %d %s", src, u, r.status, r.body)
			}
		}
		evs := e.sink.all()
		if last := evs[len(evs)-1]; last.Reason != "user_inactive" {
			t.Errorf("%s: inactive user audited as %q", src, last.Reason)
		}
	}
}

func TestTruncateKeepsCharactersWhole(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"abc", 5, "abc"},
		{"abcdef", 3, "abc"},
		{"ab\u00e9", 3, "ab"},    // é is 2 bytes: cut before it, not inside
		{"a\u20ac", 3, "a"},      // € is 3 bytes
		{"a\U0001F600b", 4, "a"}, // 4-byte emoji
		{"a\U0001F600b", 5, "a\U0001F600"},
		{"\x80\x80\x80\x80\x80", 4, "\x80"}, // not UTF-8: at most 3 steps back
	} {
		if got := truncate(tc.in, tc.n); got != tc.want {
			t.Errorf("truncate(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

// memoRecorder is a HeaderVerifier that notes which memo each request got.
type memoRecorder struct {
	*authn.Verifier
	mu    sync.Mutex
	memos []*authn.HeaderMemo
}

func (m *memoRecorder) VerifyHeader(ctx context.Context, h http.Header, memo *authn.HeaderMemo) (*authn.Identity, bool, error) {
	m.mu.Lock()
	m.memos = append(m.memos, memo)
	m.mu.Unlock()
	return m.Verifier.VerifyHeader(ctx, h, memo)
}

// TestConnContextGivesEachConnectionAMemo: with ConnContext on the server,
// requests on one connection share a memo and other connections get their
// own; a verifier that cannot read headers still works.
func TestConnContextGivesEachConnectionAMemo(t *testing.T) {
	t.Parallel()
	var rec *memoRecorder
	e := newEnv(t, func(c *Config) {
		rec = &memoRecorder{Verifier: c.Verifier.(*authn.Verifier)}
		c.Verifier = rec
	})
	srv := httptest.NewUnstartedServer(e.h)
	srv.Config.ConnContext = ConnContext
	srv.Start()
	t.Cleanup(srv.Close)
	tok := e.token("alice@example.com", []string{"Finance"})
	for range 2 {
		client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
		for range 2 {
			req, _ := http.NewRequest("GET", srv.URL+"/billing/x", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				t.Fatalf("status %d", res.StatusCode)
			}
		}
		client.CloseIdleConnections()
	}
	m := rec.memos
	if len(m) != 4 || m[0] == nil || m[0] != m[1] || m[2] != m[3] || m[0] == m[2] {
		t.Errorf("memos per request %p: want one per connection, shared by its requests", m)
	}

	// A plain Verifier (Verify only) gets the header parsed by the handler.
	plain := newEnv(t, func(c *Config) { c.Verifier = verifyOnly{c.Verifier} })
	tok = plain.token("alice@example.com", []string{"Finance"})
	if r := plain.raw("GET", "/billing/x", bearer(tok)); r.status != 200 {
		t.Errorf("Verify-only verifier, valid token: %d", r.status)
	}
	if r := plain.raw("GET", "/billing/x", map[string]string{"Authorization": "Basic " + tok}); r.status != 401 {
		t.Errorf("Verify-only verifier, Basic credentials: %d", r.status)
	}
}

type verifyOnly struct{ v Verifier }

func (o verifyOnly) Verify(ctx context.Context, raw string) (*authn.Identity, error) {
	return o.v.Verify(ctx, raw)
}

// Headers that would let a client pose as someone else, change the method or
// path after the decision, or claim another address or route never reach the
// upstream, in any spelling: CGI, WSGI and Rack read "X-Okproxy_User" as
// HTTP_X_OKPROXY_USER, so underscore spellings are removed too.
func TestHostileHeadersNeverReachUpstream(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tok := e.iss.Mint(oktatest.Claims{Subject: "alice@example.com", Groups: []string{"Engineering"}}) // no uid claim
	hostile := map[string]string{
		"X-Okproxy_User":         "admin@example.com",
		"X_Okproxy_Groups":       "Admins",
		"X-Okproxy_User_Id":      "00uADMIN",
		"x_okproxy_rule":         "admin",
		"X_Http_Method_Override": "DELETE",
		"X_Forwarded_For":        "6.6.6.6",
		"X_Request_Id":           "forged",
		"Some_Header":            "x",
		"X-Original-URL":         "/admin/x",
		"X-Rewrite-URL":          "/admin/y",
		"X-Original-Method":      "DELETE",
		"X-Real-IP":              "6.6.6.6",
		"True-Client-IP":         "6.6.6.7",
		"X-Client-IP":            "6.6.6.8",
		"CF-Connecting-IP":       "6.6.6.9",
		"X-Forwarded-Port":       "443",
		"X-Forwarded-Prefix":     "/admin",
		"X-Forwarded-Server":     "evil",
		"Forwarded":              "for=6.6.6.6;host=evil",
		"X-Forwarded":            "for=6.6.6.6",
		"Client-IP":              "6.6.6.10",
		"X-Host":                 "evil.example.com",
		"X-Original-Host":        "evil2.example.com",
		"X-ProxyUser-Ip":         "6.6.6.11",
		"X-Remote-User":          "admin",
		"Remote-User":            "admin2",
		"X-Auth-Request-User":    "admin3",
		"X-Auth-Request-Groups":  "Admins3",
		"X-Authenticated-User":   "admin4",
		"X-Forwarded-User":       "admin5",
	}
	for _, anon := range []bool{false, true} {
		h := map[string]string{}
		for k, v := range hostile {
			h[k] = v
		}
		target := "/ws" // any authenticated caller; echoes unless asked to upgrade
		if anon {
			target = "/healthz"
		} else {
			h["Authorization"] = "Bearer " + tok
		}
		r := e.raw("GET", target, h)
		if r.status != 200 || r.seen == nil {
			t.Fatalf("%s: status %d: %s", target, r.status, r.body)
		}
		for k, vs := range r.seen.Header {
			n := strings.ToLower(k)
			if strings.Contains(n, "_") {
				t.Errorf("%s: upstream got underscore header %s: %q", target, k, vs)
			}
			for hk, hv := range hostile {
				if strings.EqualFold(k, hk) || slices.Contains(vs, hv) {
					t.Errorf("%s: upstream got %s: %q (sent %s: %s)", target, k, vs, hk, hv)
				}
			}
		}
		if got := http.Header(r.seen.Header).Get("X-Forwarded-For"); got != "127.0.0.1" {
			t.Errorf("%s: X-Forwarded-For %q", target, got)
		}
		if r.seen.Path != target || r.seen.Method != "GET" {
			t.Errorf("upstream served %s %s", r.seen.Method, r.seen.Path)
		}
	}
}

// Behind a trusted proxy the upstream's X-Forwarded-Host is the Host the
// host rules were evaluated for, never one the proxy passed through.
func TestTrustedProxyForwardedHostIsTheEvaluatedHost(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} })
	r := e.raw("GET", "/healthz", map[string]string{"X-Forwarded-Host": "admin.example.com", "X-Real-IP": "203.0.113.9"})
	h := http.Header(r.seen.Header)
	if got := h.Get("X-Forwarded-Host"); got != "api.example.com" {
		t.Fatalf("X-Forwarded-Host %q, want the request's Host", got)
	}
	if got := h.Get("X-Real-Ip"); got != "203.0.113.9" {
		t.Fatalf("a trusted proxy's X-Real-IP should pass: %q", got)
	}
	if evs := e.sink.all(); evs[len(evs)-1].Host != "api.example.com" {
		t.Fatalf("audited host %q", evs[len(evs)-1].Host)
	}
}

// Only WebSocket upgrades pass. After a 101 the connection is a tunnel the
// proxy no longer reads: an h2c upgrade would carry unchecked HTTP/2
// requests. The request is served without the upgrade.
func TestOnlyWebSocketUpgradesPass(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	for _, c := range []struct {
		up    string
		extra map[string]string
	}{
		{"h2c", nil}, {"H2C", nil}, {"websocket, h2c", nil}, {"TLS/1.2", nil}, {"foo", nil},
		// Half-formed WebSocket requests: no key, a short key, no or another version.
		{"websocket", nil},
		{"websocket", map[string]string{"Sec-WebSocket-Version": "13"}},
		{"websocket", map[string]string{"Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "c2hvcnQ="}},
		{"websocket", map[string]string{"Sec-WebSocket-Version": "8", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}},
		{"websocket", map[string]string{"Sec-WebSocket-Version": "13\r\nSec-WebSocket-Version: 8", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}},
	} {
		up := c.up
		h := map[string]string{"Upgrade": up, "Connection": "Upgrade, HTTP2-Settings", "HTTP2-Settings": "AAMAAABkAARAAAAAAAIAAAAA"}
		for k, v := range c.extra {
			h[k] = v
		}
		r := e.raw("GET", "/healthz", h)
		if r.status != 200 || r.seen == nil {
			t.Fatalf("Upgrade %q: status %d: %s", up, r.status, r.body)
		}
		got := http.Header(r.seen.Header)
		if got.Get("Upgrade") != "" || got.Get("Http2-Settings") != "" || strings.Contains(strings.ToLower(got.Get("Connection")), "upgrade") {
			t.Errorf("Upgrade %q %v reached the upstream: %v", up, c.extra, r.seen.Header)
		}
	}
}

// Methods that are not requests for a resource, and targets with a
// fragment, are refused and audited.
func TestRefusedMethodsAndTargets(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tok := bearer(e.token("a@example.com", nil)) // /ws grants any authenticated caller, all methods
	for _, c := range []struct{ method, target string }{
		{"TRACE", "/ws"}, {"trace", "/ws"}, {"TRACK", "/ws"}, {"CONNECT", "/ws"},
		{"GET", "/ws?q=1#frag"}, {"GET", "/ws#frag"},
	} {
		before := len(e.sink.all())
		r := e.raw(c.method, c.target, tok)
		if r.status != 400 || r.err.Error != "bad_request" || r.seen != nil {
			t.Errorf("%s %s: status %d: %s", c.method, c.target, r.status, r.body)
			continue
		}
		evs := e.sink.all()
		if len(evs) != before+1 || evs[len(evs)-1].Reason != "bad_request" || evs[len(evs)-1].Path != "/ws" {
			t.Errorf("%s %s: audit %+v", c.method, c.target, evs[before:])
		}
	}
}

// A proxied response carries the request id the upstream and the audit
// event got, unless the upstream set its own.
func TestProxiedResponseCarriesRequestID(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	r := e.raw("GET", "/healthz", map[string]string{"X-Request-Id": "req-123"})
	if r.status != 200 || r.header.Get("X-Request-Id") != "req-123" || r.header.Values("X-Request-Id")[0] != "req-123" {
		t.Fatalf("status %d, X-Request-Id %q", r.status, r.header.Values("X-Request-Id"))
	}
	r = e.raw("GET", "/healthz", nil)
	evs := e.sink.all()
	if id := r.header.Get("X-Request-Id"); id == "" || id != evs[len(evs)-1].RequestID {
		t.Fatalf("generated id %q, audited %q", id, evs[len(evs)-1].RequestID)
	}
}

// A request body the client botches (malformed chunking) is the client's
// fault: 400 bad_request, audited as a deny, not a 502 upstream error.
func TestMalformedClientBodyIs400(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	conn, err := net.Dial("tcp", e.proxy.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /ws HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nbroken\r\n0\r\n\r\n", e.token("a@example.com", nil))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 400 || !strings.Contains(string(b), `"bad_request"`) {
		t.Fatalf("status %d: %s", res.StatusCode, b)
	}
	evs := e.sink.all()
	if ev := evs[len(evs)-1]; ev.Reason != "bad_request" || ev.Decision != "deny" || ev.Status != 400 {
		t.Fatalf("audit: %+v", ev)
	}
}

// A report-only rule that matched is named in the event's rules (after the
// enforced ones), so `audit query --rule NAME` finds the traffic a rule in
// report mode is being watched against; the granting rule is unchanged.
func TestReportOnlyRuleIsInAuditedRules(t *testing.T) {
	t.Parallel()
	rules := append(testRules(), policy.Rule{Name: "watch-billing", Path: "/billing/**", Deny: []policy.GroupRef{{Name: "Finance"}}, Mode: policy.ModeReport, Enabled: true})
	e := newEnv(t, nil)
	e.snap.s = &snapshot.Snapshot{PolicyVersion: 8, Policy: compile(t, rules)}
	r := e.raw("GET", "/billing/x", bearer(e.token("alice@example.com", []string{"Finance"})))
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	evs := e.sink.all()
	ev := evs[len(evs)-1]
	if !slices.Equal(ev.Rules, []string{"billing-read", "no-contractors", "watch-billing"}) || ev.Rule != "billing-read" || !strings.Contains(ev.Shadow, "watch-billing") {
		t.Fatalf("rules %q, rule %q, shadow %q", ev.Rules, ev.Rule, ev.Shadow)
	}
}

// The refusal log says when an allow did not grant because it names a group
// by a name several synced groups share.
func TestRefusalLogNamesAmbiguousGroup(t *testing.T) {
	t.Parallel()
	var logs syncLog
	rules := []policy.Rule{{Name: "sales", Path: "/sales/**", Allow: []policy.GroupRef{{Name: "Sales"}}, Enabled: true}}
	policy.NewGroups([]policy.GroupRef{{ID: "00gsales", Name: "Sales"}, {ID: "00gcontractors", Name: "SALES"}}).MarkRules(rules)
	e := newEnv(t, func(c *Config) { c.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
	e.snap.s = &snapshot.Snapshot{PolicyVersion: 9, Policy: compile(t, rules)}
	if r := e.raw("GET", "/sales/x", bearer(e.token("bob@example.com", []string{"Sales"}))); r.status != 403 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if out := logs.String(); !strings.Contains(out, `"ambiguous_rule":"sales"`) || !strings.Contains(out, `"ambiguous_group_ids":["00gcontractors","00gsales"]`) {
		t.Fatalf("log: %s", out)
	}
}

type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// websocket sends an authenticated WebSocket opening handshake for target
// over a new connection (closed with the test) and reads the answer.
func (e *env) websocket(target string) (net.Conn, *bufio.Reader, *http.Response) {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.proxy.Listener.Addr().String())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer %s\r\n\r\n", target, e.token("a@example.com", nil))
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return conn, br, res
}

// An upstream that answers 101 without proving it read the WebSocket key
// (a blind "switch" endpoint) gets no tunnel: 502, and nothing sent after
// the request reaches it.
func TestBlindUpgradeResponseIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	_, _, res := e.websocket("/ws?blind=1")
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 502 || !strings.Contains(string(b), "bad_gateway") {
		t.Fatalf("blind 101: %d %s", res.StatusCode, b)
	}
	evs := e.sink.all()
	if ev := evs[len(evs)-1]; ev.Status != 502 || ev.Reason != "bad_gateway" {
		t.Fatalf("audit %+v", ev)
	}
}
