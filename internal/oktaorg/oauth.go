package oktaorg

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Clock is a settable clock for tests: waiting out a rate limit is
// Advance, not a sleep.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock reading t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now reads the clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// scopesAllowed are the scopes a service app may be granted here.
var scopesAllowed = map[string]bool{"okta.groups.read": true, "okta.users.read": true}

// token is Okta's org authorization server token endpoint for service apps:
// client_credentials with a private_key_jwt client assertion. Like the SDK,
// clients may send the parameters in the query string.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.counts[OpToken]++
	s.mu.Unlock()
	if status := s.fault(OpToken); status != 0 {
		oauthError(w, status, "server_error", "injected fault")
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "malformed request")
		return
	}
	if r.Form.Get("grant_type") != "client_credentials" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be client_credentials")
		return
	}
	if r.Form.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "client_assertion_type is missing or wrong")
		return
	}
	if s.cfg.ClientID == "" || s.cfg.ClientKey == nil {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "no service app is configured")
		return
	}
	aud := base(r) + "/oauth2/v1/token"
	if err := s.checkAssertion(r.Form.Get("client_assertion"), aud); err != nil {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "The client_assertion is invalid: "+err.Error())
		return
	}
	granted := map[string]bool{}
	for _, sc := range strings.Fields(r.Form.Get("scope")) {
		if !scopesAllowed[sc] {
			oauthError(w, http.StatusBadRequest, "invalid_scope", "The following scopes are not allowed: "+sc)
			return
		}
		granted[sc] = true
	}
	if len(granted) == 0 {
		oauthError(w, http.StatusBadRequest, "invalid_scope", "no scope requested")
		return
	}
	var b [24]byte
	rand.Read(b[:])
	tok := hex.EncodeToString(b[:])
	s.mu.Lock()
	s.tokens[tok] = accessToken{scopes: granted, expires: s.cfg.Now().Add(time.Hour)}
	s.mu.Unlock()
	scopes := make([]string, 0, len(granted))
	for sc := range granted {
		scopes = append(scopes, sc)
	}
	writeJSON(w, map[string]any{"token_type": "Bearer", "expires_in": 3600, "access_token": tok, "scope": strings.Join(scopes, " ")})
}

// checkAssertion verifies an RS256 client assertion: signature, iss = sub =
// the client id, aud = the token endpoint, unexpired.
func (s *Server) checkAssertion(jwt, aud string) error {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return errors.New("not a JWT")
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	if err := decodeSegment(parts[0], &hdr); err != nil || hdr.Alg != "RS256" {
		return errors.New("alg must be RS256")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return errors.New("bad signature encoding")
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(s.cfg.ClientKey, crypto.SHA256, sum[:], sig); err != nil {
		return errors.New("signature does not verify")
	}
	var c struct {
		Iss string `json:"iss"`
		Sub string `json:"sub"`
		Aud string `json:"aud"`
		Exp int64  `json:"exp"`
	}
	if err := decodeSegment(parts[1], &c); err != nil {
		return errors.New("bad claims")
	}
	switch {
	case c.Iss != s.cfg.ClientID || c.Sub != s.cfg.ClientID:
		return errors.New("iss and sub must be the client id")
	case c.Aud != aud:
		return errors.New("aud must be " + aud)
	case c.Exp <= s.cfg.Now().Unix():
		return errors.New("expired")
	}
	return nil
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}
