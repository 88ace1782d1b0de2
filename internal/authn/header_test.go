package authn

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/okproxy/okproxy/internal/oktatest"
)

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// TestVerifyHeaderMemo: a connection's memo only ever short-cuts a header
// that is byte for byte the one that verified before, and the cache's own
// checks (expiry, key still published) still run on every request.
func TestVerifyHeaderMemo(t *testing.T) {
	t.Parallel()
	srv := newFake(t, oktatest.Options{})
	clock := newClock()
	v := newVerifier(t, srv, func(c *Config) { c.Now = clock.Now })
	ctx := context.Background()
	alice := srv.Mint(oktatest.Claims{Subject: "alice@example.com", IssuedAt: clock.Now(), TTL: 2 * time.Minute})
	bob := srv.Mint(oktatest.Claims{Subject: "bob@example.com", IssuedAt: clock.Now(), TTL: time.Hour})
	var memo HeaderMemo

	subject := func(h http.Header) string {
		t.Helper()
		id, present, err := v.VerifyHeader(ctx, h, &memo)
		if err != nil || !present {
			t.Fatalf("VerifyHeader: present %v, err %v", present, err)
		}
		return id.Subject
	}
	memoised := func() string {
		if m := memo.last.Load(); m != nil {
			return m.header
		}
		return ""
	}

	if got := subject(bearer(alice)); got != "alice@example.com" {
		t.Fatalf("first request: subject %q", got)
	}
	if memoised() != "Bearer "+alice {
		t.Fatalf("verified header not memoised")
	}
	if got := subject(bearer(alice)); got != "alice@example.com" {
		t.Fatalf("memoised request: subject %q", got)
	}
	// The same connection switching tokens gets the new token's identity.
	if got := subject(bearer(bob)); got != "bob@example.com" {
		t.Fatalf("switched token: subject %q", got)
	}
	if got := subject(http.Header{"Authorization": {"bearer " + alice}}); got != "alice@example.com" {
		t.Fatalf("other spelling of the scheme: subject %q", got)
	}

	// Hostile requests on a connection whose memo holds a valid header.
	tampered := srv.Forge(oktatest.ForgeTamperedPayload, oktatest.Claims{Subject: "alice@example.com"})
	for _, tc := range []struct {
		name string
		h    http.Header
		want string
	}{
		{"memoised header twice", http.Header{"Authorization": {"Bearer " + alice, "Bearer " + alice}}, "multiple authorization headers"},
		{"memoised header plus another", http.Header{"Authorization": {"Bearer " + alice, "Bearer " + bob}}, "multiple authorization headers"},
		{"memoised token with a trailing space", http.Header{"Authorization": {"Bearer " + alice + " "}}, "malformed bearer token"},
		{"memoised token, other scheme", http.Header{"Authorization": {"Basic " + alice}}, "not Bearer"},
		{"memoised token truncated", bearer(alice[:len(alice)-1]), "malformed token"},
		{"tampered payload", bearer(tampered), "signature"},
		{"empty value", http.Header{"Authorization": {""}}, "empty authorization header"},
	} {
		id, present, err := v.VerifyHeader(ctx, tc.h, &memo)
		if id != nil || !present {
			t.Errorf("%s: identity %v, present %v", tc.name, id, present)
		}
		wantInvalid(t, err, alice, tc.want)
		if memoised() != "bearer "+alice {
			t.Errorf("%s: a refused header replaced the memo", tc.name)
		}
	}
	if id, present, err := v.VerifyHeader(ctx, http.Header{}, &memo); id != nil || present || err != nil {
		t.Errorf("no credentials: identity %v, present %v, err %v", id, present, err)
	}
	if id, present, err := v.VerifyHeader(ctx, bearer(alice), nil); err != nil || !present || id.Subject != "alice@example.com" {
		t.Errorf("without a memo: %v %v %v", id, present, err)
	}

	// Expiry still applies to a memoised header.
	subject(bearer(alice))
	clock.Add(3*time.Minute + DefaultClockSkew)
	_, _, err := v.VerifyHeader(ctx, bearer(alice), &memo)
	wantInvalid(t, err, alice, "expired")

	// So does a signing key Okta no longer publishes.
	subject(bearer(bob))
	srv.RotateKey()
	srv.DropOldKeys()
	clock.Add(DefaultJWKSMinRefreshInterval)
	_, err = v.Verify(ctx, srv.Mint(oktatest.Claims{IssuedAt: clock.Now()})) // refreshes the key set
	if err != nil {
		t.Fatalf("token signed with the new key: %v", err)
	}
	_, _, err = v.VerifyHeader(ctx, bearer(bob), &memo)
	wantInvalid(t, err, bob, "unknown signing key")
}

// TestVerifyHeaderMemoConcurrent: HTTP/2 serves one connection's streams in
// parallel, so one memo sees interleaved tokens; each request must still get
// its own token's identity.
func TestVerifyHeaderMemoConcurrent(t *testing.T) {
	t.Parallel()
	srv := shared(t)
	v := newVerifier(t, srv, nil)
	subjects := []string{"a@example.com", "b@example.com", "c@example.com"}
	toks := make([]string, len(subjects))
	for i, s := range subjects {
		toks[i] = srv.Mint(oktatest.Claims{Subject: s})
	}
	var memo HeaderMemo
	errs := make(chan error, 6)
	for g := range 6 {
		go func() {
			for i := range 300 {
				k := (g + i) % len(toks)
				id, _, err := v.VerifyHeader(context.Background(), bearer(toks[k]), &memo)
				if err == nil && id.Subject != subjects[k] {
					err = fmt.Errorf("token of %s verified as %s", subjects[k], id.Subject)
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 6 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
