package quota

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/okproxy/okproxy/internal/proxy"
)

// OnDBError values: what a request that needs budget gets while the
// database is unreachable and its key holds no leased budget.
const (
	// OnDBErrorAllow admits it, marked Unchecked (audited quota_unchecked).
	OnDBErrorAllow = "allow"
	// OnDBErrorDeny refuses it with 429 and a Retry-After of the next
	// database retry.
	OnDBErrorDeny = "deny"
)

// Config configures a Limiter. Zero values get the defaults noted, set in
// New; the timing defaults are what docs/quotas.md measured.
type Config struct {
	// Store is the database. Required.
	Store Store
	// OnDBError is OnDBErrorAllow (default) or OnDBErrorDeny.
	OnDBError string
	// Logger receives load, outage and recovery events (default: discard).
	Logger *slog.Logger
	// Metrics registers the limiter's series (nil: unregistered).
	Metrics prometheus.Registerer
	// Now is the local clock (default time.Now). Windows follow the
	// database's clock: the limiter keeps Now's offset from it.
	Now func() time.Time

	// LeaseTimeout bounds one lease statement (default 5s). Requests of a
	// key wait at most this long for its lease. A lease that times out is
	// treated as an outage (OnDBError applies), so this is generous: a
	// database that is merely slow, or a cold pool still authenticating,
	// must not open the gate.
	LeaseTimeout time.Duration
	// LeaseTarget is how often a busy key should need a new lease (default
	// 1s): a key's block doubles when its lease lasted less, and halves per
	// 4×LeaseTarget when it lasted more. A busy key costs about one lease
	// statement per LeaseTarget per replica, whatever its request rate.
	LeaseTarget time.Duration
	// MinBlock is the smallest block asked for (default 128; the Divisor
	// share still caps it), so that a key slower than MinBlock per LeaseTarget
	// still makes one statement per MinBlock requests, not one per request.
	MinBlock int64
	// Divisor caps a block at 1/Divisor of the budget remaining when it is
	// leased, beyond the requests already waiting (default 8), so no replica
	// hoards the budget; once less than Divisor remains, a lease is exactly
	// the waiting requests and nothing is held. The database applies it to
	// the row it locks (LeaseGrant).
	Divisor int64
	// IdleReturn gives a key's unspent lease back after this long without a
	// request (default 2s), so other replicas can use it. Returns of all
	// keys go out in one statement per Sweep.
	IdleReturn time.Duration
	// ReportInterval bounds how stale the database's used count of a busy
	// key is (default 5s); leases and returns report too.
	ReportInterval time.Duration
	// ExhaustedRecheck is how often an exhausted key asks the database
	// again, to pick up budget other replicas returned (default 1s).
	ExhaustedRecheck time.Duration
	// Sweep is the background tick for window ends, idle returns and
	// reports (default 250ms).
	Sweep time.Duration
	// Poll is the fallback check for quota changes missed by Kick (default 5s).
	Poll time.Duration
	// DBRetry is the first wait after a failed lease before the next try
	// (default 1s); it doubles up to DBRetryMax (default 5s) while failures go on.
	DBRetry    time.Duration
	DBRetryMax time.Duration
	// Retention keeps quota_windows rows this long after their window ended
	// (default 24h), for `quotas usage` and investigations.
	Retention time.Duration
}

