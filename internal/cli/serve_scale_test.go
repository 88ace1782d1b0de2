package cli

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/okproxy/okproxy/internal/dbtest"
	"github.com/okproxy/okproxy/internal/oktatest"
	"github.com/okproxy/okproxy/internal/server"
)

// TestServePicksUpTenThousandRuleApply: a running serve enforces a policy of
// 10,000 rules applied with `rules apply` within SPEC's 1 s (asserted without
// the race detector, which slows compilation several-fold; logged always).
func TestServePicksUpTenThousandRuleApply(t *testing.T) {
	// Not parallel: it measures a reload against SPEC's 1 s, so it runs while
	// no other test of this package competes for the two cores.
	db := dbtest.NewDatabase(t)
	iss, err := oktatest.New()
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer up.Close()
	srv, err := server.New(context.Background(), server.Config{DatabaseURL: db, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0",
		Upstream: up.URL, Issuer: iss.Issuer(), Audiences: []string{"api://default"}, PollInterval: time.Minute, AuditSpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	// svc-00002 grants any caller with scope svc:2 (see bigPolicy).
	tok := iss.Mint(oktatest.Claims{Subject: "a@example.com", Scopes: []string{"svc:2"}})
	get := func() int {
		req, _ := http.NewRequest("GET", "http://"+srv.Addr()+"/svc/2/x", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := get(); code != 403 {
		t.Fatalf("before apply: %d", code)
	}
	f := writeFile(t, "big.yaml", bigPolicy(10000))
	start := time.Now()
	mustRun(t, db, "rules", "apply", "-f", f)
	applied := time.Since(start)
	for get() != 200 {
		if time.Since(start) > applied+30*time.Second {
			t.Fatal("serve never picked up the applied policy")
		}
		time.Sleep(5 * time.Millisecond)
	}
	pickup := time.Since(start) - applied
	t.Logf("rules apply of 10,000 rules took %v; serve enforced them %v after apply returned (race detector: %v)", applied, pickup, raceEnabled)
	if !raceEnabled && pickup > time.Second {
		t.Fatalf("serve took %v to pick up the new version, SPEC says within 1 s", pickup)
	}
}
