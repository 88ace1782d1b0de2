package quota

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/okproxy/okproxy/internal/proxy"
)

// maxBlock bounds adaptive growth; the Divisor share bounds it further.
const maxBlock = 1 << 30

// bkey identifies a count: one quota and one user or group.
type bkey struct {
	id  int64
	key string
}

// bucket is this replica's share of one key's budget in its current window.
// Everything in it is guarded by mu; the lease statement runs without mu
// held, with inflight set so that other requests of the key wait for its
// answer rather than lease in parallel.
type bucket struct {
	mu    sync.Mutex
	q     *compiled
	key   string
	label string
	dead  bool // forgotten by the sweeper: look the key up again

	window    int64 // start of the window the budget below belongs to
	local     int64 // leased and not yet spent
	spent     int64 // admitted by this replica in window
	reported  int64 // part of spent the database has been told about
	total     int64 // the window's total granted to all replicas, as last seen
	exhausted bool  // total reached the limit
	recheckAt time.Time

	inflight   chan struct{} // closed when the lease in flight is answered
	demand     int64         // requests waiting for that lease
	block      int64         // adaptive block size
	granted    int64         // what the last lease granted
	lastLease  time.Time
	lastUse    time.Time
	lastReport time.Time
}

func (l *Limiter) bucket(q *compiled, key, label string) *bucket {
	k := bkey{q.ID, key}
	if b, ok := l.buckets.Load(k); ok {
		return b.(*bucket)
	}
	nb := &bucket{q: q, key: key, label: label}
	b, loaded := l.buckets.LoadOrStore(k, nb)
	if !loaded {
		l.keys.Add(1)
	}
	return b.(*bucket)
}

// windowStart is the epoch-aligned window containing t.
func windowStart(t time.Time, seconds int64) int64 {
	s := t.Unix()
	return s - s%seconds
}

// take admits or refuses one request. It is called with b.mu held and
// returns with it released.
func (l *Limiter) take(b *bucket) proxy.QuotaDecision {
	q := b.q
	now := l.clock.dbNow()
	l.rollTo(b, windowStart(now, q.WindowSeconds))
	b.lastUse = now
	skewed := 0
	for {
		if b.local > 0 {
			b.local--
			b.spent++
			l.held.Add(-1)
			d := proxy.QuotaDecision{Limited: true, Allowed: true, Quota: q.Name, Limit: q.Limit,
				Remaining: max(q.Limit-b.total, 0) + b.local, Reset: windowEnd(b.window, q.WindowSeconds).Sub(now)}
			l.prefetch(b, now)
			b.mu.Unlock()
			q.admitted.Inc()
			return d
		}
		if b.exhausted && now.Before(b.recheckAt) {
			b.mu.Unlock()
			q.exceeded.Inc()
			return proxy.QuotaDecision{Limited: true, Quota: q.Name, Limit: q.Limit, Reset: windowEnd(b.window, q.WindowSeconds).Sub(now)}
		}
		if b.inflight != nil {
			// Singleflight: the lease in flight is sized for us too. Its
			// wait is bounded by LeaseTimeout, so the request's own context
			// is not consulted: a client that left still gets an honest
			// decision in the audit trail.
			ch := b.inflight
			b.demand++
			b.mu.Unlock()
			<-ch
			b.mu.Lock()
			b.demand--
			now = l.clock.dbNow()
			l.rollTo(b, windowStart(now, q.WindowSeconds))
			continue
		}
		if skewed > 2 || !l.brk.permit(now) {
			b.mu.Unlock()
			return l.fallback(q, now)
		}
		req, ch := l.begin(b, now, b.demand+1)
		b.mu.Unlock()
		g, err := l.lease(req)
		b.mu.Lock()
		// Waiters queue on mu behind us: we take the first unit.
		b.inflight = nil
		close(ch)
		now = l.clock.dbNow()
		moved, err := l.apply(b, req, g, err)
		switch {
		case errors.Is(err, ErrUnknownQuota):
			// Removed since our set loaded: it no longer limits anyone.
			b.mu.Unlock()
			l.Kick()
			return proxy.QuotaDecision{Allowed: true}
		case err != nil:
			b.mu.Unlock()
			return l.fallback(q, now)
		case moved:
			skewed++
		}
	}
}

// begin starts a lease for need waiting requests: it marks the key as
// leasing (singleflight) and hands the statement the admissions not yet
// reported. Called with b.mu held.
func (l *Limiter) begin(b *bucket, now time.Time, need int64) (Lease, chan struct{}) {
	req := Lease{QuotaID: b.q.ID, Key: b.key, Label: b.label, Window: b.window, WindowSeconds: b.q.WindowSeconds,
		Limit: b.q.Limit, Need: need, Block: b.nextBlock(now, l.cfg), Divisor: l.cfg.Divisor, Used: b.spent - b.reported}
	b.reported = b.spent // the statement carries them; apply puts them back if it certainly failed
	ch := make(chan struct{})
	b.inflight, b.lastLease = ch, now
	return req, ch
}

