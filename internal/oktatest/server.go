// Package oktatest is a fake Okta custom authorization server for tests and
// the local demo. It serves the discovery documents and the JWKS the way
// Okta does, mints access tokens with Okta's claim set, rotates keys on
// demand, counts what it served, and forges the hostile tokens a verifier
// must refuse.
//
// It listens on loopback only: it signs whatever it is asked to, so it must
// never be reachable from anywhere else.
package oktatest

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultAudience is the audience Okta's "default" authorization server
// puts in access tokens.
const DefaultAudience = "api://default"

// Options configures a Server. The zero value is usable.
type Options struct {
	// Addr is the address to listen on. It must be a loopback address (or
	// "localhost"); default "127.0.0.1:0", a random free port.
	Addr string
	// AuthServerID names the custom authorization server, the last segment
	// of the issuer path (/oauth2/{id}); default "default".
	AuthServerID string
	// KeysMaxAge is the max-age the JWKS response advertises in
	// Cache-Control, as Okta does, so verifiers know how long to cache the
	// key set; default 1h.
	KeysMaxAge time.Duration
	// Now is the clock used for the iat/exp of minted tokens; default
	// time.Now.
	Now func() time.Time
}

// Server is a running fake authorization server. All methods are safe for
// concurrent use.
type Server struct {
	opts   Options
	ln     net.Listener
	srv    *http.Server
	mux    *http.ServeMux
	base   string // http://127.0.0.1:PORT
	issuer string // base + /oauth2/{id}

	mu    sync.Mutex
	keys  []*signingKey // published keys; the last one signs
	rogue *signingKey   // never published: signs forgeries

	keyFetches       atomic.Int64
	discoveryFetches atomic.Int64
	keysDown         atomic.Bool
}

type signingKey struct {
	kid  string
	priv *rsa.PrivateKey
}

// New starts a Server on a random loopback port with default options.
func New() (*Server, error) { return NewServer(Options{}) }

// NewServer starts a Server with the given options. Close it when done.
func NewServer(opts Options) (*Server, error) {
	opts.Addr = cmp.Or(opts.Addr, "127.0.0.1:0")
	opts.AuthServerID = cmp.Or(opts.AuthServerID, "default")
	opts.KeysMaxAge = cmp.Or(opts.KeysMaxAge, time.Hour)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := CheckLoopback(opts.Addr); err != nil {
		return nil, err
	}
	key, err := newSigningKey()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("oktatest: listen: %w", err)
	}
	s := &Server{
		opts: opts,
		ln:   ln,
		mux:  http.NewServeMux(),
		base: "http://" + ln.Addr().String(),
		keys: []*signingKey{key},
	}
	s.issuer = s.base + "/oauth2/" + opts.AuthServerID
	p := "/oauth2/" + opts.AuthServerID
	s.mux.HandleFunc("GET "+p+"/.well-known/openid-configuration", s.serveDiscovery(true))
	s.mux.HandleFunc("GET "+p+"/.well-known/oauth-authorization-server", s.serveDiscovery(false))
	s.mux.HandleFunc("GET "+p+"/v1/keys", s.serveKeys)
	s.srv = &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// CheckLoopback returns an error unless addr (host:port) names a loopback
// host: 127.0.0.0/8, ::1 or localhost. An empty host (all interfaces) is
// refused.
func CheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("oktatest: address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("oktatest: address %q is not loopback: the fake signs any token it is asked for, so it never listens elsewhere", addr)
}

// Close stops the server and closes open connections.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		return s.srv.Close()
	}
	return nil
}

// URL is the server's base URL, http://127.0.0.1:PORT (the "org URL").
func (s *Server) URL() string { return s.base }

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Issuer is the authorization server's issuer,
// http://127.0.0.1:PORT/oauth2/default.
func (s *Server) Issuer() string { return s.issuer }

// Mux is the server's request multiplexer, so more fakes (a Management
// API, test-only endpoints) can share the listener. Patterns use Go 1.22
// syntax ("GET /api/v1/groups").
func (s *Server) Mux() *http.ServeMux { return s.mux }

// Handle registers h for pattern on the server's mux.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// KeyFetches counts the JWKS requests served (including failed ones).
func (s *Server) KeyFetches() int64 { return s.keyFetches.Load() }

// DiscoveryFetches counts the discovery-document requests served.
func (s *Server) DiscoveryFetches() int64 { return s.discoveryFetches.Load() }

// SetKeysDown makes the JWKS endpoint answer 503 while down is true, to
// test verifiers against an unreachable key set.
func (s *Server) SetKeysDown(down bool) { s.keysDown.Store(down) }

// KeyID returns the kid of the current signing key.
func (s *Server) KeyID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[len(s.keys)-1].kid
}

