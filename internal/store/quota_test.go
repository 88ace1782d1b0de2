package store_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/okproxy/okproxy/internal/dbtest"
	"github.com/okproxy/okproxy/internal/policy"
	"github.com/okproxy/okproxy/internal/quota"
	"github.com/okproxy/okproxy/internal/store"
)

func addQuota(t *testing.T, st *store.Store, q quota.Quota) quota.Quota {
	t.Helper()
	q.Normalize()
	if err := q.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddQuota(context.Background(), q, "test"); err != nil {
		t.Fatal(err)
	}
	got, err := st.GetQuota(context.Background(), q.Name)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func currentWindow(t *testing.T, st *store.Store, seconds int64) int64 {
	t.Helper()
	_, _, now, err := st.QuotaVersions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Stay clear of a window boundary so the test's window stays current.
	if rem := seconds - now.Unix()%seconds; rem < 5 {
		time.Sleep(time.Duration(rem+1) * time.Second)
		return currentWindow(t, st, seconds)
	}
	return now.Unix() - now.Unix()%seconds
}

// The lease statement is the whole protocol's critical section: however
// many callers race with whatever blocks, the grants add up to the limit
// exactly and the row never exceeds it.
func TestLeaseStatementNeverOverGrants(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.NewStore(t)
	q := addQuota(t, st, quota.Quota{Name: "q", Group: policy.GroupRef{Name: "G"}, Limit: 1000, WindowSeconds: 3600})
	w := currentWindow(t, st, q.WindowSeconds)
	var granted, maxTotal atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 24; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				g, err := st.LeaseQuota(ctx, quota.Lease{QuotaID: q.ID, Key: "alice", Label: "alice@example.com", Window: w,
					WindowSeconds: q.WindowSeconds, Limit: q.Limit, Block: 1 + rand.Int64N(40), Used: 1})
				if err != nil {
					t.Error(err)
					return
				}
				granted.Add(g.Granted)
				for m := maxTotal.Load(); g.Total > m && !maxTotal.CompareAndSwap(m, g.Total); m = maxTotal.Load() {
				}
				if g.Granted == 0 {
					return
				}
			}
		}()
	}
	wg.Wait()
	if granted.Load() != 1000 || maxTotal.Load() != 1000 {
		t.Fatalf("granted %d in total (row peaked at %d), want exactly 1000", granted.Load(), maxTotal.Load())
	}

	// A return makes budget available again; used accumulates.
	if err := st.ReportQuotas(ctx, []quota.Report{{QuotaID: q.ID, Key: "alice", Window: w, Unused: 30, Used: 5}}); err != nil {
		t.Fatal(err)
	}
	g, err := st.LeaseQuota(ctx, quota.Lease{QuotaID: q.ID, Key: "alice", Window: w, WindowSeconds: q.WindowSeconds, Limit: q.Limit, Block: 100})
	if err != nil || g.Granted != 30 || g.Total != 1000 {
		t.Fatalf("lease after a return of 30: %+v %v", g, err)
	}
	us, err := st.QuotaUsage(ctx, quota.UsageFilter{User: "ALICE@example.com"})
	if err != nil || len(us) != 1 || us[0].Granted != 1000 || us[0].Subject != "alice@example.com" || us[0].Remaining != 0 {
		t.Fatalf("usage: %+v %v", us, err)
	}

	// Nothing is granted for a window that is not the database's current one.
	for _, other := range []int64{w - q.WindowSeconds, w + q.WindowSeconds} {
		g, err := st.LeaseQuota(ctx, quota.Lease{QuotaID: q.ID, Key: "bob", Window: other, WindowSeconds: q.WindowSeconds, Limit: q.Limit, Block: 10})
		if err != nil || g.Granted != 0 || g.Now.IsZero() {
			t.Fatalf("lease for window %d (current %d): %+v %v", other, w, g, err)
		}
	}

	// A removed quota is reported as such, and certainly not applied.
	if _, err := st.RemoveQuota(ctx, "q", "test"); err != nil {
		t.Fatal(err)
	}
	_, err = st.LeaseQuota(ctx, quota.Lease{QuotaID: q.ID, Key: "alice", Window: w, WindowSeconds: q.WindowSeconds, Limit: q.Limit, Block: 1})
	if !errors.Is(err, quota.ErrUnknownQuota) || !errors.Is(err, quota.ErrNotApplied) {
		t.Fatalf("lease on a removed quota: %v", err)
	}
}

// The statement's arithmetic is quota.LeaseGrant's, on the locked row.
func TestLeaseStatementMatchesLeaseGrant(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.NewStore(t)
	q := addQuota(t, st, quota.Quota{Name: "q", Group: policy.GroupRef{Name: "G"}, Limit: 500, WindowSeconds: 3600})
	w := currentWindow(t, st, q.WindowSeconds)
	var granted int64
	for i := 0; granted < q.Limit && i < 1000; i++ {
		need, block, div := rand.Int64N(4), rand.Int64N(100), rand.Int64N(10)
		g, err := st.LeaseQuota(ctx, quota.Lease{QuotaID: q.ID, Key: "k", Window: w, WindowSeconds: q.WindowSeconds, Limit: q.Limit,
			Need: need, Block: block, Divisor: div})
		if err != nil {
			t.Fatal(err)
		}
		if want := quota.LeaseGrant(q.Limit, granted, need, block, div); g.Granted != want || g.Total != granted+want {
			t.Fatalf("lease %d (granted %d, need %d, block %d, divisor %d): got %+v, want grant %d", i, granted, need, block, div, g, want)
		}
		granted = g.Total
	}
	if granted != q.Limit {
		t.Fatalf("granted %d after 1000 leases", granted)
	}
}

func TestQuotaDefinitions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := dbtest.NewStore(t)
	q := addQuota(t, st, quota.Quota{Name: "dev-tier", Group: policy.GroupRef{Name: "Developers"}, Limit: 1000, WindowSeconds: 3600,
		Path: "/api/**", Methods: []string{"get", "POST"}, Per: quota.PerGroup})
	if q.ID == 0 || q.Path != "/api/**" || len(q.Methods) != 2 || q.Methods[0] != "GET" || q.Per != quota.PerGroup {
		t.Fatalf("stored: %+v", q)
	}
	if _, err := st.AddQuota(ctx, q, "test"); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate: %v", err)
	}
	l, err := st.LoadQuotas(ctx)
	if err != nil || len(l.Quotas) != 1 || l.PolicyVersion != 1 || l.Now.IsZero() {
		t.Fatalf("load: %+v %v", l, err)
	}
	evs, err := st.ListAdminEvents(ctx, "quota", "dev-tier", time.Time{}, 10)
	if err != nil || len(evs) != 1 || evs[0].Action != "quota.add" || evs[0].Actor != "test" || evs[0].PolicyVersion != 1 {
		t.Fatalf("admin events: %+v %v", evs, err)
	}
	if _, err := st.RemoveQuota(ctx, "nope", "test"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("remove unknown: %v", err)
	}
}
