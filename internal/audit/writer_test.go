package audit_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/okproxy/okproxy/internal/audit"
	"github.com/okproxy/okproxy/internal/dbtest"
	"github.com/okproxy/okproxy/internal/store"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// fastFail makes connection attempts through a cut give up quickly.
func fastFail(t *testing.T, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("connect_timeout", "1")
	u.RawQuery = q.Encode()
	return u.String()
}

func sampleEvent(i int) *audit.Event {
	return &audit.Event{
		RequestID: fmt.Sprintf("req-%06d", i), Method: "GET", Host: "api.example.com",
		Path: fmt.Sprintf("/billing/%d", i), Status: 200, Decision: audit.DecisionAllow, Reason: "ok",
		PolicyVersion: 7, Rules: []string{"billing-read"}, Rule: "billing-read", Subject: "alice@example.com",
		UserID: "00u1", Email: "alice@example.com", Groups: []string{"Finance"}, ClientIP: "10.0.0.1",
		UserAgent: "test", JTI: fmt.Sprintf("jti-%d", i), ClientID: "0oa1", LatencyMS: 1.5,
	}
}

type counts struct{ rows, distinct int }

func countRows(t *testing.T, st *store.Store) counts {
	t.Helper()
	var c counts
	err := st.Pool().QueryRow(context.Background(), `SELECT count(*), count(DISTINCT event_id) FROM audit_events`).Scan(&c.rows, &c.distinct)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func startWriter(t *testing.T, cfg audit.WriterConfig) *audit.Writer {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	w, err := audit.NewWriter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	go w.Run(context.Background())
	return w
}

func closeWriter(t *testing.T, w *audit.Writer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
}

func TestWriterStoresEveryEventWithItsFields(t *testing.T) {
	t.Parallel()
	st := dbtest.NewStore(t)
	w := startWriter(t, audit.WriterConfig{Store: st, Replica: "r1", BatchSize: 200, SpoolDir: t.TempDir()})
	const n, workers = 5000, 16
	var wg sync.WaitGroup
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += workers {
				if err := w.Reserve(); err != nil {
					t.Error(err)
					return
				}
				w.Commit(sampleEvent(i))
			}
		}()
	}
	wg.Wait()
	closeWriter(t, w)
	if c := countRows(t, st); c.rows != n || c.distinct != n {
		t.Fatalf("%d rows, %d distinct, want %d", c.rows, c.distinct, n)
	}
	s := w.Stats()
	if s.Written != n || s.Dropped != 0 || s.Refused != 0 {
		t.Fatalf("stats %+v", s)
	}

	// Every field round-trips, with the time truncated to what PostgreSQL keeps.
	at := time.Date(2025, 3, 4, 5, 6, 7, 891234567, time.FixedZone("X", 3600))
	want := sampleEvent(99999)
	want.Time = at
	want.Shadow = "deny:forbidden:new-export (changed)"
	w2 := startWriter(t, audit.WriterConfig{Store: st, Replica: "r2"})
	if err := w2.Record(want); err != nil {
		t.Fatal(err)
	}
	closeWriter(t, w2)
	got, err := st.QueryAuditEvents(context.Background(), audit.Filter{Since: at.Add(-time.Second), Until: at.Add(time.Second)})
	if err != nil || len(got) != 1 {
		t.Fatalf("query: %v, %d rows", err, len(got))
	}
	want.Time = at.UTC().Truncate(time.Microsecond)
	want.Replica = "r2"
	got[0].Time = got[0].Time.UTC()
	if !reflect.DeepEqual(got[0], *want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got[0], *want)
	}
}

