package server

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/okproxy/okproxy/internal/dbtest"
	"github.com/okproxy/okproxy/internal/oktatest"
	"github.com/okproxy/okproxy/internal/policy"
	"github.com/okproxy/okproxy/internal/store"
)

type harness struct {
	t        *testing.T
	dbURL    string
	st       *store.Store
	iss      *oktatest.Server
	upstream *httptest.Server
	srv      *Server
	base     string
	admin    string
	requests atomic.Int64 // every request made through get
}

func newHarness(t *testing.T, dbURL string, mutate func(*Config)) *harness {
	t.Helper()
	h := &harness{t: t, dbURL: dbURL}
	if h.dbURL == "" {
		h.dbURL = dbtest.NewDatabase(t)
	}
	var err error
	h.st, err = store.Open(context.Background(), store.Config{URL: h.dbURL, Lazy: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.st.Close)
	h.iss, err = oktatest.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.iss.Close() })
	h.upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upstream %s %s user=%s", r.Method, r.URL.Path, r.Header.Get("X-Okproxy-User"))
	}))
	t.Cleanup(h.upstream.Close)
	h.start(mutate)
	return h
}

func (h *harness) start(mutate func(*Config)) {
	h.t.Helper()
	r := h.replica("r1", mutate)
	h.srv, h.base = r.srv, r.base
	h.admin = "http://" + r.srv.AdminAddr()
}

type replica struct {
	srv  *Server
	base string
}