func (c *Config) defaults() error {
	if c.Store == nil {
		return errors.New("quota: store is required")
	}
	c.OnDBError = cmp.Or(c.OnDBError, OnDBErrorAllow)
	if c.OnDBError != OnDBErrorAllow && c.OnDBError != OnDBErrorDeny {
		return errors.New("quota: on-db-error must be allow or deny")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.LeaseTimeout = cmp.Or(c.LeaseTimeout, 5*time.Second)
	c.LeaseTarget = cmp.Or(c.LeaseTarget, time.Second)
	c.MinBlock = cmp.Or(c.MinBlock, 128)
	c.Divisor = cmp.Or(c.Divisor, 8)
	c.IdleReturn = cmp.Or(c.IdleReturn, 2*time.Second)
	c.ReportInterval = cmp.Or(c.ReportInterval, 5*time.Second)
	c.ExhaustedRecheck = cmp.Or(c.ExhaustedRecheck, time.Second)
	c.Sweep = cmp.Or(c.Sweep, 250*time.Millisecond)
	c.Poll = cmp.Or(c.Poll, 5*time.Second)
	c.DBRetry = cmp.Or(c.DBRetry, time.Second)
	c.DBRetryMax = max(cmp.Or(c.DBRetryMax, 5*time.Second), c.DBRetry)
	c.Retention = cmp.Or(c.Retention, 24*time.Hour)
	return nil
}

// Limiter implements proxy.Limiter. Admit is safe for concurrent use; Run
// does the background work; Close gives leases back.
type Limiter struct {
	cfg   Config
	log   *slog.Logger
	m     *metrics
	clock clock
	brk   breaker

	set     atomic.Pointer[set]
	buckets sync.Map // bkey → *bucket
	keys    atomic.Int64
	held    atomic.Int64
	closed  atomic.Bool
	kick    chan struct{}

	pmu     sync.Mutex
	pending map[rkey]*Report
}

var _ proxy.Limiter = (*Limiter)(nil)

// New builds a limiter. Call Load (or let Run load), then Run in a goroutine.
// Until a quota set has loaded, every authenticated request gets the
// OnDBError treatment: the limiter cannot know whether a quota applies.
func New(cfg Config) (*Limiter, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	l := &Limiter{cfg: cfg, log: cfg.Logger, kick: make(chan struct{}, 1), pending: map[rkey]*Report{}}
	l.clock.now = cfg.Now
	l.brk = breaker{min: cfg.DBRetry, max: cfg.DBRetryMax}
	l.m = newMetrics(cfg.Metrics, l)
	return l, nil
}

// Admit decides one authorised request. The common case, a key holding
// leased budget, is a map probe and a mutex: no database, no allocation.
func (l *Limiter) Admit(ctx context.Context, c proxy.QuotaCheck) proxy.QuotaDecision {
	s := l.set.Load()
	if s == nil || l.closed.Load() {
		return l.fallback(nil, l.clock.dbNow())
	}
	q := s.selectQuota(c.Method, c.Path, c.Groups)
	if q == nil {
		return proxy.QuotaDecision{Allowed: true}
	}
	key, label := q.subject(c.Subject, c.UserID)
	for {
		b := l.bucket(q, key, label)
		b.mu.Lock()
		if b.dead {
			// The sweeper forgot this key between our lookup and our lock.
			b.mu.Unlock()
			continue
		}
		b.q = q
		return l.take(b)
	}
}

// fallback is the answer beyond held leases when the database is
// unreachable (or before any quota set loaded: q is nil then).
func (l *Limiter) fallback(q *compiled, now time.Time) proxy.QuotaDecision {
	if l.cfg.OnDBError == OnDBErrorDeny {
		d := proxy.QuotaDecision{Limited: true, Allowed: false, Reset: l.brk.retryIn(now)}
		if q != nil {
			q.dbDenied.Inc()
			d.Quota, d.Limit = q.Name, q.Limit
		}
		return d
	}
	d := proxy.QuotaDecision{Allowed: true, Unchecked: true}
	if q != nil {
		q.unchecked.Inc()
		d.Quota = q.Name
	}
	return d
}

// Kick asks Run to reload the quota set soon (a policy change was notified).
func (l *Limiter) Kick() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// Held is the leased budget this replica holds unspent.
func (l *Limiter) Held() int64 { return l.held.Load() }

// DBUnreachable reports whether lease statements are failing, so that
// requests beyond held leases get the OnDBError answer.
func (l *Limiter) DBUnreachable() bool { return l.brk.isDown() }

// PolicyVersion is the policy version of the quota set in force (-1: none).
func (l *Limiter) PolicyVersion() int64 {
	if s := l.set.Load(); s != nil {
		return s.policyVersion
	}
	return -1
}

// clock tracks the offset of the local clock from the database's, measured
// on every statement that returns now(): windows are the database's, so two
// replicas with skewed clocks still agree on where a window ends.
type clock struct {
	now     func() time.Time
	offset  atomic.Int64 // database minus local, nanoseconds
	mu      sync.Mutex
	bestRTT time.Duration
	bestAt  time.Time
}

func (c *clock) dbNow() time.Time { return c.now().Add(time.Duration(c.offset.Load())) }

// observe takes a sample: the database read db somewhere between t0 and t1
// (local), so the midpoint is off by at most half the round trip. Samples
// with the shortest round trip win; a newer one replaces an old best after
// 30s so drift is followed.
func (c *clock) observe(t0, t1, db time.Time) {
	if db.IsZero() {
		return
	}
	rtt := t1.Sub(t0)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bestAt.IsZero() || rtt <= c.bestRTT || t1.Sub(c.bestAt) > 30*time.Second {
		c.bestRTT, c.bestAt = rtt, t1
		c.offset.Store(int64(db.Sub(t0.Add(rtt / 2))))
	}
}

// breaker stops lease attempts while the database is unreachable, so that
// requests of keys without budget get the OnDBError answer at once instead
// of each waiting out a timeout; one probe per retry period finds out when
// it is back.
type breaker struct {
	down     atomic.Bool
	mu       sync.Mutex
	until    time.Time
	backoff  time.Duration
	probing  bool
	min, max time.Duration
}

func (b *breaker) isDown() bool { return b.down.Load() }

// permit reports whether a lease may be tried now.
func (b *breaker) permit(now time.Time) bool {
	if !b.down.Load() {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.down.Load() {
		return true
	}
	if now.Before(b.until) || b.probing {
		return false
	}
	b.probing = true
	return true
}

// success closes the breaker; it reports whether it was open.
func (b *breaker) success() bool {
	if !b.down.Load() {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	was := b.down.Load()
	b.down.Store(false)
	b.probing, b.backoff = false, 0
	return was
}

// failure opens the breaker (or keeps it open, backing off when a probe
// failed); it reports whether it was closed.
func (b *breaker) failure(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	was := b.down.Load()
	switch {
	case !was:
		b.backoff = b.min
	case !now.Before(b.until):
		b.backoff = min(b.backoff*2, b.max)
	}
	b.until = now.Add(b.backoff)
	b.probing = false
	b.down.Store(true)
	return !was
}

// retryIn is the Retry-After for requests refused during an outage.
func (b *breaker) retryIn(now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return max(b.until.Sub(now), time.Second)
}
