package authn

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/okproxy/okproxy/internal/oktatest"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	base := func(edit func(*Config)) Config {
		c := Config{Issuer: "https://example.okta.com/oauth2/default", Audiences: []string{"api://default"}}
		if edit != nil {
			edit(&c)
		}
		return c
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // "" valid
	}{
		{"defaults", base(nil), ""},
		{"http loopback v4", base(func(c *Config) { c.Issuer = "http://127.0.0.1:8080/oauth2/default" }), ""},
		{"http loopback 127/8", base(func(c *Config) { c.Issuer = "http://127.9.9.9/oauth2/default" }), ""},
		{"http loopback v6", base(func(c *Config) { c.Issuer = "http://[::1]:8080/oauth2/default" }), ""},
		{"http localhost", base(func(c *Config) { c.Issuer = "http://localhost:8080/oauth2/default" }), ""},
		{"http remote", base(func(c *Config) { c.Issuer = "http://example.okta.com/oauth2/default" }), "https"},
		{"http lookalike", base(func(c *Config) { c.Issuer = "http://127.0.0.1.example.com/oauth2/default" }), "https"},
		{"no scheme", base(func(c *Config) { c.Issuer = "example.okta.com/oauth2/default" }), "issuer"},
		{"ftp", base(func(c *Config) { c.Issuer = "ftp://example.okta.com/" }), "https"},
		{"credentials", base(func(c *Config) { c.Issuer = "https://u:p@example.okta.com/" }), "credentials"},
		{"empty issuer", base(func(c *Config) { c.Issuer = "" }), "issuer: required"},
		{"no audience", base(func(c *Config) { c.Audiences = nil }), "audience"},
		{"blank audience", base(func(c *Config) { c.Audiences = []string{" "} }), "audience"},
		{"alg none", base(func(c *Config) { c.AllowedAlgs = []string{"RS256", "none"} }), "never accepted"},
		{"alg None", base(func(c *Config) { c.AllowedAlgs = []string{"None"} }), "never accepted"},
		{"alg HS256", base(func(c *Config) { c.AllowedAlgs = []string{"HS256"} }), "never accepted"},
		{"alg hs512", base(func(c *Config) { c.AllowedAlgs = []string{"hs512"} }), "never accepted"},
		{"alg unknown", base(func(c *Config) { c.AllowedAlgs = []string{"RS1"} }), "unknown"},
		{"alg ES256", base(func(c *Config) { c.AllowedAlgs = []string{"ES256", "RS256"} }), ""},
		{"negative skew", base(func(c *Config) { c.ClockSkew = -time.Second }), "clock skew"},
		{"huge skew", base(func(c *Config) { c.ClockSkew = time.Hour }), "clock skew"},
		{"blank required claim", base(func(c *Config) { c.RequiredClaims = []string{""} }), "required claim"},
		{"negative interval", base(func(c *Config) { c.JWKSMinRefreshInterval = -1 }), "refresh interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	c := Config{}.withDefaults()
	if len(c.AllowedAlgs) != 1 || c.AllowedAlgs[0] != "RS256" || c.ClockSkew != 30*time.Second ||
		c.GroupsClaim != "groups" || c.CacheSize != 100_000 || c.JWKSMinRefreshInterval != 10*time.Second ||
		c.HTTPClient == nil || c.HTTPClient.Timeout == 0 || c.Now == nil || c.Logger == nil {
		t.Errorf("defaults %+v", c)
	}
}

func TestNewDiscovery(t *testing.T) {
	t.Parallel()
	srv := shared(t)
	ctx := context.Background()

	// The discovery document's issuer must match byte for byte.
	_, err := New(ctx, Config{Issuer: srv.Issuer() + "/", Audiences: []string{"x"}})
	if err == nil || !strings.Contains(err.Error(), "did not match") {
		t.Errorf("trailing slash: err = %v", err)
	}
	_, err = New(ctx, Config{Issuer: srv.URL() + "/oauth2/nope", Audiences: []string{"x"}})
	if err == nil {
		t.Error("unknown authorization server accepted")
	}
	_, err = New(ctx, Config{Issuer: "http://example.com/oauth2/default", Audiences: []string{"x"}})
	if err == nil || !strings.Contains(err.Error(), "https") {
		t.Errorf("http issuer: err = %v", err)
	}
}

// TestNewRefusesInsecureJWKS: a discovery document must not point the key
// set at plain http on another host.
func TestNewRefusesInsecureJWKS(t *testing.T) {
	t.Parallel()
	srv := newFake(t, oktatest.Options{AuthServerID: "evil"})
	srv.Handle("GET /oauth2/evil2/.well-known/openid-configuration", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{
			"issuer":   srv.URL() + "/oauth2/evil2",
			"jwks_uri": "http://keys.example.com/v1/keys",
		})
	}))
	_, err := New(context.Background(), Config{Issuer: srv.URL() + "/oauth2/evil2", Audiences: []string{"x"}})
	if err == nil || !strings.Contains(err.Error(), "jwks_uri") {
		t.Errorf("err = %v", err)
	}
}

func TestCheckRedirect(t *testing.T) {
	t.Parallel()
	for url, ok := range map[string]bool{
		"https://example.okta.com/x": true, "http://127.0.0.1/x": true, "http://example.okta.com/x": false,
	} {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if err := checkRedirect(req, nil); (err == nil) != ok {
			t.Errorf("redirect to %s: %v", url, err)
		}
	}
}

func getKeys(t *testing.T, srv *oktatest.Server, v any) {
	t.Helper()
	resp, err := http.Get(srv.Issuer() + "/v1/keys")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