// replica starts a serve of its own on the harness's database, issuer and
// upstream, stopped when the test ends.
func (h *harness) replica(name string, mutate func(*Config)) *replica {
	h.t.Helper()
	cfg := Config{DatabaseURL: h.dbURL, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Upstream: h.upstream.URL,
		Issuer: h.iss.Issuer(), Audiences: []string{"api://default"}, Replica: name, PollInterval: time.Second,
		AuditSpoolDir: h.t.TempDir(), Logger: slog.New(slog.NewTextHandler(testWriter{h.t}, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := New(context.Background(), cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return &replica{srv: srv, base: "http://" + srv.Addr()}
}

func (h *harness) addRule(r policy.Rule) {
	h.t.Helper()
	r.Enabled = true
	r.Normalize()
	if err := r.Validate(); err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.st.AddRule(context.Background(), r, "test"); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) get(path, token string) (int, string) {
	h.t.Helper()
	req, _ := http.NewRequest("GET", h.base+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	h.requests.Add(1)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func (h *harness) waitStatus(path, token string, want int, within time.Duration) time.Duration {
	h.t.Helper()
	start := time.Now()
	for {
		code, body := h.get(path, token)
		if code == want {
			return time.Since(start)
		}
		if time.Since(start) > within {
			h.t.Fatalf("GET %s: still %d (%s) after %s, want %d", path, code, body, within, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) auditCount(where string, args ...any) int {
	h.t.Helper()
	n, err := h.tryAuditCount(where, args...)
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

func (h *harness) tryAuditCount(where string, args ...any) (int, error) {
	var n int
	err := h.st.Pool().QueryRow(context.Background(), `SELECT count(*) FROM audit_events WHERE `+where, args...).Scan(&n)
	return n, err
}

func (h *harness) waitAudit(want int, within time.Duration) {
	h.t.Helper()
	deadline := time.Now().Add(within)
	for {
		n, err := h.tryAuditCount("true")
		if err != nil && time.Now().Before(deadline) {
			// Pooled connections cut by a simulated outage fail once.
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if n == want {
			return
		}
		if n > want || time.Now().After(deadline) {
			h.t.Fatalf("%d audit events, want %d", n, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRuleChangeReachesServeQuickly(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "", nil)
	tok := h.iss.Mint(oktatest.Claims{Subject: "alice@example.com", Groups: []string{"Finance"}})
	if code, _ := h.get("/billing/x", tok); code != 403 {
		t.Fatalf("before any rule: %d", code)
	}
	h.addRule(policy.Rule{Name: "billing", Path: "/billing/**", Allow: []policy.GroupRef{{Name: "finance"}}})
	took := h.waitStatus("/billing/x", tok, 200, time.Second)
	t.Logf("rule add reached serve in %s", took)
	if _, err := h.st.AddRule(context.Background(), policy.Rule{Name: "deny-fin", Path: "/billing/**", Deny: []policy.GroupRef{{Name: "Finance"}}, Enabled: true, Mode: policy.ModeEnforce}, "t"); err != nil {
		t.Fatal(err)
	}
	took = h.waitStatus("/billing/x", tok, 403, time.Second)
	t.Logf("deny rule reached serve in %s", took)
	// readyz, healthz and metrics on the admin listener.
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready", "/metrics": "okproxy_policy_version 2"} {
		res, err := http.Get(h.admin + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("admin %s: %d, want %q in body", path, res.StatusCode, want)
		}
	}
}

func TestAuditEndToEnd(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "", nil)
	h.addRule(policy.Rule{Name: "billing", Path: "/billing/**", Allow: []policy.GroupRef{{Name: "Finance"}}})
	h.addRule(policy.Rule{Name: "health", Path: "/healthz", Public: true})
	h.waitStatus("/healthz", "", 200, 2*time.Second)
	h.waitAudit(int(h.requests.Load()), 3*time.Second)
	base := int(h.requests.Load())
	fin := h.iss.Mint(oktatest.Claims{Subject: "alice@example.com", Groups: []string{"Finance"}})
	eng := h.iss.Mint(oktatest.Claims{Subject: "erin@example.com", Groups: []string{"Engineering"}})
	bad := h.iss.Forge(oktatest.ForgeBadSignature, oktatest.Claims{Subject: "m@example.com"})
	want := map[string]int{}
	const n = 60
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			path, tok := "/billing/x", fin
			switch i % 4 {
			case 1:
				tok = eng
			case 2:
				tok = bad
			case 3:
				path, tok = "/healthz?secret=query", ""
			}
			code, _ := h.get(path, tok)
			mu.Lock()
			want[fmt.Sprint(code)]++
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	h.waitAudit(base+n, 3*time.Second)
	for code, c := range want {
		if got := h.auditCount("status = $1", atoi(code)); got < c {
			t.Errorf("status %s: %d events, want %d", code, got, c)
		}
	}
	if got := h.auditCount("decision = 'allow' AND reason = 'ok' AND rule = 'billing' AND subject = 'alice@example.com' AND groups = '{Finance}' AND jti <> '' AND policy_version = 2 AND replica = 'r1'"); got != n/4 {
		t.Errorf("allowed billing events with full fields: %d, want %d", got, n/4)
	}
	if got := h.auditCount("decision = 'deny' AND reason = 'invalid_token' AND status = 401"); got != n/4 {
		t.Errorf("invalid token events: %d", got)
	}
	// The raw tokens and the query string appear nowhere in the database.
	for _, secret := range []string{fin, eng, bad, fin[strings.LastIndex(fin, ".")+1:], "secret=query"} {
		if c := h.auditCount("audit_events::text LIKE '%' || $1 || '%'", secret); c != 0 {
			t.Fatalf("a raw token or query string is stored in %d audit rows", c)
		}
	}
}

func atoi(s string) int {
	var n int
	fmt.Sscan(s, &n)
	return n
}

func TestDatabaseOutageKeepsLastSnapshot(t *testing.T) {
	t.Parallel()
	real := dbtest.NewDatabase(t)
	cut, viaCut := dbtest.NewCut(t, real)
	h := newHarness(t, viaCut, nil)
	h.addRule(policy.Rule{Name: "billing", Path: "/billing/**", Allow: []policy.GroupRef{{Name: "Finance"}}})
	fin := h.iss.Mint(oktatest.Claims{Subject: "alice@example.com", Groups: []string{"Finance"}})
	eng := h.iss.Mint(oktatest.Claims{Subject: "erin@example.com", Groups: []string{"Engineering"}})
	h.waitStatus("/billing/x", fin, 200, 2*time.Second)
	cut.Down()
	for i := 0; i < 20; i++ {
		if code, _ := h.get("/billing/x", fin); code != 200 {
			t.Fatalf("database down: allowed caller got %d", code)
		}
		if code, _ := h.get("/billing/x", eng); code != 403 {
			t.Fatalf("database down: denied caller got %d", code)
		}
	}
	cut.Up()
	// Every request of the outage reaches the audit table once the database is back.
	h.waitAudit(int(h.requests.Load()), 10*time.Second)
}

func TestFailClosedWithoutSnapshotThenRecover(t *testing.T) {
	t.Parallel()
	real := dbtest.NewDatabase(t)
	cut, viaCut := dbtest.NewCut(t, real)
	st, err := store.Open(context.Background(), store.Config{URL: real})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r := policy.Rule{Name: "health", Path: "/healthz", Public: true, Enabled: true, Mode: policy.ModeEnforce}
	if _, err := st.AddRule(context.Background(), r, "t"); err != nil {
		t.Fatal(err)
	}
	cut.Down()
	h := newHarness(t, viaCut, nil)
	code, body := h.get("/healthz", "")
	if code != 503 || !strings.Contains(body, `"unavailable"`) {
		t.Fatalf("no snapshot: %d %s", code, body)
	}
	res, _ := http.Get(h.admin + "/readyz")
	if res.StatusCode != 503 {
		t.Fatalf("readyz without snapshot: %d", res.StatusCode)
	}
	res.Body.Close()
	cut.Up()
	h.waitStatus("/healthz", "", 200, 5*time.Second)
}

func TestKeyRotationAndJWKSThrottle(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "", nil)
	h.addRule(policy.Rule{Name: "any", Path: "/**", AllowAuthenticated: true})
	old := h.iss.Mint(oktatest.Claims{Subject: "a@example.com"})
	h.waitStatus("/x", old, 200, 2*time.Second)
	before := h.iss.KeyFetches()
	// 1,000 forged tokens: random kids and the known kid with a bad signature.
	for i := 0; i < 1000; i++ {
		f := oktatest.ForgeUnknownKID
		if i%2 == 1 {
			f = oktatest.ForgeBadSignature
		}
		if code, _ := h.get("/x", h.iss.Forge(f, oktatest.Claims{Subject: "m@example.com"})); code != 401 {
			t.Fatalf("forged token %d: %d", i, code)
		}
	}
	fetches := h.iss.KeyFetches() - before
	t.Logf("JWKS fetches caused by 1,000 forged tokens: %d", fetches)
	if fetches > 3 {
		t.Fatalf("%d JWKS fetches for 1,000 forged tokens, want at most 3", fetches)
	}
	// A genuinely rotated key is still picked up without a restart (the
	// refresh interval for unknown kids is 10 s by default, so this may wait).
	h.iss.RotateKey()
	fresh := h.iss.Mint(oktatest.Claims{Subject: "a@example.com"})
	took := h.waitStatus("/x", fresh, 200, 15*time.Second)
	t.Logf("rotated key accepted after %s", took)
}

func TestGracefulShutdownFlushesAudit(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "", nil)
	h.addRule(policy.Rule{Name: "health", Path: "/healthz", Public: true})
	h.waitStatus("/healthz", "", 200, 2*time.Second)
	for i := 0; i < 25; i++ {
		h.get("/healthz", "")
	}
	want := int(h.requests.Load())
	if total := h.auditCountAfterShutdown(); total != want {
		t.Fatalf("after shutdown %d events, want one per request (%d)", total, want)
	}
}

func (h *harness) auditCountAfterShutdown() int {
	if err := h.srv.Shutdown(context.Background()); err != nil {
		h.t.Fatalf("shutdown: %v", err)
	}
	return h.auditCount("true")
}

// testWriter sends server logs to the test log, shown only on failure.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func TestTLSAndMigrateFlag(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := selfSigned(t, dir)
	empty := dbtest.NewEmptyDatabase(t)
	h := newHarness(t, empty, func(c *Config) { c.Migrate = true; c.TLSCert = certFile; c.TLSKey = keyFile })
	h.addRule(policy.Rule{Name: "health", Path: "/healthz", Public: true})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	deadline := time.Now().Add(3 * time.Second)
	for {
		res, err := client.Get("https://" + h.srv.Addr() + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 && res.TLS != nil {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("TLS request: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// selfSigned writes a throw-away certificate generated for this test run.
func selfSigned(t *testing.T, dir string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	cf, kf := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return cf, kf
}

// TestOneConnectionManyTokens: serve memoises the Authorization header per
// client connection; a keep-alive connection that changes tokens, or sends
// a forged one after a valid one, must be judged on each request's own.
func TestOneConnectionManyTokens(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "", nil)
	h.addRule(policy.Rule{Name: "billing", Path: "/billing/**", Allow: []policy.GroupRef{{Name: "Finance"}}})
	h.waitStatus("/billing/x", h.iss.Mint(oktatest.Claims{Groups: []string{"Finance"}}), 200, 5*time.Second)
	alice := h.iss.Mint(oktatest.Claims{Subject: "alice@example.com", Groups: []string{"Finance"}})
	bob := h.iss.Mint(oktatest.Claims{Subject: "bob@example.com", Groups: []string{"Sales"}})
	forged := h.iss.Forge(oktatest.ForgeTamperedPayload, oktatest.Claims{Subject: "mallory@example.com", Groups: []string{"Finance"}})

	if h.srv.main.ConnContext == nil {
		t.Fatal("serve's HTTP server gives connections no memo (proxy.ConnContext)")
	}
	conn, err := net.Dial("tcp", h.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	for i, step := range []struct {
		auth     string // the whole Authorization header line, "" for none
		wantCode int
		wantBody string
	}{
		{"Authorization: Bearer " + alice, 200, "user=alice@example.com"},
		{"Authorization: Bearer " + alice, 200, "user=alice@example.com"},
		{"Authorization: Bearer " + bob, 403, `"forbidden"`},
		{"Authorization: Bearer " + alice, 200, "user=alice@example.com"},
		{"Authorization: Bearer " + forged, 401, `"invalid_token"`},
		{"Authorization: Bearer " + alice + "\r\nAuthorization: Bearer " + alice, 401, `"invalid_token"`},
		{"Authorization: Basic " + alice, 401, `"invalid_token"`},
		{"", 401, `"unauthorized"`},
		{"Authorization: bearer " + alice, 200, "user=alice@example.com"},
	} {
		req := "GET /billing/x HTTP/1.1\r\nHost: api.example.com\r\n"
		if step.auth != "" {
			req += step.auth + "\r\n"
		}
		if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
			t.Fatalf("step %d: write: %v", i, err)
		}
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("step %d: the connection did not stay open: %v", i, err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != step.wantCode || !strings.Contains(string(b), step.wantBody) {
			t.Errorf("step %d: %d %q, want %d and %q", i, res.StatusCode, b, step.wantCode, step.wantBody)
		}
	}
}

// TestHTTP2StreamsManyTokens: over TLS serve speaks HTTP/2, whose streams
// share one connection (and its Authorization memo) and run in parallel;
// every stream is judged on its own token.
func TestHTTP2StreamsManyTokens(t *testing.T) {
	t.Parallel()
	certFile, keyFile := selfSigned(t, t.TempDir())
	h := newHarness(t, "", func(c *Config) { c.TLSCert = certFile; c.TLSKey = keyFile })
	h.addRule(policy.Rule{Name: "billing", Path: "/billing/**", Allow: []policy.GroupRef{{Name: "Finance"}}})
	users := []struct {
		sub  string
		tok  string
		want int
	}{
		{"alice@example.com", "", 200}, {"bob@example.com", "", 403}, {"carol@example.com", "", 200},
		{"mallory@example.com", "", 401},
	}
	for i := range users {
		groups := []string{"Finance"}
		if users[i].want == 403 {
			groups = []string{"Sales"}
		}
		if users[i].want == 401 {
			users[i].tok = h.iss.Forge(oktatest.ForgeTamperedPayload, oktatest.Claims{Subject: users[i].sub, Groups: []string{"Finance"}})
			continue
		}
		users[i].tok = h.iss.Mint(oktatest.Claims{Subject: users[i].sub, Groups: groups})
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		ForceAttemptHTTP2: true, MaxConnsPerHost: 1}}
	get := func(tok string) (int, string, string, error) {
		req, _ := http.NewRequest("GET", "https://"+h.srv.Addr()+"/billing/x", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := client.Do(req)
		if err != nil {
			return 0, "", "", err
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b), res.Proto, nil
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, _, proto, err := get(users[0].tok)
		if err == nil && code == 200 {
			if proto != "HTTP/2.0" {
				t.Fatalf("protocol %s, want HTTP/2.0", proto)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("first request: %d %v", code, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				u := users[(g+i)%len(users)]
				code, body, _, err := get(u.tok)
				switch {
				case err != nil:
					errs <- err
				case code != u.want:
					errs <- fmt.Errorf("%s: %d, want %d", u.sub, code, u.want)
				case code == 200 && !strings.Contains(body, "user="+u.sub):
					errs <- fmt.Errorf("%s: upstream saw %q", u.sub, body)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// "OPTIONS *" would be answered by net/http itself (200, no audit event);
// serve hands it to the handler, which refuses it with 400 and audits it.
func TestOptionsAsteriskIsRefusedAndAudited(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "", nil)
	h.waitStatus("/anything", "", 401, 5*time.Second) // serving, snapshot loaded
	conn, err := net.Dial("tcp", h.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "OPTIONS * HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 400 || !strings.Contains(string(b), `"bad_request"`) {
		t.Fatalf("OPTIONS *: %d %s", res.StatusCode, b)
	}
	deadline := time.Now().Add(5 * time.Second)
	for h.auditCount("method = 'OPTIONS' AND reason = 'bad_request'") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("OPTIONS * was not audited")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Requests net/http refuses before any handler runs (a malformed target or
// header, headers too large, an unknown transfer coding, an HTTP version it
// does not speak) keep net/http's answer but are audited, once each, with
// reason bad_request; a keep-alive connection that sends valid requests
// first still attributes the refused one's method and target correctly, and
// valid requests never gain an extra event.
func TestParserRefusalsAreAudited(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "", nil)
	h.addRule(policy.Rule{Name: "health", Path: "/healthz", Methods: []string{"GET"}, Public: true})
	h.waitStatus("/healthz", "", 200, 5*time.Second)
	waitCount := func(where string, want int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			n := h.auditCount(where)
			if n == want {
				return
			}
			if n > want || time.Now().After(deadline) {
				t.Fatalf("%d audit events where %s, want %d", n, where, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	const valid = "path = '/healthz' AND status = 200"
	time.Sleep(300 * time.Millisecond) // the writer flushes within 250 ms
	okBefore := h.auditCount(valid)
	big := strings.Repeat("a", 70<<10)
	cases := []struct {
		name, req  string
		status     int
		method     string
		path       string
		validFirst int // valid keep-alive requests sent on the connection first
	}{
		{"bad escape", "GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400, "GET", "/%zz", 0},
		{"bad escape after two valid requests", "POST /billing/%zz/x?q=1 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "POST", "/billing/%zz/x", 2},
		{"bad header", "GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n", 400, "GET", "/healthz", 0},
		{"no host", "GET /healthz HTTP/1.1\r\n\r\n", 400, "GET", "/healthz", 0},
		{"header too large", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + big + "\r\n\r\n", 431, "GET", "/healthz", 0},
		{"unknown transfer coding", "POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked, foo\r\n\r\n", 501, "POST", "/healthz", 0},
		{"HTTP/3.0", "GET /healthz HTTP/3.0\r\nHost: x\r\n\r\n", 505, "GET", "/healthz", 0},
		{"not a request line", "\x16\x03\x01 garbage\r\n\r\n", 400, "", "", 0},
		{"unsupported Expect", "POST /healthz HTTP/1.1\r\nHost: x\r\nExpect: foo\r\nContent-Length: 3\r\n\r\nabc", 417, "POST", "/healthz", 0},
		// The query string is never stored (it may hold a token).
		{"query with a token", "GET /%zz?access_token=SECRET.TOKEN.sig&x=1 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "GET", "/%zz", 0},
		// An unread body that looks like a request line, discarded after
		// its request was refused, does not name the next request.
		{"after an unread body", "GET /%zz-real HTTP/1.1\r\nHost: x\r\n\r\n", 400, "GET", "/%zz-real", -1},
	}
	validSent := 0
	const match = "reason = 'bad_request' AND status = $1 AND method = $2 AND path = $3 AND decision = 'deny' AND client_ip = '127.0.0.1'"
	for i, c := range cases {
		before := h.auditCount(match, c.status, c.method, c.path)
		conn, err := net.Dial("tcp", h.srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		if c.validFirst < 0 {
			body := "DELETE /forged/attribution HTTP/1.1\r\nHost: x\r\n\r\n"
			io.WriteString(conn, "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n")
			time.Sleep(100 * time.Millisecond) // the body comes after the refusal has begun
			io.WriteString(conn, body)
			res, err := http.ReadResponse(br, nil)
			if err != nil || res.StatusCode < 400 || res.StatusCode > 499 {
				t.Fatalf("%s: first request: %v %v", c.name, res, err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
		for j := 0; j < c.validFirst; j++ {
			io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
			res, err := http.ReadResponse(br, nil)
			if err != nil || res.StatusCode != 200 {
				t.Fatalf("%s: valid request %d: %v %v", c.name, j, res, err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			validSent++
		}
		io.WriteString(conn, c.req)
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		res.Body.Close()
		conn.Close()
		if res.StatusCode != c.status {
			t.Fatalf("%s: status %d, want %d", c.name, res.StatusCode, c.status)
		}
		waitCount("reason = 'bad_request'", i+1)
		if n := h.auditCount("path LIKE '%SECRET%' OR path LIKE '%?%'"); n != 0 {
			t.Fatalf("%s: a query string was stored", c.name)
		}
		if n := h.auditCount(match, c.status, c.method, c.path); n != before+1 {
			var got string
			h.st.Pool().QueryRow(context.Background(), `SELECT format('%s %s %s %s %s', status, method, path, reason, client_ip) FROM audit_events WHERE reason = 'bad_request' ORDER BY time DESC LIMIT 1`).Scan(&got)
			t.Fatalf("%s: %d matching events; newest: %s", c.name, n, got)
		}
	}
	waitCount(valid, okBefore+validSent)
}
