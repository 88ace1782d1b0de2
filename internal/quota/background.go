package quota

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// forgetAfter is how long an empty, idle key is remembered; forgetting it
// costs one lease statement if it comes back.
const forgetAfter = time.Minute

// maxPending bounds the reports kept while the database is unreachable.
const maxPending = 100_000

// maxReportBatch bounds one report statement.
const maxReportBatch = 1000

// rkey identifies a report: reports of one key and window are merged.
type rkey struct {
	id     int64
	key    string
	window int64
}

// Load reads the quota set if the policy or directory version changed since
// the one in force (the first call always reads).
func (l *Limiter) Load(ctx context.Context) error {
	cur := l.set.Load()
	t0 := l.cfg.Now()
	pv, dv, now, err := l.cfg.Store.QuotaVersions(ctx)
	l.m.statement("poll", err)
	if err != nil {
		return fmt.Errorf("read quota versions: %w", err)
	}
	l.clock.observe(t0, l.cfg.Now(), now)
	if l.brk.success() {
		// The database answers again: stop the OnDBError answers now rather
		// than at the next request's probe.
		l.log.Info("quota store reachable again")
	}
	if cur != nil && cur.policyVersion == pv && cur.directoryVersion == dv {
		return nil
	}
	loaded, err := l.cfg.Store.LoadQuotas(ctx)
	l.m.statement("load", err)
	if err != nil {
		return fmt.Errorf("load quotas: %w", err)
	}
	s := compileSet(loaded, l.m)
	l.set.Store(s)
	names := make([]string, len(s.quotas))
	for i, q := range s.quotas {
		names[i] = q.Name
	}
	l.log.Info("quotas loaded", "policy_version", s.policyVersion, "quotas", len(s.quotas), "names", strings.Join(names, ","))
	return nil
}

// Run does the background work until ctx ends: reloads on Kick and on the
// poll, and every Sweep it ends windows, returns idle leases, reports
// admissions and flushes reports. Statements of one never delay the other.
func (l *Limiter) Run(ctx context.Context) {
	go l.runLoads(ctx)
	t := time.NewTicker(l.cfg.Sweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			l.sweep(l.clock.dbNow())
			fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			l.flush(fctx)
			cancel()
		}
	}
}

func (l *Limiter) runLoads(ctx context.Context) {
	poll := time.NewTicker(l.cfg.Poll)
	defer poll.Stop()
	prune := time.NewTicker(time.Hour)
	defer prune.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.kick:
		case <-poll.C:
		case <-prune.C:
			pctx, cancel := context.WithTimeout(ctx, time.Minute)
			n, err := l.cfg.Store.PruneQuotaWindows(pctx, l.cfg.Retention)
			cancel()
			l.m.statement("prune", err)
			if err != nil {
				l.log.Warn("prune quota windows", "err", err)
			} else if n > 0 {
				l.log.Info("pruned quota windows", "rows", n)
			}
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := l.Load(lctx); err != nil {
			l.log.Warn("quota reload failed; keeping the quota set in force", "err", err)
		}
		cancel()
	}
}

// sweep visits every key: a key whose window ended gives back its lease and
// reports; an idle key gives back its lease; a busy key reports its
// admissions every ReportInterval; an empty idle key is forgotten. Keys
// with a lease in flight are left alone: their state is about to change.
func (l *Limiter) sweep(now time.Time) {
	s := l.set.Load()
	l.buckets.Range(func(k, v any) bool {
		b := v.(*bucket)
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.inflight != nil || b.demand > 0 {
			return true
		}
		gone := s != nil && s.byID[b.q.ID] == nil
		switch {
		case gone:
			l.release(b, true)
		case b.window != windowStart(now, b.q.WindowSeconds):
			l.rollTo(b, windowStart(now, b.q.WindowSeconds))
		case b.local > 0 && now.Sub(b.lastUse) >= l.cfg.IdleReturn && !l.brk.isDown():
			// (While the database is unreachable a held lease is all this
			// key has: it is kept for its own requests, not queued for a
			// return that cannot be sent.)
			l.release(b, true)
			b.lastReport = now
		case b.spent > b.reported && now.Sub(b.lastReport) >= l.cfg.ReportInterval:
			l.queue(Report{QuotaID: b.q.ID, Key: b.key, Window: b.window, Used: b.spent - b.reported})
			b.reported, b.lastReport = b.spent, now
		}
		if gone || (b.local == 0 && b.spent == b.reported && now.Sub(b.lastUse) >= forgetAfter) {
			b.dead = true
			l.buckets.Delete(k)
			l.keys.Add(-1)
		}
		return true
	})
}

// queue merges r into the pending reports.
func (l *Limiter) queue(r Report) {
	if r.Unused == 0 && r.Used == 0 {
		return
	}
	l.pmu.Lock()
	defer l.pmu.Unlock()
	k := rkey{r.QuotaID, r.Key, r.Window}
	if p, ok := l.pending[k]; ok {
		p.Unused += r.Unused
		p.Used += r.Used
		return
	}
	if len(l.pending) >= maxPending {
		l.m.lostUsed.Add(float64(r.Used))
		return
	}
	l.pending[k] = &r
}

// flush sends the pending reports, a batch per statement. A batch that
// certainly failed is queued again; one that may have been applied is
// dropped and counted, because applying a return twice would hand the
// same budget out twice.
func (l *Limiter) flush(ctx context.Context) error {
	l.pmu.Lock()
	if len(l.pending) == 0 {
		l.pmu.Unlock()
		return nil
	}
	all := make([]Report, 0, len(l.pending))
	for _, r := range l.pending {
		all = append(all, *r)
	}
	clear(l.pending)
	l.pmu.Unlock()
	// A stable order keeps two replicas' batches from locking rows in
	// opposite orders.
	slices.SortFunc(all, func(a, b Report) int {
		return cmp.Or(cmp.Compare(a.QuotaID, b.QuotaID), strings.Compare(a.Key, b.Key), cmp.Compare(a.Window, b.Window))
	})
	var errs []error
	for len(all) > 0 {
		n := min(len(all), maxReportBatch)
		batch := all[:n]
		all = all[n:]
		err := l.cfg.Store.ReportQuotas(ctx, batch)
		l.m.statement("report", err)
		var unused, used int64
		for _, r := range batch {
			unused += r.Unused
			used += r.Used
		}
		switch {
		case err == nil:
			l.m.returned.Add(float64(unused))
		case errors.Is(err, ErrNotApplied):
			for _, r := range batch {
				l.queue(r)
			}
			errs = append(errs, err)
		default:
			l.m.lostUsed.Add(float64(used))
			l.log.Warn("quota report may not have been applied; dropped (never resent)", "unused", unused, "used", used, "err", err)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close gives every held lease back and reports every admission, so other
// replicas can spend this one's budget in the current window. Call it after
// the listener has drained; Admit answers with the OnDBError fallback after.
func (l *Limiter) Close(ctx context.Context) error {
	l.closed.Store(true)
	// Returns that cannot reach the database are worth a short retry, not a
	// stalled shutdown: at worst the budget is unusable until window end.
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	l.buckets.Range(func(_, v any) bool {
		b := v.(*bucket)
		b.mu.Lock()
		for b.inflight != nil && ctx.Err() == nil {
			// A prefetch still in flight: wait for its grant, to return it.
			ch := b.inflight
			b.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
			}
			b.mu.Lock()
		}
		if b.window != 0 {
			l.release(b, true)
		}
		b.mu.Unlock()
		return true
	})
	for {
		err := l.flush(ctx)
		if err == nil || !errors.Is(err, ErrNotApplied) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}
