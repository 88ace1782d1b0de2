package authn

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/okproxy/okproxy/internal/oktatest"
)

// withKID re-encodes tok's header with another kid and a random
// signature: a forgery that costs the attacker nothing to vary.
func withKID(t *testing.T, tok, kid string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	h, _ := json.Marshal(map[string]string{"alg": "RS256", "kid": kid})
	return base64.RawURLEncoding.EncodeToString(h) + "." + parts[1] + "." + randomSig()
}

func randomSig() string {
	b := make([]byte, 256)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// verifyAll verifies toks from 8 goroutines and fails if any is accepted.
func verifyAll(t *testing.T, v *Verifier, toks []string) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := 0
	for g := range 8 {
		wg.Go(func() {
			for i := g; i < len(toks); i += 8 {
				if _, err := v.Verify(context.Background(), toks[i]); err == nil {
					mu.Lock()
					accepted++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if accepted > 0 {
		t.Fatalf("%d forged tokens accepted", accepted)
	}
}

// TestJWKSThrottle floods the verifier with forged tokens: known kids with
// bad signatures must never reach the JWKS endpoint, unknown kids at most
// once per interval, and a genuine rotation must still be picked up.
func TestJWKSThrottle(t *testing.T) {
	t.Parallel()
	srv := newFake(t, oktatest.Options{})
	clock := newClock()
	v := newVerifier(t, srv, func(c *Config) { c.Now = clock.Now; c.JWKSMinRefreshInterval = time.Minute })
	if got := srv.KeyFetches(); got != 1 {
		t.Fatalf("fetches after New = %d, want 1", got)
	}
	clock.Add(2 * time.Minute) // an unknown kid may refresh now

	badSig := srv.Forge(oktatest.ForgeBadSignature, oktatest.Claims{})
	known := make([]string, 500)
	for i := range known {
		known[i] = withKID(t, badSig, srv.KeyID())
	}
	verifyAll(t, v, known)
	if got := srv.KeyFetches(); got != 1 {
		t.Fatalf("known kid with bad signature caused %d fetches", got-1)
	}

	unknown := make([]string, 500)
	for i := range unknown {
		unknown[i] = withKID(t, badSig, "forged-"+randomSig()[:20])
	}
	verifyAll(t, v, unknown)
	if got := srv.KeyFetches(); got > 3 {
		t.Fatalf("1000 forged tokens caused %d JWKS fetches in all, want <= 3", got)
	}
	fetches := srv.KeyFetches()

	// A real rotation inside the interval is refused (that is the price of
	// the throttle) and picked up once the interval has passed.
	srv.RotateKey()
	fresh := srv.Mint(oktatest.Claims{IssuedAt: clock.Now()})
	_, err := v.Verify(context.Background(), fresh)
	wantInvalid(t, err, fresh, "unknown signing key")
	clock.Add(time.Minute)
	if _, err := v.Verify(context.Background(), fresh); err != nil {
		t.Fatalf("rotated key not picked up: %v", err)
	}
	if got := srv.KeyFetches(); got != fetches+1 {
		t.Errorf("rotation took %d fetches, want 1", got-fetches)
	}
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	srv := newFake(t, oktatest.Options{})
	clock := newClock()
	v := newVerifier(t, srv, func(c *Config) { c.Now = clock.Now })
	old := srv.Mint(oktatest.Claims{IssuedAt: clock.Now()})

	srv.RotateKey()
	clock.Add(DefaultJWKSMinRefreshInterval)
	rotated := srv.Mint(oktatest.Claims{IssuedAt: clock.Now()})
	if _, err := v.Verify(context.Background(), rotated); err != nil {
		t.Fatalf("token signed with the rotated key: %v", err)
	}
	if _, err := v.Verify(context.Background(), old); err != nil {
		t.Fatalf("token signed with the previous, still published key: %v", err)
	}
	if s := v.Stats(); s.KeyFetches != 2 {
		t.Errorf("key fetches %d, want 2", s.KeyFetches)
	}

	// Once a refresh no longer lists the old key, its tokens are refused
	// even though they are cached.
	srv.DropOldKeys()
	clock.Add(DefaultJWKSMinRefreshInterval)
	_, err := v.Verify(context.Background(), srv.Forge(oktatest.ForgeUnknownKID, oktatest.Claims{}))
	wantInvalid(t, err, "", "unknown signing key")
	_, err = v.Verify(context.Background(), old)
	wantInvalid(t, err, old, "unknown signing key")
	if _, err := v.Verify(context.Background(), rotated); err != nil {
		t.Fatalf("current key after drop: %v", err)
	}
}

func TestReadyAfterKeysRecover(t *testing.T) {
	t.Parallel()
	srv := newFake(t, oktatest.Options{})
	srv.SetKeysDown(true)
	clock := newClock()
	v := newVerifier(t, srv, func(c *Config) { c.Now = clock.Now })
	if v.Ready() {
		t.Fatal("ready without keys")
	}
	tok := srv.Mint(oktatest.Claims{IssuedAt: clock.Now()})
	_, err := v.Verify(context.Background(), tok)
	wantInvalid(t, err, tok, "unknown signing key")

	srv.SetKeysDown(false)
	clock.Add(DefaultJWKSMinRefreshInterval)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	if !v.Ready() {
		t.Error("not ready after keys were fetched")
	}
}

// TestBackgroundRefresh checks the refresh loop follows the JWKS max-age
// (bounds shortened for the test).
func TestBackgroundRefresh(t *testing.T) {
	t.Parallel()
	srv := newFake(t, oktatest.Options{KeysMaxAge: time.Second})
	cfg := Config{Issuer: srv.Issuer(), Audiences: []string{"x"}}.withDefaults()
	ks := newKeySet(srv.Issuer()+"/v1/keys", cfg)
	ks.bgMin = 10 * time.Millisecond
	if err := ks.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	go ks.run()
	defer ks.close()
	time.Sleep(300 * time.Millisecond)
	if got := srv.KeyFetches(); got != 1 {
		t.Errorf("refreshed before max-age: %d fetches", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for srv.KeyFetches() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("background refresh: %d fetches after 5s", srv.KeyFetches())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMaxAge(t *testing.T) {
	t.Parallel()
	for cc, want := range map[string]time.Duration{
		"":                             0,
		"max-age=90, must-revalidate":  90 * time.Second,
		"public, MAX-AGE=\"60\"":       time.Minute,
		"no-store":                     0,
		"max-age=-5":                   0,
		"max-age=99999999999999999999": 0,
		"max-age=999999999":            maxBackgroundRefresh,
	} {
		if got := maxAge(cc); got != want {
			t.Errorf("maxAge(%q) = %s, want %s", cc, got, want)
		}
	}
}

func TestParseSkipsUnusableKeys(t *testing.T) {
	t.Parallel()
	cfg := Config{}.withDefaults()
	ks := newKeySet("", cfg)
	srv := shared(t)
	var pub struct {
		Keys []map[string]any `json:"keys"`
	}
	getKeys(t, srv, &pub)
	good := pub.Keys[0]
	noKID := clone(good, "kid", nil)
	enc := clone(good, "use", "enc")
	oct := map[string]any{"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}
	weird := map[string]any{"kty": "XYZ", "kid": "x"}
	doc, _ := json.Marshal(map[string]any{"keys": []any{noKID, enc, oct, weird, good}})
	m, err := ks.parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || len(m[srv.KeyID()]) != 1 {
		t.Errorf("parsed %v", m)
	}
	doc, _ = json.Marshal(map[string]any{"keys": []any{oct}})
	if _, err := ks.parse(doc); err == nil {
		t.Error("a key set of only a symmetric key was accepted")
	}
}

func clone(m map[string]any, k string, v any) map[string]any {
	out := map[string]any{}
	for mk, mv := range m {
		out[mk] = mv
	}
	if v == nil {
		delete(out, k)
	} else {
		out[k] = v
	}
	return out
}
