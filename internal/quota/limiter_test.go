package quota

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/okproxy/okproxy/internal/policy"
	"github.com/okproxy/okproxy/internal/proxy"
)

// fakeStore is the lease protocol's database in memory, with the same
// semantics as the SQL in internal/store (tested against Postgres in
// store_test.go), a clock of its own, and failure injection.
type fakeStore struct {
	mu      sync.Mutex
	now     func() time.Time
	quotas  []Quota
	version int64
	rows    map[rkey]*fakeRow
	delay   time.Duration
	down    atomic.Bool

	leases, reports atomic.Int64
}

type fakeRow struct{ granted, used int64 }

func newFakeStore(qs ...Quota) *fakeStore {
	for i := range qs {
		qs[i].ID = int64(i + 1)
		qs[i].Normalize()
	}
	return &fakeStore{now: time.Now, quotas: qs, version: 1, rows: map[rkey]*fakeRow{}}
}

var errDown = fmt.Errorf("connect: connection refused: %w", ErrNotApplied)

func (f *fakeStore) LoadQuotas(context.Context) (*Loaded, error) {
	if f.down.Load() {
		return nil, errDown
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return &Loaded{PolicyVersion: f.version, Quotas: append([]Quota(nil), f.quotas...), Now: f.now()}, nil
}

func (f *fakeStore) QuotaVersions(context.Context) (int64, int64, time.Time, error) {
	if f.down.Load() {
		return 0, 0, time.Time{}, errDown
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.version, 0, f.now(), nil
}

func (f *fakeStore) LeaseQuota(ctx context.Context, l Lease) (Grant, error) {
	f.leases.Add(1)
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
	if f.down.Load() {
		return Grant{}, errDown
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	r := f.row(rkey{l.QuotaID, l.Key, l.Window})
	var g int64
	if windowStart(now, l.WindowSeconds) == l.Window {
		g = LeaseGrant(l.Limit, r.granted, l.Need, l.Block, l.Divisor)
	}
	r.granted += g
	r.used += l.Used
	return Grant{Granted: g, Total: r.granted, Now: now}, nil
}

func (f *fakeStore) row(k rkey) *fakeRow {
	r := f.rows[k]
	if r == nil {
		r = &fakeRow{}
		f.rows[k] = r
	}
	return r
}

func (f *fakeStore) ReportQuotas(ctx context.Context, rs []Report) error {
	f.reports.Add(1)
	if f.down.Load() {
		return errDown
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, rep := range rs {
		r := f.row(rkey{rep.QuotaID, rep.Key, rep.Window})
		r.granted -= rep.Unused
		r.used += rep.Used
		if r.granted < 0 {
			panic("granted below zero: a return was applied twice")
		}
	}
	return nil
}

func (f *fakeStore) PruneQuotaWindows(context.Context, time.Duration) (int64, error) { return 0, nil }

// totals sums a quota's rows.
func (f *fakeStore) totals(id int64) (granted, used int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, r := range f.rows {
		if k.id == id {
			granted += r.granted
			used += r.used
		}
	}
	return granted, used
}

func newTestLimiter(t *testing.T, st Store, mutate func(*Config)) *Limiter {
	t.Helper()
	cfg := Config{Store: st, Sweep: 10 * time.Millisecond}
	if mutate != nil {
		mutate(&cfg)
	}
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return l
}

func check(user string, groups ...string) proxy.QuotaCheck {
	c := proxy.QuotaCheck{Method: "GET", Path: "/x", Subject: user, UserID: "uid-" + user}
	for _, g := range groups {
		c.Groups = append(c.Groups, policy.GroupRef{Name: g})
	}
	return c
}

// hammer sends n requests of c from workers goroutines spread over the
// limiters and counts admissions.
func hammer(ls []*Limiter, c proxy.QuotaCheck, n, workers int) (admitted int64) {
	var wg sync.WaitGroup
	var next atomic.Int64
	var adm atomic.Int64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if d := ls[w%len(ls)].Admit(context.Background(), c); d.Allowed {
					adm.Add(1)
				}
			}
		}(w)
	}
	wg.Wait()
	return adm.Load()
}

func TestExactAcrossReplicas(t *testing.T) {
	t.Parallel()
	for _, limit := range []int64{1, 7, 50, 1000, 25000} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			t.Parallel()
			st := newFakeStore(Quota{Name: "q", Group: policy.GroupRef{Name: "G"}, Limit: limit, WindowSeconds: 3600})
			st.delay = 200 * time.Microsecond
			var ls []*Limiter
			for i := 0; i < 3; i++ {
				ls = append(ls, newTestLimiter(t, st, nil))
			}
			n := int(limit)*3 + 30
			if got := hammer(ls, check("alice", "G"), n, 48); got != limit {
				t.Fatalf("admitted %d of %d requests, want exactly %d", got, n, limit)
			}
			if g, _ := st.totals(1); g != limit {
				t.Fatalf("granted %d, want %d", g, limit)
			}
			t.Logf("limit %d: %d lease statements for %d requests", limit, st.leases.Load(), n)
		})
	}
}

