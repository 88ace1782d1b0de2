package authn

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Key-set refresh bounds. The background refresh follows the JWKS
// response's Cache-Control max-age within [minBackgroundRefresh,
// maxBackgroundRefresh], so rotations are normally seen before any token
// uses the new key, without polling Okta more than once a minute.
const (
	minBackgroundRefresh     = time.Minute
	maxBackgroundRefresh     = 24 * time.Hour
	defaultBackgroundRefresh = 15 * time.Minute // when no max-age is sent
	maxRetryDelay            = time.Minute
	fetchTimeout             = 30 * time.Second // in case the HTTP client has none
	maxJWKSBytes             = 1 << 20
	minRSABits               = 2048
)

// Signature failures the Verifier reports. They name no key material.
var (
	errNoKID        = errors.New("token has no key id")
	errUnknownKID   = errors.New("unknown signing key")
	errBadSignature = errors.New("bad signature")
)

// keySet is an oidc.KeySet over Okta's JWKS that, unlike go-oidc's
// RemoteKeySet, does not fetch the key set for every token with an unknown
// kid: such fetches are limited to one per minInterval and shared by
// concurrent callers, so forged kids cannot turn into a flood of requests
// to Okta. A known kid with a bad signature never causes a fetch.
type keySet struct {
	url         string
	client      *http.Client
	log         *slog.Logger
	now         func() time.Time
	minInterval time.Duration
	bgMin       time.Duration // background refresh bounds; fields so tests can shorten them
	bgMax       time.Duration

	keys atomic.Pointer[map[string][]jose.JSONWebKey] // by kid; nil until the first successful fetch

	mu        sync.Mutex
	lastStart time.Time  // start of the last fetch, whatever triggered it
	flight    *fetchCall // the fetch in progress, if any
	maxAge    time.Duration

	fetches      atomic.Int64
	fetchErrors  atomic.Int64
	sigChecks    atomic.Int64
	lastSuccess  atomic.Int64 // unix nanoseconds
	lifetimeCtx  context.Context
	stopLifetime context.CancelFunc
	loopDone     chan struct{}
}

// fetchCall is one key-set fetch that several callers may wait on.
type fetchCall struct {
	done chan struct{}
	err  error
}

func newKeySet(url string, cfg Config) *keySet {
	ctx, cancel := context.WithCancel(context.Background())
	return &keySet{
		url:          url,
		client:       cfg.HTTPClient,
		log:          cfg.Logger,
		now:          cfg.Now,
		minInterval:  cfg.JWKSMinRefreshInterval,
		bgMin:        minBackgroundRefresh,
		bgMax:        maxBackgroundRefresh,
		lifetimeCtx:  ctx,
		stopLifetime: cancel,
		loopDone:     make(chan struct{}),
	}
}

// loaded reports whether a key set has been fetched at least once.
func (k *keySet) loaded() bool { return k.keys.Load() != nil }

// current is the key set in force (nil before the first fetch); each fetch
// installs a new one.
func (k *keySet) current() *map[string][]jose.JSONWebKey { return k.keys.Load() }

// VerifySignature implements oidc.KeySet.
func (k *keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	st, _ := ctx.Value(stateKey{}).(*verifyState)
	if st == nil || st.jws == nil {
		// Only the Verifier calls this, always with a parsed JWS; refuse
		// rather than parse with an alg list we do not know.
		return nil, errors.New("authn: key set used outside the verifier")
	}
	payload, err := k.verify(ctx, st.jws)
	st.sigErr, st.verified = err, err == nil
	return payload, err
}

func (k *keySet) verify(ctx context.Context, jws *jose.JSONWebSignature) ([]byte, error) {
	if len(jws.Signatures) != 1 {
		return nil, errBadSignature
	}
	h := jws.Signatures[0].Header
	if h.KeyID == "" {
		// Okta always sends a kid; without one every published key would
		// have to be tried, a cheap way to multiply our RSA work.
		return nil, errNoKID
	}
	keys, ok := k.lookup(h.KeyID)
	if !ok {
		fetchErr := k.refreshForUnknownKID(ctx)
		if keys, ok = k.lookup(h.KeyID); !ok {
			if fetchErr != nil {
				return nil, fmt.Errorf("%w (key set refresh: %v)", errUnknownKID, fetchErr)
			}
			return nil, errUnknownKID
		}
	}
	for _, key := range keys {
		if key.Algorithm != "" && key.Algorithm != h.Algorithm {
			continue
		}
		k.sigChecks.Add(1)
		if payload, err := jws.Verify(key.Key); err == nil {
			return payload, nil
		}
	}
	return nil, errBadSignature
}

// has reports whether kid is in the current key set.
func (k *keySet) has(kid string) bool {
	_, ok := k.lookup(kid)
	return ok
}

func (k *keySet) lookup(kid string) ([]jose.JSONWebKey, bool) {
	m := k.keys.Load()
	if m == nil {
		return nil, false
	}
	keys, ok := (*m)[kid]
	return keys, ok
}

// refreshForUnknownKID fetches the key set unless one was fetched less
// than minInterval ago; a fetch already running is waited for, not
// repeated.
func (k *keySet) refreshForUnknownKID(ctx context.Context) error {
	k.mu.Lock()
	c := k.flight
	if c == nil {
		if !k.lastStart.IsZero() && k.now().Sub(k.lastStart) < k.minInterval {
			k.mu.Unlock()
			k.log.Debug("jwks refresh for unknown kid suppressed", "min_interval", k.minInterval)
			return nil
		}
		c = k.startLocked()
	}
	k.mu.Unlock()
	return k.wait(ctx, c)
}

