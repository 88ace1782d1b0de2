package authn

import (
	"context"
	"crypto/sha256"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/okproxy/okproxy/internal/oktatest"
)

// TestCheapRefusals: tokens that no signature can make valid are refused
// without an RSA verification, and a token whose signature failed under the
// published keys is not verified again until the key set changes; neither
// shortcut ever refuses a token that full verification would accept.
func TestCheapRefusals(t *testing.T) {
	t.Parallel()
	srv := newFake(t, oktatest.Options{})
	clock := newClock()
	v := newVerifier(t, srv, func(c *Config) { c.Now = clock.Now })
	ctx := context.Background()
	checks := func() int64 { return v.Stats().SignatureChecks }

	// Validly signed, but expired, for another audience, or another issuer:
	// refused before the signature is looked at.
	for _, tc := range []struct {
		name string
		c    oktatest.Claims
		want string
	}{
		{"expired beyond the skew", oktatest.Claims{IssuedAt: clock.Now().Add(-2 * time.Hour), TTL: time.Hour}, "expired"},
		{"other audience", oktatest.Claims{Audience: []string{"api://other"}}, "wrong audience"},
		{"other issuer", oktatest.Claims{Issuer: "https://example.okta.com/oauth2/other"}, "wrong issuer"},
	} {
		tok := srv.Mint(tc.c)
		before := checks()
		for range 3 {
			_, err := v.Verify(ctx, tok)
			wantInvalid(t, err, tok, tc.want)
		}
		if n := checks() - before; n != 0 {
			t.Errorf("%s: %d signature checks, want 0", tc.name, n)
		}
	}
	// Every forgery is still refused, and those the screen cannot judge
	// still are for the reason full verification gives.
	for _, f := range oktatest.Forgeries() {
		if f == oktatest.ForgeMissingGroups || f == oktatest.ForgeHundredGroups {
			continue
		}
		if _, err := v.Verify(ctx, srv.Forge(f, oktatest.Claims{IssuedAt: clock.Now()})); err == nil {
			t.Errorf("%s accepted", f)
		}
	}

	// A bad signature under the current kid, replayed: one RSA check.
	bad := srv.Forge(oktatest.ForgeBadSignature, oktatest.Claims{IssuedAt: clock.Now()})
	before, hits := checks(), v.Stats().RefusalHits
	for range 50 {
		_, err := v.Verify(ctx, bad)
		wantInvalid(t, err, bad, "signature")
	}
	if n, h := checks()-before, v.Stats().RefusalHits-hits; n != 1 || h != 49 {
		t.Errorf("replayed bad signature: %d signature checks, %d remembered refusals; want 1 and 49", n, h)
	}

	// A token not yet valid (nbf ahead) is not remembered: it is accepted
	// once its time comes.
	early := srv.Mint(oktatest.Claims{IssuedAt: clock.Now(), NotBefore: clock.Now().Add(2 * time.Minute)})
	_, err := v.Verify(ctx, early)
	wantInvalid(t, err, early, "not yet valid")
	clock.Add(2 * time.Minute)
	if _, err := v.Verify(ctx, early); err != nil {
		t.Errorf("nbf reached: %v", err)
	}

	// A new key set (a rotation) judges remembered tokens afresh.
	srv.RotateKey()
	clock.Add(DefaultJWKSMinRefreshInterval)
	if _, err := v.Verify(ctx, srv.Mint(oktatest.Claims{IssuedAt: clock.Now()})); err != nil {
		t.Fatalf("token under the rotated key: %v", err)
	}
	before = checks()
	_, err = v.Verify(ctx, bad)
	wantInvalid(t, err, bad, "signature")
	if n := checks() - before; n != 1 {
		t.Errorf("after a key set change: %d signature checks, want 1", n)
	}

}

func TestRefusalMemoryBounded(t *testing.T) {
	t.Parallel()
	b := newRefusalMemory(64)
	keys := &map[string][]jose.JSONWebKey{}
	refused := invalid("signature")
	for i := range 1000 {
		b.put(sha256.Sum256([]byte{byte(i), byte(i >> 8)}), keys, refused)
	}
	if n, _ := b.stats(); n != 64 {
		t.Errorf("%d entries, bound 64", n)
	}
	last := sha256.Sum256([]byte{byte(999 % 256), byte(999 >> 8)})
	if b.lookup(last, keys) != refused {
		t.Error("the newest entry was evicted")
	}
	if b.lookup(last, &map[string][]jose.JSONWebKey{}) != nil || b.lookup(last, keys) != nil {
		t.Error("an entry judged under other keys was used")
	}
}