// PublicKeys returns the published keys by kid, for checks that must not
// trust the code under test.
func (s *Server) PublicKeys() map[string]*rsa.PublicKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]*rsa.PublicKey, len(s.keys))
	for _, k := range s.keys {
		m[k.kid] = &k.priv.PublicKey
	}
	return m
}

// RotateKey generates a new key, publishes it and makes it the signing
// key, as Okta's key rotation does. Previous keys stay published (tokens
// they signed stay verifiable) until DropOldKeys. It returns the new kid.
// It panics if key generation fails, which crypto/rand does not allow.
func (s *Server) RotateKey() string {
	k, err := newSigningKey()
	if err != nil {
		panic(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = append(s.keys, k)
	return k.kid
}

// DropOldKeys unpublishes every key but the current signing key.
func (s *Server) DropOldKeys() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = s.keys[len(s.keys)-1:]
}

func (s *Server) current() *signingKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[len(s.keys)-1]
}

// rogueKey is a key that is never published: what an attacker signs with.
func (s *Server) rogueKey() *signingKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rogue == nil {
		k, err := newSigningKey()
		if err != nil {
			panic(err)
		}
		s.rogue = k
	}
	return s.rogue
}

func (s *Server) serveDiscovery(openid bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.discoveryFetches.Add(1)
		writeJSON(w, s.discoveryDoc(openid))
	}
}

// discoveryDoc mirrors the metadata of an Okta custom authorization
// server. Only issuer and jwks_uri are served for real; the other
// endpoints are listed because clients expect them.
func (s *Server) discoveryDoc(openid bool) map[string]any {
	is := s.issuer
	doc := map[string]any{
		"issuer":                                        is,
		"authorization_endpoint":                        is + "/v1/authorize",
		"token_endpoint":                                is + "/v1/token",
		"registration_endpoint":                         s.base + "/oauth2/v1/clients",
		"jwks_uri":                                      is + "/v1/keys",
		"response_types_supported":                      []string{"code", "token", "id_token", "code id_token", "code token", "id_token token", "code id_token token"},
		"response_modes_supported":                      []string{"query", "fragment", "form_post", "okta_post_message"},
		"grant_types_supported":                         []string{"authorization_code", "implicit", "refresh_token", "password", "client_credentials", "urn:ietf:params:oauth:grant-type:device_code"},
		"scopes_supported":                              []string{"openid", "profile", "email", "address", "phone", "offline_access", "groups"},
		"token_endpoint_auth_methods_supported":         []string{"client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt", "none"},
		"claims_supported":                              []string{"ver", "jti", "iss", "aud", "iat", "exp", "cid", "uid", "scp", "sub", "groups"},
		"code_challenge_methods_supported":              []string{"S256"},
		"introspection_endpoint":                        is + "/v1/introspect",
		"introspection_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt", "none"},
		"revocation_endpoint":                           is + "/v1/revoke",
		"revocation_endpoint_auth_methods_supported":    []string{"client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt", "none"},
		"end_session_endpoint":                          is + "/v1/logout",
		"request_parameter_supported":                   true,
		"request_object_signing_alg_values_supported":   []string{"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512"},
		"device_authorization_endpoint":                 is + "/v1/device/authorize",
	}
	if openid {
		doc["userinfo_endpoint"] = is + "/v1/userinfo"
		doc["subject_types_supported"] = []string{"public"}
		doc["id_token_signing_alg_values_supported"] = []string{"RS256"}
	}
	return doc
}

func (s *Server) serveKeys(w http.ResponseWriter, r *http.Request) {
	s.keyFetches.Add(1)
	if s.keysDown.Load() {
		http.Error(w, `{"errorCode":"E0000009","errorSummary":"Internal Server Error"}`, http.StatusServiceUnavailable)
		return
	}
	s.mu.Lock()
	keys := make([]map[string]string, 0, len(s.keys))
	for _, k := range s.keys {
		keys = append(keys, publicJWK(k))
	}
	s.mu.Unlock()
	w.Header().Set("Cache-Control", "max-age="+strconv.Itoa(int(s.opts.KeysMaxAge/time.Second))+", must-revalidate")
	writeJSON(w, map[string]any{"keys": keys})
}

func publicJWK(k *signingKey) map[string]string {
	pub := k.priv.PublicKey
	return map[string]string{
		"kty": "RSA",
		"alg": "RS256",
		"kid": k.kid,
		"use": "sig",
		"e":   b64(big.NewInt(int64(pub.E)).Bytes()),
		"n":   b64(pub.N.Bytes()),
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func newSigningKey() (*signingKey, error) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("oktatest: generate key: %w", err)
	}
	return &signingKey{kid: randomKID(), priv: priv}, nil
}

// randomKID looks like Okta's kids: 43 base64url characters.
func randomKID() string { return b64(randomBytes(32)) }

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return b
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
