package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/okproxy/okproxy/internal/dbtest"
	"github.com/okproxy/okproxy/internal/oktatest"
	"github.com/okproxy/okproxy/internal/policy"
	"github.com/okproxy/okproxy/internal/proxy"
	"github.com/okproxy/okproxy/internal/quota"
	"github.com/okproxy/okproxy/internal/store"
)

// quotaTestsRunAlone: the quota tests below run several replicas and
// hundreds of concurrent requests each; on a small machine under -race,
// running them beside each other starves everything (loopback dials and
// SCRAM handshakes time out) and tests measure the machine, not the
// limiter. Sequential tests run before the package's parallel ones.
//
// replica is one more `okproxy serve` on the harness's database, issuer and
// upstream: several in one process stand for several replicas.
// cluster is the harness's replica plus n-1 more.
func (h *harness) cluster(n int) []*replica {
	rs := []*replica{{srv: h.srv, base: h.base}}
	for i := 2; i <= n; i++ {
		rs = append(rs, h.replica(fmt.Sprint("r", i), nil))
	}
	return rs
}

// addQuota stores q and waits until every replica has loaded it.
func (h *harness) addQuota(rs []*replica, q quota.Quota) {
	h.t.Helper()
	q.Normalize()
	if err := q.Validate(); err != nil {
		h.t.Fatal(err)
	}
	v, err := h.st.AddQuota(context.Background(), q, "test")
	if err != nil {
		h.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, r := range rs {
		for r.srv.limiter.PolicyVersion() < v || r.srv.watcher.Current() == nil || r.srv.watcher.Current().PolicyVersion < v {
			if time.Now().After(deadline) {
				h.t.Fatalf("quota %s (policy version %d) not loaded by a replica within 10s", q.Name, v)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// dbWindow waits, if needed, until at least need is left of the current
// window of the given length by the database's clock, and returns its start.
func (h *harness) dbWindow(seconds int64, need time.Duration) int64 {
	h.t.Helper()
	for {
		var now time.Time
		if err := h.st.Pool().QueryRow(context.Background(), `SELECT now()`).Scan(&now); err != nil {
			h.t.Fatal(err)
		}
		start := now.Unix() - now.Unix()%seconds
		left := time.Unix(start+seconds, 0).Sub(now)
		if left >= need {
			return start
		}
		time.Sleep(left + 20*time.Millisecond)
	}
}

type answer struct {
	code   int
	header http.Header
	body   string
}

func do(base, path, token string) answer {
	req, _ := http.NewRequest("GET", base+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{body: err.Error()}
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return answer{res.StatusCode, res.Header, string(b)}
}

// burst sends n concurrent requests, spread round-robin over bases, and
// returns the answers.
func burst(bases []string, token string, n int) []answer {
	out := make([]answer, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) { defer wg.Done(); out[i] = do(bases[i%len(bases)], "/api/x", token) }(i)
	}
	wg.Wait()
	return out
}

// quotaSettle is how long budget that a replica still held when a burst
// ended takes to come back and reach a replica whose key is exhausted:
// IdleReturn (2s) + ExhaustedRecheck (1s) + a sweep, with margin
// (docs/quotas.md, "Why exactly limit when demand exceeds it").
const quotaSettle = 3500 * time.Millisecond

// admitsExactly checks SPEC §5 for a key whose demand exceeds its limit:
// never more than limit admitted, and exactly limit. A single burst can end
// while a replica still holds a few units (leased for requests that went to
// it, then not needed); those come back within quotaSettle, so a second
// burst after that must bring the total to exactly limit. A last burst must
// admit nothing. first holds the first burst's answers; more sends another.
// It returns the answers of the bursts it sent.
func admitsExactly(t *testing.T, what string, limit int, first []answer, more func() []answer) (sent []answer) {
	t.Helper()
	n := count(first, 200)
	if n+count(first, 429) != len(first) {
		t.Fatalf("%s: answers other than 200 and 429: %s", what, codes(first))
	}
	if n > limit {
		t.Fatalf("%s: %d admitted, over the limit of %d", what, n, limit)
	}
	if n < limit {
		t.Logf("%s: the first burst admitted %d of %d; the rest is held by a replica until it returns it", what, n, limit)
		time.Sleep(quotaSettle)
		as := more()
		sent = append(sent, as...)
		if n += count(as, 200); n != limit {
			t.Fatalf("%s: %d admitted after a second burst, want exactly %d: %s", what, n, limit, codes(as))
		}
	}
	as := more()
	if count(as, 200) != 0 {
		t.Fatalf("%s: %d more admitted after the limit was reached: %s", what, count(as, 200), codes(as))
	}
	return append(sent, as...)
}

// codes summarises answers by status ("0" for a transport error), for
// failure messages: an admission count that is off says little on its own.
func codes(as []answer) string {
	m := map[string]int{}
	for _, a := range as {
		k := strconv.Itoa(a.code)
		if a.code == 0 || a.code >= 500 {
			k += " " + strings.TrimSpace(a.body)
		}
		m[k]++
	}
	return fmt.Sprint(m)
}

func count(as []answer, code int) int {
	n := 0
	for _, a := range as {
		if a.code == code {
			n++
		}
	}
	return n
}

func bases(rs []*replica) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.base)
	}
	return out
}

func TestQuotaExactAcrossThreeReplicas(t *testing.T) {
	// Not parallel: see quotaTestsRunAlone.
	h := newHarness(t, "", nil)
	rs := h.cluster(3)
	h.addRule(policy.Rule{Name: "api", Path: "/api/**", AllowAuthenticated: true})
	h.addQuota(rs, quota.Quota{Name: "dev-tier", Group: policy.GroupRef{Name: "Developers"}, Limit: 50, WindowSeconds: 3600, Path: "/api/**"})
	tok := h.iss.Mint(oktatest.Claims{Subject: "alice@example.com", Groups: []string{"Developers"}})
	h.dbWindow(3600, 30*time.Second)

	as := burst(bases(rs), tok, 300)
	for _, a := range as {
		lim, _ := strconv.Atoi(a.header.Get("RateLimit-Limit"))
		rem, err := strconv.Atoi(a.header.Get("RateLimit-Remaining"))
		reset, _ := strconv.Atoi(a.header.Get("RateLimit-Reset"))
		if lim != 50 || err != nil || rem < 0 || rem > 49 || reset < 1 || reset > 3600 {
			t.Fatalf("%d: RateLimit-* headers %v", a.code, a.header)
		}
		if a.code == 429 {
			retry, _ := strconv.Atoi(a.header.Get("Retry-After"))
			if rem != 0 || retry != reset || !strings.Contains(a.body, `"quota_exceeded"`) {
				t.Fatalf("429 answer: %v %s", a.header, a.body)
			}
		} else if !strings.HasPrefix(a.body, "upstream GET /api/x") {
			t.Fatalf("admitted request did not reach the upstream: %s", a.body)
		}
	}
	extra := admitsExactly(t, "300 concurrent requests against 50/window", 50, as, func() []answer { return burst(bases(rs), tok, 60) })
	// The database agrees: the whole budget, and not one more, was granted.
	us, err := h.st.QuotaUsage(context.Background(), quota.UsageFilter{Quota: "dev-tier", User: "alice@example.com"})
	if err != nil || len(us) != 1 || us[0].Granted != 50 {
		t.Fatalf("usage: %+v %v", us, err)
	}
	// Denied requests never consume quota; callers in no quota group are not limited.
	other := h.iss.Mint(oktatest.Claims{Subject: "bob@example.com", Groups: []string{"Sales"}})
	if others := burst(bases(rs), other, 60); count(others, 200) != 60 || others[0].header.Get("RateLimit-Limit") != "" {
		t.Fatalf("caller in no quota group: %d of 60 admitted", count(others, 200))
	}
	h.waitAudit(300+len(extra)+60, 5*time.Second)
	if n, want := h.auditCount("reason = 'quota_exceeded' AND status = 429"), count(as, 429)+count(extra, 429); n != want {
		t.Fatalf("%d quota_exceeded audit events, want %d", n, want)
	}
}

func TestQuotaPerGroupAndTiers(t *testing.T) {
	// Not parallel: see quotaTestsRunAlone.
	h := newHarness(t, "", nil)
	rs := h.cluster(3)
	h.addRule(policy.Rule{Name: "api", Path: "/api/**", AllowAuthenticated: true})
	h.addQuota(rs, quota.Quota{Name: "team", Group: policy.GroupRef{Name: "Team"}, Limit: 20, WindowSeconds: 3600, Per: quota.PerGroup})
	h.addQuota(rs, quota.Quota{Name: "free", Group: policy.GroupRef{Name: "Free"}, Limit: 10, WindowSeconds: 3600})
	h.addQuota(rs, quota.Quota{Name: "pro", Group: policy.GroupRef{Name: "Pro"}, Limit: 100, WindowSeconds: 3600})
	h.dbWindow(3600, 30*time.Second)

	// Three members of Team share one count of 20.
	var members []string
	for _, u := range []string{"a", "b", "c"} {
		members = append(members, h.iss.Mint(oktatest.Claims{Subject: u + "@example.com", Groups: []string{"team"}}))
	}
	team := func() []answer {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var all []answer
		for _, tok := range members {
			wg.Add(1)
			go func() {
				defer wg.Done()
				as := burst(bases(rs), tok, 30)
				mu.Lock()
				all = append(all, as...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		return all
	}
	admitsExactly(t, "Team members together", 20, team(), team)
	// Tiers: in Free (10) and Pro (100), the most generous applies.
	both := h.iss.Mint(oktatest.Claims{Subject: "p@example.com", Groups: []string{"Free", "Pro"}})
	admitsExactly(t, "user in Free and Pro", 100, burst(bases(rs), both, 150), func() []answer { return burst(bases(rs), both, 60) })
	free := h.iss.Mint(oktatest.Claims{Subject: "f@example.com", Groups: []string{"Free"}})
	admitsExactly(t, "user in Free", 10, burst(bases(rs), free, 40), func() []answer { return burst(bases(rs), free, 20) })
	us, err := h.st.QuotaUsage(context.Background(), quota.UsageFilter{})
	if err != nil || len(us) != 3 {
		t.Fatalf("usage: %+v %v", us, err)
	}
	for _, u := range us {
		if u.Granted != u.Limit {
			t.Errorf("usage of %s/%s: granted %d of %d", u.Quota, u.Subject, u.Granted, u.Limit)
		}
	}
}

func TestQuotaWindowRollover(t *testing.T) {
	// Not parallel: see quotaTestsRunAlone.
	h := newHarness(t, "", nil)
	rs := h.cluster(3)
	h.addRule(policy.Rule{Name: "api", Path: "/api/**", AllowAuthenticated: true})
	h.addQuota(rs, quota.Quota{Name: "burst", Group: policy.GroupRef{Name: "G"}, Limit: 5, WindowSeconds: 2})
	tok := h.iss.Mint(oktatest.Claims{Subject: "alice@example.com", Groups: []string{"G"}})
	var starts []int64
	for w := 0; w < 3; w++ {
		start := h.dbWindow(2, 1500*time.Millisecond) // fresh window: most of it left
		as := burst(bases(rs), tok, 12)
		if n := count(as, 200); n != 5 {
			var got []string
			for _, a := range as {
				got = append(got, fmt.Sprintf("%d(reset %s)", a.code, a.header.Get("RateLimit-Reset")))
			}
			t.Fatalf("window %d: %d admitted, want 5: %s", w, n, strings.Join(got, " "))
		}
		for _, a := range as {
			if reset, _ := strconv.Atoi(a.header.Get("RateLimit-Reset")); a.code == 429 && (a.header.Get("Retry-After") == "" || reset < 1 || reset > 2) {
				t.Fatalf("429 in a 2s window: %v", a.header)
			}
		}
		starts = append(starts, start)
		for h.dbWindow(2, 1500*time.Millisecond) == start {
			time.Sleep(50 * time.Millisecond) // wait for the next window
		}
	}
	var rows int
	err := h.st.Pool().QueryRow(context.Background(), `SELECT count(*) FROM quota_windows
		WHERE window_start % 2 = 0 AND window_start = ANY($1) AND granted = 5`, starts).Scan(&rows)
	if err != nil || rows != 3 {
		t.Fatalf("epoch-aligned window rows with 5 granted: %d %v", rows, err)
	}
}

func TestQuotaDatabaseOutage(t *testing.T) {
	// Not parallel: see quotaTestsRunAlone.
	for _, mode := range []string{"allow", "deny"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			real := dbtest.NewDatabase(t)
			cut, viaCut := dbtest.NewCut(t, real)
			h := newHarness(t, viaCut, func(c *Config) { c.QuotaOnDBError = mode })
			rs := []*replica{{srv: h.srv, base: h.base}}
			h.addRule(policy.Rule{Name: "api", Path: "/api/**", AllowAuthenticated: true})
			h.addQuota(rs, quota.Quota{Name: "big", Group: policy.GroupRef{Name: "G"}, Limit: 1 << 40, WindowSeconds: 3600})
			h.dbWindow(3600, 30*time.Second)
			tok := h.iss.Mint(oktatest.Claims{Subject: "alice@example.com", Groups: []string{"G"}})
			warm := count(burst(bases(rs), tok, 200), 200)
			// Blocks grow with demand: a few quick requests after the burst
			// leave the key holding some of its last lease.
			for warm < 400 && h.srv.limiter.Held() == 0 {
				if a := do(h.base, "/api/x", tok); a.code == 200 {
					warm++
				}
			}
			held := h.srv.limiter.Held()
			if held == 0 {
				t.Fatalf("warm-up: %d admitted, none held", warm)
			}
			cut.Down()
			for i := int64(0); i < held; i++ {
				if a := do(h.base, "/api/x", tok); a.code != 200 {
					t.Fatalf("held lease, request %d of %d: %d %s", i, held, a.code, a.body)
				}
			}
			for i := 0; i < 20; i++ {
				a := do(h.base, "/api/x", tok)
				switch {
				case mode == "allow" && (a.code != 200 || a.header.Get("RateLimit-Limit") != ""):
					t.Fatalf("allow mode beyond held leases: %d %v", a.code, a.header)
				case mode == "deny" && (a.code != 429 || a.header.Get("Retry-After") == "" || !strings.Contains(a.body, "quota_exceeded")):
					t.Fatalf("deny mode beyond held leases: %d %v %s", a.code, a.header, a.body)
				}
			}
			cut.Up()
			sent := warm + int(held) + 20
			// The limiter's poll finds the database back (no request needed);
			// from then on requests are checked against the quota again.
			deadline := time.Now().Add(10 * time.Second)
			for h.srv.limiter.DBUnreachable() {
				if time.Now().After(deadline) {
					t.Fatal("the limiter did not notice that the database came back")
				}
				time.Sleep(20 * time.Millisecond)
			}
			sent++
			if a := do(h.base, "/api/x", tok); a.code != 200 || a.header.Get("RateLimit-Limit") == "" {
				t.Fatalf("after the outage: %d %v", a.code, a.header)
			}
			h.waitAudit(sent, 15*time.Second)
			want := map[string]int{"allow": 20, "deny": 0}[mode]
			if n := h.auditCount("reason = 'quota_unchecked' AND decision = 'allow'"); n != want {
				t.Fatalf("%d quota_unchecked events, want %d", n, want)
			}
			if n := h.auditCount("reason = 'ok'"); n < warm+int(held) {
				t.Fatalf("%d ok events, want at least %d (held leases are spent as usual)", n, warm+int(held))
			}
		})
	}
}

// TestQuotaReplicaKilledHoldingLease runs a real `okproxy serve` process,
// kills it with SIGKILL while it holds part of the budget, and checks the
// survivors: never over the limit, short by exactly what the dead replica
// held, and only for that window.
func TestQuotaReplicaKilledHoldingLease(t *testing.T) {
	// Not parallel: see quotaTestsRunAlone.
	bin := buildOkproxy(t)
	h := newHarness(t, "", nil)
	h.addRule(policy.Rule{Name: "api", Path: "/api/**", AllowAuthenticated: true})
	const limit, window = 500, 8
	h.addQuota([]*replica{{srv: h.srv, base: h.base}}, quota.Quota{Name: "q", Group: policy.GroupRef{Name: "G"}, Limit: limit, WindowSeconds: window})
	victim := startServe(t, bin, h, "victim")
	tok := h.iss.Mint(oktatest.Claims{Subject: "alice@example.com", Groups: []string{"G"}})

	start := h.dbWindow(window, 6*time.Second)
	admitted, held := 0, int64(0)
	for i := 0; i < 5 && held == 0; i++ {
		admitted += count(burst([]string{victim.base}, tok, 60), 200)
		held = victim.metric(t, "okproxy_quota_held")
	}
	if held == 0 {
		t.Fatal("the victim never held a lease between bursts")
	}
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	victim.cmd.Wait()
	rest := count(burst([]string{h.base}, tok, limit), 200)
	total := admitted + rest
	t.Logf("victim admitted %d and died holding %d; survivor admitted %d; window total %d of %d", admitted, held, rest, total, limit)
	if total > limit {
		t.Fatalf("%d admitted in one window, over the limit of %d", total, limit)
	}
	// What the victim held at the instant of the kill can exceed the metric
	// read just before it (a background prefetch may land in between), so the
	// check is the design's bound: one replica never holds more than 1/8 of
	// the remaining budget plus one prefetch of 1/8 of that (docs/quotas.md).
	if bound := limit/8 + limit/64 + 1; total < limit-bound {
		t.Fatalf("%d admitted: more under-admission than one replica can hold (%d)", total, bound)
	}
	// The loss is confined to that window.
	for h.dbWindow(window, 6*time.Second) == start {
		time.Sleep(100 * time.Millisecond)
	}
	if n := count(burst([]string{h.base}, tok, limit+50), 200); n != limit {
		t.Fatalf("next window: %d admitted, want %d", n, limit)
	}
}

func buildOkproxy(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "okproxy")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/okproxy/okproxy/cmd/okproxy").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

type process struct {
	cmd         *exec.Cmd
	base, admin string
}

// logLines collects a child's JSON log lines.
type logLines struct {
	mu    sync.Mutex
	buf   []byte
	lines []map[string]any
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := strings.IndexByte(string(l.buf), '\n')
		if i < 0 {
			return len(p), nil
		}
		var m map[string]any
		if json.Unmarshal(l.buf[:i], &m) == nil {
			l.lines = append(l.lines, m)
		}
		l.buf = l.buf[i+1:]
	}
}

func (l *logLines) find(msg string) map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.lines {
		if m["msg"] == msg {
			return m
		}
	}
	return nil
}

// startServe runs `okproxy serve` as a child process; extra flags come last
// and so override the defaults (e.g. a fixed --audit-spool-dir).
func startServe(t *testing.T, bin string, h *harness, name string, extra ...string) *process {
	t.Helper()
	args := []string{"serve", "--upstream", h.upstream.URL, "--issuer", h.iss.Issuer(), "--audience", "api://default",
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--replica", name, "--poll-interval", "1s",
		"--audit-spool-dir", t.TempDir()}
	cmd := exec.Command(bin, append(args, extra...)...)
	cmd.Env = append(os.Environ(), "OKPROXY_DATABASE_URL="+h.dbURL)
	logs := &logLines{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := logs.find("okproxy serving"); m != nil {
			p := &process{cmd: cmd, base: "http://" + fmt.Sprint(m["listen"]), admin: "http://" + fmt.Sprint(m["admin"])}
			for time.Now().Before(deadline) {
				if res, err := http.Get(p.admin + "/readyz"); err == nil {
					res.Body.Close()
					if res.StatusCode == 200 {
						return p
					}
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("okproxy serve did not become ready: %d log lines", len(logs.lines))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *process) metric(t *testing.T, name string) int64 {
	t.Helper()
	res, err := http.Get(p.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return int64(f)
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

// BenchmarkProxyQuota measures the proxy with and without a quota on every
// request, in the same run, through the real handler, token verification,
// audit writer and a loopback upstream; and the database statements the
// limiter makes per 1,000 limited requests (pg_stat_statements).
//
//	eval "$(scripts/db.sh up)" && go test -run '^$' -bench ProxyQuota -benchtime 5s ./internal/server/
func BenchmarkProxyQuota(b *testing.B) {
	ctx := context.Background()
	dbURL := dbtest.NewDatabase(b)
	st, err := store.Open(ctx, store.Config{URL: dbURL})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Pool().Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`); err != nil {
		b.Fatal(err)
	}
	iss, err := oktatest.New()
	if err != nil {
		b.Fatal(err)
	}
	defer iss.Close()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }))
	defer up.Close()
	r := policy.Rule{Name: "api", Path: "/api/**", AllowAuthenticated: true, Enabled: true, Mode: policy.ModeEnforce}
	if _, err := st.AddRule(ctx, r, "bench"); err != nil {
		b.Fatal(err)
	}
	q := quota.Quota{Name: "bench", Group: policy.GroupRef{Name: "Limited"}, Limit: 1 << 50, WindowSeconds: 3600}
	q.Normalize()
	if _, err := st.AddQuota(ctx, q, "bench"); err != nil {
		b.Fatal(err)
	}
	srv, err := New(ctx, Config{DatabaseURL: dbURL, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Upstream: up.URL,
		Issuer: iss.Issuer(), Audiences: []string{"api://default"}, Replica: "bench", AuditSpoolDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer srv.Shutdown(ctx)
	upURL, _ := url.Parse(up.URL)
	handler := func(l proxy.Limiter) *proxy.Handler {
		h, err := proxy.New(proxy.Config{Upstream: upURL, Verifier: srv.verifier, Snapshots: srv.watcher, Audit: srv.writer, Quota: l, Replica: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		return h
	}
	var nilLimiter proxy.Limiter
	bare, limited := handler(nilLimiter), handler(srv.limiter)
	tokens := make([]string, 1000)
	for i := range tokens {
		tokens[i] = iss.Mint(oktatest.Claims{Subject: fmt.Sprintf("user%d@example.com", i), Groups: []string{"Limited"}})
	}
	statements := func() int64 {
		var n int64
		err := st.Pool().QueryRow(ctx, `SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements
			WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
			  AND query ILIKE '%quota_windows%' AND query NOT ILIKE '%pg_stat_statements%'`).Scan(&n)
		if err != nil {
			b.Fatal(err)
		}
		return n
	}
	for _, users := range []int{1, 1000} {
		toks := tokens[:users]
		for _, c := range []struct {
			name string
			h    http.Handler
		}{{"no-quota", bare}, {"quota", limited}} {
			b.Run(fmt.Sprintf("%s/%d-users", c.name, users), func(b *testing.B) {
				for _, tok := range toks {
					serveOnce(b, c.h, tok) // warm the token cache and the key's first lease
				}
				before := statements()
				var i atomic.Int64
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						serveOnce(b, c.h, toks[int(i.Add(1))%len(toks)])
					}
				})
				b.StopTimer()
				time.Sleep(300 * time.Millisecond) // let pg_stat_statements catch up
				b.ReportMetric(float64(statements()-before)*1000/float64(b.N), "db-stmts/1k-req")
			})
		}
		// The same comparison with the two handlers interleaved request by
		// request, so that load from anything else on the machine hits both
		// alike: the overhead metric is the one to quote.
		b.Run(fmt.Sprintf("interleaved/%d-users", users), func(b *testing.B) {
			var i, bareNS, limitedNS atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					n := i.Add(1)
					h, acc := http.Handler(bare), &bareNS
					if n%2 == 1 {
						h, acc = limited, &limitedNS
					}
					t0 := time.Now()
					serveOnce(b, h, toks[int(n/2)%len(toks)])
					acc.Add(int64(time.Since(t0)))
				}
			})
			nb, nl := float64(b.N-b.N/2), float64(b.N/2)
			if nl > 0 {
				b.ReportMetric(float64(bareNS.Load())/nb, "ns/req-no-quota")
				b.ReportMetric(float64(limitedNS.Load())/nl, "ns/req-quota")
				b.ReportMetric((float64(limitedNS.Load())/nl/(float64(bareNS.Load())/nb)-1)*100, "overhead-%")
			}
		})
	}
}

func serveOnce(b *testing.B, h http.Handler, tok string) {
	req := httptest.NewRequest("GET", "/api/x", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		b.Errorf("status %d: %s", rec.Code, rec.Body)
	}
}
