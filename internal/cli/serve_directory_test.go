package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/okproxy/okproxy/internal/dbtest"
	"github.com/okproxy/okproxy/internal/oktaorg"
	"github.com/okproxy/okproxy/internal/oktatest"
	"github.com/okproxy/okproxy/internal/server"
	"github.com/okproxy/okproxy/internal/store"
)

// These tests run the real `groups sync` against the fake Okta org and a
// real `serve` against the same database: what a deployment does.

const (
	bobID        = "00uBob00000000000002"
	frankID      = "00uFrank000000000006"
	orgFinanceID = "00gFinance0000000003"
	orgDevsID    = "00gDevelopers0000002"
)

type dirEnv struct {
	t     *testing.T
	db    string
	org   *oktaorg.Server
	iss   *oktatest.Server
	base  string
	admin string
}

// sync runs `okproxy groups sync` against the fake org.
func (e *dirEnv) sync(extra ...string) {
	e.t.Helper()
	r := run(e.t, e.db, tokenEnv, syncArgs(e.org, extra...)...)
	if r.code != 0 {
		e.t.Fatalf("groups sync: %+v", r)
	}
}

func newDirEnv(t *testing.T, source string) *dirEnv {
	t.Helper()
	e := &dirEnv{t: t, db: dbtest.NewDatabase(t), org: fakeOrg(t)}
	e.sync()
	var err error
	if e.iss, err = oktatest.New(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.iss.Close() })
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	t.Cleanup(up.Close)
	srv, err := server.New(context.Background(), server.Config{DatabaseURL: e.db, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0",
		Upstream: up.URL, Issuer: e.iss.Issuer(), Audiences: []string{"api://default"}, GroupsSource: source,
		PollInterval: time.Second, AuditSpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	e.base = "http://" + srv.Addr()
	e.admin = "http://" + srv.AdminAddr()
	return e
}

func (e *dirEnv) status(path string, c oktatest.Claims) int {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+e.iss.Mint(c))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

func (e *dirEnv) waitStatus(path string, c oktatest.Claims, want int) {
	e.t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		got := e.status(path, c)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("GET %s as %s: %d, want %d", path, c.Subject, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServeRenamedGroupKeepsRule(t *testing.T) {
	t.Parallel()
	e := newDirEnv(t, "token")
	mustRun(t, e.db, "rules", "add", "fin", "--path", "/billing/**", "--allow", "Finance")
	bob := oktatest.Claims{Subject: "bob@example.com", UserID: bobID, Groups: []string{"Finance"}}
	e.waitStatus("/billing/x", bob, 200)
	if err := e.org.Org().RenameGroup(orgFinanceID, "Finance-EMEA"); err != nil {
		t.Fatal(err)
	}
	e.sync()
	// The rule is bound to the group's id: new tokens carry the new name and
	// still match; `rules list` shows the new name.
	renamed := oktatest.Claims{Subject: "bob@example.com", UserID: bobID, Groups: []string{"Finance-EMEA"}}
	e.waitStatus("/billing/x", renamed, 200)
	if out := mustRun(t, e.db, "rules", "show", "fin").stdout; !strings.Contains(out, "Finance-EMEA ("+orgFinanceID+")") {
		t.Fatalf("rules show after rename:\n%s", out)
	}
}

func TestServeDirectoryModeFollowsSync(t *testing.T) {
	t.Parallel()
	e := newDirEnv(t, "directory")
	mustRun(t, e.db, "rules", "add", "fin", "--path", "/billing/**", "--allow", "Finance")
	mustRun(t, e.db, "rules", "add", "dev", "--path", "/dev/**", "--allow", "Developers")
	// The token's groups claim is ignored in directory mode.
	bob := oktatest.Claims{Subject: "bob@example.com", UserID: bobID, Groups: []string{"Developers"}}
	e.waitStatus("/billing/x", bob, 200)
	// The last successful sync is visible in /metrics, so a stale directory is noticed.
	res, err := http.Get(e.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), "okproxy_directory_last_sync_timestamp_seconds 1") || !strings.Contains(string(body), "okproxy_directory_users 7") {
		t.Fatalf("metrics lack the last sync time or user count")
	}
	if got := e.status("/dev/x", bob); got != 403 {
		t.Fatalf("directory mode used the token's claim: %d", got)
	}
	// A member removed in Okta loses access after the next sync.
	if err := e.org.Org().RemoveMember(orgFinanceID, bobID); err != nil {
		t.Fatal(err)
	}
	e.sync()
	e.waitStatus("/billing/x", bob, 403)

	// A user deprovisioned in Okta is refused while the token is still valid.
	frank := oktatest.Claims{Subject: "frank@example.com", UserID: frankID}
	e.waitStatus("/dev/x", frank, 200)
	if err := e.org.Org().SetUserStatus(frankID, "DEPROVISIONED"); err != nil {
		t.Fatal(err)
	}
	e.sync()
	e.waitStatus("/dev/x", frank, 403)
	var n int
	st, err := store.Open(context.Background(), store.Config{URL: e.db})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Pool().QueryRow(context.Background(), `SELECT count(*) FROM audit_events WHERE subject = 'frank@example.com' AND reason = 'user_inactive'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for n == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		st.Pool().QueryRow(context.Background(), `SELECT count(*) FROM audit_events WHERE subject = 'frank@example.com' AND reason = 'user_inactive'`).Scan(&n)
	}
	if n == 0 {
		t.Fatal("deprovisioned user's refusal not audited as user_inactive")
	}
}

func TestServeAutoModeFallsBackForHundredGroups(t *testing.T) {
	t.Parallel()
	e := newDirEnv(t, "auto")
	mustRun(t, e.db, "rules", "add", "fin", "--path", "/billing/**", "--allow", "Finance")
	hundred := make([]string, 100)
	for i := range hundred {
		hundred[i] = fmt.Sprintf("Group%03d", i)
	}
	// Okta caps the claim at 100: the directory (where Bob is in Finance) decides.
	e.waitStatus("/billing/x", oktatest.Claims{Subject: "bob@example.com", UserID: bobID, Groups: hundred}, 200)
	// 99 groups are taken at their word.
	e.waitStatus("/billing/x", oktatest.Claims{Subject: "bob@example.com", UserID: bobID, Groups: hundred[:99]}, 403)
	// No claim at all: the directory, found by sub when there is no uid.
	e.waitStatus("/billing/x", oktatest.Claims{Subject: "bob@example.com", Omit: []string{"groups", "uid"}}, 200)
}
