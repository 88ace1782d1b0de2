// Package authn verifies Okta access tokens (JWTs from an Okta custom
// authorization server) as SPEC §4 requires, and turns them into an
// Identity: discovery and the iss check through go-oidc, signatures
// against a JWKS cache that forged key ids cannot turn into a flood of
// fetches, our own checks of alg, aud, exp/nbf/iat (with a configurable
// skew, tighter than go-oidc's five minutes) and claim types, and a
// bounded cache of verified tokens until they expire.
//
// Raw tokens never appear in errors or logs; the cache is keyed by their
// SHA-256.
package authn

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

// ErrInvalidToken is wrapped by every error Verify returns for a token
// that must be refused (SPEC §4: 401 invalid_token). The wrapping text
// says why, for the log; it never contains the token.
var ErrInvalidToken = errors.New("invalid token")

// maxTokenBytes bounds the work an incoming token can cause. Okta tokens
// with the full 100 groups stay well under it.
const maxTokenBytes = 64 << 10

// maxRefusals bounds the tokens remembered as refused for good (see
// refusals.go): 4,096 keys and errors, well under a megabyte.
const maxRefusals = 4096

// Identity is what a verified token says about its caller. An Identity
// returned by Verify may be shared with other callers through the cache:
// treat it, and its slices, as read-only.
type Identity struct {
	Subject            string    // sub: the user's login (or the client id for client-credentials tokens)
	UserID             string    // uid: the Okta user id (00u…); empty for client-credentials tokens
	Email              string    // email claim, else sub when it looks like an address
	Groups             []string  // the groups claim (Config.GroupsClaim)
	GroupsClaimPresent bool      // false when the token has no groups claim at all
	Scopes             []string  // scp
	ClientID           string    // cid
	JTI                string    // jti
	Expiry             time.Time // exp
	IssuedAt           time.Time // iat; zero if absent

	// memo lets the request path keep what it derives from this identity
	// (the caller's resolved groups) for as long as the identity is cached.
	memo atomic.Pointer[any]
}

// Memo returns the value last stored with SetMemo, or nil.
func (id *Identity) Memo() any {
	if p := id.memo.Load(); p != nil {
		return *p
	}
	return nil
}

// SetMemo stores a value derived from this identity. The identity itself
// stays read-only; the memo is the caller's to invalidate.
func (id *Identity) SetMemo(v any) { id.memo.Store(&v) }

// Verifier verifies access tokens of one issuer. It is safe for
// concurrent use; Close stops its background key refresh.
type Verifier struct {
	cfg      Config
	algs     []jose.SignatureAlgorithm
	allowed  map[string]bool
	oidc     *oidc.IDTokenVerifier
	keys     *keySet
	cache    *tokenCache // nil when disabled
	refusals *refusalMemory

	hits, misses atomic.Int64
	closeOnce    sync.Once
}

// stateKey carries a *verifyState through go-oidc into our key set.
type stateKey struct{}

// verifyState is what one verification learned along the way; go-oidc
// flattens the key set's errors into text, so the reason travels here.
type verifyState struct {
	jws      *jose.JSONWebSignature
	sigErr   error
	verified bool // the signature was checked and held
}

// New discovers the issuer's metadata (the discovery document's issuer must
// equal cfg.Issuer exactly), fetches its key set and starts refreshing it
// in the background. ctx bounds discovery and the first key fetch only. A
// failed first key fetch is not an error: the Verifier is not Ready and
// keeps retrying, so a replica started while Okta is unreachable recovers
// by itself.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("authn config: %w", err)
	}
	cfg = cfg.withDefaults()
	provider, err := oidc.NewProvider(oidc.ClientContext(ctx, cfg.HTTPClient), cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("discover issuer %s: %w", cfg.Issuer, err)
	}
	var meta struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := provider.Claims(&meta); err != nil {
		return nil, fmt.Errorf("discover issuer %s: %w", cfg.Issuer, err)
	}
	if err := checkIssuerURL("jwks_uri", meta.JWKSURI); err != nil {
		return nil, fmt.Errorf("discover issuer %s: %w", cfg.Issuer, err)
	}

	v := &Verifier{cfg: cfg, allowed: make(map[string]bool), keys: newKeySet(meta.JWKSURI, cfg), refusals: newRefusalMemory(maxRefusals)}
	for _, a := range cfg.AllowedAlgs {
		v.algs = append(v.algs, jose.SignatureAlgorithm(a))
		v.allowed[a] = true
	}
	if cfg.CacheSize > 0 {
		v.cache = newTokenCache(cfg.CacheSize)
	}
	v.oidc = oidc.NewVerifier(cfg.Issuer, v.keys, &oidc.Config{
		SupportedSigningAlgs: cfg.AllowedAlgs,
		// Audience and time checks are ours: go-oidc takes one audience,
		// has no skew on exp and five minutes on nbf.
		SkipClientIDCheck: true,
		SkipExpiryCheck:   true,
		Now:               cfg.Now,
	})
	if err := v.keys.refresh(ctx); err != nil {
		cfg.Logger.Warn("initial jwks fetch failed; not ready until a refresh succeeds", "url", meta.JWKSURI, "err", err)
	}
	go v.keys.run()
	return v, nil
}

