package authn

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/okproxy/okproxy/internal/oktatest"
)

func TestVerifyValid(t *testing.T) {
	t.Parallel()
	srv := shared(t)
	clock := newClock()
	v := newVerifier(t, srv, func(c *Config) { c.Now = clock.Now })
	if !v.Ready() {
		t.Fatal("not ready after New")
	}
	iat := clock.Now().Add(-time.Minute)
	tok := srv.Mint(oktatest.Claims{
		Subject: "alice@example.com", UserID: "00u1abcdefghijklmno", Groups: []string{"Finance", "Auditors"},
		Scopes: []string{"billing:read", "openid"}, ClientID: "0oaclient", JTI: "AT.abc",
		IssuedAt: iat, Expiry: iat.Add(time.Hour),
	})
	id, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	want := Identity{
		Subject: "alice@example.com", UserID: "00u1abcdefghijklmno", Email: "alice@example.com",
		Groups: []string{"Finance", "Auditors"}, GroupsClaimPresent: true, Scopes: []string{"billing:read", "openid"},
		ClientID: "0oaclient", JTI: "AT.abc", Expiry: iat.Add(time.Hour), IssuedAt: iat,
	}
	if id.Subject != want.Subject || id.UserID != want.UserID || id.Email != want.Email ||
		!slices.Equal(id.Groups, want.Groups) || !id.GroupsClaimPresent || !slices.Equal(id.Scopes, want.Scopes) ||
		id.ClientID != want.ClientID || id.JTI != want.JTI || !id.Expiry.Equal(want.Expiry) || !id.IssuedAt.Equal(want.IssuedAt) {
		t.Errorf("identity\n got %+v\nwant %+v", id, &want)
	}
}

// TestVerifyForgeries runs every hostile token of the fake through a
// verifier with default settings, and checks each is refused for its own
// reason, not by accident.
func TestVerifyForgeries(t *testing.T) {
	t.Parallel()
	srv := shared(t)
	clock := newClock()
	v := newVerifier(t, srv, func(c *Config) { c.Now = clock.Now })
	strict := newVerifier(t, srv, func(c *Config) { c.Now = clock.Now; c.RequiredClaims = []string{"groups"} })
	reasons := map[oktatest.Forgery]string{
		oktatest.ForgeAlgNone:         "not allowed",
		oktatest.ForgeHS256PublicKey:  "not allowed",
		oktatest.ForgeUnknownKID:      "unknown signing key",
		oktatest.ForgeTamperedPayload: "bad signature",
		oktatest.ForgeBadSignature:    "bad signature",
		oktatest.ForgeExpired:         "expired",
		oktatest.ForgeFutureNBF:       "nbf",
		oktatest.ForgeFutureIAT:       "iat",
		oktatest.ForgeWrongIssuer:     "wrong issuer",
		oktatest.ForgeWrongAudience:   "wrong audience",
		oktatest.ForgeMissingExp:      "missing exp",
		oktatest.ForgeMissingSub:      "missing sub",
		oktatest.ForgeGroupsString:    "groups claim",
		oktatest.ForgeGroupsNumber:    "groups claim",
	}
	for _, f := range oktatest.Forgeries() {
		t.Run(f.String(), func(t *testing.T) {
			tok := srv.Forge(f, oktatest.Claims{IssuedAt: clock.Now()})
			id, err := v.Verify(context.Background(), tok)
			switch f {
			case oktatest.ForgeMissingGroups:
				// Valid per SPEC §4: groups-source auto falls back to the directory.
				if err != nil || id.GroupsClaimPresent || id.Groups != nil {
					t.Fatalf("err %v identity %+v", err, id)
				}
				_, err = strict.Verify(context.Background(), tok)
				wantInvalid(t, err, tok, `missing required claim "groups"`)
			case oktatest.ForgeHundredGroups:
				if err != nil || len(id.Groups) != 100 || !id.GroupsClaimPresent {
					t.Fatalf("err %v groups %d", err, len(id.Groups))
				}
			default:
				wantInvalid(t, err, tok, reasons[f])
			}
		})
	}
	if n := v.Stats().CacheEntries; n != 2 {
		t.Errorf("cache holds %d entries, want only the 2 valid tokens", n)
	}
}