func TestSingleflightAndAdaptiveBlocks(t *testing.T) {
	t.Parallel()
	st := newFakeStore(Quota{Name: "q", Group: policy.GroupRef{Name: "G"}, Limit: 1 << 40, WindowSeconds: 3600})
	st.delay = 2 * time.Millisecond
	l := newTestLimiter(t, st, nil)
	const n = 20000
	if got := hammer([]*Limiter{l}, check("alice", "G"), n, 64); got != n {
		t.Fatalf("admitted %d of %d under a huge limit", got, n)
	}
	// 64 concurrent requests and a 2ms statement: without singleflight
	// every request would lease; with doubling blocks a handful suffice.
	if s := st.leases.Load(); s > 40 {
		t.Fatalf("%d lease statements for %d requests", s, n)
	}
	t.Logf("%d lease statements for %d requests", st.leases.Load(), n)
}

func TestLeaseGrantNeverHoardsTheEnd(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ granted, need, block, want int64 }{
		{0, 1, 1 << 20, 12}, // an eighth of 100
		{0, 1, 5, 5},        // the block when smaller
		{80, 1, 1 << 20, 2}, // an eighth of the 20 left
		{93, 1, 1 << 20, 1}, // 7 left, under Divisor: exactly the need
		{93, 5, 1 << 20, 5}, // waiting requests are real demand
		{97, 5, 1 << 20, 3}, // but never more than remains
		{100, 3, 32, 0},
		{120, 3, 32, 0}, // a limit lowered under granted
		{0, 300, 32, 100},
	} {
		if got := LeaseGrant(100, c.granted, c.need, c.block, 8); got != c.want {
			t.Errorf("granted %d need %d block %d: grant %d, want %d", c.granted, c.need, c.block, got, c.want)
		}
	}
	if got := LeaseGrant(100, 0, 0, 40, 0); got != 40 {
		t.Errorf("no divisor: %d", got)
	}
}

func TestCloseReturnsLeases(t *testing.T) {
	t.Parallel()
	st := newFakeStore(Quota{Name: "q", Group: policy.GroupRef{Name: "G"}, Limit: 1000, WindowSeconds: 3600})
	a := newTestLimiter(t, st, nil)
	hammer([]*Limiter{a}, check("alice", "G"), 200, 16)
	if a.Held() == 0 {
		t.Fatal("a holds no lease after a burst; the test proves nothing")
	}
	held := a.Held()
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	g, used := st.totals(1)
	if g != 200 || used != 200 {
		t.Fatalf("after close: granted %d used %d, want 200/200 (held %d returned)", g, used, held)
	}
	b := newTestLimiter(t, st, nil)
	if got := hammer([]*Limiter{b}, check("alice", "G"), 1000, 16); got != 800 {
		t.Fatalf("the other replica admitted %d, want the 800 left", got)
	}
}

