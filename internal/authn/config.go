package authn

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Defaults applied by Config for zero fields.
const (
	DefaultClockSkew              = 30 * time.Second
	DefaultGroupsClaim            = "groups"
	DefaultCacheSize              = 100_000
	DefaultJWKSMinRefreshInterval = 10 * time.Second
	DefaultHTTPTimeout            = 10 * time.Second

	// MaxClockSkew bounds ClockSkew: a larger tolerance would quietly
	// extend every token's lifetime.
	MaxClockSkew = 5 * time.Minute
	// NoClockSkew as Config.ClockSkew asks for no tolerance at all (zero
	// would mean the default): `okproxy serve --clock-skew 0`.
	NoClockSkew time.Duration = -1
)

// Config configures a Verifier. Zero fields take the defaults above; call
// Validate (New does) before use.
type Config struct {
	// Issuer is the Okta authorization server's issuer, e.g.
	// https://example.okta.com/oauth2/default. It must be https://, except
	// on a loopback host (local test doubles), and must equal the issuer
	// in the discovery document and in every token, byte for byte.
	Issuer string
	// Audiences are the accepted aud values; a token must carry at least
	// one of them. Required: without an audience check a token minted for
	// any other API of the same authorization server would be accepted.
	Audiences []string
	// AllowedAlgs are the JWS algorithms accepted; default ["RS256"], the
	// only one Okta uses. "none" and the HMAC algorithms are refused here,
	// since an HMAC "secret" would be the public key everyone can fetch.
	AllowedAlgs []string
	// ClockSkew is the tolerance applied to exp, nbf and iat; zero means
	// DefaultClockSkew, NoClockSkew means none at all; at most MaxClockSkew.
	ClockSkew time.Duration
	// RequiredClaims must be present and non-empty in every token, in
	// addition to sub, which always is.
	RequiredClaims []string
	// GroupsClaim names the claim holding the user's groups; default
	// "groups".
	GroupsClaim string
	// HTTPClient fetches the discovery document and the JWKS. Default: a
	// client with a DefaultHTTPTimeout timeout that follows redirects only
	// to URLs the issuer rule allows. Give your own timeouts: a hung key
	// fetch holds every request that waits for it.
	HTTPClient *http.Client
	// CacheSize bounds the number of verified tokens cached until they
	// expire; default 100,000. Negative disables the cache.
	CacheSize int
	// JWKSMinRefreshInterval is the least time between two key-set
	// fetches triggered by tokens with an unknown kid; default 10s. It
	// keeps forged kids from turning every request into a request to Okta.
	JWKSMinRefreshInterval time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives key-set refresh events; default slog.DiscardHandler.
	// Raw tokens are never logged.
	Logger *slog.Logger
}

// withDefaults returns c with every zero field set to its default: the one
// place defaults live.
func (c Config) withDefaults() Config {
	if len(c.AllowedAlgs) == 0 {
		c.AllowedAlgs = []string{"RS256"}
	}
	switch c.ClockSkew {
	case 0:
		c.ClockSkew = DefaultClockSkew
	case NoClockSkew:
		c.ClockSkew = 0
	}
	c.GroupsClaim = cmp.Or(c.GroupsClaim, DefaultGroupsClaim)
	c.HTTPClient = cmp.Or(c.HTTPClient, &http.Client{Timeout: DefaultHTTPTimeout, CheckRedirect: checkRedirect})
	c.CacheSize = cmp.Or(c.CacheSize, DefaultCacheSize)
	c.JWKSMinRefreshInterval = cmp.Or(c.JWKSMinRefreshInterval, DefaultJWKSMinRefreshInterval)
	if c.Now == nil {
		c.Now = time.Now
	}
	c.Logger = cmp.Or(c.Logger, slog.New(slog.DiscardHandler))
	return c
}

// asymmetricAlgs are the JWS algorithms a verifier may be configured
// with: public-key signatures only.
var asymmetricAlgs = map[string]bool{
	"RS256": true, "RS384": true, "RS512": true,
	"PS256": true, "PS384": true, "PS512": true,
	"ES256": true, "ES384": true, "ES512": true,
	"EdDSA": true,
}

// Validate reports the first problem with c (after defaults), naming the
// field.
func (c Config) Validate() error {
	c = c.withDefaults()
	if err := checkIssuerURL("issuer", c.Issuer); err != nil {
		return err
	}
	if len(c.Audiences) == 0 {
		return errors.New("audience: at least one is required")
	}
	for _, a := range c.Audiences {
		if strings.TrimSpace(a) == "" {
			return errors.New("audience: empty value")
		}
	}
	for _, a := range c.AllowedAlgs {
		switch {
		case strings.EqualFold(a, "none") || strings.HasPrefix(strings.ToUpper(a), "HS"):
			return fmt.Errorf("allowed alg %q: never accepted (unsigned and HMAC tokens can be forged by anyone who has the public key)", a)
		case !asymmetricAlgs[a]:
			return fmt.Errorf("allowed alg %q: unknown; use one of RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA", a)
		}
	}
	if c.ClockSkew < 0 || c.ClockSkew > MaxClockSkew {
		return fmt.Errorf("clock skew %s: must be between 0 and %s", c.ClockSkew, MaxClockSkew)
	}
	for _, n := range c.RequiredClaims {
		if strings.TrimSpace(n) == "" {
			return errors.New("required claim: empty name")
		}
	}
	if strings.TrimSpace(c.GroupsClaim) == "" {
		return errors.New("groups claim: empty name")
	}
	if c.JWKSMinRefreshInterval < 0 {
		return fmt.Errorf("jwks min refresh interval %s: must not be negative", c.JWKSMinRefreshInterval)
	}
	return nil
}

// checkIssuerURL enforces SPEC §4: https, or http only on a loopback host.
// The same rule applies to the discovered jwks_uri, whose keys decide
// every signature.
func checkIssuerURL(field, raw string) error {
	if raw == "" {
		return fmt.Errorf("%s: required", field)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s %q: %w", field, raw, err)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%s %q: want an absolute URL without credentials, query or fragment", field, raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopback(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("%s %q: must be https:// (http:// is allowed only on a loopback host)", field, raw)
	default:
		return fmt.Errorf("%s %q: must be https://", field, raw)
	}
}

// checkRedirect keeps a redirect from moving a key fetch off https.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("too many redirects")
	}
	return checkIssuerURL("redirect", req.URL.String())
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