func TestVerifyClockSkew(t *testing.T) {
	t.Parallel()
	srv := shared(t)
	clock := newClock()
	v := newVerifier(t, srv, func(c *Config) { c.Now = clock.Now; c.ClockSkew = 30 * time.Second })
	now := clock.Now()
	for _, tc := range []struct {
		name string
		c    oktatest.Claims
		want string // "" accepted
	}{
		{"nbf +20s", oktatest.Claims{NotBefore: now.Add(20 * time.Second)}, ""},
		{"nbf +30s", oktatest.Claims{NotBefore: now.Add(30 * time.Second)}, ""},
		{"nbf +31s", oktatest.Claims{NotBefore: now.Add(31 * time.Second)}, "nbf"},
		{"nbf +60s", oktatest.Claims{NotBefore: now.Add(60 * time.Second)}, "nbf"},
		{"iat +20s", oktatest.Claims{IssuedAt: now.Add(20 * time.Second)}, ""},
		{"iat +60s", oktatest.Claims{IssuedAt: now.Add(60 * time.Second)}, "iat"},
		{"exp -20s", oktatest.Claims{IssuedAt: now.Add(-time.Hour), Expiry: now.Add(-20 * time.Second)}, ""},
		{"exp -30s", oktatest.Claims{IssuedAt: now.Add(-time.Hour), Expiry: now.Add(-30 * time.Second)}, ""},
		{"exp -31s", oktatest.Claims{IssuedAt: now.Add(-time.Hour), Expiry: now.Add(-31 * time.Second)}, "expired"},
		{"exp -60s", oktatest.Claims{IssuedAt: now.Add(-time.Hour), Expiry: now.Add(-60 * time.Second)}, "expired"},
		{"fractional exp", oktatest.Claims{Extra: map[string]any{"exp": float64(now.Unix()) + 0.5}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.c.IssuedAt.IsZero() {
				tc.c.IssuedAt = now
			}
			tok := srv.Mint(tc.c)
			_, err := v.Verify(context.Background(), tok)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantInvalid(t, err, tok, tc.want)
		})
	}
}

// NoClockSkew (serve --clock-skew 0) tolerates nothing; zero is the default.
func TestVerifyNoClockSkew(t *testing.T) {
	t.Parallel()
	srv := shared(t)
	clock := newClock()
	strict := newVerifier(t, srv, func(c *Config) { c.Now = clock.Now; c.ClockSkew = NoClockSkew })
	dflt := newVerifier(t, srv, func(c *Config) { c.Now = clock.Now; c.ClockSkew = 0 })
	now := clock.Now()
	for _, tc := range []struct {
		name string
		c    oktatest.Claims
		want string
	}{
		{"nbf +2s", oktatest.Claims{IssuedAt: now, NotBefore: now.Add(2 * time.Second)}, "nbf"},
		{"iat +2s", oktatest.Claims{IssuedAt: now.Add(2 * time.Second)}, "iat"},
		{"exp -2s", oktatest.Claims{IssuedAt: now.Add(-time.Hour), Expiry: now.Add(-2 * time.Second)}, "expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := srv.Mint(tc.c)
			_, err := strict.Verify(context.Background(), tok)
			wantInvalid(t, err, tok, tc.want)
			if _, err := dflt.Verify(context.Background(), tok); err != nil {
				t.Errorf("default skew refused a token %s off: %v", tc.name, err)
			}
		})
	}
	if _, err := strict.Verify(context.Background(), srv.Mint(oktatest.Claims{IssuedAt: now})); err != nil {
		t.Errorf("no skew refused a current token: %v", err)
	}
}