func TestIdleLeaseIsReturned(t *testing.T) {
	t.Parallel()
	st := newFakeStore(Quota{Name: "q", Group: policy.GroupRef{Name: "G"}, Limit: 1000, WindowSeconds: 3600})
	a := newTestLimiter(t, st, func(c *Config) { c.IdleReturn = 50 * time.Millisecond })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Run(ctx)
	hammer([]*Limiter{a}, check("alice", "G"), 300, 16)
	deadline := time.Now().Add(2 * time.Second)
	for a.Held() > 0 || func() bool { g, _ := st.totals(1); return g != 300 }() {
		if time.Now().After(deadline) {
			g, u := st.totals(1)
			t.Fatalf("idle lease not returned: held %d, granted %d, used %d", a.Held(), g, u)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPerGroupAndTiers(t *testing.T) {
	t.Parallel()
	st := newFakeStore(
		Quota{Name: "team", Group: policy.GroupRef{Name: "Team"}, Limit: 20, WindowSeconds: 3600, Per: PerGroup},
		Quota{Name: "free", Group: policy.GroupRef{Name: "Free"}, Limit: 10, WindowSeconds: 3600},
		Quota{Name: "pro", Group: policy.GroupRef{Name: "Pro"}, Limit: 100, WindowSeconds: 3600},
	)
	l := newTestLimiter(t, st, nil)
	var shared int64
	for _, u := range []string{"a", "b", "c"} {
		shared += hammer([]*Limiter{l}, check(u, "team"), 15, 4)
	}
	if shared != 20 {
		t.Fatalf("group members together got %d, want 20", shared)
	}
	if got := hammer([]*Limiter{l}, check("p", "Free", "Pro"), 300, 8); got != 100 {
		t.Fatalf("Free+Pro user got %d, want 100", got)
	}
	if got := hammer([]*Limiter{l}, check("f", "Free"), 300, 8); got != 10 {
		t.Fatalf("Free user got %d, want 10", got)
	}
	if d := l.Admit(context.Background(), check("x", "Other")); !d.Allowed || d.Limited {
		t.Fatalf("caller in no quota group: %+v", d)
	}
}

// A replica whose clock is off by far more than a window still uses the
// database's windows: it learns the offset from every statement.
func TestWindowsFollowTheDatabaseClock(t *testing.T) {
	t.Parallel()
	var dbNow atomic.Int64
	dbNow.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).Unix())
	st := newFakeStore(Quota{Name: "q", Group: policy.GroupRef{Name: "G"}, Limit: 5, WindowSeconds: 10})
	st.now = func() time.Time { return time.Unix(dbNow.Load(), 0) }
	skewed := func() time.Time { return time.Unix(dbNow.Load(), 0).Add(-37 * time.Second) }
	l := newTestLimiter(t, st, func(c *Config) { c.Now = skewed })
	for w := 0; w < 3; w++ {
		got := hammer([]*Limiter{l}, check("alice", "G"), 12, 3)
		if got != 5 {
			t.Fatalf("window %d: admitted %d, want 5", w, got)
		}
		d := l.Admit(context.Background(), check("alice", "G"))
		if d.Allowed || d.Reset <= 0 || d.Reset > 10*time.Second {
			t.Fatalf("window %d: exhausted decision %+v", w, d)
		}
		dbNow.Add(10)
	}
}

func TestDatabaseOutage(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{OnDBErrorAllow, OnDBErrorDeny} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			st := newFakeStore(Quota{Name: "q", Group: policy.GroupRef{Name: "G"}, Limit: 1 << 30, WindowSeconds: 3600})
			l := newTestLimiter(t, st, func(c *Config) { c.OnDBError = mode; c.DBRetry = 50 * time.Millisecond })
			hammer([]*Limiter{l}, check("alice", "G"), 2000, 16)
			held := l.Held()
			if held == 0 {
				t.Fatal("no lease held before the outage")
			}
			st.down.Store(true)
			for i := int64(0); i < held; i++ {
				if d := l.Admit(context.Background(), check("alice", "G")); !d.Allowed || d.Unchecked {
					t.Fatalf("held lease %d of %d not spent normally: %+v", i, held, d)
				}
			}
			before := st.leases.Load()
			for i := 0; i < 50; i++ {
				d := l.Admit(context.Background(), check("alice", "G"))
				switch mode {
				case OnDBErrorAllow:
					if !d.Allowed || !d.Unchecked || d.Quota != "q" {
						t.Fatalf("allow mode: %+v", d)
					}
				case OnDBErrorDeny:
					if d.Allowed || !d.Limited || d.Reset < time.Second {
						t.Fatalf("deny mode: %+v", d)
					}
				}
			}
			// The breaker keeps requests off the dead database.
			if n := st.leases.Load() - before; n > 2 {
				t.Fatalf("%d lease attempts for 50 requests during the outage", n)
			}
			st.down.Store(false)
			time.Sleep(60 * time.Millisecond)
			if d := l.Admit(context.Background(), check("alice", "G")); !d.Allowed || d.Unchecked {
				t.Fatalf("after the outage: %+v", d)
			}
		})
	}
}

func TestNotLoadedFallsBack(t *testing.T) {
	t.Parallel()
	st := newFakeStore()
	st.down.Store(true)
	l, err := New(Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Load(context.Background()); !errors.Is(err, ErrNotApplied) {
		t.Fatalf("load from a dead store: %v", err)
	}
	if d := l.Admit(context.Background(), check("a", "G")); !d.Allowed || !d.Unchecked {
		t.Fatalf("no quota set yet: %+v", d)
	}
}