// apply takes a lease's answer into b. Called with b.mu held, after the
// in-flight mark is cleared. moved reports that the database's clock put
// the lease in another window than ours: nothing was granted, b moved to
// the database's window, and the caller may ask again.
func (l *Limiter) apply(b *bucket, req Lease, g Grant, err error) (moved bool, _ error) {
	if err != nil {
		if errors.Is(err, ErrNotApplied) {
			l.queue(Report{QuotaID: req.QuotaID, Key: req.Key, Window: req.Window, Used: req.Used})
		} else {
			l.m.lostUsed.Add(float64(req.Used)) // may have been applied: never sent twice
		}
		return false, err
	}
	b.lastReport = g.Now
	if b.window != req.Window {
		// A request rolled b into the next window while the lease was in
		// flight: its grant belongs to a window that is over for us.
		if g.Granted > 0 {
			l.queue(Report{QuotaID: req.QuotaID, Key: req.Key, Window: req.Window, Unused: g.Granted})
		}
		return false, nil
	}
	if dbw := windowStart(g.Now, b.q.WindowSeconds); dbw != req.Window {
		// Our estimate of the database's clock put us on the other side of
		// a window boundary; the database granted nothing, and g.Now has
		// corrected the estimate. Move to its window.
		l.rollTo(b, dbw)
		return true, nil
	}
	b.local += g.Granted
	b.granted = g.Granted
	l.held.Add(g.Granted)
	l.m.leased.Add(float64(g.Granted))
	b.total = g.Total
	if b.total >= b.q.Limit {
		b.exhausted, b.recheckAt = true, g.Now.Add(l.cfg.ExhaustedRecheck)
	}
	return false, nil
}

// prefetch leases in the background when a key runs low (an eighth of its
// last grant left), so that in steady state no request waits for the
// database. What a replica holds is then at most that eighth plus the new
// grant: under 1/8 + 1/64 of the budget remaining.
// It asks for no waiting requests (need 0), so near the end of the budget,
// where the share is zero, it gets nothing and cannot hoard. Called with
// b.mu held.
func (l *Limiter) prefetch(b *bucket, now time.Time) {
	if b.inflight != nil || b.exhausted || b.local > max(b.granted/8, 1) || l.brk.isDown() || l.closed.Load() {
		return
	}
	if b.total > 0 && b.q.Limit-b.total < l.cfg.Divisor {
		return // the database would grant nothing without waiting requests
	}
	req, ch := l.begin(b, now, 0)
	go func() {
		g, err := l.lease(req)
		b.mu.Lock()
		defer b.mu.Unlock()
		b.inflight = nil
		close(ch)
		if _, err := l.apply(b, req, g, err); errors.Is(err, ErrUnknownQuota) {
			l.Kick()
		}
	}()
}

// nextBlock is the key's adaptive block: what this replica would like to
// hold beyond the requests waiting. It doubles when the last lease lasted
// less than LeaseTarget and halves per 4×LeaseTarget it lasted more, never
// below MinBlock. The database caps it (LeaseGrant) at 1/Divisor of the
// budget remaining, so growth never turns into hoarding.
func (b *bucket) nextBlock(now time.Time, cfg Config) int64 {
	if !b.lastLease.IsZero() {
		gap := now.Sub(b.lastLease)
		switch {
		case gap < cfg.LeaseTarget:
			b.block = min(b.block*2, maxBlock)
		case gap > 4*cfg.LeaseTarget:
			b.block >>= min(int64(gap/(4*cfg.LeaseTarget)), 62)
		}
	}
	b.block = max(b.block, cfg.MinBlock)
	return b.block
}

func windowEnd(start, seconds int64) time.Time { return time.Unix(start+seconds, 0) }

// rollTo moves b to window w, queueing a report of what the old window's
// lease left unspent and of unreported admissions. Called with b.mu held.
func (l *Limiter) rollTo(b *bucket, w int64) {
	if b.window == w {
		return
	}
	if b.window != 0 {
		l.release(b, true)
	}
	b.window, b.spent, b.reported, b.total, b.exhausted = w, 0, 0, 0, false
}

// release queues the return of b's unspent lease and, when withUsed, its
// unreported admissions. Called with b.mu held.
func (l *Limiter) release(b *bucket, withUsed bool) {
	r := Report{QuotaID: b.q.ID, Key: b.key, Window: b.window, Unused: b.local}
	if withUsed {
		r.Used = b.spent - b.reported
		b.reported = b.spent
	}
	if r.Unused == 0 && r.Used == 0 {
		return
	}
	l.held.Add(-b.local)
	b.local = 0
	l.queue(r)
}

// lease runs one lease statement with its own deadline: the request that
// triggered it may go away, but its answer is budget other requests wait
// for, and a lease abandoned midway may be granted and never handed out.
func (l *Limiter) lease(req Lease) (Grant, error) {
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.LeaseTimeout)
	defer cancel()
	t0 := l.cfg.Now()
	g, err := l.cfg.Store.LeaseQuota(ctx, req)
	t1 := l.cfg.Now()
	l.m.leaseTime.Observe(t1.Sub(t0).Seconds())
	l.m.statement("lease", err)
	if err != nil {
		if !errors.Is(err, ErrUnknownQuota) && l.brk.failure(t1) {
			l.log.Error("quota store unreachable: held leases are spent, beyond them --quota-on-db-error applies",
				"on_db_error", l.cfg.OnDBError, "err", err)
		}
		return g, err
	}
	if l.brk.success() {
		l.log.Info("quota store reachable again")
	}
	l.clock.observe(t0, t1, g.Now)
	return g, nil
}