func TestVerifyAudiences(t *testing.T) {
	t.Parallel()
	srv := shared(t)
	v := newVerifier(t, srv, func(c *Config) { c.Audiences = []string{"api://other", oktatest.DefaultAudience} })
	for _, tc := range []struct {
		name string
		c    oktatest.Claims
		ok   bool
	}{
		{"default string", oktatest.Claims{}, true},
		{"second configured", oktatest.Claims{Audience: []string{"api://other"}}, true},
		{"array containing one", oktatest.Claims{Audience: []string{"api://x", "api://other"}}, true},
		{"none configured", oktatest.Claims{Audience: []string{"api://x", "api://y"}}, false},
		{"missing", oktatest.Claims{Omit: []string{"aud"}}, false},
		{"number", oktatest.Claims{Extra: map[string]any{"aud": 42}}, false},
		{"null in array", oktatest.Claims{Extra: map[string]any{"aud": []any{nil, "api://default"}}}, false},
		{"case differs", oktatest.Claims{Audience: []string{"API://default"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := srv.Mint(tc.c)
			_, err := v.Verify(context.Background(), tok)
			if tc.ok && err != nil {
				t.Fatal(err)
			}
			if !tc.ok {
				wantInvalid(t, err, tok, "")
			}
		})
	}
}

// TestVerifyClaimTypes covers claims that are present but malformed: a
// wrong JSON type must not be read as empty.
func TestVerifyClaimTypes(t *testing.T) {
	t.Parallel()
	srv := shared(t)
	v := newVerifier(t, srv, func(c *Config) { c.RequiredClaims = []string{"cid", "email"} })
	ok := oktatest.Claims{Extra: map[string]any{"email": "a@example.com"}}
	with := func(k string, val any) oktatest.Claims {
		return oktatest.Claims{Extra: map[string]any{"email": "a@example.com", k: val}}
	}
	without := func(k string) oktatest.Claims {
		return oktatest.Claims{Extra: map[string]any{"email": "a@example.com"}, Omit: []string{k}}
	}
	for _, tc := range []struct {
		name string
		c    oktatest.Claims
		want string // "" accepted
	}{
		{"all present", ok, ""},
		{"required missing", without("cid"), `missing required claim "cid"`},
		{"required empty string", with("cid", ""), `missing required claim "cid"`},
		{"required null", with("email", nil), `missing required claim "email"`},
		{"required empty array", with("cid", []string{}), `missing required claim "cid"`},
		{"groups null", with("groups", nil), "groups claim"},
		{"groups with null", with("groups", []any{"a", nil}), "groups claim"},
		{"groups object", with("groups", map[string]any{"a": 1}), "groups claim"},
		{"groups empty array", with("groups", []string{}), ""},
		{"scp string", with("scp", "a b"), ""},
		{"scp number", with("scp", 5), "scp"},
		{"uid number", with("uid", 5), "uid"},
		{"sub empty", with("sub", ""), "missing sub"},
		{"sub number", with("sub", 7), ""}, // go-oidc refuses it first
		{"exp string", with("exp", "soon"), "claims"},
		{"exp huge", with("exp", 1e300), "exp"},
		{"exp negative", with("exp", -1), "exp"},
		{"iss array", with("iss", []string{srv.Issuer()}), "wrong issuer"},
		// Identity is refused, not altered, when it holds control characters.
		{"sub with CRLF", with("sub", "bob\r\nX-Okproxy-Groups: Admins"), "control character"},
		{"sub with ESC", with("sub", "bob\x1b[31m"), "control character"},
		{"sub with C1", with("sub", "bob\u0085"), "control character"},
		{"uid with NUL", with("uid", "00u\x00a"), "control character"},
		{"email with tab", with("email", "a@example.com\t"), "control character"},
		{"group with NUL", with("groups", []string{"Finance", "x\x00y"}), "control character"},
		{"unicode sub", with("sub", "jürgen@example.com"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := srv.Mint(tc.c)
			id, err := v.Verify(context.Background(), tok)
			switch {
			case tc.name == "sub number":
				wantInvalid(t, err, tok, "")
			case tc.want == "" && err != nil:
				t.Fatal(err)
			case tc.want != "":
				wantInvalid(t, err, tok, tc.want)
			case tc.name == "scp string" && !slices.Equal(id.Scopes, []string{"a", "b"}):
				t.Errorf("scopes %q", id.Scopes)
			case tc.name == "groups empty array" && (!id.GroupsClaimPresent || len(id.Groups) != 0):
				t.Errorf("groups %v present %v", id.Groups, id.GroupsClaimPresent)
			}
		})
	}
}

func TestVerifyEmailAndGroupsClaim(t *testing.T) {
	t.Parallel()
	srv := shared(t)
	v := newVerifier(t, srv, func(c *Config) { c.GroupsClaim = "roles" })
	id, err := v.Verify(context.Background(), srv.Mint(oktatest.Claims{
		Subject: "svc-0oa123", Groups: []string{"ignored"}, Extra: map[string]any{"roles": []string{"R1"}},
	}))
	if err != nil {
		t.Fatal(err)
	}
	if id.Email != "" || !slices.Equal(id.Groups, []string{"R1"}) {
		t.Errorf("email %q groups %v", id.Email, id.Groups)
	}
	id, err = v.Verify(context.Background(), srv.Mint(oktatest.Claims{Extra: map[string]any{"email": "real@example.org"}}))
	if err != nil || id.Email != "real@example.org" || id.GroupsClaimPresent {
		t.Errorf("err %v email %q present %v", err, id.Email, id.GroupsClaimPresent)
	}
}

func TestVerifyAlgNotConfigured(t *testing.T) {
	t.Parallel()
	srv := shared(t)
	v := newVerifier(t, srv, func(c *Config) { c.AllowedAlgs = []string{"PS256"} })
	tok := srv.Mint(oktatest.Claims{})
	_, err := v.Verify(context.Background(), tok)
	wantInvalid(t, err, tok, `algorithm "RS256" not allowed`)
	if n := v.Stats().SignatureChecks; n != 0 {
		t.Errorf("%d signature checks for a refused alg", n)
	}
}

func TestVerifyGarbage(t *testing.T) {
	t.Parallel()
	srv := shared(t)
	v := newVerifier(t, srv, nil)
	good := srv.Mint(oktatest.Claims{})
	for _, raw := range []string{
		"", ".", "..", "a.b.c", "eyJhbGciOiJSUzI1NiJ9..", good + ".x", "Bearer " + good,
		"eyJhbGciOiJSUzI1NiIsImNyaXQiOlsiZXhwIl19." + good[len(good)/2:], // crit header
		string(make([]byte, maxTokenBytes+1)),
		good[:10] + "\n" + good[10:], good[:10] + " " + good[10:], " " + good, good + "\r\n",
		`{"payload":"e30","protected":"eyJhbGciOiJSUzI1NiJ9","signature":"AA"}`,
	} {
		_, err := v.Verify(context.Background(), raw)
		wantInvalid(t, err, "", "")
	}
}

func TestCache(t *testing.T) {
	t.Parallel()
	srv := shared(t)
	clock := newClock()
	v := newVerifier(t, srv, func(c *Config) { c.Now = clock.Now })
	tok := srv.Mint(oktatest.Claims{IssuedAt: clock.Now(), TTL: time.Minute})
	first, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		id, err := v.Verify(context.Background(), tok)
		if err != nil || id != first {
			t.Fatalf("cached verify: %v (same identity: %v)", err, id == first)
		}
	}
	s := v.Stats()
	if s.SignatureChecks != 1 || s.CacheHits != 3 || s.CacheMisses != 1 || s.CacheEntries != 1 {
		t.Errorf("stats %+v", s)
	}

	// Past exp the cache lets go; the skew still applies on re-verification.
	clock.Add(time.Minute + 10*time.Second)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Errorf("within skew: %v", err)
	}
	clock.Add(time.Minute)
	_, err = v.Verify(context.Background(), tok)
	wantInvalid(t, err, tok, "expired")
	// Expired beyond the skew is refused before its signature is checked.
	if s := v.Stats(); s.CacheEntries != 0 || s.SignatureChecks != 2 {
		t.Errorf("stats after expiry %+v", s)
	}
}

func TestCacheDisabled(t *testing.T) {
	t.Parallel()
	srv := shared(t)
	v := newVerifier(t, srv, func(c *Config) { c.CacheSize = -1 })
	tok := srv.Mint(oktatest.Claims{})
	for range 2 {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	if s := v.Stats(); s.SignatureChecks != 2 || s.CacheHits != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestVerifyConcurrent(t *testing.T) {
	t.Parallel()
	srv := shared(t)
	v := newVerifier(t, srv, func(c *Config) { c.CacheSize = 64 })
	toks := make([]string, 16)
	for i := range toks {
		toks[i] = srv.Mint(oktatest.Claims{})
	}
	bad := srv.Forge(oktatest.ForgeBadSignature, oktatest.Claims{})
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			for i := range 200 {
				tok := toks[(g+i)%len(toks)]
				if i%10 == 0 {
					if _, err := v.Verify(context.Background(), bad); err == nil {
						errs <- context.Canceled
						return
					}
					continue
				}
				if _, err := v.Verify(context.Background(), tok); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
