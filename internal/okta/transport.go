package okta

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Sleeper waits for d or until ctx ends. Tests inject one that advances a
// fake clock instead of sleeping.
type Sleeper func(ctx context.Context, d time.Duration) error

// RealSleep is the Sleeper used outside tests.
func RealSleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// retryTransport sits under the SDK and does the waiting the SDK does
// badly: okta-sdk-golang v2 retries a 429 only twice (then fails with a bare
// "too many requests") and sleeps on the real clock. Here a 429 is waited
// out until X-Rate-Limit-Reset, for as long as the storm lasts up to
// maxWait, through an injectable Sleeper; 5xx answers and network errors
// are retried a few times with backoff. The SDK therefore never sees a
// 429 (its own retry is disabled as well).
type retryTransport struct {
	next    http.RoundTripper
	sleep   Sleeper
	now     func() time.Time
	log     *slog.Logger
	maxWait time.Duration // total rate-limit wait for one request
	retries int           // retries of 5xx and network errors
	backoff time.Duration // first 5xx/network backoff, doubled each time

	calls   atomic.Int64
	limited atomic.Int64
	waited  atomic.Int64 // nanoseconds

	mu         sync.Mutex
	serverTime time.Time
	resumeAt   time.Time // local clock: hold requests until then
}

func (t *retryTransport) stats() SourceStats {
	t.mu.Lock()
	st := t.serverTime
	t.mu.Unlock()
	return SourceStats{APICalls: t.calls.Load(), RateLimited: t.limited.Load(),
		RateLimitWait: time.Duration(t.waited.Load()), ServerTime: st}
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	var waited time.Duration
	failures := 0
	for attempt := 0; ; attempt++ {
		if err := t.pace(ctx); err != nil {
			return nil, err
		}
		r := req
		if attempt > 0 {
			if req.Body != nil && req.GetBody == nil {
				return nil, fmt.Errorf("okta %s %s: cannot retry a request whose body cannot be replayed", req.Method, req.URL.Path)
			}
			r = req.Clone(ctx)
			if req.GetBody != nil {
				b, err := req.GetBody()
				if err != nil {
					return nil, err
				}
				r.Body = b
			}
		}
		t.calls.Add(1)
		resp, err := t.next.RoundTrip(r)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			failures++
			if failures > t.retries {
				return nil, err
			}
			t.log.Warn("okta request failed; retrying", "path", req.URL.Path, "err", err, "attempt", failures)
			if err := t.sleep(ctx, t.backoff<<(failures-1)); err != nil {
				return nil, err
			}
			continue
		}
		t.noteServerTime(resp)
		t.notePace(resp)
		switch {
		case resp.StatusCode == http.StatusTooManyRequests:
			t.limited.Add(1)
			d := resetWait(resp, t.now())
			drain(resp)
			if waited+d > t.maxWait {
				return nil, fmt.Errorf("okta rate limit: %s still throttled after waiting %s", req.URL.Path, waited.Round(time.Second))
			}
			t.log.Info("okta rate limit reached; waiting for the reset", "path", req.URL.Path, "wait", d.String(),
				"limit", resp.Header.Get("X-Rate-Limit-Limit"))
			if err := t.sleep(ctx, d); err != nil {
				return nil, err
			}
			waited += d
			t.waited.Add(int64(d))
		case resp.StatusCode >= 500:
			failures++
			if failures > t.retries {
				return resp, nil
			}
			t.log.Warn("okta answered with a server error; retrying", "path", req.URL.Path, "status", resp.StatusCode, "attempt", failures)
			drain(resp)
			if err := t.sleep(ctx, t.backoff<<(failures-1)); err != nil {
				return nil, err
			}
		default:
			return resp, nil
		}
	}
}

// notePace holds further requests until the reset once the budget is
// nearly spent (a tenth or less left): Okta's budgets are shared by every
// integration of the org, so a sync should not run them dry, and a pause
// costs fewer calls than a 429.
func (t *retryTransport) notePace(resp *http.Response) {
	limit, err1 := strconv.Atoi(resp.Header.Get("X-Rate-Limit-Limit"))
	left, err2 := strconv.Atoi(resp.Header.Get("X-Rate-Limit-Remaining"))
	if err1 != nil || err2 != nil || resp.StatusCode == http.StatusTooManyRequests || left > limit/10 {
		return
	}
	until := t.now().Add(resetWait(resp, t.now()))
	t.mu.Lock()
	if until.After(t.resumeAt) {
		t.resumeAt = until
	}
	t.mu.Unlock()
}

// pace waits while a pause set by notePace lasts.
func (t *retryTransport) pace(ctx context.Context) error {
	t.mu.Lock()
	d := t.resumeAt.Sub(t.now())
	t.mu.Unlock()
	if d <= 0 {
		return nil
	}
	t.log.Info("okta rate limit nearly spent; pausing until the reset", "wait", d.String())
	if err := t.sleep(ctx, d); err != nil {
		return err
	}
	t.waited.Add(int64(d))
	return nil
}

// noteServerTime keeps the Date of the first response: Okta's clock when
// the sync started reading, the safe lower bound for "changed since".
func (t *retryTransport) noteServerTime(resp *http.Response) {
	d, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		return
	}
	t.mu.Lock()
	if t.serverTime.IsZero() {
		t.serverTime = d
	}
	t.mu.Unlock()
}

// resetWait is how long to wait after a 429: until X-Rate-Limit-Reset
// (Unix seconds) by Okta's own clock (Date) when it sent one, so local clock
// skew does not matter, plus a second as the SDK does; bounded to [1s, 5m].
func resetWait(resp *http.Response, now time.Time) time.Duration {
	reset, err := strconv.ParseInt(resp.Header.Get("X-Rate-Limit-Reset"), 10, 64)
	if err != nil {
		return 30 * time.Second
	}
	ref := now
	if d, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
		ref = d
	}
	w := time.Unix(reset, 0).Sub(ref) + time.Second
	return min(max(w, time.Second), 5*time.Minute)
}

func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}