// refresh fetches the key set now, or joins the fetch in progress.
func (k *keySet) refresh(ctx context.Context) error {
	k.mu.Lock()
	c := k.flight
	if c == nil {
		c = k.startLocked()
	}
	k.mu.Unlock()
	return k.wait(ctx, c)
}

// startLocked starts a fetch detached from any caller's context: a client
// that gives up must not cancel the fetch others are waiting for.
func (k *keySet) startLocked() *fetchCall {
	c := &fetchCall{done: make(chan struct{})}
	k.flight = c
	k.lastStart = k.now()
	go func() {
		err := k.fetch(k.lifetimeCtx)
		k.mu.Lock()
		k.flight = nil
		k.mu.Unlock()
		c.err = err
		close(c.done)
	}()
	return c
}

func (k *keySet) wait(ctx context.Context, c *fetchCall) error {
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fetch downloads and installs the key set. On any failure the keys in
// use stay as they were: a bad response must not unpublish good keys.
func (k *keySet) fetch(ctx context.Context) error {
	k.fetches.Add(1)
	err := k.fetchOnce(ctx)
	if err != nil {
		k.fetchErrors.Add(1)
		k.log.Warn("jwks refresh failed", "url", k.url, "err", err)
		return err
	}
	k.lastSuccess.Store(k.now().UnixNano())
	return nil
}

func (k *keySet) fetchOnce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return fmt.Errorf("jwks request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return fmt.Errorf("jwks get: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("jwks get: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return fmt.Errorf("jwks read: %w", err)
	}
	if len(body) > maxJWKSBytes {
		return fmt.Errorf("jwks read: larger than %d bytes", maxJWKSBytes)
	}
	m, err := k.parse(body)
	if err != nil {
		return err
	}
	k.keys.Store(&m)
	age := maxAge(resp.Header.Get("Cache-Control"))
	k.mu.Lock()
	k.maxAge = age
	k.mu.Unlock()
	k.log.Debug("jwks refreshed", "keys", len(m), "max_age", age)
	return nil
}

// parse keeps the usable signing keys of a JWKS document. Keys it cannot
// use are skipped, not fatal, so one odd key does not hide the others.
func (k *keySet) parse(body []byte) (map[string][]jose.JSONWebKey, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("jwks decode: %w", err)
	}
	m := make(map[string][]jose.JSONWebKey, len(doc.Keys))
	for _, raw := range doc.Keys {
		var key jose.JSONWebKey
		if err := key.UnmarshalJSON(raw); err != nil {
			k.log.Debug("jwks key skipped", "err", err)
			continue
		}
		if why := unusable(key); why != "" {
			k.log.Debug("jwks key skipped", "kid", key.KeyID, "why", why)
			continue
		}
		m[key.KeyID] = append(m[key.KeyID], key)
	}
	if len(m) == 0 {
		return nil, errors.New("jwks decode: no usable signing keys")
	}
	return m, nil
}

// unusable says why key must not verify tokens, or "" if it may. Only
// public asymmetric keys qualify: a symmetric key in the JWKS would make
// HMAC forgeries verifiable.
func unusable(key jose.JSONWebKey) string {
	if key.KeyID == "" {
		return "no kid"
	}
	if key.Use != "" && key.Use != "sig" {
		return "use is not sig"
	}
	if !key.IsPublic() || !key.Valid() {
		return "not a valid public key"
	}
	switch pub := key.Key.(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < minRSABits {
			return "rsa key shorter than 2048 bits"
		}
	case *ecdsa.PublicKey, ed25519.PublicKey:
	default:
		return fmt.Sprintf("key type %T", key.Key)
	}
	return ""
}

// maxAge reads max-age from a Cache-Control header; 0 if absent.
func maxAge(cc string) time.Duration {
	for _, d := range strings.Split(cc, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(d), "=")
		if !ok || !strings.EqualFold(name, "max-age") {
			continue
		}
		if n, err := strconv.ParseInt(strings.Trim(val, `"`), 10, 64); err == nil && n >= 0 {
			if n > int64(maxBackgroundRefresh/time.Second) {
				return maxBackgroundRefresh
			}
			return time.Duration(n) * time.Second
		}
	}
	return 0
}

// nextRefresh is the delay until the next background refresh after a
// successful one.
func (k *keySet) nextRefresh() time.Duration {
	k.mu.Lock()
	age := k.maxAge
	k.mu.Unlock()
	if age == 0 {
		age = defaultBackgroundRefresh
	}
	return min(max(age, k.bgMin), k.bgMax)
}

// run refreshes the key set in the background until close: at the pace
// the JWKS response asks for, and with backoff after failures (including
// a failed first fetch, so a replica started while Okta was unreachable
// becomes ready by itself).
func (k *keySet) run() {
	defer close(k.loopDone)
	retry := time.Second
	delay := k.nextRefresh()
	if !k.loaded() {
		delay = retry
	}
	for {
		t := time.NewTimer(delay)
		select {
		case <-k.lifetimeCtx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if err := k.refresh(k.lifetimeCtx); err != nil {
			delay, retry = retry, min(2*retry, maxRetryDelay)
			continue
		}
		retry = time.Second
		delay = k.nextRefresh()
	}
}

func (k *keySet) close() {
	k.stopLifetime()
	<-k.loopDone
}
