package server

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/okproxy/okproxy/internal/dbtest"
	"github.com/okproxy/okproxy/internal/policy"
	"github.com/okproxy/okproxy/internal/store"
)

// TestAuditSpoolSurvivesSIGKILL: a real `okproxy serve` process loses its
// database, keeps serving, spools the audit events to disk, and is killed
// with SIGKILL. A new process on the same spool dir replays them once the
// database is back: every event present, none twice.
func TestAuditSpoolSurvivesSIGKILL(t *testing.T) {
	// Not parallel: builds and runs child processes (see quotaTestsRunAlone).
	real := dbtest.NewDatabase(t)
	cut, viaCut := dbtest.NewCut(t, real)
	h := newHarness(t, viaCut, nil)
	h.addRule(policy.Rule{Name: "health", Path: "/healthz", Public: true})
	bin := buildOkproxy(t)
	spool := t.TempDir()
	victim := startServe(t, bin, h, "victim", "--audit-spool-dir", spool)
	get := func(base string) int {
		res, err := http.Get(base + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := get(victim.base); code != 200 {
		t.Fatalf("before the outage: %d", code)
	}
	cut.Down()
	const n = 50
	for i := 0; i < n; i++ {
		if code := get(victim.base); code != 200 {
			t.Fatalf("during the outage, request %d: %d", i, code)
		}
	}
	// Wait until the events are on disk (the writer spools after a failed insert).
	deadline := time.Now().Add(20 * time.Second)
	for spooledBytes(t, spool) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("nothing was spooled while the database was unreachable")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // let the last batch reach the spool too
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	victim.cmd.Wait()
	cut.Up()

	startServe(t, bin, h, "successor", "--audit-spool-dir", spool)
	st, err := store.Open(context.Background(), store.Config{URL: real})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var total, distinct int
	deadline = time.Now().Add(20 * time.Second)
	for {
		if err := st.Pool().QueryRow(context.Background(), `SELECT count(*), count(DISTINCT event_id) FROM audit_events WHERE replica = 'victim'`).Scan(&total, &distinct); err != nil {
			t.Fatal(err)
		}
		if total >= n+1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if total != n+1 || distinct != total {
		t.Fatalf("after SIGKILL and replay: %d events (%d distinct), want exactly %d", total, distinct, n+1)
	}
}

func spooledBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var sum int64
	filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			sum += info.Size()
		}
		return nil
	})
	return sum
}