func TestWriterFlushesBySizeAndByInterval(t *testing.T) {
	t.Parallel()
	t.Run("size", func(t *testing.T) {
		t.Parallel()
		st := dbtest.NewStore(t)
		w := startWriter(t, audit.WriterConfig{Store: st, BatchSize: 100, FlushInterval: time.Hour})
		for i := 0; i < 250; i++ {
			w.Record(sampleEvent(i))
		}
		waitFor(t, 5*time.Second, "two full batches", func() bool { return countRows(t, st).rows == 200 })
		time.Sleep(300 * time.Millisecond)
		if c := countRows(t, st); c.rows != 200 {
			t.Fatalf("partial batch flushed early: %d rows", c.rows)
		}
		closeWriter(t, w) // the partial batch is flushed on close
		if c := countRows(t, st); c.rows != 250 {
			t.Fatalf("after close %d rows, want 250", c.rows)
		}
	})
	t.Run("interval", func(t *testing.T) {
		t.Parallel()
		st := dbtest.NewStore(t)
		w := startWriter(t, audit.WriterConfig{Store: st, BatchSize: 1000, FlushInterval: 100 * time.Millisecond})
		defer closeWriter(t, w)
		start := time.Now()
		for i := 0; i < 10; i++ {
			w.Record(sampleEvent(i))
		}
		waitFor(t, 2*time.Second, "the interval flush", func() bool { return countRows(t, st).rows == 10 })
		t.Logf("10 events queryable after %v", time.Since(start).Round(time.Millisecond))
	})
}