// Close stops the background key refresh. Verify keeps working with the
// keys it has.
func (v *Verifier) Close() {
	v.closeOnce.Do(v.keys.close)
}

// Ready reports whether the key set has been fetched at least once.
func (v *Verifier) Ready() bool { return v.keys.loaded() }

// Stats are counters for metrics and tests.
type Stats struct {
	CacheHits       int64     // Verify calls answered from the cache
	CacheMisses     int64     // Verify calls that verified the token
	CacheEntries    int       // tokens cached now
	SignatureChecks int64     // signature verifications performed
	Refusals        int       // tokens remembered as refused for good (expired, wrong issuer or audience, bad signature under the current keys)
	RefusalHits     int64     // Verify calls answered from that memory
	KeyFetches      int64     // JWKS fetches attempted
	KeyFetchErrors  int64     // JWKS fetches that failed
	KeysFetchedAt   time.Time // last successful JWKS fetch (Config.Now clock); zero if none
}

// Stats returns the current counters.
func (v *Verifier) Stats() Stats {
	s := Stats{
		CacheHits:       v.hits.Load(),
		CacheMisses:     v.misses.Load(),
		SignatureChecks: v.keys.sigChecks.Load(),
		KeyFetches:      v.keys.fetches.Load(),
		KeyFetchErrors:  v.keys.fetchErrors.Load(),
	}
	if v.cache != nil {
		s.CacheEntries = v.cache.len()
	}
	s.Refusals, s.RefusalHits = v.refusals.stats()
	if ns := v.keys.lastSuccess.Load(); ns != 0 {
		s.KeysFetchedAt = time.Unix(0, ns)
	}
	return s
}

// Verify checks raw, a compact JWT taken from an Authorization: Bearer
// header (see BearerToken), and returns its Identity. Every refusal wraps
// ErrInvalidToken. A token verified before is answered from the cache
// until its exp.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Identity, error) {
	if raw == "" {
		return nil, invalid("empty token")
	}
	if len(raw) > maxTokenBytes {
		return nil, invalid("token larger than %d bytes", maxTokenBytes)
	}
	return v.verifyKeyed(ctx, raw, cacheKey(raw))
}

// cacheKey is the token cache's key for raw: its SHA-256. sha256 only reads
// the bytes; viewing the string in place keeps the cached path free of a
// copy of the token.
func cacheKey(raw string) [sha256.Size]byte {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(raw), len(raw)))
}

// verifyKeyed is Verify for a raw token of acceptable size whose cache key
// is already known: key must be cacheKey(raw).
func (v *Verifier) verifyKeyed(ctx context.Context, raw string, key [sha256.Size]byte) (*Identity, error) {
	now := v.cfg.Now()
	if v.cache != nil {
		if id, ok := v.cache.get(key, now, v.keys.has); ok {
			v.hits.Add(1)
			return id, nil
		}
	}
	keys := v.keys.current()
	if err := v.refusals.lookup(key, keys); err != nil {
		return nil, err
	}
	v.misses.Add(1)
	id, kid, err := v.verify(ctx, raw, now)
	if err != nil {
		var final unrepairable
		if (errors.Is(err, errBadSignature) || errors.As(err, &final)) && keys != nil {
			v.refusals.put(key, keys, err)
		}
		return nil, err
	}
	if v.cache != nil {
		v.cache.put(key, id, kid, now)
	}
	return id, nil
}

// HeaderMemo remembers the last Authorization header that verified on one
// client connection, with the token parsed out of it and its cache key. A
// client sends the same header on every request of a keep-alive connection,
// so VerifyHeader can skip re-parsing it and re-hashing the token (~2 µs
// per request under load) and go straight to the cache, whose checks
// (expiry, signing key still published) run every time as before.
//
// It holds the raw token of a verified request for as long as the
// connection lives (the cache itself keeps only hashes). The zero value is
// ready; it is safe for concurrent use (HTTP/2 serves a connection's
// streams in parallel).
type HeaderMemo struct {
	last atomic.Pointer[headerMemo]
}