func TestWriterSpoolsWhileDatabaseIsDownAndReplaysExactlyOnce(t *testing.T) {
	t.Parallel()
	dbURL := dbtest.NewDatabase(t)
	cut, cutURL := dbtest.NewCut(t, dbURL)
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{URL: fastFail(t, cutURL)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	direct, err := store.Open(ctx, store.Config{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	reg := prometheus.NewRegistry()
	w := startWriter(t, audit.WriterConfig{Store: st, BatchSize: 50, FlushInterval: 20 * time.Millisecond,
		RetryInterval: 100 * time.Millisecond, InsertTimeout: 2 * time.Second, SpoolDir: t.TempDir(),
		SegmentBytes: 64 << 10, Metrics: reg})

	var sent int
	record := func(k int) {
		for i := 0; i < k; i++ {
			if err := w.Record(sampleEvent(sent)); err != nil {
				t.Fatalf("record %d: %v", sent, err)
			}
			sent++
			if i%20 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}
	record(500)
	cut.Down()
	record(2000)
	waitFor(t, 10*time.Second, "events to be spooled", func() bool { return w.Stats().Spooled > 0 && w.Stats().Queued == 0 })
	if s := w.Stats(); s.SpoolSegments < 2 {
		t.Errorf("want several segments (rotation), got %+v", s)
	}
	cut.Up()
	record(500)
	waitFor(t, 20*time.Second, "the spool to drain", func() bool {
		s := w.Stats()
		return s.SpoolSegments == 0 && s.Queued == 0 && countRows(t, direct).rows == sent
	})
	closeWriter(t, w)
	s := w.Stats()
	t.Logf("stats: %+v", s)
	if c := countRows(t, direct); c.rows != sent || c.distinct != sent {
		t.Fatalf("%d rows, %d distinct, want %d", c.rows, c.distinct, sent)
	}
	if s.Dropped != 0 || s.Refused != 0 || s.Spooled == 0 || s.Replayed == 0 {
		t.Fatalf("stats %+v", s)
	}
	// A COPY cut off after the server committed it but before the client
	// heard back is spooled too; its replay finds the rows and skips them.
	if s.Written+s.Replayed+s.Duplicates != int64(sent) {
		t.Fatalf("written %d + replayed %d + duplicates %d != %d", s.Written, s.Replayed, s.Duplicates, sent)
	}
}

// segments lists the spool's segment files.
func segments(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestWriterReplaysSpoolOfCrashedProcessWithoutDuplicates(t *testing.T) {
	t.Parallel()
	dbURL := dbtest.NewDatabase(t)
	cut, cutURL := dbtest.NewCut(t, dbURL)
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	dir := t.TempDir()

	// 1. A writer whose database is unreachable spools everything.
	cutStore, err := store.Open(ctx, store.Config{URL: fastFail(t, cutURL)})
	if err != nil {
		t.Fatal(err)
	}
	cut.Down()
	w1 := startWriter(t, audit.WriterConfig{Store: cutStore, BatchSize: 100, FlushInterval: 10 * time.Millisecond,
		SpoolDir: dir, SegmentBytes: 32 << 10, PartitionsAhead: -1})
	const n = 1000
	for i := 0; i < n; i++ {
		w1.Record(sampleEvent(i))
	}
	closeWriter(t, w1)
	cutStore.Close()
	if s := w1.Stats(); s.Spooled != n || s.Dropped != 0 {
		t.Fatalf("first writer: %+v", s)
	}
	segs := segments(t, dir)
	if len(segs) < 2 {
		t.Fatalf("want several segments, got %d", len(segs))
	}
	// Keep a copy, as if the process died after inserting but before removing them.
	saved := map[string][]byte{}
	for _, p := range segs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		saved[filepath.Base(p)] = b
	}
	// A crash during an append leaves a torn record at the end of a segment.
	last := segs[len(segs)-1]
	f, err := os.OpenFile(last, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0, 0, 1, 0, 0xde, 0xad, '[', '{'})
	f.Close()

	// 2. A new writer on the same directory replays them before anything else.
	w2 := startWriter(t, audit.WriterConfig{Store: st, SpoolDir: dir})
	waitFor(t, 10*time.Second, "replay", func() bool { return len(segments(t, dir)) == 0 })
	closeWriter(t, w2)
	if c := countRows(t, st); c.rows != n || c.distinct != n {
		t.Fatalf("after replay %d rows (%d distinct), want %d", c.rows, c.distinct, n)
	}
	if s := w2.Stats(); s.Replayed != n || s.Duplicates != 0 {
		t.Fatalf("second writer: %+v", s)
	}

	// 3. The segments reappear (the removal never happened): replaying again
	// inserts nothing.
	for name, b := range saved {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	w3 := startWriter(t, audit.WriterConfig{Store: st, SpoolDir: dir})
	waitFor(t, 10*time.Second, "second replay", func() bool { return len(segments(t, dir)) == 0 })
	closeWriter(t, w3)
	if c := countRows(t, st); c.rows != n || c.distinct != n {
		t.Fatalf("after second replay %d rows (%d distinct), want %d", c.rows, c.distinct, n)
	}
	if s := w3.Stats(); s.Replayed != 0 || s.Duplicates != n {
		t.Fatalf("third writer: %+v", s)
	}
}

func TestReserveRefusesWhenQueueFullAndSpoolUnwritable(t *testing.T) {
	t.Parallel()
	dbURL := dbtest.NewDatabase(t)
	cut, cutURL := dbtest.NewCut(t, dbURL)
	ctx := context.Background()
	cutStore, err := store.Open(ctx, store.Config{URL: fastFail(t, cutURL)})
	if err != nil {
		t.Fatal(err)
	}
	defer cutStore.Close()
	cut.Down()
	dir := filepath.Join(t.TempDir(), "spool")
	reg := prometheus.NewRegistry()
	w, err := audit.NewWriter(audit.WriterConfig{Store: cutStore, QueueSize: 4, BatchSize: 2, SpoolDir: dir,
		Metrics: reg, Logger: testLogger(t), FlushInterval: 10 * time.Millisecond, RetryInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// Make the spool unwritable in a way that holds even for root: the
	// directory is replaced by a file.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o400); err != nil {
		t.Fatal(err)
	}
	// The flush loop is not running yet, so nothing drains the queue.
	for i := 0; i < 4; i++ {
		if err := w.Record(sampleEvent(i)); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	err = w.Reserve()
	if !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("Reserve with a full queue and no spool: %v, want ErrUnavailable", err)
	}
	// The proxy answers 503 and commits that response's event.
	refusal := sampleEvent(4)
	refusal.Status, refusal.Decision, refusal.Reason = 503, audit.DecisionError, "unavailable"
	w.Commit(refusal)
	if s := w.Stats(); s.Refused != 1 || s.Queued != 5 || s.Dropped != 0 {
		t.Fatalf("stats after refusal: %+v", s)
	}
	if v := gather(t, reg, "okproxy_audit_refused_total"); v != 1 {
		t.Fatalf("okproxy_audit_refused_total = %v, want 1", v)
	}

	// Room appears (the spool comes back, then the database): everything
	// held, including the refusal's own event, is written.
	os.Remove(dir)
	os.Mkdir(dir, 0o700)
	go w.Run(ctx)
	cut.Up()
	st, err := store.Open(ctx, store.Config{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	waitFor(t, 10*time.Second, "held events to be written", func() bool { return countRows(t, st).rows == 5 })
	closeWriter(t, w)
	if s := w.Stats(); s.Dropped != 0 {
		t.Fatalf("dropped: %+v", s)
	}
	var n int
	st.Pool().QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE status = 503 AND reason = 'unavailable'`).Scan(&n)
	if n != 1 {
		t.Fatalf("the 503's own event is stored %d times, want 1", n)
	}
}

func gather(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func TestEventCarriesNoToken(t *testing.T) {
	t.Parallel()
	typ := reflect.TypeOf(audit.Event{})
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		name := strings.ToLower(f.Name + " " + f.Tag.Get("json"))
		for _, bad := range []string{"token", "authorization", "bearer", "jwt", "secret"} {
			if strings.Contains(name, bad) {
				t.Errorf("Event field %s (%s) looks like it could hold a raw token", f.Name, f.Tag)
			}
		}
	}
}

func TestSpoolDirIsExclusive(t *testing.T) {
	t.Parallel()
	st := dbtest.NewStore(t)
	dir := t.TempDir()
	w := startWriter(t, audit.WriterConfig{Store: st, SpoolDir: dir})
	defer closeWriter(t, w)
	if _, err := audit.NewWriter(audit.WriterConfig{Store: st, SpoolDir: dir}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second writer on one spool dir: %v", err)
	}
}

func TestWriterCreatesPartitionsAheadAndFlushesWhenCancelled(t *testing.T) {
	t.Parallel()
	st := dbtest.NewStore(t)
	w, err := audit.NewWriter(audit.WriterConfig{Store: st, PartitionsAhead: 12, FlushInterval: time.Hour, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	ahead := "audit_events_" + time.Now().UTC().Add(12*24*time.Hour).Format("20060102")
	waitFor(t, 5*time.Second, "partition "+ahead, func() bool {
		var ok bool
		st.Pool().QueryRow(context.Background(), `SELECT to_regclass($1) IS NOT NULL`, ahead).Scan(&ok)
		return ok
	})
	for i := 0; i < 10; i++ {
		w.Record(sampleEvent(i))
	}
	// Cancelling Run (without Close) still writes what is pending.
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if c := countRows(t, st); c.rows != 10 {
		t.Fatalf("%d rows after cancel, want 10", c.rows)
	}
	closeWriter(t, w)
	if err := w.Reserve(); !errors.Is(err, audit.ErrClosed) || !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("Reserve after Close: %v", err)
	}
}

// A client's User-Agent may hold bytes PostgreSQL's text refuses (obs-text
// that is not UTF-8; NUL defensively). They must not fail the batch — which
// would send every event in it through the spool — but be stored as U+FFFD,
// without touching slices the caller shares.
func TestWriterStoresTextPostgresWouldRefuse(t *testing.T) {
	t.Parallel()
	st := dbtest.NewStore(t)
	w := startWriter(t, audit.WriterConfig{Store: st, Replica: "r1", SpoolDir: t.TempDir()})
	groups := []string{"Finance", "bad\xffgroup"}
	e := sampleEvent(1)
	e.UserAgent, e.Path, e.Groups = "agent\xff\xfe/1.0 \x00x", "/caf\xc3", groups
	good := sampleEvent(2)
	for _, ev := range []*audit.Event{e, good} {
		if err := w.Record(ev); err != nil {
			t.Fatal(err)
		}
	}
	closeWriter(t, w)
	if s := w.Stats(); s.Written != 2 || s.Spooled != 0 || s.Dropped != 0 {
		t.Fatalf("stats %+v: want both written directly, nothing spooled", s)
	}
	if groups[1] != "bad\xffgroup" {
		t.Fatalf("the caller's groups slice was modified: %q", groups)
	}
	got, err := st.QueryAuditEvents(context.Background(), audit.Filter{Since: time.Now().Add(-time.Minute)})
	if err != nil || len(got) != 2 {
		t.Fatalf("query: %v, %d rows", err, len(got))
	}
	var stored audit.Event
	for _, g := range got {
		if g.RequestID == e.RequestID {
			stored = g
		}
	}
	if stored.UserAgent != "agent\uFFFD/1.0 \uFFFDx" || stored.Path != "/caf\uFFFD" ||
		!slices.Equal(stored.Groups, []string{"Finance", "bad\uFFFDgroup"}) {
		t.Fatalf("stored %q %q %q", stored.UserAgent, stored.Path, stored.Groups)
	}
}