type headerMemo struct {
	header string // the whole Authorization value, compared byte for byte
	token  string
	key    [sha256.Size]byte
}

// VerifyHeader is BearerTokenFromHeader followed by Verify: present is
// false only for a request without credentials (anonymous). memo, which may
// be nil, belongs to the connection the request arrived on.
func (v *Verifier) VerifyHeader(ctx context.Context, h http.Header, memo *HeaderMemo) (id *Identity, present bool, err error) {
	// h["Authorization"] is what h.Values("Authorization") returns: the key
	// is already canonical.
	vals := h["Authorization"]
	if memo != nil && len(vals) == 1 {
		if m := memo.last.Load(); m != nil && m.header == vals[0] {
			// Byte-for-byte the header that was parsed into m.token before.
			id, err := v.verifyKeyed(ctx, m.token, m.key)
			return id, true, err
		}
	}
	tok, present, err := BearerTokenFromHeader(h)
	if err != nil || !present {
		return nil, present, err
	}
	key := cacheKey(tok)
	id, err = v.verifyKeyed(ctx, tok, key)
	if err == nil && memo != nil {
		memo.last.Store(&headerMemo{header: vals[0], token: tok, key: key})
	}
	return id, true, err
}

func (v *Verifier) verify(ctx context.Context, raw string, now time.Time) (*Identity, string, error) {
	if !isJWTCharset(raw) {
		// Base64 decoders skip line breaks and go-jose strips spaces;
		// refusing them keeps one token from having many spellings.
		return nil, "", invalid("malformed token")
	}
	// The header is judged before anything else is decoded or any key is
	// looked up: "none", HMAC and every alg not configured stop here.
	alg, err := v.checkHeader(raw)
	if err != nil {
		return nil, "", err
	}
	jws, err := jose.ParseSignedCompact(raw, v.algs)
	if err != nil || len(jws.Signatures) != 1 {
		return nil, "", invalid("malformed token")
	}
	h := jws.Signatures[0].Header
	if h.Algorithm != alg {
		// Our reading of the header and go-jose's disagree (duplicate
		// keys, say): refuse rather than pick one.
		return nil, "", invalid("ambiguous header")
	}
	if err := v.screen(jws.UnsafePayloadWithoutVerification(), now); err != nil {
		return nil, "", err
	}
	st := &verifyState{jws: jws}
	tok, err := v.oidc.Verify(context.WithValue(ctx, stateKey{}, st), raw)
	if err != nil {
		switch {
		case st.sigErr != nil:
			return nil, "", fmt.Errorf("%w: %w", ErrInvalidToken, st.sigErr)
		case !st.verified:
			return nil, "", invalid("malformed token: %v", err)
		}
		// The signature held, so the failure is in the claims: the
		// issuer check or a claim go-oidc could not decode.
		var c struct {
			Iss any `json:"iss"`
		}
		if json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &c) == nil && c.Iss != v.cfg.Issuer {
			return nil, "", invalid("wrong issuer")
		}
		return nil, "", invalid("malformed claims: %v", err)
	}
	var claims map[string]json.RawMessage
	if err := tok.Claims(&claims); err != nil {
		return nil, "", invalid("malformed claims")
	}
	id, err := v.identity(claims, now)
	return id, h.KeyID, err
}

// isJWTCharset reports whether s holds only base64url characters and dots.
func isJWTCharset(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// checkHeader decodes just the JOSE header and checks its alg against the
// allowed list. It returns the alg.
func (v *Verifier) checkHeader(raw string) (string, error) {
	seg, _, ok := strings.Cut(raw, ".")
	if !ok || len(seg) > 4096 {
		return "", invalid("malformed token")
	}
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return "", invalid("malformed token header")
	}
	var h struct {
		Alg  string          `json:"alg"`
		Crit json.RawMessage `json:"crit"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return "", invalid("malformed token header")
	}
	if !v.allowed[h.Alg] {
		return "", invalid("algorithm %.20q not allowed", h.Alg)
	}
	if h.Crit != nil {
		return "", invalid("unsupported critical header")
	}
	return h.Alg, nil
}

// invalid returns ErrInvalidToken with a reason for the log.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidToken}, args...)...)
}
